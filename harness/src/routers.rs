//! Real routers in scenarios: FRR (zebra + bgpd) and BIRD 2, each in its
//! own network namespace, configured from the scenario.
//!
//! In: a [`RouterDef`] and its neighbours resolved to addresses and AS
//! numbers. Out: running daemons (started with `ip netns exec`, as FRR and
//! BIRD expect their own /sys; foreground, so their pid is ours to stop),
//! their BGP session states, and the router's own view of its routes read
//! back from `vtysh -c 'show ip route json'` or `birdc show route` — the
//! evidence that interop works from the router's side too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use nix::sys::signal::Signal;

use crate::netns::{spawn_in, Netns};
use crate::scenario::{RouterDef, RouterKind};
use crate::util::{require, run_output, tail};
use crate::world::Daemon;

const FRR_DIR: &str = "/usr/lib/frr";
const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// A BGP neighbour of a router, resolved.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub name: String,
    pub addr: Ipv4Addr,
    pub asn: u32,
    pub rr_client: bool,
}

/// BGP timers for every session of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub hold: u64,
    pub keepalive: u64,
    pub connect_retry: u64,
}

pub struct RouterRt {
    pub def: RouterDef,
    pub ns: Netns,
    pub dir: PathBuf,
    /// Interface name per segment.
    pub ifaces: BTreeMap<String, String>,
    pub neighbors: Vec<Neighbor>,
    pub timers: Timers,
    pub daemons: Vec<Daemon>,
    pub cleanup: std::sync::Arc<crate::cleanup::Cleanup>,
}

/// The interface a router has on `segment`.
pub fn iface_name(segment: &str) -> String {
    format!("e-{segment}")
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

    fn spawn(&mut self, prog: &Path, args: &[String], log: &str) -> Result<()> {
        let d = Daemon::new(self.dir.join(log));
        let mut full = vec![
            "netns".to_string(),
            "exec".into(),
            self.ns.name.clone(),
            prog.display().to_string(),
        ];
        full.extend_from_slice(args);
        let child = spawn_in(None, &require("ip")?, &full, &d.log)?;
        *d.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let d2 = d.clone();
        self.cleanup.push(
            format!("stop {} on router {}", prog.display(), self.def.name),
            move || d2.signal(Signal::SIGTERM),
        );
        self.daemons.push(d);
        Ok(())
    }

    fn wait(&self, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if let Some(dead) = self.daemons.iter().find(|d| !d.running()) {
                bail!("{what}: a daemon exited:\n{}", tail(&dead.log, 20));
            }
            if Instant::now() > deadline {
                bail!("{what} not ready after 20s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn start_frr(&mut self) -> Result<()> {
        let zebra = Path::new(FRR_DIR).join("zebra");
        let bgpd = Path::new(FRR_DIR).join("bgpd");
        if !zebra.is_file() || !bgpd.is_file() {
            bail!("FRR is not installed ({FRR_DIR}/zebra, bgpd)");
        }
        let d = self.dir.clone();
        std::fs::write(
            d.join("zebra.conf"),
            format!("hostname {}\n", self.def.name),
        )?;
        std::fs::write(d.join("bgpd.conf"), self.frr_config())?;
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
        self.spawn(&zebra, &common("zebra"), "zebra.log")?;
        let zs = d.join("zserv.api");
        self.wait("zebra", || zs.exists())?;
        self.spawn(&bgpd, &common("bgpd"), "bgpd.log")?;
        self.wait("bgpd", || self.vtysh("show bgp summary json").is_ok())?;
        Ok(())
    }

    fn frr_config(&self) -> String {
        let t = self.timers;
        let mut c = format!(
            "frr defaults datacenter\nhostname {name}\nlog stdout informational\n!\nrouter bgp {asn}\n bgp router-id {rid}\n no bgp ebgp-requires-policy\n no bgp network import-check\n",
            name = self.def.name,
            asn = self.def.asn,
            rid = self.router_id()
        );
        for n in &self.neighbors {
            c.push_str(&format!(
                " neighbor {a} remote-as {asn}\n neighbor {a} description {name}\n neighbor {a} timers {k} {h}\n neighbor {a} timers connect {cr}\n",
                a = n.addr,
                asn = n.asn,
                name = n.name,
                k = t.keepalive,
                h = t.hold,
                cr = t.connect_retry
            ));
        }
        c.push_str(" !\n address-family ipv4 unicast\n");
        for p in &self.def.originate {
            c.push_str(&format!("  network {p}\n"));
        }
        for n in self.neighbors.iter().filter(|n| n.rr_client) {
            c.push_str(&format!("  neighbor {} route-reflector-client\n", n.addr));
        }
        c.push_str(" exit-address-family\n!\n");
        c
    }

    fn start_bird(&mut self) -> Result<()> {
        let bird = require("bird")?;
        let d = self.dir.clone();
        std::fs::write(d.join("bird.conf"), self.bird_config())?;
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
        self.wait("bird", || self.birdc("show status").is_ok())?;
        Ok(())
    }

    fn bird_config(&self) -> String {
        let t = self.timers;
        let mut c = format!(
            "router id {rid};\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n",
            rid = self.router_id()
        );
        if !self.def.originate.is_empty() {
            c.push_str("protocol static own_routes {\n  ipv4;\n");
            for p in &self.def.originate {
                c.push_str(&format!("  route {p} blackhole;\n"));
            }
            c.push_str("}\n");
        }
        for n in &self.neighbors {
            let local = self
                .def
                .links
                .values()
                .find(|a| a.contains(&n.addr))
                .map(|a| a.addr())
                .unwrap_or_else(|| self.router_id());
            c.push_str(&format!(
                "protocol bgp {name} {{\n  local {local} as {asn};\n  neighbor {addr} as {peer_asn};\n  hold time {h}; keepalive time {k};\n  connect delay time 1; connect retry time {cr};\n{rr}  ipv4 {{ import all; export where source = RTS_STATIC || source = RTS_BGP; }};\n}}\n",
                name = bird_name(&n.name),
                asn = self.def.asn,
                addr = n.addr,
                peer_asn = n.asn,
                h = t.hold,
                k = t.keepalive,
                cr = t.connect_retry,
                rr = if n.rr_client { "  rr client;\n" } else { "" }
            ));
        }
        c
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

    /// The router's selected routes: prefix -> next hops (FRR: the entries
    /// zebra marks selected; BIRD: `show route primary`, never the
    /// alternatives it holds but does not use).
    pub fn routes(&self) -> Result<BTreeMap<IpNet, Vec<IpAddr>>> {
        match self.def.kind {
            RouterKind::Frr => parse_frr_routes(&self.vtysh("show ip route json")?),
            RouterKind::Bird => Ok(parse_bird_routes(&self.birdc("show route primary")?)),
        }
    }

    /// Kills the daemons and takes the links down: the router is dead.
    pub fn down(&mut self) -> Result<()> {
        for d in self.daemons.drain(..) {
            d.signal(Signal::SIGKILL)?;
        }
        for i in self.ifaces.values() {
            self.ns.ip(&["link", "set", i, "down"])?;
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
        let cmds: &[&str] = match self.def.kind {
            RouterKind::Frr => &["show bgp summary", "show ip bgp", "show ip route"],
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

/// BIRD protocol names: letters, digits and underscores.
fn bird_name(n: &str) -> String {
    format!("n_{}", n.replace('-', "_"))
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
        for e in entries.as_array().into_iter().flatten() {
            if e.get("selected").and_then(|s| s.as_bool()) != Some(true) {
                continue;
            }
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
        out.insert(p, hops);
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
