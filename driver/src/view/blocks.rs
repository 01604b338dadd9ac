//! Aggregated announcements for the cluster IPAM: one route per block this
//! host holds, a host route only for an address outside its blocks.
//!
//! In: the [`View`] (after the health gate) and the blocks the IPAM holds
//! ([`crate::ipam::Ipam::watch_blocks`]). Out: the same View with each held
//! block of a pool in [`View::ipam_pools`] announced behind that pool's
//! parent with the network's attributes, and the host routes it covers left
//! out; a host route outside every held block (a stray) stays, and so does
//! one whose attributes differ from its block's (it is the more specific,
//! so it still wins where it differs). A block stays announced while it is
//! held, empty or not, and goes when the IPAM releases it (after the grace
//! period). The BGP side sees an ordinary View: blocks go through the one
//! announcer like every other prefix.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;

use super::View;

/// `view` with the `held` blocks announced in place of the host routes they cover.
pub fn aggregate(view: &View, held: &BTreeSet<IpNet>) -> View {
    let mut v = view.clone();
    let mut announced = BTreeSet::new();
    for block in held {
        let Some(pool) = view
            .ipam_pools
            .iter()
            .find(|(p, _)| p.contains(block))
            .map(|(_, pool)| pool)
        else {
            // No network of this host uses the pool (any more): nothing
            // to announce it behind.
            continue;
        };
        v.announcements.insert(*block, pool.parent.clone());
        if pool.attrs.is_empty() {
            v.attrs.remove(block);
        } else {
            v.attrs.insert(*block, pool.attrs.clone());
        }
        announced.insert(*block);
    }
    let covered = |prefix: &IpNet| {
        if prefix.prefix_len() != prefix.max_prefix_len() {
            return true;
        }
        // Blocks never overlap: the greatest one at or below the address is
        // the only one that may hold it.
        let Some(block) = announced.range(..=*prefix).next_back() else {
            return true;
        };
        if !block.contains(prefix) {
            return true;
        }
        let attrs = view.attrs.get(prefix).cloned().unwrap_or_default();
        let block_attrs = v.attrs.get(block).cloned().unwrap_or_default();
        attrs != block_attrs
    };
    // The view's maps are persistent (imbl, no `retain`): what goes is
    // taken out one by one, the rest stays shared with `view`.
    let gone: Vec<IpNet> = v
        .announcements
        .keys()
        .filter(|p| !covered(p))
        .copied()
        .collect();
    for p in &gone {
        v.announcements.remove(p);
    }
    let stale: Vec<IpNet> = v
        .attrs
        .keys()
        .filter(|p| !v.announcements.contains_key(*p))
        .copied()
        .collect();
    for p in &stale {
        v.attrs.remove(p);
    }
    v
}

/// Follows `views` and `held` and publishes their aggregate until `stop`
/// turns true or the views' sender goes.
pub fn spawn(
    mut views: watch::Receiver<Arc<View>>,
    mut held: watch::Receiver<BTreeSet<IpNet>>,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<Arc<View>>, tokio::task::JoinHandle<()>) {
    let first = aggregate(&views.borrow_and_update(), &held.borrow_and_update());
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = views.changed() => if r.is_err() { break },
                r = held.changed() => if r.is_err() { break },
                r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            }
            let next = aggregate(&views.borrow_and_update(), &held.borrow_and_update());
            tx.send_if_modified(|cur| {
                if **cur == next {
                    return false;
                }
                *cur = Arc::new(next);
                true
            });
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attrs::RouteAttrs;
    use crate::view::IpamPool;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn view(hosts: &[&str]) -> View {
        let mut v = View::default();
        v.ipam_pools.insert(
            n("10.20.0.0/16"),
            IpamPool {
                parent: "eth1".into(),
                attrs: RouteAttrs::default(),
            },
        );
        for h in hosts {
            v.announcements.insert(n(h), "eth1".into());
        }
        v
    }

    fn prefixes(v: &View) -> Vec<String> {
        v.announcements.keys().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_held_block_replaces_its_host_routes_and_strays_stay() {
        let v = view(&[
            "10.20.0.2/32",
            "10.20.0.3/32",
            "10.20.0.70/32",
            "10.20.9.9/32",
            "10.30.0.1/32",
        ]);
        let held: BTreeSet<IpNet> = [n("10.20.0.0/26"), n("10.20.0.64/26"), n("10.20.1.0/26")]
            .into_iter()
            .collect();
        let a = aggregate(&v, &held);
        assert_eq!(
            prefixes(&a),
            [
                "10.20.0.0/26",
                "10.20.0.64/26",
                "10.20.1.0/26",
                "10.20.9.9/32",
                "10.30.0.1/32"
            ],
            "each held block once (empty ones too), the stray 10.20.9.9 and the other network's 10.30.0.1 as host routes"
        );
        assert_eq!(
            aggregate(&v, &BTreeSet::new()),
            v,
            "no blocks: nothing changes"
        );
    }

    #[test]
    fn blocks_of_pools_without_a_network_here_are_not_announced() {
        let mut v = view(&["10.20.0.2/32"]);
        v.ipam_pools.clear();
        let held: BTreeSet<IpNet> = [n("10.20.0.0/26")].into_iter().collect();
        assert_eq!(prefixes(&aggregate(&v, &held)), ["10.20.0.2/32"]);
    }

    #[test]
    fn a_host_route_with_attributes_of_its_own_stays_beside_its_block() {
        let mut v = view(&["10.20.0.2/32", "10.20.0.3/32"]);
        let own = RouteAttrs {
            med: Some(5),
            ..Default::default()
        };
        v.attrs.insert(n("10.20.0.3/32"), own.clone());
        let pool_attrs = RouteAttrs {
            local_pref: Some(200),
            ..Default::default()
        };
        v.ipam_pools.get_mut(&n("10.20.0.0/16")).unwrap().attrs = pool_attrs.clone();
        v.attrs.insert(n("10.20.0.2/32"), pool_attrs.clone());
        let held: BTreeSet<IpNet> = [n("10.20.0.0/26")].into_iter().collect();
        let a = aggregate(&v, &held);
        assert_eq!(prefixes(&a), ["10.20.0.0/26", "10.20.0.3/32"]);
        assert_eq!(a.attrs.get(&n("10.20.0.0/26")), Some(&pool_attrs));
        assert_eq!(a.attrs.get(&n("10.20.0.3/32")), Some(&own));
        assert_eq!(a.attrs.get(&n("10.20.0.2/32")), None);
    }

    #[tokio::test]
    async fn the_aggregate_follows_the_view_and_the_blocks() {
        let (vtx, vrx) = watch::channel(Arc::new(view(&["10.20.0.2/32"])));
        let (htx, hrx) = watch::channel(BTreeSet::new());
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (mut out, _task) = spawn(vrx, hrx, stop_rx);
        assert_eq!(prefixes(&out.borrow_and_update()), ["10.20.0.2/32"]);
        htx.send_replace([n("10.20.0.0/26")].into_iter().collect());
        out.changed().await.unwrap();
        assert_eq!(prefixes(&out.borrow_and_update()), ["10.20.0.0/26"]);
        vtx.send_replace(Arc::new(view(&["10.20.0.2/32", "10.20.5.1/32"])));
        out.changed().await.unwrap();
        assert_eq!(
            prefixes(&out.borrow_and_update()),
            ["10.20.0.0/26", "10.20.5.1/32"]
        );
        // The block lost (an operator released it): its container becomes a stray.
        htx.send_replace(BTreeSet::new());
        out.changed().await.unwrap();
        assert_eq!(
            prefixes(&out.borrow_and_update()),
            ["10.20.0.2/32", "10.20.5.1/32"]
        );
    }
}
