//! Addresses in use as next hops or peers, counted, with what appeared or
//! went since the last look.
//!
//! In: each path or installed route that starts or stops using an address
//! (from [`super::rib`] and [`super::verdict`]). Out: the counts and the
//! added and removed lists that [`super::verdict`] folds into the policy
//! inputs.

use std::collections::HashMap;
use std::net::IpAddr;

/// Addresses in use as next hops or peers: how many paths (or installed
/// routes) use each, and which appeared or went since the last look.
#[derive(Debug, Default)]
pub(super) struct InUse {
    pub(super) count: HashMap<IpAddr, usize>,
    pub(super) added: Vec<IpAddr>,
    pub(super) removed: Vec<IpAddr>,
}

impl InUse {
    pub(super) fn add(&mut self, a: IpAddr) {
        let n = self.count.entry(a).or_default();
        *n += 1;
        if *n == 1 {
            self.added.push(a);
        }
    }

    pub(super) fn remove(&mut self, a: IpAddr) {
        if let Some(n) = self.count.get_mut(&a) {
            *n -= 1;
            if *n == 0 {
                self.count.remove(&a);
                self.removed.push(a);
            }
        }
    }
}
