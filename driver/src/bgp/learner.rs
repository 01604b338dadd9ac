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
//!
//! Bounded under a flood: a path refused for its prefix alone (outside every
//! pool, reserved, default route) leaves no state here, only a count per
//! reason and a fixed-size sample of the latest refusals; logging is one line
//! for the first refusal per reason, then at most one summary line per reason
//! every [`LOG_WINDOW`]. Because such paths are forgotten, widening the pools
//! sets [`Learner::needs_relist`]: the session loop then reads gobgpd's RIB
//! again and hands it to [`Learner::relisted`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use super::gobgp::LearnedPath;
use super::policy::{decide, PolicyInputs, Reject};
use crate::kernel::Route;
use crate::metrics::{Metrics, RejectedSample};
use crate::rib::installer::Change;

/// Refused prefixes kept as a sample for `status`.
pub const SAMPLE: usize = 1000;
/// After the first line per reason, at most one summary line per reason per window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    next_hop: Option<IpAddr>,
    peer: String,
    /// Unconfirmed since then; removed at this instant unless learned again.
    stale_until: Option<Instant>,
}

/// Rate limit for rejection logs, per reason.
#[derive(Debug, Default)]
struct RejectLog {
    reasons: HashMap<Reject, ReasonLog>,
    /// Lines emitted so far (the tests hold the budget with it).
    lines: u64,
}

#[derive(Debug)]
struct ReasonLog {
    suppressed: u64,
    window_start: Instant,
}

impl RejectLog {
    fn reject(
        &mut self,
        reason: Reject,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        peer: &str,
        now: Instant,
    ) {
        match self.reasons.get_mut(&reason) {
            None => {
                warn!(prefix = %prefix, next_hop = ?next_hop, peer = %peer, reason = reason.label(), "rejected a learned route: {} (further rejections for this reason are summarised every {} s)", reason.explain(), LOG_WINDOW.as_secs());
                self.lines += 1;
                self.reasons.insert(
                    reason,
                    ReasonLog {
                        suppressed: 0,
                        window_start: now,
                    },
                );
            }
            Some(r) => r.suppressed += 1,
        }
        self.flush(now);
    }

    /// Emits the summaries whose window is over.
    fn flush(&mut self, now: Instant) {
        for (reason, r) in self.reasons.iter_mut() {
            if r.suppressed > 0 && now.duration_since(r.window_start) >= LOG_WINDOW {
                let secs = now.duration_since(r.window_start).as_secs();
                warn!(
                    reason = reason.label(),
                    count = r.suppressed,
                    "{} more paths rejected as {} in the last {} s",
                    r.suppressed,
                    reason.label(),
                    secs
                );
                self.lines += 1;
                r.suppressed = 0;
                r.window_start = now;
            }
        }
    }
}

pub struct Learner {
    rib: HashMap<IpNet, Entry>,
    desired: HashMap<IpNet, Route>,
    /// Why a prefix held in `rib` is not installed (never for dropped reasons).
    rejected: HashMap<IpNet, Reject>,
    /// The inputs as given by the session loop.
    external: PolicyInputs,
    /// `external` plus the next hops and peers of the learned paths.
    inputs: PolicyInputs,
    /// Next hops and peers of the paths in `rib`, with their use counts.
    next_hops: HashMap<IpAddr, usize>,
    peers: HashMap<IpAddr, usize>,
    protocol: u8,
    max_learned: usize,
    stale_time: Duration,
    /// Paths dropped (no state kept) since gobgpd's RIB was last read.
    dropped_since_list: bool,
    relist: bool,
    log: RejectLog,
    /// Counts not yet pushed to the metrics.
    pending_counts: HashMap<&'static str, u64>,
    sample: VecDeque<(IpNet, Reject)>,
    sample_new: usize,
    metrics: Arc<Metrics>,
    /// Always take the full pass of [`Learner::set_inputs`] (the tests
    /// compare the incremental one with it).
    full_only: bool,
}

/// Every prefix that contains `addr`, one per length (33 for IPv4, 129 for IPv6).
fn prefixes_containing(addr: IpAddr) -> impl Iterator<Item = IpNet> {
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (0..=max).filter_map(move |len| IpNet::new(addr, len).ok().map(|n| n.trunc()))
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
            external: PolicyInputs::default(),
            inputs: PolicyInputs::default(),
            next_hops: HashMap::new(),
            peers: HashMap::new(),
            protocol,
            max_learned,
            stale_time,
            dropped_since_list: false,
            relist: false,
            log: RejectLog::default(),
            pending_counts: HashMap::new(),
            sample: VecDeque::new(),
            sample_new: 0,
            metrics,
            full_only: false,
        }
    }

    pub fn installed_count(&self) -> usize {
        self.desired.len()
    }

    pub fn is_desired(&self, prefix: &IpNet) -> bool {
        self.desired.contains_key(prefix)
    }

    /// Sizes of the per-prefix maps (rib, desired, rejected, sample): what a
    /// flood must not grow.
    pub fn state_sizes(&self) -> [usize; 4] {
        [
            self.rib.len(),
            self.desired.len(),
            self.rejected.len(),
            self.sample.len(),
        ]
    }

    /// Log lines emitted about rejections so far.
    pub fn reject_log_lines(&self) -> u64 {
        self.log.lines
    }

    /// True when the pools widened after paths were dropped without state:
    /// gobgpd's RIB must be read again (list its best paths) and handed to
    /// [`Learner::relisted`].
    pub fn needs_relist(&self) -> bool {
        self.relist
    }

    /// gobgpd's best paths, read again because [`Learner::needs_relist`] said
    /// so. Unlike [`Learner::snapshot`] nothing becomes stale, and paths
    /// refused again are not counted again.
    pub fn relisted(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        self.relist = false;
        self.dropped_since_list = false;
        let out = self.learn_inner(paths.into_iter().filter(|p| !p.withdraw), now, false);
        self.publish();
        out
    }

    /// Routes of a previous run found in the kernel: kept, unconfirmed, until
    /// gobgpd confirms them or the stale time runs out.
    pub fn adopt(&mut self, routes: &[Route], now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        for r in routes {
            self.insert_rib(
                r.dst,
                Entry {
                    next_hop: r.via,
                    peer: "kernel (previous run)".into(),
                    stale_until: Some(now + self.stale_time),
                },
            );
        }
        self.refresh_dynamic_inputs(&mut out, now);
        for r in routes {
            // It is in the kernel: if the policy now refuses it, it must be removed.
            self.desired.insert(r.dst, *r);
            self.evaluate(r.dst, &mut out, now, true);
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
        self.learn_at(paths, Instant::now())
    }

    /// [`Learner::learn`] at a given instant (for the log windows).
    pub fn learn_at(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        let out = self.learn_inner(paths.into_iter(), now, true);
        self.publish();
        out
    }

    fn learn_inner(
        &mut self,
        paths: impl Iterator<Item = LearnedPath>,
        now: Instant,
        count: bool,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for p in paths {
            let Some(peer) = p.peer.clone() else {
                // Originated on this host's gobgpd (ours or the operator's): nothing to install.
                continue;
            };
            if p.withdraw {
                if self.remove_rib(&p.prefix).is_some() {
                    self.rejected.remove(&p.prefix);
                    touched.push(p.prefix);
                }
                continue;
            }
            if let Err(reason) = prefix_only(&p.prefix, &self.inputs) {
                // No state for it: count, sample, log within the budget.
                self.dropped_since_list = true;
                if self.remove_rib(&p.prefix).is_some() {
                    touched.push(p.prefix);
                }
                if count {
                    self.note_reject(reason, &p.prefix, p.next_hop, &peer, now);
                }
                continue;
            }
            self.insert_rib(
                p.prefix,
                Entry {
                    next_hop: p.next_hop,
                    peer,
                    stale_until: None,
                },
            );
            touched.push(p.prefix);
        }
        // Next hops and peers first: a prefix over one of them is refused.
        self.refresh_dynamic_inputs(&mut out, now);
        for p in touched {
            self.evaluate(p, &mut out, now, count);
        }
        self.readmit(&mut out, now);
        self.log.flush(now);
        out
    }

    fn insert_rib(&mut self, prefix: IpNet, e: Entry) {
        let (nh, peer) = (e.next_hop, e.peer.parse::<IpAddr>().ok());
        if let Some(old) = self.rib.insert(prefix, e) {
            self.forget_addrs(&old);
        }
        if let Some(nh) = nh {
            *self.next_hops.entry(nh).or_default() += 1;
        }
        if let Some(p) = peer {
            *self.peers.entry(p).or_default() += 1;
        }
    }

    fn remove_rib(&mut self, prefix: &IpNet) -> Option<Entry> {
        let e = self.rib.remove(prefix)?;
        self.forget_addrs(&e);
        Some(e)
    }

    fn forget_addrs(&mut self, e: &Entry) {
        let dec = |m: &mut HashMap<IpAddr, usize>, a: IpAddr| {
            if let Some(n) = m.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&a);
                }
            }
        };
        if let Some(nh) = e.next_hop {
            dec(&mut self.next_hops, nh);
        }
        if let Ok(p) = e.peer.parse::<IpAddr>() {
            dec(&mut self.peers, p);
        }
    }

    /// Folds the learned next hops and peers into the policy inputs; when
    /// they changed, re-decides the prefixes that a change can affect.
    fn refresh_dynamic_inputs(&mut self, out: &mut Vec<Change>, now: Instant) {
        let mut next_hops = self.external.next_hops.clone();
        next_hops.extend(self.next_hops.keys().copied());
        let mut neighbors = self.external.neighbors.clone();
        neighbors.extend(self.peers.keys().copied());
        if next_hops == self.inputs.next_hops && neighbors == self.inputs.neighbors {
            return;
        }
        let added: Vec<IpAddr> = next_hops
            .difference(&self.inputs.next_hops)
            .chain(neighbors.difference(&self.inputs.neighbors))
            .copied()
            .collect();
        self.inputs.next_hops = next_hops;
        self.inputs.neighbors = neighbors;
        let mut again: Vec<IpNet> = self
            .rejected
            .iter()
            .filter(|(_, r)| matches!(r, Reject::CoversNextHop | Reject::CoversNeighbor))
            .map(|(p, _)| *p)
            .collect();
        if !added.is_empty() {
            again.extend(
                self.desired
                    .keys()
                    .filter(|p| added.iter().any(|a| p.contains(a)))
                    .copied(),
            );
        }
        again.sort();
        again.dedup();
        for p in again {
            self.evaluate(p, out, now, true);
        }
    }

    /// Routes refused by `--max-learned` get in when others leave.
    fn readmit(&mut self, out: &mut Vec<Change>, now: Instant) {
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
            self.evaluate(p, out, now, true);
        }
    }

    /// A complete view of gobgpd's best paths (taken right after connecting):
    /// what it holds is confirmed, everything else becomes stale.
    pub fn snapshot(&mut self, paths: Vec<LearnedPath>, now: Instant) -> Vec<Change> {
        let deadline = now + self.stale_time;
        for e in self.rib.values_mut() {
            e.stale_until.get_or_insert(deadline);
        }
        self.relist = false;
        self.dropped_since_list = false;
        let out = self.learn_at(paths.into_iter().filter(|p| !p.withdraw).collect(), now);
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

    /// Removes the routes whose stale time is over (and flushes due log summaries).
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        self.log.flush(now);
        let expired: Vec<IpNet> = self
            .rib
            .iter()
            .filter(|(_, e)| e.stale_until.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in &expired {
            self.remove_rib(p);
            self.rejected.remove(p);
            info!(prefix = %p, "stale route not learned again: removing");
        }
        if !expired.is_empty() {
            self.refresh_dynamic_inputs(&mut out, now);
        }
        for p in expired {
            self.evaluate(p, &mut out, now, true);
        }
        self.readmit(&mut out, now);
        if !out.is_empty() {
            self.publish();
        }
        out
    }

    /// The next instant at which a stale route expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.rib.values().filter_map(|e| e.stale_until).min()
    }

    /// New policy inputs. When only the local endpoints changed (a
    /// container came or went), only the learned prefixes containing an
    /// address that came or went are decided again (for each address, one
    /// lookup per prefix length: at most 33 for IPv4); anything else (pools,
    /// parents, neighbours, next hops, gateways, addresses) re-decides all.
    pub fn set_inputs(&mut self, inputs: PolicyInputs) -> Vec<Change> {
        if inputs == self.external {
            return Vec::new();
        }
        if !self.full_only && inputs.same_but_endpoints(&self.external) {
            return self.set_local_endpoints(inputs.local_endpoints);
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
        // The given inputs plus what the learned paths add.
        self.inputs = self.external.clone();
        self.inputs.next_hops.extend(self.next_hops.keys().copied());
        self.inputs.neighbors.extend(self.peers.keys().copied());
        let mut out = Vec::new();
        // Withdrawals first, so freed room under --max-learned goes to the rest.
        let mut prefixes: Vec<IpNet> = self.rib.keys().copied().collect();
        prefixes.sort_by_key(|p| !self.desired.contains_key(p));
        for p in prefixes {
            self.evaluate(p, &mut out, now, true);
        }
        self.publish();
        out
    }

    /// The incremental half of [`Learner::set_inputs`].
    fn set_local_endpoints(&mut self, endpoints: BTreeSet<IpAddr>) -> Vec<Change> {
        let now = Instant::now();
        let changed: Vec<IpAddr> = endpoints
            .symmetric_difference(&self.external.local_endpoints)
            .copied()
            .collect();
        for a in &changed {
            if endpoints.contains(a) {
                self.inputs.local_endpoints.insert(*a);
            } else {
                self.inputs.local_endpoints.remove(a);
            }
        }
        self.external.local_endpoints = endpoints;
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
        if out.iter().any(|c| matches!(c, Change::Remove(_))) {
            self.readmit(&mut out, now);
        }
        self.publish();
        out
    }

    fn note_reject(
        &mut self,
        reason: Reject,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        peer: &str,
        now: Instant,
    ) {
        *self.pending_counts.entry(reason.label()).or_default() += 1;
        if self.sample.len() == SAMPLE {
            self.sample.pop_front();
        }
        self.sample.push_back((*prefix, reason));
        self.sample_new += 1;
        self.log.reject(reason, prefix, next_hop, peer, now);
    }

    fn evaluate(&mut self, prefix: IpNet, out: &mut Vec<Change>, now: Instant, count: bool) {
        let Some(entry) = self.rib.get(&prefix) else {
            if self.desired.remove(&prefix).is_some() {
                out.push(Change::Remove(prefix));
            }
            return;
        };
        let (next_hop, peer) = (entry.next_hop, entry.peer.clone());
        let mut verdict = decide(&prefix, next_hop, &self.inputs);
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
                    via: next_hop,
                    oif: Some(oif),
                    protocol: self.protocol,
                };
                if self.desired.get(&prefix) != Some(&route) {
                    self.desired.insert(prefix, route);
                    out.push(Change::Set(route));
                }
            }
            Err(reason) => {
                if reason.is_dropped() {
                    // The pools narrowed (or an adopted route): forget it.
                    self.remove_rib(&prefix);
                    self.rejected.remove(&prefix);
                    self.dropped_since_list = true;
                    if count {
                        self.note_reject(reason, &prefix, next_hop, &peer, now);
                    }
                } else if self.rejected.get(&prefix) != Some(&reason) {
                    self.rejected.insert(prefix, reason);
                    if count {
                        self.note_reject(reason, &prefix, next_hop, &peer, now);
                    }
                }
                if self.desired.remove(&prefix).is_some() {
                    out.push(Change::Remove(prefix));
                }
            }
        }
    }

    fn publish(&mut self) {
        let learned = self.rib.len();
        let stale = self
            .rib
            .values()
            .filter(|e| e.stale_until.is_some())
            .count();
        let counts: Vec<(&'static str, u64)> = self.pending_counts.drain().collect();
        let new: Vec<RejectedSample> = self
            .sample
            .iter()
            .skip(self.sample.len() - self.sample_new.min(self.sample.len()))
            .map(|(p, r)| RejectedSample {
                prefix: p.to_string(),
                reason: r.label(),
            })
            .collect();
        self.sample_new = 0;
        self.metrics.bgp(|b| {
            b.learned = learned;
            b.stale = stale;
            for (label, n) in counts {
                *b.rejected.entry(label.to_string()).or_default() += n;
            }
            for s in new {
                if b.recent_rejected.len() == SAMPLE {
                    b.recent_rejected.pop_front();
                }
                b.recent_rejected.push_back(s);
            }
        });
    }
}

/// The prefix-only part of the policy, checked before any state is kept.
fn prefix_only(prefix: &IpNet, inputs: &PolicyInputs) -> Result<(), Reject> {
    match decide(prefix, None, inputs) {
        Err(r) if r.is_dropped() => Err(r),
        _ => Ok(()),
    }
}

/// The learner behind its lock; a panic elsewhere does not poison it for good.
pub fn lock_learner(learner: &Mutex<Learner>) -> MutexGuard<'_, Learner> {
    learner.lock().unwrap_or_else(|p| p.into_inner())
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

    /// How many paths the learner refused for `why`, if it counted any.
    fn rejected(l: &Learner, why: &str) -> Option<u64> {
        l.metrics.bgp_snapshot().rejected.get(why).copied()
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

    #[test]
    fn the_log_budget_is_one_line_then_one_summary_per_reason_per_window() {
        let mut l = learner();
        let t0 = Instant::now();
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            l.learn_at(
                vec![
                    path("172.16.0.1/32", "192.0.2.2", false),
                    path("0.0.0.0/0", "192.0.2.2", false),
                    path("127.0.0.1/32", "192.0.2.2", false),
                ],
                now,
            );
            l.expire(now);
        }
        // 3 reasons: a first line each, then a summary every 10 s over 59 s.
        let lines = l.reject_log_lines();
        assert!(lines <= 3 + 3 * 6, "{lines} log lines");
        assert!(lines >= 3 + 3 * 5, "{lines} log lines");
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
            l.adopt(&[kept, gone, refused], t0),
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
        assert_eq!(l.adopt(&[r], Instant::now()), vec![Change::Remove(r.dst)]);
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
                let mut inc = Learner::new(73, 10_000, Duration::from_secs(10), metrics.clone());
                let mut full = Learner::new(73, 10_000, Duration::from_secs(10), metrics);
                full.full_only = true;
                let with = |e: &BTreeSet<IpAddr>| PolicyInputs { local_endpoints: e.clone(), ..base() };
                let mut steps = steps;
                steps.insert(0, Step::Learn(rib));
                steps.insert(0, Step::Endpoints(first));
                for (i, step) in steps.into_iter().enumerate() {
                    let (a, b) = match step {
                        Step::Endpoints(e) => (inc.set_inputs(with(&e)), full.set_inputs(with(&e))),
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
                100,
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
                local_endpoints: [ep].into(),
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
