//! The driver's two gobgpd policies, described once, in no codec's words.
//!
//! In: the export policy's per-peer IPv6 next hops (dual-uplink mode,
//! [`PeerNextHop6`]). Out: each policy as a [`PolicyInstall`]: its defined
//! sets, its statements (every one accepts, with the conditions and actions
//! it names), and its assignment to the global table with a default
//! action. [`gshut_import`]: a path carrying GRACEFUL_SHUTDOWN gets
//! LOCAL_PREF [`GSHUT_LOCAL_PREF`], so any other path wins. [`export_own`]:
//! peers get only the paths this host originates. Each codec
//! ([`super::gobgp_v3`], [`super::gobgp_v4`]) translates a
//! [`PolicyInstall`] into its line's messages and installs the sets, then
//! the policy, then the assignment; what the policies say is decided here
//! alone.

use std::net::IpAddr;

use super::gobgp_api::{
    Family, PeerNextHop6, EXPORT_POLICY, EXPORT_STATEMENT, GRACEFUL_SHUTDOWN, GSHUT_LOCAL_PREF,
    GSHUT_POLICY, GSHUT_SET, GSHUT_STATEMENT,
};
use crate::model::attrs::community_text;

/// What a defined set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// Peer addresses as host prefixes.
    Neighbor,
    /// Communities as text (`65535:0`).
    Community,
}

/// A named set a statement matches against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinedSet {
    pub kind: SetKind,
    pub name: String,
    pub list: Vec<String>,
}

/// One statement: it matches when every condition it names holds (a set
/// matches when any of its members does), and then accepts the path with
/// the actions it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    pub name: String,
    /// The path goes to (or comes from) a peer in this neighbour set.
    pub neighbor_set: Option<String>,
    /// The path carries a community of this set.
    pub community_set: Option<String>,
    pub family: Option<Family>,
    /// Only paths of route type LOCAL: added through gobgpd's API (ours).
    pub local_only: bool,
    pub next_hop: Option<IpAddr>,
    pub local_pref: Option<u32>,
}

/// Which of the global table's policy lists an assignment joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Import,
    Export,
}

/// A policy, the sets it names, and its assignment to the global table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInstall {
    /// Installed first: the policy names them.
    pub sets: Vec<DefinedSet>,
    pub name: String,
    pub statements: Vec<Statement>,
    pub direction: Direction,
    /// What happens to a path no statement accepted: accepted (`true`) or
    /// rejected.
    pub default_accept: bool,
}

/// The import policy that honours GRACEFUL_SHUTDOWN (RFC 8326): a path
/// carrying it gets LOCAL_PREF [`GSHUT_LOCAL_PREF`]; every path is
/// accepted.
pub fn gshut_import() -> PolicyInstall {
    PolicyInstall {
        sets: vec![DefinedSet {
            kind: SetKind::Community,
            name: GSHUT_SET.into(),
            list: vec![community_text(GRACEFUL_SHUTDOWN)],
        }],
        name: GSHUT_POLICY.into(),
        statements: vec![Statement {
            name: GSHUT_STATEMENT.into(),
            community_set: Some(GSHUT_SET.into()),
            local_pref: Some(GSHUT_LOCAL_PREF),
            ..Statement::default()
        }],
        direction: Direction::Import,
        default_accept: true,
    }
}

/// The export policy of `--export own` and its global assignment: one
/// statement accepts the paths of route type LOCAL (gobgpd's test is that
/// the path has no peer as its source: what we add through the API); the
/// assignment's default action rejects every other path, so nothing
/// learned from one peer is passed on to another. Dual-uplink mode (`v6`
/// not empty): before it, per uplink peer, a statement for our IPv6 paths
/// to that peer (its neighbour set, family ipv6-unicast, LOCAL) that sets
/// the uplink's IPv6 address as next hop and accepts; gobgpd applies the
/// export policy after it set its own eBGP next hop, so this one wins.
pub fn export_own(v6: &[PeerNextHop6]) -> PolicyInstall {
    let sets = v6
        .iter()
        .map(|p| DefinedSet {
            kind: SetKind::Neighbor,
            name: p.name(),
            list: vec![p.neighbor_entry()],
        })
        .collect();
    let mut statements: Vec<Statement> = v6
        .iter()
        .map(|p| Statement {
            name: p.name(),
            neighbor_set: Some(p.name()),
            family: Some(Family::Ipv6),
            local_only: true,
            next_hop: Some(IpAddr::V6(p.next_hop)),
            ..Statement::default()
        })
        .collect();
    statements.push(Statement {
        name: EXPORT_STATEMENT.into(),
        local_only: true,
        ..Statement::default()
    });
    PolicyInstall {
        sets,
        name: EXPORT_POLICY.into(),
        statements,
        direction: Direction::Export,
        default_accept: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--export own`: one statement that accepts only LOCAL paths (no
    /// other condition, no other action), assigned to the global table's
    /// export with REJECT as the default: a learned path matches nothing
    /// and is not sent.
    #[test]
    fn export_policy_accepts_local_paths_and_rejects_the_rest() {
        let p = export_own(&[]);
        assert!(p.sets.is_empty());
        assert_eq!(p.name, EXPORT_POLICY);
        assert_eq!(
            p.statements,
            [Statement {
                name: EXPORT_STATEMENT.into(),
                local_only: true,
                ..Statement::default()
            }]
        );
        assert_eq!(p.direction, Direction::Export);
        assert!(!p.default_accept);
    }

    /// Dual-uplink mode: per uplink peer, first, a statement for our IPv6
    /// paths to that peer alone (its neighbour set, ipv6-unicast, LOCAL)
    /// that sets that uplink's IPv6 address as next hop and accepts; the
    /// generic LOCAL statement last; one neighbour set per peer, its
    /// address as a host prefix.
    #[test]
    fn each_uplink_peer_gets_its_uplinks_ipv6_next_hop_first() {
        let v6 = [
            PeerNextHop6 {
                peer: "203.0.113.1".parse().unwrap(),
                next_hop: "fd00:0:ff::2".parse().unwrap(),
            },
            PeerNextHop6 {
                peer: "203.0.113.5".parse().unwrap(),
                next_hop: "fd00:0:ff:1::2".parse().unwrap(),
            },
        ];
        let p = export_own(&v6);
        assert_eq!(
            p.sets,
            [
                DefinedSet {
                    kind: SetKind::Neighbor,
                    name: "ipvlan-bgp-v6-next-hop-203.0.113.1".into(),
                    list: vec!["203.0.113.1/32".into()],
                },
                DefinedSet {
                    kind: SetKind::Neighbor,
                    name: "ipvlan-bgp-v6-next-hop-203.0.113.5".into(),
                    list: vec!["203.0.113.5/32".into()],
                },
            ]
        );
        let names: Vec<&str> = p.statements.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ipvlan-bgp-v6-next-hop-203.0.113.1",
                "ipvlan-bgp-v6-next-hop-203.0.113.5",
                EXPORT_STATEMENT
            ]
        );
        for (st, peer) in p.statements.iter().zip(&v6) {
            assert_eq!(
                st,
                &Statement {
                    name: peer.name(),
                    neighbor_set: Some(peer.name()),
                    family: Some(Family::Ipv6),
                    local_only: true,
                    next_hop: Some(IpAddr::V6(peer.next_hop)),
                    ..Statement::default()
                }
            );
        }
        assert!(p.statements[2].local_only && p.statements[2].next_hop.is_none());
        assert!(!p.default_accept);
    }

    /// GRACEFUL_SHUTDOWN on import: the community set `65535:0`, one
    /// statement that lowers LOCAL_PREF to [`GSHUT_LOCAL_PREF`], every
    /// path accepted.
    #[test]
    fn gshut_lowers_local_pref_and_accepts_everything() {
        let p = gshut_import();
        assert_eq!(p.sets.len(), 1);
        assert_eq!(p.sets[0].kind, SetKind::Community);
        assert_eq!(p.sets[0].list, ["65535:0"]);
        assert_eq!(
            p.statements,
            [Statement {
                name: GSHUT_STATEMENT.into(),
                community_set: Some(GSHUT_SET.into()),
                local_pref: Some(GSHUT_LOCAL_PREF),
                ..Statement::default()
            }]
        );
        assert_eq!(p.direction, Direction::Import);
        assert!(p.default_accept);
    }
}
