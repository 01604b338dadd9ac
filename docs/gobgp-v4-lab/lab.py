"""A small lab for measuring gobgpd v3/v4, FRR and BIRD in network namespaces (docs/gobgp-v4.md).

Run as root from anywhere; logs and configs go to $LAB_RUNS (default /tmp/gobgp-v4-lab). Every
namespace and link carries a per-run prefix (hv4XXXX); every process is started here and killed
here by pid; the namespaces are deleted at the end (also when a script fails).
"""
import os, re, shutil, signal, subprocess, threading, time, json, statistics, random, sys

# The repository's measuring tools: `cargo build -p ipvlan-bgp --examples` first.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WATCH = os.environ.get("GOBGP_WATCH", f"{REPO}/target/debug/examples/gobgp_watch")
CTL = os.environ.get("GOBGP_V4_CTL", f"{REPO}/target/debug/examples/gobgp_v4_ctl")
RUNS = os.environ.get("LAB_RUNS", "/tmp/gobgp-v4-lab")
GOBGPD = {"v3": "/usr/bin/gobgpd", "v4": "/usr/local/bin/gobgpd-v4"}
GOBGP = {"v3": "/usr/bin/gobgp", "v4": "/usr/local/bin/gobgp-v4"}


def sh(cmd, check=True, ns=None, timeout=30):
    if ns:
        cmd = f"ip netns exec {ns} {cmd}"
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: rc={r.returncode} {r.stderr.strip()}")
    return r.stdout


class Watch:
    """gobgp_watch on a gobgpd's API: lines (time, text) in a list."""

    def __init__(self, sock, log):
        self.lines = []
        self.lock = threading.Lock()
        self.p = subprocess.Popen([WATCH, f"unix://{sock}"], stdout=subprocess.PIPE,
                                  stderr=open(log, "w"), text=True, bufsize=1)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for l in self.p.stdout:
            ts, _, text = l.rstrip("\n").partition(" ")
            with self.lock:
                self.lines.append((float(ts), text))

    def mark(self):
        with self.lock:
            return len(self.lines)

    def wait(self, pattern, since=0, timeout=30):
        """First line matching `pattern` at index >= since: (time, text)."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                for i, (ts, text) in enumerate(self.lines[since:]):
                    if rx.search(text):
                        return ts, text, since + i
            time.sleep(0.01)
        return None

    def all(self, pattern, since=0):
        rx = re.compile(pattern)
        with self.lock:
            return [(ts, t) for ts, t in self.lines[since:] if rx.search(t)]

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


class RouteMon:
    """`ip -ts monitor route` in a namespace: kernel route events with times."""

    def __init__(self, ns, log):
        self.lines = []
        self.lock = threading.Lock()
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, "ip", "monitor", "route"],
                                  stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, bufsize=1)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for l in self.p.stdout:
            with self.lock:
                self.lines.append((time.time(), l.rstrip("\n")))

    def mark(self):
        with self.lock:
            return len(self.lines)

    def wait(self, pattern, since=0, timeout=30):
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                for ts, text in self.lines[since:]:
                    if rx.search(text):
                        return ts, text
            time.sleep(0.01)
        return None

    def all(self, pattern, since=0):
        rx = re.compile(pattern)
        with self.lock:
            return [(ts, t) for ts, t in self.lines[since:] if rx.search(t)]

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


class Lab:
    def __init__(self, tag=""):
        self.prefix = "hv4%04x" % random.randrange(0x10000)  # per-run prefix
        self.dir = f"{RUNS}/{self.prefix}{tag}"
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []  # (name, Popen)
        self.watches = []
        self.nodes = {}
        self.sw = self.prefix + "sw"
        sh(f"ip netns add {self.sw}")
        sh("ip link add br0 type bridge", ns=self.sw)
        sh("ip link set br0 up", ns=self.sw)
        sh("ip link set lo up", ns=self.sw)

    def ns(self, name):
        return self.prefix + name

    def node(self, name, ip4, ip6=None):
        ns = self.ns(name)
        sh(f"ip netns add {ns}")
        swl = f"{self.prefix}{name}"[:15]
        sh(f"ip link add eth0 netns {ns} type veth peer name {swl} netns {self.sw}")
        sh(f"ip link set {swl} master br0 up", ns=self.sw)
        sh("ip link set lo up", ns=ns)
        sh(f"ip addr add {ip4}/24 dev eth0", ns=ns)
        if ip6:
            sh(f"ip -6 addr add {ip6}/64 dev eth0 nodad", ns=ns)
        sh("ip link set eth0 up", ns=ns)
        d = f"{self.dir}/{name}"
        os.makedirs(d, exist_ok=True)
        self.nodes[name] = {"ns": ns, "ip": ip4, "swlink": swl, "dir": d}
        return self.nodes[name]

    def link(self, name, up):
        n = self.nodes[name]
        sh(f"ip link set {n['swlink']} {'up' if up else 'down'}", ns=self.sw)

    def spawn(self, name, ns, argv, log, cwd=None):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=open(log, "a"),
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        self.procs.append((name, p))
        return p

    def gobgpd(self, name, ver, toml, extra=()):
        n = self.nodes[name]
        with open(f"{n['dir']}/gobgpd.toml", "w") as f:
            f.write(toml)
        sock = f"{n['dir']}/api.sock"
        if os.path.exists(sock):  # left by a killed gobgpd
            os.unlink(sock)
        p = self.spawn(f"gobgpd-{name}", n["ns"],
                       [GOBGPD[ver], "-p", "--pprof-disable", "-f", f"{n['dir']}/gobgpd.toml",
                        f"--api-hosts=unix://{sock}", *extra], f"{n['dir']}/gobgpd.log")
        n["gobgpd"] = p
        n["ver"] = ver
        n["sock"] = sock
        return p

    def gobgp(self, name, args, check=True):
        n = self.nodes[name]
        return sh(f"{GOBGP[n['ver']]} --target unix://{n['sock']} {args}", check=check)

    def wait_api(self, name, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            try:
                out = self.gobgp(name, "global")
                if "AS:" in out and "AS:        0" not in out:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gobgpd on {name} never answered")

    def watch(self, name):
        n = self.nodes[name]
        w = Watch(n["sock"], f"{n['dir']}/watch-{len(self.watches)}.log")
        self.watches.append(w)
        return w

    def frr(self, name, bgpd_conf, bfdd_conf=None):
        n = self.nodes[name]
        d = n["dir"] + "/frr"
        os.makedirs(d, exist_ok=True)
        open(f"{d}/zebra.conf", "w").write(f"hostname {name}\n")
        open(f"{d}/bgpd.conf", "w").write(bgpd_conf)
        if bfdd_conf is not None:
            open(f"{d}/bfdd.conf", "w").write(bfdd_conf)
        shutil.chown(d, "frr", "frr")
        for f in os.listdir(d):
            shutil.chown(f"{d}/{f}", "frr", "frr")

        def common(dm):
            return ["-f", f"{d}/{dm}.conf", "-i", f"{d}/{dm}.pid", "-z", f"{d}/zserv.api",
                    "--vty_socket", d, "-A", "127.0.0.1", "-P", "0"]
        self.spawn(f"zebra-{name}", n["ns"], ["/usr/lib/frr/zebra"] + common("zebra"), f"{d}/zebra.log")
        end = time.time() + 20
        while not os.path.exists(f"{d}/zserv.api"):
            if time.time() > end:
                raise RuntimeError("zebra")
            time.sleep(0.05)
        if bfdd_conf is not None:
            self.spawn(f"bfdd-{name}", n["ns"], ["/usr/lib/frr/bfdd"] + common("bfdd") +
                       ["--bfdctl", f"{d}/bfdd.sock"], f"{d}/bfdd.log")
        n["bgpd"] = self.spawn(f"bgpd-{name}", n["ns"], ["/usr/lib/frr/bgpd"] + common("bgpd"), f"{d}/bgpd.log")
        n["frrdir"] = d
        end = time.time() + 20
        while True:
            try:
                self.vtysh(name, "show bgp summary json")
                break
            except Exception:
                if time.time() > end:
                    raise
                time.sleep(0.1)

    def vtysh(self, name, cmd):
        n = self.nodes[name]
        return sh(f"vtysh --vty_socket {n['frrdir']} -c '{cmd}'", ns=n["ns"])

    def bird(self, name, conf):
        n = self.nodes[name]
        d = n["dir"]
        open(f"{d}/bird.conf", "w").write(conf)
        n["bird"] = self.spawn(f"bird-{name}", n["ns"], ["bird", "-f", "-c", f"{d}/bird.conf", "-s", f"{d}/bird.ctl"],
                               f"{d}/bird.log")
        n["birdctl"] = f"{d}/bird.ctl"
        end = time.time() + 10
        while not os.path.exists(f"{d}/bird.ctl"):
            if time.time() > end:
                raise RuntimeError("bird")
            time.sleep(0.05)

    def birdc(self, name, cmd):
        n = self.nodes[name]
        return sh(f"birdc -s {n['birdctl']} {cmd}", check=False)

    def kill(self, p, sig=signal.SIGKILL):
        if p.poll() is None:
            os.kill(p.pid, sig)

    def close(self):
        for w in self.watches:
            w.stop()
        for name, p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except Exception:
                pass
        # FRR daemons may have been stopped above by pid; the namespaces go last.
        for n in self.nodes.values():
            sh(f"ip netns del {n['ns']}", check=False)
        sh(f"ip netns del {self.sw}", check=False)


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return "n=0"
    return f"n={len(xs)} median={statistics.median(xs):.0f} min={xs[0]:.0f} max={xs[-1]:.0f} ms"


def gobgp_toml(asn, rid, neighbors, extra_global=""):
    """neighbors: list of dicts with addr, asn, and optional toml snippets."""
    s = f"""[global.config]
  as = {asn}
  router-id = "{rid}"
  local-address-list = ["{rid}"]
{extra_global}
"""
    for nb in neighbors:
        s += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{nb['addr']}"
    peer-as = {nb['asn']}
  [neighbors.timers.config]
    connect-retry = {nb.get('connect_retry', 1)}
    hold-time = {nb.get('hold', 9)}
    keepalive-interval = {nb.get('keepalive', 3)}
    idle-hold-time-after-reset = {nb.get('idle_hold', 1)}
{nb.get('extra', '')}
"""
    return s
