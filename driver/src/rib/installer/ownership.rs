//! Whose route a destination holds: ours, another owner's, or ours with
//! another owner's next hop appended (IPv6).
//!
//! In: the scope the learner may ask for (its pools), other owners' routes
//! seen in dumps and events, and routes held where we wanted to write.
//! Out: the destinations we must not write (`foreign`, `conflicts`, each
//! logged within a budget and counted as `route_conflicts`), whether a
//! tagged route is ours alone, and the default routes' gateways.

use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use tracing::warn;

use super::Installer;
use crate::kernel::{NextHop, Route, TableRoute};
use crate::metrics::DumpReason;
use crate::rib::table::RouteTable;

/// At most this many conflict lines per batch; the rest are summarised.
const CONFLICT_LOG_LINES: usize = 20;

impl<T: RouteTable> Installer<T> {
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
    pub(super) fn note_foreign(&mut self, dst: IpNet) {
        if in_scope(&self.scope, &dst) || self.wanted.contains_key(&dst) {
            self.foreign.insert(dst);
        }
    }

    /// Whether a tagged route at `dst` with `hops` is ours. One next hop:
    /// yes (nothing can hide under it). Several: only if every next hop is
    /// one we wrote there or want there. A hop of neither is another
    /// owner's, appended to ours (IPv6 merges a CREATE without EXCL into
    /// the route at that key, whatever its protocol; the dump shows only
    /// our tag): then the route is not ours alone.
    pub(super) fn is_ours(&self, dst: &IpNet, hops: &[NextHop]) -> bool {
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

    pub(super) fn add_conflicts(&mut self, found: Vec<(IpNet, Vec<TableRoute>)>) {
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
}

/// Whether `dst` lies inside one of `scope`'s prefixes.
pub(super) fn in_scope(scope: &[IpNet], dst: &IpNet) -> bool {
    scope.iter().any(|p| p.contains(dst))
}

/// The gateway of a default route.
pub(super) fn default_gateway(r: &Route) -> Option<IpAddr> {
    if r.dst.prefix_len() == 0 {
        r.via
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

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
}
