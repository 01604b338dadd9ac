//! Graceful shutdown for maintenance (RFC 8326): what a drained host's
//! announcements carry, and when it is safe to stop.
//!
//! In: the wanted announcements, whether the host is drained (the View,
//! from the state file), the kinds of BGP peers gobgpd has (iBGP or eBGP),
//! and what gobgpd's RIB shows for our prefixes. Out: the drained
//! attributes ([`drained`]) and the drain's progress for status, metrics
//! and `ipvlan-bgp drain --wait` ([`DrainStatus`]).
//!
//! Every drained path carries GRACEFUL_SHUTDOWN (65535:0), which FRR honours
//! over eBGP (LOCAL_PREF 0 on receipt), and our driver-managed gobgpd peers
//! honour through their import policy. BIRD, and gobgpd without that policy,
//! ignore it, and FRR ignores it over iBGP (docs/gobgp-v4.md §7), so the path
//! is also made less preferred by what every receiver compares:
//! - all peers eBGP: the AS path is [`DRAIN_PREPEND`] of our AS longer
//!   (LOCAL_PREF does not cross eBGP; a prepend over iBGP would make the
//!   peer refuse the path as a loop);
//! - some peer iBGP: LOCAL_PREF 0 (compared first by iBGP receivers);
//! - and MED [`DRAIN_MED`], for receivers comparing two paths from one
//!   neighbouring AS that tie on the rest.
//!
//! Progress: a prefix has "moved" once a peer advertises us another path
//! for it (a BGP speaker advertises only its best: that peer now prefers
//! the alternative, the "alternative reflected back"). A prefix no peer
//! shows an alternative for cannot be observed: the drain is then safe to
//! stop [`DRAIN_SETTLE`] after gobgpd took the drained paths, the stated
//! bound for peers to act on one UPDATE.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::announcer::Announcement;
use super::gobgp::GRACEFUL_SHUTDOWN;
use crate::metrics::DrainStatus;
use crate::model::attrs::RouteAttrs;

/// Extra copies of our AS on a drained path towards eBGP peers.
pub const DRAIN_PREPEND: u8 = 3;
/// MED of a drained path: the largest usable one (4294967295 is "infinity"
/// to some implementations, RFC 4451 §5).
pub const DRAIN_MED: u32 = u32::MAX - 1;
/// How long after gobgpd took the drained paths a drain counts as done when
/// no peer shows where its traffic went: an UPDATE from gobgpd leaves at
/// once (the driver adds peers with a minimum advertisement interval of 0),
/// and a receiver re-selects and installs within milliseconds to a second;
/// 10 s leaves room for one more BGP hop and a loaded host.
pub const DRAIN_SETTLE: Duration = Duration::from_secs(10);

/// How a drained path is made less preferred, besides the community.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainMethod {
    /// Every peer is eBGP: AS-path prepend.
    #[default]
    Prepend,
    /// Some peer is iBGP: LOCAL_PREF 0.
    LocalPref,
}

impl DrainMethod {
    pub fn name(self) -> &'static str {
        match self {
            DrainMethod::Prepend => "gshut+prepend+med",
            DrainMethod::LocalPref => "gshut+local-pref-0+med",
        }
    }
}

/// The method for peers whose AS numbers are `peer_asns`, ours `asn`.
pub fn method(asn: u32, peer_asns: impl IntoIterator<Item = u32>) -> DrainMethod {
    if peer_asns.into_iter().any(|p| p == asn) {
        DrainMethod::LocalPref
    } else {
        DrainMethod::Prepend
    }
}

/// `attrs` as a drained host announces them.
pub fn drained(attrs: &RouteAttrs, how: DrainMethod) -> RouteAttrs {
    let mut a = attrs.clone();
    if !a.communities.contains(&GRACEFUL_SHUTDOWN) {
        a.communities.push(GRACEFUL_SHUTDOWN);
        a.communities.sort_unstable();
    }
    a.med = Some(DRAIN_MED);
    match how {
        DrainMethod::Prepend => {
            a.as_path_prepend = Some(a.as_path_prepend.unwrap_or(0).saturating_add(DRAIN_PREPEND));
        }
        DrainMethod::LocalPref => a.local_pref = Some(0),
    }
    a
}

/// Every announcement drained.
pub fn drain_all(wanted: &mut BTreeMap<IpNet, Announcement>, how: DrainMethod) {
    for a in wanted.values_mut() {
        a.attrs = drained(&a.attrs, how);
    }
}

/// Works out whether it is safe to stop at `now` (unix seconds).
pub fn settle(d: &mut DrainStatus, now: u64) {
    let Some(accepted) = d.accepted else {
        d.safe_since = None;
        d.detail = "waiting for gobgpd to take the drained paths".into();
        return;
    };
    let bound = accepted + DRAIN_SETTLE.as_secs();
    if d.prefixes == 0 {
        d.safe_since.get_or_insert(accepted);
        d.detail = "nothing announced".into();
    } else if d.moved == d.prefixes {
        d.safe_since.get_or_insert(now);
        d.detail = format!(
            "every prefix ({}) has an alternative path at a peer",
            d.prefixes
        );
    } else if now >= bound {
        d.safe_since.get_or_insert(bound);
        d.detail = format!(
            "{} of {} prefixes show an alternative at a peer; the rest cannot be observed (no peer advertises another path for them: none may exist) and {} s have passed since gobgpd took the drained paths",
            d.moved,
            d.prefixes,
            DRAIN_SETTLE.as_secs()
        );
    } else {
        d.safe_since = None;
        d.detail = format!(
            "{} of {} prefixes show an alternative at a peer; waiting up to {} s after gobgpd took the drained paths",
            d.moved,
            d.prefixes,
            DRAIN_SETTLE.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_paths_carry_gshut_and_lose_by_what_receivers_compare() {
        let base = RouteAttrs {
            communities: vec![65000 << 16 | 7],
            as_path_prepend: Some(1),
            ..RouteAttrs::default()
        };
        let e = drained(&base, DrainMethod::Prepend);
        assert_eq!(e.communities, [65000 << 16 | 7, GRACEFUL_SHUTDOWN]);
        assert_eq!(e.as_path_prepend, Some(1 + DRAIN_PREPEND));
        assert_eq!(e.local_pref, None, "LOCAL_PREF does not cross eBGP");
        assert_eq!(e.med, Some(DRAIN_MED));
        let i = drained(&base, DrainMethod::LocalPref);
        assert_eq!(i.local_pref, Some(0));
        assert_eq!(i.as_path_prepend, Some(1), "no prepend over iBGP");
        // Draining twice changes nothing more.
        assert_eq!(drained(&i, DrainMethod::LocalPref), i);
        assert_eq!(method(65000, [65001, 65002]), DrainMethod::Prepend);
        assert_eq!(method(65000, [65001, 65000]), DrainMethod::LocalPref);
        assert_eq!(method(65000, []), DrainMethod::Prepend);
    }

    #[test]
    fn safe_when_every_prefix_moved_or_after_the_settle_time() {
        let mut d = DrainStatus {
            drained: true,
            prefixes: 2,
            ..DrainStatus::default()
        };
        settle(&mut d, 100);
        assert_eq!(d.safe_since, None);
        d.accepted = Some(100);
        d.moved = 1;
        settle(&mut d, 105);
        assert_eq!(d.safe_since, None, "{}", d.detail);
        settle(&mut d, 100 + DRAIN_SETTLE.as_secs());
        assert_eq!(d.safe_since, Some(110), "{}", d.detail);
        assert!(d.detail.contains("cannot be observed"));
        let mut d = DrainStatus {
            drained: true,
            prefixes: 2,
            moved: 2,
            accepted: Some(100),
            ..DrainStatus::default()
        };
        settle(&mut d, 102);
        assert_eq!(d.safe_since, Some(102));
    }
}
