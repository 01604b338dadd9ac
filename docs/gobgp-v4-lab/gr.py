"""Graceful restart: a (gobgpd VER, announces 10.2.0.1/32) restarts; the helper h keeps or drops its path.
usage: gr.py VER HELPER METHOD READD [N] [OPTS]
  HELPER: frr | v4 | v3   (gobgpd line of the helper)
  METHOD: sigterm | stopgr (v4 only: StopBgp allow_graceful_restart) | sigkill | never (sigkill, no restart)
  READD:  early (paths added as soon as the API answers) | late (4 s after the restart) | none
  OPTS: comma list: llgr, notif (GR notification bit), bfd, nor (restart without -r), frrfull (FRR 'bgp graceful-restart')
"""
import os, sys, time, json, signal, threading; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, helper, method, readd = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 1
opts = set(sys.argv[6].split(",")) if len(sys.argv) > 6 and sys.argv[6] else set()
RT = 30  # restart-time advertised by a
def gr_toml(rt=RT):
    s = f"""  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = {rt}
"""
    if "notif" in opts: s += "    notification-enabled = true\n"
    if "llgr" in opts: s += "    long-lived-enabled = true\n"
    s += """  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""
    if "llgr" in opts:
        s += """    [neighbors.afi-safis.long-lived-graceful-restart.config]
      enabled = true
      restart-time = 60
"""
    if "bfd" in opts:
        s += """  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = 300000
    required-minimum-receive = 300000
    detection-multiplier = 3
"""
    return s
HIP = "192.0.2.3"
lab = Lab(f"-gr-{ver}-{helper}-{method}-{readd}")
summary = []
try:
    lab.node("a", "192.0.2.1"); lab.node("h", HIP)
    if helper == "frr":
        conf = f"""frr defaults datacenter
hostname h
router bgp 65100
 bgp router-id {HIP}
 no bgp ebgp-requires-policy
 no bgp network import-check
 {"bgp graceful-restart" if "frrfull" in opts else ""}
 {"bgp graceful-restart notification" if "notif" in opts else ""}
 {"bgp long-lived-graceful-restart stale-time 60" if "llgr" in opts else ""}
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 {"neighbor 192.0.2.1 bfd" if "bfd" in opts else ""}
 {"neighbor 192.0.2.1 bfd profile fast" if "bfd" in opts else ""}
 address-family ipv4 unicast
  network 10.3.0.1/32
 exit-address-family
!
"""
        bfdd = "bfd\n profile fast\n  transmit-interval 300\n  receive-interval 300\n  detect-multiplier 3\n !\n!\n" if "bfd" in opts else None
        lab.frr("h", conf, bfdd)
        hasn = 65100
    else:
        lab.gobgpd("h", helper, gobgp_toml(65100, HIP, [dict(addr="192.0.2.1", asn=65000, extra=gr_toml())]))
        lab.wait_api("h")
        lab.gobgp("h", "global rib add 10.3.0.1/32 nexthop 192.0.2.3")
        hasn = 65100
        wh = lab.watch("h")
    rm = RouteMon(lab.nodes["h"]["ns"], f"{lab.nodes['h']['dir']}/routemon.log")
    def start_a(restart):
        extra = ["-r"] if restart and "nor" not in opts else []
        lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", [dict(addr=HIP, asn=hasn, extra=gr_toml())]), extra)
        lab.wait_api("a")
    def add_paths():
        lab.gobgp("a", "global rib add 10.2.0.1/32 nexthop 192.0.2.1")
    # helper-side view of 10.2.0.1: kernel route present? (FRR installs; gobgpd helper: from its watch)
    samples = []
    stop_sampler = threading.Event()
    def sampler():
        while not stop_sampler.is_set():
            t = time.time()
            if helper == "frr":
                try:
                    j = json.loads(lab.vtysh("h", "show bgp ipv4 unicast 10.2.0.1/32 json"))
                    paths = j.get("paths", [])
                    st = "absent" if not paths else ("stale" if any(p.get("stale") for p in paths) else ("llgr-stale" if any("llgrStale" in json.dumps(p) for p in paths) else "valid"))
                except Exception as e:
                    st = "err"
            else:
                try:
                    out = lab.gobgp("h", "global rib 10.2.0.1/32 -j")
                    j = json.loads(out) if out.strip() else {}
                    paths = j.get("10.2.0.1/32", [])
                    st = "absent" if not paths else ("stale" if any(p.get("stale") for p in paths) else "valid")
                except Exception:
                    st = "err"
            samples.append((t, st))
            time.sleep(0.2)
    for i in range(n):
        if i == 0:
            start_a(False); add_paths()
        wa = lab.watch("a")
        end = time.time() + 60
        while time.time() < end and "10.2.0.1" not in sh("ip route", ns=lab.nodes["h"]["ns"]) and helper == "frr":
            time.sleep(0.05)
        if helper != "frr":
            end = time.time() + 60
            while "10.2.0.1/32" not in lab.gobgp("h", "global rib"):
                assert time.time() < end, "helper never (re)learned 10.2.0.1"
                time.sleep(0.1)
        assert wa.wait(r"path 10.3.0.1/32 .*withdraw=false", timeout=60), "a never got h's path"
        time.sleep(2)
        if helper == "frr":
            nj = json.loads(lab.vtysh("h", "show bgp neighbor 192.0.2.1 json"))["192.0.2.1"]
            if i == 0:
                print("FRR neighbor GR info:", json.dumps(nj.get("gracefulRestartInfo")), "| caps:", json.dumps({k: v for k, v in nj.get("neighborCapabilities", {}).items() if "raceful" in k or "llgr" in k.lower() or "longLived" in k}))
        else:
            if i == 0:
                st = json.loads(lab.gobgp("h", "neighbor 192.0.2.1 -j"))
                print("helper gobgpd neighbor GR:", json.dumps(st.get("graceful_restart")), json.dumps([a.get("mp_graceful_restart") for a in st.get("afi_safis", [])]))
        mr = rm.mark(); mk = wh.mark() if helper != "frr" else 0
        samples.clear(); stop_sampler.clear()
        th = threading.Thread(target=sampler, daemon=True); th.start()
        t0 = time.time()
        ap = lab.nodes["a"]["gobgpd"]
        if method == "sigterm": os.kill(ap.pid, signal.SIGTERM)
        elif method == "stopgr":
            sh(f"{CTL} unix://{lab.nodes['a']['sock']} stop-gr"); os.kill(ap.pid, signal.SIGTERM)
        elif method in ("sigkill", "never"): os.kill(ap.pid, signal.SIGKILL)
        ap.wait()
        t_dead = time.time()
        wa.stop()
        observe = (100 if "llgr" in opts else 45) if method == "never" else 18
        if method != "never":
            time.sleep(3)
            t_start = time.time()
            start_a(True)
            t_api = time.time()
            if readd == "early": add_paths()
            elif readd == "late":
                time.sleep(4); add_paths()
            t_added = time.time()
        while time.time() < t0 + observe:
            time.sleep(0.2)
        stop_sampler.set(); th.join()
        # compress the samples into state changes
        changes = []
        for t, st in samples:
            if not changes or changes[-1][1] != st:
                changes.append((round(t - t0, 2), st))
        kern = [(round(t - t0, 2), l.split(" proto")[0]) for t, l in rm.all(r"10\.2\.0\.1", since=mr)]
        line = f"run {i}: dead at {t_dead-t0:.2f}s"
        if method != "never":
            line += f", restarted at {t_start-t0:.2f}s (API {t_api-t0:.2f}s), paths added at {t_added-t0:.2f}s"
        print(line)
        print("   helper's view of 10.2.0.1 (time since stop, state):", changes)
        print("   helper's kernel route events:", kern)
        if helper != "frr":
            print("   helper watch:", [(round(t - t0, 2), x) for t, x in wh.all(r"10\.2\.0\.1|peer 192|eor", since=mk)])
        summary.append((changes, kern))
        if method == "never":
            break
    if helper == "frr":
        print("FRR GR info at end:", json.dumps(json.loads(lab.vtysh("h", "show bgp neighbor 192.0.2.1 json"))["192.0.2.1"].get("gracefulRestartInfo")))
    rm.stop()
finally:
    lab.close()
