//! `harness bench …`: measurements that need the harness's hosts. Each
//! benchmark repeats its measurement, alternates the sides it compares, and
//! reports n and spread ([`stats::LatencyStats`]), not a lone figure.
//!
//! This module holds what they share: two hosts over iBGP, reading a
//! host's tagged routes, process memory, and a fast poll.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::engine::Engine;
use crate::scenario::Scenario;
use crate::util::{eventually, scaled};
use crate::world::{Options, World};

mod all;
mod convergence;
mod docker_run;
mod fill;
mod flood;
mod learned_routes;
pub mod render;
mod scale;
pub mod stats;

pub use all::{all, Entry, SET};
pub use convergence::convergence;
pub use docker_run::docker_run;
pub use fill::fill;
pub use flood::{flood, FloodReport};
pub use learned_routes::learned_routes;
pub use scale::scale;
pub use stats::{compare, read_json, write_json, BenchResult, LatencyStats, SampleStats, Series};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const TWO_HOSTS: &str = r#"
description = "convergence benchmark"
[driver]
# 10.28.0.0/15: room for `bench learned-routes` up to 131,072 routes.
args = ["--accept-pool", "10.30.0.0/16", "--accept-pool", "10.28.0.0/15"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
"#;

/// [`TWO_HOSTS`] with a dual-stack underlay and network (the convergence
/// bench measures both families on the same joins).
const TWO_HOSTS_DUAL: &str = r#"
description = "convergence benchmark, dual stack"
underlay6 = "fd00:30::/64"
[driver]
args = ["--accept-pool", "10.30.0.0/16", "--accept-pool", "fd00:31::/32"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
subnets6 = { b1 = "fd00:31:1::/64", b2 = "fd00:31:2::/64" }
"#;

/// Two hosts over iBGP with the network created on `on`, sessions up.
fn two_hosts(
    opts: &Options,
    on: &[&str],
) -> Result<(World, crate::engine::Emulator, crate::scenario::NetworkDef)> {
    two_hosts_from(TWO_HOSTS, opts, on)
}

/// The same, dual stack.
fn two_hosts_dual(
    opts: &Options,
    on: &[&str],
) -> Result<(World, crate::engine::Emulator, crate::scenario::NetworkDef)> {
    two_hosts_from(TWO_HOSTS_DUAL, opts, on)
}

fn two_hosts_from(
    text: &str,
    opts: &Options,
    on: &[&str],
) -> Result<(World, crate::engine::Emulator, crate::scenario::NetworkDef)> {
    let s = Scenario::parse(text, std::path::Path::new("bench-two-hosts.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut e = crate::engine::Emulator::default();
    let net = s.networks[0].clone();
    for h in on {
        e.create_network(
            &w,
            w.host_index(h)?,
            &net,
            crate::engine::Subnets::of(&net, h),
        )?;
    }
    sessions_up(&w)?;
    Ok((w, e, net))
}

/// Waits (60 s at most, scaled) until every host's BGP sessions are up.
fn sessions_up(w: &World) -> Result<Duration> {
    poll_until(Duration::from_secs(60), || {
        Ok((0..w.hosts.len()).all(|i| {
            w.bgp_sessions(i)
                .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                .unwrap_or(false)
        }))
    })
}

/// Route events (our protocol tag) in one host's namespace, stamped as they
/// arrive from a netlink subscription: a bench waits for a route without
/// dumping the table in a loop that would compete with the driver for CPU.
pub(crate) struct RouteEvents {
    rx: std::sync::mpsc::Receiver<Option<(std::time::Instant, ipnet::IpNet, bool)>>,
    seen: Vec<(std::time::Instant, ipnet::IpNet, bool)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RouteEvents {
    pub(crate) fn open(w: &World, host: usize) -> Result<RouteEvents> {
        use ipvlan_bgp::rib::watch::{KernelEvent, RouteWatch};
        let watch = RouteWatch::open_in_netns(&w.hosts[host].ns.path())?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let tag = ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL;
        watch.spawn(move |ev| {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            match ev {
                Some(KernelEvent::Route { route, deleted }) if route.route.protocol == tag => tx
                    .send(Some((std::time::Instant::now(), route.route.dst, deleted)))
                    .is_ok(),
                Some(KernelEvent::Overrun) => tx.send(None).is_ok(),
                _ => true,
            }
        })?;
        Ok(RouteEvents {
            rx,
            seen: Vec::new(),
            stop,
        })
    }

    fn take(&mut self, ev: Option<(std::time::Instant, ipnet::IpNet, bool)>) -> Result<()> {
        match ev {
            Some(e) => {
                self.seen.push(e);
                Ok(())
            }
            None => Err(anyhow!("route notifications were lost (ENOBUFS)")),
        }
    }

    /// When `dst` was added (or, with `deleted`, removed), the first such
    /// event at or after `since`; waits up to `deadline` for it.
    pub(crate) fn wait(
        &mut self,
        dst: ipnet::IpNet,
        deleted: bool,
        since: std::time::Instant,
        deadline: Duration,
    ) -> Result<std::time::Instant> {
        let end = std::time::Instant::now() + scaled(deadline);
        loop {
            while let Ok(ev) = self.rx.try_recv() {
                self.take(ev)?;
            }
            self.seen.retain(|e| e.0 >= since);
            if let Some(e) = self.seen.iter().find(|e| e.1 == dst && e.2 == deleted) {
                return Ok(e.0);
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "no route {} for {dst} within {deadline:?}",
                    if deleted { "deletion" } else { "addition" }
                );
            }
            match self.rx.recv_timeout(left) {
                Ok(ev) => self.take(ev)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("route watch ended: {e}"),
            }
        }
    }

    /// When the `n`th distinct destination inside `pool` was added (or, with
    /// `deleted`, removed) at or after `since`; waits up to `deadline`.
    pub(crate) fn wait_many(
        &mut self,
        pool: ipnet::IpNet,
        deleted: bool,
        n: usize,
        since: std::time::Instant,
        deadline: Duration,
    ) -> Result<std::time::Instant> {
        let end = std::time::Instant::now() + scaled(deadline);
        let mut done = std::collections::HashSet::new();
        let mut checked = 0;
        loop {
            while let Ok(ev) = self.rx.try_recv() {
                self.take(ev)?;
            }
            for e in &self.seen[checked..] {
                if e.0 >= since && e.2 == deleted && pool.contains(&e.1) {
                    done.insert(e.1);
                    if done.len() >= n {
                        let at = e.0;
                        self.seen.clear();
                        return Ok(at);
                    }
                }
            }
            checked = self.seen.len();
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "{} of {n} route events inside {pool} within {deadline:?}",
                    done.len()
                );
            }
            match self.rx.recv_timeout(left) {
                Ok(ev) => self.take(ev)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("route watch ended: {e}"),
            }
        }
    }

    /// Additions seen since the last call whose destination `f` accepts.
    pub(crate) fn count_added(&mut self, f: impl Fn(&ipnet::IpNet) -> bool) -> Result<usize> {
        while let Ok(ev) = self.rx.try_recv() {
            self.take(ev)?;
        }
        let n = self.seen.iter().filter(|e| !e.2 && f(&e.1)).count();
        self.seen.clear();
        Ok(n)
    }
}

impl Drop for RouteEvents {
    fn drop(&mut self) {
        // The watch thread sees it within a second (its idle tick) and ends.
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resident memory of a process we started, in KiB.
fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn tagged_routes(w: &World, host: usize) -> Result<Vec<ipvlan_bgp::kernel::Route>> {
    let mut k = ipvlan_bgp::kernel::real::Kernel::open_in_netns(&w.hosts[host].ns.path())?;
    Ok(k.routes(
        ipvlan_bgp::kernel::Family::V4,
        Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
    )?)
}

/// Polls `f` every 0.5 ms (the bench measures latency) until it says
/// true, for at most `deadline` scaled; an error from `f` ends the wait.
fn poll_until(deadline: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let (reached, took) = eventually(scaled(deadline), Duration::from_micros(500), || match f() {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Err("not reached".to_string()),
        Err(e) => Ok(Err(e)),
    })
    .map_err(|e| anyhow!(e))?;
    reached.map(|()| took)
}
