//! Route events in a namespace, stamped as a netlink subscription
//! delivers them: the benches' clock for route arrival and removal, waited
//! for as they come. (Scenarios read `routes.rs`'s log, open from before
//! their first step.)
//!
//! In: a namespace path and a route protocol (or any). Out: (instant,
//! destination, deleted) events, waits for one or many. Owns the
//! subscription's thread (stopped on drop).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::util::scaled;

/// Route events in one namespace (of one route protocol, or any), stamped
/// as they arrive from a netlink subscription: a bench waits for a route
/// without dumping the table in a loop that would compete with the driver
/// for CPU.
pub struct RouteEvents {
    rx: std::sync::mpsc::Receiver<Option<(std::time::Instant, ipnet::IpNet, bool)>>,
    seen: Vec<(std::time::Instant, ipnet::IpNet, bool)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RouteEvents {
    /// Subscribes in the namespace at `netns` to main-table route changes
    /// of `protocol` (`None`: any protocol).
    pub fn open(netns: &std::path::Path, protocol: Option<u8>) -> Result<RouteEvents> {
        use ipvlan_bgp::rib::watch::{KernelEvent, RouteWatch};
        let watch = RouteWatch::open_in_netns(netns)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        watch.spawn(move |ev| {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            match ev {
                Some(KernelEvent::Route { route, deleted })
                    if protocol.is_none_or(|p| route.route.protocol == p) =>
                {
                    tx.send(Some((std::time::Instant::now(), route.route.dst, deleted)))
                        .is_ok()
                }
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
    pub fn wait(
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
    /// The first host route (/32, /128) inside `pool` added since `since`:
    /// when its event came, and the route.
    pub fn first_host_route(
        &mut self,
        pool: ipnet::IpNet,
        since: std::time::Instant,
        deadline: Duration,
    ) -> Result<(std::time::Instant, ipnet::IpNet)> {
        let end = std::time::Instant::now() + scaled(deadline);
        loop {
            while let Ok(ev) = self.rx.try_recv() {
                self.take(ev)?;
            }
            self.seen.retain(|e| e.0 >= since);
            if let Some(e) = self
                .seen
                .iter()
                .find(|e| !e.2 && e.1.prefix_len() == e.1.max_prefix_len() && pool.contains(&e.1))
            {
                return Ok((e.0, e.1));
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!("no host route inside {pool} arrived within {deadline:?}");
            }
            match self.rx.recv_timeout(left) {
                Ok(ev) => self.take(ev)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("route watch ended: {e}"),
            }
        }
    }

    pub fn wait_many(
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
    pub fn count_added(&mut self, f: impl Fn(&ipnet::IpNet) -> bool) -> Result<usize> {
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
