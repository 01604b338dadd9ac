"""BFD between gobgpd-v4 (a, AS 65000) and FRR 8.4 (r, AS 65100, bgpd + bfdd), eBGP.
usage: frr_bfd.py N [ACTIONS]   ACTIONS from rlink,rstop,alink,astop
"""
import os, sys, time, json, signal; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
n = int(sys.argv[1])
actions = sys.argv[2].split(",") if len(sys.argv) > 2 else ["rlink", "rstop", "alink", "astop"]
mode = sys.argv[3] if len(sys.argv) > 3 else "toml"
BFD = """  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = 300000
    required-minimum-receive = 300000
    detection-multiplier = 3
"""
BFDD = """bfd
 profile fast
  transmit-interval 300
  receive-interval 300
  detect-multiplier 3
 !
!
"""
BGPD = """frr defaults datacenter
hostname r
log file {d}/bgpd.debug.log
router bgp 65100
 bgp router-id 192.0.2.3
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.1 bfd
 neighbor 192.0.2.1 bfd profile fast
 address-family ipv4 unicast
  network 10.3.0.1/32
 exit-address-family
!
"""
lab = Lab("-frrbfd")
res = {a: [] for a in actions}
try:
    lab.node("a", "192.0.2.1"); lab.node("r", "192.0.2.3")
    rdir = lab.nodes["r"]["dir"] + "/frr"
    lab.frr("r", BGPD.format(d=rdir), BFDD)
    rm = RouteMon(lab.nodes["r"]["ns"], f"{lab.nodes['r']['dir']}/routemon.log")
    def start_a():
        nb = [dict(addr="192.0.2.3", asn=65100, hold=9, keepalive=3, extra=BFD)] if mode == "toml" else []
        lab.gobgpd("a", "v4", gobgp_toml(65000, "192.0.2.1", nb))
        lab.wait_api("a")
        if mode == "grpc":
            sh(f"{CTL} unix://{lab.nodes['a']['sock']} add 192.0.2.3 65100 9 300 3 0")
        lab.gobgp("a", "global rib add 10.2.0.1/32 nexthop 192.0.2.1")
    t0 = time.time()
    start_a()
    wa = lab.watch("a")
    def ready(since_a, since_r, what):
        assert wa.wait(r"path 10.3.0.1/32 .*withdraw=false", since=since_a, timeout=90), f"a: no 10.3.0.1 ({what})"
        end = time.time() + 60
        while time.time() < end:
            if "10.2.0.1" in sh("ip route", ns=lab.nodes["r"]["ns"]):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"r: no 10.2.0.1 ({what})")
        end = time.time() + 20
        while time.time() < end:
            a_bfd = json.loads(lab.gobgp("a", "neighbor 192.0.2.3 -j")).get("state", {}).get("bfd_state", {}).get("session_state")
            r_bfd = json.loads(lab.vtysh("r", "show bfd peers json"))
            r_up = any(p.get("status") == "up" for p in r_bfd)
            if a_bfd == 1 and r_up:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"BFD not up both sides ({what}): a={a_bfd} r={r_bfd}")
        time.sleep(1.5)
    ready(0, 0, "first")
    print(f"first: both sides have the other's path and BFD up after {time.time()-t0:.2f}s")
    print("FRR show bfd peers:", lab.vtysh("r", "show bfd peers"))
    print("FRR neighbor bfd:", [l for l in lab.vtysh("r", "show bgp neighbor 192.0.2.1").splitlines() if "BFD" in l or "Detect" in l or "interval" in l.lower()])
    print("gobgpd ListPeer bfd_state:", json.dumps(json.loads(lab.gobgp("a", "neighbor 192.0.2.3 -j")).get("state", {}).get("bfd_state")))
    frr_pids = [p.pid for nm, p in lab.procs if nm.endswith("-r")]
    for i in range(n):
        for act in actions:
            ma, mr = wa.mark(), rm.mark(); t = time.time()
            ap = lab.nodes["a"]["gobgpd"]
            if act == "rlink": lab.link("r", False)
            elif act == "alink": lab.link("a", False)
            elif act == "rstop":
                for pid in frr_pids: os.kill(pid, signal.SIGSTOP)
            elif act == "astop": os.kill(ap.pid, signal.SIGSTOP)
            if act.startswith("r"):
                e = wa.wait(r"path 10.3.0.1/32 .*withdraw=true", since=ma, timeout=20)
                d = (e[0]-t)*1000 if e else None
            else:
                e = rm.wait(r"Deleted 10.2.0.1", since=mr, timeout=20)
                d = (e[0]-t)*1000 if e else None
            res[act].append(d)
            print(f"{act} #{i}: withdrawn after {d} ms", flush=True)
            ma, mr = wa.mark(), rm.mark()
            if act == "rlink": lab.link("r", True)
            elif act == "alink": lab.link("a", True)
            elif act == "rstop":
                for pid in frr_pids: os.kill(pid, signal.SIGCONT)
            elif act == "astop": os.kill(ap.pid, signal.SIGCONT)
            ready(ma, mr, f"{act} #{i}")
    for act in actions:
        xs = [x for x in res[act] if x is not None]
        print(f"RESULT frr-bfd {mode} {act}: {stats(xs)} missing={len(res[act])-len(xs)} all={[round(x) if x else None for x in res[act]]}")
    rm.stop()
finally:
    lab.close()
