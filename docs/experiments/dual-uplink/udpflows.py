#!/usr/bin/python3
"""UDP flows for the dual-uplink experiments (no iperf/socat on this machine,
busybox nc has no UDP).

  udpflows.py echo --bind ADDR --port-base P --flows N [--duration S] [--stats FILE]
      one socket per port P..P+N-1, every datagram is sent back to its sender;
      on SIGUSR1 writes what it received (per sender run and flow) to FILE.
  udpflows.py send --src ADDR --dst ADDR --port-base P --flows N
                   --interval S --duration S [--json FILE] [--start-at EPOCH]
      flow i goes from SRC:P+i to DST:P+i (so each flow is its own 5-tuple),
      one datagram per flow every INTERVAL; counts the echoes per flow and the
      longest run of consecutive lost sequence numbers (an outage, in ms of
      sending time). Prints one JSON object. --unconnected sends with
      sendto() from sockets that are not connect()ed.

  udpflows.py combine --sender SENDER.json --stats ECHO-STATS.json
      splits each flow's loss into forward (lost before the echo) and back.

Only addresses inside the experiment's own namespaces are used.
"""
import argparse, json, selectors, socket, struct, sys, time

HDR = struct.Struct("!IIId")  # run, flow, seq, send time


def ranges(seqs):
    out, start, prev = [], None, None
    for q in sorted(seqs):
        if start is None:
            start = prev = q
        elif q == prev + 1:
            prev = q
        else:
            out.append([start, prev])
            start = prev = q
    if start is not None:
        out.append([start, prev])
    return out


def echo(a):
    import signal
    seen = {}  # run -> flow -> set of seqs received (what came forward)

    def dump(*_):
        if a.stats:
            tmp = a.stats + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({str(r): {str(f): ranges(q) for f, q in fl.items()} for r, fl in seen.items()}, fh)
            import os
            os.replace(tmp, a.stats)

    signal.signal(signal.SIGUSR1, dump)
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
        try:
            ready = sel.select(timeout=0.2)
        except InterruptedError:
            continue
        for key, _ in ready:
            try:
                while True:
                    data, peer = key.fileobj.recvfrom(2048)
                    key.fileobj.sendto(data, peer)
                    n += 1
                    if len(data) >= HDR.size:
                        r, f, q, _ = HDR.unpack_from(data)
                        seen.setdefault(r, {}).setdefault(f, set()).add(q)
            except (BlockingIOError, InterruptedError):
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
    late = [0] * a.flows  # echoes that came back after --late-ms: counted lost
    import random
    run_id = random.getrandbits(32)
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
                    s.sendto(HDR.pack(run_id, i, seq, now) + b"x" * 32, (a.dst, a.port_base + i))
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
                    _, f, q, ts = HDR.unpack_from(data)
                    rtt = time.monotonic() - ts
                    if rtt * 1000 > a.late_ms:
                        late[f] += 1
                    else:
                        got[f].add(q)
                    rtts.append(rtt)
            except (BlockingIOError, ConnectionRefusedError):
                pass
    # late echoes
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.05):
            try:
                while True:
                    _, f, q, ts = HDR.unpack_from(key.fileobj.recv(2048))
                    if (time.monotonic() - ts) * 1000 > a.late_ms:
                        late[f] += 1
                    else:
                        got[f].add(q)
            except (BlockingIOError, ConnectionRefusedError):
                pass
    flows = []
    for i in range(a.flows):
        longest = run = 0
        first_lost = None
        gaps = []  # [first lost seq, how many] per run of losses
        for q in range(seq):
            if q in got[i]:
                run = 0
            else:
                if first_lost is None:
                    first_lost = q
                if run == 0:
                    gaps.append([q, 0])
                gaps[-1][1] += 1
                run += 1
                longest = max(longest, run)
        flows.append({"flow": i, "sent": seq, "echoed": len(got[i]), "late": late[i],
                      "lost": seq - len(got[i]),
                      "longest_outage_ms": round(longest * a.interval * 1000),
                      "first_lost_ms": None if first_lost is None else round(first_lost * a.interval * 1000),
                      "gaps_ms": [[round(g * a.interval * 1000), round(n * a.interval * 1000)] for g, n in gaps]})
    rtts.sort()
    out = {"run": run_id, "start_epoch": wall0, "interval_ms": a.interval * 1000, "flows": flows,
           "sent": sum(f["sent"] for f in flows), "echoed": sum(f["echoed"] for f in flows),
           "flows_with_loss": sum(1 for f in flows if f["lost"]),
           "late": sum(late), "late_ms": a.late_ms,
           "rtt_ms_p50": round(rtts[len(rtts) // 2] * 1000, 2) if rtts else None}
    js = json.dumps(out)
    if a.json:
        with open(a.json, "w") as fh:
            fh.write(js + "\n")
    print(js, flush=True)


def longest_gap(have, total):
    longest = run = 0
    for q in range(total):
        run = 0 if q in have else run + 1
        longest = max(longest, run)
    return longest


def combine(a):
    """sender JSON + echo stats -> per flow: lost forward (c1->c2) and back."""
    j = json.load(open(a.sender))
    st = json.load(open(a.stats)).get(str(j["run"]), {})
    iv = j["interval_ms"]
    sent = j["flows"][0]["sent"] if j["flows"] else 0
    fwd_lost = []
    fwd_out = []
    for f in j["flows"]:
        have = set()
        for lo, hi in st.get(str(f["flow"]), []):
            have.update(range(lo, hi + 1))
        fwd_lost.append(f["sent"] - len(have))
        fwd_out.append(round(longest_gap(have, f["sent"]) * iv))
        f["forward_lost"] = fwd_lost[-1]
        f["back_lost"] = len(have) - f["echoed"]  # includes late echoes
        f["forward_longest_outage_ms"] = fwd_out[-1]
    j["forward_lost"] = sum(fwd_lost)
    j["back_lost"] = sum(f["back_lost"] for f in j["flows"])
    j["flows_losing_forward"] = sum(1 for x in fwd_lost if x)
    j["flows_losing_back"] = sum(1 for f in j["flows"] if f["back_lost"])
    print(json.dumps(j))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--bind", required=True)
    e.add_argument("--port-base", type=int, required=True)
    e.add_argument("--flows", type=int, required=True)
    e.add_argument("--duration", type=float, default=3600)
    e.add_argument("--stats", help="on SIGUSR1, write the sequence numbers received per run and flow here")
    s = sub.add_parser("send")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--port-base", type=int, required=True)
    s.add_argument("--flows", type=int, required=True)
    s.add_argument("--interval", type=float, default=0.01)
    s.add_argument("--duration", type=float, default=2)
    s.add_argument("--start-at", type=float, default=0)
    s.add_argument("--json")
    s.add_argument("--late-ms", type=float, default=1000,
                   help="an echo back after this many ms counts as lost (a neighbour queue can hold packets for seconds)")
    s.add_argument("--unconnected", action="store_true",
                   help="sendto() on unbound-peer sockets: no socket tx hash on the packets")
    c = sub.add_parser("combine")
    c.add_argument("--sender", required=True)
    c.add_argument("--stats", required=True)
    a = p.parse_args()
    {"echo": echo, "send": send, "combine": combine}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
