//! Routes gobgpd can no longer confirm: kept for the stale time, like BGP
//! graceful restart, then removed.
//!
//! In: routes a previous run left in the kernel, gobgpd's complete view
//! after a (re)connection, connection loss, the clock, End-of-RIB markers
//! and peers that failed hard. Out: the [`Change`]s that remove what was
//! not learned again (or keep, without a gap, what was).

use std::time::Instant;

use ipnet::IpNet;
use tracing::info;

use super::peers::PeerId;
use super::rib::{Entry, Path};
use super::Learner;
use crate::bgp::gobgp::{Family, LearnedPath};
use crate::kernel::MultiRoute;
use crate::rib::installer::Change;

impl Learner {
    /// Routes of a previous run found in the kernel: kept, unconfirmed, until
    /// gobgpd confirms them or the stale time runs out.
    pub fn adopt(&mut self, routes: &[MultiRoute], now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        let peer = self.peers.id("kernel (previous run)");
        for r in routes {
            self.insert_rib(
                r.dst,
                Entry {
                    paths: r
                        .hops
                        .iter()
                        .map(|h| Path {
                            next_hop: h.via,
                            peer,
                        })
                        .collect(),
                    stale_until: Some(now + self.stale_time),
                },
            );
        }
        self.refresh_dynamic_inputs(&mut out, now);
        for r in routes {
            // It is in the kernel: if the policy now refuses it, it must be removed.
            self.set_desired(r.dst, Some(r.clone()));
            self.evaluate(r.dst, &mut out, now, true);
        }
        self.refresh_dynamic_inputs(&mut out, now);
        if !routes.is_empty() {
            info!(
                count = routes.len(),
                stale_secs = self.stale_time.as_secs(),
                "adopted routes from a previous run until gobgpd confirms them"
            );
        }
        self.publish();
        out
    }

    /// A complete view of gobgpd's best paths (taken right after connecting):
    /// what it holds is confirmed, everything else becomes stale.
    pub fn snapshot(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        self.disconnected(now);
        self.relist = false;
        self.dropped_since_list = false;
        self.dropped_full = false;
        let out = self.learn_at(paths.into_iter().filter(|p| !p.withdraw).collect(), now);
        self.publish();
        out
    }

    /// gobgpd went away: keep every route for the stale time.
    pub fn disconnected(&mut self, now: Instant) {
        let deadline = now + self.stale_time;
        let prefixes: Vec<IpNet> = self.rib.keys().copied().collect();
        for p in prefixes {
            self.make_stale(p, deadline);
        }
        self.publish();
    }

    /// Removes the routes whose stale time is over (and flushes due log summaries).
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        self.log.flush(now);
        let mut expired = Vec::new();
        while let Some(&(t, p)) = self.stale.first() {
            if t > now {
                break;
            }
            self.stale.pop_first();
            expired.push(p);
        }
        for p in &expired {
            info!(prefix = %p, "stale route not learned again: removing");
        }
        self.remove_now(expired, None, now)
    }

    /// `peer` sent its End-of-RIB for `family`: its routes still stale
    /// (learned before a gobgpd or driver restart, not sent again) go now
    /// instead of at the end of the stale time.
    pub fn end_of_rib(&mut self, peer: &str, family: Family, now: Instant) -> Vec<Change> {
        let Some(id) = self.peers.ids.get(peer).copied() else {
            return Vec::new();
        };
        let gone = self.stale_where(|p| {
            self.rib
                .get(p)
                .is_some_and(|e| e.paths.iter().any(|x| x.peer == id))
                && Family::of(p) == family
        });
        if !gone.is_empty() {
            info!(
                peer,
                family = family.name(),
                count = gone.len(),
                "stale routes not in the peer's End-of-RIB: removing"
            );
        }
        self.remove_now(gone, Some(id), now)
    }

    /// Every peer sent its End-of-RIB for `family`: every route of it still
    /// stale (those adopted from the kernel included, whose peer is
    /// unknown) goes now.
    pub fn rib_complete(&mut self, family: Family, now: Instant) -> Vec<Change> {
        let gone = self.stale_where(|p| Family::of(p) == family);
        if !gone.is_empty() {
            info!(
                family = family.name(),
                count = gone.len(),
                "every peer sent its End-of-RIB: removing the stale routes not learned again"
            );
        }
        self.remove_now(gone, None, now)
    }

    /// `peer` failed hard (hold expiry, BFD): every path learned from it
    /// goes now, although gobgpd may keep its paths as stale (a prefix that
    /// other peers' paths share keeps those: its route loses one next hop).
    pub fn drop_peer(&mut self, peer: &str, now: Instant) -> Vec<Change> {
        let Some(id) = self.peers.ids.get(peer).copied() else {
            return Vec::new();
        };
        let gone = self.prefixes_from(peer);
        self.remove_now(gone, Some(id), now)
    }

    /// Removes `prefixes` from the learned RIB (only `peer`'s paths of
    /// them, if given) and decides them again (a route refused for
    /// --max-learned may take the freed room).
    fn remove_now(
        &mut self,
        prefixes: Vec<IpNet>,
        peer: Option<PeerId>,
        now: Instant,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for p in &prefixes {
            match peer {
                Some(id) => self.remove_paths_of(p, id),
                None => {
                    self.remove_rib(p);
                }
            }
            if !self.rib.contains_key(p) {
                self.rejected.remove(p);
                self.waiting.remove(p);
            }
        }
        let removed = !prefixes.is_empty();
        for p in prefixes {
            self.evaluate(p, &mut out, now, true);
        }
        self.refresh_dynamic_inputs(&mut out, now);
        self.readmit(&mut out, now);
        if removed || !out.is_empty() {
            self.publish();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::kernel::Route;

    #[test]
    fn stale_routes_survive_a_disconnect_until_expiry() {
        let mut l = learner();
        let t0 = Instant::now();
        l.learn(vec![
            path("10.1.2.5/32", "192.0.2.2", false),
            path("10.1.2.6/32", "192.0.2.2", false),
        ]);
        l.disconnected(t0);
        assert!(l.expire(t0 + Duration::from_secs(5)).is_empty());
        // Reconnected: only 10.1.2.5 is confirmed.
        assert!(l
            .snapshot(
                vec![path("10.1.2.5/32", "192.0.2.2", false)],
                t0 + Duration::from_secs(6)
            )
            .is_empty());
        let c = l.expire(t0 + Duration::from_secs(11));
        assert_eq!(c, vec![Change::Remove(n("10.1.2.6/32"))]);
        assert!(l.is_desired(&n("10.1.2.5/32")));
        assert!(l.expire(t0 + Duration::from_secs(100)).is_empty());
    }

    /// After a gobgpd restart: a peer's End-of-RIB removes its stale routes
    /// it did not send again (and only its own, of that family); once every
    /// peer is complete, the rest of the family (adopted routes) goes. The
    /// routes sent again are never touched: no withdraw and re-add.
    #[test]
    fn end_of_rib_removes_only_what_did_not_come_back() {
        let mut l = Learner::new(
            73,
            Limits::installing(100),
            Duration::from_secs(60),
            Arc::new(Metrics::default()),
        );
        let mut i = inputs();
        i.pools.push(n("fd00:1::/32"));
        i.parents[0].nets.push(n("2001:db8:f::/64"));
        l.set_inputs(i);
        let t0 = Instant::now();
        let from = |prefix: &str, nh: &str, peer: &str| LearnedPath {
            peer: Some(peer.into()),
            ..path(prefix, nh, false)
        };
        let kept = Route {
            dst: n("10.1.9.9/32"),
            via: "192.0.2.4".parse().ok(),
            oif: Some(3),
            protocol: 73,
        };
        assert!(l.adopt(&[kept.into()], t0).is_empty());
        l.learn(vec![
            from("10.1.2.5/32", "192.0.2.2", "192.0.2.2"),
            from("10.1.2.6/32", "192.0.2.2", "192.0.2.2"),
            from("fd00:1:2::6/128", "2001:db8:f::2", "192.0.2.2"),
            from("10.1.3.6/32", "192.0.2.3", "192.0.2.3"),
        ]);
        l.disconnected(t0);
        // The restarted gobgpd knows nothing yet; the peer sends one back.
        assert!(l.snapshot(vec![], t0).is_empty());
        assert!(l
            .learn(vec![from("10.1.2.5/32", "192.0.2.2", "192.0.2.2")])
            .is_empty());
        let c = l.end_of_rib("192.0.2.2", Family::Ipv4, t0);
        assert_eq!(c, vec![Change::Remove(n("10.1.2.6/32"))]);
        assert!(l.is_desired(&n("10.1.2.5/32")));
        assert!(l.is_desired(&n("fd00:1:2::6/128")), "another family");
        assert!(l.is_desired(&n("10.1.3.6/32")), "another peer");
        let mut c = l.rib_complete(Family::Ipv4, t0);
        c.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            c,
            vec![
                Change::Remove(n("10.1.3.6/32")),
                Change::Remove(n("10.1.9.9/32"))
            ]
        );
        assert!(l.has_stale(), "the IPv6 one is still waiting");
        assert_eq!(
            l.end_of_rib("192.0.2.2", Family::Ipv6, t0),
            vec![Change::Remove(n("fd00:1:2::6/128"))]
        );
        assert!(!l.has_stale());
    }

    #[test]
    fn a_peer_that_failed_hard_loses_every_route_at_once() {
        let mut l = learner();
        let mut other = path("10.1.3.1/32", "192.0.2.3", false);
        other.peer = Some("192.0.2.3".into());
        l.learn(vec![path("10.1.2.5/32", "192.0.2.2", false), other]);
        assert_eq!(l.installed_count(), 2);
        let c = l.drop_peer("192.0.2.2", Instant::now());
        assert_eq!(c, vec![Change::Remove(n("10.1.2.5/32"))]);
        assert!(l.is_desired(&n("10.1.3.1/32")));
        assert!(l.drop_peer("192.0.2.2", Instant::now()).is_empty());
    }

    #[test]
    fn adopted_routes_are_kept_without_a_gap() {
        let mut l = learner();
        let t0 = Instant::now();
        let r = Route {
            dst: n("10.1.2.5/32"),
            via: "192.0.2.2".parse().ok(),
            oif: Some(3),
            protocol: 73,
        };
        // Already in the kernel as the policy would have it: nothing to do.
        assert!(l.adopt(&[r.into()], t0).is_empty());
        assert!(l.is_desired(&r.dst));
        // Confirmed by gobgpd: no change at all.
        assert!(l
            .snapshot(vec![path("10.1.2.5/32", "192.0.2.2", false)], t0)
            .is_empty());
        assert!(l.expire(t0 + Duration::from_secs(60)).is_empty());
    }

    /// A restart with IPv6 routes in the kernel: the confirmed one stays
    /// without a gap, the one gobgpd no longer holds goes after the stale
    /// time, the one the policy refuses (link-local next hop) goes at once.
    #[test]
    fn adopted_ipv6_routes_are_kept_confirmed_or_expired() {
        let mut l = learner();
        let mut i = inputs();
        i.pools.push(n("fd00:1::/32"));
        i.parents[0].nets.push(n("2001:db8:f::/64"));
        i.connected.push(n("2001:db8:f::/64"));
        let _ = l.set_inputs(i);
        let t0 = Instant::now();
        let r = |dst: &str, via: &str| Route {
            dst: n(dst),
            via: via.parse().ok(),
            oif: Some(3),
            protocol: 73,
        };
        let kept = r("fd00:1:2::5/128", "2001:db8:f::2");
        let gone = r("fd00:1:2::6/128", "2001:db8:f::2");
        let refused = r("fd00:1:2::7/128", "fe80::2");
        assert_eq!(
            l.adopt(&[kept.into(), gone.into(), refused.into()], t0),
            vec![Change::Remove(refused.dst)]
        );
        assert!(l
            .snapshot(vec![path("fd00:1:2::5/128", "2001:db8:f::2", false)], t0)
            .is_empty());
        assert!(l.expire(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(
            l.expire(t0 + Duration::from_secs(11)),
            vec![Change::Remove(gone.dst)]
        );
        assert!(l.is_desired(&kept.dst));
    }

    #[test]
    fn adopted_routes_the_policy_refuses_are_removed() {
        let mut l = learner();
        // A route left by a run whose pools were wider.
        let r = Route {
            dst: n("172.30.0.0/24"),
            via: "192.0.2.2".parse().ok(),
            oif: Some(3),
            protocol: 73,
        };
        assert_eq!(
            l.adopt(&[r.into()], Instant::now()),
            vec![Change::Remove(r.dst)]
        );
    }
}
