//! Docker's requests into domain values, once.
//!
//! In: the wire types of CreateNetwork and CreateEndpoint ([`super::wire`]).
//! Out: a [`NetworkSpec`] or [`EndpointSpec`] that cannot hold an invalid
//! value, or an [`InvalidRequest`] that tells the user which option to
//! change. Nothing here touches the kernel or the state; the driver only acts
//! on what converted. Answers go the other way in [`join_response`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::wire::{
    self, CreateEndpointRequest, CreateNetworkRequest, InterfaceName, JoinResponse, StaticRoute,
};
use crate::docker::ops::{Joined, Reach};
use crate::model::attrs::{self, RouteAttrs};
use crate::model::invalid::{invalid, InvalidRequest};
use crate::model::network::{
    check_id, parse_mac, Announce, Dataplane, EndpointSpec, IpvlanFlag, IpvlanMode, MacvlanMode,
    NetworkSpec, Parent,
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

fn parse_cidr_or_addr6(s: &str, prefix_len: u8) -> Option<Ipv6Net> {
    if let Ok(net) = s.parse::<Ipv6Net>() {
        return Some(net);
    }
    s.parse::<Ipv6Addr>()
        .ok()
        .and_then(|a| Ipv6Net::new(a, prefix_len).ok())
}

/// The IPv4 subnet and gateway of one `IPv4Data` entry.
fn ipam_v4(ipam: &wire::IpamData) -> Result<(Ipv4Net, Option<Ipv4Net>), InvalidRequest> {
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
    Ok((subnet, gateway))
}

/// The IPv6 subnet and gateway of one `IPv6Data` entry.
fn ipam_v6(ipam: &wire::IpamData) -> Result<(Ipv6Net, Option<Ipv6Net>), InvalidRequest> {
    let subnet: Ipv6Net = ipam.pool.parse().map_err(|_| {
        invalid(format!(
            "IPv6 pool {:?} is not an IPv6 subnet (expected a prefix such as fd00:1::/64)",
            ipam.pool
        ))
    })?;
    if subnet.prefix_len() == 0 || ipam.address_space == "null" {
        return Err(invalid(
            "this driver needs a real IPv6 subnet: use the default IPAM driver with --ipv6 --subnet <prefix>/len (not ::/0, not --ipam-driver null)",
        ));
    }
    if subnet.trunc() != subnet {
        return Err(invalid(format!(
            "IPv6 subnet {subnet} has host bits set; did you mean {}?",
            subnet.trunc()
        )));
    }
    // The subnet's own faults first, before what a gateway may lack.
    NetworkSpec::check_subnet6(subnet)?;
    let gateway = match ipam.gateway.as_deref().filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => {
            let gw = parse_cidr_or_addr6(g, subnet.prefix_len())
                .ok_or_else(|| invalid(format!("IPv6 gateway {g:?} is not an IPv6 address")))?;
            if !subnet.contains(&gw.addr()) {
                return Err(invalid(format!(
                    "IPv6 gateway {g} is outside subnet {subnet}"
                )));
            }
            Some(Ipv6Net::new(gw.addr(), subnet.prefix_len()).map_err(|e| invalid(e.to_string()))?)
        }
    };
    Ok((subnet, gateway))
}

/// Validates a CreateNetwork request. `default_parent` comes from `--parent`.
/// IPv4, IPv6 or both: `IPv4Data` may be absent or empty (Docker 28's
/// `--ipv4=false`) when `IPv6Data` holds a subnet.
pub fn network_spec(
    req: &CreateNetworkRequest,
    default_parent: Option<&str>,
) -> Result<NetworkSpec, InvalidRequest> {
    network_spec_with(req, default_parent, &[])
}

/// [`network_spec`] on a host in dual-uplink mode (`uplinks`, from
/// `--uplink`; empty otherwise): a network without `parent` gets the
/// container port of its data plane, and a `parent` that is an uplink (or
/// a VLAN on one) is refused.
pub fn network_spec_with(
    req: &CreateNetworkRequest,
    default_parent: Option<&str>,
    uplinks: &[String],
) -> Result<NetworkSpec, InvalidRequest> {
    check_id("network", &req.network_id)?;
    let generic = wire::generic_options(&req.options).map_err(invalid)?;
    for key in generic.keys() {
        if !KNOWN_OPTIONS
            .iter()
            .chain(attrs::OPTIONS)
            .any(|(k, _)| k == key)
        {
            let known: Vec<String> = KNOWN_OPTIONS
                .iter()
                .chain(attrs::OPTIONS)
                .map(|(k, v)| format!("{k} ({v})"))
                .collect();
            return Err(invalid(format!(
                "unknown option {key:?}; this driver knows: {}",
                known.join("; ")
            )));
        }
    }
    let dataplane = parse_dataplane(&generic)?;
    let parent = match generic.get("parent") {
        Some(name) => {
            let p = Parent::parse(name)?;
            let lower = p.vlan.as_ref().map(|(l, _)| l);
            if let Some(u) = uplinks.iter().find(|u| **u == p.name || Some(*u) == lower) {
                return Err(invalid(format!(
                    "parent {name} is {}one of the host's uplinks ({u}): containers on it die with it, and ipvlan L3 containers on it cannot be reached over the other uplink; leave `parent` unset, the driver makes the container port",
                    if lower.is_some() { "a VLAN on " } else { "" }
                )));
            }
            p
        }
        None if !uplinks.is_empty() => Parent::port(&dataplane),
        None => Parent::parse(default_parent.ok_or_else(|| {
            invalid("no parent interface: add -o parent=<host interface> (e.g. eth1), or start the driver with --parent")
        })?)?,
    };
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

    // Docker 28's `--ipv4=false` says so in an option; whatever IPv4Data
    // then holds is not a subnet to use.
    let ipv4_disabled = matches!(
        req.options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.enable_ipv4")),
        Some(serde_json::Value::Bool(false))
    );
    let v4 = match &req.ipv4_data {
        Some(v) if !ipv4_disabled => v.as_slice(),
        _ => &[],
    };
    let v6 = req.ipv6_data.as_deref().unwrap_or_default();
    let (subnet, gateway) = match v4 {
        [] => (None, None),
        [one] => {
            let (s, g) = ipam_v4(one)?;
            (Some(s), g)
        }
        _ => {
            return Err(invalid(
                "one IPv4 subnet per network: create one network per --subnet",
            ))
        }
    };
    let (subnet6, gateway6) = match v6 {
        [] => (None, None),
        [one] => {
            let (s, g) = ipam_v6(one)?;
            (Some(s), g)
        }
        _ => {
            return Err(invalid(
                "one IPv6 subnet per network: create one network per IPv6 --subnet",
            ))
        }
    };
    if subnet.is_none() && subnet6.is_none() {
        return Err(invalid(
            "the network has no subnet: add --subnet a.b.c.d/len, or --ipv6 with an IPv6 --subnet",
        ));
    }
    // dockerd passes on the address space of the IPAM that made the pools:
    // ours means one subnet across hosts, each with blocks of its own.
    let ours = |d: &[wire::IpamData]| {
        d.iter()
            .any(|i| i.address_space == super::ipam::convert::ADDRESS_SPACE)
    };
    let cluster_ipam = ours(v4) || ours(v6);
    if cluster_ipam && (!ours(v4) && !v4.is_empty() || !ours(v6) && !v6.is_empty()) {
        return Err(invalid(
            "one family's subnet comes from the ipvlan-bgp IPAM and the other's does not; use --ipam-driver ipvlan-bgp for the whole network",
        ));
    }
    if cluster_ipam && announce == Announce::Subnet {
        return Err(invalid(
            "announce=subnet cannot be used with --ipam-driver ipvlan-bgp: the subnet spans every host, and each host announces only its own containers; leave announce out",
        ));
    }
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
    if dataplane.is_l2() || host_link {
        if subnet.is_some() && gateway.is_none() {
            return Err(invalid(format!(
                "{} needs a gateway address for the host side: add --gateway",
                dataplane.describe()
            )));
        }
        if subnet6.is_some() && gateway6.is_none() {
            return Err(invalid(format!(
                "{} needs an IPv6 gateway address for the host side: add --gateway for the IPv6 subnet",
                dataplane.describe()
            )));
        }
    }
    let spec = NetworkSpec {
        id: req.network_id.clone(),
        parent,
        dataplane,
        subnet,
        gateway,
        subnet6,
        gateway6,
        announce,
        internal: wire::flag_option(&req.options, "com.docker.network.internal"),
        host_link,
        attrs: RouteAttrs::from_options(&generic)?,
        cluster_ipam,
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
    let address = match (network.subnet, iface.address.as_str()) {
        (None, "") => None,
        (None, a) => {
            return Err(invalid(format!(
                "address {a:?} is IPv4, but the network is IPv6-only (it has no IPv4 subnet)"
            )))
        }
        (Some(_), "") => return Err(invalid(
            "the endpoint has no IPv4 address: this driver relies on Docker's IPAM to assign one",
        )),
        (Some(subnet), a) => {
            let address = parse_cidr_or_addr(a, subnet.prefix_len())
                .ok_or_else(|| invalid(format!("address {a:?} is not IPv4")))?;
            if !subnet.contains(&address.addr()) {
                return Err(invalid(format!(
                    "address {} is outside the network's subnet {subnet}",
                    address.addr()
                )));
            }
            if network.gateway.is_some_and(|g| g.addr() == address.addr()) {
                return Err(invalid(format!(
                    "address {} is the network's gateway",
                    address.addr()
                )));
            }
            Some(
                Ipv4Net::new(address.addr(), subnet.prefix_len())
                    .map_err(|e| invalid(e.to_string()))?,
            )
        }
    };
    let address6 = match (network.subnet6, iface.address_ipv6.as_str()) {
        (None, "") => None,
        (None, a) => {
            return Err(invalid(format!(
                "IPv6 address {a:?} given, but the network has no IPv6 subnet; create the network with --ipv6 and an IPv6 --subnet"
            )))
        }
        (Some(_), "") => {
            return Err(invalid(
                "the endpoint has no IPv6 address on an IPv6 network: this driver relies on Docker's IPAM to assign one",
            ))
        }
        (Some(subnet), a) => {
            let address = parse_cidr_or_addr6(a, subnet.prefix_len())
                .ok_or_else(|| invalid(format!("IPv6 address {a:?} is not IPv6")))?;
            if !subnet.contains(&address.addr()) {
                return Err(invalid(format!(
                    "IPv6 address {} is outside the network's IPv6 subnet {subnet}",
                    address.addr()
                )));
            }
            if network.gateway6.is_some_and(|g| g.addr() == address.addr()) {
                return Err(invalid(format!(
                    "IPv6 address {} is the network's IPv6 gateway",
                    address.addr()
                )));
            }
            Some(Ipv6Net::new(address.addr(), subnet.prefix_len()).map_err(|e| invalid(e.to_string()))?)
        }
    };
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
        address,
        address6,
        mac,
        attrs: RouteAttrs::from_options(&endpoint_driver_opts(&req.options)?)?,
    })
}

/// A container's `--driver-opt k=v` pairs: dockerd 20.10 passes them as
/// top-level string keys of CreateEndpoint's `Options`, beside its own
/// `com.docker.*` keys (recorded in `tests/fixtures/dockerd-endpoint-options.jsonl`).
/// Unknown keys are refused, as unknown `-o` keys are, so a typo never
/// passes silently.
fn endpoint_driver_opts(
    options: &Option<wire::Options>,
) -> Result<BTreeMap<String, String>, InvalidRequest> {
    let mut out = BTreeMap::new();
    for (k, v) in options.iter().flatten() {
        if k.starts_with("com.docker.") || k.starts_with("io.docker.") {
            continue;
        }
        if !attrs::OPTIONS.iter().any(|(known, _)| known == k) {
            let known: Vec<&str> = attrs::OPTIONS.iter().map(|(k, _)| *k).collect();
            return Err(invalid(format!(
                "unknown driver option {k:?} for a container; this driver knows: {}",
                known.join(", ")
            )));
        }
        match v {
            serde_json::Value::String(s) => out.insert(k.clone(), s.clone()),
            other => {
                return Err(invalid(format!(
                    "driver option {k} has a value of the wrong type: {other}"
                )))
            }
        };
    }
    Ok(out)
}

/// Docker's answer to a Join, per family: L2 data planes route through the
/// gateway on the shim (`Gateway`, `GatewayIPv6`); L3 ones get a connected
/// default route (`0.0.0.0/0`, `::/0`, RouteType 1: the parent answers).
/// On a network of the cluster IPAM (`onlink`) the container holds a host
/// route (/32, /128), so the gateway is first made reachable by a
/// connected route to it alone (dockerd 20.10 applies `StaticRoutes`
/// before the gateway; without it the gateway is "network unreachable").
pub fn join_response(j: &Joined, onlink: bool) -> JoinResponse {
    let connected = |destination: &str| StaticRoute {
        destination: destination.into(),
        route_type: 1,
        next_hop: String::new(),
    };
    let mut r = JoinResponse {
        interface_name: InterfaceName {
            src_name: j.link.clone(),
            dst_prefix: "eth".into(),
        },
        gateway: String::new(),
        gateway_ipv6: String::new(),
        static_routes: Vec::new(),
        disable_gateway_service: true,
    };
    match j.v4 {
        Some(Reach::Gateway(gw)) => {
            if onlink {
                r.static_routes.push(connected(&format!("{gw}/32")));
            }
            r.gateway = gw.to_string();
        }
        Some(Reach::Connected) => r.static_routes.push(connected("0.0.0.0/0")),
        None => {}
    }
    match j.v6 {
        Some(Reach::Gateway(gw)) => {
            if onlink {
                r.static_routes.push(connected(&format!("{gw}/128")));
            }
            r.gateway_ipv6 = gw.to_string();
        }
        Some(Reach::Connected) => r.static_routes.push(connected("::/0")),
        None => {}
    }
    r
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
            .contains("no subnet"));
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
            .contains("not an IPv6 subnet"));
    }

    fn ipam(pool: &str, gateway: Option<&str>) -> wire::IpamData {
        wire::IpamData {
            address_space: "LocalDefault".into(),
            pool: pool.into(),
            gateway: gateway.map(String::from),
            aux_addresses: None,
        }
    }

    /// `v4`: None = IPv4Data absent; `v6` likewise.
    fn req46(
        generic: serde_json::Value,
        v4: Option<Vec<wire::IpamData>>,
        v6: Option<Vec<wire::IpamData>>,
    ) -> CreateNetworkRequest {
        let mut r = req(generic);
        r.ipv4_data = v4;
        r.ipv6_data = v6;
        r
    }

    #[test]
    fn dual_stack_and_ipv6_only_networks_are_accepted() {
        let v4 = || Some(vec![ipam("10.1.1.0/24", Some("10.1.1.1/24"))]);
        let v6 = || Some(vec![ipam("fd00:1::/64", Some("fd00:1::1/64"))]);
        for dp in [
            json!({"parent": "eth1"}),
            json!({"parent": "eth1", "dataplane": "macvlan"}),
        ] {
            let s = network_spec(&req46(dp.clone(), v4(), v6()), None).unwrap();
            assert_eq!(s.subnet, Some("10.1.1.0/24".parse().unwrap()));
            assert_eq!(s.subnet6, Some("fd00:1::/64".parse().unwrap()));
            assert_eq!(s.gateway6, Some("fd00:1::1/64".parse().unwrap()));
            assert_eq!(s.subnets().count(), 2);
            // IPv6-only: IPv4Data absent, empty, or disabled by Docker 28's option.
            for v4 in [None, Some(vec![])] {
                let s = network_spec(&req46(dp.clone(), v4, v6()), None).unwrap();
                assert_eq!((s.subnet, s.gateway), (None, None));
                assert_eq!(s.subnet6, Some("fd00:1::/64".parse().unwrap()));
            }
            let mut r = req46(dp.clone(), Some(vec![ipam("0.0.0.0/0", None)]), v6());
            r.options
                .get_or_insert_with(Default::default)
                .insert("com.docker.network.enable_ipv4".into(), json!(false));
            assert_eq!(network_spec(&r, None).unwrap().subnet, None);
        }
        // A gateway given as a bare address takes the subnet's length.
        let s = network_spec(
            &req46(
                json!({"parent": "eth1"}),
                None,
                Some(vec![ipam("fd00:1::/64", Some("fd00:1::fe"))]),
            ),
            None,
        )
        .unwrap();
        assert_eq!(s.gateway6, Some("fd00:1::fe/64".parse().unwrap()));
    }

    #[rstest]
    #[case("::/0", None, "not ::/0")]
    #[case("::1/128", None, "loopback")]
    #[case("::/128", None, "unspecified")]
    #[case("fe80::/64", None, "link-local")]
    #[case("ff02::/16", None, "multicast")]
    #[case("::ffff:10.1.0.0/112", None, "IPv4-mapped")]
    #[case("fd00:1::/127", None, "too small")]
    #[case("fd00:1::1/64", None, "host bits set; did you mean fd00:1::/64")]
    #[case("10.1.1.0/24", None, "not an IPv6 subnet")]
    #[case("fd00:1::/64", Some("fd00:2::1/64"), "outside subnet fd00:1::/64")]
    #[case("fd00:1::/64", Some("10.1.1.1/24"), "not an IPv6 address")]
    #[case("fd00:1::/64", None, "needs an IPv6 gateway")]
    fn bad_ipv6_subnets_say_what_to_change(
        #[case] pool: &str,
        #[case] gateway: Option<&str>,
        #[case] want: &str,
    ) {
        let r = req46(
            json!({"parent": "eth1", "dataplane": "macvlan"}),
            None,
            Some(vec![ipam(pool, gateway)]),
        );
        let e = network_spec(&r, None).unwrap_err().to_string();
        assert!(e.contains(want), "{pool}: {e:?} does not contain {want:?}");
    }

    #[test]
    fn ipv6_subnets_are_counted_and_required() {
        let two = Some(vec![ipam("fd00:1::/64", None), ipam("fd00:2::/64", None)]);
        let e = network_spec(&req46(json!({"parent": "eth1"}), None, two), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one IPv6 subnet per network"), "{e}");
        let e = network_spec(&req46(json!({"parent": "eth1"}), None, None), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no subnet"), "{e}");
        let null = Some(vec![wire::IpamData {
            address_space: "null".into(),
            ..ipam("fd00:1::/64", None)
        }]);
        let e = network_spec(&req46(json!({"parent": "eth1"}), None, null), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("real IPv6 subnet"), "{e}");
    }

    #[test]
    fn ipv6_endpoints_are_validated() {
        let dual = network_spec(
            &req46(
                json!({"parent": "eth1", "dataplane": "macvlan"}),
                Some(vec![ipam("10.1.1.0/24", Some("10.1.1.1/24"))]),
                Some(vec![ipam("fd00:1::/64", Some("fd00:1::1/64"))]),
            ),
            None,
        )
        .unwrap();
        let v6only = NetworkSpec {
            subnet: None,
            gateway: None,
            ..dual.clone()
        };
        let v4only = NetworkSpec {
            subnet6: None,
            gateway6: None,
            ..dual.clone()
        };
        let ep = |net: &NetworkSpec, v4: &str, v6: &str| {
            let r: CreateEndpointRequest = serde_json::from_value(json!({
                "NetworkID": net.id, "EndpointID": "b".repeat(64),
                "Interface": {"Address": v4, "AddressIPv6": v6, "MacAddress": ""}
            }))
            .unwrap();
            endpoint_spec(&r, net).map_err(|e| e.to_string())
        };
        let e = ep(&dual, "10.1.1.2/24", "fd00:1::2/64").unwrap();
        assert_eq!(e.address6, Some("fd00:1::2/64".parse().unwrap()));
        assert_eq!(
            e.addrs().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["10.1.1.2", "fd00:1::2"]
        );
        let e = ep(&v6only, "", "fd00:1::2").unwrap();
        assert_eq!(
            (e.address, e.address6),
            (None, Some("fd00:1::2/64".parse().unwrap()))
        );
        for (net, v4, v6, want) in [
            (&v4only, "10.1.1.2/24", "fd00:1::2/64", "has no IPv6 subnet"),
            (
                &dual,
                "10.1.1.2/24",
                "fd00:2::2/64",
                "outside the network's IPv6 subnet",
            ),
            (&dual, "10.1.1.2/24", "fd00:1::1/64", "IPv6 gateway"),
            (&dual, "10.1.1.2/24", "10.1.1.3/24", "is not IPv6"),
            (&dual, "10.1.1.2/24", "", "no IPv6 address"),
            (&v6only, "10.1.1.2/24", "fd00:1::2/64", "IPv6-only"),
            (&v6only, "", "", "no IPv6 address"),
            (&dual, "fd00:1::3/64", "fd00:1::2/64", "is not IPv4"),
        ] {
            let e = ep(net, v4, v6).unwrap_err();
            assert!(
                e.contains(want),
                "{v4} {v6}: {e:?} does not contain {want:?}"
            );
        }
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
            Some("10.1.1.2/24".parse::<Ipv4Net>().unwrap())
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

    /// What dockerd 20.10 sent for `--driver-opt` (recorded) becomes the
    /// endpoint's attributes; the network's `-o bgp_*` its own.
    #[test]
    fn recorded_driver_opts_become_endpoint_attributes() {
        let lines: Vec<serde_json::Value> =
            include_str!("../../tests/fixtures/dockerd-endpoint-options.jsonl")
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let net: CreateNetworkRequest = serde_json::from_value(lines[0]["body"].clone()).unwrap();
        let net = network_spec(&net, Some("eth1")).unwrap();
        assert_eq!(net.attrs.med, Some(50));
        let eps: Vec<EndpointSpec> = lines[1..]
            .iter()
            .map(|l| {
                let r: CreateEndpointRequest = serde_json::from_value(l["body"].clone()).unwrap();
                endpoint_spec(&r, &net).unwrap()
            })
            .collect();
        let med: Vec<Option<u32>> = eps.iter().map(|e| e.attrs.med).collect();
        assert_eq!(med, [Some(20), Some(30), None, Some(10), Some(11)]);
        assert_eq!(eps[1].attrs.local_pref, Some(200));
        let both = [65000 << 16 | 1, 65000 << 16 | 2];
        assert_eq!(eps[2].attrs.communities, both, "comma-separated");
        assert_eq!(eps[3].attrs.communities, both, "space-separated");
    }

    #[test]
    fn bad_driver_opts_are_refused_with_the_reason() {
        let net = network_spec(&req(json!({"parent": "eth1"})), None).unwrap();
        let ep = |opts: serde_json::Value| {
            let r: CreateEndpointRequest = serde_json::from_value(json!({
                "NetworkID": net.id, "EndpointID": "b".repeat(64),
                "Interface": {"Address": "10.1.1.2/24", "AddressIPv6": "", "MacAddress": ""},
                "Options": opts
            }))
            .unwrap();
            endpoint_spec(&r, &net).map_err(|e| e.to_string())
        };
        let e = ep(json!({"bgp-med": "1"})).unwrap_err();
        assert!(
            e.contains("unknown driver option \"bgp-med\"") && e.contains("bgp_med"),
            "{e}"
        );
        let e = ep(json!({"bgp_med": 5})).unwrap_err();
        assert!(e.contains("wrong type"), "{e}");
        let e = ep(json!({"bgp_as_path_prepend": "20"})).unwrap_err();
        assert!(e.contains("0..10"), "{e}");
        assert!(ep(json!({"com.docker.network.portmap": [], "bgp_med": "5"})).is_ok());
        let e = network_spec(&req(json!({"parent": "eth1", "bgp_local_pref": "x"})), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bgp_local_pref"), "{e}");
        let e = network_spec(&req(json!({"parent": "eth1", "bgp_meds": "1"})), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown option \"bgp_meds\"") && e.contains("bgp_med ("),
            "{e}"
        );
    }

    #[test]
    fn join_answers_follow_the_data_plane() {
        let l2 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: Some(Reach::Gateway("10.1.1.1".parse().unwrap())),
                v6: None,
            },
            false,
        );
        assert_eq!(l2.gateway, "10.1.1.1");
        assert_eq!(l2.gateway_ipv6, "");
        assert!(l2.static_routes.is_empty());
        let l3 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: Some(Reach::Connected),
                v6: None,
            },
            false,
        );
        assert_eq!(l3.gateway, "");
        assert_eq!(l3.static_routes.len(), 1);
        assert_eq!(l3.static_routes[0].destination, "0.0.0.0/0");
        // RouteType 1: connected, no next hop.
        assert_eq!(l3.static_routes[0].route_type, 1);
        assert_eq!(l3.interface_name.src_name, "ibe1");
        assert_eq!(l3.interface_name.dst_prefix, "eth");
        // Dual stack: both gateways (L2), or both connected defaults (L3).
        let l2 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: Some(Reach::Gateway("10.1.1.1".parse().unwrap())),
                v6: Some(Reach::Gateway("fd00:1::1".parse().unwrap())),
            },
            false,
        );
        assert_eq!(
            (l2.gateway.as_str(), l2.gateway_ipv6.as_str()),
            ("10.1.1.1", "fd00:1::1")
        );
        assert!(l2.static_routes.is_empty() && l2.disable_gateway_service);
        let l3 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: Some(Reach::Connected),
                v6: Some(Reach::Connected),
            },
            false,
        );
        let dst: Vec<(&str, u8)> = l3
            .static_routes
            .iter()
            .map(|r| (r.destination.as_str(), r.route_type))
            .collect();
        assert_eq!(dst, [("0.0.0.0/0", 1), ("::/0", 1)]);
        assert!(l3.gateway.is_empty() && l3.gateway_ipv6.is_empty());
        // IPv6-only L2: GatewayIPv6 alone, no IPv4 gateway.
        let v6 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: None,
                v6: Some(Reach::Gateway("fd00:1::1".parse().unwrap())),
            },
            false,
        );
        assert_eq!(
            serde_json::to_value(&v6).unwrap(),
            json!({"InterfaceName": {"SrcName": "ibe1", "DstPrefix": "eth"},
                   "GatewayIPv6": "fd00:1::1", "DisableGatewayService": true})
        );
    }

    #[test]
    fn cluster_ipam_networks_get_an_onlink_route_to_the_gateway() {
        let dual = Joined {
            link: "ibe1".into(),
            v4: Some(Reach::Gateway("10.20.0.1".parse().unwrap())),
            v6: Some(Reach::Gateway("fd00:20::1".parse().unwrap())),
        };
        let r = join_response(&dual, true);
        let dst: Vec<(&str, u8)> = r
            .static_routes
            .iter()
            .map(|r| (r.destination.as_str(), r.route_type))
            .collect();
        assert_eq!(dst, [("10.20.0.1/32", 1), ("fd00:20::1/128", 1)]);
        assert_eq!(
            (r.gateway.as_str(), r.gateway_ipv6.as_str()),
            ("10.20.0.1", "fd00:20::1")
        );
        // L3: the connected default already reaches everything.
        let l3 = join_response(
            &Joined {
                link: "ibe1".into(),
                v4: Some(Reach::Connected),
                v6: None,
            },
            true,
        );
        assert_eq!(l3.static_routes.len(), 1);
        assert_eq!(l3.static_routes[0].destination, "0.0.0.0/0");
    }

    #[test]
    fn the_address_space_says_which_ipam_made_the_network() {
        let cluster = |space6: &str, generic: serde_json::Value| {
            let r: CreateNetworkRequest = serde_json::from_value(json!({
                "NetworkID": "a".repeat(64),
                "Options": {"com.docker.network.generic": generic},
                "IPv4Data": [{"AddressSpace": "ipvlan-bgp", "Gateway": "10.20.3.1/16", "Pool": "10.20.0.0/16"}],
                "IPv6Data": [{"AddressSpace": space6, "Gateway": "fd00:20::1/64", "Pool": "fd00:20::/64"}]
            }))
            .unwrap();
            network_spec(&r, None)
        };
        let s = cluster(
            "ipvlan-bgp",
            json!({"parent": "eth1", "dataplane": "macvlan"}),
        )
        .unwrap();
        assert!(s.cluster_ipam);
        assert_eq!(s.gateway, Some("10.20.3.1/16".parse().unwrap()));
        let e = cluster("LocalDefault", json!({"parent": "eth1"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole network"), "{e}");
        let e = cluster(
            "ipvlan-bgp",
            json!({"parent": "eth1", "announce": "subnet"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("announce=subnet cannot be used"), "{e}");
        let plain = network_spec(&req(json!({"parent": "eth1"})), None).unwrap();
        assert!(!plain.cluster_ipam, "Docker's own IPAM: nothing changes");
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("cluster_ipam"),
            "state files unchanged"
        );
    }

    fn request(options: serde_json::Value) -> CreateNetworkRequest {
        serde_json::from_value(serde_json::json!({
            "NetworkID": "a".repeat(64),
            "Options": {"com.docker.network.generic": options},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.1.1.0/24", "Gateway": "10.1.1.1/24"}],
        }))
        .unwrap()
    }

    #[test]
    fn in_dual_uplink_mode_a_parent_on_an_uplink_is_refused_and_none_means_the_port() {
        let up = vec!["up1".to_string(), "up2".to_string()];
        for parent in ["up1", "up2", "up1.10"] {
            let e = network_spec_with(&request(serde_json::json!({"parent": parent})), None, &up)
                .unwrap_err()
                .0;
            assert!(
                e.contains(&format!("parent {parent} is"))
                    && e.contains("one of the host's uplinks")
                    && e.contains("leave `parent` unset"),
                "{e}"
            );
        }
        let s = network_spec_with(
            &request(serde_json::json!({"dataplane": "macvlan"})),
            None,
            &up,
        )
        .unwrap();
        assert_eq!(
            s.parent,
            Parent::port(&Dataplane::Macvlan {
                mode: MacvlanMode::Bridge
            })
        );
        assert_eq!(s.parent.name, "ipbgp-mvb-a");
        assert!(!s.has_shim());
        let s = network_spec_with(
            &request(serde_json::json!({"ipvlan_mode": "l2"})),
            None,
            &up,
        )
        .unwrap();
        assert_eq!(s.parent.name, "ipbgp-l2b-a");
        // Another interface stays the operator's choice.
        let s =
            network_spec_with(&request(serde_json::json!({"parent": "eth1"})), None, &up).unwrap();
        assert!(!s.parent.port && s.parent.name == "eth1");
        // Outside dual-uplink mode nothing changes: an uplink-like name is a parent.
        let s =
            network_spec_with(&request(serde_json::json!({"parent": "up1"})), None, &[]).unwrap();
        assert_eq!(s.parent.name, "up1");
    }
}
