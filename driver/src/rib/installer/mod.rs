//! The route installer: one thread, one netlink socket for writes, batched.
//!
//! In: batches of [`Change`]s (set this prefix's route / remove it) from the
//! learner, and [`KernelEvent`]s from a second, watch-only socket. Out: kernel
//! routes in the main table tagged with our route protocol number, equal to
//! what the learner decided, and counters (`route_conflicts`, `kernel_drift`).
//!
//! Rules (DESIGN.md "safe by default"):
//! - Only its own routes. A new route is written with CREATE|EXCL, so a route
//!   of anyone else with the same kernel key makes it fail (EEXIST): that is a
//!   conflict, counted and retried, never an error. REPLACE is used only where
//!   the kernel showed our tag and nobody else's route at that destination.
//!   A destination where any other owner has a route (any metric) is theirs:
//!   we install nothing there and remove ours if they arrive later.
//! - Reconciled against the kernel, not against a cache. On a link changing
//!   state (a link going down flushes IPv4 routes without any notification),
//!   on a tagged route deleted or added by hand, on a lost notification, and
//!   periodically, it dumps the main table and repairs the difference:
//!   missing → created, extra tagged → deleted, wrong → replaced, each
//!   correction counted as drift.
//! - IPv6 as IPv4, with the kernel's IPv6 differences (table.rs):
//!   a multipath route with our tag means someone appended a next hop to
//!   ours; it is left to them (only our own next hop is deleted, by its
//!   gateway) and counted as a conflict.
//! - Refused writes are retried on a deadline that churn cannot postpone;
//!   right after a link event retries come fast (a next hop is often
//!   unreachable for a moment after `up`).
//!
//! At start it reads the tagged routes a previous run left, so the learner
//! can adopt them instead of flapping them. The thread it runs on, and the
//! handle the BGP side sends through, are in `worker.rs`.
//!
//! Rooms: [`adopt`] (start: the table read, a previous run's routes taken
//! over), [`installed`] (what the kernel holds of ours, counted per
//! interface), [`write`] (the learner's changes and their retries, made
//! kernel writes), [`ownership`] (whose route a destination holds: ours, another
//! owner's, or ours with a next hop appended), [`reconcile`] (kernel events
//! and the dump that repairs the difference). This file holds the state
//! they share and the timers.

mod adopt;
mod installed;
mod ownership;
mod reconcile;
#[cfg(test)]
mod testkit;
mod write;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::table::RouteTable;
use crate::kernel::real::Kernel;
use crate::kernel::MultiRoute;
use crate::metrics::{DumpReason, Metrics};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This prefix's route, with every next hop (one write, in place).
    Set(MultiRoute),
    Remove(IpNet),
}

/// How often refused changes are tried again.
pub(super) const RETRY: Duration = Duration::from_secs(2);
/// Failed writes back off to this while they keep failing.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);
/// Quick retries right after a link event: first delay, doubling, for this long.
pub(super) const FAST_RETRY: Duration = Duration::from_millis(100);
pub(super) const FAST_WINDOW: Duration = Duration::from_secs(3);
/// A link event is acted on after this short settling time.
pub(super) const LINK_SETTLE: Duration = Duration::from_millis(20);
/// Link events trigger at most one reconcile per this gap (a flapping
/// parent must not turn into a dump loop; short, so routes come back soon
/// after `up`).
pub(super) const LINK_GAP: Duration = Duration::from_millis(250);
/// Route events (hints) trigger at most one reconcile per this gap: a dump
/// costs ~140 ms at 100k routes, and stale echoes of our own writes under
/// churn must not turn into a dump loop.
pub(super) const ROUTE_HINT_GAP: Duration = Duration::from_secs(1);
/// How long prefixes held by others stay theirs after a link event.
pub(super) const OWNERS_GRACE: Duration = Duration::from_secs(10);
/// Full reconcile even when nothing was noticed.
pub const FULL_RECONCILE: Duration = Duration::from_secs(30);

pub struct Installer<T: RouteTable = Kernel> {
    table: T,
    protocol: u8,
    /// The learner's decisions.
    wanted: HashMap<IpNet, MultiRoute>,
    /// How many wanted routes go out of each interface (a link event on
    /// any other link cannot affect them); `None`: routes without one.
    oifs: HashMap<Option<u32>, usize>,
    /// What the kernel holds of ours, as last written or dumped: a tagged
    /// route is ours only with these next hops (or the wanted ones).
    ours: installed::Installed,
    /// Destinations where another owner has a route in the main table (from
    /// the last dump, plus routes added since): never ours to write. Only
    /// those inside `scope` (or wanted): a host holding a full Internet
    /// table elsewhere costs nothing here.
    foreign: HashSet<IpNet>,
    /// Where the learner may ask for routes (the accepted pools): other
    /// owners' routes outside it can never be in our way.
    scope: Vec<IpNet>,
    /// Gateways of the main table's default routes (published for the policy:
    /// reading them here costs no extra dump).
    gateways: BTreeSet<IpAddr>,
    /// Wanted prefixes held by another owner's route.
    conflicts: HashSet<IpNet>,
    /// Wanted prefixes whose last write failed for another reason.
    failed: HashSet<IpNet>,
    /// When to dump and repair next (link or route event, failed delete),
    /// and why (the label of the dump in the metrics).
    reconcile_at: Option<Instant>,
    reconcile_why: DumpReason,
    /// When to retry `failed`/`conflicts` next.
    retry_at: Option<Instant>,
    /// Until then, retries are fast (a link just changed).
    fast_until: Option<Instant>,
    fast_step: Duration,
    slow_step: Duration,
    /// After a link event, prefixes held by others stay theirs until then even
    /// if their route vanished: the kernel flushed it with ours, and their
    /// owner (a network manager) re-adds it after `up`.
    owners_grace_until: Option<Instant>,
    last_reconcile: Instant,
    full_every: Duration,
    metrics: Arc<Metrics>,
}

impl<T: RouteTable> Installer<T> {
    /// Changes the period of the full reconcile (tests, benchmarks).
    #[cfg(any(test, feature = "test-support"))]
    pub fn set_full_reconcile(&mut self, every: Duration) {
        self.full_every = every;
    }

    /// The table written to (tests look into the fake one).
    #[cfg(any(test, feature = "test-support"))]
    pub fn table(&mut self) -> &mut T {
        &mut self.table
    }

    /// The earliest timer.
    pub fn next_deadline(&self) -> Instant {
        let full = self.last_reconcile + self.full_every;
        [self.reconcile_at, self.retry_at]
            .into_iter()
            .flatten()
            .fold(full, Instant::min)
    }

    /// Runs the timers that are due.
    pub fn tick(&mut self, now: Instant) {
        if self.reconcile_at.is_some_and(|t| t <= now) {
            self.reconcile(now, self.reconcile_why);
        } else if now >= self.last_reconcile + self.full_every {
            self.reconcile(now, DumpReason::Periodic);
        } else if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            if self.conflicts.is_empty() {
                self.retry_failed(now);
            } else {
                // Whether a held prefix is free again needs a dump (another
                // owner may sit there at any metric); the dump repairs the
                // failed ones as well.
                self.reconcile(now, DumpReason::Conflict);
            }
        }
    }

    /// The routes decided so far.
    pub fn wanted_routes(&self) -> Vec<MultiRoute> {
        self.wanted.values().cloned().collect()
    }

    pub(super) fn want(&mut self, r: MultiRoute) {
        for h in &r.hops {
            *self.oifs.entry(h.oif).or_default() += 1;
        }
        if let Some(old) = self.wanted.insert(r.dst, r) {
            self.forget_oifs(&old);
        }
    }

    pub(super) fn unwant(&mut self, prefix: &IpNet) {
        if let Some(old) = self.wanted.remove(prefix) {
            self.forget_oifs(&old);
        }
    }

    fn forget_oifs(&mut self, old: &MultiRoute) {
        for h in &old.hops {
            if let Some(n) = self.oifs.get_mut(&h.oif) {
                *n -= 1;
                if *n == 0 {
                    self.oifs.remove(&h.oif);
                }
            }
        }
    }

    pub(super) fn publish(&self) {
        let n = self.ours.len();
        let c = self.conflicts.len();
        self.metrics.bgp(|b| {
            if b.routes_by_oif != *self.ours.by_oif() {
                b.routes_by_oif = self.ours.by_oif().clone();
            }
            b.installed = n;
            b.conflicted = c;
            if !b.default_gateways.iter().eq(self.gateways.iter()) {
                b.default_gateways = self.gateways.iter().copied().collect();
            }
        });
    }
}

/// A scope that holds every prefix (tests and benchmarks).
pub fn everywhere() -> Vec<IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}
