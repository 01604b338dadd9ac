//! Plays a scenario: builds its world, runs its steps, reports, tears down.
//!
//! In: a parsed [`Scenario`] and run [`Options`]. Out: a [`Report`]. Steps
//! run in order and stop at the first failure; expectations poll with a
//! deadline and fail with what still differs, and record how long they took
//! to hold (convergence). A failed scenario prints every host's links,
//! routes, BGP neighbours and RIB, driver status and log tails. Teardown
//! stops containers and deletes networks through the engine (so the driver's
//! cleanup path runs), checks that no link of ours is left, then unwinds the
//! cleanup stack.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::kernel::{Family, Kernel};
use nix::sys::signal::Signal;

use crate::check;
use crate::engine::{ContainerRt, Control, Emulator, Engine};
use crate::probe::{ping_pairs, tcp_pairs, Member, Prober, TcpServers};
use crate::report::{Report, StepReport};
use crate::scenario::{Action, DaemonKind, Probe, Scenario};
use crate::util::{eventually, Dur};
use crate::world::{Options, World, UNDERLAY_IF};

const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(100);

pub fn make_engine(kind: &str) -> Result<Box<dyn Engine>> {
    match kind {
        "emulator" => Ok(Box::new(Emulator::default())),
        "dockerd" => Ok(Box::new(crate::dockerd::Dockerd::default())),
        other => bail!("engine {other:?} is not available; use \"emulator\" or \"dockerd\""),
    }
}

/// Runs one scenario with the given engine and returns its report.
pub fn run(s: &Scenario, opts: &Options, engine: &str) -> Report {
    let started = Instant::now();
    let mut report = Report {
        scenario: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        engine: engine.to_string(),
        ..Report::default()
    };
    let say = |msg: &str| {
        eprintln!(
            "[{}] {:>6.1}s {msg}",
            s.name,
            started.elapsed().as_secs_f64()
        )
    };
    match check::skip_reason(s, check::detect(), engine) {
        Ok(Some(reason)) => {
            say(&format!("SKIPPED: {reason}"));
            report.skipped = Some(reason);
            return report;
        }
        Err(reason) => {
            say(&format!("FAILED: {reason}"));
            report.error = Some(reason);
            return report;
        }
        Ok(None) => {}
    }
    let swept_cgroups = crate::dockerd::sweep(&opts.run_root);
    if swept_cgroups > 0 {
        say(&format!(
            "swept {swept_cgroups} cgroup folders (and their processes) left by killed runs"
        ));
    }
    let swept = crate::netns::sweep();
    if !swept.is_empty() {
        say(&format!(
            "swept {} namespaces left by killed runs",
            swept.len()
        ));
    }
    let eng = match make_engine(engine) {
        Ok(e) => e,
        Err(e) => {
            report.error = Some(format!("{e:#}"));
            return report;
        }
    };
    say(&format!(
        "building {} hosts ({})",
        s.hosts.len(),
        s.description
    ));
    let world = match World::build(s, opts, &|m| say(m)) {
        Ok(w) => w,
        Err(e) => {
            say(&format!("FAILED to build the topology: {e:#}"));
            report.error = Some(format!("build topology: {e:#}"));
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
    let mut r = Runner {
        s,
        w: world,
        engine: eng,
        running: BTreeMap::new(),
        networks: BTreeSet::new(),
        probers: HashMap::new(),
        tcp: TcpServers::default(),
        injected: Vec::new(),
    };
    let result = match r.engine.setup(&r.w) {
        Ok(()) => {
            say(&format!("{} engine ready", r.engine.name()));
            r.play(&mut report, &say)
        }
        Err(e) => Err(e.context(format!("set up the {} engine", r.engine.name()))),
    };
    if let Err(e) = &result {
        let msg = format!("{e:#}");
        say(&format!("FAILED: {msg}"));
        let containers: Vec<_> = r
            .running
            .values()
            .map(|c| (c.name.clone(), c.netns.clone()))
            .collect();
        let mut diag = r.w.diagnostics(&containers);
        diag.push_str(&r.engine.diagnostics(&r.w));
        eprintln!(
            "----- diagnostics for {} -----{diag}\n----- end of diagnostics -----",
            s.name
        );
        report.error = Some(msg);
        report.diagnostics = Some(diag);
        if opts.keep {
            eprintln!("[{}] --keep: the topology stays up. Enter the hosts with:\n{}Press Enter (or Ctrl-C) to tear down.", s.name, r.w.enter_hints());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
    }
    match r.teardown() {
        Ok(()) => {}
        Err(e) => {
            let msg = format!("teardown: {e:#}");
            say(&format!("FAILED: {msg}"));
            if report.error.is_none() {
                report.error = Some(msg);
            }
        }
    }
    let cleanup_errors = r.w.cleanup.run();
    for e in &cleanup_errors {
        say(&format!("cleanup: {e}"));
    }
    report.passed = report.error.is_none() && cleanup_errors.is_empty();
    if report.passed && !opts.keep {
        let _ = std::fs::remove_dir_all(&r.w.dir);
    } else {
        say(&format!("logs kept in {}", r.w.dir.display()));
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    say(&format!(
        "{} in {:.1}s",
        report.outcome(),
        started.elapsed().as_secs_f64()
    ));
    report
}

struct Runner<'a> {
    s: &'a Scenario,
    w: World,
    engine: Box<dyn Engine>,
    running: BTreeMap<String, ContainerRt>,
    networks: BTreeSet<(usize, String)>,
    probers: HashMap<String, Prober>,
    tcp: TcpServers,
    /// Paths the scenario originated with `inject`, withdrawn at teardown.
    injected: Vec<(String, Ipv4Net, Ipv4Addr)>,
}

impl Runner<'_> {
    fn play(&mut self, report: &mut Report, say: &dyn Fn(&str)) -> Result<()> {
        for net in self.s.networks.iter().filter(|n| n.create) {
            for host in net.subnets.keys() {
                self.create_network(&net.name, host)?;
            }
        }
        let total = self.s.steps.len();
        for (i, step) in self.s.steps.iter().enumerate() {
            say(&format!("step {}/{total}: {} ...", i + 1, step.name));
            let t = Instant::now();
            let outcome = self.step(&step.action);
            let elapsed = t.elapsed();
            let mut sr = StepReport {
                name: step.name.clone(),
                line: step.line,
                elapsed_ms: elapsed.as_millis() as u64,
                ..StepReport::default()
            };
            match outcome {
                Ok(conv) => {
                    sr.passed = true;
                    if let Some(c) = conv {
                        sr.convergence_ms = Some(c.as_millis() as u64);
                        report
                            .convergence_ms
                            .insert(step.name.clone(), c.as_millis() as u64);
                        say(&format!(
                            "step {}/{total}: ok, held after {:.3}s",
                            i + 1,
                            c.as_secs_f64()
                        ));
                    } else {
                        say(&format!(
                            "step {}/{total}: ok ({:.3}s)",
                            i + 1,
                            elapsed.as_secs_f64()
                        ));
                    }
                    report.steps.push(sr);
                }
                Err(e) => {
                    sr.detail = Some(format!("{e:#}"));
                    report.steps.push(sr);
                    return Err(e.context(format!(
                        "{}:{}: step {} ({})",
                        self.s.file,
                        step.line,
                        i + 1,
                        step.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn scale(&self, d: Dur) -> Duration {
        self.w.opts.scale(d.0)
    }

    fn network_def(&self, net: &str) -> Result<crate::scenario::NetworkDef> {
        self.s
            .networks
            .iter()
            .find(|n| n.name == net)
            .cloned()
            .ok_or_else(|| anyhow!("unknown network {net}"))
    }

    fn create_network(&mut self, net: &str, host: &str) -> Result<()> {
        let def = self.network_def(net)?;
        let subnet = *def
            .subnets
            .get(host)
            .ok_or_else(|| anyhow!("network {net} has no subnet on {host}"))?;
        let hi = self.w.host_index(host)?;
        self.engine.create_network(&self.w, hi, &def, subnet)?;
        self.networks.insert((hi, net.to_string()));
        Ok(())
    }

    fn delete_network(&mut self, net: &str, host: &str) -> Result<()> {
        let def = self.network_def(net)?;
        let hi = self.w.host_index(host)?;
        self.engine.delete_network(&self.w, hi, &def)?;
        self.networks.remove(&(hi, net.to_string()));
        Ok(())
    }

    fn member(&self, name: &str) -> Result<Member> {
        if let Some(c) = self.running.get(name) {
            return Ok(Member {
                label: name.into(),
                netns: c.netns.clone(),
                addr: c.address,
            });
        }
        if let Ok(h) = self.w.host(name) {
            return Ok(Member {
                label: name.into(),
                netns: h.ns.path(),
                addr: h.addr.addr(),
            });
        }
        bail!("{name} is not running (start it first)")
    }

    fn pairs(&self, from: &[String], to: &[String]) -> Result<Vec<(Member, Member)>> {
        let from = self.s.expand(from);
        let to = self.s.expand(to);
        let mut out = Vec::new();
        for f in &from {
            for t in &to {
                if f != t {
                    out.push((self.member(f)?, self.member(t)?));
                }
            }
        }
        Ok(out)
    }

    fn probe(
        &mut self,
        pairs: &[(Member, Member)],
        kind: Probe,
    ) -> std::result::Result<Vec<bool>, String> {
        match kind {
            Probe::Icmp => ping_pairs(pairs, PROBE_TIMEOUT),
            Probe::Tcp => tcp_pairs(&mut self.tcp, pairs, PROBE_TIMEOUT),
        }
        .map_err(|e| format!("the probe itself failed: {e:#}"))
    }

    /// Runs one action; `Some(duration)` for expectations that measured convergence.
    fn step(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::WaitBgp { within } => {
                let deadline = self.scale(*within);
                let hosts: Vec<usize> = (0..self.w.hosts.len()).collect();
                let (_, took) = eventually(deadline, POLL, || {
                    let mut down = Vec::new();
                    for &i in &hosts {
                        match self.w.bgp_sessions(i) {
                            Ok(peers) if peers.is_empty() => {
                                down.push(format!("{}: no peers yet", self.w.hosts[i].def.name))
                            }
                            Ok(peers) => down.extend(
                                peers
                                    .iter()
                                    .filter(|p| !p.1)
                                    .map(|p| format!("{} -> {}", self.w.hosts[i].def.name, p.0)),
                            ),
                            Err(e) => down.push(format!("{}: {e:#}", self.w.hosts[i].def.name)),
                        }
                    }
                    for r in self.w.routers.iter().filter(|r| !r.daemons.is_empty()) {
                        match r.sessions() {
                            Ok(peers) => down.extend(
                                peers
                                    .iter()
                                    .filter(|p| !p.1)
                                    .map(|p| format!("{} -> {}", r.def.name, p.0)),
                            ),
                            Err(e) => down.push(format!("{}: {e:#}", r.def.name)),
                        }
                    }
                    if down.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("sessions not established: {}", down.join(", ")))
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectRouterRoute {
                router,
                prefix,
                present,
                via,
                within,
            } => {
                let ri = self
                    .w
                    .routers
                    .iter()
                    .position(|r| &r.def.name == router)
                    .ok_or_else(|| anyhow!("unknown router {router}"))?;
                let prefix = self.prefix_of(prefix)?;
                let via = via
                    .as_deref()
                    .map(|v| self.resolve_addr(router, v))
                    .transpose()?;
                let present = *present;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let routes = self.w.routers[ri].routes().map_err(|e| format!("{e:#}"))?;
                    match (present, routes.get(&prefix)) {
                        (true, None) => Err(format!("{router} has no route for {prefix}")),
                        (true, Some(hops)) => match via {
                            Some(v) if !hops.contains(&std::net::IpAddr::V4(v)) => Err(format!(
                                "{router} routes {prefix} via {hops:?}, expected {v}"
                            )),
                            _ => Ok(()),
                        },
                        (false, None) => Ok(()),
                        (false, Some(h)) => {
                            Err(format!("{router} still routes {prefix} via {h:?}"))
                        }
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::RouterDown { router } | Action::RouterUp { router } => {
                let up = matches!(a, Action::RouterUp { .. });
                let r = self
                    .w
                    .routers
                    .iter_mut()
                    .find(|r| &r.def.name == router)
                    .ok_or_else(|| anyhow!("unknown router {router}"))?;
                if up {
                    r.up()?
                } else {
                    r.down()?
                }
                Ok(None)
            }
            Action::CreateNetwork {
                network,
                hosts,
                expect_error: None,
            } => {
                for h in self.hosts_of(network, hosts)? {
                    self.create_network(network, &h)?;
                }
                Ok(None)
            }
            Action::CreateNetwork {
                network,
                hosts,
                expect_error: Some(want),
            } => {
                for h in self.hosts_of(network, hosts)? {
                    match self.create_network(network, &h) {
                        Ok(()) => bail!("creating network {network} on {h} succeeded; expected an error containing {want:?}"),
                        Err(e) => {
                            let seen = format!("{e:#}");
                            if !seen.contains(want.as_str()) {
                                bail!("creating network {network} on {h} failed, but the user sees {seen:?}, which does not contain {want:?}");
                            }
                            eprintln!("[{}] as expected, the user sees: {seen}", self.s.name);
                        }
                    }
                }
                Ok(None)
            }
            Action::DeleteNetwork { network, hosts } => {
                for h in self.hosts_of(network, hosts)? {
                    self.delete_network(network, &h)?;
                }
                Ok(None)
            }
            Action::Start { containers } => {
                for name in self.s.expand(containers) {
                    if self.running.contains_key(&name) {
                        bail!("{name} is already running");
                    }
                    let def = self
                        .s
                        .container(&name)
                        .ok_or_else(|| anyhow!("unknown container {name}"))?
                        .clone();
                    let hi = self.w.host_index(&def.host)?;
                    let net = self
                        .s
                        .networks
                        .iter()
                        .find(|n| n.name == def.network)
                        .ok_or_else(|| anyhow!("unknown network"))?
                        .clone();
                    let c = self
                        .engine
                        .start(&self.w, hi, &net, &name)
                        .with_context(|| format!("start {name}"))?;
                    self.running.insert(name, c);
                }
                Ok(None)
            }
            Action::Stop { containers } => {
                for name in self.s.expand(containers) {
                    let c = self
                        .running
                        .remove(&name)
                        .ok_or_else(|| anyhow!("{name} is not running"))?;
                    self.tcp.forget(&c.netns);
                    self.engine
                        .stop(&self.w, &c)
                        .with_context(|| format!("stop {name}"))?;
                }
                Ok(None)
            }
            Action::ExpectReachable {
                from,
                to,
                within,
                probe,
            } => {
                let pairs = self.pairs(from, to)?;
                let deadline = self.scale(*within);
                let mut ok = vec![false; pairs.len()];
                let (_, took) = eventually(deadline, POLL, || {
                    let todo: Vec<usize> = (0..pairs.len()).filter(|i| !ok[*i]).collect();
                    let sub: Vec<_> = todo.iter().map(|i| pairs[*i].clone()).collect();
                    for (i, r) in todo.iter().zip(self.probe(&sub, *probe)?) {
                        ok[*i] = r;
                    }
                    let missing: Vec<String> = pairs
                        .iter()
                        .zip(&ok)
                        .filter(|(_, ok)| !**ok)
                        .map(|((a, b), _)| format!("{} -> {} ({})", a.label, b.label, b.addr))
                        .collect();
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} of {} pairs unreachable: {}",
                            missing.len(),
                            pairs.len(),
                            missing.join(", ")
                        ))
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectUnreachable {
                from,
                to,
                within,
                hold,
            } => {
                let pairs = self.pairs(from, to)?;
                let check = |me: &mut Self| -> std::result::Result<(), String> {
                    let got = me.probe(&pairs, Probe::Icmp)?;
                    let reached: Vec<String> = pairs
                        .iter()
                        .zip(got)
                        .filter(|(_, r)| *r)
                        .map(|((a, b), _)| format!("{} -> {}", a.label, b.label))
                        .collect();
                    if reached.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("still reachable: {}", reached.join(", ")))
                    }
                };
                let deadline = self.scale(*within);
                let (_, took) =
                    eventually(deadline, POLL, || check(self)).map_err(|e| anyhow!(e))?;
                if let Some(h) = hold {
                    let until = Instant::now() + self.scale(*h);
                    while Instant::now() < until {
                        check(self)
                            .map_err(|e| anyhow!("became reachable during the hold: {e}"))?;
                        std::thread::sleep(POLL);
                    }
                }
                Ok(Some(took))
            }
            Action::ExpectMatrix { members, within } => {
                let members: Vec<String> = match members {
                    Some(m) => m.clone(),
                    None => self.running.keys().cloned().collect(),
                };
                if members.len() < 2 {
                    bail!("a matrix needs at least two running members");
                }
                self.step(&Action::ExpectReachable {
                    from: members.clone(),
                    to: members,
                    within: *within,
                    probe: Probe::Icmp,
                })
            }
            Action::ExpectRoute {
                host,
                prefix,
                present,
                via,
                within,
                hold,
            } => {
                let hi = self.w.host_index(host)?;
                let prefix: IpNet = match prefix.parse::<Ipv4Net>() {
                    Ok(p) => IpNet::V4(p),
                    Err(_) => {
                        let c = self
                            .running
                            .get(prefix)
                            .ok_or_else(|| anyhow!("{prefix} is not running"))?;
                        IpNet::V4(Ipv4Net::new(c.address, 32)?)
                    }
                };
                let via: Option<Ipv4Addr> = via
                    .as_deref()
                    .map(|v| self.resolve_addr(host, v))
                    .transpose()?;
                let ns = self.w.hosts[hi].ns.path();
                let present = *present;
                let check = || -> std::result::Result<(), String> {
                    let mut k = Kernel::open_in_netns(&ns).map_err(|e| e.to_string())?;
                    let routes = k
                        .routes(Family::V4, Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL))
                        .map_err(|e| e.to_string())?;
                    let found = routes.iter().find(|r| r.dst == prefix);
                    match (present, found) {
                        (true, Some(r)) => match via {
                            Some(v) if r.via != Some(std::net::IpAddr::V4(v)) => {
                                Err(format!("{prefix} is via {:?}, expected {v}", r.via))
                            }
                            _ => Ok(()),
                        },
                        (true, None) => Err(format!(
                            "no route for {prefix} on {host}; tagged routes: {}",
                            routes
                                .iter()
                                .map(|r| r.dst.to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        )),
                        (false, None) => Ok(()),
                        (false, Some(r)) => Err(format!(
                            "route {} via {:?} is still on {host}",
                            r.dst, r.via
                        )),
                    }
                };
                let (_, took) =
                    eventually(self.scale(*within), POLL, check).map_err(|e| anyhow!(e))?;
                if let Some(h) = hold {
                    let until = Instant::now() + self.scale(*h);
                    while Instant::now() < until {
                        check().map_err(|e| anyhow!("changed during the hold: {e}"))?;
                        std::thread::sleep(POLL);
                    }
                }
                Ok(Some(took))
            }
            Action::ExpectRejected {
                host,
                reason,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    let n = st.pointer(&format!("/bgp/rejected/{reason}")).and_then(|v| v.as_u64()).unwrap_or(0);
                    if n > 0 { Ok(()) } else { Err(format!("{host}'s driver has not rejected any route for {reason}; rejected so far: {}", st["bgp"]["rejected"])) }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::Kill { host, daemon } => self.control(host, *daemon, Control::Kill),
            Action::StopDaemon { host, daemon } => self.control(host, *daemon, Control::Stop),
            Action::StartDaemon { host, daemon } => self.control(host, *daemon, Control::Start),
            Action::Restart { host, daemon } => self.control(host, *daemon, Control::Restart),
            Action::LinkDown { host } => {
                self.w
                    .host(host)?
                    .ns
                    .ip(&["link", "set", UNDERLAY_IF, "down"])?;
                Ok(None)
            }
            Action::LinkUp { host } => {
                self.w
                    .host(host)?
                    .ns
                    .ip(&["link", "set", UNDERLAY_IF, "up"])?;
                Ok(None)
            }
            Action::Inject {
                host,
                prefix,
                next_hop,
            } => {
                self.gobgp_rib(host, "add", *prefix, *next_hop)?;
                self.injected.push((host.clone(), *prefix, *next_hop));
                Ok(None)
            }
            Action::Run { host, command } => {
                let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
                let out =
                    self.w
                        .host(host)?
                        .ns
                        .exec(&command[0], &args, Duration::from_secs(30))?;
                if !out.status.success() {
                    bail!(
                        "`{}` on {host} failed: {}",
                        command.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(None)
            }
            Action::PlantRoute { host, prefix, via } => {
                let proto = ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL.to_string();
                let (p, v) = (prefix.to_string(), via.to_string());
                self.w
                    .host(host)?
                    .ns
                    .ip(&["route", "replace", &p, "via", &v, "proto", &proto])?;
                Ok(None)
            }
            Action::ProbeStart {
                id: name,
                from,
                to,
                interval,
            } => {
                if self.probers.contains_key(name) {
                    bail!("probe {name} is already running");
                }
                let pairs = self.pairs(from, to)?;
                let p = Prober::start(pairs, interval.0)?;
                self.probers.insert(name.clone(), p);
                Ok(None)
            }
            Action::ProbeStop {
                id: name,
                max_loss,
                max_outage,
            } => {
                let p = self
                    .probers
                    .remove(name)
                    .ok_or_else(|| anyhow!("no probe named {name}"))?;
                let interval = p.interval;
                let stats = p.stop();
                let lost: u64 = stats.iter().map(|s| s.sent - s.received.min(s.sent)).sum();
                let sent: u64 = stats.iter().map(|s| s.sent).sum();
                let outage = |s: &crate::probe::PairStats| interval * s.longest_gap as u32;
                let longest = stats.iter().map(outage).max().unwrap_or_default();
                let detail: Vec<String> = stats
                    .iter()
                    .map(|s| {
                        format!(
                            "{}->{}: {}/{} answered, longest outage {:?}",
                            s.from,
                            s.to,
                            s.received,
                            s.sent,
                            outage(s)
                        )
                    })
                    .collect();
                eprintln!(
                    "[{}] probe {name}: {sent} sent, {lost} lost, longest outage {longest:?}; {}",
                    self.s.name,
                    detail.join("; ")
                );
                if sent == 0 {
                    bail!("probe {name} sent nothing");
                }
                if let Some(limit) = max_outage {
                    if longest > self.scale(*limit) {
                        bail!(
                            "probe {name}: longest outage {longest:?} exceeds {:?}: {}",
                            self.scale(*limit),
                            detail.join("; ")
                        );
                    }
                }
                // Without an outage limit, no loss is allowed unless said otherwise.
                let allowed = max_loss.unwrap_or(if max_outage.is_some() { u64::MAX } else { 0 });
                if lost > allowed {
                    bail!(
                        "probe {name} lost {lost} of {sent} probes (allowed {allowed}): {}",
                        detail.join("; ")
                    );
                }
                // The outage is the convergence this probe measured.
                Ok(Some(longest))
            }
        }
    }

    /// An address written as an IP, a host name (its underlay address) or a
    /// router name (its address on a segment shared with `seen_from`).
    fn resolve_addr(&self, seen_from: &str, v: &str) -> Result<Ipv4Addr> {
        if let Ok(a) = v.parse() {
            return Ok(a);
        }
        if let Ok(h) = self.w.host(v) {
            return Ok(h.addr.addr());
        }
        let r = self
            .s
            .router(v)
            .ok_or_else(|| anyhow!("{v} is neither an address, a host nor a router"))?;
        self.s
            .shared_address(seen_from, v)
            .or_else(|| r.links.values().next().copied())
            .map(|a| a.addr())
            .ok_or_else(|| anyhow!("router {v} has no address"))
    }

    /// A CIDR, or a running container's /32.
    fn prefix_of(&self, p: &str) -> Result<IpNet> {
        match p.parse::<Ipv4Net>() {
            Ok(n) => Ok(IpNet::V4(n)),
            Err(_) => {
                let c = self
                    .running
                    .get(p)
                    .ok_or_else(|| anyhow!("{p} is not running"))?;
                Ok(IpNet::V4(Ipv4Net::new(c.address, 32)?))
            }
        }
    }

    /// `gobgp global rib add|del PREFIX nexthop NH` on a host's gobgpd.
    fn gobgp_rib(&self, host: &str, verb: &str, prefix: Ipv4Net, nh: Ipv4Addr) -> Result<()> {
        let (p, nh) = (prefix.to_string(), nh.to_string());
        let args = [
            "-p",
            "50051",
            "-u",
            "127.0.0.1",
            "global",
            "rib",
            verb,
            "-a",
            "ipv4",
            &p,
            "nexthop",
            &nh,
        ];
        let out = self
            .w
            .host(host)?
            .ns
            .exec("gobgp", &args, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "gobgp global rib {verb} {p} nexthop {nh} on {host}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Kills, stops, starts or restarts a daemon: gobgpd and the driver
    /// belong to the world, dockerd to the engine. After dockerd comes back,
    /// the containers' namespaces are read again (their processes restarted).
    fn control(
        &mut self,
        host: &str,
        daemon: DaemonKind,
        action: Control,
    ) -> Result<Option<Duration>> {
        let hi = self.w.host_index(host)?;
        match (daemon, action) {
            (DaemonKind::Dockerd, _) => {
                self.engine.control(&self.w, hi, action)?;
                if matches!(action, Control::Start | Control::Restart) {
                    self.refresh_containers(hi)?;
                }
            }
            (_, Control::Kill) => self.w.signal_daemon(hi, daemon, Signal::SIGKILL)?,
            (_, Control::Stop) => self.w.signal_daemon(hi, daemon, Signal::SIGTERM)?,
            (_, Control::Start) => self.w.start_daemon(hi, daemon)?,
            (_, Control::Restart) => {
                self.w.signal_daemon(hi, daemon, Signal::SIGTERM)?;
                self.w.start_daemon(hi, daemon)?;
            }
        }
        Ok(None)
    }

    fn refresh_containers(&mut self, host: usize) -> Result<()> {
        let names: Vec<String> = self
            .running
            .values()
            .filter(|c| c.host == host)
            .map(|c| c.name.clone())
            .collect();
        let deadline = self.w.opts.scale(Duration::from_secs(60));
        for n in names {
            let mut c = self.running[&n].clone();
            let old = c.netns.clone();
            self.tcp.forget(&old);
            eventually(deadline, POLL, || {
                self.engine
                    .refresh(&self.w, &mut c)
                    .map_err(|e| format!("{e:#}"))
            })
            .map_err(|e| anyhow!("container {n} did not come back: {e}"))?;
            self.running.insert(n, c);
        }
        Ok(())
    }

    fn hosts_of(&self, network: &str, hosts: &Option<Vec<String>>) -> Result<Vec<String>> {
        Ok(match hosts {
            Some(h) => h.clone(),
            None => self
                .s
                .networks
                .iter()
                .find(|n| n.name == network)
                .ok_or_else(|| anyhow!("unknown network {network}"))?
                .subnets
                .keys()
                .cloned()
                .collect(),
        })
    }

    /// Stops containers and deletes networks through the engine, then checks
    /// that the driver left none of its links behind.
    fn teardown(&mut self) -> Result<()> {
        for (_, p) in self.probers.drain() {
            let _ = p.stop();
        }
        let mut errors = Vec::new();
        for (host, prefix, nh) in std::mem::take(&mut self.injected) {
            if self.w.host(&host).is_ok_and(|h| h.gobgpd.running()) {
                if let Err(e) = self.gobgp_rib(&host, "del", prefix, nh) {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        let names: Vec<String> = self.running.keys().cloned().collect();
        for n in names {
            if let Some(c) = self.running.remove(&n) {
                self.tcp.forget(&c.netns);
                if let Err(e) = self.engine.stop(&self.w, &c) {
                    errors.push(format!("stop {n}: {e:#}"));
                }
            }
        }
        let nets: Vec<(usize, String)> = self.networks.iter().cloned().collect();
        for (hi, net) in nets {
            if !self.w.hosts[hi].driver.running() {
                continue;
            }
            let host = self.w.hosts[hi].def.name.clone();
            if let Err(e) = self.delete_network(&net, &host) {
                errors.push(format!("delete network {net} on {host}: {e:#}"));
            }
        }
        if errors.is_empty() {
            for h in &self.w.hosts {
                if !h.runs_driver() || !h.driver.running() {
                    continue;
                }
                let mut k = Kernel::open_in_netns(&h.ns.path())?;
                let left: Vec<String> = k
                    .links()?
                    .into_iter()
                    .filter(|l| ipvlan_bgp::names::is_ours(&l.name, l.alias.as_deref()))
                    .map(|l| l.name)
                    .collect();
                if !left.is_empty() {
                    errors.push(format!(
                        "links left on {} after every container and network was removed: {}",
                        h.def.name,
                        left.join(", ")
                    ));
                }
            }
        }
        // Routers' own announcements are not ours to check: stop them first.
        for r in &mut self.w.routers {
            if let Err(e) = r.stop() {
                errors.push(format!("stop router {}: {e:#}", r.def.name));
            }
        }
        if errors.is_empty() {
            // Every announcement is withdrawn, so every learned route must go too.
            let hosts: Vec<(String, std::path::PathBuf)> = self
                .w
                .hosts
                .iter()
                .filter(|h| h.runs_driver() && h.driver.running())
                .map(|h| (h.def.name.clone(), h.ns.path()))
                .collect();
            let r = eventually(self.w.opts.scale(Duration::from_secs(15)), POLL, || {
                let mut left = Vec::new();
                for (name, ns) in &hosts {
                    let mut k = Kernel::open_in_netns(ns).map_err(|e| e.to_string())?;
                    let routes = k
                        .routes(Family::V4, Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL))
                        .map_err(|e| e.to_string())?;
                    left.extend(routes.iter().map(|r| format!("{} on {name}", r.dst)));
                }
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            });
            if let Err(e) = r {
                errors.push(format!(
                    "tagged routes left after every container and network was removed: {e}"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(errors.join("; "))
        }
    }
}
