//! Property tests of the import policy (`policy::decide`).
//!
//! In: random policy inputs (pools, network subnets, endpoints, connected
//! networks, own addresses, parents) drawn from a small address universe so
//! that they overlap, IPv4 and IPv6 (link-local, IPv4-mapped, loopback,
//! multicast included), and random learned prefixes and next hops. Out:
//! never a panic, and every accepted prefix obeys each rule in
//! [`ACCEPT_RULES`] (one line per rule). Cases: `PROPTEST_CASES` (default 2,000).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipvlan_bgp::bgp::policy::{any_endpoint_inside, any_inside, decide, ParentInfo, PolicyInputs};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 2_000;
    }
    c
}

/// Addresses in 10.0.0.0/22 and 192.0.2.0/24, sometimes anywhere; IPv6
/// ones as often (see [`addr6`]).
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![addr4(), addr6()]
}

fn addr4() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        6 => (0u8..4, any::<u8>()).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(10, 0, c, d))),
        3 => any::<u8>().prop_map(|d| IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))),
        1 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
    ]
}

/// IPv6: fd00:0:0:0..3::/64 (container networks), the underlay
/// 2001:db8:f::/64, link-local, IPv4-mapped, `::`, `::1`, multicast, anywhere.
fn addr6() -> impl Strategy<Value = IpAddr> {
    let v6 = |a: Ipv6Addr| IpAddr::V6(a);
    prop_oneof![
        6 => (0u16..4, any::<u8>()).prop_map(move |(c, d)| v6(Ipv6Addr::new(0xfd00, 0, 0, c, 0, 0, 0, d.into()))),
        3 => any::<u8>().prop_map(move |d| v6(Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, d.into()))),
        1 => any::<u8>().prop_map(move |d| v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, d.into()))),
        1 => (0u8..4, any::<u8>()).prop_map(move |(c, d)| v6(Ipv4Addr::new(10, 0, c, d).to_ipv6_mapped())),
        1 => prop_oneof![Just(Ipv6Addr::UNSPECIFIED), Just(Ipv6Addr::LOCALHOST), Just(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1))].prop_map(v6),
        1 => any::<u128>().prop_map(move |a| v6(a.into())),
    ]
}

/// A prefix around [`addr`], mostly long enough to sit inside a pool.
fn prefix() -> impl Strategy<Value = IpNet> {
    (
        addr(),
        prop_oneof![1 => Just(0u8), 2 => 1u8..16, 8 => 16u8..=32, 1 => 33u8..=128],
    )
        .prop_map(|(a, len)| {
            // IPv6: the same shape shifted to its lengths (mostly /48../128).
            let len = match a {
                IpAddr::V4(_) => len.min(32),
                IpAddr::V6(_) if len >= 16 => 48 + (len.min(32) - 16) * 5,
                IpAddr::V6(_) => len * 3,
            };
            IpNet::new(a, len)
                .expect("length within the family")
                .trunc()
        })
}

fn nets(max: usize) -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec(prefix(), 0..max)
}

/// The host's parents: the dual-stack underlay 192.0.2.0/24 and
/// 2001:db8:f::/64 (plus its link-local network) on ifindex 7 mostly, and others.
fn parents() -> impl Strategy<Value = Vec<ParentInfo>> {
    let underlay = ParentInfo {
        name: "eth1".into(),
        index: 7,
        nets: vec![
            IpNet::V4(Ipv4Net::new(Ipv4Addr::new(192, 0, 2, 0), 24).expect("valid")),
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0), 64).expect("valid"),
            ),
            IpNet::V6(Ipv6Net::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64).expect("valid")),
        ],
    };
    (
        prop::option::weighted(0.8, Just(underlay)),
        prop::collection::vec(
            (1u32..100, nets(3)).prop_map(|(index, nets)| ParentInfo {
                name: format!("p{index}"),
                index,
                nets,
            }),
            0..3,
        ),
    )
        .prop_map(|(u, rest)| u.into_iter().chain(rest).collect())
}

fn inputs() -> impl Strategy<Value = PolicyInputs> {
    (
        (nets(4), nets(3), prop::collection::btree_set(addr(), 0..4)),
        (
            nets(3),
            prop::collection::btree_set(addr(), 0..4),
            parents(),
        ),
        (
            prop::collection::btree_set(addr(), 0..3),
            prop::collection::btree_set(addr(), 0..3),
            prop::collection::btree_set(addr(), 0..2),
        ),
    )
        .prop_map(
            |(
                (mut pools, network_subnets, local_endpoints),
                (connected, own_addresses, parents),
                (neighbors, next_hops, default_gateways),
            )| {
                // As policy_inputs builds them: network subnets are pools too.
                pools.extend(network_subnets.iter().copied());
                // Every other endpoint is behind a shim (L2 data planes).
                let endpoints_via_host = local_endpoints.iter().step_by(2).copied().collect();
                PolicyInputs {
                    pools,
                    network_subnets,
                    local_endpoints: local_endpoints.into_iter().collect(),
                    endpoints_via_host,
                    connected,
                    own_addresses,
                    parents,
                    neighbors,
                    next_hops,
                    default_gateways,
                }
            },
        )
}

/// Whether a prefix meets one of the ranges that are never container
/// networks (numbers written out, independently of the driver's table).
fn touches_reserved(p: &IpNet) -> bool {
    match p {
        IpNet::V4(v4) => common::touches_reserved_v4(v4.network().into(), v4.broadcast().into()),
        IpNet::V6(v6) => {
            let (a, b) = (u128::from(v6.network()), u128::from(v6.broadcast()));
            [
                (0u128, 1u128),                       // ::/128 and ::1/128
                (0xffff_0000_0000, 0xffff_ffff_ffff), // ::ffff:0:0/96
                (0xfe80 << 112, (0xfec0 << 112) - 1), // fe80::/10
                (0xff00 << 112, u128::MAX),           // ff00::/8
            ]
            .iter()
            .any(|(lo, hi)| a <= *hi && *lo <= b)
        }
    }
}

/// A learned path and the inputs it meets.
#[derive(Debug)]
struct Case {
    prefix: IpNet,
    next_hop: Option<IpAddr>,
    inputs: PolicyInputs,
}

type Rule = (&'static str, fn(&Case, u32) -> bool);

/// What every accepted prefix satisfies (`u32` is the returned ifindex).
const ACCEPT_RULES: &[Rule] = &[
    ("never a default route", |c, _| c.prefix.prefix_len() > 0),
    ("never in a reserved range", |c, _| {
        !touches_reserved(&c.prefix)
    }),
    ("never covers a BGP neighbour", |c, _| {
        !c.inputs.neighbors.iter().any(|a| c.prefix.contains(a))
    }),
    ("never covers a next hop in use", |c, _| {
        !c.inputs.next_hops.iter().any(|a| c.prefix.contains(a))
    }),
    ("never covers a default gateway", |c, _| {
        !c.inputs
            .default_gateways
            .iter()
            .any(|a| c.prefix.contains(a))
    }),
    ("inside some pool", |c, _| {
        c.inputs.pools.iter().any(|p| p.contains(&c.prefix))
    }),
    ("never covers a network subnet of this host", |c, _| {
        !c.inputs
            .network_subnets
            .iter()
            .any(|n| c.prefix.contains(n))
    }),
    ("never a local endpoint's own address", |c, _| {
        !c.inputs
            .local_endpoints
            .iter()
            .any(|e| c.prefix == IpNet::from(*e))
    }),
    (
        "never covers a local endpoint reached through the host",
        |c, _| {
            !c.inputs
                .endpoints_via_host
                .iter()
                .any(|e| c.prefix.contains(e))
        },
    ),
    ("never covers a connected network", |c, _| {
        !c.inputs.connected.iter().any(|n| c.prefix.contains(n))
    }),
    (
        "inside a connected network only within our own subnets",
        |c, _| {
            c.inputs.connected.iter().all(|n| {
                !n.contains(&c.prefix)
                    || c.inputs
                        .network_subnets
                        .iter()
                        .any(|s| s.contains(&c.prefix))
            })
        },
    ),
    (
        "the next hop is of the prefix's family, never IPv4-mapped",
        |c, _| {
            c.next_hop.is_some_and(|nh| {
                let mapped =
                    matches!(nh, IpAddr::V6(a) if a.segments()[..6] == [0, 0, 0, 0, 0, 0xffff]);
                nh.is_ipv4() == c.prefix.addr().is_ipv4() && !mapped
            })
        },
    ),
    ("the next hop is never link-local", |c, _| {
        c.next_hop.is_some_and(|nh| match nh {
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 != 0xfe80,
            IpAddr::V4(_) => true,
        })
    }),
    ("has a next hop that is not ours", |c, _| {
        c.next_hop
            .is_some_and(|nh| !nh.is_unspecified() && !c.inputs.own_addresses.contains(&nh))
    }),
    (
        "the ifindex is a parent's with the next hop on its subnet",
        |c, ifindex| {
            c.inputs.parents.iter().any(|p| {
                p.index == ifindex
                    && c.next_hop
                        .is_some_and(|nh| p.nets.iter().any(|n| n.contains(&nh)))
            })
        },
    ),
];

/// A path: its next hop mostly of the prefix's family, sometimes of any.
fn case() -> impl Strategy<Value = Case> {
    (prefix(), inputs())
        .prop_flat_map(|(prefix, inputs)| {
            let same = if prefix.addr().is_ipv4() {
                addr4().boxed()
            } else {
                addr6().boxed()
            };
            let nh = prop_oneof![9 => same, 1 => addr()];
            (Just(prefix), prop::option::weighted(0.95, nh), Just(inputs))
        })
        .prop_map(|(prefix, next_hop, inputs)| Case {
            prefix,
            next_hop,
            inputs,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn accepted_prefixes_obey_every_rule(c in case()) {
        if let Ok(ifindex) = decide(&c.prefix, c.next_hop, &c.inputs) {
            for (name, rule) in ACCEPT_RULES {
                prop_assert!(rule(&c, ifindex), "accepted but breaks {name:?}: ifindex {ifindex}, {c:#?}");
            }
        }
    }

    /// The range query behind the endpoint, neighbour, gateway and next-hop
    /// rules finds exactly the addresses a scan of the set finds.
    #[test]
    fn range_query_equals_a_scan(
        set in prop::collection::btree_set(addr(), 0..40),
        p in prefix(),
    ) {
        prop_assert_eq!(any_inside(&set, &p), set.iter().any(|a| p.contains(a)));
        let endpoints: imbl::OrdSet<std::net::IpAddr> = set.iter().copied().collect();
        prop_assert_eq!(any_endpoint_inside(&endpoints, &p), set.iter().any(|a| p.contains(a)));
    }

    /// Deciding twice gives the same answer (no hidden state).
    #[test]
    fn decisions_are_stable(c in case()) {
        prop_assert_eq!(
            decide(&c.prefix, c.next_hop, &c.inputs),
            decide(&c.prefix, c.next_hop, &c.inputs)
        );
    }
}

/// The generator reaches acceptance often enough for the rules to bite.
#[test]
fn generator_reaches_accepted_prefixes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let accepted = (0..5_000)
        .filter(|_| {
            let c = strategy.new_tree(&mut runner).expect("a value").current();
            decide(&c.prefix, c.next_hop, &c.inputs).is_ok()
        })
        .count();
    eprintln!("accepted: {accepted} of 5000 cases");
    assert!(accepted >= 50, "only {accepted} of 5000 cases accepted");
}

/// IPv6 prefixes are accepted often enough too.
#[test]
fn generator_reaches_accepted_ipv6_prefixes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let accepted = (0..5_000)
        .filter(|_| {
            let c = strategy.new_tree(&mut runner).expect("a value").current();
            c.prefix.addr().is_ipv6() && decide(&c.prefix, c.next_hop, &c.inputs).is_ok()
        })
        .count();
    eprintln!("IPv6 accepted: {accepted} of 5000 cases");
    assert!(
        accepted >= 50,
        "only {accepted} IPv6 cases of 5000 accepted"
    );
}
