"""GRACEFUL_SHUTDOWN (65535:0) on receipt: r learns 10.5.0.1/32 from a and b; a is preferred
until it adds 65535:0. usage: gshut.py RECEIVER ebgp|ibgp [policy]
RECEIVER: frr | frrgs (FRR with 'bgp graceful-shutdown') | bird | v4 | v3"""
import os, sys, time, json; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
rk, kind = sys.argv[1:3]
pol = len(sys.argv) > 3 and sys.argv[3] == "policy"
lab = Lab(f"-gshut-{rk}-{kind}")
R = "192.0.2.3"
try:
    lab.node("a", "192.0.2.1"); lab.node("b", "192.0.2.2"); lab.node("r", R)
    ras = 65100
    asa, asb = (65001, 65002) if kind == "ebgp" else (65100, 65100)
    if rk.startswith("frr"):
        conf = f"""frr defaults datacenter
hostname r
router bgp {ras}
 bgp router-id {R}
 no bgp ebgp-requires-policy
 {"bgp graceful-shutdown" if rk == "frrgs" else ""}
 neighbor 192.0.2.1 remote-as {asa}
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.2 remote-as {asb}
 neighbor 192.0.2.2 timers connect 1
!
"""
        lab.frr("r", conf)
    elif rk == "bird":
        gw = ""
        conf = f"""router id {R};
protocol device {{ }}
protocol direct {{ ipv4; }}
protocol bgp pa {{ local {R} as {ras}; neighbor 192.0.2.1 as {asa}; direct; connect delay time 1; connect retry time 1; ipv4 {{ import all; export none; {gw} }}; }}
protocol bgp pb {{ local {R} as {ras}; neighbor 192.0.2.2 as {asb}; direct; connect delay time 1; connect retry time 1; ipv4 {{ import all; export none; {gw} }}; }}
"""
        lab.bird("r", conf)
    else:
        lab.gobgpd("r", rk, gobgp_toml(ras, R, [dict(addr="192.0.2.1", asn=asa), dict(addr="192.0.2.2", asn=asb)]))
        lab.wait_api("r")
        if pol:
            for c in ["policy community add gshut 65535:0", "policy statement add gshutlp",
                      "policy statement gshutlp add condition community gshut",
                      "policy statement gshutlp add action local-pref 1",
                      "policy add gshutpol gshutlp", "global policy import add gshutpol default accept"]:
                lab.gobgp("r", c)
    lab.gobgpd("a", "v4", gobgp_toml(asa, "192.0.2.1", [dict(addr=R, asn=ras)]))
    lab.gobgpd("b", "v4", gobgp_toml(asb, "192.0.2.2", [dict(addr=R, asn=ras)]))
    lab.wait_api("a"); lab.wait_api("b")
    if kind == "ebgp":
        lab.gobgp("b", "global rib add 10.5.0.1/32 nexthop 192.0.2.2 aspath 65002")
    else:
        lab.gobgp("b", "global rib add 10.5.0.1/32 nexthop 192.0.2.2 local-pref 90")
    lab.gobgp("a", "global rib add 10.5.0.1/32 nexthop 192.0.2.1")
    def view():
        if rk.startswith("frr"):
            j = json.loads(lab.vtysh("r", "show bgp ipv4 unicast 10.5.0.1/32 json"))
            return [(p.get("peer", {}).get("peerId"), "BEST" if p.get("bestpath", {}).get("overall") else "-",
                     f"lp={p.get('locPrf')}", p.get("aspath", {}).get("string"), p.get("community", {}).get("string")) for p in j.get("paths", [])]
        if rk == "bird":
            return [l.strip() for l in lab.birdc("r", "show route for 10.5.0.1/32").splitlines()
                    if "unicast" in l or "via" in l]
        j = json.loads(lab.gobgp("r", "global rib 10.5.0.1/32 -j") or "{}")
        out = []
        for p in j.get("10.5.0.1/32", []):
            attrs = {a["type"]: a for a in p.get("attrs", [])}
            out.append((attrs.get(3, {}).get("nexthop"), "BEST" if p.get("best") else "-", f"lp={attrs.get(5, {}).get('value')}", attrs.get(8, {}).get("communities")))
        return out
    end = time.time() + 60
    while time.time() < end:
        v = view()
        if len(v) >= (2 if rk != "bird" else 4) and ("192.0.2.1" in str(v) and "192.0.2.2" in str(v)):
            break
        time.sleep(0.5)
    time.sleep(2)
    print(f"--- receiver {rk} {kind}{' +gshut import policy' if pol else ''}")
    print("before GSHUT:", view())
    lab.gobgp("a", "global rib add 10.5.0.1/32 nexthop 192.0.2.1 community 65535:0")
    time.sleep(3)
    print("after a added 65535:0:", view())
finally:
    lab.close()
