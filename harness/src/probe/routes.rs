//! Route and link events in one namespace, stamped as a netlink
//! subscription delivers them: what a route step reads to say when its
//! condition began to hold (to the millisecond), and whether it was broken
//! for a moment between two looks at the table.
//!
//! In: a namespace (a host's or a router's), opened before the first step,
//! so every step's action happens while it listens. Out: the [`RouteEvent`]s
//! since an instant (every protocol: each step filters), and the table as
//! it was when the last action began ([`RouteLog::mark`]: an IPv4 route
//! flushed with its link leaves no event, only the link's, so whether it
//! was there before must be read). Owns the subscription's thread (it ends
//! within a second of the drop), a route socket for the marks, and a log
//! the runner trims to the last action's start.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Result};
use ipnet::IpNet;
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::{Family, Route};
use ipvlan_bgp::rib::watch::{KernelEvent, RouteWatch};

/// One notification, stamped when the subscription's thread received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEvent {
    pub at: Instant,
    pub what: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A main-table route was added or replaced (`deleted`: removed).
    Route {
        dst: IpNet,
        /// The next hop (`None` for a device route or several next hops).
        via: Option<IpAddr>,
        /// The link it goes out of.
        oif: Option<u32>,
        protocol: u8,
        multipath: bool,
        deleted: bool,
    },
    /// A link went down or away: the kernel flushes the IPv4 routes through
    /// it without a route event (facts/host.md).
    LinkDown { index: u32 },
    /// Notifications were lost (ENOBUFS): nothing since can be trusted.
    Overrun,
}

/// The events of one namespace since it was opened (or last trimmed).
pub struct RouteLog {
    log: Arc<Mutex<Vec<RouteEvent>>>,
    stop: Arc<AtomicBool>,
    table: Mutex<Kernel>,
    /// The main table (both families) as the last [`RouteLog::mark`] read it.
    marked: Mutex<Option<Vec<Route>>>,
}

impl RouteLog {
    /// Subscribes inside the namespace at `ns`; events are recorded from
    /// the moment this returns.
    pub fn open(ns: &Path) -> Result<RouteLog> {
        let watch = RouteWatch::open_in_netns(ns)
            .map_err(|e| anyhow!("subscribe to route events in {}: {e}", ns.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        watch.spawn(move |ev| {
            if stop2.load(Ordering::Relaxed) {
                return false;
            }
            let what = match ev {
                Some(KernelEvent::Route { route, deleted }) => Change::Route {
                    dst: route.route.dst,
                    via: route.route.via,
                    oif: route.route.oif,
                    protocol: route.route.protocol,
                    multipath: route.is_multipath(),
                    deleted,
                },
                Some(KernelEvent::Link {
                    index, up, deleted, ..
                }) if !up || deleted => Change::LinkDown { index },
                Some(KernelEvent::Overrun) => Change::Overrun,
                _ => return true,
            };
            let at = Instant::now();
            log2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RouteEvent { at, what });
            true
        })?;
        let table = Kernel::open_in_netns(ns)
            .map_err(|e| anyhow!("open a route socket in {}: {e}", ns.display()))?;
        Ok(RouteLog {
            log,
            stop,
            table: Mutex::new(table),
            marked: Mutex::new(None),
        })
    }

    /// Reads the table as it is now (an action is about to begin); a
    /// table that cannot be read is remembered as unknown.
    pub fn mark(&self) {
        let mut k = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let read = k.routes(Family::V4, None).and_then(|mut v4| {
            v4.extend(k.routes(Family::V6, None)?);
            Ok(v4)
        });
        *self.marked.lock().unwrap_or_else(|p| p.into_inner()) = read.ok();
    }

    /// The table as the last [`RouteLog::mark`] read it (`None`: unknown).
    pub fn marked(&self) -> Option<Vec<Route>> {
        self.marked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events at or after `since`, oldest first.
    pub fn since(&self, since: Instant) -> Vec<RouteEvent> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let first = log.partition_point(|e| e.at < since);
        log[first..].to_vec()
    }

    /// Forgets the events before `before` (a step never looks further back
    /// than the start of the last action).
    pub fn forget_before(&self, before: Instant) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let first = log.partition_point(|e| e.at < before);
        log.drain(..first);
    }
}

impl Drop for RouteLog {
    fn drop(&mut self) {
        // The watch thread sees it within a second (its idle tick) and ends.
        self.stop.store(true, Ordering::Relaxed);
    }
}
