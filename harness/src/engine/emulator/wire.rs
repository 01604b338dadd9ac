//! Request bodies exactly as dockerd 20.10 builds them (see the fixtures
//! in `driver/tests/fixtures/`, compared body for body by the tests below),
//! and the answers dockerd refuses.
//!
//! In: IDs, addresses, endpoint extras, a Join answer. Out: JSON bodies and
//! the order of the requests around Join and stop. Pure functions.

use serde_json::{json, Value};

/// What `docker run` adds to an endpoint: `--mac-address`, `-p`/`--expose`.
#[derive(Debug, Clone, Default)]
pub struct EndpointExtras {
    pub mac: Option<[u8; 6]>,
    /// `com.docker.network.endpoint.exposedports`
    pub exposed: Vec<Value>,
    /// `com.docker.network.portmap`
    pub portmap: Vec<Value>,
    /// `--driver-opt k=v`: top-level keys of CreateEndpoint's Options only.
    pub driver_opts: std::collections::BTreeMap<String, String>,
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The endpoint options of Join and ProgramExternalConnectivity.
pub fn join_options(x: &EndpointExtras) -> Value {
    json!({"com.docker.network.endpoint.exposedports": x.exposed,
           "com.docker.network.portmap": x.portmap})
}

pub fn create_endpoint(net: &str, ep: &str, address: &str, x: &EndpointExtras) -> Value {
    create_endpoint_dual(net, ep, address, "", x)
}

/// CreateEndpoint with both addresses (either may be empty: dockerd
/// sends `""` for a family the network does not have).
pub fn create_endpoint_dual(
    net: &str,
    ep: &str,
    address: &str,
    address6: &str,
    x: &EndpointExtras,
) -> Value {
    let mut options = join_options(x);
    if let Some(m) = &x.mac {
        // Go's JSON encoding of a []byte: base64.
        options["com.docker.network.endpoint.macaddress"] = json!(base64(m));
    }
    for (k, v) in &x.driver_opts {
        options[k] = json!(v);
    }
    json!({"NetworkID": net, "EndpointID": ep,
           "Interface": {"Address": address, "AddressIPv6": address6,
                         "MacAddress": x.mac.as_ref().map(mac_text).unwrap_or_default()},
           "Options": options})
}

pub fn join(net: &str, ep: &str, sandbox: &str, x: &EndpointExtras) -> Value {
    json!({"NetworkID": net, "EndpointID": ep, "SandboxKey": sandbox, "Options": join_options(x)})
}

pub fn program(net: &str, ep: &str, x: &EndpointExtras) -> Value {
    json!({"NetworkID": net, "EndpointID": ep, "Options": join_options(x)})
}

/// EndpointOperInfo, RevokeExternalConnectivity, Leave, DeleteEndpoint.
pub fn ids(net: &str, ep: &str) -> Value {
    json!({"NetworkID": net, "EndpointID": ep})
}

/// The requests after a Join that succeeded and whose sandbox is set up:
/// ProgramExternalConnectivity for the gateway endpoint (on a network that
/// is not internal), then EndpointOperInfo twice.
pub fn after_join(
    net: &str,
    ep: &str,
    x: &EndpointExtras,
    join: &Value,
    internal: bool,
) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    if provides_gateway(join) && !internal {
        out.push(("ProgramExternalConnectivity", program(net, ep, x)));
    }
    out.push(("EndpointOperInfo", ids(net, ep)));
    out.push(("EndpointOperInfo", ids(net, ep)));
    out
}

/// `docker stop`: the requests before the interface goes back to the
/// host (Revoke for a programmed endpoint, Leave), and after it
/// (DeleteEndpoint).
pub fn stop(net: &str, ep: &str, programmed: bool) -> [Vec<(&'static str, Value)>; 2] {
    let mut before = Vec::new();
    if programmed {
        before.push(("RevokeExternalConnectivity", ids(net, ep)));
    }
    before.push(("Leave", ids(net, ep)));
    [before, vec![("DeleteEndpoint", ids(net, ep))]]
}

/// CreateNetwork as dockerd 20.10 sends it: `IPv4Data` and `IPv6Data`
/// each hold the family's pool with its gateway in CIDR form, or are
/// empty; `enable_ipv6` is set when there is an IPv6 pool. Without an
/// IPv4 pool (which 20.10 cannot make), Docker 28's shape.
pub fn create_network(
    id: &str,
    generic: &std::collections::BTreeMap<String, String>,
    v4: Option<(ipnet::Ipv4Net, std::net::Ipv4Addr)>,
    v6: Option<(ipnet::Ipv6Net, std::net::Ipv6Addr)>,
) -> Value {
    let v4 = v4.map(|(net, gw)| (net.to_string(), format!("{gw}/{}", net.prefix_len())));
    let v6 = v6.map(|(net, gw)| (net.to_string(), format!("{gw}/{}", net.prefix_len())));
    create_network_in(id, generic, "LocalDefault", v4, v6)
}

/// CreateNetwork with the pools of an IPAM's address space: each family's
/// `(pool, gateway as the IPAM answered it)`.
pub fn create_network_in(
    id: &str,
    generic: &std::collections::BTreeMap<String, String>,
    space: &str,
    v4: Option<(String, String)>,
    v6: Option<(String, String)>,
) -> Value {
    let data = |x: &Option<(String, String)>| -> Vec<Value> {
        x.iter()
            .map(|(pool, gw)| json!({"AddressSpace": space, "Gateway": gw, "Pool": pool}))
            .collect()
    };
    let (v4, v6) = (data(&v4), data(&v6));
    let mut body = json!({
        "NetworkID": id,
        "Options": {"com.docker.network.enable_ipv6": !v6.is_empty(), "com.docker.network.generic": generic},
        "IPv4Data": v4,
        "IPv6Data": v6
    });
    if v4.is_empty() {
        // Docker 28's `--ipv4=false`: the option says so, and libnetwork's
        // getIPData still sends an empty list (`make(..., 0)`), not null.
        body["Options"]["com.docker.network.enable_ipv4"] = json!(false);
    }
    body
}

/// IpamDriver.RequestPool as dockerd 20.10 sends it for `--subnet POOL`
/// (`--ipam-opt`s in Options).
pub fn request_pool(
    space: &str,
    pool: &str,
    v6: bool,
    options: &std::collections::BTreeMap<String, String>,
) -> Value {
    json!({"AddressSpace": space, "Pool": pool, "SubPool": "", "Options": options, "V6": v6})
}

/// IpamDriver.RequestAddress: the network's gateway (`Options` say so), or
/// a container's address (`--ip`: `address`; `Options` null).
pub fn request_address(pool_id: &str, address: &str, gateway: bool) -> Value {
    let options = if gateway {
        json!({"RequestAddressType": "com.docker.network.gateway"})
    } else {
        Value::Null
    };
    json!({"PoolID": pool_id, "Address": address, "Options": options})
}

/// IpamDriver.ReleaseAddress (the address without its length).
pub fn release_address(pool_id: &str, address: &str) -> Value {
    json!({"PoolID": pool_id, "Address": address})
}

pub fn release_pool(pool_id: &str) -> Value {
    json!({"PoolID": pool_id})
}

/// libnetwork's gateway endpoint: the one whose Join answer has a
/// gateway (of either family). Only it gets Program/RevokeExternalConnectivity.
pub fn provides_gateway(join: &Value) -> bool {
    ["Gateway", "GatewayIPv6"].iter().any(|k| {
        join.get(*k)
            .and_then(Value::as_str)
            .is_some_and(|g| !g.is_empty())
    })
}

/// What dockerd refuses in a CreateEndpoint answer: a MAC or an address
/// when the request already carried one ("Cannot be modified").
pub fn check_create_answer(request: &Value, answer: &Value) -> Result<(), String> {
    for (field, what) in [
        ("MacAddress", "MAC address"),
        ("Address", "IPv4 address"),
        ("AddressIPv6", "IPv6 address"),
    ] {
        let asked = request
            .pointer(&format!("/Interface/{field}"))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        let answered = answer
            .pointer(&format!("/Interface/{field}"))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty());
        if let (true, Some(v)) = (asked, answered) {
            return Err(format!(
                "CreateEndpoint answered {what} {v} for an endpoint that has one: dockerd fails the container (\"endpoint interface {what} present; cannot be modified\")"
            ));
        }
    }
    Ok(())
}

/// A Join answer with no gateway that does not disable the gateway
/// service makes dockerd attach the container to `docker_gwbridge`
/// (NAT through the host): never what a routed network wants.
pub fn check_join_answer(join: &Value, internal: bool) -> Result<(), String> {
    let disabled = join
        .get("DisableGatewayService")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !internal && !provides_gateway(join) && !disabled {
        return Err(format!(
            "Join answered no Gateway and DisableGatewayService=false: dockerd would attach the container to docker_gwbridge: {join}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use crate::engine::emulator::wire;

    /// `--driver-opt`s (`docker run --network name=fx,driver-opt=...`,
    /// recorded from dockerd 20.10) and the emulator's CreateEndpoint for
    /// the same options: the same body.
    #[test]
    fn emulator_driver_opts_match_dockerd_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-endpoint-options.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let real: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        let b = &real["body"];
        let extras = wire::EndpointExtras {
            driver_opts: [("bgp_med", "30"), ("bgp_local_pref", "200")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..wire::EndpointExtras::default()
        };
        let ours = wire::create_endpoint(
            b["NetworkID"].as_str().unwrap(),
            b["EndpointID"].as_str().unwrap(),
            b["Interface"]["Address"].as_str().unwrap(),
            &extras,
        );
        assert_eq!(&ours, b);
    }

    /// `docker run --rm --network fx --mac-address 02:aa:bb:cc:dd:ee -p 8080:80`
    /// and its stop, as dockerd 20.10 sent them (driver/tests/fixtures/),
    /// against what the emulator sends for the same container, body for body.
    #[test]
    fn emulator_requests_match_dockerd_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-20.10-requests.jsonl"
        );
        let fixtures: Vec<Value> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ep = "835c7162a10a5b9a8f6fd356ca22db0cfe70755ab53f9eb5ff33c3b3f75f16ee";
        let real: Vec<(String, Value)> = fixtures
            .iter()
            .filter(|f| f.pointer("/body/EndpointID").and_then(Value::as_str) == Some(ep))
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                (
                    p.trim_start_matches("/NetworkDriver.").to_string(),
                    f["body"].clone(),
                )
            })
            .collect();
        let net = real[0].1["NetworkID"].as_str().unwrap().to_string();
        let sandbox = real[1].1["SandboxKey"].as_str().unwrap().to_string();
        let port = json!({"Proto": 6, "Port": 80});
        let extras = wire::EndpointExtras {
            mac: Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]),
            exposed: vec![port],
            portmap: vec![
                json!({"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}),
            ],
            ..wire::EndpointExtras::default()
        };
        // The driver that answered these requests gave a gateway (dockerd sent Program).
        let join_answer =
            json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}, "Gateway": "10.201.7.1"});
        let mut ours = vec![
            (
                "CreateEndpoint",
                wire::create_endpoint(&net, ep, "10.201.7.2/24", &extras),
            ),
            ("Join", wire::join(&net, ep, &sandbox, &extras)),
        ];
        ours.extend(wire::after_join(&net, ep, &extras, &join_answer, false));
        let [before, after] = wire::stop(&net, ep, true);
        ours.extend(before);
        ours.extend(after);
        let ours: Vec<(String, Value)> =
            ours.into_iter().map(|(m, b)| (m.to_string(), b)).collect();
        assert_eq!(ours.len(), real.len(), "ours: {ours:#?}\nreal: {real:#?}");
        for (o, r) in ours.iter().zip(&real) {
            assert_eq!(o, r);
        }
    }

    /// The IPAM requests of `network create --subnet 10.20.0.0/16`, `run`
    /// and `run --ip 10.20.5.5`, and `network rm`, as dockerd 20.10 sent
    /// them (driver/tests/fixtures/dockerd-ipam-requests.jsonl), against
    /// what the emulator sends, body for body.
    #[test]
    fn emulator_ipam_requests_match_dockerd_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-ipam-requests.jsonl"
        );
        let real: Vec<(String, Value)> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|f| {
                f["label"].as_str().is_some_and(|l| {
                    l.starts_with("network create blue")
                        || l == "run on blue"
                        || l == "run on blue --ip 10.20.5.5"
                        || l == "network rm blue"
                }) && f["path"].as_str().is_some_and(|p| {
                    p.starts_with("/IpamDriver.Re") || p == "/IpamDriver.ReleasePool"
                })
            })
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                (
                    p.trim_start_matches("/IpamDriver.").to_string(),
                    f["body"].clone(),
                )
            })
            .collect();
        let id = "rec-local/10.20.0.0/16";
        let ours: Vec<(String, Value)> = [
            (
                "RequestPool",
                wire::request_pool("rec-local", "10.20.0.0/16", false, &Default::default()),
            ),
            ("RequestAddress", wire::request_address(id, "", true)),
            ("RequestAddress", wire::request_address(id, "", false)),
            ("ReleaseAddress", wire::release_address(id, "10.20.0.2")),
            (
                "RequestAddress",
                wire::request_address(id, "10.20.5.5", false),
            ),
            ("ReleaseAddress", wire::release_address(id, "10.20.5.5")),
            ("ReleaseAddress", wire::release_address(id, "10.20.0.1")),
            ("ReleasePool", wire::release_pool(id)),
        ]
        .into_iter()
        .map(|(m, b)| (m.to_string(), b))
        .collect();
        assert_eq!(ours, real);
    }

    #[test]
    fn only_the_gateway_endpoint_is_programmed() {
        let x = wire::EndpointExtras::default();
        let l3 = json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}, "DisableGatewayService": true,
                        "StaticRoutes": [{"Destination": "0.0.0.0/0", "RouteType": 1, "NextHop": ""}]});
        let methods: Vec<_> = wire::after_join("n", "e", &x, &l3, false)
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(methods, ["EndpointOperInfo", "EndpointOperInfo"]);
        assert!(wire::check_join_answer(&l3, false).is_ok());
        let l2 = json!({"Gateway": "10.1.1.1", "DisableGatewayService": true});
        assert_eq!(
            wire::after_join("n", "e", &x, &l2, false)[0].0,
            "ProgramExternalConnectivity"
        );
        assert_eq!(wire::after_join("n", "e", &x, &l2, true).len(), 2);
        let [before, _] = wire::stop("n", "e", false);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].0, "Leave");
    }

    #[test]
    fn answers_dockerd_refuses_are_refused() {
        let gwbridge = json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}});
        let e = wire::check_join_answer(&gwbridge, false).unwrap_err();
        assert!(e.contains("docker_gwbridge"), "{e}");
        assert!(wire::check_join_answer(&gwbridge, true).is_ok());
        let asked = wire::create_endpoint(
            "n",
            "e",
            "10.1.1.2/24",
            &wire::EndpointExtras {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..Default::default()
            },
        );
        let e = wire::check_create_answer(
            &asked,
            &json!({"Interface": {"MacAddress": "02:00:00:00:00:02"}}),
        )
        .unwrap_err();
        assert!(e.contains("MAC address"), "{e}");
        let e =
            wire::check_create_answer(&asked, &json!({"Interface": {"Address": "10.1.1.9/24"}}))
                .unwrap_err();
        assert!(e.contains("IPv4 address"), "{e}");
        let no_mac =
            wire::create_endpoint("n", "e", "10.1.1.2/24", &wire::EndpointExtras::default());
        assert!(wire::check_create_answer(
            &no_mac,
            &json!({"Interface": {"MacAddress": "02:00:00:00:00:02"}})
        )
        .is_ok());
        assert!(wire::check_create_answer(&no_mac, &json!({})).is_ok());
    }

    /// `docker network create --ipv6 --subnet V4 --subnet V6` as dockerd
    /// 20.10 sent it (the fixture), against what the emulator sends.
    #[test]
    fn dual_stack_create_network_matches_dockerd_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-20.10-requests.jsonl"
        );
        let real: Value = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|f| {
                f["body"]["IPv6Data"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            })
            .unwrap()["body"]
            .clone();
        let generic: BTreeMap<String, String> =
            serde_json::from_value(real["Options"]["com.docker.network.generic"].clone()).unwrap();
        let mut ours = wire::create_network(
            real["NetworkID"].as_str().unwrap(),
            &generic,
            None,
            Some((
                "fd00:db8::/64".parse().unwrap(),
                "fd00:db8::1".parse().unwrap(),
            )),
        );
        assert_eq!(ours["IPv6Data"], real["IPv6Data"]);
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv6"], true);
        // IPv6-only: no IPv4 pool at all, and Docker 28's option.
        assert_eq!(ours["IPv4Data"], json!([]));
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv4"], false);
        ours = wire::create_network(
            "n",
            &generic,
            Some(("10.1.1.0/24".parse().unwrap(), "10.1.1.1".parse().unwrap())),
            None,
        );
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv6"], false);
        assert_eq!(ours["IPv6Data"], json!([]));
        assert!(ours["Options"]
            .get("com.docker.network.enable_ipv4")
            .is_none());
        let ep = wire::create_endpoint_dual(
            "n",
            "e",
            "",
            "fd00:1::2/64",
            &wire::EndpointExtras::default(),
        );
        assert_eq!(ep["Interface"]["Address"], "");
        assert_eq!(ep["Interface"]["AddressIPv6"], "fd00:1::2/64");
        let e =
            wire::check_create_answer(&ep, &json!({"Interface": {"AddressIPv6": "fd00:1::9/64"}}))
                .unwrap_err();
        assert!(e.contains("IPv6 address"), "{e}");
        // A v6 gateway alone makes the gateway endpoint.
        assert!(wire::provides_gateway(&json!({"GatewayIPv6": "fd00:1::1"})));
    }
}
