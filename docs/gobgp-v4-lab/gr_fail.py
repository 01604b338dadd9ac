"""Graceful restart negotiated, then a failure that is not a restart: does the helper keep
a's path (stale) or drop it?  a: gobgpd VER with GR (restart-time 30), announces 10.2.0.1/32.
usage: gr_fail.py VER HELPER FAILURE [bfd]
  HELPER: frr | v4 | v3;  FAILURE: link (cut a's switch port) | freeze (SIGSTOP a's gobgpd)
  bfd: BFD 300 ms x 3 on both sides (v4 and FRR only); otherwise hold 9 s"""
import os, sys, time, json, signal, threading; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, helper, failure = sys.argv[1:4]
bfd = len(sys.argv) > 4 and sys.argv[4] == "bfd"
GR = """  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""
BFD = """  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = 300000
    required-minimum-receive = 300000
    detection-multiplier = 3
""" if bfd else ""
H = "192.0.2.3"
lab = Lab(f"-grfail-{ver}-{helper}-{failure}{'-bfd' if bfd else ''}")
try:
    lab.node("a", "192.0.2.1"); lab.node("h", H)
    if helper == "frr":
        lab.frr("h", f"""frr defaults datacenter
hostname h
router bgp 65100
 bgp router-id {H}
 no bgp ebgp-requires-policy
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 {"neighbor 192.0.2.1 bfd" if bfd else ""}
 {"neighbor 192.0.2.1 bfd profile fast" if bfd else ""}
!
""", "bfd\n profile fast\n  transmit-interval 300\n  receive-interval 300\n  detect-multiplier 3\n !\n!\n" if bfd else None)
    else:
        lab.gobgpd("h", helper, gobgp_toml(65100, H, [dict(addr="192.0.2.1", asn=65000, extra=GR + BFD)]))
        lab.wait_api("h")
    lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", [dict(addr=H, asn=65100, extra=GR + BFD)]))
    lab.wait_api("a")
    lab.gobgp("a", "global rib add 10.2.0.1/32 nexthop 192.0.2.1")
    rm = RouteMon(lab.nodes["h"]["ns"], f"{lab.nodes['h']['dir']}/routemon.log")
    def state():
        if helper == "frr":
            j = json.loads(lab.vtysh("h", "show bgp ipv4 unicast 10.2.0.1/32 json"))
            ps = j.get("paths", [])
            return "absent" if not ps else ("stale" if any(p.get("stale") for p in ps) else "valid")
        out = lab.gobgp("h", "global rib 10.2.0.1/32 -j")
        ps = (json.loads(out) if out.strip() else {}).get("10.2.0.1/32", [])
        return "absent" if not ps else ("stale" if any(p.get("stale") for p in ps) else "valid")
    end = time.time() + 60
    while state() != "valid":
        assert time.time() < end, "never learned"
        time.sleep(0.2)
    if bfd and helper == "frr":
        end = time.time() + 20
        while not any(p.get("status") == "up" for p in json.loads(lab.vtysh("h", "show bfd peers json"))):
            assert time.time() < end; time.sleep(0.2)
    time.sleep(3)
    mr = rm.mark()
    t0 = time.time()
    if failure == "link": lab.link("a", False)
    else: os.kill(lab.nodes["a"]["gobgpd"].pid, signal.SIGSTOP)
    changes = []
    while time.time() < t0 + 40:
        s = state()
        if not changes or changes[-1][1] != s:
            changes.append((round(time.time() - t0, 2), s))
        time.sleep(0.1)
    print(f"--- a=gobgpd {ver} GR 30 s, helper={helper}, failure={failure}, {'BFD 300x3' if bfd else 'hold 9 s'}")
    print("   helper's view of a's path (s since failure, state):", changes)
    if helper == "frr":
        print("   helper's kernel route events:", [(round(t - t0, 2), l.split(" proto")[0]) for t, l in rm.all(r"10\.2\.0\.1", since=mr)])
    if failure == "freeze": os.kill(lab.nodes["a"]["gobgpd"].pid, signal.SIGCONT)
    rm.stop()
finally:
    lab.close()
