//! `harness bench …`: measurements that need the harness's hosts. Each
//! benchmark repeats its measurement, alternates the sides it compares, and
//! reports n and spread ([`stats::LatencyStats`]), not a lone figure.
//!
//! This module holds what they share: two hosts over iBGP, reading a
//! host's tagged routes, process memory, and a fast poll.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::engine::Engine;
use crate::scenario::Scenario;
use crate::util::{eventually, scaled};
use crate::world::{Options, World};

mod convergence;
mod docker_run;
mod flood;
mod learned_routes;
mod scale;
pub mod stats;

pub use convergence::convergence;
pub use docker_run::docker_run;
pub use flood::{flood, FloodReport};
pub use learned_routes::learned_routes;
pub use scale::scale;
pub use stats::{BenchResult, LatencyStats, SampleStats, Series};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const TWO_HOSTS: &str = r#"
description = "convergence benchmark"
[driver]
args = ["--accept-pool", "10.30.0.0/16"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
"#;

/// Two hosts over iBGP with the network created on `on`, sessions up.
fn two_hosts(
    opts: &Options,
    on: &[&str],
) -> Result<(World, crate::engine::Emulator, crate::scenario::NetworkDef)> {
    let s = Scenario::parse(TWO_HOSTS, std::path::Path::new("bench-two-hosts.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut e = crate::engine::Emulator::default();
    let net = s.networks[0].clone();
    for h in on {
        e.create_network(&w, w.host_index(h)?, &net, net.subnets[*h])?;
    }
    poll_until(Duration::from_secs(60), || {
        Ok((0..2).all(|i| {
            w.bgp_sessions(i)
                .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                .unwrap_or(false)
        }))
    })?;
    Ok((w, e, net))
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
    let mut k = ipvlan_bgp::kernel::Kernel::open_in_netns(&w.hosts[host].ns.path())?;
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
