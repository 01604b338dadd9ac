#!/usr/bin/env python3
"""A throwaway remote IPAM plugin that records what dockerd sends.

Serves Docker's plugin protocol (HTTP over a unix socket) with a trivial
in-memory allocator and appends one JSON line per request to a file:
label (read from LABEL_FILE at the time of the request: what the driving
script was doing), method path, headers, body, and the answer it gave.
Only for recording fixtures (driver/tests/fixtures/dockerd-ipam-requests.jsonl);
never part of the driver or the tests.

usage: ipam-recorder.py SOCKET OUT.jsonl LABEL_FILE
An address in REFUSE (an env var, comma separated) is answered with an Err
and HTTP 200, one in REFUSE500 with an Err and HTTP 500, to record what the
user sees in each case.
"""
import ipaddress
import json
import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

SOCK, OUT, LABEL_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
REFUSE = set(filter(None, os.environ.get("REFUSE", "").split(",")))
REFUSE500 = set(filter(None, os.environ.get("REFUSE500", "").split(",")))
pools = {}  # pool id -> (network, set of taken addresses)
DEFAULT_POOLS = {False: "10.99.0.0/24", True: "fd00:99::/64"}


def answer(path, body):
    if path == "/Plugin.Activate":
        return {"Implements": ["IpamDriver"]}
    if path == "/IpamDriver.GetCapabilities":
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}
    if path == "/IpamDriver.GetDefaultAddressSpaces":
        return {"LocalDefaultAddressSpace": "rec-local", "GlobalDefaultAddressSpace": "rec-global"}
    if path == "/IpamDriver.RequestPool":
        pool = body.get("Pool") or DEFAULT_POOLS[bool(body.get("V6"))]
        net = ipaddress.ip_network(pool)
        pid = "%s/%s" % (body.get("AddressSpace"), net)
        if body.get("SubPool"):
            pid += "/" + body["SubPool"]
        pools.setdefault(pid, (net, set()))
        return {"PoolID": pid, "Pool": str(net), "Data": {}}
    if path == "/IpamDriver.ReleasePool":
        pools.pop(body.get("PoolID"), None)
        return {}
    if path == "/IpamDriver.RequestAddress":
        net, taken = pools[body["PoolID"]]
        want = body.get("Address") or ""
        if want in REFUSE500:
            return {"Err": "address %s is taken on another host (recorder refusal, HTTP 500)" % want}
        if want in REFUSE:
            return {"Err": "address %s is taken on another host (recorder refusal)" % want}
        if want:
            addr = ipaddress.ip_address(want)
        else:
            addr = next(a for a in net.hosts() if a not in taken)
        taken.add(addr)
        return {"Address": "%s/%d" % (addr, net.prefixlen), "Data": {}}
    if path == "/IpamDriver.ReleaseAddress":
        net, taken = pools.get(body.get("PoolID"), (None, set()))
        taken.discard(ipaddress.ip_address(body["Address"]))
        return {}
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = raw.decode(errors="replace")
        try:
            resp = answer(self.path, body or {})
        except Exception as e:  # a recorder bug shows up in the fixture
            resp = {"Err": "recorder: %r" % e}
        status = 404 if resp is None else 500 if "HTTP 500" in resp.get("Err", "") else 200
        out = b"" if resp is None else json.dumps(resp).encode()
        try:
            label = open(LABEL_FILE).read().strip()
        except OSError:
            label = ""
        with open(OUT, "a") as f:
            f.write(json.dumps({"label": label, "path": self.path, "headers": dict(self.headers),
                                "body": body, "status": status, "answer": resp}) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        req, _ = super().get_request()
        return req, ("local", 0)


if os.path.exists(SOCK):
    os.unlink(SOCK)
Server(SOCK, Handler).serve_forever()
