//! Kernel writes: the learner's changes made true, and refused ones retried.
//!
//! In: batches of [`Change`]s (last word per prefix wins). Out: deletes,
//! replaces (only over a route the kernel showed as ours) and exclusive
//! creates to the table; a create refused with EEXIST resolved by a look
//! at the prefix (ours unknown: taken over; anyone else's: a conflict for
//! [`super::ownership`]); other failures retried on a deadline that churn
//! cannot postpone (fast right after a link event).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{debug, warn};

use super::{Change, Installer, RETRY, RETRY_MAX};
use crate::kernel::{MultiRoute, TableRoute};
use crate::metrics::{now_unix, DumpReason};
use crate::rib::table::RouteTable;

/// Up to this many deletes in one write, or routes written (created or
/// replaced), each logs a `mono_us` debug stamp (the convergence bench's
/// traces of the announcement and the withdrawal on the receiving host).
const STAMPED: usize = 8;

impl<T: RouteTable> Installer<T> {
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
    pub(super) fn write(
        &mut self,
        delete: Vec<MultiRoute>,
        replace: Vec<MultiRoute>,
        create: Vec<MultiRoute>,
        now: Instant,
    ) {
        let mut errors = 0u64;
        // A stamp per route only for a few (a container's withdrawal), not
        // for a peer's whole table.
        let stamped = delete.len() <= STAMPED;
        for (r, res) in delete.iter().zip(self.table.delete(&delete)) {
            match res {
                Ok(()) => {
                    if stamped {
                        debug!(prefix = %r.dst, mono_us = crate::clock::mono_us(), "route deleted");
                    }
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
        let stamped = replace.len() + create.len() <= STAMPED;
        for (r, res) in replace.iter().zip(self.table.replace(&replace)) {
            match res {
                Ok(()) => {
                    if stamped {
                        debug!(prefix = %r.dst, mono_us = crate::clock::mono_us(), "route written");
                    }
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
                    if stamped {
                        debug!(prefix = %r.dst, mono_us = crate::clock::mono_us(), "route written");
                    }
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
                .all(|r| r.tagged_by(self.protocol) && self.is_ours(&p, &r.hops()))
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

    /// Retries the failed writes (no conflicts pending, so no dump needed).
    pub(super) fn retry_failed(&mut self, now: Instant) {
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

    pub(super) fn schedule_retry(&mut self, now: Instant) {
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
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

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

    /// Dual-uplink status: each interface counts the installed routes with
    /// a next hop through it (a route with two hops on one link, once).
    #[test]
    fn installed_routes_are_counted_per_interface_of_their_hops() {
        let (mut i, t0) = installer(FakeTable::default());
        let mut two_links = multi("10.1.3.0/24", &["192.0.2.2", "198.51.100.2"]);
        two_links.hops[1].oif = Some(4);
        i.apply(
            vec![
                Change::Set(multi("10.1.2.0/24", &["192.0.2.2", "192.0.2.3"])),
                Change::Set(two_links),
            ],
            t0,
        );
        let by_oif = status(&i).routes_by_oif;
        assert_eq!(by_oif, [(3, 2), (4, 1)].into_iter().collect());
        i.apply(vec![Change::Remove(n("10.1.3.0/24"))], t0);
        assert_eq!(status(&i).routes_by_oif, [(3, 1)].into_iter().collect());
    }

    /// A tagged route without a gateway is the container port's (an
    /// endpoint's /32 `dev pb`, dual-uplink mode): never the installer's to
    /// remove, adopt or replace; a learned route for it is a conflict.
    #[test]
    fn a_tagged_route_without_a_gateway_is_left_to_the_container_port() {
        let port = crate::kernel::TableRoute {
            route: Route {
                dst: n("10.1.2.7/32"),
                via: None,
                oif: Some(9),
                protocol: PROTO,
            },
            tos: 0,
            priority: 0,
            multipath: Vec::new(),
        };
        let mut fake = FakeTable::default();
        fake.routes.push(port.clone());
        let (mut i, t0) = installer(fake);
        i.reconcile(t0, DumpReason::Periodic);
        assert_eq!(i.table().routes, vec![port.clone()]);
        assert_eq!(status(&i).kernel_drift, 0);
        assert_eq!(status(&i).installed, 0);
        i.apply(
            vec![Change::Set(ours("10.1.2.7/32", "192.0.2.2").into())],
            t0,
        );
        assert_eq!(i.table().routes, vec![port]);
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
