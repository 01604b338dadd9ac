//! The peers of the kept paths, each named once: a small number per peer
//! in the RIB instead of its name per path.
//!
//! In: a peer's name when one of its paths is kept, its number when one
//! goes. Out: the number, the name back, its count of kept paths, and its
//! address when its first path comes or its last goes (a peer's address
//! counts for the policy's `covers-neighbor` only while it has paths).

use std::collections::HashMap;
use std::net::IpAddr;

/// A peer's number in [`Peers`].
pub(super) type PeerId = u32;

/// The peers the kept paths came from, each named once.
#[derive(Debug, Default)]
pub(super) struct Peers {
    pub(super) ids: HashMap<String, PeerId>,
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
    pub(super) fn id(&mut self, name: &str) -> PeerId {
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

    pub(super) fn paths(&self, name: &str) -> usize {
        self.ids
            .get(name)
            .and_then(|id| self.slots.get(id))
            .map_or(0, |s| s.paths)
    }

    pub(super) fn name(&self, id: PeerId) -> &str {
        self.slots.get(&id).map_or("?", |s| s.name.as_str())
    }

    /// One more path from `id`; its address if that was its first.
    pub(super) fn add(&mut self, id: PeerId) -> Option<IpAddr> {
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
    pub(super) fn remove(&mut self, id: PeerId) -> Option<IpAddr> {
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
