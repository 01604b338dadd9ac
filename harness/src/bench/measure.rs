//! What the benches read from the machine, without competing with what
//! they measure: route events stamped as a netlink subscription delivers
//! them ([`RouteEvents`]), a host's tagged routes, a process's resident
//! memory, and a fast poll for what has no event.
//!
//! In: a host of the [`World`], a pid. Out: instants, routes, KiB. Owns the
//! subscription's thread (stopped on drop).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::topology::World;
use crate::util::{eventually, scaled};

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
