"""Local paths on both lines: the CLI's age and what WatchEvent says (neighbor_ip). usage: agechk.py"""
import os, sys, time, json; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
for ver in ["v3", "v4"]:
    lab = Lab(f"-age-{ver}")
    try:
        lab.node("a", "192.0.2.1")
        lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", []))
        lab.wait_api("a")
        w = lab.watch("a")
        lab.gobgp("a", "global rib add 10.1.0.1/32 nexthop 192.0.2.1")
        time.sleep(1.2)
        j = json.loads(lab.gobgp("a", "global rib -j"))
        print(ver, "CLI age of a local path:", [p.get("age") for p in j["10.1.0.1/32"]], "now", int(time.time()))
        print(ver, "watch:", [x for _, x in w.all("path|line")])
    finally:
        lab.close()
