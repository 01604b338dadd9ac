//! A prefix's kept set as the learner stores it: its equal paths (next
//! hop and peer each) and its stale deadline. Data only.
//!
//! In: nothing of the learner (a peer's id from [`super::peers`]). Out: the
//! types [`super::rib`], [`super::multipath`] and [`super::stale`] fill.

use std::net::IpAddr;
use std::time::Instant;

use super::peers::PeerId;

/// One path of a prefix's equal set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Path {
    pub(super) next_hop: Option<IpAddr>,
    pub(super) peer: PeerId,
}

/// A prefix's equal best paths (one without multipath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) paths: Vec<Path>,
    /// Unconfirmed since then; removed at this instant unless learned again.
    pub(super) stale_until: Option<Instant>,
}
