//! Reconciled against the kernel: its events read, and a dump of the main
//! table repairing the difference.
//!
//! In: [`KernelEvent`]s from the watch socket (links, routes, lost
//! notifications) and the timers. Out: a dump planned (coalesced and rate
//! limited per cause), and at the dump: missing routes created, extra
//! tagged ones deleted, wrong ones replaced, each correction counted as
//! `kernel_drift`; our next hops taken back from a route another owner
//! appended to.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::ownership::default_gateway;
use super::{
    Installer, FAST_RETRY, FAST_WINDOW, LINK_GAP, LINK_SETTLE, OWNERS_GRACE, RETRY, ROUTE_HINT_GAP,
};
use crate::kernel::{MultiRoute, NextHop, TableRoute};
use crate::metrics::DumpReason;
use crate::rib::table::RouteTable;
use crate::rib::watch::KernelEvent;

impl<T: RouteTable> Installer<T> {
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
                let interesting = if route.tagged_by(self.protocol) {
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

    /// Plans a dump and repair at `at`, or earlier if one is planned
    /// already; answers whether one was (what asked is then coalesced into it).
    pub(super) fn reconcile_soon(&mut self, at: Instant, why: DumpReason) -> bool {
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
            if tr.tagged_by(self.protocol) && !self.is_ours(&dst, &hops) {
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
            } else if tr.tagged_by(self.protocol) {
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
                self.wanted.contains_key(*p) && !creating.contains(*p) && !self.ours.contains_key(p)
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
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

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
}
