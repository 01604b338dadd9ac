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
//! This module owns `run()` and the [`Runner`] state; each part of the
//! play is a file of its own, each an `impl Runner` that uses `super::Runner`
//! and what it needs of its siblings' pure parts (`views`, `converged`,
//! `flood`); this module imports none of them but those, so no two files
//! import each other.
//! ```text
//! mod.rs (run: build, play, diagnostics, teardown) ─► play.rs (the loop; who plays a step: its step-table row)
//!   play.rs ─┬─► actions.rs (steps that do something) ─► containers.rs, control.rs, exec.rs, flood.rs, from_route.rs
//!            ├─► expect.rs (the other expectations) ─► views.rs (pure comparisons), poll.rs (the poll loop)
//!            ├─► routes.rs (route steps, dated by route events) ─► stamps.rs (pure dating), converged.rs (whole route sets)
//!            ├─► reachability.rs (reachability, probed every 2 ms)
//!            ├─► flows.rs (UDP flows: loss there and back, outages), uplink_counters.rs (each uplink's share)
//!            ├─► metrics.rs (expect-metrics), router_bgp.rs (expect-router-bgp), withdrawn.rs (expect-withdrawn),
//!            │   router_received.rs (expect-router-received: what a router has from one neighbour),
//!            │   route_events.rs (route-events-start/stop: a route's events, read from the route logs)
//!            └─► members.rs (names to probe members, addresses, prefixes), gobgp.rs (the CLI)
//!   play.rs ─► ipam.rs (etcd members, ipam release-host, expect-ipam: the cross-host audit)
//! teardown.rs (probes, injected paths, containers, networks through the engine; no link of ours left)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use ipnet::IpNet;

use crate::engine::{self, ContainerEngine, ContainerRt, Engine};
use crate::machine;
use crate::probe::links::LinkInfo;
use crate::probe::routes::RouteLog;
use crate::probe::{Prober, TcpServers};
use crate::report::{ReachCell, Report};
use crate::scenario::Scenario;
use crate::topology::{Options, World};

mod actions;
mod containers;
mod control;
pub mod converged;
mod exec;
mod expect;
mod flood;
mod flows;
mod from_route;
mod gobgp;
pub mod ipam;
mod members;
mod metrics;
mod play;
mod plugin_call;
mod poll;
mod reachability;
mod route_events;
mod router_bgp;
mod router_received;
mod routes;
mod stamps;
mod teardown;
mod uplink_counters;
mod views;
mod withdrawn;

pub use flood::flood;
pub use views::{
    BestPath, ContainerView, ContainerWant, PeerView, RouteDiff, SeenRoutes, WantRoute,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(100);
/// How long an expected absence (`present = false`) must last by default
/// (scaled, at most by [`ABSENT_HOLD_MAX_SCALE`]): a route that is gone for
/// one poll may be in the middle of a flap, and an absence that never held
/// proves nothing.
const ABSENT_HOLD: Duration = Duration::from_secs(2);
/// The most the default absence hold is scaled by. Deadlines cost nothing
/// when things work, holds always cost: under TCG (scale 10) the default
/// hold was 20 s per absence step, about 260 s of the VM part's time. The
/// steps watch route events, so a flap inside the hold is seen at once; 6 s
/// covers the emulated machine's slower reactions three times over. An
/// explicit `hold` keeps the full scale (it is set against timers that
/// scale, such as the stale time).
const ABSENT_HOLD_MAX_SCALE: f64 = 3.0;

/// Runs one scenario with the given engine and returns its report.
pub fn run(s: &Scenario, opts: &Options, engine: Engine) -> Report {
    let started = Instant::now();
    let mut report = Report {
        scenario: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        engine: engine.name().to_string(),
        gobgp: opts.line_for(s).map(|l| l.name().to_string()),
        ..Report::default()
    };
    let say = |msg: &str| {
        eprintln!(
            "[{}] {:>6.1}s {msg}",
            s.name,
            started.elapsed().as_secs_f64()
        )
    };
    let caps = machine::detect();
    let skip = match machine::skip_reason(s, caps, engine) {
        Ok(None) => machine::DriverCaps::probe(&opts.driver_bin).and_then(|driver| {
            machine::line_skip_reason(s, caps, &driver, opts.line_for(s), engine)
        }),
        other => other,
    };
    match skip {
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
        "building {} hosts ({}){}",
        s.hosts.len(),
        s.description,
        opts.line_for(s)
            .map(|l| format!(", gobgpd {l}"))
            .unwrap_or_default()
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
        flows: HashMap::new(),
        counters: HashMap::new(),
        tcp: TcpServers::default(),
        injected: Vec::new(),
        killed: Vec::new(),
        link_snaps: HashMap::new(),
        bgp_snaps: HashMap::new(),
        floods: HashMap::new(),
        wave: None,
        note: None,
        watches: HashMap::new(),
        recordings: HashMap::new(),
        reach: Vec::new(),
        resolution: None,
        held_at: None,
        route_logs: HashMap::new(),
        action: Span {
            start: started,
            end: started,
        },
        started,
    };
    // Route events are recorded from before the first step: every step's
    // action happens while its namespaces are listened to.
    let opened = r.open_route_logs();
    let result = match opened.and_then(|()| r.engine.setup(&r.w)) {
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
    /// Background UDP flows by id (`flows-start`).
    flows: HashMap<String, crate::probe::flows::Flows>,
    /// Uplink packet counters by id (`uplink-counters-start`).
    counters: HashMap<String, BTreeMap<String, crate::probe::counters::LinkCounters>>,
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
    watches: HashMap<String, RouteWatchRt>,
    /// Route event recordings by id (`route-events-start`), read from
    /// `route_logs`.
    recordings: HashMap<String, Recording>,
    /// What the step just played wants in its report's `detail` on success.
    note: Option<String>,
    /// The step's last probe round (see [`Runner::record_reach`]), for its report.
    reach: Vec<ReachCell>,
    /// The resolution of the figure the step just played measured (its
    /// report's `resolution_ms`; unset: the clock's, 1 ms).
    resolution: Option<Duration>,
    /// When the expectation just played began to hold, dated by events
    /// (its convergence then counts from the last action's end to it).
    held_at: Option<Instant>,
    /// Route and link events of every host and router namespace, by name,
    /// from before the first step on (trimmed to the last action's start).
    route_logs: HashMap<String, RouteLog>,
    /// The last action (an `Event` step): when it began and ended.
    action: Span,
    /// When the run began, for each step's `started_ms`.
    started: Instant,
}

/// A background route watch and when it began (its route events are kept
/// from then on).
struct RouteWatchRt {
    watch: converged::Watch,
    since: Instant,
}

/// One `route-events-start`'s route: what it is (for messages), whose
/// route log holds its events (a host's or a router's), the prefix, the
/// protocol it must have (a host: the driver's tag; a router: any), and
/// since when its events are kept.
struct Recording {
    what: String,
    log: String,
    dst: IpNet,
    protocol: Option<u8>,
    since: Instant,
}

/// When a step ran.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: Instant,
    end: Instant,
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
