//! What the kernel holds of ours, as last written or dumped, with the count
//! of those routes per outgoing interface kept as routes come and go.
//!
//! In: the installer's successful writes and deletes, and what a dump finds
//! (insert, remove, take). Out: the routes by destination (a tagged route is
//! ours only with these next hops), how many there are, and how many go out
//! of each interface (the `routes_by_oif` metric) without a walk over all of
//! them: the installer publishes that after every batch, and a walk over
//! 5,000 learned routes per batch was a third of a loaded host's CPU.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use crate::kernel::MultiRoute;

#[derive(Debug, Default)]
pub(super) struct Installed {
    routes: HashMap<IpNet, MultiRoute>,
    /// Routes (not next hops) per interface index: a route with two next
    /// hops out of one interface counts once there.
    by_oif: BTreeMap<u32, usize>,
}

impl Installed {
    pub(super) fn get(&self, dst: &IpNet) -> Option<&MultiRoute> {
        self.routes.get(dst)
    }

    pub(super) fn contains_key(&self, dst: &IpNet) -> bool {
        self.routes.contains_key(dst)
    }

    pub(super) fn len(&self) -> usize {
        self.routes.len()
    }

    pub(super) fn by_oif(&self) -> &BTreeMap<u32, usize> {
        &self.by_oif
    }

    pub(super) fn insert(&mut self, dst: IpNet, r: MultiRoute) {
        count(&mut self.by_oif, &r, true);
        if let Some(old) = self.routes.insert(dst, r) {
            count(&mut self.by_oif, &old, false);
        }
    }

    pub(super) fn remove(&mut self, dst: &IpNet) -> Option<MultiRoute> {
        let old = self.routes.remove(dst)?;
        count(&mut self.by_oif, &old, false);
        Some(old)
    }
}

impl FromIterator<MultiRoute> for Installed {
    fn from_iter<I: IntoIterator<Item = MultiRoute>>(iter: I) -> Installed {
        let mut i = Installed::default();
        for r in iter {
            i.insert(r.dst, r);
        }
        i
    }
}

/// Adds (or takes away) `r` once for each distinct interface it goes out of.
fn count(by_oif: &mut BTreeMap<u32, usize>, r: &MultiRoute, add: bool) {
    for (i, h) in r.hops.iter().enumerate() {
        let Some(o) = h.oif else { continue };
        if r.hops[..i].iter().any(|e| e.oif == Some(o)) {
            continue;
        }
        if add {
            *by_oif.entry(o).or_default() += 1;
        } else if let Some(n) = by_oif.get_mut(&o) {
            *n -= 1;
            if *n == 0 {
                by_oif.remove(&o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::NextHop;

    fn route(dst: &str, oifs: &[Option<u32>]) -> MultiRoute {
        let hops = oifs
            .iter()
            .enumerate()
            .map(|(k, &oif)| NextHop {
                via: Some(format!("192.0.2.{}", k + 1).parse().unwrap()),
                oif,
            })
            .collect();
        MultiRoute::new(dst.parse().unwrap(), hops, 73)
    }

    /// The counts a walk over every route gives (what `publish` computed
    /// before), to compare the kept counts with.
    fn walked(i: &Installed) -> BTreeMap<u32, usize> {
        let mut by_oif = BTreeMap::new();
        for r in i.routes.values() {
            let mut oifs: Vec<u32> = r.hops.iter().filter_map(|h| h.oif).collect();
            oifs.sort_unstable();
            oifs.dedup();
            for o in oifs {
                *by_oif.entry(o).or_default() += 1;
            }
        }
        by_oif
    }

    #[test]
    fn the_counts_follow_routes_in_and_out_and_count_a_route_once_per_interface() {
        let mut i: Installed = [
            route("10.1.0.0/24", &[Some(3)]),
            route("10.1.1.0/24", &[Some(3), Some(4)]),
            // Two next hops out of one interface: one route there.
            route("10.1.2.0/24", &[Some(4), Some(4)]),
            route("10.1.3.0/24", &[None]),
        ]
        .into_iter()
        .collect();
        assert_eq!(i.len(), 4);
        assert_eq!(*i.by_oif(), [(3, 2), (4, 2)].into_iter().collect());
        assert_eq!(*i.by_oif(), walked(&i));
        // Replaced in place: the old route's interfaces are given back.
        let r = route("10.1.1.0/24", &[Some(5)]);
        i.insert(r.dst, r);
        assert_eq!(*i.by_oif(), [(3, 1), (4, 1), (5, 1)].into_iter().collect());
        assert_eq!(
            i.remove(&"10.1.2.0/24".parse().unwrap())
                .map(|r| r.hops.len()),
            Some(2)
        );
        assert_eq!(i.remove(&"10.1.2.0/24".parse().unwrap()), None);
        // An interface without routes is gone from the counts.
        assert_eq!(*i.by_oif(), [(3, 1), (5, 1)].into_iter().collect());
        assert_eq!(*i.by_oif(), walked(&i));
        let taken = std::mem::take(&mut i);
        assert_eq!((i.len(), i.by_oif().len()), (0, 0));
        assert_eq!(taken.len(), 3);
        assert!(taken.contains_key(&"10.1.3.0/24".parse().unwrap()));
    }
}
