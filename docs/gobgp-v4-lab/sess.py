"""Time from starting two gobgpd (same line, connect-retry 1, each with the other as neighbour) to
Established in a's WatchEvent. usage: sess.py VER N"""
import os, sys, time, statistics; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, n = sys.argv[1], int(sys.argv[2])
xs = []
for i in range(n):
    lab = Lab(f"-sess-{ver}")
    try:
        lab.node("a", "192.0.2.1"); lab.node("b", "192.0.2.2")
        t0 = time.time()
        lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", [dict(addr="192.0.2.2", asn=65000)]))
        lab.gobgpd("b", ver, gobgp_toml(65000, "192.0.2.2", [dict(addr="192.0.2.1", asn=65000)]))
        lab.wait_api("a")
        w = lab.watch("a")
        e = w.wait(r"Established|state=6", timeout=60)
        xs.append((e[0] - t0) * 1000)
    finally:
        lab.close()
print(f"RESULT {ver} start to Established: {stats(xs)} all={[round(x) for x in xs]}")
