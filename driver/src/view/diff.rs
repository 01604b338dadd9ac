//! What changed between two [`View`]s, for whoever derives something per
//! prefix from them.
//!
//! In: the view published before and the one published now. Out: the
//! prefixes whose announcement (parent) or BGP attributes differ between
//! them ([`announced_changes`]): added, removed or changed. What else a
//! view holds (pools, endpoints, parents, the cluster IPAM's pools, the
//! drain) is not compared: a reader that depends on it compares it itself.

use std::collections::BTreeSet;

use imbl::ordmap::{DiffItem, OrdMap};
use ipnet::IpNet;

use super::View;

/// The prefixes whose entry in `announcements` or `attrs` differs between
/// `old` and `new`. imbl's diff skips the nodes two versions share: after
/// one endpoint's change, a cost of what changed, not of the whole view.
pub fn announced_changes(old: &View, new: &View) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    changed_keys(&old.announcements, &new.announcements, &mut out);
    changed_keys(&old.attrs, &new.attrs, &mut out);
    out
}

/// Adds to `out` every key present in only one of `a` and `b`, or with
/// values that differ.
fn changed_keys<K: Ord + Copy, V: PartialEq + Clone>(
    a: &OrdMap<K, V>,
    b: &OrdMap<K, V>,
    out: &mut BTreeSet<K>,
) {
    out.extend(a.diff(b).map(|d| match d {
        DiffItem::Add(k, _) | DiffItem::Remove(k, _) => *k,
        DiffItem::Update { new: (k, _), .. } => *k,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attrs::RouteAttrs;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn view(entries: &[(&str, &str)], attrs: &[(&str, u32)]) -> View {
        View {
            announcements: entries
                .iter()
                .map(|(p, parent)| (n(p), parent.to_string()))
                .collect(),
            attrs: attrs
                .iter()
                .map(|(p, med)| {
                    (
                        n(p),
                        RouteAttrs {
                            med: Some(*med),
                            ..RouteAttrs::default()
                        },
                    )
                })
                .collect(),
            ..View::default()
        }
    }

    #[test]
    fn added_removed_and_changed_prefixes_are_named_and_nothing_else() {
        let old = view(
            &[
                ("10.0.0.1/32", "eth1"),
                ("10.0.0.2/32", "eth1"),
                ("10.0.0.3/32", "eth1"),
            ],
            &[("10.0.0.3/32", 5)],
        );
        let new = view(
            &[
                ("10.0.0.2/32", "eth2"),
                ("10.0.0.3/32", "eth1"),
                ("10.0.0.4/32", "eth1"),
            ],
            &[("10.0.0.3/32", 6)],
        );
        let got: Vec<IpNet> = announced_changes(&old, &new).into_iter().collect();
        assert_eq!(
            got,
            vec![
                n("10.0.0.1/32"),
                n("10.0.0.2/32"),
                n("10.0.0.3/32"),
                n("10.0.0.4/32")
            ]
        );
        assert!(announced_changes(&new, &new).is_empty());
        let mut other = new.clone();
        other.pools.insert(n("10.9.0.0/16"));
        other.drained = Some(1);
        assert!(announced_changes(&new, &other).is_empty());
    }
}
