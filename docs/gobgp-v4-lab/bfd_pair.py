"""BFD and hold-time failure detection between two gobgpd (a observes, b fails).
usage: bfd_pair.py VERSION CASE N    CASE: bfd300 | hold3 | hold9 | bfd300grpc
"""
import os, sys, time, json, signal; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *

ver, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
actions = sys.argv[4].split(",") if len(sys.argv) > 4 else ["link", "stop", "kill"]
PEERTOOL = CTL
def bfd(ms, mult=3):
    return f"""  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = {ms*1000}
    required-minimum-receive = {ms*1000}
    detection-multiplier = {mult}
"""
hold = {"bfd300": 9, "bfd300grpc": 9, "hold3": 3, "hold9": 9}[case]
extra = bfd(300) if case == "bfd300" else ""
lab = Lab(f"-{ver}-{case}")
res = {a: {"withdraw": [], "peerdown": []} for a in actions}
try:
    lab.node("a", "192.0.2.1"); lab.node("b", "192.0.2.2")
    def start_b():
        nbb = [] if case == "bfd300grpc" else [dict(addr="192.0.2.1", asn=65000, hold=hold, keepalive=hold//3, extra=extra)]
        lab.gobgpd("b", ver, gobgp_toml(65000, "192.0.2.2", nbb))
        lab.wait_api("b")
        if case == "bfd300grpc":
            print(sh(f"{PEERTOOL} unix://{lab.nodes['b']['sock']} add 192.0.2.1 65000 {hold} 300 3 0"))
        lab.gobgp("b", "global rib add 10.2.0.1/32 nexthop 192.0.2.2")
    nb = [] if case == "bfd300grpc" else [dict(addr="192.0.2.2", asn=65000, hold=hold, keepalive=hold//3, extra=extra)]
    lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", nb))
    lab.wait_api("a")
    if case == "bfd300grpc":
        print(sh(f"{PEERTOOL} unix://{lab.nodes['a']['sock']} add 192.0.2.2 65000 {hold} 300 3 0"))
    wa = lab.watch("a")
    t0 = time.time()
    start_b()
    def bfd_up():
        st = json.loads(lab.gobgp("a", "neighbor 192.0.2.2 -j")).get("state", {}).get("bfd_state", {})
        return st.get("session_state") == 1
    def ready(since, what):
        """Until b's path has been in a's RIB for 4 s without a withdrawal (and BFD
        is up): (s to the path's first return, s to the stable return, resets between)."""
        t_restore = time.time()
        since0 = since
        first = None
        flaps = 0
        deadline = time.time() + 180
        while time.time() < deadline:
            e = wa.wait(r"path 10.2.0.1/32 .*withdraw=false", since=since, timeout=deadline - time.time())
            assert e, f"path never (re)appeared ({what})"
            first = first or e[0]
            w = wa.wait(r"path 10.2.0.1/32 .*withdraw=true", since=e[2] + 1, timeout=4)
            if w:
                flaps += 1
                since = w[2] + 1
                continue
            if "bfd" in case and not bfd_up():
                since = e[2]  # same path, look again
                time.sleep(0.5)
                continue
            assert "10.2.0.1/32" in lab.gobgp("a", "global rib"), "watch and RIB disagree"
            ups = len(wa.all(r"peer 192.0.2.2 Established", since=since0))
            return first - t_restore, e[0] - t_restore, max(flaps, ups - 1)
        raise RuntimeError(f"never stable ({what})")
    restore = {a: [] for a in actions}
    e = ready(0, "first")
    print(f"first established+path after {time.time()-t0-4:.2f}s (stable {e})")
    for i in range(n):
        for act in actions:
            m = wa.mark(); t = time.time()
            bp = lab.nodes["b"]["gobgpd"]
            if act == "link": lab.link("b", False)
            elif act == "stop": os.kill(bp.pid, signal.SIGSTOP)
            elif act == "kill": os.kill(bp.pid, signal.SIGKILL)
            w = wa.wait(r"path 10.2.0.1/32 .*withdraw=true", since=m, timeout=hold + 10)
            p = wa.wait(r"peer 192.0.2.2 (Idle|Active|Connect)", since=m, timeout=2 if w else 1)
            res[act]["withdraw"].append((w[0]-t)*1000 if w else None)
            res[act]["peerdown"].append((p[0]-t)*1000 if p else None)
            print(f"{case} {act} #{i}: withdraw {res[act]['withdraw'][-1]} ms, peer down {res[act]['peerdown'][-1]} ms", flush=True)
            m2 = wa.mark()
            if act == "link": lab.link("b", True)
            elif act == "stop": os.kill(bp.pid, signal.SIGCONT)
            elif act == "kill": bp.wait(); start_b()
            r = ready(m2, f"{act} #{i}")
            restore[act].append(r)
            print(f"   restored: path back after {r[0]:.1f}s, stable after {r[1]:.1f}s, {r[2]} resets in between", flush=True)
    print("peer state a->b at end:", json.dumps(json.loads(lab.gobgp("a", "neighbor 192.0.2.2 -j")).get("state", {}).get("bfd_state")))
    for act in actions:
        for k in ("withdraw", "peerdown"):
            xs = [x for x in res[act][k] if x is not None]
            print(f"RESULT {ver} {case} {act} {k}: {stats(xs)} missing={len(res[act][k])-len(xs)} all={[round(x) if x else None for x in res[act][k]]}")
    for act in actions:
        rs = restore[act]
        print(f"RESULT {ver} {case} {act} restore: back {stats([r[0]*1000 for r in rs])}; stable {stats([r[1]*1000 for r in rs])}; resets {[r[2] for r in rs]}")
finally:
    lab.close()
