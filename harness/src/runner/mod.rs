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
//!
//! This module owns `run()`, the [`Runner`] state, the play loop and the
//! helpers every step shares (members, probes, addresses, gobgp calls).
//! ```text
//! mod.rs ─► play loop ─┬─► actions.rs  (steps that do something) ─► flood.rs
//!                      └─► expect.rs   (expectations)             ─► views.rs
//!        ─► teardown.rs
//! ```
//! The submodules use `super::Runner`; this module uses only `views` and
//! `flood` (re-exports: `runner::flood`, `runner::SeenRoutes`, ...), which
//! use nothing of the runner, so no two modules import each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use nix::sys::signal::Signal;

use crate::engine::{self, ContainerEngine, ContainerRt, Control, Engine, Subnets};
use crate::machine;
use crate::probe::links::LinkInfo;
use crate::probe::{ping_pairs, tcp_pairs, Member, Prober, TcpServers};
use crate::report::{ReachCell, Report, StepReport};
use crate::scenario::{Action, DaemonKind, Family, Measure, Play, Probe, Scenario, Step};
use crate::topology::{Options, World};
use crate::util::{eventually, Dur};

mod actions;
pub mod converged;
mod exec;
mod expect;
mod flood;
mod metrics;
mod router_bgp;
mod teardown;
mod views;

pub use flood::flood;
pub use views::{
    BestPath, ContainerView, ContainerWant, PeerView, RouteDiff, SeenRoutes, WantRoute,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(100);
/// How long an expected absence (`present = false`) must last by default
/// (scaled): a route that is gone for one poll may be in the middle of a
/// flap, and an absence that never held proves nothing.
const ABSENT_HOLD: Duration = Duration::from_secs(2);

/// Runs one scenario with the given engine and returns its report.
pub fn run(s: &Scenario, opts: &Options, engine: Engine) -> Report {
    let started = Instant::now();
    let mut report = Report {
        scenario: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        engine: engine.name().to_string(),
        ..Report::default()
    };
    let say = |msg: &str| {
        eprintln!(
            "[{}] {:>6.1}s {msg}",
            s.name,
            started.elapsed().as_secs_f64()
        )
    };
    match machine::skip_reason(s, machine::detect(), engine) {
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
    let swept_cgroups = engine::sweep(&opts.run_root);
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
    let eng = engine::make(engine);
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
        wave: None,
        note: None,
        watches: HashMap::new(),
        reach: Vec::new(),
        started,
    };
    let result = match r.engine.setup(&r.w) {
        Ok(()) => {
            say(&format!("{} engine ready", r.engine.kind()));
            r.play(&mut report, &say)
        }
        Err(e) => Err(e.context(format!("set up the {} engine", r.engine.kind()))),
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
    engine: Box<dyn ContainerEngine>,
    running: BTreeMap<String, ContainerRt>,
    networks: BTreeSet<(usize, String)>,
    probers: HashMap<String, Prober>,
    tcp: TcpServers,
    /// Paths the scenario originated with `inject`, withdrawn at teardown.
    injected: Vec<(String, IpNet, IpAddr)>,
    /// Containers killed behind the driver's back, reaped at teardown.
    killed: Vec<ContainerRt>,
    link_snaps: HashMap<String, (String, BTreeMap<String, LinkInfo>)>,
    bgp_snaps: HashMap<String, (String, Vec<PeerView>)>,
    floods: HashMap<String, std::thread::JoinHandle<Result<Duration>>>,
    /// The last `start` or `stop` step's span, for `expect-converged`.
    wave: Option<Wave>,
    /// Background route watches by id (`route-watch-start`).
    watches: HashMap<String, converged::Watch>,
    /// What the step just played wants in its report's `detail` on success.
    note: Option<String>,
    /// The step's last probe round (see [`Runner::record_reach`]), for its report.
    reach: Vec<ReachCell>,
    /// When the run began, for each step's `started_ms`.
    started: Instant,
}

/// One step's worth of container starts or stops.
#[derive(Debug, Clone, Copy)]
struct Wave {
    what: &'static str,
    count: usize,
    /// When the first container's start (or stop) began.
    first: Instant,
    /// When the last one was done.
    last: Instant,
}

impl Runner<'_> {
    fn play(&mut self, report: &mut Report, say: &dyn Fn(&str)) -> Result<()> {
        for net in self.s.networks.iter().filter(|n| n.create) {
            for host in net.hosts_on() {
                self.create_network(&net.name, &host)?;
            }
        }
        let total = self.s.steps.len();
        // Convergence counts from the end of the last event (the networks
        // being created, before the first step).
        let mut last_event = Instant::now();
        for (i, step) in self.s.steps.iter().enumerate() {
            say(&format!("step {}/{total}: {} ...", i + 1, step.name));
            let t = Instant::now();
            let outcome = self.step(step).map(|took| match step.kind.measure {
                Measure::Event => {
                    last_event = Instant::now();
                    if !matches!(step.action, Action::Start { .. } | Action::Stop { .. }) {
                        // Convergence now counts from this event, not the containers.
                        self.wave = None;
                    }
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
                started_ms: t.duration_since(self.started).as_millis() as u64,
                reach: std::mem::take(&mut self.reach),
                ..StepReport::default()
            };
            match outcome {
                Ok(conv) => {
                    sr.passed = true;
                    sr.detail = self.note.take();
                    if let Some(d) = &sr.detail {
                        say(&format!("step {}/{total}: {d}", i + 1));
                    }
                    if let Some(c) = conv {
                        sr.convergence_ms = Some(c.as_millis() as u64);
                        report
                            .convergence_ms
                            .insert(convergence_key(i, &step.name), c.as_millis() as u64);
                        let what = match step.kind.measure {
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
        if !def.on(host) {
            bail!("network {net} has no subnet on {host}");
        }
        let hi = self.w.host_index(host)?;
        self.engine
            .create_network(&self.w, hi, &def, Subnets::of(&def, host))?;
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

    /// A container or host as a probe sees it, by its address of `family`
    /// (default: IPv4 where it has one, else IPv6).
    fn member(&self, name: &str, family: Option<Family>) -> Result<Member> {
        // A killed container can still be a target (its address), not a source.
        if let Some(c) = self
            .running
            .get(name)
            .or_else(|| self.killed.iter().find(|c| c.name == name))
        {
            return Ok(Member {
                label: name.into(),
                netns: c.netns.clone(),
                addr: match family {
                    Some(f) => c.addr_of(f)?,
                    None => c.any_addr(),
                },
            });
        }
        if let Ok(h) = self.w.host(name) {
            return Ok(Member {
                label: name.into(),
                netns: h.ns.path(),
                addr: h.addr_of(family.unwrap_or_default())?,
            });
        }
        bail!("{name} is not running (start it first)")
    }

    /// Every (from, to) pair of distinct members, by their addresses of `family`.
    fn pairs_of(
        &self,
        from: &[String],
        to: &[String],
        family: Option<Family>,
    ) -> Result<Vec<(Member, Member)>> {
        let from = self.s.expand(from);
        let to = self.s.expand(to);
        let mut out = Vec::new();
        for f in &from {
            for t in &to {
                if f != t {
                    out.push((self.member(f, family)?, self.member(t, family)?));
                }
            }
        }
        Ok(out)
    }

    /// Keeps a reachability step's latest probe round (`ok[i]` for
    /// `pairs[i]`) for the step's report: its grid in the HTML page.
    fn record_reach(&mut self, pairs: &[(Member, Member)], ok: &[bool]) {
        self.reach = pairs
            .iter()
            .zip(ok)
            .map(|((a, b), ok)| ReachCell {
                from: a.label.clone(),
                to: b.label.clone(),
                ok: *ok,
            })
            .collect();
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

    /// Runs one step; `Some(duration)` for expectations that measured convergence.
    /// Who plays it is its row in the step table (`scenario::step_kinds`):
    /// expectations (and the snapshots and probes they compare against) in
    /// `expect.rs` (`metrics.rs`, `router_bgp.rs`), everything else that
    /// does something in `actions.rs`.
    fn step(&mut self, step: &Step) -> Result<Option<Duration>> {
        let a = &step.action;
        match (step.kind.play, a) {
            (Play::Expect, Action::ExpectMetrics { .. }) => self.expect_metrics(a),
            (Play::Expect, Action::ExpectRouterBgp { .. }) => self.expect_router_bgp(a),
            (Play::Expect, _) => self.expect(a),
            (Play::Act, _) => self.act(a),
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

    /// Starts every named container through the engine's `start_many`
    /// (several hosts at once); those that started are running even when
    /// another failed, and the first failure is the error.
    fn start_all(&mut self, names: &[String]) -> Result<()> {
        let mut jobs = Vec::new();
        for name in names {
            if self.running.contains_key(name) {
                bail!("{name} is already running");
            }
            let def = self
                .s
                .container(name)
                .ok_or_else(|| anyhow!("unknown container {name}"))?;
            let hi = self.w.host_index(&def.host)?;
            jobs.push((hi, self.network_def(&def.network)?, name.clone()));
        }
        let results = self.engine.start_many(&self.w, &jobs);
        let mut first_error = None;
        for ((_, _, name), r) in jobs.iter().zip(results) {
            match r {
                Ok(c) => {
                    self.running.insert(name.clone(), c);
                }
                Err(e) if first_error.is_none() => {
                    first_error = Some(e.context(format!("start {name}")))
                }
                Err(_) => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `{{c1}}` in a command argument becomes c1's address (IPv4 where it
    /// has one, else IPv6).
    fn substitute(&self, arg: &str) -> Result<String> {
        let mut out = arg.to_string();
        for name in crate::scenario::placeholders(arg).map_err(|e| anyhow!(e))? {
            let c = self
                .running
                .get(&name)
                .or_else(|| self.killed.iter().find(|c| c.name == name))
                .ok_or_else(|| anyhow!("{name} is not running (its address is unknown)"))?;
            out = out.replace(&format!("{{{{{name}}}}}"), &c.any_addr().to_string());
        }
        Ok(out)
    }

    /// An address written as an IP, a host name (its underlay address) or a
    /// router name (its address on a segment shared with `seen_from`).
    fn resolve_addr(&self, seen_from: &str, v: &str) -> Result<IpAddr> {
        self.resolve_addr_of(seen_from, v, Family::Ipv4)
    }

    /// As [`Runner::resolve_addr`], a name giving its address of `family`.
    fn resolve_addr_of(&self, seen_from: &str, v: &str, family: Family) -> Result<IpAddr> {
        if let Ok(a) = v.parse() {
            return Ok(a);
        }
        if let Ok(h) = self.w.host(v) {
            return h.addr_of(family);
        }
        self.s
            .router(v)
            .ok_or_else(|| anyhow!("{v} is neither an address, a host nor a router"))?;
        self.s
            .shared_address_of(seen_from, v, family)
            .or_else(|| self.s.links_of_family(v, family).first().map(|(_, a)| *a))
            .map(|a| a.addr())
            .ok_or_else(|| anyhow!("router {v} has no {family:?} address"))
    }

    /// A CIDR, or a running (or killed) container's /32 (or, when it has
    /// no IPv4 address or `family` says so, its /128).
    fn prefix_of(&self, p: &str) -> Result<IpNet> {
        self.prefix_of_family(p, None)
    }

    fn prefix_of_family(&self, p: &str, family: Option<Family>) -> Result<IpNet> {
        match p.parse::<IpNet>() {
            Ok(n) => Ok(n),
            Err(_) => {
                let c = self
                    .running
                    .get(p)
                    .or_else(|| self.killed.iter().find(|c| c.name == p))
                    .ok_or_else(|| anyhow!("{p} is not running"))?;
                let a = match family {
                    Some(f) => c.addr_of(f)?,
                    None => c.any_addr(),
                };
                Ok(IpNet::from(a))
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

    /// `gobgp global rib add|del PREFIX nexthop NH -a ipv4|ipv6` on a host's gobgpd.
    fn gobgp_rib(&self, host: &str, verb: &str, prefix: IpNet, nh: IpAddr) -> Result<()> {
        let (p, nh) = (prefix.to_string(), nh.to_string());
        let afi = if prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        let target = self.w.host(host)?.gobgp_target();
        let args = [
            &target[0], &target[1], "global", "rib", verb, "-a", afi, &p, "nexthop", &nh,
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
            (DaemonKind::Driver, _) if self.w.driver_is_plugin() => {
                self.engine.control_driver(&self.w, hi, action)?
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
                .hosts_on(),
        })
    }
}

/// The report's key for a step's convergence: its 1-based index and its
/// name (`"07 expect-route h2 c1"`), unique even when two steps share a name.
pub fn convergence_key(index: usize, name: &str) -> String {
    format!("{:02} {name}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_keys_are_unique_per_step_and_sort_in_order() {
        assert_eq!(
            convergence_key(6, "expect-route h2 c1"),
            "07 expect-route h2 c1"
        );
        assert_ne!(convergence_key(2, "x"), convergence_key(5, "x"));
        assert!(convergence_key(8, "z") < convergence_key(9, "a"));
    }
}
