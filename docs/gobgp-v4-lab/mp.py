"""Multipath: a (gobgpd VER, use-multiple-paths) learns 10.9.0.1/32 from b and c.
usage: mp.py VER ebgp|ibgp on|off"""
import os, sys, time, json; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, kind, mpo = sys.argv[1:4]
lab = Lab(f"-mp-{ver}-{kind}-{mpo}")
try:
    lab.node("a", "192.0.2.1"); lab.node("b", "192.0.2.2"); lab.node("c", "192.0.2.3")
    asb, asc = (65001, 65002) if kind == "ebgp" else (65000, 65000)
    mp = "[global.use-multiple-paths.config]\n  enabled = true\n" if mpo == "on" else ""
    lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", [dict(addr="192.0.2.2", asn=asb), dict(addr="192.0.2.3", asn=asc)], mp))
    lab.gobgpd("b", "v4", gobgp_toml(asb, "192.0.2.2", [dict(addr="192.0.2.1", asn=65000)]))
    lab.gobgpd("c", "v4", gobgp_toml(asc, "192.0.2.3", [dict(addr="192.0.2.1", asn=65000)]))
    for x in "abc": lab.wait_api(x)
    wa = lab.watch("a")
    lab.gobgp("b", "global rib add 10.9.0.1/32 nexthop 192.0.2.2")
    assert wa.wait(r"path 10.9.0.1/32 .*192.0.2.2", timeout=60)
    time.sleep(1)
    m = wa.mark()
    lab.gobgp("c", "global rib add 10.9.0.1/32 nexthop 192.0.2.3")
    e = wa.wait(r"path 10.9.0.1/32 .*192.0.2.3", since=m, timeout=60)
    time.sleep(1.5)
    print(f"--- {ver} {kind} multipath={mpo}")
    print("after c announced:", [x for _, x in wa.all(r"table|path", since=m)])
    print("gobgp global rib:\n" + lab.gobgp("a", "global rib"))
    # init dump of a fresh watcher
    w2 = lab.watch("a"); time.sleep(1)
    print("fresh watch init dump:", [x for _, x in w2.all(r"table|path")])
    m = wa.mark()
    lab.gobgp("b", "global rib del 10.9.0.1/32")
    time.sleep(1.5)
    print("after b withdrew:", [x for _, x in wa.all(r"table|path", since=m)])
    m = wa.mark()
    lab.gobgp("b", "global rib add 10.9.0.1/32 nexthop 192.0.2.2 med 10")
    time.sleep(1.5)
    print("after b re-announced with MED 10:", [x for _, x in wa.all(r"table|path", since=m)])
finally:
    lab.close()
