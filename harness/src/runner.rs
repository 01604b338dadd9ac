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
use crate::links::LinkInfo;
use crate::probe::{ping_pairs, tcp_pairs, Member, Prober, TcpServers};
use crate::report::{Report, StepReport};
use crate::scenario::{Action, DaemonKind, DefaultRoute, Measure, Probe, Scenario};
use crate::util::{eventually, Dur};
use crate::world::{Options, World, UNDERLAY_IF};

const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(100);
/// How long an expected absence (`present = false`) must last by default
/// (scaled): a route that is gone for one poll may be in the middle of a
/// flap, and an absence that never held proves nothing.
const ABSENT_HOLD: Duration = Duration::from_secs(2);

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
        killed: Vec::new(),
        link_snaps: HashMap::new(),
        bgp_snaps: HashMap::new(),
        floods: HashMap::new(),
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
    /// Containers killed behind the driver's back, reaped at teardown.
    killed: Vec<ContainerRt>,
    link_snaps: HashMap<String, (String, BTreeMap<String, LinkInfo>)>,
    bgp_snaps: HashMap<String, (String, Vec<PeerView>)>,
    floods: HashMap<String, std::thread::JoinHandle<Result<Duration>>>,
}

impl Runner<'_> {
    fn play(&mut self, report: &mut Report, say: &dyn Fn(&str)) -> Result<()> {
        for net in self.s.networks.iter().filter(|n| n.create) {
            for host in net.subnets.keys() {
                self.create_network(&net.name, host)?;
            }
        }
        let total = self.s.steps.len();
        // Convergence counts from the end of the last event (the networks
        // being created, before the first step).
        let mut last_event = Instant::now();
        for (i, step) in self.s.steps.iter().enumerate() {
            say(&format!("step {}/{total}: {} ...", i + 1, step.name));
            let t = Instant::now();
            let outcome = self
                .step(&step.action)
                .map(|took| match step.action.measure() {
                    Measure::Event => {
                        last_event = Instant::now();
                        None
                    }
                    Measure::Expectation => took.map(|d| t.duration_since(last_event) + d),
                    Measure::Own => took,
                    Measure::Neither => None,
                });
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
                            .insert(convergence_key(i, &step.name), c.as_millis() as u64);
                        let what = match step.action.measure() {
                            Measure::Own => "measured",
                            _ => "held after the last event in",
                        };
                        say(&format!(
                            "step {}/{total}: ok, {what} {:.3}s",
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

    /// The scaled hold of an expectation: as written, or [`ABSENT_HOLD`]
    /// when it expects something to be absent and names no hold.
    fn hold_for(&self, present: bool, hold: Option<Dur>) -> Option<Duration> {
        match (hold, present) {
            (Some(h), _) => Some(self.scale(h)),
            (None, false) => Some(self.w.opts.scale(ABSENT_HOLD)),
            (None, true) => None,
        }
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
        // A killed container can still be a target (its address), not a source.
        if let Some(c) = self
            .running
            .get(name)
            .or_else(|| self.killed.iter().find(|c| c.name == name))
        {
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
                hold,
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
                let hold = self.hold_for(present, *hold);
                let took = poll_then_hold(self.scale(*within), hold, || {
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
                })?;
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
            Action::Start {
                containers,
                expect_error,
                within,
            } => {
                let mut slowest = Duration::ZERO;
                for name in self.s.expand(containers) {
                    if self.running.contains_key(&name) {
                        bail!("{name} is already running");
                    }
                    let t = Instant::now();
                    let mut attempts = 0;
                    let outcome = loop {
                        attempts += 1;
                        let r = self.start_one(&name);
                        match (&r, within) {
                            (Err(_), Some(w)) if t.elapsed() < self.scale(*w) => {
                                std::thread::sleep(POLL)
                            }
                            _ => break r,
                        }
                    };
                    let took = t.elapsed();
                    slowest = slowest.max(took);
                    match (outcome, expect_error) {
                        (Ok(c), None) => {
                            self.running.insert(name.clone(), c);
                            if let Some(w) = within {
                                if took > self.scale(*w) {
                                    bail!("{name} started, but took {took:?} (limit {:?})", self.scale(*w));
                                }
                            }
                        }
                        (Err(e), None) if within.is_some() => {
                            return Err(e.context(format!(
                                "{name} did not start within {:?} ({attempts} attempts); the last error",
                                took
                            )))
                        }
                        (Err(e), None) => return Err(e),
                        (Ok(c), Some(want)) => {
                            self.running.insert(name.clone(), c);
                            bail!("{name} started; expected an error containing {want:?}");
                        }
                        (Err(e), Some(want)) => {
                            let seen = format!("{e:#}");
                            if !seen.contains(want.as_str()) {
                                bail!("starting {name} failed, but the user sees {seen:?}, which does not contain {want:?}");
                            }
                            eprintln!("[{}] as expected, the user sees: {seen}", self.s.name);
                        }
                    }
                }
                Ok(within.map(|_| slowest))
            }
            Action::KillContainer { containers } => {
                for name in self.s.expand(containers) {
                    let c = self
                        .running
                        .remove(&name)
                        .ok_or_else(|| anyhow!("{name} is not running"))?;
                    self.tcp.forget(&c.netns);
                    // Reaped at teardown even if the kill half failed.
                    self.killed.push(c.clone());
                    self.engine
                        .kill(&self.w, &c)
                        .with_context(|| format!("kill {name}"))?;
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
                let pairs = self.pairs(&members, &members)?;
                let mut ok = vec![false; pairs.len()];
                // Pairs that were reachable in some round: said so when they fail later.
                let mut once = vec![false; pairs.len()];
                let unreachable = |ok: &[bool], once: &[bool]| -> Vec<String> {
                    pairs
                        .iter()
                        .zip(ok.iter().zip(once))
                        .filter(|(_, (ok, _))| !**ok)
                        .map(|((a, b), (_, once))| {
                            let was = if *once { ", reachable earlier" } else { "" };
                            format!("{} -> {} ({}{was})", a.label, b.label, b.addr)
                        })
                        .collect()
                };
                let took = poll_then_hold(self.scale(*within), None, || {
                    // Pairs not yet seen reachable first (cheap while converging)...
                    let todo: Vec<usize> = (0..pairs.len()).filter(|i| !ok[*i]).collect();
                    let sub: Vec<_> = todo.iter().map(|i| pairs[*i].clone()).collect();
                    for (i, r) in todo.iter().zip(self.probe(&sub, Probe::Icmp)?) {
                        ok[*i] = r;
                        once[*i] |= r;
                    }
                    let missing = unreachable(&ok, &once);
                    if !missing.is_empty() {
                        return Err(format!(
                            "{} of {} pairs unreachable: {}",
                            missing.len(),
                            pairs.len(),
                            missing.join(", ")
                        ));
                    }
                    // ...then every pair again in one round: a pair that was
                    // reachable once and broke since does not count.
                    ok = self.probe(&pairs, Probe::Icmp)?;
                    let lost = unreachable(&ok, &once);
                    if lost.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "every pair was reachable once, but in the final round (all pairs at once) {} of {} were not: {}",
                            lost.len(),
                            pairs.len(),
                            lost.join(", ")
                        ))
                    }
                })?;
                Ok(Some(took))
            }
            Action::ExpectRoute {
                host,
                prefix,
                present,
                via,
                protocol,
                within,
                hold,
            } => {
                let proto = match protocol {
                    Some(p) => crate::scenario::route_protocol(p).map_err(|e| anyhow!(e))?,
                    None => ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL,
                };
                let whose = match protocol.as_deref() {
                    None | Some("ours") => "tagged".to_string(),
                    Some(p) => format!("proto {p}"),
                };
                let hi = self.w.host_index(host)?;
                let want = WantRoute {
                    dst: self.prefix_of(prefix)?,
                    via: via
                        .as_deref()
                        .map(|v| self.resolve_addr(host, v))
                        .transpose()?,
                };
                let ns = self.w.hosts[hi].ns.path();
                let present = *present;
                let check = || -> std::result::Result<(), String> {
                    let mut k = Kernel::open_in_netns(&ns).map_err(|e| e.to_string())?;
                    let all = k.routes(Family::V4, None).map_err(|e| e.to_string())?;
                    let (routes, others): (Vec<_>, Vec<_>) =
                        all.into_iter().partition(|r| r.protocol == proto);
                    let seen = SeenRoutes::from_kernel(&routes);
                    if present {
                        seen.compare(std::slice::from_ref(&want), false).map_err(|d| {
                            let others: Vec<String> = others
                                .iter()
                                .filter(|r| r.dst == want.dst)
                                .map(|r| format!("{} via {:?} proto {}", r.dst, r.via, r.protocol))
                                .collect();
                            format!(
                                "{whose} routes on {host} differ: {d} (other routes for {}: [{}]); {whose} routes: {seen}",
                                want.dst,
                                others.join(", "),
                            )
                        })
                    } else {
                        match seen.0.get(&want.dst) {
                            None => Ok(()),
                            Some(hops) => Err(format!(
                                "{whose} route {} via {} is on {host}",
                                want.dst,
                                hops_text(hops)
                            )),
                        }
                    }
                };
                let hold = self.hold_for(present, *hold);
                let took = poll_then_hold(self.scale(*within), hold, check)?;
                Ok(Some(took))
            }
            Action::ExpectContainer {
                container,
                address,
                default_route,
                gateway,
                within,
            } => {
                let mut views = Vec::new();
                for name in self.s.expand(std::slice::from_ref(container)) {
                    let c = self
                        .running
                        .get(&name)
                        .ok_or_else(|| anyhow!("{name} is not running"))?;
                    let host = &self.s.hosts[c.host].name;
                    let subnet = *self
                        .network_def(&c.network)?
                        .subnets
                        .get(host)
                        .ok_or_else(|| anyhow!("network {} has no subnet on {host}", c.network))?;
                    // Docker's IPAM gives the subnet's first address to the gateway.
                    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
                    views.push((name, c.netns.clone(), c.address, gw));
                }
                let want = ContainerWant {
                    address: *address,
                    default_route: *default_route,
                    gateway: *gateway,
                };
                let took = poll_then_hold(self.scale(*within), None, || {
                    let mut wrong = Vec::new();
                    for (name, netns, addr, gw) in &views {
                        let seen =
                            ContainerView::read(netns).map_err(|e| format!("{name}: {e:#}"))?;
                        if let Err(e) = want.check(&seen, *addr, *gw) {
                            wrong.push(format!("{name}: {e}; it has {seen}"));
                        }
                    }
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(wrong.join("; "))
                    }
                })?;
                Ok(Some(took))
            }
            Action::ExpectBgpPath {
                host,
                prefix,
                originator,
                cluster_list,
                within,
            } => {
                let prefix = self.prefix_of(prefix)?;
                let originator = originator
                    .as_deref()
                    .map(|v| self.resolve_addr(host, v))
                    .transpose()?;
                let cluster_list = cluster_list
                    .as_ref()
                    .map(|l| {
                        l.iter()
                            .map(|v| self.resolve_addr(host, v))
                            .collect::<Result<Vec<_>>>()
                    })
                    .transpose()?;
                let took = poll_then_hold(self.scale(*within), None, || {
                    let rib = self
                        .gobgp_json(host, &["global", "rib", "-a", "ipv4", &prefix.to_string()])
                        .map_err(|e| format!("{e:#}"))?;
                    let best = BestPath::from_rib(&rib, prefix)?;
                    best.check(originator, cluster_list.as_deref())
                        .map_err(|e| format!("{host}'s best path for {prefix}: {e} ({best})"))
                })?;
                Ok(Some(took))
            }
            Action::ExpectRoutes {
                host,
                routes,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let mut want = Vec::new();
                for r in routes {
                    let via = r.via().map(|v| self.resolve_addr(host, v)).transpose()?;
                    let p = r.prefix();
                    if p.parse::<Ipv4Net>().is_err() && self.s.container(p).is_none() {
                        // A group: its members running now (stopped ones are withdrawn).
                        for m in self.s.expand(&[p.to_string()]) {
                            if self.running.contains_key(&m) {
                                want.push(WantRoute {
                                    dst: self.prefix_of(&m)?,
                                    via,
                                });
                            }
                        }
                    } else {
                        want.push(WantRoute {
                            dst: self.prefix_of(p)?,
                            via,
                        });
                    }
                }
                let ns = self.w.hosts[hi].ns.path();
                let took = poll_then_hold(self.scale(*within), None, || {
                    let mut k = Kernel::open_in_netns(&ns).map_err(|e| e.to_string())?;
                    let routes = k
                        .routes(Family::V4, Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL))
                        .map_err(|e| e.to_string())?;
                    let seen = SeenRoutes::from_kernel(&routes);
                    seen.compare(&want, true).map_err(|d| {
                        format!(
                            "{host}'s tagged routes differ from the {} expected: {d}; seen: {seen}",
                            want.len()
                        )
                    })
                })?;
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
                let command = command
                    .iter()
                    .map(|a| self.substitute(a))
                    .collect::<Result<Vec<String>>>()?;
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
            Action::Freeze { host, daemon } => {
                let hi = self.w.host_index(host)?;
                self.w.send_daemon(hi, *daemon, Signal::SIGSTOP)?;
                Ok(None)
            }
            Action::Thaw { host, daemon } => {
                let hi = self.w.host_index(host)?;
                self.w.send_daemon(hi, *daemon, Signal::SIGCONT)?;
                Ok(None)
            }
            Action::Pause { duration } => {
                std::thread::sleep(self.scale(*duration));
                Ok(None)
            }
            Action::ExpectStatus {
                host,
                field,
                equals,
                at_least,
                at_most,
                within,
                hold,
            } => {
                let hi = self.w.host_index(host)?;
                let want = equals
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .context("equals")?;
                let check = || -> std::result::Result<(), String> {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    status_matches(&st, field, want.as_ref(), *at_least, *at_most)
                        .map_err(|e| format!("{host}'s driver status: {e}"))
                };
                let hold = hold.map(|h| self.scale(h));
                let took = poll_then_hold(self.scale(*within), hold, check)?;
                Ok(Some(took))
            }
            Action::ExpectLog {
                host,
                daemon,
                contains,
                at_least,
                at_most,
                within,
            } => {
                let h = self.w.host(host)?;
                let log = match daemon {
                    DaemonKind::Gobgpd => h.gobgpd.log.clone(),
                    _ => h.driver.log.clone(),
                };
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let n = count_lines(&log, contains).map_err(|e| format!("{e:#}"))?;
                    bounds(
                        n as f64,
                        at_least.map(|v| v as f64),
                        at_most.map(|v| v as f64),
                    )
                    .map_err(|e| {
                        format!("{} lines of {} contain {contains:?}: {e}", n, log.display())
                    })
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::LinkSnapshot { id, host, links } => {
                let all = crate::links::list(&self.w.host(host)?.ns)?;
                let mut snap = BTreeMap::new();
                for name in links {
                    let l = all
                        .get(name)
                        .ok_or_else(|| anyhow!("{host} has no link {name} to remember"))?;
                    snap.insert(name.clone(), l.clone());
                }
                self.link_snaps.insert(id.clone(), (host.clone(), snap));
                Ok(None)
            }
            Action::ExpectLink {
                host,
                links,
                present,
                kind,
                alias_prefix,
                unchanged_since,
                within,
            } => {
                let snap = match unchanged_since {
                    Some(id) => {
                        let (h, snap) = self
                            .link_snaps
                            .get(id)
                            .ok_or_else(|| anyhow!("no link snapshot named {id}"))?;
                        if h != host {
                            bail!("link snapshot {id} was taken on {h}, not {host}");
                        }
                        Some(snap.clone())
                    }
                    None => None,
                };
                let ns = &self.w.host(host)?.ns;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let all = crate::links::list(ns).map_err(|e| format!("{e:#}"))?;
                    let mut wrong = Vec::new();
                    for name in links {
                        match (all.get(name), present) {
                            (None, true) => wrong.push(format!("{name} is missing")),
                            (Some(l), false) => wrong.push(format!(
                                "{name} exists ({} {:?})",
                                l.kind.as_deref().unwrap_or("?"),
                                l.alias
                            )),
                            (None, false) => {}
                            (Some(l), true) => {
                                if let Some(k) = kind {
                                    if l.kind.as_deref() != Some(k.as_str()) {
                                        wrong.push(format!("{name} is a {:?}, not {k}", l.kind));
                                    }
                                }
                                if let Some(p) = alias_prefix {
                                    if !l
                                        .alias
                                        .as_deref()
                                        .is_some_and(|a| a.starts_with(p.as_str()))
                                    {
                                        wrong.push(format!(
                                            "{name}'s alias is {:?}, expected {p}...",
                                            l.alias
                                        ));
                                    }
                                }
                                if let Some(before) = snap.as_ref().and_then(|s| s.get(name)) {
                                    if let Some(d) = before.diff(l) {
                                        wrong.push(format!("{name} changed: {d}"));
                                    }
                                }
                            }
                        }
                    }
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("on {host}: {}", wrong.join("; ")))
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectMarkedLinks {
                host,
                at_least,
                at_most,
                within,
            } => {
                let ns = &self.w.host(host)?.ns;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let all = crate::links::list(ns).map_err(|e| format!("{e:#}"))?;
                    let n = all.values().filter(|l| l.marked()).count();
                    bounds(
                        n as f64,
                        at_least.map(|v| v as f64),
                        at_most.map(|v| v as f64),
                    )
                    .map_err(|e| {
                        let seen: Vec<String> = all
                            .values()
                            .map(|l| {
                                format!(
                                    "{} {} alias={:?}",
                                    l.name,
                                    l.kind.as_deref().unwrap_or("-"),
                                    l.alias
                                )
                            })
                            .collect();
                        format!(
                            "{n} links on {host} carry the mark {}: {e}; links: {}",
                            crate::links::MARK_PREFIX,
                            seen.join(", ")
                        )
                    })
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::BgpSnapshot { id, host } => {
                let hi = self.w.host_index(host)?;
                let peers = PeerView::all(&self.w.gobgp_neighbors(hi)?)?;
                if let Some(p) = peers.iter().find(|p| !p.established) {
                    bail!("{host}'s session to {} is not established", p.address);
                }
                self.bgp_snaps.insert(id.clone(), (host.clone(), peers));
                Ok(None)
            }
            Action::ExpectBgpSteady { host, since } => {
                let hi = self.w.host_index(host)?;
                let (h, before) = self
                    .bgp_snaps
                    .get(since)
                    .ok_or_else(|| anyhow!("no BGP snapshot named {since}"))?;
                if h != host {
                    bail!("BGP snapshot {since} was taken on {h}, not {host}");
                }
                let now = PeerView::all(&self.w.gobgp_neighbors(hi)?)?;
                let mut wrong = Vec::new();
                for b in before {
                    match now.iter().find(|n| n.address == b.address) {
                        None => wrong.push(format!("session to {} is gone", b.address)),
                        Some(n) => {
                            if let Some(d) = b.diff(n) {
                                wrong.push(format!("session to {}: {d}", b.address));
                            }
                        }
                    }
                }
                if !wrong.is_empty() {
                    bail!(
                        "{host}'s BGP sessions did not stay steady: {}",
                        wrong.join("; ")
                    );
                }
                Ok(None)
            }
            Action::Flood {
                id,
                host,
                count,
                first,
                next_hop,
            } => {
                if self.floods.contains_key(id) {
                    bail!("flood {id} is already running");
                }
                let h = self.w.host(host)?;
                let api = h.gobgp_api();
                let nh = next_hop.unwrap_or(h.addr.addr());
                let (count, first) = (*count, *first);
                let handle = std::thread::spawn(move || flood(&api, first, count, nh));
                self.floods.insert(id.clone(), handle);
                Ok(None)
            }
            Action::FloodWait { id, within } => {
                let handle = self
                    .floods
                    .remove(id)
                    .ok_or_else(|| anyhow!("no flood named {id}"))?;
                let deadline = Instant::now() + self.scale(*within);
                while !handle.is_finished() {
                    if Instant::now() > deadline {
                        bail!("flood {id} still sending after {:?}", self.scale(*within));
                    }
                    std::thread::sleep(POLL);
                }
                let took = handle
                    .join()
                    .map_err(|_| anyhow!("flood {id}: its thread panicked"))??;
                eprintln!(
                    "[{}] flood {id}: gobgpd accepted every path in {took:?}",
                    self.s.name
                );
                Ok(Some(took))
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

    /// One attempt to start a container through the engine.
    fn start_one(&mut self, name: &str) -> Result<ContainerRt> {
        let def = self
            .s
            .container(name)
            .ok_or_else(|| anyhow!("unknown container {name}"))?
            .clone();
        let hi = self.w.host_index(&def.host)?;
        let net = self.network_def(&def.network)?;
        self.engine
            .start(&self.w, hi, &net, name)
            .with_context(|| format!("start {name}"))
    }

    /// `{{c1}}` in a command argument becomes c1's address.
    fn substitute(&self, arg: &str) -> Result<String> {
        let mut out = arg.to_string();
        for name in crate::scenario::placeholders(arg).map_err(|e| anyhow!(e))? {
            let c = self
                .running
                .get(&name)
                .or_else(|| self.killed.iter().find(|c| c.name == name))
                .ok_or_else(|| anyhow!("{name} is not running (its address is unknown)"))?;
            out = out.replace(&format!("{{{{{name}}}}}"), &c.address.to_string());
        }
        Ok(out)
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

    /// A CIDR, or a running (or killed) container's /32.
    fn prefix_of(&self, p: &str) -> Result<IpNet> {
        match p.parse::<Ipv4Net>() {
            Ok(n) => Ok(IpNet::V4(n)),
            Err(_) => {
                let c = self
                    .running
                    .get(p)
                    .or_else(|| self.killed.iter().find(|c| c.name == p))
                    .ok_or_else(|| anyhow!("{p} is not running"))?;
                Ok(IpNet::V4(Ipv4Net::new(c.address, 32)?))
            }
        }
    }

    /// `gobgp -j ARGS...` on a host's gobgpd, parsed. An empty answer is null.
    fn gobgp_json(&self, host: &str, args: &[&str]) -> Result<serde_json::Value> {
        let h = self.w.host(host)?;
        let target = h.gobgp_target();
        let mut all: Vec<&str> = target.iter().map(String::as_str).collect();
        all.push("-j");
        all.extend(args);
        let out = h.ns.exec("gobgp", &all, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "gobgp {} on {host}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("gobgp -j {} on {host}", args.join(" ")))
    }

    /// `gobgp global rib add|del PREFIX nexthop NH` on a host's gobgpd.
    fn gobgp_rib(&self, host: &str, verb: &str, prefix: Ipv4Net, nh: Ipv4Addr) -> Result<()> {
        let (p, nh) = (prefix.to_string(), nh.to_string());
        let target = self.w.host(host)?.gobgp_target();
        let args = [
            &target[0], &target[1], "global", "rib", verb, "-a", "ipv4", &p, "nexthop", &nh,
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
        // A daemon a failed scenario left frozen would stall everything below.
        for h in &self.w.hosts {
            for d in [&h.gobgpd, &h.driver] {
                if d.running() {
                    let _ = d.send(Signal::SIGCONT);
                }
            }
        }
        for (id, f) in self.floods.drain() {
            // A flood still sending ends with gobgpd (stopped by the cleanup stack).
            if f.is_finished() {
                if let Ok(Err(e)) = f.join() {
                    errors.push(format!("flood {id}: {e:#}"));
                }
            }
        }
        for c in std::mem::take(&mut self.killed) {
            if self.w.hosts[c.host].driver.running() {
                if let Err(e) = self.engine.reap(&self.w, &c) {
                    errors.push(format!("reap the killed {}: {e:#}", c.name));
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
                // By the driver's mark, never by name: a scenario's own
                // foreign `ib*` links must stay, and are not the driver's.
                let left: Vec<String> = crate::links::list(&h.ns)?
                    .into_values()
                    .filter(LinkInfo::marked)
                    .map(|l| format!("{} ({})", l.name, l.alias.unwrap_or_default()))
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

/// A container's own eth0 addresses and IPv4 routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerView {
    pub eth0: Vec<Ipv4Net>,
    /// (destination, next hop, leaves through eth0)
    pub routes: Vec<(IpNet, Option<std::net::IpAddr>, bool)>,
}

impl ContainerView {
    pub fn read(netns: &std::path::Path) -> Result<ContainerView> {
        let mut k = Kernel::open_in_netns(netns)?;
        let eth0 = k
            .link("eth0")?
            .ok_or_else(|| anyhow!("no eth0 in the container"))?;
        let addrs = k
            .addresses()?
            .into_iter()
            .filter(|a| a.index == eth0.index)
            .filter_map(|a| match a.net {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            })
            .collect();
        let routes = k
            .routes(Family::V4, None)?
            .into_iter()
            .map(|r| (r.dst, r.via, r.oif == Some(eth0.index)))
            .collect();
        Ok(ContainerView {
            eth0: addrs,
            routes,
        })
    }

    fn default_route(&self) -> Option<&(IpNet, Option<std::net::IpAddr>, bool)> {
        self.routes.iter().find(|r| r.0.prefix_len() == 0)
    }
}

impl std::fmt::Display for ContainerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a: Vec<String> = self.eth0.iter().map(|n| n.to_string()).collect();
        let r: Vec<String> = self
            .routes
            .iter()
            .map(|(d, v, eth0)| {
                let dev = if *eth0 { " dev eth0" } else { "" };
                match v {
                    Some(v) => format!("{d} via {v}{dev}"),
                    None => format!("{d}{dev}"),
                }
            })
            .collect();
        write!(f, "eth0 [{}], routes [{}]", a.join(" "), r.join(", "))
    }
}

/// What `expect-container` wants of a container's view.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerWant {
    pub address: Option<bool>,
    pub default_route: Option<DefaultRoute>,
    pub gateway: Option<bool>,
}

impl ContainerWant {
    /// `addr`: the address the engine's IPAM gave; `gw`: the network's gateway.
    pub fn check(
        &self,
        v: &ContainerView,
        addr: Ipv4Addr,
        gw: Ipv4Addr,
    ) -> std::result::Result<(), String> {
        let mut wrong = Vec::new();
        if let Some(want) = self.address {
            let has = v.eth0.iter().any(|n| n.addr() == addr);
            if has != want {
                wrong.push(if want {
                    format!("eth0 lacks its address {addr}")
                } else {
                    format!("eth0 holds {addr}")
                });
            }
        }
        let default = v.default_route();
        match (self.default_route, default) {
            (None, _) => {}
            (Some(_), None) => wrong.push("no default route".into()),
            (Some(_), Some((_, _, false))) => {
                wrong.push("the default route does not leave through eth0".into())
            }
            (Some(DefaultRoute::Connected), Some((_, Some(v), _))) => {
                wrong.push(format!("the default route is via {v}, expected connected"))
            }
            (Some(DefaultRoute::Gateway), Some((_, None, _))) => {
                wrong.push("the default route is connected, expected via a gateway".into())
            }
            (Some(_), Some(_)) => {}
        }
        match self.gateway {
            Some(true) if default.map(|d| d.1) != Some(Some(std::net::IpAddr::V4(gw))) => {
                wrong.push(format!("the default route is not via the gateway {gw}"));
            }
            None | Some(true) => {}
            Some(false) => {
                let via: Vec<String> = v
                    .routes
                    .iter()
                    .filter_map(|(d, h, _)| h.map(|h| format!("{d} via {h}")))
                    .collect();
                if !via.is_empty() {
                    wrong.push(format!("expected no gateway, but has {}", via.join(", ")));
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// The route-reflection attributes of the best path gobgpd holds for a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct BestPath {
    pub next_hop: Option<String>,
    /// ORIGINATOR_ID (attribute type 9).
    pub originator: Option<String>,
    /// CLUSTER_LIST (attribute type 10).
    pub cluster_list: Option<Vec<String>>,
}

impl std::fmt::Display for BestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "next hop {}, originator {}, cluster list {}",
            self.next_hop.as_deref().unwrap_or("-"),
            self.originator.as_deref().unwrap_or("none"),
            self.cluster_list
                .as_ref()
                .map_or("none".to_string(), |l| format!("[{}]", l.join(", ")))
        )
    }
}

impl BestPath {
    /// From `gobgp -j global rib -a ipv4 PREFIX`: `{prefix: [path...]}`,
    /// each path with `best` and `attrs` (`{"type": 9, "value": "a.b.c.d"}`,
    /// `{"type": 10, "value": ["a.b.c.d", ...]}`).
    pub fn from_rib(
        rib: &serde_json::Value,
        prefix: IpNet,
    ) -> std::result::Result<BestPath, String> {
        let paths = rib
            .get(prefix.to_string())
            .and_then(|p| p.as_array())
            .ok_or_else(|| format!("no path for {prefix} in the RIB: {rib}"))?;
        let best = paths
            .iter()
            .find(|p| p.get("best").and_then(|b| b.as_bool()) == Some(true))
            .ok_or_else(|| format!("no best path for {prefix} among {}", paths.len()))?;
        let attrs = best
            .get("attrs")
            .and_then(|a| a.as_array())
            .ok_or_else(|| format!("path without attrs: {best}"))?;
        let attr = |t: u64| {
            attrs
                .iter()
                .find(|a| a.get("type").and_then(|v| v.as_u64()) == Some(t))
        };
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        Ok(BestPath {
            next_hop: attr(3).and_then(|a| a.get("nexthop")).and_then(text),
            originator: attr(9).and_then(|a| a.get("value")).and_then(text),
            cluster_list: attr(10)
                .and_then(|a| a.get("value"))
                .and_then(|v| v.as_array())
                .map(|l| l.iter().filter_map(text).collect()),
        })
    }

    pub fn check(
        &self,
        originator: Option<Ipv4Addr>,
        cluster_list: Option<&[Ipv4Addr]>,
    ) -> std::result::Result<(), String> {
        let mut wrong = Vec::new();
        if let Some(o) = originator {
            if self.originator.as_deref() != Some(o.to_string().as_str()) {
                wrong.push(format!("ORIGINATOR_ID is not {o}"));
            }
        }
        if let Some(want) = cluster_list {
            let want: Vec<String> = want.iter().map(|a| a.to_string()).collect();
            if self.cluster_list.as_ref() != Some(&want) {
                wrong.push(format!("CLUSTER_LIST is not [{}]", want.join(", ")));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// One route an expectation wants: a prefix and, optionally, its next hop.
#[derive(Debug, Clone, PartialEq)]
pub struct WantRoute {
    pub dst: IpNet,
    pub via: Option<Ipv4Addr>,
}

impl std::fmt::Display for WantRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via {
            Some(v) => write!(f, "{} via {v}", self.dst),
            None => write!(f, "{}", self.dst),
        }
    }
}

/// The routes seen (of one owner): prefix -> next hops (`None`: no gateway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenRoutes(pub BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>>);

fn hops_text(hops: &[Option<std::net::IpAddr>]) -> String {
    hops.iter()
        .map(|h| h.map_or("(connected)".to_string(), |a| a.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

impl std::fmt::Display for SeenRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        let all: Vec<String> = self
            .0
            .iter()
            .map(|(d, h)| format!("{d} via {}", hops_text(h)))
            .collect();
        write!(f, "{}", all.join(", "))
    }
}

impl SeenRoutes {
    pub fn from_kernel(routes: &[ipvlan_bgp::kernel::Route]) -> SeenRoutes {
        let mut m: BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>> = BTreeMap::new();
        for r in routes {
            m.entry(r.dst).or_default().push(r.via);
        }
        SeenRoutes(m)
    }

    /// The one route comparison of `expect-route` and `expect-routes`:
    /// every wanted prefix is there (through its `via` when given) and,
    /// when `exact`, nothing else is.
    pub fn compare(&self, want: &[WantRoute], exact: bool) -> std::result::Result<(), RouteDiff> {
        let mut d = RouteDiff::default();
        for w in want {
            match self.0.get(&w.dst) {
                None => d.missing.push(w.clone()),
                Some(hops) => {
                    if let Some(v) = w.via {
                        if !hops.contains(&Some(std::net::IpAddr::V4(v))) {
                            d.wrong_via.push((w.clone(), hops_text(hops)));
                        }
                    }
                }
            }
        }
        if exact {
            for (dst, hops) in &self.0 {
                if !want.iter().any(|w| w.dst == *dst) {
                    d.extra.push(format!("{dst} via {}", hops_text(hops)));
                } else if hops.len() > 1 {
                    // One route per prefix: a second one is a duplicate.
                    d.extra.push(format!(
                        "{dst} via {} ({} routes for one prefix)",
                        hops_text(hops),
                        hops.len()
                    ));
                }
            }
        }
        if d.missing.is_empty() && d.extra.is_empty() && d.wrong_via.is_empty() {
            Ok(())
        } else {
            Err(d)
        }
    }
}

/// How seen routes differ from the wanted ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDiff {
    pub missing: Vec<WantRoute>,
    pub extra: Vec<String>,
    /// The wanted route and the next hops seen instead.
    pub wrong_via: Vec<(WantRoute, String)>,
}

impl std::fmt::Display for RouteDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let m: Vec<String> = self.missing.iter().map(|w| w.to_string()).collect();
            parts.push(format!("missing [{}]", m.join(", ")));
        }
        if !self.extra.is_empty() {
            parts.push(format!("extra [{}]", self.extra.join(", ")));
        }
        if !self.wrong_via.is_empty() {
            let w: Vec<String> = self
                .wrong_via
                .iter()
                .map(|(w, seen)| {
                    format!(
                        "{} via {seen}, expected {}",
                        w.dst,
                        w.via.map_or(String::new(), |v| v.to_string())
                    )
                })
                .collect();
            parts.push(format!("wrong next hop [{}]", w.join(", ")));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// The report's key for a step's convergence: its 1-based index and its
/// name (`"07 expect-route h2 c1"`), unique even when two steps share a name.
pub fn convergence_key(index: usize, name: &str) -> String {
    format!("{:02} {name}", index + 1)
}

/// Polls `check` until it holds (at most `within`), then, with a `hold`,
/// keeps checking that it still holds for so long. Returns how long it took
/// to hold first.
fn poll_then_hold(
    within: Duration,
    hold: Option<Duration>,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> Result<Duration> {
    let (_, took) = eventually(within, POLL, &mut check).map_err(|e| anyhow!(e))?;
    if let Some(h) = hold {
        let until = Instant::now() + h;
        while Instant::now() < until {
            check().map_err(|e| {
                anyhow!("held for {took:?}, then changed within the {h:?} hold: {e}")
            })?;
            std::thread::sleep(POLL);
        }
    }
    Ok(took)
}

/// Whether the status JSON's value at a dotted `field` passes the tests.
fn status_matches(
    st: &serde_json::Value,
    field: &str,
    equals: Option<&serde_json::Value>,
    at_least: Option<f64>,
    at_most: Option<f64>,
) -> std::result::Result<(), String> {
    let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
    let seen = st.pointer(&pointer);
    if let Some(want) = equals {
        let same = match (seen, want) {
            (Some(a), b) if a.is_number() && b.is_number() => a.as_f64() == b.as_f64(),
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same {
            return Err(format!(
                "{field} is {}, expected {want}",
                seen.map_or("missing".to_string(), |v| v.to_string())
            ));
        }
    }
    if at_least.is_some() || at_most.is_some() {
        // A counter not there yet has counted nothing.
        let n = match seen {
            None | Some(serde_json::Value::Null) => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{field} is {v}, not a number"))?,
        };
        bounds(n, at_least, at_most).map_err(|e| format!("{field} is {n}: {e}"))?;
    }
    Ok(())
}

fn bounds(n: f64, at_least: Option<f64>, at_most: Option<f64>) -> std::result::Result<(), String> {
    if let Some(lo) = at_least {
        if n < lo {
            return Err(format!("expected at least {lo}"));
        }
    }
    if let Some(hi) = at_most {
        if n > hi {
            return Err(format!("expected at most {hi}"));
        }
    }
    Ok(())
}

/// Lines of a log file that contain `needle` (a missing file has none).
fn count_lines(log: &std::path::Path, needle: &str) -> Result<usize> {
    match std::fs::read(log) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow!("read {}: {e}", log.display())),
    }
}

/// One BGP session as `gobgp -j neighbor` shows it: enough to tell whether
/// it was reset (uptime) or carried new routes (UPDATEs received).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub address: String,
    pub established: bool,
    /// When the session came up (`timers.state.uptime`), as gobgpd reports it.
    pub uptime: serde_json::Value,
    pub updates_received: u64,
}

impl PeerView {
    pub fn all(neighbors: &[serde_json::Value]) -> Result<Vec<PeerView>> {
        neighbors
            .iter()
            .map(|n| {
                let address = n
                    .pointer("/conf/neighbor_address")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| anyhow!("gobgp neighbor without conf.neighbor_address: {n}"))?
                    .to_string();
                Ok(PeerView {
                    address,
                    established: n.pointer("/state/session_state").and_then(|v| v.as_u64())
                        == Some(6),
                    // Both are required: a snapshot without them would
                    // compare nothing and always look steady.
                    uptime: n.pointer("/timers/state/uptime").cloned().ok_or_else(|| {
                        anyhow!("gobgp neighbor without timers.state.uptime: {n}")
                    })?,
                    updates_received: n
                        .pointer("/state/messages/received/update")
                        .and_then(|v| v.as_u64())
                        .ok_or_else(|| {
                            anyhow!("gobgp neighbor without state.messages.received.update: {n}")
                        })?,
                })
            })
            .collect()
    }

    /// How `now` differs from this earlier view, or `None` if the session is steady.
    pub fn diff(&self, now: &PeerView) -> Option<String> {
        let mut d = Vec::new();
        if !now.established {
            d.push("not established".to_string());
        }
        if now.uptime != self.uptime {
            d.push(format!(
                "reset (up since {} -> {})",
                self.uptime, now.uptime
            ));
        }
        if now.updates_received != self.updates_received {
            d.push(format!(
                "{} new UPDATEs received",
                now.updates_received.saturating_sub(self.updates_received)
            ));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

/// Originates `count` /32s from `first` via `nh` on the gobgpd behind
/// `api` (AddPathStream, 1,000 paths per message); returns how long gobgpd
/// took to accept them. Runs on its own thread with its own runtime.
pub fn flood(api: &std::path::Path, first: Ipv4Addr, count: u32, nh: Ipv4Addr) -> Result<Duration> {
    use ipvlan_bgp::bgp::gobgp::{apipb, connect, local_path, GobgpAddr};
    let base = u32::from(first);
    if base.checked_add(count - 1).is_none() {
        bail!("{count} addresses from {first} run past 255.255.255.255");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let addr = GobgpAddr::Unix(api.to_path_buf());
    let t = Instant::now();
    rt.block_on(async {
        let mut c = connect(&addr, Duration::from_secs(5)).await?;
        let msgs = (0..count).step_by(1000).map(move |start| {
            let end = (start + 1000).min(count);
            apipb::AddPathStreamRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                paths: (start..end)
                    .map(|i| {
                        let p = Ipv4Net::new(Ipv4Addr::from(base + i), 32).expect("a /32 is valid");
                        local_path(IpNet::V4(p), std::net::IpAddr::V4(nh), &[])
                    })
                    .collect(),
            }
        });
        c.add_path_stream(tokio_stream::iter(msgs)).await?;
        Ok::<_, anyhow::Error>(())
    })
    .with_context(|| format!("flood {count} paths into {}", api.display()))?;
    Ok(t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(routes: &[(&str, Option<&str>)]) -> SeenRoutes {
        let mut m: BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>> = BTreeMap::new();
        for (d, v) in routes {
            m.entry(d.parse().unwrap())
                .or_default()
                .push(v.map(|v| v.parse().unwrap()));
        }
        SeenRoutes(m)
    }

    fn want(d: &str, via: Option<&str>) -> WantRoute {
        WantRoute {
            dst: d.parse().unwrap(),
            via: via.map(|v| v.parse().unwrap()),
        }
    }

    #[test]
    fn route_sets_diff_missing_extra_and_wrong_next_hop() {
        let s = seen(&[
            ("10.1.1.2/32", Some("192.0.2.1")),
            ("10.1.3.2/32", Some("192.0.2.9")),
            ("10.9.9.9/32", Some("192.0.2.3")),
        ]);
        let w = [
            want("10.1.1.2/32", Some("192.0.2.1")),
            want("10.1.3.2/32", Some("192.0.2.3")),
            want("10.1.4.2/32", None),
        ];
        let d = s.compare(&w, true).unwrap_err();
        assert_eq!(d.missing, vec![want("10.1.4.2/32", None)]);
        assert_eq!(d.extra, vec!["10.9.9.9/32 via 192.0.2.3".to_string()]);
        let text = d.to_string();
        assert!(
            text.contains("missing [10.1.4.2/32]")
                && text.contains("extra [10.9.9.9/32 via 192.0.2.3]")
                && text.contains("wrong next hop [10.1.3.2/32 via 192.0.2.9, expected 192.0.2.3]"),
            "{text}"
        );
        // Not exact: extras are allowed, the rest still counts.
        let d = s.compare(&w, false).unwrap_err();
        assert!(d.extra.is_empty() && d.missing.len() == 1 && d.wrong_via.len() == 1);
        // The same set, with or without next hops, matches exactly.
        let all = [
            want("10.1.1.2/32", Some("192.0.2.1")),
            want("10.1.3.2/32", None),
            want("10.9.9.9/32", Some("192.0.2.3")),
        ];
        assert_eq!(s.compare(&all, true), Ok(()));
        // Two routes for one prefix are one too many when the set is exact.
        let dup = seen(&[
            ("10.1.1.2/32", Some("192.0.2.1")),
            ("10.1.1.2/32", Some("192.0.2.3")),
        ]);
        let d = dup.compare(&all[..1], true).unwrap_err();
        assert!(d.to_string().contains("2 routes for one prefix"), "{d}");
        assert!(dup.compare(&all[..1], false).is_ok());
        assert!(SeenRoutes::default().compare(&[], true).is_ok());
        assert!(SeenRoutes::default().compare(&all[..1], true).is_err());
    }

    #[test]
    fn container_views_are_checked_per_data_plane() {
        let addr: Ipv4Addr = "10.1.1.2".parse().unwrap();
        let gw: Ipv4Addr = "10.1.1.1".parse().unwrap();
        let l3 = ContainerView {
            eth0: vec!["10.1.1.2/32".parse().unwrap()],
            routes: vec![("0.0.0.0/0".parse().unwrap(), None, true)],
        };
        let macvlan = ContainerView {
            eth0: vec!["10.1.1.2/24".parse().unwrap()],
            routes: vec![
                (
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.1.1".parse().unwrap()),
                    true,
                ),
                ("10.1.1.0/24".parse().unwrap(), None, true),
            ],
        };
        let want_l3 = ContainerWant {
            address: Some(true),
            default_route: Some(DefaultRoute::Connected),
            gateway: Some(false),
        };
        let want_l2 = ContainerWant {
            address: Some(true),
            default_route: Some(DefaultRoute::Gateway),
            gateway: Some(true),
        };
        assert_eq!(want_l3.check(&l3, addr, gw), Ok(()));
        assert_eq!(want_l2.check(&macvlan, addr, gw), Ok(()));
        let e = want_l3.check(&macvlan, addr, gw).unwrap_err();
        assert!(
            e.contains("via 10.1.1.1, expected connected") && e.contains("expected no gateway"),
            "{e}"
        );
        let e = want_l2.check(&l3, addr, gw).unwrap_err();
        assert!(
            e.contains("expected via a gateway") && e.contains("not via the gateway 10.1.1.1"),
            "{e}"
        );
        let e = want_l2
            .check(&macvlan, "10.1.1.3".parse().unwrap(), gw)
            .unwrap_err();
        assert!(e.contains("lacks its address 10.1.1.3"), "{e}");
        let e = want_l3
            .check(&ContainerView::default(), addr, gw)
            .unwrap_err();
        assert!(e.contains("no default route"), "{e}");
    }

    #[test]
    fn reflected_paths_show_originator_and_cluster_list() {
        // As gobgp 3 prints a path FRR reflected (captured from frr-rr).
        let rib = json!({"10.20.1.2/32":[{"nlri":{"prefix":"10.20.1.2/32"},"best":true,
            "attrs":[{"type":1,"value":0},{"type":2,"as_paths":[]},{"type":3,"nexthop":"192.0.2.1"},
                     {"type":4,"metric":0},{"type":5,"value":100},{"type":9,"value":"192.0.2.1"},
                     {"type":10,"value":["192.0.2.254"]}],"neighbor-ip":"192.0.2.254"}]});
        let p: IpNet = "10.20.1.2/32".parse().unwrap();
        let b = BestPath::from_rib(&rib, p).unwrap();
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            b.check(Some(a("192.0.2.1")), Some(&[a("192.0.2.254")])),
            Ok(())
        );
        let e = b.check(Some(a("192.0.2.2")), Some(&[])).unwrap_err();
        assert!(
            e.contains("ORIGINATOR_ID is not 192.0.2.2") && e.contains("CLUSTER_LIST is not []"),
            "{e}"
        );
        // A path learned straight from its originator has neither attribute.
        let direct =
            json!({"10.20.1.2/32":[{"best":true,"attrs":[{"type":3,"nexthop":"192.0.2.1"}]}]});
        let b = BestPath::from_rib(&direct, p).unwrap();
        assert!(b.check(Some(a("192.0.2.1")), None).is_err());
        assert!(
            b.to_string().contains("originator none, cluster list none"),
            "{b}"
        );
        assert!(BestPath::from_rib(&serde_json::Value::Null, p).is_err());
    }

    #[test]
    fn convergence_keys_are_unique_per_step_and_sort_in_order() {
        assert_eq!(
            convergence_key(6, "expect-route h2 c1"),
            "07 expect-route h2 c1"
        );
        assert_ne!(convergence_key(2, "x"), convergence_key(5, "x"));
        assert!(convergence_key(8, "z") < convergence_key(9, "a"));
    }

    #[test]
    fn status_fields_are_dotted_paths_with_bounds() {
        let st = json!({"bgp": {"kernel_drift": 2, "rejected": {"outside-pools": 20000}, "gobgp": "unix:///x"}});
        assert!(status_matches(&st, "bgp.kernel_drift", None, Some(1.0), None).is_ok());
        let e = status_matches(&st, "bgp.kernel_drift", None, Some(3.0), None).unwrap_err();
        assert!(e.contains("is 2") && e.contains("at least 3"), "{e}");
        assert!(status_matches(
            &st,
            "bgp.rejected.outside-pools",
            Some(&json!(20000)),
            None,
            None
        )
        .is_ok());
        assert!(status_matches(
            &st,
            "bgp.rejected.outside-pools",
            Some(&json!(19999)),
            None,
            None
        )
        .is_err());
        assert!(status_matches(&st, "bgp.gobgp", Some(&json!("unix:///x")), None, None).is_ok());
        // A counter that does not exist yet has counted nothing...
        assert!(status_matches(&st, "bgp.route_conflicts", None, None, Some(0.0)).is_ok());
        assert!(status_matches(&st, "bgp.route_conflicts", None, Some(1.0), None).is_err());
        // ...but equality needs the field.
        assert!(status_matches(&st, "bgp.route_conflicts", Some(&json!(0)), None, None).is_err());
        assert!(status_matches(&st, "bgp.gobgp", None, Some(1.0), None).is_err());
    }

    #[test]
    fn log_lines_are_counted_by_substring() {
        let dir = std::env::temp_dir().join(format!("harness-count-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("driver.log");
        std::fs::write(&f, "a outside-pools\nb\nc outside-pools x\n").unwrap();
        assert_eq!(count_lines(&f, "outside-pools").unwrap(), 2);
        assert_eq!(count_lines(&dir.join("none.log"), "x").unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reset_or_an_update_is_not_steady() {
        let n = |up: i64, upd: u64, state: u64| {
            json!({"conf": {"neighbor_address": "192.0.2.2"},
                   "state": {"session_state": state, "messages": {"received": {"update": upd}}},
                   "timers": {"state": {"uptime": {"seconds": up}}}})
        };
        let before = PeerView::all(&[n(100, 3, 6)]).unwrap();
        assert_eq!(
            before[0].diff(&PeerView::all(&[n(100, 3, 6)]).unwrap()[0]),
            None
        );
        let reset = before[0]
            .diff(&PeerView::all(&[n(200, 3, 6)]).unwrap()[0])
            .unwrap();
        assert!(reset.contains("reset"), "{reset}");
        let upd = before[0]
            .diff(&PeerView::all(&[n(100, 4, 6)]).unwrap()[0])
            .unwrap();
        assert!(upd.contains("1 new UPDATE"), "{upd}");
        assert!(before[0]
            .diff(&PeerView::all(&[n(100, 3, 3)]).unwrap()[0])
            .is_some());
    }
}
