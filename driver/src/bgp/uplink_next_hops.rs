//! Dual-uplink mode: the IPv6 next hop each uplink peer must get.
//!
//! In: the host's links and addresses ([`HostInfo`]), the uplinks
//! (`--uplink`) and the peers the driver configures (`--peer`). Out: per
//! peer on an uplink's connected subnet, that uplink's global IPv6 address
//! ([`PeerNextHop6`], what the export policy sets as the next hop of our
//! IPv6 paths towards that peer), and one warning per uplink peer whose
//! uplink has no global IPv6 address ([`UplinkNextHops::warnings`]); later,
//! the warning that the uplinks' addresses no longer match what gobgpd's
//! export policy holds ([`changed_warning`]).
//!
//! Why: the sessions to the ToRs run over IPv4, and gobgpd gives an IPv6
//! path sent over an IPv4 session the IPv4-mapped `::ffff:<local IPv4>` as
//! next hop; a router installs that as a gateway no kernel accepts
//! (docs/dual-uplink.md, "IPv6 over the uplinks' sessions").

use std::net::IpAddr;

use super::gobgp_api::PeerNextHop6;
use super::host::HostInfo;

/// What [`uplink_next_hops`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkNextHops {
    /// Per uplink peer with an IPv6 address on its uplink, sorted by peer.
    pub per_peer: Vec<PeerNextHop6>,
    /// One line per uplink peer whose uplink has no global IPv6 address.
    pub warnings: Vec<String>,
}

/// Each peer in an uplink's connected subnet gets that uplink's global
/// IPv6 address (never link-local, never unstable): the one whose subnet
/// holds the peer (an IPv6 session), else the lowest. Peers on no uplink
/// (multihop, a reflector) get nothing: gobgpd's own next hop stays.
pub fn uplink_next_hops(host: &HostInfo, uplinks: &[String], peers: &[IpAddr]) -> UplinkNextHops {
    let mut out = UplinkNextHops::default();
    for &peer in peers {
        let Some((uplink, nets)) = uplinks.iter().find_map(|u| {
            let nets = host.addresses_of(u)?;
            nets.iter().any(|n| n.contains(&peer)).then_some((u, nets))
        }) else {
            continue;
        };
        let candidates = host.parent_v6_candidates(uplink);
        let on_peers_subnet = nets
            .iter()
            .filter(|n| n.contains(&peer))
            .map(|n| n.addr())
            .find(|a| candidates.contains(a));
        match on_peers_subnet.or_else(|| candidates.first().copied()) {
            Some(IpAddr::V6(next_hop)) => out.per_peer.push(PeerNextHop6 { peer, next_hop }),
            _ => out.warnings.push(format!(
                "uplink {uplink} has no global IPv6 address: IPv6 prefixes go to its peer {peer} with gobgpd's IPv4-mapped next hop (::ffff:<IPv4>), which the router cannot install, so IPv6 to this host's containers fails over {uplink}; give {uplink} a global IPv6 address, then restart gobgpd (the export policy is installed when BGP starts)"
            )),
        }
    }
    out.per_peer.sort();
    out
}

/// The export policy's next hops are fixed when BGP starts on gobgpd: the
/// warning when the uplinks' addresses (`now`) no longer match the ones
/// `installed`, naming both and the fix; `None` while they match.
pub fn changed_warning(installed: &[PeerNextHop6], now: &[PeerNextHop6]) -> Option<String> {
    if installed == now {
        return None;
    }
    let list = |l: &[PeerNextHop6]| {
        l.iter()
            .map(|p| format!("{} via {}", p.peer, p.next_hop))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "an uplink's IPv6 address changed: gobgpd's export policy still gives the uplink peers our IPv6 paths with the next hops installed when BGP started ({}), the uplinks now have ({}); restart gobgpd to install the new ones (the driver installs the policy when it starts BGP on gobgpd)",
        list(installed),
        list(now)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn host(links: &[(&str, &[&str])]) -> HostInfo {
        HostInfo {
            links: links
                .iter()
                .enumerate()
                .map(|(i, (name, nets))| {
                    (
                        i as u32 + 2,
                        name.to_string(),
                        nets.iter().map(|n| n.parse::<IpNet>().unwrap()).collect(),
                    )
                })
                .collect(),
            ..HostInfo::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn uplinks() -> Vec<String> {
        vec!["up1".into(), "up2".into()]
    }

    /// Each ToR over IPv4 gets the global IPv6 address of the uplink it
    /// sits on, never the other uplink's, never a link-local one.
    #[test]
    fn each_peer_gets_its_own_uplinks_ipv6_address() {
        let h = host(&[
            ("eth0", &["192.0.2.9/24", "fd00:99::9/64"]),
            ("up1", &["203.0.113.2/30", "fe80::1/64", "fd00:0:ff::2/64"]),
            ("up2", &["203.0.113.6/30", "fd00:0:ff:1::2/64"]),
        ]);
        let got = uplink_next_hops(
            &h,
            &uplinks(),
            &[ip("203.0.113.5"), ip("203.0.113.1"), ip("192.0.2.1")],
        );
        assert_eq!(
            got.per_peer,
            [
                PeerNextHop6 {
                    peer: ip("203.0.113.1"),
                    next_hop: "fd00:0:ff::2".parse().unwrap()
                },
                PeerNextHop6 {
                    peer: ip("203.0.113.5"),
                    next_hop: "fd00:0:ff:1::2".parse().unwrap()
                },
            ],
            "192.0.2.1 is on no uplink: no statement"
        );
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    }

    /// An uplink with only a link-local (or no) IPv6 address: no statement
    /// for its peer, and a warning naming the uplink, the peer and the fix.
    #[test]
    fn an_uplink_without_a_global_ipv6_address_is_warned_about() {
        let h = host(&[
            ("up1", &["203.0.113.2/30", "fe80::1/64"]),
            ("up2", &["203.0.113.6/30", "fd00:0:ff:1::2/64"]),
        ]);
        let got = uplink_next_hops(&h, &uplinks(), &[ip("203.0.113.1"), ip("203.0.113.5")]);
        assert_eq!(got.per_peer.len(), 1);
        assert_eq!(got.per_peer[0].peer, ip("203.0.113.5"));
        assert_eq!(got.warnings.len(), 1);
        let w = &got.warnings[0];
        assert!(w.contains("uplink up1") && w.contains("203.0.113.1"), "{w}");
        assert!(w.contains("restart gobgpd"), "{w}");
    }

    /// An IPv6 session on an uplink with two global addresses: the one in
    /// the peer's subnet, not merely the lowest.
    #[test]
    fn an_ipv6_peer_gets_the_address_on_its_subnet() {
        let h = host(&[
            ("up1", &["fd00:0:aa::2/64", "fd00:0:ff::2/64"]),
            ("up2", &["fd00:0:ff:1::2/64"]),
        ]);
        let got = uplink_next_hops(&h, &uplinks(), &[ip("fd00:0:ff::1")]);
        assert_eq!(got.per_peer[0].next_hop.to_string(), "fd00:0:ff::2");
    }

    /// An address that changed (or went) is warned about with the old and
    /// the new next hops and the fix; the same set is not.
    #[test]
    fn a_changed_uplink_address_is_warned_about() {
        let p = |nh: &str| PeerNextHop6 {
            peer: ip("203.0.113.1"),
            next_hop: nh.parse().unwrap(),
        };
        assert_eq!(
            changed_warning(&[p("fd00:0:ff::2")], &[p("fd00:0:ff::2")]),
            None
        );
        let w = changed_warning(&[p("fd00:0:ff::2")], &[p("fd00:0:ff::9")]).unwrap();
        assert!(w.contains("203.0.113.1 via fd00:0:ff::2"), "{w}");
        assert!(w.contains("203.0.113.1 via fd00:0:ff::9"), "{w}");
        assert!(w.contains("restart gobgpd"), "{w}");
        assert!(changed_warning(&[p("fd00:0:ff::2")], &[]).is_some());
    }
}
