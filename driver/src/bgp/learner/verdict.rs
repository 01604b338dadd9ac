//! Policy verdicts: each kept set through the import policy, the route
//! decided for its prefix out.
//!
//! In: a prefix to decide (touched by a call, freed room, a changed policy
//! input), and the policy inputs from the session loop. Out: the route of
//! the set's accepted paths (at most [`MAX_PATHS`] next hops) or the
//! reason it is refused, as [`Change`]s; refusals waiting for room under
//! `--max-learned` get in when it frees. The next hops of installed routes
//! and the peers of kept paths are policy inputs too: when one comes or
//! goes only the prefixes containing it are decided again.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use imbl::OrdSet;
use ipnet::IpNet;

use super::Learner;
#[cfg(doc)]
use super::MAX_PATHS;
use crate::bgp::policy::{decide, PolicyInputs, Reject};
use crate::kernel::{MultiRoute, NextHop};
use crate::rib::installer::Change;

/// Every prefix that contains `addr`, one per length (33 for IPv4, 129 for IPv6).
fn prefixes_containing(addr: IpAddr) -> impl Iterator<Item = IpNet> {
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (0..=max).filter_map(move |len| IpNet::new(addr, len).ok().map(|n| n.trunc()))
}

/// The addresses in one of `old` and `new` but not both.
fn changed_addresses<'a>(
    old: &'a OrdSet<IpAddr>,
    new: &'a OrdSet<IpAddr>,
) -> impl Iterator<Item = IpAddr> + 'a {
    old.diff(new).map(|d| match d {
        imbl::ordset::DiffItem::Add(a) | imbl::ordset::DiffItem::Remove(a) => *a,
    })
}

impl Learner {
    /// New policy inputs. When only the local endpoints changed (a
    /// container came or went), only the learned prefixes containing an
    /// address that came or went are decided again (for each address, one
    /// lookup per prefix length: at most 33 for IPv4); anything else (pools,
    /// parents, neighbours, next hops, gateways, addresses) re-decides all:
    /// the full pass.
    pub fn set_inputs(&mut self, inputs: PolicyInputs) -> Vec<Change> {
        if inputs == self.external {
            return Vec::new();
        }
        if !self.full_only && inputs.same_but_endpoints(&self.external) {
            return self.set_local_endpoints(inputs.local_endpoints, inputs.endpoints_via_host);
        }
        let now = Instant::now();
        let widened = inputs
            .pools
            .iter()
            .any(|p| !self.external.pools.iter().any(|old| old.contains(p)));
        if widened && self.dropped_since_list {
            // Paths dropped as outside the old pools may fit the new ones.
            self.relist = true;
        }
        self.external = inputs;
        // The given inputs plus what the installed routes and kept paths add.
        self.inputs = self.external.clone();
        self.inputs
            .next_hops
            .extend(self.next_hops.count.keys().copied());
        self.inputs
            .neighbors
            .extend(self.neighbors.count.keys().copied());
        let mut out = Vec::new();
        // Withdrawals first, so freed room under --max-learned goes to the rest.
        let mut prefixes: Vec<IpNet> = self.rib.keys().copied().collect();
        prefixes.sort_by_key(|p| !self.desired.contains_key(p));
        for p in prefixes {
            self.evaluate(p, &mut out, now, true);
        }
        self.refresh_dynamic_inputs(&mut out, now);
        self.readmit(&mut out, now);
        self.publish();
        out
    }

    /// The incremental half of [`Learner::set_inputs`]. The sets are the
    /// view's (`imbl`): their difference skips the nodes they share, so
    /// one endpoint more costs O(log n), not a walk of every endpoint.
    fn set_local_endpoints(
        &mut self,
        endpoints: OrdSet<IpAddr>,
        via_host: OrdSet<IpAddr>,
    ) -> Vec<Change> {
        let now = Instant::now();
        let changed: Vec<IpAddr> = changed_addresses(&self.external.local_endpoints, &endpoints)
            .chain(changed_addresses(
                &self.external.endpoints_via_host,
                &via_host,
            ))
            .collect();
        for a in &changed {
            if endpoints.contains(a) {
                self.inputs.local_endpoints.insert(*a);
            } else {
                self.inputs.local_endpoints.remove(a);
            }
        }
        self.external.local_endpoints = endpoints;
        self.inputs.endpoints_via_host = via_host.clone();
        self.external.endpoints_via_host = via_host;
        let mut again: Vec<IpNet> = changed
            .iter()
            .flat_map(|a| prefixes_containing(*a))
            .filter(|p| self.rib.contains_key(p) || self.desired.contains_key(p))
            .collect();
        again.sort();
        again.dedup();
        // Withdrawals first, as in the full pass, so freed room under
        // --max-learned goes to the rest.
        again.sort_by_key(|p| !self.desired.contains_key(p));
        let mut out = Vec::new();
        for p in again {
            self.evaluate(p, &mut out, now, true);
        }
        self.refresh_dynamic_inputs(&mut out, now);
        if out.iter().any(|c| matches!(c, Change::Remove(_))) {
            self.readmit(&mut out, now);
        }
        self.publish();
        out
    }

    pub(super) fn evaluate(
        &mut self,
        prefix: IpNet,
        out: &mut Vec<Change>,
        now: Instant,
        count: bool,
    ) {
        self.decisions += 1;
        let Some(entry) = self.rib.get(&prefix) else {
            self.set_rejected(prefix, None);
            if self.set_desired(prefix, None).is_some() {
                out.push(Change::Remove(prefix));
            }
            return;
        };
        // Every path of the equal set on its own: the accepted ones are the
        // route's next hops; the first refusal speaks for the prefix when
        // none is accepted.
        let mut hops = Vec::with_capacity(entry.paths.len());
        let mut refusal = None;
        for p in &entry.paths {
            match decide(&prefix, p.next_hop, &self.inputs) {
                Ok(oif) => hops.push(NextHop {
                    via: p.next_hop,
                    oif: Some(oif),
                }),
                Err(r) => {
                    refusal.get_or_insert((r, p.next_hop, p.peer));
                }
            }
        }
        let mut verdict = match refusal {
            Some((r, nh, peer)) if hops.is_empty() => Err((r, nh, peer)),
            _ => Ok(hops),
        };
        if verdict.is_ok()
            && !self.desired.contains_key(&prefix)
            && self.desired.len() >= self.limits.installed
        {
            let first = entry.paths[0];
            verdict = Err((Reject::MaxLearned, first.next_hop, first.peer));
        }
        match verdict {
            Ok(hops) => {
                self.set_rejected(prefix, None);
                let mut route = MultiRoute::new(prefix, hops, self.protocol);
                route.hops.truncate(self.limits.paths.max(1));
                if route.hops.is_empty() {
                    return;
                }
                if self.desired.get(&prefix) != Some(&route) {
                    self.set_desired(prefix, Some(route.clone()));
                    out.push(Change::Set(route));
                }
            }
            Err((reason, next_hop, peer)) => {
                let peer = self.peers.name(peer).to_string();
                if reason.is_dropped() {
                    // The pools narrowed (or an adopted route): forget it.
                    self.remove_rib(&prefix);
                    self.set_rejected(prefix, None);
                    self.dropped_since_list = true;
                    if count {
                        self.note_reject(reason, &prefix, next_hop, &peer, now);
                    }
                } else if self.rejected.get(&prefix) != Some(&reason) {
                    self.set_rejected(prefix, Some(reason));
                    if count {
                        self.note_reject(reason, &prefix, next_hop, &peer, now);
                    }
                }
                if self.set_desired(prefix, None).is_some() {
                    out.push(Change::Remove(prefix));
                }
            }
        }
    }

    /// Files `prefix` as refused for `reason` (kept in the RIB).
    fn set_rejected(&mut self, prefix: IpNet, reason: Option<Reject>) -> Option<Reject> {
        let old = match reason {
            Some(r) => self.rejected.insert(prefix, r),
            None => self.rejected.remove(&prefix),
        };
        if reason == Some(Reject::MaxLearned) {
            self.waiting.insert(prefix);
        } else if old == Some(Reject::MaxLearned) {
            self.waiting.remove(&prefix);
        }
        old
    }

    /// Records the route decided for `prefix` (or none), keeping the next
    /// hops in use equal to those of the installed routes.
    pub(super) fn set_desired(
        &mut self,
        prefix: IpNet,
        route: Option<MultiRoute>,
    ) -> Option<MultiRoute> {
        let old = match route {
            Some(r) => {
                for nh in r.gateways() {
                    self.next_hops.add(nh);
                }
                self.desired.insert(prefix, r)
            }
            None => self.desired.remove(&prefix),
        };
        for nh in old.iter().flat_map(|o| o.gateways()) {
            self.next_hops.remove(nh);
        }
        old
    }

    /// Folds the next hops and peers that appeared or went into the policy
    /// inputs, and re-decides the prefixes that contain them: those
    /// installed over a new one go, those refused over a gone one may come
    /// back. Each address costs one lookup per prefix length.
    pub(super) fn refresh_dynamic_inputs(&mut self, out: &mut Vec<Change>, now: Instant) {
        // Installing or removing routes changes the next hops in use again:
        // repeat until nothing moves (bounded: a route changes the set once).
        for _ in 0..64 {
            let added_nh = std::mem::take(&mut self.next_hops.added);
            let removed_nh = std::mem::take(&mut self.next_hops.removed);
            let added_nb = std::mem::take(&mut self.neighbors.added);
            let removed_nb = std::mem::take(&mut self.neighbors.removed);
            if added_nh.is_empty()
                && removed_nh.is_empty()
                && added_nb.is_empty()
                && removed_nb.is_empty()
            {
                return;
            }
            let mut again: Vec<IpNet> = Vec::new();
            let mut gone = |set: &mut BTreeSet<IpAddr>, external: &BTreeSet<IpAddr>, a: IpAddr| {
                if !external.contains(&a) && set.remove(&a) {
                    again.extend(prefixes_containing(a));
                }
            };
            for a in removed_nh {
                if !self.next_hops.count.contains_key(&a) {
                    gone(&mut self.inputs.next_hops, &self.external.next_hops, a);
                }
            }
            for a in removed_nb {
                if !self.neighbors.count.contains_key(&a) {
                    gone(&mut self.inputs.neighbors, &self.external.neighbors, a);
                }
            }
            for a in added_nh {
                if self.next_hops.count.contains_key(&a) && self.inputs.next_hops.insert(a) {
                    again.extend(prefixes_containing(a));
                }
            }
            for a in added_nb {
                if self.neighbors.count.contains_key(&a) && self.inputs.neighbors.insert(a) {
                    again.extend(prefixes_containing(a));
                }
            }
            again.retain(|p| self.desired.contains_key(p) || self.rejected.contains_key(p));
            again.sort();
            again.dedup();
            // Withdrawals first, so freed room under --max-learned goes to the rest.
            again.sort_by_key(|p| !self.desired.contains_key(p));
            for p in again {
                self.evaluate(p, out, now, true);
            }
        }
    }

    /// Routes refused by `--max-learned` get in when others leave.
    pub(super) fn readmit(&mut self, out: &mut Vec<Change>, now: Instant) {
        while self.desired.len() < self.limits.installed {
            let Some(p) = self.waiting.pop_first() else {
                break;
            };
            self.evaluate(p, out, now, true);
            self.refresh_dynamic_inputs(out, now);
        }
    }
}

/// The prefix-only part of the policy, checked before any state is kept.
pub(super) fn prefix_only(prefix: &IpNet, inputs: &PolicyInputs) -> Result<(), Reject> {
    match decide(prefix, None, inputs) {
        Err(r) if r.is_dropped() => Err(r),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn refused_paths_are_counted_per_path_and_never_installed() {
        let mut l = learner();
        assert!(l
            .learn(vec![path("0.0.0.0/0", "192.0.2.2", false)])
            .is_empty());
        assert!(l
            .learn(vec![path("0.0.0.0/0", "192.0.2.2", false)])
            .is_empty());
        // Dropped without state, so each path counts.
        assert_eq!(rejected(&l, "default-route"), Some(2));
        assert_eq!(l.state_sizes()[..3], [0, 0, 0]);
        // Kept-state refusals count once per prefix.
        l.learn(vec![path("10.1.3.1/32", "203.0.113.9", false)]);
        l.learn(vec![path("10.1.3.1/32", "203.0.113.9", false)]);
        assert_eq!(rejected(&l, "next-hop-off-link"), Some(1));
    }

    #[test]
    fn reserved_prefixes_are_refused_even_in_an_accepted_pool() {
        let mut l = learner();
        let mut i = inputs();
        i.pools.push(n("169.254.0.0/16"));
        l.set_inputs(i);
        assert!(l
            .learn(vec![path("169.254.1.0/24", "192.0.2.2", false)])
            .is_empty());
        assert_eq!(rejected(&l, "reserved"), Some(1));
    }

    #[test]
    fn a_prefix_over_a_learned_next_hop_or_peer_is_refused_and_removed() {
        let mut l = learner();
        let mut i = inputs();
        // Wide pool and parent subnet so the prefix can cover a next hop.
        i.pools = vec![n("10.0.0.0/8")];
        i.network_subnets = vec![n("10.1.1.0/24")];
        i.connected = vec![];
        i.parents[0].nets.push(n("10.9.0.0/16"));
        l.set_inputs(i);
        let c = l.learn(vec![path("10.9.9.0/24", "192.0.2.2", false)]);
        assert!(matches!(&c[..], [Change::Set(_)]));
        // A path whose next hop lies inside it: the covering route goes.
        let c = l.learn(vec![path("10.5.0.1/32", "10.9.9.7", false)]);
        assert!(c.contains(&Change::Remove(n("10.9.9.0/24"))), "{c:?}");
        assert_eq!(rejected(&l, "covers-next-hop"), Some(1));
        // The next hop leaves: the prefix comes back.
        let c = l.learn(vec![path("10.5.0.1/32", "", true)]);
        assert!(
            c.iter()
                .any(|c| matches!(c, Change::Set(r) if r.dst == n("10.9.9.0/24"))),
            "{c:?}"
        );
        // A prefix over the peer that sent it.
        let mut p = path("10.9.0.0/30", "192.0.2.2", false);
        p.peer = Some("10.9.0.1".into());
        assert!(l.learn(vec![p]).is_empty());
        assert_eq!(rejected(&l, "covers-neighbor"), Some(1));
    }

    /// A next hop counts for covers-next-hop only while a route through it
    /// is installed: a refused path's next hop takes nothing away.
    #[test]
    fn only_installed_routes_next_hops_count_for_covers_next_hop() {
        let mut l = Learner::new(
            73,
            Limits::installing(1),
            Duration::from_secs(10),
            Arc::new(Metrics::default()),
        );
        let mut i = inputs();
        i.pools = vec![n("10.0.0.0/8")];
        i.network_subnets = vec![n("10.1.1.0/24")];
        i.connected = vec![];
        i.parents[0].nets.push(n("10.9.0.0/16"));
        l.set_inputs(i);
        let c = l.learn(vec![path("10.9.9.0/24", "192.0.2.2", false)]);
        assert!(matches!(&c[..], [Change::Set(_)]));
        // Refused (--max-learned 1), its next hop inside the installed prefix.
        assert!(l
            .learn(vec![path("10.5.0.1/32", "10.9.9.7", false)])
            .is_empty());
        assert!(l.is_desired(&n("10.9.9.0/24")));
        assert_eq!(rejected(&l, "covers-next-hop"), None);
        // An off-link next hop inside it: refused too, takes nothing either.
        assert!(l
            .learn(vec![path("10.5.0.2/32", "10.99.0.7", false)])
            .is_empty());
        assert!(l.is_desired(&n("10.9.9.0/24")));
    }

    #[test]
    fn max_learned_caps_installs() {
        let mut l = learner();
        let c = l.learn(vec![
            path("10.1.2.1/32", "192.0.2.2", false),
            path("10.1.2.2/32", "192.0.2.2", false),
            path("10.1.2.3/32", "192.0.2.2", false),
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(l.installed_count(), 2);
        assert_eq!(rejected(&l, "max-learned"), Some(1));
        // A withdrawal frees room: the waiting route gets in at once.
        let c = l.learn(vec![path("10.1.2.1/32", "", true)]);
        assert_eq!(
            c,
            vec![
                Change::Remove(n("10.1.2.1/32")),
                Change::Set(
                    Route {
                        dst: n("10.1.2.3/32"),
                        via: "192.0.2.2".parse().ok(),
                        oif: Some(3),
                        protocol: 73
                    }
                    .into()
                )
            ]
        );
        assert_eq!(l.installed_count(), 2);
    }

    #[test]
    fn a_wider_pool_asks_for_a_relist_and_then_admits_the_paths() {
        let mut l = learner();
        assert!(l
            .learn(vec![path("172.20.0.9/32", "192.0.2.2", false)])
            .is_empty());
        assert!(!l.needs_relist());
        let mut i = inputs();
        i.pools.push(n("172.20.0.0/24"));
        // The dropped path left no state: nothing to re-decide yet.
        assert!(l.set_inputs(i).is_empty());
        assert!(l.needs_relist());
        let c = l.relisted(
            vec![path("172.20.0.9/32", "192.0.2.2", false)],
            Instant::now(),
        );
        assert_eq!(c.len(), 1);
        assert!(!l.needs_relist());
        // Counted once (at first sight), not again on the relist.
        assert_eq!(rejected(&l, "outside-pools"), Some(1));
    }

    #[test]
    fn a_narrower_pool_needs_no_relist() {
        let mut l = learner();
        l.learn(vec![path("172.20.0.9/32", "192.0.2.2", false)]);
        let mut i = inputs();
        i.pools = vec![n("10.1.0.0/24")];
        l.set_inputs(i);
        assert!(!l.needs_relist());
    }

    /// The incremental pass of `set_inputs` (only the local endpoints
    /// changed) against the full one: after every step of a random history
    /// (endpoints coming and going, paths learned and withdrawn, from a small
    /// address universe so that they overlap), both learners decide the
    /// same: the same installs, the same rejections with the same reasons,
    /// the same route changes.
    mod incremental {
        use super::*;
        use proptest::prelude::*;
        use std::net::Ipv4Addr;

        #[derive(Debug, Clone)]
        enum Step {
            Endpoints(BTreeSet<IpAddr>),
            Learn(Vec<LearnedPath>),
        }

        /// Addresses in 10.0.0.0/22: 4 × 16 of them, so prefixes and endpoints meet.
        fn addr() -> impl Strategy<Value = Ipv4Addr> {
            (0u8..4, 0u8..16).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c, d))
        }

        fn endpoints() -> impl Strategy<Value = BTreeSet<IpAddr>> {
            prop::collection::btree_set(addr().prop_map(IpAddr::V4), 0..12)
        }

        fn learned() -> impl Strategy<Value = LearnedPath> {
            (addr(), 20u8..=32, 2u8..5, any::<bool>()).prop_map(|(a, len, nh, withdraw)| {
                LearnedPath {
                    prefix: IpNet::V4(ipnet::Ipv4Net::new(a, len).unwrap().trunc()),
                    next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, nh))),
                    withdraw,
                    peer: Some("192.0.2.2".into()),
                    as_path: vec![],
                }
            })
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => endpoints().prop_map(Step::Endpoints),
                1 => prop::collection::vec(learned(), 0..20).prop_map(Step::Learn),
            ]
        }

        fn base() -> PolicyInputs {
            PolicyInputs {
                pools: vec![n("10.0.0.0/16")],
                network_subnets: vec![n("10.0.1.0/24")],
                ..inputs()
            }
        }

        fn sorted(v: Vec<Change>) -> Vec<String> {
            let mut out: Vec<String> = v.into_iter().map(|c| format!("{c:?}")).collect();
            out.sort();
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(500)
            ))]
            #[test]
            fn incremental_equals_full(
                first in endpoints(),
                rib in prop::collection::vec(learned(), 0..60),
                steps in prop::collection::vec(step(), 1..8),
            ) {
                let metrics = Arc::new(Metrics::default());
                let mut inc = Learner::new(73, Limits::installing(10_000), Duration::from_secs(10), metrics.clone());
                let mut full = Learner::new(73, Limits::installing(10_000), Duration::from_secs(10), metrics);
                full.full_only = true;
                // Half the endpoints behind a shim, the half changing with the
                // step: an address can move between the two sets of policy.rs.
                let with = |e: &BTreeSet<IpAddr>, i: usize| PolicyInputs { local_endpoints: e.iter().copied().collect(), endpoints_via_host: e.iter().filter(|a| matches!(a, IpAddr::V4(v) if (v.octets()[3] as usize + i) % 2 == 1)).copied().collect(), ..base() };
                // The incremental learner gets sets changed in place from
                // the last ones, as the view's are (sharing their unchanged
                // nodes); the full one fresh sets.
                let (mut ends, mut via) = (OrdSet::new(), OrdSet::new());
                let mut edit = |e: &BTreeSet<IpAddr>, i: usize| {
                    let fresh = with(e, i);
                    for (old, new) in [(&mut ends, &fresh.local_endpoints), (&mut via, &fresh.endpoints_via_host)] {
                        for a in old.clone().iter().filter(|a| !new.contains(*a)) {
                            old.remove(a);
                        }
                        for a in new.iter() {
                            old.insert(*a);
                        }
                    }
                    PolicyInputs { local_endpoints: ends.clone(), endpoints_via_host: via.clone(), ..fresh }
                };
                let mut steps = steps;
                steps.insert(0, Step::Learn(rib));
                steps.insert(0, Step::Endpoints(first));
                for (i, step) in steps.into_iter().enumerate() {
                    let (a, b) = match step {
                        Step::Endpoints(e) => (inc.set_inputs(edit(&e, i)), full.set_inputs(with(&e, i))),
                        Step::Learn(p) => (inc.learn(p.clone()), full.learn(p)),
                    };
                    prop_assert_eq!(sorted(a), sorted(b), "changes at step {}", i);
                    prop_assert_eq!(&inc.desired, &full.desired, "installs after step {}", i);
                    prop_assert_eq!(&inc.rejected, &full.rejected, "rejections after step {}", i);
                    prop_assert_eq!(&inc.inputs, &full.inputs, "inputs after step {}", i);
                }
            }
        }

        /// A table of the cases that matter, named: the prefixes over a new
        /// endpoint go, at every length; those over a gone one come back.
        #[test]
        fn the_prefixes_over_an_endpoint_at_every_length_follow_it() {
            let mut l = Learner::new(
                73,
                Limits::installing(100),
                Duration::from_secs(10),
                Arc::new(Metrics::default()),
            );
            let _ = l.set_inputs(base());
            let prefixes = [
                "10.0.2.0/23",
                "10.0.2.0/24",
                "10.0.2.4/30",
                "10.0.2.5/32",
                "10.0.2.6/32",
                "10.0.3.0/24",
            ];
            let paths = prefixes
                .iter()
                .map(|p| path(p, "192.0.2.2", false))
                .collect();
            assert_eq!(l.learn(paths).len(), prefixes.len());
            let ep: IpAddr = "10.0.2.5".parse().unwrap();
            let with = PolicyInputs {
                local_endpoints: [ep].into_iter().collect(),
                endpoints_via_host: [ep].into_iter().collect(),
                ..base()
            };
            let gone = sorted(l.set_inputs(with));
            let want: Vec<String> = ["10.0.2.0/23", "10.0.2.0/24", "10.0.2.4/30", "10.0.2.5/32"]
                .iter()
                .map(|p| format!("{:?}", Change::Remove(n(p))))
                .collect();
            assert_eq!(gone, want);
            assert_eq!(
                l.rejected.get(&n("10.0.2.4/30")),
                Some(&Reject::LocalEndpoint)
            );
            assert!(l.is_desired(&n("10.0.2.6/32")) && l.is_desired(&n("10.0.3.0/24")));
            assert_eq!(l.set_inputs(base()).len(), 4);
            assert_eq!(l.installed_count(), prefixes.len());
        }
    }
}
