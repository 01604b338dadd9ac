//! The learner: gobgpd's best paths in, kernel route changes out.
//!
//! In: decoded best paths (from the initial snapshot and the WatchEvent
//! stream), policy inputs when the host's networks change, connection loss,
//! and the routes a previous run left in the kernel. Out: [`Change`]s for the
//! installer. Per prefix it keeps the *set* of equal best paths gobgpd holds
//! (multipath: an anycast prefix from two hosts, two ToRs), never a path
//! gobgpd does not rank best; the prefix's route has the next hop of every
//! path of the set the import policy accepts (at most [`MAX_PATHS`]). A
//! call to [`Learner::learn`] gives, for each prefix it names, the prefix's
//! whole set (its paths after its last withdrawal in the call; nothing
//! after a withdrawal: no best path left). It keeps the learned RIB, so a change of policy inputs (a new
//! network, a new pool) re-decides every prefix; it keeps routes that gobgpd
//! can no longer confirm (gobgpd gone, or the driver just restarted) for the
//! stale time before removing them, like BGP graceful restart. Pure state:
//! time is passed in, so the tests drive it directly; it runs on a thread of
//! its own ([`super::learning`]).
//!
//! Bounded under a flood, outside the pools and inside them:
//! - a path refused for its prefix alone (outside every pool, reserved,
//!   default route) leaves no state here, only a count per reason and a
//!   fixed-size sample of the latest refusals;
//! - a path inside the pools is kept (installed, or refused and remembered:
//!   waiting for room under `--max-learned`, next hop off-link, ...) only
//!   while the RIB holds fewer than [`Limits::rib`] paths, and fewer than
//!   [`Limits::per_peer`] from its peer; past that it is dropped like the
//!   above (`rib-full`, `peer-rib-full`), and read again from gobgpd once
//!   room frees ([`Learner::needs_relist`]);
//! - logging is one line for the first refusal per reason, then at most one
//!   summary line per reason every [`LOG_WINDOW`].
//!
//! No step costs more than the paths it touches: next hops, peers, stale
//! deadlines and the prefixes waiting for room are kept in indexes updated
//! path by path, and a changed address re-decides only the prefixes that
//! contain it (one lookup per prefix length). Only a change of the policy's
//! other inputs (pools, parents, host addresses) re-decides everything: the
//! full pass. A next hop counts for `covers-next-hop` only while it is the
//! next hop of an installed route.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use super::gobgp::{Family, LearnedPath};
use super::policy::{decide, PolicyInputs, Reject};
use crate::kernel::{MultiRoute, NextHop};
use crate::metrics::{Metrics, RejectedSample};
use crate::rib::installer::Change;

/// Refused prefixes kept as a sample for `status`.
pub const SAMPLE: usize = 1000;
/// After the first line per reason, at most one summary line per reason per window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// `--max-learned`'s default: routes installed at most.
pub const DEFAULT_MAX_LEARNED: usize = 200_000;
/// `--max-rib`'s default: learned paths kept at most (installed, or refused
/// and remembered), all peers together.
pub const DEFAULT_MAX_RIB: usize = 250_000;
/// Next hops of one route at most (the accepted paths of an equal set,
/// lowest addresses first): ours, not gobgpd's.
pub const MAX_PATHS: usize = 8;

/// How much the learner keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Routes installed at most (`--max-learned`).
    pub installed: usize,
    /// Paths kept at most, all peers together (`--max-rib`).
    pub rib: usize,
    /// Paths kept at most from one peer (`--max-rib-per-peer`).
    pub per_peer: usize,
}

impl Limits {
    /// `installed` routes at most, and the default room for the rest.
    pub fn installing(installed: usize) -> Limits {
        let rib = installed.saturating_add(DEFAULT_MAX_RIB - DEFAULT_MAX_LEARNED);
        Limits {
            installed,
            rib,
            per_peer: rib,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            installed: DEFAULT_MAX_LEARNED,
            rib: DEFAULT_MAX_RIB,
            per_peer: DEFAULT_MAX_RIB,
        }
    }
}

/// A peer's number in [`Peers`].
type PeerId = u32;

/// One path of a prefix's equal set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    next_hop: Option<IpAddr>,
    peer: PeerId,
}

/// A prefix's equal best paths (one without multipath).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    paths: Vec<Path>,
    /// Unconfirmed since then; removed at this instant unless learned again.
    stale_until: Option<Instant>,
}

/// The peers the kept paths came from, each named once.
#[derive(Debug, Default)]
struct Peers {
    ids: HashMap<String, PeerId>,
    slots: HashMap<PeerId, PeerSlot>,
    next: PeerId,
}

#[derive(Debug)]
struct PeerSlot {
    name: String,
    addr: Option<IpAddr>,
    paths: usize,
}

impl Peers {
    /// The id of `name`, made if new (with no paths yet).
    fn id(&mut self, name: &str) -> PeerId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.ids.insert(name.to_string(), id);
        self.slots.insert(
            id,
            PeerSlot {
                name: name.to_string(),
                addr: name.parse().ok(),
                paths: 0,
            },
        );
        id
    }

    fn paths(&self, name: &str) -> usize {
        self.ids
            .get(name)
            .and_then(|id| self.slots.get(id))
            .map_or(0, |s| s.paths)
    }

    fn name(&self, id: PeerId) -> &str {
        self.slots.get(&id).map_or("?", |s| s.name.as_str())
    }

    /// One more path from `id`; its address if that was its first.
    fn add(&mut self, id: PeerId) -> Option<IpAddr> {
        let s = self.slots.get_mut(&id)?;
        s.paths += 1;
        if s.paths == 1 {
            s.addr
        } else {
            None
        }
    }

    /// One path fewer from `id`; its address if that was its last (the
    /// slot goes too).
    fn remove(&mut self, id: PeerId) -> Option<IpAddr> {
        let s = self.slots.get_mut(&id)?;
        s.paths = s.paths.saturating_sub(1);
        if s.paths > 0 {
            return None;
        }
        let s = self.slots.remove(&id)?;
        self.ids.remove(&s.name);
        s.addr
    }
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

/// Addresses in use as next hops or peers: how many paths (or installed
/// routes) use each, and which appeared or went since the last look.
#[derive(Debug, Default)]
struct InUse {
    count: HashMap<IpAddr, usize>,
    added: Vec<IpAddr>,
    removed: Vec<IpAddr>,
}

impl InUse {
    fn add(&mut self, a: IpAddr) {
        let n = self.count.entry(a).or_default();
        *n += 1;
        if *n == 1 {
            self.added.push(a);
        }
    }

    fn remove(&mut self, a: IpAddr) {
        if let Some(n) = self.count.get_mut(&a) {
            *n -= 1;
            if *n == 0 {
                self.count.remove(&a);
                self.removed.push(a);
            }
        }
    }
}

pub struct Learner {
    rib: HashMap<IpNet, Entry>,
    desired: HashMap<IpNet, MultiRoute>,
    /// Why a prefix held in `rib` is not installed (never for dropped reasons).
    rejected: HashMap<IpNet, Reject>,
    /// The prefixes of `rejected` refused by `--max-learned`, in the order
    /// they get in when room frees.
    waiting: BTreeSet<IpNet>,
    /// Stale deadlines of the paths in `rib`, earliest first.
    stale: BTreeSet<(Instant, IpNet)>,
    /// The inputs as given by the session loop.
    external: PolicyInputs,
    /// `external` plus the next hops of installed routes and the peers of
    /// the kept paths.
    inputs: PolicyInputs,
    /// Next hops of the installed routes (`desired`).
    next_hops: InUse,
    /// Addresses of the peers of the paths in `rib`.
    neighbors: InUse,
    peers: Peers,
    protocol: u8,
    limits: Limits,
    stale_time: Duration,
    /// Paths dropped (no state kept) as outside the pools since gobgpd's
    /// RIB was last read, and as over a limit.
    dropped_since_list: bool,
    dropped_full: bool,
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
    /// Prefixes decided so far (the tests check that a step costs only the
    /// paths it touches).
    decisions: u64,
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
        limits: Limits,
        stale_time: Duration,
        metrics: Arc<Metrics>,
    ) -> Learner {
        Learner {
            rib: HashMap::new(),
            desired: HashMap::new(),
            rejected: HashMap::new(),
            waiting: BTreeSet::new(),
            stale: BTreeSet::new(),
            external: PolicyInputs::default(),
            inputs: PolicyInputs::default(),
            next_hops: InUse::default(),
            neighbors: InUse::default(),
            peers: Peers::default(),
            protocol,
            limits,
            stale_time,
            dropped_since_list: false,
            dropped_full: false,
            relist: false,
            log: RejectLog::default(),
            pending_counts: HashMap::new(),
            sample: VecDeque::new(),
            sample_new: 0,
            metrics,
            full_only: false,
            decisions: 0,
        }
    }

    pub fn installed_count(&self) -> usize {
        self.desired.len()
    }

    pub fn is_desired(&self, prefix: &IpNet) -> bool {
        self.desired.contains_key(prefix)
    }

    /// The routes decided for the kernel (a restarted BGP side adopts them).
    pub fn desired_routes(&self) -> Vec<MultiRoute> {
        self.desired.values().cloned().collect()
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

    /// True when gobgpd's RIB must be read again (list its best paths) and
    /// handed to [`Learner::relisted`]: the pools widened after paths were
    /// dropped as outside them, or room freed after paths were dropped as
    /// over a limit.
    pub fn needs_relist(&self) -> bool {
        self.relist
    }

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

    fn insert_rib(&mut self, prefix: IpNet, e: Entry) {
        // The new paths' peers first: a peer whose only path is replaced
        // by its new one must not lose its slot (and name) in between.
        for p in &e.paths {
            if let Some(a) = self.peers.add(p.peer) {
                self.neighbors.add(a);
            }
        }
        if let Some(old) = self.rib.remove(&prefix) {
            self.forget(&prefix, &old);
        }
        if let Some(t) = e.stale_until {
            self.stale.insert((t, prefix));
        }
        self.rib.insert(prefix, e);
    }

    fn remove_rib(&mut self, prefix: &IpNet) -> Option<Entry> {
        let e = self.rib.remove(prefix)?;
        self.forget(prefix, &e);
        if self.dropped_full && self.rib.len() < self.limits.rib {
            // Room again for paths dropped as over a limit.
            self.relist = true;
        }
        Some(e)
    }

    /// Removes `peer`'s paths from `prefix`'s set (the prefix too when none
    /// is left).
    fn remove_paths_of(&mut self, prefix: &IpNet, peer: PeerId) {
        let Some(e) = self.rib.get(prefix) else {
            return;
        };
        let mut rest = e.clone();
        rest.paths.retain(|p| p.peer != peer);
        if rest.paths.is_empty() {
            self.remove_rib(prefix);
        } else if rest.paths.len() < e.paths.len() {
            self.insert_rib(*prefix, rest);
        }
    }

    fn forget(&mut self, prefix: &IpNet, e: &Entry) {
        if let Some(t) = e.stale_until {
            self.stale.remove(&(t, *prefix));
        }
        for p in &e.paths {
            if let Some(a) = self.peers.remove(p.peer) {
                self.neighbors.remove(a);
            }
        }
    }

    /// Marks the path to `prefix` unconfirmed until `until` (unless it is
    /// already, with an earlier deadline).
    fn make_stale(&mut self, prefix: IpNet, until: Instant) {
        if let Some(e) = self.rib.get_mut(&prefix) {
            if e.stale_until.is_none() {
                e.stale_until = Some(until);
                self.stale.insert((until, prefix));
            }
        }
    }

    /// Records the route decided for `prefix` (or none), keeping the next
    /// hops in use equal to those of the installed routes.
    fn set_desired(&mut self, prefix: IpNet, route: Option<MultiRoute>) -> Option<MultiRoute> {
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
    fn refresh_dynamic_inputs(&mut self, out: &mut Vec<Change>, now: Instant) {
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
    fn readmit(&mut self, out: &mut Vec<Change>, now: Instant) {
        while self.desired.len() < self.limits.installed {
            let Some(p) = self.waiting.pop_first() else {
                break;
            };
            self.evaluate(p, out, now, true);
            self.refresh_dynamic_inputs(out, now);
        }
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

    /// The prefixes whose route was learned from `peer`.
    pub fn prefixes_from(&self, peer: &str) -> Vec<IpNet> {
        let Some(id) = self.peers.ids.get(peer).copied() else {
            return Vec::new();
        };
        self.rib
            .iter()
            .filter(|(_, e)| e.paths.iter().any(|p| p.peer == id))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Whether any route is stale (unconfirmed since a restart).
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// The stale prefixes that pass `f` (read from the stale index).
    fn stale_where(&self, f: impl Fn(&IpNet) -> bool) -> Vec<IpNet> {
        self.stale
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| f(p))
            .collect()
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

    /// The next instant at which a stale route expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.stale.first().map(|(t, _)| *t)
    }

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

    /// The incremental half of [`Learner::set_inputs`].
    fn set_local_endpoints(
        &mut self,
        endpoints: BTreeSet<IpAddr>,
        via_host: BTreeSet<IpAddr>,
    ) -> Vec<Change> {
        let now = Instant::now();
        let changed: Vec<IpAddr> = endpoints
            .symmetric_difference(&self.external.local_endpoints)
            .chain(via_host.symmetric_difference(&self.external.endpoints_via_host))
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

    fn evaluate(&mut self, prefix: IpNet, out: &mut Vec<Change>, now: Instant, count: bool) {
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
                route.hops.truncate(MAX_PATHS);
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

    fn publish(&mut self) {
        let learned = self.rib.len();
        let stale = self.stale.len();
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

/// The prefix-only part of the policy, checked before any state is kept.
fn prefix_only(prefix: &IpNet, inputs: &PolicyInputs) -> Result<(), Reject> {
    match decide(prefix, None, inputs) {
        Err(r) if r.is_dropped() => Err(r),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::policy::ParentInfo;
    use crate::kernel::Route;

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

    fn from_peer(prefix: &str, nh: &str, withdraw: bool) -> LearnedPath {
        LearnedPath {
            peer: Some(nh.into()),
            ..path(prefix, nh, withdraw)
        }
    }

    fn hops_of(c: &[Change]) -> Vec<Vec<Option<IpAddr>>> {
        c.iter()
            .map(|c| match c {
                Change::Set(r) => r.hops.iter().map(|h| h.via).collect(),
                Change::Remove(_) => Vec::new(),
            })
            .collect()
    }

    fn ips(v: &[&str]) -> Vec<Option<IpAddr>> {
        v.iter().map(|a| a.parse().ok()).collect()
    }

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

    /// How many paths the learner refused for `why`, if it counted any.
    fn rejected(l: &Learner, why: &str) -> Option<u64> {
        l.metrics.bgp_snapshot().rejected.get(why).copied()
    }

    fn learner() -> Learner {
        let mut l = Learner::new(
            73,
            Limits::installing(2),
            Duration::from_secs(10),
            Arc::new(Metrics::default()),
        );
        assert!(l.set_inputs(inputs()).is_empty());
        l
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

    /// A peer floods an accepted IPv6 /64 pool with /128s (next hop fine):
    /// at most --max-learned are installed, at most --max-rib kept; the rest
    /// are dropped without state, counted, and logged within the budget.
    #[test]
    fn an_ipv6_64_pool_admits_no_unbounded_128s() {
        let limits = Limits {
            installed: 1000,
            rib: 3000,
            per_peer: 3000,
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
                let with = |e: &BTreeSet<IpAddr>, i: usize| PolicyInputs { local_endpoints: e.clone(), endpoints_via_host: e.iter().filter(|a| matches!(a, IpAddr::V4(v) if (v.octets()[3] as usize + i) % 2 == 1)).copied().collect(), ..base() };
                let mut steps = steps;
                steps.insert(0, Step::Learn(rib));
                steps.insert(0, Step::Endpoints(first));
                for (i, step) in steps.into_iter().enumerate() {
                    let (a, b) = match step {
                        Step::Endpoints(e) => (inc.set_inputs(with(&e, i)), full.set_inputs(with(&e, i))),
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
                local_endpoints: [ep].into(),
                endpoints_via_host: [ep].into(),
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
