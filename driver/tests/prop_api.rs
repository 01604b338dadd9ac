//! Property tests of what Docker sends: the request parser and the network
//! and endpoint validation behind it.
//!
//! In: arbitrary bytes, arbitrary JSON, and requests shaped like dockerd's
//! with arbitrary options, subnets, gateways and addresses. Out: never a
//! panic; every accepted network or endpoint obeys the invariants listed in
//! [`SPEC_RULES`] and [`ENDPOINT_RULES`] (a rule is one line there).
//! Cases per property: `PROPTEST_CASES` (default 2,000).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipvlan_bgp::api::convert::{endpoint_spec, network_spec, KNOWN_OPTIONS};
use ipvlan_bgp::api::wire::{
    self, CreateEndpointRequest, CreateNetworkRequest, DiscoveryRequest, EndpointInterface,
    EndpointRequest, IpamData, JoinRequest, NetworkRequest,
};
use ipvlan_bgp::model::network::{self, EndpointSpec, NetworkSpec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 2_000;
    }
    c
}

// ----- generators -----

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names: the protocol's own, or anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "NetworkID",
            "EndpointID",
            "Options",
            "IPv4Data",
            "IPv6Data",
            "Interface",
            "Address",
            "AddressIPv6",
            "MacAddress",
            "SandboxKey",
            "Pool",
            "Gateway",
            "AddressSpace",
            "AuxAddresses",
            "DiscoveryType",
            "DiscoveryData",
            "com.docker.network.generic",
            "com.docker.network.internal",
        ])
        .prop_map(String::from),
        ".{0,12}",
    ]
}

/// A Docker-like ID: mostly valid hex, sometimes anything.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9a-f]{64}",
        1 => "[0-9a-f]{12}",
        1 => ".{0,70}",
    ]
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        // A small universe so subnets, gateways and addresses meet.
        3 => (0u8..4, any::<u8>()).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c, d)),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

/// A subnet, gateway or address as Docker writes it, or garbage.
fn addr_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (v4(), 0u8..=32).prop_map(|(a, l)| format!("{a}/{l}")),
        2 => v4().prop_map(|a| a.to_string()),
        1 => (v4(), 33u8..=255).prop_map(|(a, l)| format!("{a}/{l}")),
        1 => Just(String::new()),
        1 => Just("2001:db8::1/64".to_string()),
        1 => ".{0,24}",
    ]
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        // A small universe so subnets, gateways and addresses meet.
        3 => (0u16..4, any::<u8>()).prop_map(|(c, d)| Ipv6Addr::new(0xfd00, 0, 0, c, 0, 0, 0, d.into())),
        1 => prop::sample::select(vec![
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            "fe80::1".parse().expect("an address"),
            "ff02::1".parse().expect("an address"),
            "::ffff:10.0.0.1".parse().expect("an address"),
        ]),
        1 => any::<u128>().prop_map(Ipv6Addr::from),
    ]
}

/// An IPv6 subnet, gateway or address as Docker writes it, or garbage.
fn addr6_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (v6(), 0u8..=128).prop_map(|(a, l)| format!("{a}/{l}")),
        2 => v6().prop_map(|a| a.to_string()),
        1 => (v6(), 129u8..=255).prop_map(|(a, l)| format!("{a}/{l}")),
        1 => Just(String::new()),
        1 => addr_text(),
    ]
}

/// An IPv6 pool: mostly a proper subnet (often a /64), or anything.
fn pool6_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (v6(), prop_oneof![Just(64u8), 0u8..=128]).prop_map(|(a, l)| {
            let net = ipnet::Ipv6Net::new(a, l).expect("0..=128 is a valid length");
            net.trunc().to_string()
        }),
        1 => addr6_text(),
    ]
}

fn ipam6() -> impl Strategy<Value = IpamData> {
    (
        prop_oneof![4 => Just("LocalDefault".to_string()), 1 => Just("null".to_string())],
        pool6_text(),
        prop::option::of(addr6_text()),
    )
        .prop_map(|(address_space, pool, gateway)| IpamData {
            address_space,
            pool,
            gateway,
            aux_addresses: None,
        })
}

/// A value for an option: one of its documented choices, or anything.
fn option_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "ipvlan", "macvlan", "l2", "l3", "l3s", "L3", "bridge", "private", "vepa",
            "endpoint", "subnet", "true", "false", "eth1", "eth1.10", "eth1.0", "eth1.4095",
            "eth1.99999", "a.b", ".10", "ibp94s0f0", "averyveryverylongname0", "e/th", "e:1", "",
        ])
        .prop_map(|s| Value::String(s.into())),
        1 => ".{0,20}".prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i32>().prop_map(|n| json!(n)),
        1 => any_json(),
    ]
}

/// Values that make sense for a known option (so validation gets past it).
fn valid_value(key: &str) -> Vec<&'static str> {
    match key {
        "parent" => vec!["eth1", "eth1.10", "ibp94s0f0", "eth1.4094"],
        "dataplane" => vec!["ipvlan", "macvlan"],
        "ipvlan_mode" | "mode" => vec!["l2", "l3", "l3s"],
        "ipvlan_flag" | "macvlan_mode" => vec!["bridge", "private", "vepa"],
        "announce" => vec!["endpoint", "subnet"],
        "host_link" => vec!["true", "false"],
        _ => vec!["x"],
    }
}

/// `-o key=value` options: each known key absent, sensible or anything, and
/// now and then an unknown key.
fn generic_options() -> impl Strategy<Value = Map<String, Value>> {
    let per_key: Vec<_> = KNOWN_OPTIONS
        .iter()
        .map(|(k, _)| {
            let key = k.to_string();
            prop_oneof![
                6 => Just(None),
                3 => prop::sample::select(valid_value(k))
                    .prop_map(|v| Some(Value::String(v.into()))),
                1 => option_value().prop_map(Some),
            ]
            .prop_map(move |v| v.map(|v| (key.clone(), v)))
        })
        .collect();
    let unknown = prop_oneof![
        9 => Just(None),
        1 => (".{0,12}", option_value()).prop_map(Some),
    ];
    (per_key, unknown).prop_map(|(known, unknown)| {
        known
            .into_iter()
            .flatten()
            .chain(unknown)
            .collect::<Map<_, _>>()
    })
}

/// A pool as Docker writes it: mostly a proper subnet, or anything.
fn pool_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (v4(), 1u8..=32).prop_map(|(a, l)| {
            let net = ipnet::Ipv4Net::new(a, l).expect("1..=32 is a valid length");
            net.trunc().to_string()
        }),
        1 => addr_text(),
    ]
}

fn ipam() -> impl Strategy<Value = IpamData> {
    (
        prop_oneof![
            4 => Just(String::new()),
            1 => Just("null".to_string()),
            1 => ".{0,8}",
        ],
        pool_text(),
        prop::option::of(addr_text()),
    )
        .prop_map(|(address_space, pool, gateway)| IpamData {
            address_space,
            pool,
            gateway,
            aux_addresses: None,
        })
}

fn create_network() -> impl Strategy<Value = CreateNetworkRequest> {
    (
        id(),
        prop::option::of(generic_options()),
        prop_oneof![
            Just(None),
            Just(Some(Value::Bool(true))),
            any_json().prop_map(Some)
        ],
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(vec![])),
            8 => prop::collection::vec(ipam(), 1..2).prop_map(Some),
            1 => prop::collection::vec(ipam(), 0..3).prop_map(Some),
        ],
        prop_oneof![
            5 => Just(None),
            1 => Just(Some(vec![])),
            4 => prop::collection::vec(ipam6(), 1..2).prop_map(Some),
            1 => prop::collection::vec(prop_oneof![ipam6(), ipam()], 0..3).prop_map(Some),
        ],
        prop_oneof![4 => Just(None), 1 => any_json().prop_map(Some), 1 => Just(Some(json!(false)))],
    )
        .prop_map(
            |(network_id, generic, internal, ipv4_data, ipv6_data, enable_ipv4)| {
                let mut options = wire::Options::new();
                if let Some(g) = generic {
                    options.insert("com.docker.network.generic".into(), Value::Object(g));
                }
                if let Some(i) = internal {
                    options.insert("com.docker.network.internal".into(), i);
                }
                if let Some(e) = enable_ipv4 {
                    options.insert("com.docker.network.enable_ipv4".into(), e);
                }
                CreateNetworkRequest {
                    network_id,
                    options: Some(options),
                    ipv4_data,
                    ipv6_data,
                }
            },
        )
}

fn create_endpoint() -> impl Strategy<Value = CreateEndpointRequest> {
    (
        id(),
        id(),
        prop_oneof![4 => addr_text(), 1 => Just(String::new())],
        prop_oneof![3 => Just(String::new()), 3 => addr6_text()],
        prop_oneof![
            3 => Just(String::new()),
            1 => "[0-9a-f]{2}(:[0-9a-f]{2}){5}",
            1 => ".{0,20}",
        ],
    )
        .prop_map(
            |(network_id, endpoint_id, address, address_ipv6, mac_address)| CreateEndpointRequest {
                network_id,
                endpoint_id,
                interface: Some(EndpointInterface {
                    address,
                    address_ipv6,
                    mac_address,
                }),
                options: None,
            },
        )
}

// ----- invariants of what validation accepts -----

type Rule<T> = (&'static str, fn(&T) -> bool);

/// Whether a subnet meets one of the ranges no container network may touch
/// (written out as numbers, independently of the driver's own tables).
fn touches_reserved(s: &NetworkSpec) -> bool {
    s.subnet
        .is_some_and(|n| common::touches_reserved_v4(n.network().into(), n.broadcast().into()))
        || s.subnet6
            .is_some_and(|n| common::touches_reserved_v6(n.network().into(), n.broadcast().into()))
}

/// What every accepted network satisfies.
const SPEC_RULES: &[Rule<NetworkSpec>] = &[
    ("at least one subnet", |s| {
        s.subnet.is_some() || s.subnet6.is_some()
    }),
    ("subnets are truncated", |s| {
        s.subnet.is_none_or(|n| n.trunc() == n) && s.subnet6.is_none_or(|n| n.trunc() == n)
    }),
    ("subnets touch no reserved range", |s| !touches_reserved(s)),
    ("subnet is not 0.0.0.0/0", |s| {
        s.subnet.is_none_or(|n| n.prefix_len() > 0)
    }),
    (
        "IPv6 subnet is neither ::/0 nor too small for endpoints",
        |s| {
            s.subnet6
                .is_none_or(|n| (1..=126).contains(&n.prefix_len()))
        },
    ),
    ("gateways inside their subnets", |s| {
        s.gateway
            .is_none_or(|g| s.subnet.is_some_and(|n| n.contains(&g.addr())))
            && s.gateway6
                .is_none_or(|g| s.subnet6.is_some_and(|n| n.contains(&g.addr())))
    }),
    ("gateways carry their subnet's length", |s| {
        s.gateway
            .is_none_or(|g| s.subnet.is_some_and(|n| g.prefix_len() == n.prefix_len()))
            && s.gateway6
                .is_none_or(|g| s.subnet6.is_some_and(|n| g.prefix_len() == n.prefix_len()))
    }),
    ("parent is a valid interface name", |s| {
        network::valid_ifname(&s.parent.name)
    }),
    ("a VLAN parent names its lower link and an ID 1-4094", |s| {
        s.parent.vlan.as_ref().is_none_or(|(lower, id)| {
            network::valid_ifname(lower)
                && (1..=4094).contains(id)
                && s.parent.name == format!("{lower}.{id}")
        })
    }),
    ("a host-side link has a gateway in each family", |s| {
        !s.has_shim()
            || (s.subnet.is_some() == s.gateway.is_some()
                && s.subnet6.is_some() == s.gateway6.is_some())
    }),
    ("host_link only with ipvlan l3/l3s", |s| {
        !(s.host_link && s.dataplane.is_l2())
    }),
    ("the ID is a valid ID", |s| {
        network::check_id("network", &s.id).is_ok()
    }),
];

/// What every accepted endpoint satisfies (against its network).
const ENDPOINT_RULES: &[Rule<(NetworkSpec, EndpointSpec)>] = &[
    (
        "an address in each family of the network, no other",
        |(n, e)| {
            n.subnet.is_some() == e.address.is_some() && n.subnet6.is_some() == e.address6.is_some()
        },
    ),
    ("addresses inside their subnets", |(n, e)| {
        e.address
            .is_none_or(|a| n.subnet.is_some_and(|s| s.contains(&a.addr())))
            && e.address6
                .is_none_or(|a| n.subnet6.is_some_and(|s| s.contains(&a.addr())))
    }),
    ("addresses carry their subnet's length", |(n, e)| {
        e.address
            .is_none_or(|a| n.subnet.is_some_and(|s| a.prefix_len() == s.prefix_len()))
            && e.address6
                .is_none_or(|a| n.subnet6.is_some_and(|s| a.prefix_len() == s.prefix_len()))
    }),
    ("no address is a gateway", |(n, e)| {
        !n.gateways().any(|g| e.has_addr(g.addr()))
    }),
    ("no MAC address on ipvlan", |(n, e)| {
        e.mac.is_none() || !n.dataplane.is_ipvlan()
    }),
];

fn check<T: std::fmt::Debug>(rules: &[Rule<T>], v: &T) -> Result<(), TestCaseError> {
    for (name, rule) in rules {
        prop_assert!(rule(v), "accepted but breaks {name:?}: {v:#?}");
    }
    Ok(())
}

/// Parses `body` into every request type, as the plugin server does.
fn parse_all(body: &[u8]) {
    let _ = serde_json::from_slice::<CreateNetworkRequest>(body)
        .map(|r| (wire::generic_options(&r.options), network_spec(&r, None)));
    let _ = serde_json::from_slice::<NetworkRequest>(body);
    let _ = serde_json::from_slice::<CreateEndpointRequest>(body);
    let _ = serde_json::from_slice::<EndpointRequest>(body)
        .map(|r| wire::flag_option(&r.options, "com.docker.network.internal"));
    let _ = serde_json::from_slice::<JoinRequest>(body);
    let _ = serde_json::from_slice::<DiscoveryRequest>(body);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_parse_or_fail(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&body);
    }

    #[test]
    fn any_json_parses_or_fails(v in any_json()) {
        parse_all(&serde_json::to_vec(&v).expect("a Value serializes"));
    }

    #[test]
    fn any_request_shaped_json_parses_or_fails(
        fields in prop::collection::btree_map(field_name(), any_json(), 0..8)
    ) {
        parse_all(&serde_json::to_vec(&fields).expect("a map serializes"));
    }

    #[test]
    fn accepted_networks_are_sane(
        req in create_network(),
        default_parent in prop::option::of(prop::sample::select(vec!["eth1", "eth1.10", "bad/name"])),
    ) {
        // Through the wire too: what dockerd sends is bytes.
        let body = serde_json::to_vec(&req).expect("a request serializes");
        let req: CreateNetworkRequest = serde_json::from_slice(&body).expect("our own request parses");
        if let Ok(spec) = network_spec(&req, default_parent) {
            check(SPEC_RULES, &spec)?;
        }
    }

    /// Endpoints with addresses taken from the accepted network's own
    /// subnets (so that most pass): every family present gets an address
    /// in it, none is the gateway, and what is accepted obeys the rules.
    #[test]
    fn endpoints_in_accepted_networks_are_sane(
        net in create_network(),
        id in "[0-9a-f]{64}",
        offsets in (any::<u32>(), any::<u128>()),
        drop in prop::sample::select(vec![None, Some(4u8), Some(6u8)]),
    ) {
        let Ok(spec) = network_spec(&net, Some("eth1")) else {
            return Ok(());
        };
        let a4 = spec.subnet.filter(|_| drop != Some(4)).map(|n| {
            let size = 1u64 << (32 - n.prefix_len());
            let a = Ipv4Addr::from((u64::from(u32::from(n.network())) + u64::from(offsets.0) % size) as u32);
            format!("{a}/{}", n.prefix_len())
        });
        let a6 = spec.subnet6.filter(|_| drop != Some(6)).map(|n| {
            let host = if n.prefix_len() == 0 { offsets.1 } else { offsets.1 % (1u128 << (128 - n.prefix_len())) };
            format!("{}/{}", Ipv6Addr::from(u128::from(n.network()) + host), n.prefix_len())
        });
        let req = CreateEndpointRequest {
            network_id: spec.id.clone(),
            endpoint_id: id,
            interface: Some(EndpointInterface {
                address: a4.clone().unwrap_or_default(),
                address_ipv6: a6.clone().unwrap_or_default(),
                mac_address: String::new(),
            }),
            options: None,
        };
        match endpoint_spec(&req, &spec) {
            Ok(e) => check(ENDPOINT_RULES, &(spec, e))?,
            Err(e) => {
                // Refused only for a reason: a missing family, or the gateway.
                let e = e.to_string();
                let is_gateway = spec.gateways().any(|g| {
                    [&a4, &a6].iter().any(|a| a.as_deref().is_some_and(|a| a.starts_with(&format!("{}/", g.addr()))))
                });
                prop_assert!(drop.is_some() || is_gateway, "refused {a4:?} {a6:?} in {spec:?}: {e}");
            }
        }
    }

    #[test]
    fn accepted_endpoints_are_sane(net in create_network(), ep in create_endpoint()) {
        let Ok(spec) = network_spec(&net, Some("eth1")) else {
            return Ok(());
        };
        if let Ok(e) = endpoint_spec(&ep, &spec) {
            check(ENDPOINT_RULES, &(spec, e))?;
        }
    }
}

/// The generators reach the interesting part: a fair share of generated
/// networks is accepted (else the properties above would hold vacuously).
#[test]
fn generators_reach_accepted_networks() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = create_network();
    let (mut nets, mut eps) = (0, 0);
    let (mut dual, mut v6only, mut eps6) = (0, 0, 0);
    for _ in 0..4_000 {
        let req = strategy.new_tree(&mut runner).expect("a value").current();
        if let Ok(spec) = network_spec(&req, Some("eth1")) {
            nets += 1;
            dual += (spec.subnet.is_some() && spec.subnet6.is_some()) as u32;
            v6only += (spec.subnet.is_none()) as u32;
            let ep = create_endpoint()
                .new_tree(&mut runner)
                .expect("a value")
                .current();
            if let Ok(e) = endpoint_spec(&ep, &spec) {
                eps += 1;
                eps6 += e.address6.is_some() as u32;
            }
        }
    }
    eprintln!(
        "accepted: {nets} of 4000 networks ({dual} dual stack, {v6only} IPv6-only), {eps} endpoints ({eps6} with IPv6)"
    );
    assert!(
        nets >= 100,
        "only {nets} of 4000 generated networks accepted"
    );
    assert!(
        dual >= 10 && v6only >= 10,
        "dual stack {dual}, IPv6-only {v6only}"
    );
    assert!(
        eps >= 5 && eps6 >= 2,
        "only {eps} generated endpoints accepted ({eps6} with IPv6)"
    );
}
