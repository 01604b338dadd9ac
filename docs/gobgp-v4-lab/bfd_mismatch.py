"""BFD with different settings on the two gobgpd-v4: a (A_MS x 3) and b (B_MS x 3, 0 = no BFD).
usage: bfd_mismatch.py A_MS B_MS"""
import os, sys, time, json, signal; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
a_ms, b_ms = int(sys.argv[1]), int(sys.argv[2])
def bfd(ms):
    return "" if ms == 0 else f"""  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = {ms*1000}
    required-minimum-receive = {ms*1000}
    detection-multiplier = 3
"""
lab = Lab(f"-bfdmm-{a_ms}-{b_ms}")
try:
    lab.node("a", "192.0.2.1"); lab.node("b", "192.0.2.2")
    lab.gobgpd("a", "v4", gobgp_toml(65000, "192.0.2.1", [dict(addr="192.0.2.2", asn=65000, extra=bfd(a_ms))]))
    lab.gobgpd("b", "v4", gobgp_toml(65000, "192.0.2.2", [dict(addr="192.0.2.1", asn=65000, extra=bfd(b_ms))]))
    lab.wait_api("a"); lab.wait_api("b")
    wa = lab.watch("a"); wb = lab.watch("b")
    lab.gobgp("b", "global rib add 10.2.0.1/32 nexthop 192.0.2.2")
    lab.gobgp("a", "global rib add 10.1.0.1/32 nexthop 192.0.2.1")
    t0 = time.time()
    time.sleep(40)
    def st(n, p):
        j = json.loads(lab.gobgp(n, f"neighbor {p} -j"))["state"]
        return dict(session=j.get("session_state"), flops=j.get("flops", 0), bfd=j.get("bfd_state"))
    print(f"--- a: BFD {a_ms or 'off'} ms x3, b: BFD {b_ms or 'off'} ms x3, 40 s after start")
    print("a's view of b:", json.dumps(st("a", "192.0.2.2")))
    print("b's view of a:", json.dumps(st("b", "192.0.2.1")))
    print("a: Established events:", len(wa.all("peer 192.0.2.2 Established")), " b's path withdrawn at a:", len(wa.all(r"10.2.0.1/32 .*withdraw=true")))
    up = wa.all(r"10.2.0.1/32 .*withdraw=false")
    print("a first got b's path at", round(up[0][0] - t0, 1) if up else None, "s")
    # detection each way when both have BFD and the session is up
    if a_ms and b_ms and "10.2.0.1" in lab.gobgp("a", "global rib") and "10.1.0.1" in lab.gobgp("b", "global rib"):
        m, mb = wa.mark(), wb.mark(); t = time.time()
        lab.link("b", False)
        e = wa.wait(r"10.2.0.1/32 .*withdraw=true", since=m, timeout=15)
        f = wb.wait(r"10.1.0.1/32 .*withdraw=true", since=mb, timeout=15)
        print(f"link of b cut: a withdrew b's path after {round((e[0]-t)*1000) if e else None} ms; b withdrew a's after {round((f[0]-t)*1000) if f else None} ms")
finally:
    lab.close()
