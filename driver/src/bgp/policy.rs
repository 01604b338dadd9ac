//! The import policy: which learned prefixes may enter this host's kernel.
//!
//! In: a learned prefix and next hop, and [`PolicyInputs`] (this host's pools,
//! endpoints, addresses and parents). Out: the parent interface to route over,
//! or the [`Reject`] reason. Pure: no I/O, so every rule has a unit test.
//! Safe by default: a peer can only add routes inside the pools this host
//! accepts, never a default route or a reserved range, never over the host's
//! own networks or containers, never over an address the host needs to reach
//! its peers (a BGP neighbour, a next hop in use, the default gateway: a route
//! over those would cut the session that taught it), and only through a next
//! hop on a parent's subnet.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use imbl::OrdSet;
use ipnet::IpNet;

use crate::model::reserved::is_reserved;

/// A parent interface and the networks of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentInfo {
    pub name: String,
    pub index: u32,
    pub nets: Vec<IpNet>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInputs {
    /// Accepted pools: this host's network subnets plus `--accept-pool`.
    pub pools: Vec<IpNet>,
    /// This host's network subnets (a learned route may sit inside them, not over them).
    pub network_subnets: Vec<IpNet>,
    /// The view's own set (`imbl`, shared with it): a copy costs nothing
    /// and comparing two that share their nodes skips those.
    pub local_endpoints: OrdSet<IpAddr>,
    /// Those local endpoints this host reaches through its routing table
    /// (L2 data planes and host links: the shim's connected subnet route).
    /// A learned prefix over one of them would take its traffic; over an
    /// ipvlan L3 one it would not (ipvlan delivers by address first).
    pub endpoints_via_host: OrdSet<IpAddr>,
    /// Networks of every address on this host, except those of our networks' shims.
    pub connected: Vec<IpNet>,
    pub own_addresses: BTreeSet<IpAddr>,
    pub parents: Vec<ParentInfo>,
    /// BGP neighbours' addresses (the peers gobgpd reports and the peers learned paths came from).
    pub neighbors: BTreeSet<IpAddr>,
    /// Next hops in use (of routes we install and of learned paths).
    pub next_hops: BTreeSet<IpAddr>,
    /// Gateways of the main table's default routes.
    pub default_gateways: BTreeSet<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    DefaultRoute,
    Reserved,
    OutsidePools,
    CoversConnected,
    InsideConnected,
    CoversLocalNetwork,
    LocalEndpoint,
    NoNextHop,
    NextHopIsSelf,
    NextHopOffLink,
    NextHopLinkLocal,
    NextHopFamily,
    CoversNeighbor,
    CoversNextHop,
    CoversDefaultGateway,
    MaxLearned,
    /// Not a policy verdict: the learner's table is full (`--max-rib`).
    RibFull,
    /// Not a policy verdict: this peer's share is full (`--max-rib-per-peer`).
    PeerRibFull,
}

impl Reject {
    /// Label used in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reject::DefaultRoute => "default-route",
            Reject::Reserved => "reserved",
            Reject::OutsidePools => "outside-pools",
            Reject::CoversConnected => "covers-connected",
            Reject::InsideConnected => "inside-connected",
            Reject::CoversLocalNetwork => "covers-local-network",
            Reject::LocalEndpoint => "local-endpoint",
            Reject::NoNextHop => "no-next-hop",
            Reject::NextHopIsSelf => "next-hop-self",
            Reject::NextHopOffLink => "next-hop-off-link",
            Reject::NextHopLinkLocal => "next-hop-link-local",
            Reject::NextHopFamily => "next-hop-family",
            Reject::CoversNeighbor => "covers-neighbor",
            Reject::CoversNextHop => "covers-next-hop",
            Reject::CoversDefaultGateway => "covers-default-gateway",
            Reject::MaxLearned => "max-learned",
            Reject::RibFull => "rib-full",
            Reject::PeerRibFull => "peer-rib-full",
        }
    }

    pub fn explain(&self) -> &'static str {
        match self {
            Reject::DefaultRoute => "a default route is never installed",
            Reject::Reserved => {
                "the prefix overlaps a reserved range (0/8, 127/8, 169.254/16, 224/4, 240/4, ::/128, ::1/128, ::ffff:0:0/96, fe80::/10, ff00::/8)"
            }
            Reject::OutsidePools => {
                "the prefix is outside every accepted pool (network subnets and --accept-pool)"
            }
            Reject::CoversConnected => "the prefix covers one of this host's connected networks",
            Reject::InsideConnected => {
                "the prefix lies inside one of this host's connected (underlay) networks"
            }
            Reject::CoversLocalNetwork => {
                "the prefix covers one of this host's own container networks"
            }
            Reject::LocalEndpoint => {
                "the prefix is one of this host's own container addresses, or covers a container this host reaches through its shim (L2 data planes, host links)"
            }
            Reject::NoNextHop => "the path has no usable next hop",
            Reject::NextHopIsSelf => "the next hop is one of this host's own addresses",
            Reject::NextHopOffLink => "the next hop is not on the subnet of any parent interface",
            Reject::NextHopLinkLocal => {
                "the only next hop is link-local: gobgpd does not say on which interface it was learned; have the peer send a global IPv6 next hop"
            }
            Reject::NextHopFamily => {
                "the next hop is not of the prefix's address family (or is IPv4-mapped, ::ffff:a.b.c.d, as peers set it over an IPv4 session); run the session over IPv6 or keep the next hop unchanged"
            }
            Reject::CoversNeighbor => {
                "the prefix covers a BGP neighbour's address (it would cut the session)"
            }
            Reject::CoversNextHop => "the prefix covers a next hop in use",
            Reject::CoversDefaultGateway => "the prefix covers the host's default gateway",
            Reject::MaxLearned => "--max-learned routes are installed already",
            Reject::RibFull => {
                "--max-rib learned paths are kept already (installed or refused); the path is dropped and read again from gobgpd when room frees"
            }
            Reject::PeerRibFull => {
                "--max-rib-per-peer paths from this peer are kept already; the path is dropped and read again from gobgpd when room frees"
            }
        }
    }

    /// Reasons for which the learner keeps no state (a leaked full table
    /// must not grow it): those that depend only on the prefix and the
    /// pools, and the learner's own limits. Widening the pools (or room
    /// freed) needs gobgpd's RIB read again.
    pub fn is_dropped(&self) -> bool {
        matches!(
            self,
            Reject::DefaultRoute
                | Reject::Reserved
                | Reject::OutsidePools
                | Reject::RibFull
                | Reject::PeerRibFull
        )
    }
}

/// An IPv6 link-local address (fe80::/10): meaningful only with an interface.
pub fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn covers(outer: &IpNet, inner: &IpNet) -> bool {
    outer.contains(inner)
}

/// Whether `set` holds an address inside `prefix`: a range query, so a host
/// with many containers costs O(log n) per decision, not O(n).
pub fn any_inside(set: &BTreeSet<IpAddr>, prefix: &IpNet) -> bool {
    set.range(span(prefix)).next().is_some()
}

/// [`any_inside`] for the endpoint sets.
pub fn any_endpoint_inside(set: &OrdSet<IpAddr>, prefix: &IpNet) -> bool {
    set.range(span(prefix)).next().is_some()
}

/// The first and last address of `prefix`.
fn span(prefix: &IpNet) -> RangeInclusive<IpAddr> {
    match prefix {
        IpNet::V4(p) => IpAddr::V4(p.network())..=IpAddr::V4(p.broadcast()),
        IpNet::V6(p) => IpAddr::V6(p.network())..=IpAddr::V6(p.broadcast()),
    }
}

impl PolicyInputs {
    /// Whether `other` differs from these inputs in the local endpoints
    /// (both sets) at most. Such a change can only affect the prefixes that contain an
    /// address that came or went (see the learner's incremental path).
    pub fn same_but_endpoints(&self, other: &PolicyInputs) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let PolicyInputs {
            pools,
            network_subnets,
            local_endpoints: _,
            endpoints_via_host: _,
            connected,
            own_addresses,
            parents,
            neighbors,
            next_hops,
            default_gateways,
        } = self;
        *pools == other.pools
            && *network_subnets == other.network_subnets
            && *connected == other.connected
            && *own_addresses == other.own_addresses
            && *parents == other.parents
            && *neighbors == other.neighbors
            && *next_hops == other.next_hops
            && *default_gateways == other.default_gateways
    }
}

/// Decides one learned path. On success returns the parent interface index
/// to install the route on.
pub fn decide(
    prefix: &IpNet,
    next_hop: Option<IpAddr>,
    inputs: &PolicyInputs,
) -> Result<u32, Reject> {
    if prefix.prefix_len() == 0 {
        return Err(Reject::DefaultRoute);
    }
    if is_reserved(prefix) {
        return Err(Reject::Reserved);
    }
    if !inputs.pools.iter().any(|p| covers(p, prefix)) {
        return Err(Reject::OutsidePools);
    }
    if inputs.network_subnets.iter().any(|n| covers(prefix, n)) {
        return Err(Reject::CoversLocalNetwork);
    }
    for c in &inputs.connected {
        if covers(prefix, c) {
            return Err(Reject::CoversConnected);
        }
        let inside_ours = inputs.network_subnets.iter().any(|n| covers(n, prefix));
        if covers(c, prefix) && !inside_ours {
            return Err(Reject::InsideConnected);
        }
    }
    // Our own address from a peer: never. A shorter prefix over one of our
    // containers (a peer's IPAM block over our stray) only where ipvlan L3
    // delivers to the container by address before any route is looked up,
    // so the container keeps every packet; behind a shim the host would
    // route its container's traffic to the peer (no /32 of ours is there).
    let own_address = prefix.prefix_len() == prefix.max_prefix_len()
        && inputs.local_endpoints.contains(&prefix.addr());
    if own_address || any_endpoint_inside(&inputs.endpoints_via_host, prefix) {
        return Err(Reject::LocalEndpoint);
    }
    if any_inside(&inputs.neighbors, prefix) {
        return Err(Reject::CoversNeighbor);
    }
    if any_inside(&inputs.default_gateways, prefix) {
        return Err(Reject::CoversDefaultGateway);
    }
    if any_inside(&inputs.next_hops, prefix) {
        return Err(Reject::CoversNextHop);
    }
    let nh = next_hop.ok_or(Reject::NoNextHop)?;
    if nh.is_unspecified() {
        return Err(Reject::NoNextHop);
    }
    // An IPv4-mapped next hop (`::ffff:192.0.2.2`: what a peer sets for an
    // IPv6 prefix when it rewrites the next hop over an IPv4 session) is an
    // IPv4 next hop in disguise.
    let mapped = matches!(nh, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
    if mapped || nh.is_ipv4() != matches!(prefix, IpNet::V4(_)) {
        return Err(Reject::NextHopFamily);
    }
    if inputs.own_addresses.contains(&nh) {
        return Err(Reject::NextHopIsSelf);
    }
    if is_link_local(&nh) {
        return Err(Reject::NextHopLinkLocal);
    }
    // A parent's link-local network (fe80::/64 on every IPv6 link) says
    // nothing about where a global next hop is.
    inputs
        .parents
        .iter()
        .find(|p| {
            p.nets
                .iter()
                .any(|n| n.contains(&nh) && !is_link_local(&n.network()))
        })
        .map(|p| p.index)
        .ok_or(Reject::NextHopOffLink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn inputs() -> PolicyInputs {
        PolicyInputs {
            pools: vec![n("10.1.0.0/16"), n("10.1.1.0/24")],
            network_subnets: vec![n("10.1.1.0/24")],
            local_endpoints: ["10.1.1.2".parse::<IpAddr>().unwrap()]
                .into_iter()
                .collect(),
            endpoints_via_host: ["10.1.1.2".parse::<IpAddr>().unwrap()]
                .into_iter()
                .collect(),
            connected: vec![n("192.0.2.0/24"), n("127.0.0.0/8")],
            own_addresses: ["192.0.2.1".parse().unwrap(), "10.1.1.1".parse().unwrap()].into(),
            parents: vec![ParentInfo {
                name: "eth1".into(),
                index: 7,
                nets: vec![n("192.0.2.0/24")],
            }],
            neighbors: ["10.1.7.1".parse().unwrap()].into(),
            next_hops: ["10.1.8.1".parse().unwrap()].into(),
            default_gateways: ["10.1.9.1".parse().unwrap()].into(),
        }
    }

    #[rstest]
    #[case("10.1.2.5/32", "192.0.2.2", Ok(7))]
    #[case("10.1.2.0/24", "192.0.2.2", Ok(7))]
    #[case("10.1.1.9/32", "192.0.2.2", Ok(7))]
    #[case("0.0.0.0/0", "192.0.2.2", Err(Reject::DefaultRoute))]
    #[case("172.16.0.0/24", "192.0.2.2", Err(Reject::OutsidePools))]
    #[case("10.0.0.0/8", "192.0.2.2", Err(Reject::OutsidePools))]
    #[case("10.1.0.0/16", "192.0.2.2", Err(Reject::CoversLocalNetwork))]
    #[case("10.1.1.0/24", "192.0.2.2", Err(Reject::CoversLocalNetwork))]
    #[case("10.1.1.2/32", "192.0.2.2", Err(Reject::LocalEndpoint))]
    #[case("10.1.1.0/30", "192.0.2.2", Err(Reject::LocalEndpoint))]
    #[case("10.1.3.1/32", "192.0.2.1", Err(Reject::NextHopIsSelf))]
    #[case("10.1.3.1/32", "203.0.113.9", Err(Reject::NextHopOffLink))]
    #[case("10.1.7.1/32", "192.0.2.2", Err(Reject::CoversNeighbor))]
    #[case("10.1.7.0/24", "192.0.2.2", Err(Reject::CoversNeighbor))]
    #[case("10.1.7.2/32", "192.0.2.2", Ok(7))]
    #[case("10.1.8.0/24", "192.0.2.2", Err(Reject::CoversNextHop))]
    #[case("10.1.8.1/32", "192.0.2.2", Err(Reject::CoversNextHop))]
    #[case("10.1.9.0/25", "192.0.2.2", Err(Reject::CoversDefaultGateway))]
    #[case("10.1.9.128/25", "192.0.2.2", Ok(7))]
    fn decides(#[case] prefix: &str, #[case] nh: &str, #[case] want: Result<u32, Reject>) {
        assert_eq!(decide(&n(prefix), nh.parse().ok(), &inputs()), want);
    }

    /// The cluster IPAM: one pool on every host, each host announcing its
    /// blocks and a host route per stray. Another host's block and a stray
    /// inside it (a third host's) are both accepted: the kernel's longest
    /// match sends the stray to its host and the rest of the block to the
    /// block's. Our own addresses from a peer are refused on every data
    /// plane. A peer's block over one of our strays (`10.20.2.0/26` over
    /// `10.20.2.9`) is accepted where the stray is on ipvlan L3 (ipvlan
    /// hands its packets to it by address before any route is looked up,
    /// so it keeps them, and the rest of the block becomes reachable) and
    /// refused where the host reaches it through its shim (macvlan, ipvlan
    /// L2, host links: the block would take the stray's traffic away from
    /// the shim's connected subnet route).
    #[rstest]
    #[case("10.20.0.64/26", true, Ok(7))]
    #[case("10.20.0.64/26", false, Ok(7))]
    #[case("10.20.0.70/32", true, Ok(7))]
    #[case("10.20.1.0/28", true, Ok(7))]
    #[case("10.20.0.0/26", true, Err(Reject::LocalEndpoint))]
    #[case("10.20.2.0/26", true, Err(Reject::LocalEndpoint))]
    #[case("10.20.2.0/26", false, Ok(7))]
    #[case("10.20.2.8/30", false, Ok(7))]
    #[case("10.20.2.9/32", false, Err(Reject::LocalEndpoint))]
    #[case("10.20.2.9/32", true, Err(Reject::LocalEndpoint))]
    #[case("10.20.0.2/32", false, Err(Reject::LocalEndpoint))]
    #[case("10.20.0.0/16", false, Err(Reject::CoversLocalNetwork))]
    fn blocks_and_strays_inside_them_are_accepted(
        #[case] prefix: &str,
        #[case] behind_shim: bool,
        #[case] want: Result<u32, Reject>,
    ) {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut i = inputs();
        i.pools = vec![n("10.20.0.0/16")];
        i.network_subnets = vec![n("10.20.0.0/16")];
        // Ours: block 10.20.0.0/26 (gateway .1, containers .2 .3) and a stray in 10.20.2.0/26.
        i.own_addresses.insert(a("10.20.0.1"));
        i.local_endpoints = [a("10.20.0.2"), a("10.20.0.3"), a("10.20.2.9")]
            .into_iter()
            .collect();
        i.endpoints_via_host = if behind_shim {
            i.local_endpoints.clone()
        } else {
            OrdSet::new()
        };
        assert_eq!(decide(&n(prefix), "192.0.2.2".parse().ok(), &i), want);
    }

    /// Reserved ranges are refused even when an accepted pool covers them.
    #[rstest]
    #[case("0.0.0.0/8", "0.0.0.0/8")]
    #[case("0.0.0.0/1", "0.1.2.3/32")]
    #[case("127.0.0.0/8", "127.0.0.1/32")]
    #[case("169.254.0.0/16", "169.254.169.254/32")]
    #[case("224.0.0.0/3", "224.0.0.0/24")]
    #[case("224.0.0.0/3", "239.1.1.1/32")]
    #[case("240.0.0.0/4", "255.255.255.255/32")]
    #[case("128.0.0.0/1", "160.0.0.0/3")]
    fn reserved_ranges_are_refused_inside_any_pool(#[case] pool: &str, #[case] prefix: &str) {
        let mut i = inputs();
        i.pools.push(n(pool));
        assert_eq!(
            decide(&n(prefix), "192.0.2.2".parse().ok(), &i),
            Err(Reject::Reserved)
        );
    }

    /// A dual-stack host: the same rules in IPv6 terms.
    fn inputs6() -> PolicyInputs {
        let mut i = inputs();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        i.pools.extend([n("fd00:1::/32"), n("fd00:1:1::/64")]);
        i.network_subnets.push(n("fd00:1:1::/64"));
        i.local_endpoints.insert(a("fd00:1:1::2"));
        i.endpoints_via_host.insert(a("fd00:1:1::2"));
        i.connected
            .extend([n("2001:db8:f::/64"), n("fe80::/64"), n("::1/128")]);
        i.own_addresses
            .extend([a("2001:db8:f::1"), a("fe80::1"), a("fd00:1:1::1")]);
        i.parents[0]
            .nets
            .extend([n("2001:db8:f::/64"), n("fe80::/64")]);
        i.neighbors.insert(a("fd00:1:7::1"));
        i.next_hops.insert(a("fd00:1:8::1"));
        i.default_gateways.insert(a("fd00:1:9::1"));
        i
    }

    #[rstest]
    #[case("fd00:1:2::5/128", "2001:db8:f::2", Ok(7))]
    #[case("fd00:1:2::/64", "2001:db8:f::2", Ok(7))]
    #[case("fd00:1:1::9/128", "2001:db8:f::2", Ok(7))]
    #[case("::/0", "2001:db8:f::2", Err(Reject::DefaultRoute))]
    #[case("fd00:2::/64", "2001:db8:f::2", Err(Reject::OutsidePools))]
    #[case("fd00::/8", "2001:db8:f::2", Err(Reject::OutsidePools))]
    #[case("fd00:1::/32", "2001:db8:f::2", Err(Reject::CoversLocalNetwork))]
    #[case("fd00:1:1::/64", "2001:db8:f::2", Err(Reject::CoversLocalNetwork))]
    #[case("fd00:1:1::2/128", "2001:db8:f::2", Err(Reject::LocalEndpoint))]
    #[case("fd00:1:1::/120", "2001:db8:f::2", Err(Reject::LocalEndpoint))]
    #[case("fd00:1:3::1/128", "2001:db8:f::1", Err(Reject::NextHopIsSelf))]
    #[case("fd00:1:3::1/128", "2001:db8:e::9", Err(Reject::NextHopOffLink))]
    #[case("fd00:1:3::1/128", "fe80::2", Err(Reject::NextHopLinkLocal))]
    #[case("fd00:1:3::1/128", "fe80::1", Err(Reject::NextHopIsSelf))]
    #[case("fd00:1:3::1/128", "192.0.2.2", Err(Reject::NextHopFamily))]
    #[case("fd00:1:3::1/128", "::ffff:192.0.2.2", Err(Reject::NextHopFamily))]
    #[case("10.1.3.1/32", "2001:db8:f::2", Err(Reject::NextHopFamily))]
    #[case("fd00:1:3::1/128", "::", Err(Reject::NoNextHop))]
    #[case("fd00:1:7::1/128", "2001:db8:f::2", Err(Reject::CoversNeighbor))]
    #[case("fd00:1:8::/64", "2001:db8:f::2", Err(Reject::CoversNextHop))]
    #[case("fd00:1:9::/64", "2001:db8:f::2", Err(Reject::CoversDefaultGateway))]
    #[case("10.1.2.5/32", "192.0.2.2", Ok(7))]
    fn decides_ipv6(#[case] prefix: &str, #[case] nh: &str, #[case] want: Result<u32, Reject>) {
        assert_eq!(decide(&n(prefix), nh.parse().ok(), &inputs6()), want);
    }

    /// An IPv6 stray on ipvlan L3: a peer's /122 block over it is
    /// accepted, its own /128 from a peer still refused.
    #[test]
    fn ipv6_block_over_an_ipvlan_l3_stray_is_accepted() {
        let mut i = inputs6();
        i.endpoints_via_host.clear();
        let nh = "2001:db8:f::2".parse().ok();
        assert_eq!(decide(&n("fd00:1:1::/122"), nh, &i), Ok(7));
        assert_eq!(
            decide(&n("fd00:1:1::2/128"), nh, &i),
            Err(Reject::LocalEndpoint)
        );
    }

    /// IPv6 reserved ranges are refused even inside an `--accept-pool` that
    /// covers them, and IPv6 underlay prefixes like IPv4 ones.
    #[rstest]
    #[case("::/1", "::1/128", Err(Reject::Reserved))]
    #[case("::/1", "::/128", Err(Reject::Reserved))]
    #[case("::/1", "::ffff:10.1.2.3/128", Err(Reject::Reserved))]
    #[case("::/1", "::ffff:0:0/96", Err(Reject::Reserved))]
    #[case("fe80::/10", "fe80::1234/128", Err(Reject::Reserved))]
    #[case("ff00::/8", "ff02::1/128", Err(Reject::Reserved))]
    #[case("ff00::/8", "ff05::/16", Err(Reject::Reserved))]
    #[case("2001:db8::/32", "2001:db8:f::/64", Err(Reject::CoversConnected))]
    #[case("2001:db8::/32", "2001:db8:f::77/128", Err(Reject::InsideConnected))]
    #[case("2001:db8::/32", "2001:db8:a::/64", Ok(7))]
    fn ipv6_reserved_and_underlay_are_refused_inside_any_pool(
        #[case] pool: &str,
        #[case] prefix: &str,
        #[case] want: Result<u32, Reject>,
    ) {
        let mut i = inputs6();
        i.pools.push(n(pool));
        assert_eq!(decide(&n(prefix), "2001:db8:f::2".parse().ok(), &i), want);
    }

    #[rstest]
    #[case("169.253.255.0/24", false)]
    #[case("169.255.0.0/16", false)]
    #[case("223.255.255.0/24", false)]
    #[case("1.0.0.0/8", false)]
    #[case("126.0.0.0/8", false)]
    #[case("128.0.0.0/1", true)]
    #[case("fe80::/64", true)]
    #[case("ff02::1/128", true)]
    #[case("2001:db8::/32", false)]
    #[case("fd00::/8", false)]
    #[case("::ffff:0:0/96", true)]
    #[case("::ffff:192.0.2.0/120", true)]
    #[case("::fffe:0:0/96", false)]
    #[case("::/0", true)]
    #[case("::1/128", true)]
    #[case("::2/128", false)]
    fn reserved_is_exactly_the_listed_ranges(#[case] prefix: &str, #[case] reserved: bool) {
        assert_eq!(is_reserved(&n(prefix)), reserved);
    }

    #[test]
    fn dropped_reasons_are_the_prefix_only_ones() {
        assert!(Reject::OutsidePools.is_dropped());
        assert!(Reject::Reserved.is_dropped());
        assert!(Reject::DefaultRoute.is_dropped());
        assert!(!Reject::CoversNextHop.is_dropped());
        assert!(!Reject::MaxLearned.is_dropped());
    }

    #[test]
    fn underlay_prefixes_are_refused() {
        let mut i = inputs();
        i.pools.push(n("192.0.0.0/8"));
        assert_eq!(
            decide(&n("192.0.2.0/24"), "192.0.2.2".parse().ok(), &i),
            Err(Reject::CoversConnected)
        );
        assert_eq!(
            decide(&n("192.0.2.77/32"), "192.0.2.2".parse().ok(), &i),
            Err(Reject::InsideConnected)
        );
        assert_eq!(
            decide(&n("192.0.0.0/8"), "192.0.2.2".parse().ok(), &i),
            Err(Reject::CoversConnected)
        );
    }

    #[test]
    fn missing_next_hop_is_refused() {
        assert_eq!(
            decide(&n("10.1.2.5/32"), None, &inputs()),
            Err(Reject::NoNextHop)
        );
        assert_eq!(
            decide(&n("10.1.2.5/32"), "0.0.0.0".parse().ok(), &inputs()),
            Err(Reject::NoNextHop)
        );
    }
}
