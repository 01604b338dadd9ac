//! The learned RIB: each prefix's kept set of equal paths, with the peers
//! they came from and their stale deadlines.
//!
//! In: sets to keep or drop, from [`super::multipath`], [`super::stale`]
//! and [`super::verdict`]. Out: the set of a prefix, the prefixes of a peer,
//! the stale ones in deadline order; and, kept equal path by path, the
//! peers' addresses in use ([`super::verdict`] folds them into the policy
//! inputs) and whether gobgpd's RIB must be read again now that room freed.

use std::time::Instant;

use ipnet::IpNet;

pub(super) use super::entry::{Entry, Path};
use super::peers::PeerId;
use super::Learner;

impl Learner {
    pub(super) fn insert_rib(&mut self, prefix: IpNet, e: Entry) {
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

    pub(super) fn remove_rib(&mut self, prefix: &IpNet) -> Option<Entry> {
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
    pub(super) fn remove_paths_of(&mut self, prefix: &IpNet, peer: PeerId) {
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
    pub(super) fn make_stale(&mut self, prefix: IpNet, until: Instant) {
        if let Some(e) = self.rib.get_mut(&prefix) {
            if e.stale_until.is_none() {
                e.stale_until = Some(until);
                self.stale.insert((until, prefix));
            }
        }
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
    pub(super) fn stale_where(&self, f: impl Fn(&IpNet) -> bool) -> Vec<IpNet> {
        self.stale
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| f(p))
            .collect()
    }

    /// The next instant at which a stale route expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.stale.first().map(|(t, _)| *t)
    }
}
