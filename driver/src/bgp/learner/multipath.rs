//! Equal-path (multipath) sets: gobgpd's paths in, each prefix's whole set
//! of equal best paths kept in the RIB out.
//!
//! In: the paths of one call (WatchEvent batch, snapshot or relist), in
//! order. Each prefix named gets its whole set: its paths after its last
//! withdrawal in the call, or nothing (no best path left). A path refused
//! for its prefix alone, or over [`super::Limits::rib`] / [`super::Limits::per_peer`],
//! leaves no state, only a count. Out: the sets put in the [`super::rib`],
//! each touched prefix decided again by [`super::verdict`], and the
//! [`Change`]s that follow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::rib::{Entry, Path};
use super::verdict::prefix_only;
use super::Learner;
use crate::bgp::gobgp::LearnedPath;
use crate::bgp::policy::Reject;
use crate::rib::installer::Change;

impl Learner {
    /// gobgpd's best paths, read again because [`Learner::needs_relist`] said
    /// so. Unlike [`Learner::snapshot`] nothing becomes stale, and paths
    /// refused again are not counted again.
    pub fn relisted(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        self.relist = false;
        self.dropped_since_list = false;
        self.dropped_full = false;
        let out = self.learn_inner(paths.into_iter().filter(|p| !p.withdraw), now, false);
        self.publish();
        out
    }

    /// Paths from the WatchEvent stream.
    pub fn learn(&mut self, paths: Vec<LearnedPath>) -> Vec<Change> {
        self.learn_at(paths, Instant::now())
    }

    /// [`Learner::learn`] at a given instant (for the log windows).
    pub fn learn_at(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        let out = self.learn_inner(paths.into_iter(), now, true);
        self.publish();
        out
    }

    pub(super) fn learn_inner(
        &mut self,
        paths: impl Iterator<Item = LearnedPath>,
        now: Instant,
        count: bool,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for (prefix, set) in whole_sets(paths) {
            let Some(set) = set else {
                if self.remove_rib(&prefix).is_some() {
                    self.rejected.remove(&prefix);
                    self.waiting.remove(&prefix);
                    touched.push(prefix);
                }
                continue;
            };
            let mut kept = Vec::with_capacity(set.len());
            let mut refused = None;
            for (next_hop, peer) in set {
                let reason = prefix_only(&prefix, &self.inputs)
                    .err()
                    .or_else(|| self.over_limit(&prefix, &peer, kept.len()));
                match reason {
                    None => kept.push((next_hop, peer)),
                    Some(reason) => refused = Some((reason, next_hop, peer)),
                }
            }
            if kept.is_empty() {
                let Some((reason, next_hop, peer)) = refused else {
                    continue;
                };
                // No state for it: count, sample, log within the budget.
                if matches!(reason, Reject::RibFull | Reject::PeerRibFull) {
                    self.dropped_full = true;
                } else {
                    self.dropped_since_list = true;
                }
                if self.remove_rib(&prefix).is_some() {
                    self.rejected.remove(&prefix);
                    self.waiting.remove(&prefix);
                    touched.push(prefix);
                }
                if count {
                    self.note_reject(reason, &prefix, next_hop, &peer, now);
                }
                continue;
            }
            let paths = kept
                .into_iter()
                .map(|(next_hop, peer)| Path {
                    next_hop,
                    peer: self.peers.id(&peer),
                })
                .collect();
            self.insert_rib(
                prefix,
                Entry {
                    paths,
                    stale_until: None,
                },
            );
            touched.push(prefix);
        }
        // Peers first: a prefix over one of them is refused.
        self.refresh_dynamic_inputs(&mut out, now);
        for p in touched {
            self.evaluate(p, &mut out, now, count);
        }
        self.refresh_dynamic_inputs(&mut out, now);
        self.readmit(&mut out, now);
        self.log.flush(now);
        out
    }

    /// Whether keeping a path to `prefix` from `peer` (the `nth` kept of
    /// the prefix's new set) would pass a limit.
    fn over_limit(&self, prefix: &IpNet, peer: &str, nth: usize) -> Option<Reject> {
        let from_peer = |e: &Entry| e.paths.iter().any(|p| self.peers.name(p.peer) == peer);
        match self.rib.get(prefix) {
            // Replacing a kept path from the same peer: no growth.
            Some(e) if from_peer(e) => None,
            // From another peer: that peer's share grows.
            Some(_) => {
                (self.peers.paths(peer) >= self.limits.per_peer).then_some(Reject::PeerRibFull)
            }
            None if nth == 0 && self.rib.len() >= self.limits.rib => Some(Reject::RibFull),
            None => (self.peers.paths(peer) >= self.limits.per_peer).then_some(Reject::PeerRibFull),
        }
    }
}

/// A prefix's equal best paths as one call names them: (next hop, peer).
type PathSet = Vec<(Option<IpAddr>, String)>;

/// The paths of one call, grouped into each named prefix's whole set:
/// `None` when its last word in the call is a withdrawal, else the paths
/// after that (next hop, peer), in order. Paths originated on this host's
/// gobgpd (no peer: ours or the operator's) are nothing to install and are
/// left out; a prefix named only by those is left out too.
fn whole_sets(paths: impl Iterator<Item = LearnedPath>) -> Vec<(IpNet, Option<PathSet>)> {
    let mut order = Vec::new();
    let mut sets: HashMap<IpNet, Option<PathSet>> = HashMap::new();
    for p in paths {
        if p.withdraw {
            if sets.insert(p.prefix, None).is_none() {
                order.push(p.prefix);
            }
            continue;
        }
        let Some(peer) = p.peer else {
            continue;
        };
        match sets.get_mut(&p.prefix) {
            Some(Some(set)) => set.push((p.next_hop, peer)),
            Some(none) => *none = Some(vec![(p.next_hop, peer)]),
            None => {
                order.push(p.prefix);
                sets.insert(p.prefix, Some(vec![(p.next_hop, peer)]));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|p| sets.remove(&p).map(|s| (p, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    /// Multipath: a prefix's equal best paths (one event's set) become one
    /// route with every next hop; a smaller set, a peer dropped or a new
    /// member changes the route (one Set, never a Remove first); only the
    /// last word of a call counts; a withdrawal removes it.
    #[test]
    fn equal_best_paths_become_one_route_with_every_next_hop() {
        let mut l = learner();
        let p = "10.1.2.3/32";
        let c = l.learn(vec![
            from_peer(p, "192.0.2.3", false),
            from_peer(p, "192.0.2.2", false),
        ]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.2", "192.0.2.3"])]);
        assert!(matches!(&c[0], Change::Set(r) if r.hops.iter().all(|h| h.oif == Some(3))));
        // The same set again, in another order: nothing to do.
        let c = l.learn(vec![
            from_peer(p, "192.0.2.2", false),
            from_peer(p, "192.0.2.3", false),
        ]);
        assert!(c.is_empty(), "{c:?}");
        // One member leaves (3.x: the whole set again; 4.x: best_sets).
        let c = l.learn(vec![from_peer(p, "192.0.2.3", false)]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.3"])]);
        // It comes back, after a withdrawal within the same call.
        let c = l.learn(vec![
            from_peer(p, "192.0.2.3", true),
            from_peer(p, "192.0.2.2", false),
            from_peer(p, "192.0.2.3", false),
        ]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.2", "192.0.2.3"])]);
        // A peer that failed hard loses its path only.
        let c = l.drop_peer("192.0.2.2", Instant::now());
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.3"])]);
        assert_eq!(l.prefixes_from("192.0.2.3"), vec![n(p)]);
        assert!(l.prefixes_from("192.0.2.2").is_empty());
        // The last one withdrawn: the route goes.
        let c = l.learn(vec![from_peer(p, "192.0.2.3", true)]);
        assert_eq!(c, vec![Change::Remove(n(p))]);
        assert_eq!(l.state_sizes()[0], 0);
    }

    /// `--max-paths`: a route gets at most that many next hops, the lowest
    /// addresses; `--max-paths 1` installs one.
    #[test]
    fn max_paths_caps_a_routes_next_hops() {
        let mut l = Learner::new(
            73,
            Limits {
                paths: 1,
                ..Limits::installing(2)
            },
            Duration::from_secs(10),
            Arc::new(Metrics::default()),
        );
        assert!(l.set_inputs(inputs()).is_empty());
        let p = "10.1.2.3/32";
        let c = l.learn(vec![
            from_peer(p, "192.0.2.3", false),
            from_peer(p, "192.0.2.2", false),
        ]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.2"])]);
    }

    /// The import policy applies per path: a member whose next hop is off
    /// the parent's link is left out of the route, the others stay; with
    /// no member accepted the prefix is refused for the first one's reason.
    #[test]
    fn each_member_of_an_equal_set_passes_the_policy_on_its_own() {
        let mut l = learner();
        let p = "10.1.2.3/32";
        let c = l.learn(vec![
            from_peer(p, "192.0.2.2", false),
            from_peer(p, "198.51.100.9", false),
        ]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.2"])]);
        let c = l.learn(vec![from_peer(p, "198.51.100.9", false)]);
        assert_eq!(c, vec![Change::Remove(n(p))]);
        assert!(l.rejected.contains_key(&n(p)));
    }

    /// Routes of a previous run with several next hops are adopted whole,
    /// and a set gobgpd confirms replaces them in place.
    #[test]
    fn an_adopted_multipath_route_is_kept_until_gobgpd_speaks() {
        let mut l = learner();
        let p = n("10.1.2.3/32");
        let hop = |a: &str| NextHop {
            via: a.parse().ok(),
            oif: Some(3),
        };
        let r = MultiRoute::new(p, vec![hop("192.0.2.2"), hop("192.0.2.3")], 73);
        assert!(l.adopt(std::slice::from_ref(&r), Instant::now()).is_empty());
        assert_eq!(l.desired_routes(), vec![r]);
        let c = l.learn(vec![from_peer("10.1.2.3/32", "192.0.2.3", false)]);
        assert_eq!(hops_of(&c), vec![ips(&["192.0.2.3"])]);
        assert!(!l.has_stale());
    }

    #[test]
    fn learns_replaces_and_withdraws() {
        let mut l = learner();
        let c = l.learn(vec![path("10.1.2.5/32", "192.0.2.2", false)]);
        assert!(
            matches!(&c[..], [Change::Set(r)] if r.single().is_some_and(|r| r.via == "192.0.2.2".parse().ok() && r.oif == Some(3) && r.protocol == 73))
        );
        // Same path again: nothing to do.
        assert!(l
            .learn(vec![path("10.1.2.5/32", "192.0.2.2", false)])
            .is_empty());
        // New next hop replaces.
        let c = l.learn(vec![path("10.1.2.5/32", "192.0.2.3", false)]);
        assert!(
            matches!(&c[..], [Change::Set(r)] if r.single().is_some_and(|r| r.via == "192.0.2.3".parse().ok()))
        );
        let c = l.learn(vec![path("10.1.2.5/32", "", true)]);
        assert_eq!(c, vec![Change::Remove(n("10.1.2.5/32"))]);
    }

    #[test]
    fn a_flood_of_refused_paths_keeps_no_state_and_counts_exactly() {
        let mut l = learner();
        let t0 = Instant::now();
        let total = 1_000_000u32;
        let per_batch = 10_000u32;
        let mut emitted = Vec::new();
        for b in 0..total / per_batch {
            let now = t0 + Duration::from_millis(u64::from(b) * 500);
            let batch: Vec<LearnedPath> = (0..per_batch)
                .map(|i| {
                    let a = 0x2c00_0000u32 + b * per_batch + i; // 44.0.0.0/8 and up: outside
                    let mut p = path("10.1.2.5/32", "192.0.2.2", false);
                    p.prefix = IpNet::new(std::net::Ipv4Addr::from(a).into(), 32).unwrap();
                    p
                })
                .collect();
            emitted.extend(l.learn_at(batch, now));
        }
        assert!(emitted.is_empty());
        let [rib, desired, rejected, sample] = l.state_sizes();
        assert_eq!((rib, desired, rejected), (0, 0, 0));
        assert_eq!(sample, SAMPLE);
        let st = l.metrics.bgp_snapshot();
        assert_eq!(st.rejected.get("outside-pools"), Some(&u64::from(total)));
        assert_eq!(st.recent_rejected.len(), SAMPLE);
        assert_eq!(
            st.recent_rejected.back().map(|s| s.prefix.as_str()),
            Some("44.15.66.63/32")
        );
        // 100 batches over 49.5 s: one first line plus one summary per 10 s.
        let lines = l.reject_log_lines();
        assert!((2..=6).contains(&lines), "{lines} log lines");
    }

    /// A peer floods an accepted IPv6 /64 pool with /128s (next hop fine):
    /// at most --max-learned are installed, at most --max-rib kept; the rest
    /// are dropped without state, counted, and logged within the budget.
    #[test]
    fn an_ipv6_64_pool_admits_no_unbounded_128s() {
        let limits = Limits {
            installed: 1000,
            rib: 3000,
            per_peer: 3000,
            ..Limits::default()
        };
        let mut l = Learner::new(
            73,
            limits,
            Duration::from_secs(10),
            Arc::new(Metrics::default()),
        );
        let mut i = inputs();
        i.pools.push(n("fd00:28::/64"));
        i.parents[0].nets.push(n("2001:db8:f::/64"));
        l.set_inputs(i);
        let t0 = Instant::now();
        let total = 200_000u128;
        let mut installs = 0;
        for b in 0..(total / 10_000) {
            let batch = (0..10_000u128)
                .map(|k| {
                    let a = std::net::Ipv6Addr::from(
                        0xfd00_0028_0000_0000_0000_0000_0000_0000u128 + b * 10_000 + k + 1,
                    );
                    LearnedPath {
                        prefix: IpNet::new(a.into(), 128).unwrap(),
                        next_hop: "2001:db8:f::2".parse().ok(),
                        withdraw: false,
                        peer: Some("2001:db8:f::2".into()),
                        as_path: vec![],
                    }
                })
                .collect();
            let now = t0 + Duration::from_millis(b as u64 * 100);
            installs += l
                .learn_at(batch, now)
                .iter()
                .filter(|c| matches!(c, Change::Set(_)))
                .count();
        }
        let [rib, desired, rejected_now, sample] = l.state_sizes();
        assert_eq!(installs, 1000);
        assert_eq!((rib, desired, rejected_now), (3000, 1000, 2000));
        assert_eq!(sample, SAMPLE);
        assert_eq!(rejected(&l, "max-learned"), Some(2000));
        assert_eq!(rejected(&l, "rib-full"), Some(197_000));
        assert!(
            l.reject_log_lines() <= 6,
            "{} log lines",
            l.reject_log_lines()
        );
        // Room frees: gobgpd's RIB is read again, and the waiting ones get in.
        let c = l.learn(
            (1..=10u128)
                .map(|k| {
                    let a =
                        std::net::Ipv6Addr::from(0xfd00_0028_0000_0000_0000_0000_0000_0000u128 + k);
                    LearnedPath {
                        withdraw: true,
                        ..path6(a)
                    }
                })
                .collect(),
        );
        assert_eq!(c.iter().filter(|c| matches!(c, Change::Set(_))).count(), 10);
        assert!(l.needs_relist());
    }

    fn path6(a: std::net::Ipv6Addr) -> LearnedPath {
        LearnedPath {
            prefix: IpNet::new(a.into(), 128).unwrap(),
            next_hop: "2001:db8:f::2".parse().ok(),
            withdraw: false,
            peer: Some("2001:db8:f::2".into()),
            as_path: vec![],
        }
    }

    /// One leaking peer cannot crowd out the others: past its share its
    /// paths are dropped, another peer's are still kept and installed.
    #[test]
    fn a_peer_over_its_share_leaves_room_for_the_others() {
        let limits = Limits {
            installed: 10_000,
            rib: 10_000,
            per_peer: 100,
            ..Limits::default()
        };
        let mut l = Learner::new(
            73,
            limits,
            Duration::from_secs(10),
            Arc::new(Metrics::default()),
        );
        l.set_inputs(inputs());
        let from = |peer: &str, k: u32| LearnedPath {
            prefix: IpNet::new(std::net::Ipv4Addr::from(0x0a01_0000 + k).into(), 32).unwrap(),
            next_hop: "192.0.2.2".parse().ok(),
            withdraw: false,
            peer: Some(peer.into()),
            as_path: vec![],
        };
        let c = l.learn((300..800).map(|k| from("192.0.2.2", k)).collect());
        assert_eq!(c.len(), 100);
        assert_eq!(rejected(&l, "peer-rib-full"), Some(400));
        let c = l.learn((1000..1050).map(|k| from("192.0.2.3", k)).collect());
        assert_eq!(c.len(), 50);
        assert_eq!(l.state_sizes()[0], 150);
    }
}
