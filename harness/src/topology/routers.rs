//! Real routers in scenarios: FRR (zebra + bgpd, + bfdd when a neighbour
//! runs BFD) and BIRD 2, each in its
//! own network namespace, wired to its segments ([`wire_router`]) and
//! configured from the scenario (the files come from [`super::configs`],
//! the neighbours from [`super::sessions`], the processes are
//! [`super::daemon::Daemon`]s).
//!
//! In: a [`RouterDef`] and its neighbours resolved to addresses and AS
//! numbers. Out: running daemons (started with `ip netns exec`, as FRR and
//! BIRD expect their own /sys; foreground, so their pid is ours to stop),
//! their BGP and BFD session states, and the router's own view of its routes read
//! back from `vtysh -c 'show ip route json'` or `birdc show route` — the
//! evidence that interop works from the router's side too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use nix::sys::signal::Signal;

use super::configs::{self, bird_name, Neighbor, Timers};
use super::daemon::{await_ready, Daemon};
use super::sessions;
use super::wire::{make_ns, wire};
use crate::cleanup::Cleanup;
use crate::netns::Netns;
use crate::scenario::{RouterDef, RouterKind, Scenario};
use crate::util::{require, run_output, scaled, tail};

const FRR_DIR: &str = "/usr/lib/frr";
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a router's daemon may take to answer after its start.
const READY_WITHIN: Duration = Duration::from_secs(20);

pub struct RouterRt {
    pub def: RouterDef,
    pub ns: Netns,
    pub dir: PathBuf,
    /// Interface name per segment.
    pub ifaces: BTreeMap<String, String>,
    pub neighbors: Vec<Neighbor>,
    pub timers: Timers,
    /// FRR runs multipath (`as-path multipath-relax`, `maximum-paths`)
    /// when the scenario has dual-homed hosts: then `Some`, with the
    /// addresses of its dual-homed host neighbours (their own paths only).
    pub multipath: Option<Vec<IpAddr>>,
    pub daemons: Vec<Daemon>,
    pub cleanup: Arc<Cleanup>,
}

/// The interface a router has on `segment`.
pub fn iface_name(segment: &str) -> String {
    format!("e-{segment}")
}

/// Router `ri` of the scenario wired: its namespace (forwarding both
/// families), a wire and its addresses on each of its segments, its
/// neighbours from the session planner; no daemon yet ([`RouterRt::start`]).
pub fn wire_router(
    s: &Scenario,
    cleanup: &Arc<Cleanup>,
    id: &str,
    dir: &Path,
    switch: &Netns,
    ri: usize,
    def: &RouterDef,
) -> Result<RouterRt> {
    let ns = make_ns(cleanup, &format!("{id}-r-{}", def.name))?;
    let mut ifaces = BTreeMap::new();
    let mut lines = Vec::new();
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv6.conf.all.forwarding", "1"),
        // The links made next get their link-local address without
        // DAD: FRR's bgpd sends it as the IPv6 next hop beside the
        // global one, and waits for it before a session starts.
        ("net.ipv6.conf.default.accept_dad", "0"),
        // Routers spread flows over equal paths by ports too, as a
        // fabric's switches do: with the default (addresses only) a spine
        // sends every flow between two containers to the same ToR.
        ("net.ipv4.fib_multipath_hash_policy", "1"),
        ("net.ipv6.fib_multipath_hash_policy", "1"),
    ] {
        ns.sysctl(k, v)?;
    }
    for (seg, addr) in &def.links {
        let iface = iface_name(seg);
        let port = format!("r{ri}-{seg}");
        wire(&ns, &iface, switch, &port, seg)
            .with_context(|| format!("wire router {} to segment {seg}", def.name))?;
        lines.push(format!("addr add {addr} dev {iface}"));
        if let Some(a6) = def.links6.get(seg) {
            lines.push(format!("addr add {a6} dev {iface} nodad"));
        }
        lines.push(format!("link set {iface} up"));
        ifaces.insert(seg.clone(), iface);
    }
    ns.ip_batch(&lines)?;
    let rdir = dir.join(format!("r-{}", def.name));
    std::fs::create_dir_all(&rdir)?;
    let neighbors = sessions::router_neighbours(s, def)?;
    let multipath = s.has_uplinks().then(|| {
        neighbors
            .iter()
            .filter(|n| s.host(&n.name).is_some_and(|h| !h.uplink_links.is_empty()))
            .map(|n| n.addr)
            .collect()
    });
    Ok(RouterRt {
        def: def.clone(),
        ns,
        dir: rdir,
        ifaces,
        neighbors,
        timers: Timers::from(&s.bgp),
        multipath,
        daemons: Vec::new(),
        cleanup: cleanup.clone(),
    })
}

impl RouterRt {
    fn router_id(&self) -> Ipv4Addr {
        self.def
            .links
            .values()
            .map(|a| a.addr())
            .min()
            .unwrap_or(Ipv4Addr::new(192, 0, 2, 254))
    }

    /// Writes the configuration and starts the daemons; waits until they answer.
    pub fn start(&mut self) -> Result<()> {
        match self.def.kind {
            RouterKind::Frr => self.start_frr(),
            RouterKind::Bird => self.start_bird(),
        }
        .with_context(|| format!("start router {}", self.def.name))
    }

    /// Starts one of the router's daemons with `ip netns exec`: FRR and BIRD
    /// expect the namespace's own /sys, which `setns` alone does not give.
    fn spawn(&mut self, prog: &Path, args: &[String], log: &str) -> Result<()> {
        let d = Daemon::new(self.dir.join(log));
        let mut full = vec![
            "netns".to_string(),
            "exec".into(),
            self.ns.name.clone(),
            prog.display().to_string(),
        ];
        full.extend_from_slice(args);
        d.spawn(None, &require("ip")?, &full)?;
        d.stop_at_cleanup(
            &self.cleanup,
            format!("stop {} on router {}", prog.display(), self.def.name),
        );
        self.daemons.push(d);
        Ok(())
    }

    /// Waits until `ready` answers, failing early if one of the router's
    /// daemons has exited.
    fn wait(&self, what: &str, ready: impl FnMut() -> Result<()>) -> Result<()> {
        let daemons: Vec<&Daemon> = self.daemons.iter().collect();
        await_ready(
            &format!("{what} on router {}", self.def.name),
            &daemons,
            scaled(READY_WITHIN),
            Duration::from_millis(50),
            ready,
        )?;
        Ok(())
    }

    fn start_frr(&mut self) -> Result<()> {
        let zebra = Path::new(FRR_DIR).join("zebra");
        let bgpd = Path::new(FRR_DIR).join("bgpd");
        let bfdd = Path::new(FRR_DIR).join("bfdd");
        if !zebra.is_file() || !bgpd.is_file() {
            bail!("FRR is not installed ({FRR_DIR}/zebra, bgpd)");
        }
        let d = self.dir.clone();
        std::fs::write(
            d.join("zebra.conf"),
            format!("hostname {}\n", self.def.name),
        )?;
        let bfd_conf = configs::frr_bfdd(&self.def, &self.neighbors, self.timers);
        if let Some(text) = &bfd_conf {
            if !bfdd.is_file() {
                bail!("FRR's {} is missing: the scenario runs BFD", bfdd.display());
            }
            std::fs::write(d.join("bfdd.conf"), text)?;
        }
        std::fs::write(
            d.join("bgpd.conf"),
            configs::frr(
                &self.def,
                self.router_id(),
                &self.neighbors,
                self.timers,
                None,
                self.multipath.as_deref(),
            ),
        )?;
        // FRR's daemons drop to the frr user (so PR_SET_PDEATHSIG does not
        // survive; a killed run's daemons are killed by the namespace sweep):
        // the folder must be theirs.
        if let Ok(Some(u)) = nix::unistd::User::from_name("frr") {
            for entry in std::fs::read_dir(&d)?.flatten() {
                let _ = nix::unistd::chown(&entry.path(), Some(u.uid), Some(u.gid));
            }
            let _ = nix::unistd::chown(&d, Some(u.uid), Some(u.gid));
        }
        let common = |name: &str| -> Vec<String> {
            vec![
                "-f".into(),
                d.join(format!("{name}.conf")).display().to_string(),
                "-i".into(),
                d.join(format!("{name}.pid")).display().to_string(),
                "-z".into(),
                d.join("zserv.api").display().to_string(),
                "--vty_socket".into(),
                d.display().to_string(),
                "-A".into(),
                "127.0.0.1".into(),
                "-P".into(),
                "0".into(),
            ]
        };
        // A restarted router (router-up) finds the socket its last zebra
        // left: waiting for the file alone let bfdd and bgpd start before
        // the new zebra listened, and bgpd's BFD registrations were lost
        // (tor-failover: BFD between the routers never came back).
        let zs = d.join("zserv.api");
        match std::fs::remove_file(&zs) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("remove the stale {}: {e}", zs.display()),
        }
        self.spawn(&zebra, &common("zebra"), "zebra.log")?;
        self.wait("zebra", || {
            if zs.exists() {
                Ok(())
            } else {
                bail!("no {} yet", zs.display())
            }
        })?;
        // bfdd before bgpd: bgpd registers its BFD peers with bfdd through
        // zebra, and a session that comes up before bfdd runs has none.
        if bfd_conf.is_some() {
            let mut args = common("bfdd");
            args.extend(["--bfdctl".into(), d.join("bfdd.sock").display().to_string()]);
            self.spawn(&bfdd, &args, "bfdd.log")?;
            self.wait("bfdd", || self.vtysh("show bfd peers json").map(drop))?;
        }
        self.spawn(&bgpd, &common("bgpd"), "bgpd.log")?;
        self.wait("bgpd", || self.vtysh("show bgp summary json").map(drop))?;
        Ok(())
    }

    fn start_bird(&mut self) -> Result<()> {
        let bird = require("bird")?;
        let d = self.dir.clone();
        std::fs::write(
            d.join("bird.conf"),
            configs::bird(
                &self.def,
                self.router_id(),
                &self.neighbors,
                self.timers,
                None,
            ),
        )?;
        let args = vec![
            "-f".into(),
            "-c".into(),
            d.join("bird.conf").display().to_string(),
            "-s".into(),
            d.join("bird.ctl").display().to_string(),
            "-P".into(),
            d.join("bird.pid").display().to_string(),
        ];
        self.spawn(&bird, &args, "bird.log")?;
        self.wait("bird", || self.birdc("show status").map(drop))?;
        Ok(())
    }

    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        let d = self.dir.display().to_string();
        let out = self
            .ns
            .exec("vtysh", &["--vty_socket", &d, "-c", cmd], CMD_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "vtysh -c '{cmd}' on {}: {}",
                self.def.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn birdc(&self, cmd: &str) -> Result<String> {
        let ctl = self.dir.join("bird.ctl").display().to_string();
        let mut args = vec!["-s", ctl.as_str()];
        args.extend(cmd.split_whitespace());
        let out = run_output("birdc", &args, CMD_TIMEOUT)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            bail!(
                "birdc {cmd} on {}: {}{}",
                self.def.name,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// Session state per neighbour address (true = established).
    pub fn sessions(&self) -> Result<Vec<(String, bool)>> {
        match self.def.kind {
            RouterKind::Frr => {
                let v: serde_json::Value =
                    serde_json::from_str(&self.vtysh("show bgp ipv4 unicast summary json")?)?;
                let peers = v
                    .get("peers")
                    .and_then(|p| p.as_object())
                    .cloned()
                    .unwrap_or_default();
                Ok(self
                    .neighbors
                    .iter()
                    .map(|n| {
                        let up = peers
                            .get(&n.addr.to_string())
                            .and_then(|p| p.get("state"))
                            .and_then(|s| s.as_str())
                            == Some("Established");
                        (format!("{} ({})", n.addr, n.name), up)
                    })
                    .collect())
            }
            RouterKind::Bird => {
                let text = self.birdc("show protocols")?;
                Ok(self
                    .neighbors
                    .iter()
                    .map(|n| {
                        let name = bird_name(&n.name);
                        let up = text.lines().any(|l| {
                            l.split_whitespace().next() == Some(name.as_str())
                                && l.contains("Established")
                        });
                        (format!("{} ({})", n.addr, n.name), up)
                    })
                    .collect())
            }
        }
    }

    /// BFD state per neighbour that runs it (FRR's `show bfd peers json`;
    /// true = up); empty when the router runs no BFD.
    pub fn bfd_sessions(&self) -> Result<Vec<(String, bool)>> {
        let mine: Vec<&Neighbor> = self.neighbors.iter().filter(|n| n.bfd).collect();
        if mine.is_empty() || self.timers.bfd.is_none() || self.def.kind != RouterKind::Frr {
            return Ok(Vec::new());
        }
        let v: serde_json::Value = serde_json::from_str(&self.vtysh("show bfd peers json")?)
            .context("show bfd peers json")?;
        let peers = v.as_array().cloned().unwrap_or_default();
        Ok(mine
            .iter()
            .map(|n| {
                let up = peers.iter().any(|p| {
                    p.get("peer").and_then(|a| a.as_str()) == Some(n.addr.to_string().as_str())
                        && p.get("status").and_then(|s| s.as_str()) == Some("up")
                });
                (format!("{} ({}) BFD", n.addr, n.name), up)
            })
            .collect())
    }

    /// The router's selected routes: prefix -> next hops (FRR: the entries
    /// zebra marks selected; BIRD: `show route primary`, never the
    /// alternatives it holds but does not use).
    pub fn routes(&self) -> Result<BTreeMap<IpNet, Vec<IpAddr>>> {
        match self.def.kind {
            RouterKind::Frr => {
                let mut all = parse_frr_routes(&self.vtysh("show ip route json")?)?;
                all.extend(parse_frr_routes(&self.vtysh("show ipv6 route json")?)?);
                Ok(all)
            }
            RouterKind::Bird => Ok(parse_bird_routes(&self.birdc("show route primary")?)),
        }
    }

    /// The router's IPv6 link-local addresses (on every link).
    pub fn link_locals(&self) -> Vec<IpAddr> {
        let text = self
            .ns
            .ip(&["-6", "-br", "addr", "show", "scope", "link"])
            .unwrap_or_default();
        text.split_whitespace()
            .filter_map(|w| w.split('/').next()?.parse::<IpAddr>().ok())
            .collect()
    }

    /// The router dies as a powered-off box does: its links go dark first,
    /// then its daemons are killed, so that no FIN, RST, NOTIFICATION or
    /// BFD "down" from the dying processes reaches a peer (killed first,
    /// their kernel would close the TCP sessions cleanly and the peers
    /// would see the death at once, whatever their timers).
    pub fn down(&mut self) -> Result<()> {
        let links: Vec<String> = self
            .ifaces
            .values()
            .map(|i| format!("link set {i} down"))
            .collect();
        self.ns.ip_batch(&links)?;
        for d in self.daemons.drain(..) {
            d.signal(Signal::SIGKILL)?;
        }
        Ok(())
    }

    pub fn up(&mut self) -> Result<()> {
        for i in self.ifaces.values() {
            self.ns.ip(&["link", "set", i, "up"])?;
        }
        self.start()
    }

    pub fn stop(&mut self) -> Result<()> {
        for d in self.daemons.drain(..) {
            d.signal(Signal::SIGTERM)?;
        }
        Ok(())
    }

    pub fn diagnostics(&self) -> String {
        let mut out = format!(
            "\n===== router {} ({:?} AS {}, namespace {}) =====\n",
            self.def.name, self.def.kind, self.def.asn, self.ns.name
        );
        if let Ok(s) = self.ns.ip(&["route"]) {
            out.push_str(&format!("$ ip route\n{s}"));
        }
        if let Ok(s) = self.ns.ip(&["-6", "route"]) {
            out.push_str(&format!("$ ip -6 route\n{s}"));
        }
        let bfd = self.neighbors.iter().any(|n| n.bfd) && self.timers.bfd.is_some();
        let cmds: &[&str] = match self.def.kind {
            RouterKind::Frr if bfd => &[
                "show bgp summary",
                "show bfd peers",
                "show ip bgp",
                "show bgp ipv6 unicast",
                "show ip route",
                "show ipv6 route",
            ],
            RouterKind::Frr => &[
                "show bgp summary",
                "show ip bgp",
                "show bgp ipv6 unicast",
                "show ip route",
                "show ipv6 route",
            ],
            RouterKind::Bird => &["show protocols", "show route all"],
        };
        for c in cmds {
            let r = match self.def.kind {
                RouterKind::Frr => self.vtysh(c),
                RouterKind::Bird => self.birdc(c),
            };
            out.push_str(&format!(
                "$ {c}\n{}\n",
                r.unwrap_or_else(|e| format!("({e:#})"))
            ));
        }
        for d in &self.daemons {
            out.push_str(&format!(
                "--- {} (tail) ---\n{}\n",
                d.log.display(),
                tail(&d.log, 15)
            ));
        }
        out
    }
}

fn parse_frr_routes(json: &str) -> Result<BTreeMap<IpNet, Vec<IpAddr>>> {
    let v: serde_json::Value = serde_json::from_str(json).context("show ip route json")?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("show ip route json: not an object"))?;
    let mut out = BTreeMap::new();
    for (prefix, entries) in obj {
        let Ok(p) = prefix.parse::<IpNet>() else {
            continue;
        };
        let mut hops = Vec::new();
        // Only zebra's selected entries count: a prefix whose every entry
        // lost the selection is not a route the router uses.
        let mut selected = false;
        for e in entries.as_array().into_iter().flatten() {
            if e.get("selected").and_then(|s| s.as_bool()) != Some(true) {
                continue;
            }
            selected = true;
            for nh in e
                .get("nexthops")
                .and_then(|n| n.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(ip) = nh
                    .get("ip")
                    .and_then(|i| i.as_str())
                    .and_then(|i| i.parse().ok())
                {
                    hops.push(ip);
                }
            }
        }
        if selected {
            out.insert(p, hops);
        }
    }
    Ok(out)
}

fn parse_bird_routes(text: &str) -> BTreeMap<IpNet, Vec<IpAddr>> {
    let mut out: BTreeMap<IpNet, Vec<IpAddr>> = BTreeMap::new();
    let mut current: Option<IpNet> = None;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if !line.starts_with(char::is_whitespace) {
            current = first.parse::<IpNet>().ok();
            if let Some(p) = current {
                out.entry(p).or_default();
            }
            continue;
        }
        if let (Some(p), "via") = (current, first) {
            if let Some(ip) = line.split_whitespace().nth(1).and_then(|a| a.parse().ok()) {
                out.entry(p).or_default().push(ip);
            }
        }
    }
    out
}

/// The addresses a router uses on a neighbour's segment (for `via` checks).
pub fn address_towards(def: &RouterDef, peer: Ipv4Addr) -> Option<Ipv4Net> {
    def.links.values().find(|a| a.contains(&peer)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frr_routes_parse() {
        let j = r#"{"10.20.1.2/32":[{"prefix":"10.20.1.2/32","protocol":"bgp","selected":true,
            "nexthops":[{"ip":"192.0.2.10","afi":"ipv4","active":true}]}],
            "192.0.2.0/26":[{"protocol":"connected","selected":true,"nexthops":[{"directlyConnected":true}]}]}"#;
        let r = parse_frr_routes(j).unwrap();
        assert_eq!(
            r[&"10.20.1.2/32".parse::<IpNet>().unwrap()],
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
        );
        assert!(r[&"192.0.2.0/26".parse::<IpNet>().unwrap()].is_empty());
        // A prefix none of whose entries is selected is not a route the router uses.
        let j = r#"{"10.20.3.2/32":[{"prefix":"10.20.3.2/32","protocol":"bgp",
            "nexthops":[{"ip":"192.0.2.11","afi":"ipv4"}]}]}"#;
        assert!(parse_frr_routes(j).unwrap().is_empty());
    }

    #[test]
    fn bird_routes_parse() {
        let t = "BIRD 2.0.12 ready.\nTable master4:\n10.20.1.2/32         unicast [n_h1 08:29:59.123] * (100) [AS65001i]\n\tvia 192.0.2.10 on e-rack1\n10.20.99.0/24        blackhole [own_routes 08:29:58.000] * (200)\n";
        let r = parse_bird_routes(t);
        assert_eq!(
            r[&"10.20.1.2/32".parse::<IpNet>().unwrap()],
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
        );
        assert!(r[&"10.20.99.0/24".parse::<IpNet>().unwrap()].is_empty());
    }
}
