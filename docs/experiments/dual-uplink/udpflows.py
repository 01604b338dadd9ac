#!/usr/bin/python3
"""UDP flows for the dual-uplink experiments (no iperf/socat on this machine,
busybox nc has no UDP).

  udpflows.py echo --bind ADDR --port-base P --flows N [--duration S]
      one socket per port P..P+N-1, every datagram is sent back to its sender.
  udpflows.py send --src ADDR --dst ADDR --port-base P --flows N
                   --interval S --duration S [--json FILE] [--start-at EPOCH]
      flow i goes from SRC:P+i to DST:P+i (so each flow is its own 5-tuple),
      one datagram per flow every INTERVAL; counts the echoes per flow and the
      longest run of consecutive lost sequence numbers (an outage, in ms of
      sending time). Prints one JSON object. --unconnected sends with
      sendto() from sockets that are not connect()ed.

Only addresses inside the experiment's own namespaces are used.
"""
import argparse, json, selectors, socket, struct, sys, time

HDR = struct.Struct("!IId")  # flow, seq, send time


def echo(a):
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(a.flows):
        s = socket.socket(socket.AF_INET6 if ":" in a.bind else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a.bind, a.port_base + i))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    print("ready", flush=True)
    end = time.monotonic() + a.duration
    n = 0
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            try:
                while True:
                    data, peer = key.fileobj.recvfrom(2048)
                    key.fileobj.sendto(data, peer)
                    n += 1
            except BlockingIOError:
                pass
    print(json.dumps({"echoed": n}), flush=True)


def send(a):
    fam = socket.AF_INET6 if ":" in a.dst else socket.AF_INET
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(a.flows):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((a.src, a.port_base + i))
        if not a.unconnected:
            # a connected UDP socket gets a random sk_txhash, which the kernel
            # stamps on every skb it sends (e5-hash.sh shows what that does)
            s.connect((a.dst, a.port_base + i))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    got = [set() for _ in range(a.flows)]
    rtts = []
    if a.start_at:
        while time.time() < a.start_at:
            time.sleep(0.001)
    t0 = time.monotonic()
    seq = 0
    nxt = t0
    wall0 = time.time()
    while True:
        now = time.monotonic()
        if now >= nxt:
            if now - t0 >= a.duration:
                break
            for i, s in enumerate(socks):
                try:
                    s.sendto(HDR.pack(i, seq, now) + b"x" * 32, (a.dst, a.port_base + i))
                except OSError:
                    pass  # ENETUNREACH etc: counted as lost
            seq += 1
            nxt += a.interval
            if nxt < now:  # fell behind: do not burst
                nxt = now + a.interval
        for key, _ in sel.select(timeout=max(0.0, nxt - time.monotonic())):
            try:
                while True:
                    data = key.fileobj.recv(2048)
                    f, q, ts = HDR.unpack_from(data)
                    got[f].add(q)
                    rtts.append(time.monotonic() - ts)
            except (BlockingIOError, ConnectionRefusedError):
                pass
    # late echoes
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.05):
            try:
                while True:
                    f, q, ts = HDR.unpack_from(key.fileobj.recv(2048))
                    got[f].add(q)
            except (BlockingIOError, ConnectionRefusedError):
                pass
    flows = []
    for i in range(a.flows):
        longest = run = 0
        first_lost = None
        for q in range(seq):
            if q in got[i]:
                run = 0
            else:
                if first_lost is None:
                    first_lost = q
                run += 1
                longest = max(longest, run)
        flows.append({"flow": i, "sent": seq, "echoed": len(got[i]),
                      "lost": seq - len(got[i]),
                      "longest_outage_ms": round(longest * a.interval * 1000),
                      "first_lost_ms": None if first_lost is None else round(first_lost * a.interval * 1000)})
    rtts.sort()
    out = {"start_epoch": wall0, "interval_ms": a.interval * 1000, "flows": flows,
           "sent": sum(f["sent"] for f in flows), "echoed": sum(f["echoed"] for f in flows),
           "flows_with_loss": sum(1 for f in flows if f["lost"]),
           "rtt_ms_p50": round(rtts[len(rtts) // 2] * 1000, 2) if rtts else None}
    js = json.dumps(out)
    if a.json:
        with open(a.json, "w") as fh:
            fh.write(js + "\n")
    print(js, flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--bind", required=True)
    e.add_argument("--port-base", type=int, required=True)
    e.add_argument("--flows", type=int, required=True)
    e.add_argument("--duration", type=float, default=3600)
    s = sub.add_parser("send")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--port-base", type=int, required=True)
    s.add_argument("--flows", type=int, required=True)
    s.add_argument("--interval", type=float, default=0.01)
    s.add_argument("--duration", type=float, default=2)
    s.add_argument("--start-at", type=float, default=0)
    s.add_argument("--json")
    s.add_argument("--unconnected", action="store_true",
                   help="sendto() on unbound-peer sockets: no socket tx hash on the packets")
    a = p.parse_args()
    (echo if a.cmd == "echo" else send)(a)


if __name__ == "__main__":
    sys.exit(main())
