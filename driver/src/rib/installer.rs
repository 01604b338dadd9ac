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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::table::RouteTable;
use super::watch::KernelEvent;
use crate::kernel::real::Kernel;
use crate::kernel::{KernelError, MultiRoute, NextHop, Route, TableRoute};
use crate::metrics::{now_unix, DumpReason, Metrics};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This prefix's route, with every next hop (one write, in place).
    Set(MultiRoute),
    Remove(IpNet),
}

/// How often refused changes are tried again.
const RETRY: Duration = Duration::from_secs(2);
/// Failed writes back off to this while they keep failing.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Quick retries right after a link event: first delay, doubling, for this long.
const FAST_RETRY: Duration = Duration::from_millis(100);
const FAST_WINDOW: Duration = Duration::from_secs(3);
/// A link event is acted on after this short settling time.
const LINK_SETTLE: Duration = Duration::from_millis(20);
/// Link events trigger at most one reconcile per this gap (a flapping
/// parent must not turn into a dump loop; short, so routes come back soon
/// after `up`).
const LINK_GAP: Duration = Duration::from_millis(250);
/// Route events (hints) trigger at most one reconcile per this gap: a dump
/// costs ~140 ms at 100k routes, and stale echoes of our own writes under
/// churn must not turn into a dump loop.
const ROUTE_HINT_GAP: Duration = Duration::from_secs(1);
/// How long prefixes held by others stay theirs after a link event.
const OWNERS_GRACE: Duration = Duration::from_secs(10);
/// Full reconcile even when nothing was noticed.
pub const FULL_RECONCILE: Duration = Duration::from_secs(30);
/// At most this many conflict lines per batch; the rest are summarised.
const CONFLICT_LOG_LINES: usize = 20;

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
    ours: HashMap<IpNet, MultiRoute>,
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
    /// An installer over `table` (no thread), for routes inside `scope`
    /// (see [`Installer::set_scope`]). The tagged routes found are taken as
    /// wanted until the learner says otherwise.
    pub fn new(
        mut table: T,
        protocol: u8,
        scope: Vec<IpNet>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<(Installer<T>, Vec<MultiRoute>), KernelError> {
        let mut existing = Vec::new();
        let mut foreign = HashSet::new();
        let mut gateways = BTreeSet::new();
        metrics.route_watch(|w| w.dump(DumpReason::Start));
        for r in table.dump()? {
            if r.route.protocol == protocol {
                // A previous run's route, multipath ones included (what it
                // wrote is not recorded: a next hop another owner appended
                // while the driver was stopped is taken for ours).
                existing.push(r.to_multi());
            } else {
                if in_scope(&scope, &r.route.dst) {
                    foreign.insert(r.route.dst);
                }
                gateways.extend(default_gateway(&r.route));
            }
        }
        let ours: HashMap<IpNet, MultiRoute> =
            existing.iter().map(|r| (r.dst, r.clone())).collect();
        let mut oifs: HashMap<Option<u32>, usize> = HashMap::new();
        for r in ours.values() {
            for h in &r.hops {
                *oifs.entry(h.oif).or_default() += 1;
            }
        }
        let inst = Installer {
            table,
            protocol,
            oifs,
            wanted: ours.clone(),
            ours,
            foreign,
            scope,
            gateways,
            conflicts: HashSet::new(),
            failed: HashSet::new(),
            reconcile_at: None,
            reconcile_why: DumpReason::Periodic,
            retry_at: None,
            fast_until: None,
            fast_step: FAST_RETRY,
            slow_step: RETRY,
            owners_grace_until: None,
            last_reconcile: now,
            full_every: FULL_RECONCILE,
            metrics,
        };
        inst.publish();
        Ok((inst, existing))
    }

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

    /// Acts on a kernel notification.
    pub fn on_event(&mut self, ev: KernelEvent, now: Instant) {
        self.metrics.route_watch(|w| w.events += 1);
        match ev {
            KernelEvent::Link {
                index,
                up,
                running,
                deleted,
            } => {
                if !self.carries_routes(index) {
                    // A container's link appearing or moving away, a foreign
                    // veth: none of our routes goes out of it.
                    self.metrics.route_watch(|w| w.ignored += 1);
                    return;
                }
                debug!(
                    index,
                    up, running, deleted, "link carrying our routes changed: reconciling routes"
                );
                let at = (now + LINK_SETTLE).max(self.last_reconcile + LINK_GAP);
                self.hint(at, DumpReason::Link);
                self.link_changed(now);
            }
            KernelEvent::Overrun => {
                self.hint(now + LINK_SETTLE, DumpReason::Overrun);
                self.link_changed(now);
            }
            KernelEvent::Route { route, deleted } => {
                let dst = route.route.dst;
                let interesting = if route.route.protocol == self.protocol {
                    // Our own writes echo here, sometimes after a newer write
                    // to the same prefix: only a tagged route where we have
                    // none (added by hand) or the loss of the very route we
                    // hold (deleted by hand) is a sign of drift. A tagged
                    // route changed in place is found by the periodic dump.
                    let believed = self.ours.get(&dst);
                    let hops = route.hops();
                    match believed {
                        // One of our next hops (or our route) went.
                        Some(b) if deleted => hops.iter().all(|h| b.hops.contains(h)),
                        None => !deleted,
                        Some(_) => false,
                    }
                } else if route.route.dst.prefix_len() == 0 {
                    // A default route: the gateways feed the import policy.
                    let mut confirm = false;
                    if let Some(gw) = default_gateway(&route.route) {
                        if deleted {
                            self.gateways.remove(&gw);
                            // Another default route may use it still: confirm.
                            confirm = true;
                        } else {
                            self.gateways.insert(gw);
                        }
                        self.publish();
                    }
                    confirm
                } else if deleted {
                    // Another owner's route at this destination may remain
                    // (another metric): only a dump says the prefix is free.
                    self.conflicts.contains(&dst)
                } else {
                    self.note_foreign(dst);
                    self.wanted.contains_key(&dst) && !self.conflicts.contains(&dst)
                };
                if interesting {
                    let at = (self.last_reconcile + ROUTE_HINT_GAP).max(now);
                    self.hint(at, DumpReason::Route);
                } else {
                    self.metrics.route_watch(|w| w.ignored += 1);
                }
            }
        }
    }

    /// The routes decided so far.
    pub fn wanted_routes(&self) -> Vec<MultiRoute> {
        self.wanted.values().cloned().collect()
    }

    /// Where the learner may ask for routes from now on (its accepted
    /// pools). Other owners' routes are remembered only there; when it
    /// widens, the main table is read at once so that none in the new part
    /// is overlooked.
    pub fn set_scope(&mut self, scope: Vec<IpNet>, now: Instant) {
        if scope == self.scope {
            return;
        }
        let widened = scope.iter().any(|p| !in_scope(&self.scope, p));
        self.scope = scope;
        if widened {
            self.reconcile(now, DumpReason::Scope);
        } else {
            let (scope, wanted) = (&self.scope, &self.wanted);
            self.foreign
                .retain(|p| in_scope(scope, p) || wanted.contains_key(p));
        }
    }

    /// Remembers another owner's route at `dst` if it can matter to us.
    fn note_foreign(&mut self, dst: IpNet) {
        if in_scope(&self.scope, &dst) || self.wanted.contains_key(&dst) {
            self.foreign.insert(dst);
        }
    }

    /// Whether a wanted route goes out of link `index` (or one without an
    /// interface exists: then any link may matter).
    fn carries_routes(&self, index: u32) -> bool {
        self.oifs.contains_key(&Some(index)) || self.oifs.contains_key(&None)
    }

    /// A link carrying our routes changed (or events were lost): retries
    /// come fast for a while, and other owners' prefixes stay theirs.
    fn link_changed(&mut self, now: Instant) {
        self.fast_until = Some(now + FAST_WINDOW);
        self.fast_step = FAST_RETRY;
        self.slow_step = RETRY;
        self.owners_grace_until = Some(now + OWNERS_GRACE);
    }

    fn want(&mut self, r: MultiRoute) {
        for h in &r.hops {
            *self.oifs.entry(h.oif).or_default() += 1;
        }
        if let Some(old) = self.wanted.insert(r.dst, r) {
            self.forget_oifs(&old);
        }
    }

    fn unwant(&mut self, prefix: &IpNet) {
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

    /// Whether a tagged route at `dst` with `hops` is ours. One next hop:
    /// yes (nothing can hide under it). Several: only if every next hop is
    /// one we wrote there or want there. A hop of neither is another
    /// owner's, appended to ours (IPv6 merges a CREATE without EXCL into
    /// the route at that key, whatever its protocol; the dump shows only
    /// our tag): then the route is not ours alone.
    fn is_ours(&self, dst: &IpNet, hops: &[NextHop]) -> bool {
        if hops.len() < 2 {
            return true;
        }
        let written = self.ours.get(dst).map(|r| &r.hops[..]).unwrap_or_default();
        let wanted = self
            .wanted
            .get(dst)
            .map(|r| &r.hops[..])
            .unwrap_or_default();
        hops.iter()
            .all(|h| written.contains(h) || wanted.contains(h))
    }

    /// Plans a dump and repair at `at`, or earlier if one is planned
    /// already; answers whether one was (what asked is then coalesced into it).
    fn reconcile_soon(&mut self, at: Instant, why: DumpReason) -> bool {
        match self.reconcile_at {
            Some(t) => {
                if at < t {
                    self.reconcile_at = Some(at);
                    self.reconcile_why = why;
                }
                true
            }
            None => {
                self.reconcile_at = Some(at);
                self.reconcile_why = why;
                false
            }
        }
    }

    /// [`Installer::reconcile_soon`] for a kernel event, counted.
    fn hint(&mut self, at: Instant, why: DumpReason) {
        if self.reconcile_soon(at, why) {
            self.metrics.route_watch(|w| w.coalesced += 1);
        }
    }

    fn schedule_retry(&mut self, now: Instant) {
        if self.failed.is_empty() {
            self.slow_step = RETRY;
        }
        if self.failed.is_empty() && self.conflicts.is_empty() {
            self.retry_at = None;
            return;
        }
        if self.failed.is_empty() {
            // Only conflicts: a dump every RETRY.
            let at = now + RETRY;
            self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
            return;
        }
        let delay = match self.fast_until {
            Some(until) if now < until && !self.failed.is_empty() => {
                let d = self.fast_step;
                self.fast_step = (self.fast_step * 2).min(Duration::from_secs(1));
                d
            }
            _ => {
                // Slower while the same writes keep failing (a parent down
                // for long must not cost a full rewrite every 2 s).
                let d = self.slow_step;
                self.slow_step = (self.slow_step * 2).min(RETRY_MAX);
                d
            }
        };
        let at = now + delay;
        // An earlier retry already planned stays: churn cannot postpone it.
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    /// Applies the learner's changes.
    pub fn apply(&mut self, batch: Vec<Change>, now: Instant) {
        if batch.is_empty() {
            return;
        }
        // Last change per prefix wins.
        let mut last: HashMap<IpNet, Option<MultiRoute>> = HashMap::with_capacity(batch.len());
        for c in batch {
            match c {
                Change::Set(r) => last.insert(r.dst, Some(r)),
                Change::Remove(p) => last.insert(p, None),
            };
        }
        let mut create = Vec::new();
        let mut replace = Vec::new();
        let mut delete = Vec::new();
        let mut held = Vec::new();
        for (prefix, want) in last {
            self.failed.remove(&prefix);
            match want {
                Some(r) => {
                    self.want(r.clone());
                    if self.conflicts.contains(&prefix) {
                        // Still someone else's until a dump says otherwise.
                        continue;
                    }
                    if self.foreign.contains(&prefix) {
                        // Another owner has a route there (at any metric):
                        // neither create beside it nor replace it.
                        held.push((prefix, Vec::new()));
                        if self.ours.contains_key(&prefix) {
                            // Ours is still there too: the reconcile removes it.
                            let _ = self.reconcile_soon(now, DumpReason::Conflict);
                        }
                        continue;
                    }
                    match self.ours.get(&prefix) {
                        Some(cur) if *cur == r => {}
                        Some(_) => replace.push(r),
                        None => create.push(r),
                    }
                }
                None => {
                    self.unwant(&prefix);
                    self.conflicts.remove(&prefix);
                    if let Some(cur) = self.ours.get(&prefix) {
                        delete.push(cur.clone());
                    }
                }
            }
        }
        let changed = !(create.is_empty() && replace.is_empty() && delete.is_empty());
        self.add_conflicts(held);
        self.write(delete, replace, create, now);
        if changed {
            self.metrics.bgp(|b| b.last_route_change = Some(now_unix()));
        }
        self.schedule_retry(now);
        self.publish();
    }

    /// Executes writes and files their outcomes. EEXIST on a create is
    /// resolved with a look at the prefixes concerned.
    fn write(
        &mut self,
        delete: Vec<MultiRoute>,
        replace: Vec<MultiRoute>,
        create: Vec<MultiRoute>,
        now: Instant,
    ) {
        let mut errors = 0u64;
        for (r, res) in delete.iter().zip(self.table.delete(&delete)) {
            match res {
                Ok(()) => {
                    if self.ours.get(&r.dst) == Some(r) {
                        self.ours.remove(&r.dst);
                    }
                }
                Err(e) => {
                    errors += 1;
                    warn!(prefix = %r.dst, error = %e, "could not delete route; will retry");
                    let _ = self.reconcile_soon(now + RETRY, DumpReason::Retry);
                }
            }
        }
        for (r, res) in replace.iter().zip(self.table.replace(&replace)) {
            match res {
                Ok(()) => {
                    self.ours.insert(r.dst, r.clone());
                    self.metrics.installed(&r.dst);
                }
                Err(e) => {
                    errors += 1;
                    self.failed.insert(r.dst);
                    debug!(prefix = %r.dst, hops = ?r.hops, error = %e, "could not replace route; will retry");
                }
            }
        }
        let mut exists = HashSet::new();
        for (r, res) in create.iter().zip(self.table.create_exclusive(&create)) {
            match res {
                Ok(()) => {
                    self.ours.insert(r.dst, r.clone());
                    self.metrics.installed(&r.dst);
                }
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    exists.insert(r.dst);
                }
                Err(e) => {
                    errors += 1;
                    self.failed.insert(r.dst);
                    debug!(prefix = %r.dst, hops = ?r.hops, error = %e, "could not install route; will retry");
                }
            }
        }
        if errors > 0 {
            self.metrics.bgp(|b| b.install_errors += errors);
        }
        if !exists.is_empty() {
            self.resolve_exists(exists, now);
        }
    }

    /// Creates refused with EEXIST: someone's route has that key. Ours (a
    /// tagged route we did not know of) is replaced; anyone else's is a conflict.
    fn resolve_exists(&mut self, exists: HashSet<IpNet>, now: Instant) {
        self.metrics.route_watch(|w| w.dump(DumpReason::Resolve));
        let found = match self.table.dump_prefixes(&exists) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "could not read routes to resolve refused installs; will retry");
                self.failed.extend(exists);
                return;
            }
        };
        let mut by_dst: HashMap<IpNet, Vec<TableRoute>> = HashMap::new();
        for r in found {
            by_dst.entry(r.route.dst).or_default().push(r);
        }
        let mut replace = Vec::new();
        let mut conflicts = Vec::new();
        for p in exists {
            let Some(want) = self.wanted.get(&p).cloned() else {
                continue;
            };
            let at = by_dst.remove(&p).unwrap_or_default();
            if at.is_empty() {
                // Gone in the meantime: try again.
                self.failed.insert(p);
            } else if at
                .iter()
                .all(|r| r.route.protocol == self.protocol && self.is_ours(&p, &r.hops()))
            {
                replace.push(want);
            } else {
                conflicts.push((p, at));
            }
        }
        self.add_conflicts(conflicts);
        if !replace.is_empty() {
            let n = replace.len() as u64;
            self.metrics.bgp(|b| b.kernel_drift += n);
            self.write(Vec::new(), replace, Vec::new(), now);
        }
    }

    fn add_conflicts(&mut self, found: Vec<(IpNet, Vec<TableRoute>)>) {
        let mut new = 0u64;
        for (p, at) in found {
            self.failed.remove(&p);
            self.foreign.insert(p);
            if !self.conflicts.insert(p) {
                continue;
            }
            new += 1;
            if (new as usize) <= CONFLICT_LOG_LINES {
                let owner = at
                    .iter()
                    .find(|r| r.route.protocol != self.protocol)
                    .map(|r| (r.route.protocol, r.route.via, r.priority));
                warn!(prefix = %p, owner_protocol = ?owner.map(|o| o.0), owner_via = ?owner.and_then(|o| o.1), owner_metric = ?owner.map(|o| o.2), "another owner's route holds this prefix; not installing ours (retried until the prefix is free)");
            }
        }
        if new as usize > CONFLICT_LOG_LINES {
            warn!(
                count = new as usize - CONFLICT_LOG_LINES,
                "more prefixes held by other owners' routes (not logged one by one)"
            );
        }
        if new > 0 {
            self.metrics.bgp(|b| b.route_conflicts += new);
        }
    }

    /// Retries the failed writes (no conflicts pending, so no dump needed).
    fn retry_failed(&mut self, now: Instant) {
        let mut create = Vec::new();
        let mut replace = Vec::new();
        for p in std::mem::take(&mut self.failed) {
            let Some(w) = self.wanted.get(&p).cloned() else {
                continue;
            };
            match self.ours.get(&p) {
                Some(cur) if *cur == w => {}
                Some(_) => replace.push(w),
                None => create.push(w),
            }
        }
        debug!(
            count = create.len() + replace.len(),
            "retrying refused route changes"
        );
        self.write(Vec::new(), replace, create, now);
        self.schedule_retry(now);
        self.publish();
    }

    /// Dumps the main table and makes our part of it equal to `wanted`.
    pub fn reconcile(&mut self, now: Instant, why: DumpReason) {
        self.reconcile_at = None;
        self.retry_at = None;
        self.last_reconcile = now;
        self.metrics.route_watch(|w| w.dump(why));
        let dump = match self.table.dump() {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "could not read the routing table; will retry");
                let _ = self.reconcile_soon(now + RETRY, DumpReason::Retry);
                return;
            }
        };
        let mut kernel_ours: HashMap<IpNet, Vec<MultiRoute>> = HashMap::new();
        let mut foreign: HashMap<IpNet, Vec<TableRoute>> = HashMap::new();
        let mut unhook = Vec::new();
        self.foreign.clear();
        self.gateways.clear();
        for tr in dump {
            let dst = tr.route.dst;
            let hops = tr.hops();
            if tr.route.protocol == self.protocol && !self.is_ours(&dst, &hops) {
                // Tagged, with a next hop we neither wrote nor want there:
                // another owner's, appended to ours (IPv6). Not ours alone:
                // never replace it (that would take their next hop too);
                // take back our own next hops only (IPv6: each by its
                // gateway), and leave the prefix to them. IPv4 merges no
                // appends, so such a route was written whole by someone
                // else with our tag: left alone.
                self.note_foreign(dst);
                if let (Some(mine), IpNet::V6(_)) = (self.ours.get(&dst), dst) {
                    let back: Vec<NextHop> = mine
                        .hops
                        .iter()
                        .filter(|h| h.via.is_some() && hops.contains(h))
                        .copied()
                        .collect();
                    if !back.is_empty() {
                        unhook.push(MultiRoute::new(dst, back, self.protocol));
                    }
                }
                if self.wanted.contains_key(&dst) {
                    foreign.entry(dst).or_default().push(tr);
                }
            } else if tr.route.protocol == self.protocol {
                kernel_ours.entry(dst).or_default().push(tr.to_multi());
            } else {
                self.note_foreign(dst);
                self.gateways.extend(default_gateway(&tr.route));
                if self.wanted.contains_key(&tr.route.dst) {
                    foreign.entry(tr.route.dst).or_default().push(tr);
                }
            }
        }
        let mut drift = 0u64;
        let mut delete = unhook;
        let mut replace = Vec::new();
        let mut create = Vec::new();
        let mut conflicts = Vec::new();
        let mut believed = std::mem::take(&mut self.ours);
        for (p, routes) in &kernel_ours {
            match self.wanted.get(p) {
                None => {
                    // Tagged, but nobody decided it (added by hand, or left over).
                    drift += routes.len() as u64;
                    delete.extend(routes.iter().cloned());
                    info!(prefix = %p, "removing a route with our protocol that the driver did not decide");
                }
                Some(_) if foreign.contains_key(p) => {
                    // Another owner arrived: the prefix is theirs; ours goes.
                    delete.extend(routes.iter().cloned());
                }
                Some(w) => {
                    if routes.contains(w) {
                        self.ours.insert(*p, w.clone());
                        for r in routes.iter().filter(|r| *r != w) {
                            drift += 1;
                            delete.push(r.clone());
                        }
                    } else {
                        // Ours with other next hops: replaced in place.
                        drift += 1;
                        self.ours.insert(*p, routes[0].clone());
                        replace.push(w.clone());
                    }
                }
            }
        }
        for (p, w) in &self.wanted {
            if let Some(at) = foreign.remove(p) {
                if !self.conflicts.contains(p) {
                    conflicts.push((*p, at));
                }
                continue;
            }
            if kernel_ours.contains_key(p) {
                continue;
            }
            if self.conflicts.contains(p) && self.owners_grace_until.is_some_and(|t| now < t) {
                // Flushed with the link, not given up: leave it to its owner a while.
                continue;
            }
            // Missing. A route we believed in vanished behind our back is
            // drift; a conflict or failure being retried is not.
            if believed.remove(p).is_some() && !self.failed.contains(p) {
                drift += 1;
            }
            create.push(w.clone());
        }
        // Conflicts whose holder left are tried again below (create) and
        // leave the set when that succeeds.
        let creating: HashSet<IpNet> = create.iter().map(|r| r.dst).collect();
        let still: HashSet<IpNet> = self
            .conflicts
            .iter()
            .filter(|p| {
                self.wanted.contains_key(*p)
                    && !creating.contains(*p)
                    && !self.ours.contains_key(*p)
            })
            .copied()
            .collect();
        let freed = self.conflicts.len() - still.len();
        self.conflicts = still;
        if freed > 0 {
            info!(
                count = freed,
                "prefixes held by other owners are free again: installing ours"
            );
        }
        self.failed.clear();
        self.add_conflicts(conflicts);
        if drift > 0 {
            warn!(
                corrections = drift,
                "the kernel's routes differed from the driver's decisions; repaired"
            );
            self.metrics.bgp(|b| b.kernel_drift += drift);
        }
        self.write(delete, replace, create, now);
        self.schedule_retry(now);
        self.publish();
    }

    fn publish(&self) {
        let n = self.ours.len();
        let c = self.conflicts.len();
        self.metrics.bgp(|b| {
            b.installed = n;
            b.conflicted = c;
            if !b.default_gateways.iter().eq(self.gateways.iter()) {
                b.default_gateways = self.gateways.iter().copied().collect();
            }
        });
    }
}

/// Whether `dst` lies inside one of `scope`'s prefixes.
fn in_scope(scope: &[IpNet], dst: &IpNet) -> bool {
    scope.iter().any(|p| p.contains(dst))
}

/// A scope that holds every prefix (tests and benchmarks).
pub fn everywhere() -> Vec<IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The gateway of a default route.
fn default_gateway(r: &Route) -> Option<IpAddr> {
    if r.dst.prefix_len() == 0 {
        r.via
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::rib::fake::{FakeTable, SharedTable};

    const PROTO: u8 = 73;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ours(dst: &str, via: &str) -> Route {
        Route {
            dst: n(dst),
            via: via.parse().ok(),
            oif: Some(3),
            protocol: PROTO,
        }
    }

    fn static_route(dst: &str) -> Route {
        Route {
            dst: n(dst),
            via: "192.0.2.99".parse().ok(),
            oif: Some(3),
            protocol: 4,
        }
    }

    fn installer(fake: FakeTable) -> (Installer<FakeTable>, Instant) {
        let t0 = Instant::now();
        let (i, _) =
            Installer::new(fake, PROTO, everywhere(), Arc::new(Metrics::default()), t0).unwrap();
        (i, t0)
    }

    /// The kernel tells the installer that `route` was added or deleted.
    fn route_event(i: &mut Installer<FakeTable>, route: TableRoute, deleted: bool, now: Instant) {
        i.on_event(KernelEvent::Route { route, deleted }, now);
    }

    fn status(i: &Installer<FakeTable>) -> crate::metrics::BgpStatus {
        i.metrics.bgp_snapshot()
    }

    #[test]
    fn installs_replaces_and_removes_its_own_routes() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")]
        );
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.3").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.3")]
        );
        i.apply(vec![Change::Remove(n("10.1.2.0/24"))], t0);
        assert!(i.table().routes.is_empty());
        assert_eq!(status(&i).route_conflicts, 0);
        assert_eq!(status(&i).kernel_drift, 0);
    }

    fn static6(dst: &str, via: &str) -> Route {
        Route {
            dst: n(dst),
            via: via.parse().ok(),
            oif: Some(3),
            protocol: 4,
        }
    }

    #[test]
    fn ipv6_routes_are_installed_replaced_and_removed_at_metric_1024() {
        let (mut i, t0) = installer(FakeTable::default());
        let p = "fd00:b::7/128";
        i.apply(vec![Change::Set(ours(p, "2001:db8::2").into())], t0);
        assert_eq!(i.table().at(&n(p)), vec![ours(p, "2001:db8::2")]);
        assert_eq!(i.table().routes[0].priority, 1024);
        i.apply(vec![Change::Set(ours(p, "2001:db8::3").into())], t0);
        assert_eq!(i.table().at(&n(p)), vec![ours(p, "2001:db8::3")]);
        i.apply(vec![Change::Remove(n(p))], t0);
        assert!(i.table().routes.is_empty());
        assert_eq!(status(&i).kernel_drift, 0);
        assert_eq!(status(&i).route_conflicts, 0);
    }

    /// An IPv6 static route at our key (metric 1024) or beside it: never
    /// replaced, the prefix is a conflict until it goes.
    #[rstest::rstest]
    #[case::same_metric(1024)]
    #[case::other_metric(100)]
    fn an_ipv6_foreign_route_is_never_replaced(#[case] metric: u32) {
        let p = "fd00:b::/64";
        let mut fake = FakeTable::default();
        fake.add_foreign(static6(p, "2001:db8::99"), metric);
        let (mut i, t0) = installer(fake);
        i.apply(vec![Change::Set(ours(p, "2001:db8::2").into())], t0);
        assert_eq!(i.table().at(&n(p)), vec![static6(p, "2001:db8::99")]);
        assert_eq!(status(&i).route_conflicts, 1);
        i.table().routes.clear();
        let next = i.next_deadline();
        i.tick(next);
        assert_eq!(i.table().at(&n(p)), vec![ours(p, "2001:db8::2")]);
        assert_eq!(status(&i).conflicted, 0);
    }

    /// IPv6 only: another daemon's CREATE without EXCL appends its next hop to
    /// our route, and the dump shows one multipath route with our tag. The
    /// reconcile must neither replace it (their next hop would go) nor delete
    /// it without our gateway; it takes back our next hop and leaves the
    /// prefix to them, and takes it again once they leave.
    #[test]
    fn an_ipv6_next_hop_appended_to_ours_is_left_to_its_owner() {
        let p = "fd00:b::7/128";
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(vec![Change::Set(ours(p, "2001:db8::2").into())], t0);
        i.table().append_foreign_v6(static6(p, "2001:db8::99"));
        let dump = i.table().dump().unwrap();
        assert!(dump[0].is_multipath() && dump[0].route.protocol == PROTO);
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(i.table().at(&n(p)), vec![static6(p, "2001:db8::99")]);
        assert_eq!(status(&i).route_conflicts, 1);
        assert_eq!(status(&i).installed, 0);
        // Still theirs at the next reconciles; never written over.
        for _ in 0..3 {
            let t = i.next_deadline();
            i.tick(t);
            assert_eq!(i.table().at(&n(p)), vec![static6(p, "2001:db8::99")]);
        }
        assert_eq!(status(&i).route_conflicts, 1);
        // They leave: ours comes back.
        i.table().routes.clear();
        let next = i.next_deadline();
        i.tick(next);
        assert_eq!(i.table().at(&n(p)), vec![ours(p, "2001:db8::2")]);
    }

    fn multi(dst: &str, vias: &[&str]) -> MultiRoute {
        MultiRoute::new(
            n(dst),
            vias.iter()
                .map(|v| NextHop {
                    via: v.parse().ok(),
                    oif: Some(3),
                })
                .collect(),
            PROTO,
        )
    }

    /// Several next hops are one route, and a change of the set is one
    /// replace in place: never a delete, so the prefix never lacks a route
    /// (both families; two hops to one, one to two).
    #[rstest::rstest]
    #[case::ipv4("10.1.2.3/32", ["192.0.2.2", "192.0.2.3"])]
    #[case::ipv6("fd00:b::7/128", ["2001:db8::2", "2001:db8::3"])]
    fn a_next_hop_set_is_one_route_changed_in_place(#[case] p: &str, #[case] gw: [&str; 2]) {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(vec![Change::Set(multi(p, &[gw[1], gw[0]]))], t0);
        assert_eq!(i.table().multi_at(&n(p)), vec![multi(p, &gw)]);
        assert_eq!(i.table().routes.len(), 1);
        for set in [&gw[..1], &gw[..], &gw[1..]] {
            let (writes, in_place) = (i.table().writes, i.table().replaced_in_place);
            i.apply(vec![Change::Set(multi(p, set))], t0);
            assert_eq!(i.table().multi_at(&n(p)), vec![multi(p, set)]);
            assert_eq!(i.table().writes, writes + 1, "one write");
            assert_eq!(i.table().replaced_in_place, in_place + 1, "in place");
        }
        // Found as ours by the reconcile: nothing to repair.
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(status(&i).kernel_drift, 0);
        assert_eq!(status(&i).route_conflicts, 0);
        i.apply(vec![Change::Set(multi(p, &gw))], t0);
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(status(&i).kernel_drift, 0);
        i.apply(vec![Change::Remove(n(p))], t0);
        assert!(i.table().routes.is_empty());
    }

    /// Ownership of multipath routes: another owner's next hop appended to
    /// our multipath route (IPv6) makes it not ours: never replaced, our own
    /// hops taken back one by one, the prefix a conflict until they leave.
    #[test]
    fn a_next_hop_appended_to_our_multipath_route_is_a_conflict() {
        let p = "fd00:b::7/128";
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(multi(p, &["2001:db8::2", "2001:db8::3"]))],
            t0,
        );
        i.table().append_foreign_v6(static6(p, "2001:db8::99"));
        let dump = i.table().dump().unwrap();
        assert_eq!(dump[0].hops().len(), 3);
        assert_eq!(dump[0].route.protocol, PROTO);
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(i.table().at(&n(p)), vec![static6(p, "2001:db8::99")]);
        assert_eq!(status(&i).route_conflicts, 1);
        // A change of our set meanwhile writes nothing over theirs.
        let writes = i.table().writes;
        i.apply(vec![Change::Set(multi(p, &["2001:db8::2"]))], t0);
        assert_eq!(i.table().writes, writes);
        assert_eq!(i.table().at(&n(p)), vec![static6(p, "2001:db8::99")]);
        // They leave: ours comes back, with the set wanted now.
        i.table().routes.clear();
        let next = i.next_deadline();
        i.tick(next);
        assert_eq!(i.table().multi_at(&n(p)), vec![multi(p, &["2001:db8::2"])]);
    }

    /// A tagged multipath route with a next hop we neither wrote nor want
    /// (IPv4: written whole by someone using our number) is not ours:
    /// counted as a conflict and left alone, never replaced nor deleted;
    /// one whose every hop we want is ours and is kept as it is.
    #[test]
    fn a_tagged_multipath_route_is_ours_only_with_our_next_hops() {
        let p = "10.1.2.3/32";
        let (mut i, t0) = installer(FakeTable::default());
        let theirs = multi(p, &["192.0.2.2", "192.0.2.66"]);
        let _ = i.table().create_exclusive(std::slice::from_ref(&theirs));
        i.apply(vec![Change::Set(multi(p, &["192.0.2.2", "192.0.2.3"]))], t0);
        let next = i.next_deadline();
        i.tick(next);
        assert_eq!(i.table().multi_at(&n(p)), vec![theirs.clone()]);
        assert_eq!(status(&i).route_conflicts, 1);
        assert_eq!(status(&i).installed, 0);
        // Every hop one we want: ours.
        let q = "10.1.2.4/32";
        let mine = multi(q, &["192.0.2.2", "192.0.2.3"]);
        let _ = i.table().create_exclusive(std::slice::from_ref(&mine));
        i.apply(vec![Change::Set(mine.clone())], t0);
        let next = i.next_deadline();
        i.tick(next);
        assert_eq!(i.table().multi_at(&n(q)), vec![mine]);
        assert_eq!(status(&i).installed, 1);
        assert_eq!(i.table().multi_at(&n(p)), vec![theirs]);
    }

    /// A previous run's multipath route is read at start as ours (what the
    /// learner adopts), not as another owner's.
    #[test]
    fn a_previous_runs_multipath_route_is_adopted_at_start() {
        let p = "10.1.2.3/32";
        let mut fake = FakeTable::default();
        let r = multi(p, &["192.0.2.2", "192.0.2.3"]);
        let _ = fake.create_exclusive(std::slice::from_ref(&r));
        let (_, existing) = Installer::new(
            fake,
            PROTO,
            everywhere(),
            Arc::new(Metrics::default()),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(existing, vec![r]);
    }

    /// The fake keeps the kernel's IPv6 rules (module header of route_table).
    #[test]
    fn the_fake_merges_and_splits_ipv6_next_hops_like_the_kernel() {
        let p = "fd00:b::7/128";
        let mut f = FakeTable::default();
        assert!(f.create_exclusive(&[ours(p, "2001:db8::2").into()])[0].is_ok());
        let excl = f.create_exclusive(&[ours(p, "2001:db8::3").into()]);
        assert_eq!(excl[0].as_ref().unwrap_err().errno(), Some(libc::EEXIST));
        f.append_foreign_v6(static6(p, "2001:db8::99"));
        assert_eq!(f.dump().unwrap().len(), 1);
        // DELETE with our gateway takes our next hop only.
        let _ = f.delete(&[ours(p, "2001:db8::2").into()]);
        assert_eq!(f.dump().unwrap()[0].route, static6(p, "2001:db8::99"));
        // REPLACE takes every next hop at the key.
        let _ = f.create_exclusive(&[static6("fd00:c::/64", "2001:db8::98").into()]);
        f.append_foreign_v6(ours("fd00:c::/64", "2001:db8::2"));
        let _ = f.replace(&[ours("fd00:c::/64", "2001:db8::5").into()]);
        assert_eq!(
            f.at(&n("fd00:c::/64")),
            vec![ours("fd00:c::/64", "2001:db8::5")]
        );
    }

    #[rstest::rstest]
    #[case::same_metric(0)]
    #[case::other_metric(100)]
    fn a_foreign_route_is_never_replaced_and_the_prefix_is_taken_once_free(#[case] metric: u32) {
        let mut fake = FakeTable::default();
        fake.add_foreign(static_route("10.1.2.0/24"), metric);
        let (mut i, t0) = installer(fake);
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
        assert_eq!(status(&i).conflicted, 1);
        // Retried on a timer: still held, not counted again, never written over.
        let mut t = t0;
        for _ in 0..5 {
            t = i.next_deadline();
            i.tick(t);
        }
        assert!(t <= t0 + Duration::from_secs(11));
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
        // The operator removes the static route: ours goes in at the next retry.
        i.table().routes.clear();
        let next = i.next_deadline();
        assert!(next <= t + RETRY, "retry is on a timer");
        i.tick(next);
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")]
        );
        assert_eq!(status(&i).conflicted, 0);
        assert_eq!(status(&i).kernel_drift, 0);
    }

    #[test]
    fn a_foreign_route_the_installer_has_not_seen_yet_is_not_replaced() {
        let (mut i, t0) = installer(FakeTable::default());
        // Added after the last dump, its notification not read yet.
        i.table().add_foreign(static_route("10.1.2.0/24"), 0);
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
        assert_eq!(status(&i).install_errors, 0);
    }

    #[test]
    fn an_owner_that_arrives_later_takes_the_prefix_and_a_next_hop_change_does_not_overwrite_it() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        // `ip route replace 10.1.2.0/24 via 192.0.2.99 proto static`: same key, ours is gone.
        i.table().routes.clear();
        i.table().add_foreign(static_route("10.1.2.0/24"), 0);
        let tr = i.table().routes[0].clone();
        route_event(&mut i, tr, false, t0);
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.3").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
    }

    #[test]
    fn ours_yields_to_an_owner_added_beside_it_at_another_metric() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        i.table().add_foreign(static_route("10.1.2.0/24"), 100);
        let tr = i.table().routes[1].clone();
        route_event(&mut i, tr, false, t0);
        let t = i.next_deadline();
        assert!(t <= t0 + Duration::from_secs(1));
        i.tick(t);
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
    }

    #[test]
    fn a_tagged_route_with_the_same_key_is_taken_over() {
        // A tagged route (a previous run, or by hand) we did not know of.
        let mut fake = FakeTable::default();
        let (mut i, t0) = installer(FakeTable::default());
        fake.routes.push(crate::kernel::TableRoute {
            route: ours("10.1.2.0/24", "192.0.2.7"),
            tos: 0,
            priority: 0,
            multipath: Vec::new(),
        });
        *i.table() = fake;
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")]
        );
        assert_eq!(status(&i).route_conflicts, 0);
    }

    #[test]
    fn a_route_deleted_by_hand_comes_back_and_counts_as_drift() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        let tr = i.table().routes.remove(0);
        route_event(&mut i, tr, true, t0);
        let t = i.next_deadline();
        assert!(t <= t0 + Duration::from_secs(1));
        i.tick(t);
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")]
        );
        assert_eq!(status(&i).kernel_drift, 1);
    }

    #[test]
    fn a_tagged_route_nobody_decided_goes_and_a_wrong_one_is_corrected() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        // `ip route add 10.1.9.0/24 via 192.0.2.5 proto 73`
        i.table()
            .create_exclusive(&[ours("10.1.9.0/24", "192.0.2.5").into()]);
        let tr = i.table().routes[1].clone();
        route_event(&mut i, tr, false, t0);
        // Our own echo is no reason to reconcile.
        let echo = i.table().routes[0].clone();
        let before = i.next_deadline();
        route_event(&mut i, echo, false, t0);
        assert_eq!(i.next_deadline(), before);
        i.tick(i.next_deadline());
        assert!(i.table().at(&n("10.1.9.0/24")).is_empty());
        assert_eq!(status(&i).kernel_drift, 1);
        // Someone changes our route's next hop behind our back; found by the periodic dump.
        i.table().routes[0].route.via = "192.0.2.66".parse().ok();
        let t = i.next_deadline();
        assert!(t <= t0 + FULL_RECONCILE + Duration::from_secs(1));
        i.tick(t);
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")]
        );
        assert_eq!(status(&i).kernel_drift, 2);
    }

    #[test]
    fn routes_flushed_by_a_link_flap_come_back_quickly_after_up() {
        let (mut i, t0) = installer(FakeTable::default());
        let routes: Vec<Route> = (0..50)
            .map(|k| ours(&format!("10.1.{k}.0/24"), "192.0.2.2"))
            .collect();
        i.apply(
            routes.iter().map(|r| Change::Set((*r).into())).collect(),
            t0,
        );
        assert_eq!(i.table().routes.len(), 50);
        // Link down: flushed, no route notification; the next hop is unreachable.
        i.table().flush_oif(3);
        i.table().unreachable.insert("192.0.2.2".parse().unwrap());
        let down = KernelEvent::Link {
            index: 3,
            up: false,
            running: false,
            deleted: false,
        };
        i.on_event(down, t0);
        let t = i.next_deadline();
        i.tick(t);
        assert!(i.table().routes.is_empty());
        assert_eq!(status(&i).kernel_drift, 50);
        // Up: the next hop becomes reachable shortly after the event.
        let t_up = t + Duration::from_millis(500);
        let up = KernelEvent::Link {
            index: 3,
            up: true,
            running: true,
            deleted: false,
        };
        i.on_event(up, t_up);
        let mut t = i.next_deadline();
        i.tick(t);
        i.table().unreachable.clear();
        while i.table().routes.len() < 50 && t < t_up + Duration::from_secs(5) {
            t = i.next_deadline();
            i.tick(t);
        }
        assert_eq!(i.table().routes.len(), 50);
        assert!(
            t <= t_up + Duration::from_millis(500),
            "back {:?} after up",
            t - t_up
        );
        // Drift counted once per route, not per retry.
        assert_eq!(status(&i).kernel_drift, 50);
    }

    fn link(index: u32, up: bool, deleted: bool) -> KernelEvent {
        KernelEvent::Link {
            index,
            up,
            running: up,
            deleted,
        }
    }

    /// A container start makes a link appear on the parent and move into
    /// the container (a deletion in the host's namespace); a foreign veth
    /// comes and goes. None of our routes goes out of those links: no dump.
    #[test]
    fn link_events_that_cannot_affect_a_wanted_route_cost_no_dump() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        let before = i.next_deadline();
        let dumps = i.table().dumps;
        for (k, ev) in [
            link(41, false, false),
            link(41, true, false),
            link(41, false, true),
            link(42, true, false),
            link(42, false, true),
        ]
        .into_iter()
        .enumerate()
        {
            i.on_event(ev, t0 + Duration::from_millis(k as u64));
        }
        assert_eq!(i.next_deadline(), before, "no reconcile planned");
        i.tick(before - Duration::from_millis(1));
        assert_eq!(i.table().dumps, dumps);
        let w = status(&i).route_watch;
        assert_eq!((w.events, w.ignored), (5, 5));
        assert!(!w.dumps.contains_key("link"));
    }

    /// The parent flapping: events on it are coalesced into one dump per
    /// settling time and at most one per LINK_GAP.
    #[test]
    fn link_events_on_a_parent_are_coalesced_and_rate_limited() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        let dumps = i.table().dumps;
        // 200 flaps over 2 s, the installer ticking whenever due.
        let mut t = t0;
        for k in 0..200u64 {
            t = t0 + Duration::from_millis(10 * k);
            while i.next_deadline() <= t {
                let due = i.next_deadline();
                i.tick(due);
            }
            i.on_event(link(3, k % 2 == 1, false), t);
        }
        while i.next_deadline() <= t + Duration::from_secs(1) {
            let due = i.next_deadline();
            i.tick(due);
        }
        let link_dumps = i.table().dumps - dumps;
        assert!(
            (2..=10).contains(&link_dumps),
            "{link_dumps} dumps for 200 events in 2 s"
        );
        let w = status(&i).route_watch;
        assert_eq!(w.dumps.get("link").copied(), Some(link_dumps as u64));
        assert_eq!(w.coalesced + link_dumps as u64, 200);
    }

    /// A host holding a full table of other owners' routes outside the
    /// accepted pools (a BGP router's, say): the installer remembers none
    /// of them, at start, after a dump, or from their notifications; inside
    /// the pools it still never writes over them.
    #[test]
    fn other_owners_routes_outside_the_pools_cost_no_memory() {
        let mut fake = FakeTable::default();
        for k in 0..20_000u32 {
            let dst = std::net::Ipv4Addr::from(0x2c00_0000 + (k << 8));
            fake.add_foreign(static_route(&format!("{dst}/24")), 0);
        }
        fake.add_foreign(static_route("10.1.2.0/24"), 0);
        let pools = vec![n("10.1.0.0/16")];
        let (mut i, t0) = (
            Installer::new(
                fake,
                PROTO,
                pools,
                Arc::new(Metrics::default()),
                Instant::now(),
            )
            .unwrap()
            .0,
            Instant::now(),
        );
        assert_eq!(i.foreign.len(), 1);
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(i.foreign.len(), 1);
        for k in 0..1000u32 {
            let dst = std::net::Ipv4Addr::from(0x2d00_0000 + (k << 8));
            let route = TableRoute {
                route: static_route(&format!("{dst}/24")),
                tos: 0,
                priority: 0,
                multipath: Vec::new(),
            };
            route_event(&mut i, route, false, t0);
        }
        assert_eq!(i.foreign.len(), 1);
        // Inside the pools: still theirs.
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("10.1.2.0/24")),
            vec![static_route("10.1.2.0/24")]
        );
        assert_eq!(status(&i).route_conflicts, 1);
        // The pools widen over a foreign route: read at once, never overwritten.
        let dumps = i.table().dumps;
        i.set_scope(vec![n("10.1.0.0/16"), n("44.0.0.0/8")], t0);
        assert_eq!(i.table().dumps, dumps + 1);
        assert_eq!(i.foreign.len(), 1 + 20_000);
        i.apply(
            vec![Change::Set(ours("44.0.1.0/24", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(
            i.table().at(&n("44.0.1.0/24")),
            vec![static_route("44.0.1.0/24")]
        );
        // Narrowed again: forgotten.
        i.set_scope(vec![n("10.1.0.0/16")], t0);
        assert!(i.foreign.len() <= 2, "{}", i.foreign.len());
    }

    #[test]
    fn default_gateways_are_published_from_dumps_and_events() {
        let mut fake = FakeTable::default();
        fake.add_foreign(static_route("0.0.0.0/0"), 0);
        let (mut i, t0) = installer(fake);
        let gw: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(status(&i).default_gateways, vec![gw]);
        let other = Route {
            via: "192.0.2.98".parse().ok(),
            ..static_route("0.0.0.0/0")
        };
        i.table().add_foreign(other, 100);
        let tr = i.table().routes[1].clone();
        route_event(&mut i, tr, false, t0);
        assert_eq!(status(&i).default_gateways.len(), 2);
        let tr = i.table().routes.remove(0);
        route_event(&mut i, tr, true, t0);
        assert_eq!(status(&i).default_gateways, vec![other.via.unwrap()]);
    }

    #[test]
    fn the_periodic_reconcile_is_one_dump() {
        let (mut i, t0) = installer(FakeTable::default());
        i.apply(
            vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())],
            t0,
        );
        let dumps = i.table().dumps;
        i.tick(t0 + FULL_RECONCILE);
        assert_eq!(i.table().dumps, dumps + 1);
        assert_eq!(status(&i).kernel_drift, 0);
    }

    #[test]
    fn a_refused_install_is_retried_under_constant_churn() {
        let fake = Arc::new(Mutex::new(FakeTable::default()));
        fake.lock()
            .unwrap()
            .add_foreign(static_route("10.1.2.0/24"), 0);
        let metrics = Arc::new(Metrics::default());
        let (h, thread, _) = Installer::start_with(
            SharedTable(fake.clone()),
            None,
            PROTO,
            everywhere(),
            metrics.clone(),
        )
        .unwrap();
        h.send(vec![Change::Set(ours("10.1.2.0/24", "192.0.2.2").into())]);
        h.flush_blocking();
        assert_eq!(metrics.bgp_snapshot().route_conflicts, 1);
        fake.lock()
            .unwrap()
            .routes
            .retain(|r| r.route.protocol != 4);
        // Updates every 50 ms: the channel is never idle for the retry period.
        let start = Instant::now();
        let mut k = 0u32;
        while start.elapsed() < Duration::from_secs(4) {
            k += 1;
            let via = if k % 2 == 0 { "192.0.2.3" } else { "192.0.2.4" };
            h.send(vec![Change::Set(ours("10.1.5.0/24", via).into())]);
            std::thread::sleep(Duration::from_millis(50));
            if !fake.lock().unwrap().at(&n("10.1.2.0/24")).is_empty() {
                break;
            }
        }
        assert_eq!(
            fake.lock().unwrap().at(&n("10.1.2.0/24")),
            vec![ours("10.1.2.0/24", "192.0.2.2")],
            "not retried within {:?} of churn",
            start.elapsed()
        );
        assert!(start.elapsed() <= RETRY + Duration::from_millis(500));
        drop(h);
        thread.join().unwrap();
    }
}
