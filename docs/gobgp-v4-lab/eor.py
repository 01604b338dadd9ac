"""End-of-RIB over the API: a (gobgpd VER) peers with PEER (frr | v4 | v3), GR on|off.
usage: eor.py VER PEER on|off"""
import os, sys, time, json; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, peer, gr = sys.argv[1:4]
GR = """  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
""" if gr == "on" else ""
lab = Lab(f"-eor-{ver}-{peer}-{gr}")
P = "192.0.2.3"
try:
    lab.node("a", "192.0.2.1"); lab.node("p", P)
    if peer == "frr":
        lab.frr("p", f"""frr defaults datacenter
hostname p
router bgp 65100
 bgp router-id {P}
 no bgp ebgp-requires-policy
 no bgp network import-check
 {"bgp graceful-restart" if gr == "on" else "bgp graceful-restart-disable"}
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 timers connect 1
 address-family ipv4 unicast
  network 10.3.0.1/32
 exit-address-family
!
""")
    else:
        lab.gobgpd("p", peer, gobgp_toml(65100, P, [dict(addr="192.0.2.1", asn=65000, extra=GR)]))
        lab.wait_api("p")
        lab.gobgp("p", "global rib add 10.3.0.1/32 nexthop 192.0.2.3")
    lab.gobgpd("a", ver, gobgp_toml(65000, "192.0.2.1", [dict(addr=P, asn=65100, extra=GR)]))
    lab.wait_api("a")
    wa = lab.watch("a")
    assert wa.wait(r"path 10.3.0.1/32", timeout=60)
    time.sleep(3)
    print(f"--- a=gobgpd {ver}, peer={peer}, graceful restart {gr}")
    print("a's watch (peer, path, eor events):", [x[:110] for _, x in wa.all(r"eor|path|Established")])
    j = json.loads(lab.gobgp("a", f"neighbor {P} -j"))
    print("a's ListPeer afi_safis:", json.dumps([{k: v for k, v in x.items() if k in ("mp_graceful_restart", "config")} for x in j.get("afi_safis", [])]))
    print("a's ListPeer graceful_restart:", json.dumps(j.get("graceful_restart")))
finally:
    lab.close()
