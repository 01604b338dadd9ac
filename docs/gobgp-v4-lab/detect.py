"""Cost of telling 3.x from 4.x: gobgp_watch's first GetBgp on a fresh channel, 10 times per line. usage: detect.py"""
import os, sys, time, json, subprocess, statistics; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
for ver in ["v3", "v4"]:
    lab = Lab(f"-det-{ver}")
    try:
        lab.node("a", "192.0.2.1")
        lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", []))
        lab.wait_api("a")
        xs = []
        for i in range(10):
            p = subprocess.Popen([WATCH, f"unix://{lab.nodes['a']['sock']}"], stdout=subprocess.PIPE, text=True)
            l = p.stdout.readline(); p.kill(); p.wait()
            m = re.search(r"detected in ([0-9.]+)(µs|ms)", l)
            xs.append(float(m.group(1)) / (1000 if m.group(2) == "µs" else 1))
            print(l.strip())
        print(f"RESULT detection on {ver}: first GetBgp (v4 path) on a fresh channel: n={len(xs)} median={statistics.median(xs):.2f} ms min={min(xs):.2f} max={max(xs):.2f}")
    finally:
        lab.close()
