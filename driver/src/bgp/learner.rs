//! The learner: gobgpd's best paths in, kernel route changes out.
//!
//! In: decoded best paths (from the initial snapshot and the WatchEvent
//! stream), policy inputs when the host's networks change, connection loss,
//! and the routes a previous run left in the kernel. Out: [`Change`]s for the
//! installer. It keeps the learned RIB, so a change of policy inputs (a new
//! network, a new pool) re-decides every prefix; it keeps routes that gobgpd
//! can no longer confirm (gobgpd gone, or the driver just restarted) for the
//! stale time before removing them, like BGP graceful restart. Pure state:
//! time is passed in, so the tests drive it directly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use super::gobgp::LearnedPath;
use super::installer::Change;
use super::policy::{decide, PolicyInputs, Reject};
use crate::kernel::Route;
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    next_hop: Option<IpAddr>,
    peer: String,
    /// Unconfirmed since then; removed at this instant unless learned again.
    stale_until: Option<Instant>,
}

pub struct Learner {
    rib: HashMap<IpNet, Entry>,
    desired: HashMap<IpNet, Route>,
    rejected: HashMap<IpNet, Reject>,
    inputs: PolicyInputs,
    protocol: u8,
    max_learned: usize,
    stale_time: Duration,
    metrics: Arc<Metrics>,
}

impl Learner {
    pub fn new(
        protocol: u8,
        max_learned: usize,
        stale_time: Duration,
        metrics: Arc<Metrics>,
    ) -> Learner {
        Learner {
            rib: HashMap::new(),
            desired: HashMap::new(),
            rejected: HashMap::new(),
            inputs: PolicyInputs::default(),
            protocol,
            max_learned,
            stale_time,
            metrics,
        }
    }

    pub fn installed_count(&self) -> usize {
        self.desired.len()
    }

    pub fn is_desired(&self, prefix: &IpNet) -> bool {
        self.desired.contains_key(prefix)
    }

    /// Routes of a previous run found in the kernel: kept, unconfirmed, until
    /// gobgpd confirms them or the stale time runs out.
    pub fn adopt(&mut self, routes: &[Route], now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        for r in routes {
            self.rib.insert(
                r.dst,
                Entry {
                    next_hop: r.via,
                    peer: "kernel (previous run)".into(),
                    stale_until: Some(now + self.stale_time),
                },
            );
            // It is in the kernel: if the policy now refuses it, it must be removed.
            self.desired.insert(r.dst, *r);
            self.evaluate(r.dst, &mut out);
        }
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

    /// Paths from the WatchEvent stream.
    pub fn learn(&mut self, paths: Vec<LearnedPath>) -> Vec<Change> {
        let mut out = Vec::new();
        for p in paths {
            let Some(peer) = p.peer.clone() else {
                // Originated on this host's gobgpd (ours or the operator's): nothing to install.
                continue;
            };
            if p.withdraw {
                if self.rib.remove(&p.prefix).is_some() {
                    self.rejected.remove(&p.prefix);
                    self.evaluate(p.prefix, &mut out);
                }
                continue;
            }
            self.rib.insert(
                p.prefix,
                Entry {
                    next_hop: p.next_hop,
                    peer,
                    stale_until: None,
                },
            );
            self.evaluate(p.prefix, &mut out);
        }
        self.readmit(&mut out);
        self.publish();
        out
    }

    /// Routes refused by `--max-learned` get in when others leave.
    fn readmit(&mut self, out: &mut Vec<Change>) {
        if self.desired.len() >= self.max_learned {
            return;
        }
        let mut waiting: Vec<IpNet> = self
            .rejected
            .iter()
            .filter(|(_, r)| **r == Reject::MaxLearned)
            .map(|(p, _)| *p)
            .collect();
        waiting.sort();
        for p in waiting {
            if self.desired.len() >= self.max_learned {
                break;
            }
            self.evaluate(p, out);
        }
    }

    /// A complete view of gobgpd's best paths (taken right after connecting):
    /// what it holds is confirmed, everything else becomes stale.
    pub fn snapshot(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        let deadline = now + self.stale_time;
        for e in self.rib.values_mut() {
            e.stale_until.get_or_insert(deadline);
        }
        let out = self.learn(paths.into_iter().filter(|p| !p.withdraw).collect());
        self.publish();
        out
    }

    /// gobgpd went away: keep every route for the stale time.
    pub fn disconnected(&mut self, now: Instant) {
        let deadline = now + self.stale_time;
        for e in self.rib.values_mut() {
            e.stale_until.get_or_insert(deadline);
        }
        self.publish();
    }

    /// Removes the routes whose stale time is over.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let expired: Vec<IpNet> = self
            .rib
            .iter()
            .filter(|(_, e)| e.stale_until.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in expired {
            self.rib.remove(&p);
            self.rejected.remove(&p);
            info!(prefix = %p, "stale route not learned again: removing");
            self.evaluate(p, &mut out);
        }
        self.readmit(&mut out);
        if !out.is_empty() {
            self.publish();
        }
        out
    }

    /// The next instant at which a stale route expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.rib.values().filter_map(|e| e.stale_until).min()
    }

    /// New policy inputs (networks changed, addresses changed): re-decide all.
    pub fn set_inputs(&mut self, inputs: PolicyInputs) -> Vec<Change> {
        if inputs == self.inputs {
            return Vec::new();
        }
        self.inputs = inputs;
        let mut out = Vec::new();
        // Withdrawals first, so freed room under --max-learned goes to the rest.
        let mut prefixes: Vec<IpNet> = self.rib.keys().copied().collect();
        prefixes.sort_by_key(|p| !self.desired.contains_key(p));
        for p in prefixes {
            self.evaluate(p, &mut out);
        }
        self.publish();
        out
    }

    fn evaluate(&mut self, prefix: IpNet, out: &mut Vec<Change>) {
        let Some(entry) = self.rib.get(&prefix) else {
            if self.desired.remove(&prefix).is_some() {
                out.push(Change::Remove(prefix));
            }
            return;
        };
        let mut verdict = decide(&prefix, entry.next_hop, &self.inputs);
        if verdict.is_ok()
            && !self.desired.contains_key(&prefix)
            && self.desired.len() >= self.max_learned
        {
            verdict = Err(Reject::MaxLearned);
        }
        match verdict {
            Ok(oif) => {
                self.rejected.remove(&prefix);
                let route = Route {
                    dst: prefix,
                    via: entry.next_hop,
                    oif: Some(oif),
                    protocol: self.protocol,
                };
                if self.desired.get(&prefix) != Some(&route) {
                    self.desired.insert(prefix, route);
                    out.push(Change::Set(route));
                }
            }
            Err(reason) => {
                if self.rejected.get(&prefix) != Some(&reason) {
                    warn!(prefix = %prefix, next_hop = ?entry.next_hop, peer = %entry.peer, reason = reason.label(), "rejected a learned route: {}", reason.explain());
                    self.rejected.insert(prefix, reason);
                    self.metrics.bgp(|b| {
                        *b.rejected.entry(reason.label().to_string()).or_default() += 1;
                    });
                }
                if self.desired.remove(&prefix).is_some() {
                    out.push(Change::Remove(prefix));
                }
            }
        }
    }

    fn publish(&self) {
        let learned = self.rib.len();
        let stale = self
            .rib
            .values()
            .filter(|e| e.stale_until.is_some())
            .count();
        self.metrics.bgp(|b| {
            b.learned = learned;
            b.stale = stale;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::policy::ParentInfo;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn inputs() -> PolicyInputs {
        PolicyInputs {
            pools: vec![n("10.1.0.0/16")],
            network_subnets: vec![n("10.1.1.0/24")],
            connected: vec![n("192.0.2.0/24")],
            own_addresses: ["192.0.2.1".parse().unwrap()].into(),
            parents: vec![ParentInfo {
                name: "eth1".into(),
                index: 3,
                nets: vec![n("192.0.2.0/24")],
            }],
            ..PolicyInputs::default()
        }
    }

    fn path(prefix: &str, nh: &str, withdraw: bool) -> LearnedPath {
        LearnedPath {
            prefix: n(prefix),
            next_hop: nh.parse().ok(),
            withdraw,
            peer: Some("192.0.2.2".into()),
            as_path: vec![],
        }
    }

    fn learner() -> Learner {
        let mut l = Learner::new(73, 2, Duration::from_secs(10), Arc::new(Metrics::default()));
        assert!(l.set_inputs(inputs()).is_empty());
        l
    }

    #[test]
    fn learns_replaces_and_withdraws() {
        let mut l = learner();
        let c = l.learn(vec![path("10.1.2.5/32", "192.0.2.2", false)]);
        assert!(
            matches!(&c[..], [Change::Set(r)] if r.via == "192.0.2.2".parse().ok() && r.oif == Some(3) && r.protocol == 73)
        );
        // Same path again: nothing to do.
        assert!(l
            .learn(vec![path("10.1.2.5/32", "192.0.2.2", false)])
            .is_empty());
        // New next hop replaces.
        let c = l.learn(vec![path("10.1.2.5/32", "192.0.2.3", false)]);
        assert!(matches!(&c[..], [Change::Set(r)] if r.via == "192.0.2.3".parse().ok()));
        let c = l.learn(vec![path("10.1.2.5/32", "", true)]);
        assert_eq!(c, vec![Change::Remove(n("10.1.2.5/32"))]);
    }

    #[test]
    fn rejected_routes_are_counted_once_and_never_installed() {
        let mut l = learner();
        assert!(l
            .learn(vec![path("0.0.0.0/0", "192.0.2.2", false)])
            .is_empty());
        assert!(l
            .learn(vec![path("0.0.0.0/0", "192.0.2.2", false)])
            .is_empty());
        assert_eq!(
            l.metrics.bgp_snapshot().rejected.get("default-route"),
            Some(&1)
        );
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
        assert_eq!(
            l.metrics.bgp_snapshot().rejected.get("max-learned"),
            Some(&1)
        );
        // A withdrawal frees room: the waiting route gets in at once.
        let c = l.learn(vec![path("10.1.2.1/32", "", true)]);
        assert_eq!(
            c,
            vec![
                Change::Remove(n("10.1.2.1/32")),
                Change::Set(Route {
                    dst: n("10.1.2.3/32"),
                    via: "192.0.2.2".parse().ok(),
                    oif: Some(3),
                    protocol: 73
                })
            ]
        );
        assert_eq!(l.installed_count(), 2);
    }

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
        assert!(l.adopt(&[r], t0).is_empty());
        assert!(l.is_desired(&r.dst));
        // Confirmed by gobgpd: no change at all.
        assert!(l
            .snapshot(vec![path("10.1.2.5/32", "192.0.2.2", false)], t0)
            .is_empty());
        assert!(l.expire(t0 + Duration::from_secs(60)).is_empty());
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
        assert_eq!(l.adopt(&[r], Instant::now()), vec![Change::Remove(r.dst)]);
    }

    #[test]
    fn a_new_network_admits_routes_already_learned() {
        let mut l = learner();
        assert!(l
            .learn(vec![path("172.20.0.9/32", "192.0.2.2", false)])
            .is_empty());
        let mut i = inputs();
        i.pools.push(n("172.20.0.0/24"));
        let c = l.set_inputs(i);
        assert_eq!(c.len(), 1);
    }
}
