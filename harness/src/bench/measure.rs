//! What the benches read from the machine, without competing with what
//! they measure: route events stamped as a netlink subscription delivers
//! them ([`RouteEvents`], from `probe/`), a host's tagged routes, a
//! process's resident memory, and a fast poll for what has no event.
//!
//! In: a host of the [`World`], a pid. Out: instants, routes, KiB.

use std::time::Duration;

use anyhow::{anyhow, Result};

pub(crate) use crate::probe::RouteEvents;
use crate::topology::World;
use crate::util::{eventually, scaled};

/// Route events with the driver's tag in host `host`'s namespace (see
/// [`RouteEvents`]).
pub(crate) fn route_events(w: &World, host: usize) -> Result<RouteEvents> {
    RouteEvents::open(
        &w.hosts[host].ns.path(),
        Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
    )
}

/// Resident memory of a process we started, in KiB.
pub(super) fn rss_kib(pid: Option<u32>) -> u64 {
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

/// The host's IPv4 routes that carry the driver's protocol tag.
pub(super) fn tagged_routes(w: &World, host: usize) -> Result<Vec<ipvlan_bgp::kernel::Route>> {
    let mut k = ipvlan_bgp::kernel::real::Kernel::open_in_netns(&w.hosts[host].ns.path())?;
    Ok(k.routes(
        ipvlan_bgp::kernel::Family::V4,
        Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
    )?)
}

/// Polls `f` every 0.5 ms (the bench measures latency) until it says
/// true, for at most `deadline` scaled; an error from `f` ends the wait.
pub(super) fn poll_until(
    deadline: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let (reached, took) = eventually(scaled(deadline), Duration::from_micros(500), || match f() {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Err("not reached".to_string()),
        Err(e) => Ok(Err(e)),
    })
    .map_err(|e| anyhow!(e))?;
    reached.map(|()| took)
}
