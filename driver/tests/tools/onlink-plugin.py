#!/usr/bin/env python3
"""A throwaway remote IPAM and network driver in one plugin, to learn what
dockerd 20.10 accepts from the cluster-wide IPAM (docs/ipam.md, "host
routes"): container addresses as /32 and /128 from a /16 and /64 pool, the
gateway with the pool's length, and a Join that answers StaticRoutes.

usage: onlink-plugin.py SOCKET OUT.jsonl   (driven by probe-dockerd-onlink.sh)
MODE=onlink (default): Join gives the gateway and a connected route to it
alone; MODE=connected: a connected default route (ipvlan L3's answer);
MODE=plain: the gateway alone (what fails with a /32). The network driver
makes a macvlan on `up0` per endpoint. Never part of the driver or the tests.
"""
import ipaddress, json, os, socketserver, subprocess, sys
from http.server import BaseHTTPRequestHandler
SOCK, OUT = sys.argv[1], sys.argv[2]
MODE = os.environ.get("MODE", "onlink")  # onlink | connected | plain
pools = {}; nets = {}; eps = {}
def sh(*a): subprocess.run(a, check=True)
def answer(path, body):
    if path == "/Plugin.Activate": return {"Implements": ["IpamDriver", "NetworkDriver"]}
    if path == "/IpamDriver.GetCapabilities": return {"RequiresMACAddress": False, "RequiresRequestReplay": False}
    if path == "/IpamDriver.GetDefaultAddressSpaces": return {"LocalDefaultAddressSpace": "ol-local", "GlobalDefaultAddressSpace": "ol-global"}
    if path == "/IpamDriver.RequestPool":
        net = ipaddress.ip_network(body["Pool"]); pid = "ol/%s" % net
        pools.setdefault(pid, (net, set())); return {"PoolID": pid, "Pool": str(net), "Data": {}}
    if path == "/IpamDriver.ReleasePool": return {}
    if path == "/IpamDriver.RequestAddress":
        net, taken = pools[body["PoolID"]]
        gw = (body.get("Options") or {}).get("RequestAddressType") == "com.docker.network.gateway"
        addr = ipaddress.ip_address(body["Address"]) if body.get("Address") else next(a for a in net.hosts() if a not in taken)
        taken.add(addr)
        l = net.prefixlen if gw else net.max_prefixlen  # containers: host routes
        return {"Address": "%s/%d" % (addr, l), "Data": {}}
    if path == "/IpamDriver.ReleaseAddress": return {}
    if path == "/NetworkDriver.GetCapabilities": return {"Scope": "local", "ConnectivityScope": "global"}
    if path == "/NetworkDriver.CreateNetwork":
        nets[body["NetworkID"]] = body; return {}
    if path == "/NetworkDriver.CreateEndpoint": eps[body["EndpointID"]] = body; return {}
    if path == "/NetworkDriver.Join":
        n = nets[body["NetworkID"]]; e = body["EndpointID"]; name = "ol" + e[:8]
        sh("ip", "link", "add", name, "link", "up0", "type", "macvlan", "mode", "bridge")
        r = {"InterfaceName": {"SrcName": name, "DstPrefix": "eth"}, "DisableGatewayService": True, "StaticRoutes": []}
        for fam, key, gk in (("4", "IPv4Data", "Gateway"), ("6", "IPv6Data", "GatewayIPv6")):
            for d in n.get(key) or []:
                gw = d["Gateway"].split("/")[0]
                if MODE == "onlink":
                    r["StaticRoutes"].append({"Destination": gw + ("/32" if fam == "4" else "/128"), "RouteType": 1})
                    r[gk] = gw
                elif MODE == "connected":
                    r["StaticRoutes"].append({"Destination": "0.0.0.0/0" if fam == "4" else "::/0", "RouteType": 1})
                else:
                    r[gk] = gw
        return r
    if path in ("/NetworkDriver.Leave", "/NetworkDriver.DeleteNetwork", "/NetworkDriver.ProgramExternalConnectivity", "/NetworkDriver.RevokeExternalConnectivity"): return {}
    if path == "/NetworkDriver.DeleteEndpoint":
        subprocess.run(["ip", "link", "del", "ol" + body["EndpointID"][:8]]); return {}
    if path == "/NetworkDriver.EndpointOperInfo": return {"Value": {}}
    return None
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw.strip() else {}
        try: resp = answer(self.path, body or {})
        except Exception as ex: resp = {"Err": "plugin: %r" % ex}
        st = 404 if resp is None else 500 if "Err" in resp else 200
        with open(OUT, "a") as f: f.write(json.dumps({"path": self.path, "body": body, "answer": resp}) + "\n")
        out = b"" if resp is None else json.dumps(resp).encode()
        self.send_response(st); self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    def get_request(self):
        r, _ = super().get_request(); return r, ("local", 0)
if os.path.exists(SOCK): os.unlink(SOCK)
S(SOCK, H).serve_forever()
