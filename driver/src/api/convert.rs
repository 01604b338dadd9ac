//! Docker's requests into domain values, once.
//!
//! In: the wire types of CreateNetwork and CreateEndpoint ([`super::wire`]).
//! Out: a [`NetworkSpec`] or [`EndpointSpec`] that cannot hold an invalid
//! value, or an [`InvalidRequest`] that tells the user which option to
//! change. Nothing here touches the kernel or the state; the driver only acts
//! on what converted. Answers go the other way in [`join_response`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::wire::{
    self, CreateEndpointRequest, CreateNetworkRequest, InterfaceName, JoinResponse, StaticRoute,
};
use crate::driver::Joined;
use crate::network::{
    check_id, invalid, parse_mac, Announce, Dataplane, EndpointSpec, InvalidRequest, IpvlanFlag,
    IpvlanMode, MacvlanMode, NetworkSpec, Parent,
};

/// Options accepted under `-o`, with what they take.
pub const KNOWN_OPTIONS: &[(&str, &str)] = &[
    (
        "parent",
        "the host interface, e.g. eth1, or eth1.10 for an 802.1Q sub-interface",
    ),
    ("dataplane", "ipvlan (default) | macvlan"),
    ("ipvlan_mode", "l3 (default) | l2 | l3s"),
    ("mode", "alias of ipvlan_mode"),
    ("ipvlan_flag", "bridge (default) | private | vepa"),
    ("macvlan_mode", "bridge (default) | private | vepa"),
    (
        "announce",
        "endpoint (default: one /32 per container) | subnet",
    ),
    (
        "host_link",
        "false (default) | true: ipvlan l3/l3s only, a host-side link so the host reaches its own containers",
    ),
];

fn parse_enum<T: Copy>(key: &str, value: &str, choices: &[(&str, T)]) -> Result<T, InvalidRequest> {
    choices
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(value))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            invalid(format!(
                "option {key}={value:?} is not valid; use one of: {}",
                names.join(", ")
            ))
        })
}

fn parse_cidr_or_addr(s: &str, prefix_len: u8) -> Option<Ipv4Net> {
    if let Ok(net) = s.parse::<Ipv4Net>() {
        return Some(net);
    }
    s.parse::<Ipv4Addr>()
        .ok()
        .and_then(|a| Ipv4Net::new(a, prefix_len).ok())
}

/// Validates a CreateNetwork request. `default_parent` comes from `--parent`.
pub fn network_spec(
    req: &CreateNetworkRequest,
    default_parent: Option<&str>,
) -> Result<NetworkSpec, InvalidRequest> {
    check_id("network", &req.network_id)?;
    let generic = wire::generic_options(&req.options).map_err(invalid)?;
    for key in generic.keys() {
        if !KNOWN_OPTIONS.iter().any(|(k, _)| k == key) {
            let known: Vec<String> = KNOWN_OPTIONS
                .iter()
                .map(|(k, v)| format!("{k} ({v})"))
                .collect();
            return Err(invalid(format!(
                "unknown option {key:?}; this driver knows: {}",
                known.join("; ")
            )));
        }
    }
    let parent_name = generic
        .get("parent")
        .map(String::as_str)
        .or(default_parent)
        .ok_or_else(|| {
            invalid("no parent interface: add -o parent=<host interface> (e.g. eth1), or start the driver with --parent")
        })?;
    let parent = Parent::parse(parent_name)?;
    let dataplane = parse_dataplane(&generic)?;
    let announce = match generic.get("announce") {
        None => Announce::Endpoint,
        Some(v) => parse_enum(
            "announce",
            v,
            &[
                ("endpoint", Announce::Endpoint),
                ("subnet", Announce::Subnet),
            ],
        )?,
    };

    let v4 = req.ipv4_data.clone().unwrap_or_default();
    let v6 = req.ipv6_data.clone().unwrap_or_default();
    if !v6.is_empty() {
        return Err(invalid(if v4.is_empty() {
            "IPv6-only networks are not supported yet: create the network with an IPv4 --subnet and without --ipv6"
        } else {
            "IPv6 is not supported yet: create the network without --ipv6"
        }));
    }
    let ipam = match v4.as_slice() {
        [] => {
            return Err(invalid(
                "the network has no IPv4 subnet: add --subnet a.b.c.d/len",
            ))
        }
        [one] => one,
        _ => {
            return Err(invalid(
                "one IPv4 subnet per network: create one network per --subnet",
            ))
        }
    };
    let subnet: Ipv4Net = ipam.pool.parse().map_err(|_| {
        invalid(format!(
            "IPv4 pool {:?} is not a subnet (expected a.b.c.d/len)",
            ipam.pool
        ))
    })?;
    if subnet.prefix_len() == 0 || ipam.address_space == "null" {
        return Err(invalid(
            "this driver needs a real subnet: use the default IPAM driver with --subnet a.b.c.d/len (not --ipam-driver null)",
        ));
    }
    if subnet.trunc() != subnet {
        return Err(invalid(format!(
            "subnet {subnet} has host bits set; did you mean {}?",
            subnet.trunc()
        )));
    }
    let gateway = match ipam.gateway.as_deref().filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => {
            let gw = parse_cidr_or_addr(g, subnet.prefix_len())
                .ok_or_else(|| invalid(format!("gateway {g:?} is not an IPv4 address")))?;
            if !subnet.contains(&gw.addr()) {
                return Err(invalid(format!("gateway {g} is outside subnet {subnet}")));
            }
            Some(Ipv4Net::new(gw.addr(), subnet.prefix_len()).map_err(|e| invalid(e.to_string()))?)
        }
    };
    let host_link = match generic.get("host_link") {
        None => false,
        Some(v) => parse_enum("host_link", v, &[("true", true), ("false", false)])?,
    };
    if host_link && dataplane.is_l2() {
        return Err(invalid(format!(
            "host_link applies to ipvlan l3/l3s; with {} the host already reaches its containers through the gateway shim",
            dataplane.describe()
        )));
    }
    if (dataplane.is_l2() || host_link) && gateway.is_none() {
        return Err(invalid(format!(
            "{} needs a gateway address for the host side: add --gateway",
            dataplane.describe()
        )));
    }
    let spec = NetworkSpec {
        id: req.network_id.clone(),
        parent,
        dataplane,
        subnet,
        gateway,
        announce,
        internal: wire::flag_option(&req.options, "com.docker.network.internal"),
        host_link,
    };
    // A subnet that can never be a container network is refused while
    // parsing, so no spec that holds one exists (found by prop_api).
    spec.check_subnet()?;
    Ok(spec)
}

fn parse_dataplane(o: &BTreeMap<String, String>) -> Result<Dataplane, InvalidRequest> {
    let ipvlan_mode = match (o.get("ipvlan_mode"), o.get("mode")) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            return Err(invalid(format!(
                "ipvlan_mode={a} and mode={b} disagree; mode is an alias of ipvlan_mode, give one"
            )))
        }
        (Some(a), _) => Some(("ipvlan_mode", a)),
        (None, Some(b)) => Some(("mode", b)),
        (None, None) => None,
    };
    let ipvlan_flag = o.get("ipvlan_flag");
    let macvlan_mode = o.get("macvlan_mode");
    let dataplane = match o.get("dataplane").map(String::as_str) {
        Some(v) => parse_enum("dataplane", v, &[("ipvlan", true), ("macvlan", false)])?,
        // `-o macvlan_mode=...` alone says which data plane is meant.
        None => macvlan_mode.is_none(),
    };
    if dataplane {
        if macvlan_mode.is_some() {
            return Err(invalid(
                "macvlan_mode applies to -o dataplane=macvlan; for ipvlan use ipvlan_mode and ipvlan_flag",
            ));
        }
        let mode = match ipvlan_mode {
            None => IpvlanMode::L3,
            Some((key, v)) => parse_enum(
                key,
                v,
                &[
                    ("l3", IpvlanMode::L3),
                    ("l2", IpvlanMode::L2),
                    ("l3s", IpvlanMode::L3s),
                ],
            )?,
        };
        let flag = match ipvlan_flag {
            None => IpvlanFlag::Bridge,
            Some(v) => parse_enum(
                "ipvlan_flag",
                v,
                &[
                    ("bridge", IpvlanFlag::Bridge),
                    ("private", IpvlanFlag::Private),
                    ("vepa", IpvlanFlag::Vepa),
                ],
            )?,
        };
        Ok(Dataplane::Ipvlan { mode, flag })
    } else {
        if let Some((key, _)) = ipvlan_mode {
            return Err(invalid(format!(
                "{key} applies to -o dataplane=ipvlan; for macvlan use macvlan_mode"
            )));
        }
        if ipvlan_flag.is_some() {
            return Err(invalid(
                "ipvlan_flag applies to -o dataplane=ipvlan; for macvlan use macvlan_mode",
            ));
        }
        let mode = match macvlan_mode {
            None => MacvlanMode::Bridge,
            Some(v) => parse_enum(
                "macvlan_mode",
                v,
                &[
                    ("bridge", MacvlanMode::Bridge),
                    ("private", MacvlanMode::Private),
                    ("vepa", MacvlanMode::Vepa),
                ],
            )?,
        };
        Ok(Dataplane::Macvlan { mode })
    }
}

/// Validates a CreateEndpoint request against its network.
pub fn endpoint_spec(
    req: &CreateEndpointRequest,
    network: &NetworkSpec,
) -> Result<EndpointSpec, InvalidRequest> {
    check_id("endpoint", &req.endpoint_id)?;
    let iface = req.interface.clone().unwrap_or_default();
    if !iface.address_ipv6.is_empty() {
        return Err(invalid("IPv6 endpoint addresses are not supported yet"));
    }
    if iface.address.is_empty() {
        return Err(invalid(
            "the endpoint has no IPv4 address: this driver relies on Docker's IPAM to assign one",
        ));
    }
    let address: Ipv4Net = parse_cidr_or_addr(&iface.address, network.subnet.prefix_len())
        .ok_or_else(|| invalid(format!("address {:?} is not IPv4", iface.address)))?;
    if !network.subnet.contains(&address.addr()) {
        return Err(invalid(format!(
            "address {} is outside the network's subnet {}",
            address.addr(),
            network.subnet
        )));
    }
    if network.gateway.is_some_and(|g| g.addr() == address.addr()) {
        return Err(invalid(format!(
            "address {} is the network's gateway",
            address.addr()
        )));
    }
    let mac = match iface.mac_address.as_str() {
        "" => None,
        m => Some(parse_mac(m).ok_or_else(|| invalid(format!("MAC address {m:?} is not valid")))?),
    };
    if mac.is_some() && network.dataplane.is_ipvlan() {
        return Err(invalid(
            "ipvlan links share the parent's MAC address, so --mac-address cannot be honoured; drop it or use -o dataplane=macvlan",
        ));
    }
    Ok(EndpointSpec {
        id: req.endpoint_id.clone(),
        address: Ipv4Net::new(address.addr(), network.subnet.prefix_len())
            .map_err(|e| invalid(e.to_string()))?,
        mac,
    })
}

/// Docker's answer to a Join: L2 data planes route through the gateway on
/// the shim; L3 ones get a connected default route (the parent answers).
pub fn join_response(j: &Joined) -> JoinResponse {
    let interface_name = InterfaceName {
        src_name: j.link.clone(),
        dst_prefix: "eth".into(),
    };
    match j.gateway {
        Some(gw) => JoinResponse {
            interface_name,
            gateway: gw.to_string(),
            gateway_ipv6: String::new(),
            static_routes: Vec::new(),
            disable_gateway_service: true,
        },
        None => JoinResponse {
            interface_name,
            gateway: String::new(),
            gateway_ipv6: String::new(),
            static_routes: vec![StaticRoute {
                destination: "0.0.0.0/0".into(),
                route_type: 1,
                next_hop: String::new(),
            }],
            disable_gateway_service: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn req(generic: serde_json::Value) -> CreateNetworkRequest {
        serde_json::from_value(json!({
            "NetworkID": "a".repeat(64),
            "Options": {"com.docker.network.generic": generic},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Gateway": "10.1.1.1/24", "Pool": "10.1.1.0/24"}],
            "IPv6Data": []
        }))
        .unwrap()
    }

    #[rstest]
    #[case(json!({"parent": "eth1"}), Dataplane::Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Bridge })]
    #[case(json!({"parent": "eth1", "mode": "l2"}), Dataplane::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge })]
    #[case(json!({"parent": "eth1", "ipvlan_mode": "L3S", "ipvlan_flag": "private"}), Dataplane::Ipvlan { mode: IpvlanMode::L3s, flag: IpvlanFlag::Private })]
    #[case(json!({"parent": "eth1", "dataplane": "macvlan"}), Dataplane::Macvlan { mode: MacvlanMode::Bridge })]
    #[case(json!({"parent": "eth1", "macvlan_mode": "vepa"}), Dataplane::Macvlan { mode: MacvlanMode::Vepa })]
    fn options_select_the_data_plane(#[case] generic: serde_json::Value, #[case] want: Dataplane) {
        let spec = network_spec(&req(generic), None).unwrap();
        assert_eq!(spec.dataplane, want);
        assert_eq!(spec.gateway, Some("10.1.1.1/24".parse().unwrap()));
    }

    #[rstest]
    #[case(json!({}), "no parent interface")]
    #[case(json!({"parent": "eth1", "speed": "fast"}), "unknown option \"speed\"")]
    #[case(json!({"parent": "eth1", "mode": "l4"}), "use one of: l3, l2, l3s")]
    #[case(json!({"parent": "eth1", "mode": "l2", "ipvlan_mode": "l3"}), "disagree")]
    #[case(json!({"parent": "eth1", "dataplane": "macvlan", "ipvlan_mode": "l3"}), "applies to -o dataplane=ipvlan")]
    #[case(json!({"parent": "eth1", "dataplane": "ipvlan", "macvlan_mode": "bridge"}), "applies to -o dataplane=macvlan")]
    #[case(json!({"parent": "eth1.5000"}), "VLAN ID")]
    #[case(json!({"parent": "a/b"}), "not a valid interface name")]
    #[case(json!({"parent": "eth1", "announce": "everything"}), "announce")]
    fn bad_options_say_what_to_change(#[case] generic: serde_json::Value, #[case] want: &str) {
        let e = network_spec(&req(generic), None).unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} does not contain {want:?}");
    }

    #[test]
    fn host_link_is_for_l3_only() {
        let s = network_spec(&req(json!({"parent": "eth1", "host_link": "true"})), None).unwrap();
        assert!(s.host_link && s.has_shim() && !s.dataplane.is_l2());
        let s = network_spec(&req(json!({"parent": "eth1"})), None).unwrap();
        assert!(!s.has_shim());
        let e = network_spec(
            &req(json!({"parent": "eth1", "dataplane": "macvlan", "host_link": "true"})),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("host_link applies to ipvlan l3/l3s"), "{e}");
        let e = network_spec(&req(json!({"parent": "eth1", "host_link": "yes"})), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host_link"), "{e}");
    }

    #[test]
    fn default_parent_and_vlan_parent() {
        let s = network_spec(&req(json!({})), Some("eth9")).unwrap();
        assert_eq!(s.parent.name, "eth9");
        let s = network_spec(
            &req(json!({"parent": "eth1.10", "announce": "subnet"})),
            None,
        )
        .unwrap();
        assert_eq!(s.parent.vlan, Some(("eth1".into(), 10)));
        assert_eq!(s.announce, Announce::Subnet);
    }

    #[test]
    fn subnets_and_gateways_are_checked() {
        let mut r = req(json!({"parent": "eth1", "dataplane": "macvlan"}));
        r.ipv4_data = Some(vec![]);
        assert!(network_spec(&r, None)
            .unwrap_err()
            .to_string()
            .contains("no IPv4 subnet"));
        let mut r = req(json!({"parent": "eth1", "dataplane": "macvlan"}));
        r.ipv4_data.as_mut().unwrap()[0].gateway = None;
        assert!(network_spec(&r, None)
            .unwrap_err()
            .to_string()
            .contains("needs a gateway"));
        // L3 needs no gateway.
        let mut r = req(json!({"parent": "eth1"}));
        r.ipv4_data.as_mut().unwrap()[0].gateway = None;
        assert!(network_spec(&r, None).is_ok());
        let mut r = req(json!({"parent": "eth1"}));
        r.ipv4_data.as_mut().unwrap()[0].pool = "10.1.1.5/24".into();
        assert!(network_spec(&r, None)
            .unwrap_err()
            .to_string()
            .contains("host bits"));
        let mut r = req(json!({"parent": "eth1"}));
        r.ipv6_data = Some(vec![r.ipv4_data.clone().unwrap()[0].clone()]);
        assert!(network_spec(&r, None)
            .unwrap_err()
            .to_string()
            .contains("IPv6"));
    }

    #[test]
    fn endpoints_are_validated() {
        let net = network_spec(&req(json!({"parent": "eth1"})), None).unwrap();
        let ep = |addr: &str, mac: &str| {
            let r: CreateEndpointRequest = serde_json::from_value(json!({
                "NetworkID": net.id, "EndpointID": "b".repeat(64),
                "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": mac}
            }))
            .unwrap();
            endpoint_spec(&r, &net)
        };
        assert_eq!(
            ep("10.1.1.2/24", "").unwrap().address,
            "10.1.1.2/24".parse::<Ipv4Net>().unwrap()
        );
        assert!(ep("10.2.1.2/24", "")
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(ep("10.1.1.1/24", "")
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        assert!(ep("", "")
            .unwrap_err()
            .to_string()
            .contains("no IPv4 address"));
        assert!(ep("10.1.1.2/24", "02:aa:bb:cc:dd:ee")
            .unwrap_err()
            .to_string()
            .contains("--mac-address"));
        assert_eq!(
            parse_mac("02:aa:bb:cc:dd:ee"),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(parse_mac("02:aa:bb"), None);
    }

    #[test]
    fn join_answers_follow_the_data_plane() {
        let l2 = join_response(&Joined {
            link: "ibe1".into(),
            gateway: Some("10.1.1.1".parse().unwrap()),
        });
        assert_eq!(l2.gateway, "10.1.1.1");
        assert!(l2.static_routes.is_empty());
        let l3 = join_response(&Joined {
            link: "ibe1".into(),
            gateway: None,
        });
        assert_eq!(l3.gateway, "");
        assert_eq!(l3.static_routes.len(), 1);
        assert_eq!(l3.static_routes[0].destination, "0.0.0.0/0");
        // RouteType 1: connected, no next hop.
        assert_eq!(l3.static_routes[0].route_type, 1);
        assert_eq!(l3.interface_name.src_name, "ibe1");
        assert_eq!(l3.interface_name.dst_prefix, "eth");
    }
}
