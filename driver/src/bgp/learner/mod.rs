//! The learner: gobgpd's best paths in, kernel route changes out.
//!
//! In: decoded best paths (from the initial snapshot and the WatchEvent
//! stream), policy inputs when the host's networks change, connection loss,
//! and the routes a previous run left in the kernel. Out: [`Change`](crate::rib::installer::Change)s for the
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
//!
//! Rooms, in the order a path goes through them:
//! - [`multipath`]: gobgpd's paths in, grouped into each prefix's equal
//!   set and kept under the RIB limits;
//! - [`rib`] (with [`peers`]): the kept sets, their peers and stale deadlines;
//! - [`verdict`]: the import policy over each kept set, out as changes;
//! - [`stale`]: connection loss, restarts, End-of-RIB and failed peers;
//! - [`report`]: refusal counts, samples and logs, out to the metrics.

mod entry;
mod in_use;
mod multipath;
mod peers;
mod reject_log;
mod report;
mod rib;
mod stale;
#[cfg(test)]
mod testkit;
mod verdict;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::policy::{PolicyInputs, Reject};
use crate::kernel::MultiRoute;
use crate::metrics::Metrics;

use entry::Entry;
use in_use::InUse;
use peers::Peers;
use reject_log::RejectLog;
pub use reject_log::{LOG_WINDOW, SAMPLE};

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
    /// Next hops one installed route gets at most (`--max-paths`).
    pub paths: usize,
}

impl Limits {
    /// `installed` routes at most, and the default room for the rest.
    pub fn installing(installed: usize) -> Limits {
        let rib = installed.saturating_add(DEFAULT_MAX_RIB - DEFAULT_MAX_LEARNED);
        Limits {
            installed,
            rib,
            per_peer: rib,
            paths: MAX_PATHS,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            installed: DEFAULT_MAX_LEARNED,
            rib: DEFAULT_MAX_RIB,
            per_peer: DEFAULT_MAX_RIB,
            paths: MAX_PATHS,
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
}
