//! Docker's IPAM requests into pools and wanted addresses, once, and the
//! IPAM's answers back into Docker's shapes.
//!
//! In: the wire types of [`super::wire`]. Out: a pool (with an explicit
//! block length, if `--ipam-opt block-size=N` gave one), a [`Want`], an
//! address to release, or a [`RequestError`] that says which flag to
//! change. Answers: the PoolID, which names the pool itself
//! (`ipvlan-bgp/10.20.0.0/16`: dockerd keeps PoolIDs across restarts and
//! never replays, so a restarted driver must understand them alone), and
//! addresses as `/32` or `/128` for containers (routed, not bridged: a
//! container reaches everything, its own subnet included, through its
//! gateway; Join adds the on-link route to it) and with the pool's length
//! for the gateway (the host side holds it with the subnet's length).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::error::RequestError;
use super::wire::{
    AddressRequest, AddressResponse, PoolRequest, PoolResponse, ReleaseAddressRequest,
    GATEWAY_TYPE, REQUEST_ADDRESS_TYPE,
};
use crate::ipam::Want;
use crate::model::reserved::reserved_overlap;

/// The address space this IPAM answers in `GetDefaultAddressSpaces`
/// (local; the network driver's scope is local). dockerd passes it on in
/// CreateNetwork's `IPv4Data`/`IPv6Data`: that is how the network driver
/// knows a network's addresses come from this IPAM.
pub const ADDRESS_SPACE: &str = "ipvlan-bgp";
/// The global address space (unused by local-scope networks).
pub const GLOBAL_ADDRESS_SPACE: &str = "ipvlan-bgp-global";
/// What every PoolID starts with.
const POOL_ID_PREFIX: &str = "ipvlan-bgp/";
/// `--ipam-opt block-size=N`: the pool's block length, when it is created.
pub const BLOCK_SIZE_OPTION: &str = "block-size";

/// The PoolID of a pool: it names the pool itself.
pub fn pool_id(pool: IpNet) -> String {
    format!("{POOL_ID_PREFIX}{pool}")
}

/// The pool a PoolID names.
pub fn parse_pool_id(id: &str) -> Result<IpNet, RequestError> {
    id.strip_prefix(POOL_ID_PREFIX)
        .and_then(|p| p.parse::<IpNet>().ok())
        .filter(|p| *p == p.trunc())
        .ok_or_else(|| {
            RequestError::Malformed(format!(
                "PoolID {id:?} was not made by this IPAM (expected {POOL_ID_PREFIX}<subnet>)"
            ))
        })
}

/// A pool as RequestPool asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWanted {
    pub pool: IpNet,
    /// `--ipam-opt block-size=N`.
    pub block_len: Option<u8>,
}

/// Checks a RequestPool: a subnet given (the same on every host), of the
/// family asked, not reserved, without `--ip-range`, with known options.
pub fn pool_request(r: &PoolRequest) -> Result<PoolWanted, RequestError> {
    if r.pool.is_empty() {
        return Err(RequestError::Invalid(
            "the ipvlan-bgp IPAM needs --subnet: give every host the same subnet (for example --subnet 10.20.0.0/16) and each host takes blocks of it".into(),
        ));
    }
    let pool: IpNet = r.pool.parse().map_err(|_| {
        RequestError::Invalid(format!(
            "subnet {:?} is not a prefix (a.b.c.d/len or an IPv6 prefix)",
            r.pool
        ))
    })?;
    if pool != pool.trunc() {
        return Err(RequestError::Invalid(format!(
            "subnet {pool} has host bits set; did you mean {}?",
            pool.trunc()
        )));
    }
    if r.v6 != matches!(pool, IpNet::V6(_)) {
        return Err(RequestError::Invalid(format!(
            "subnet {pool} is not {}",
            if r.v6 { "IPv6" } else { "IPv4" }
        )));
    }
    if let Some((range, what)) = reserved_overlap(pool) {
        return Err(RequestError::Invalid(format!(
            "subnet {pool} overlaps {range} ({what}), which is never a container network; choose another subnet"
        )));
    }
    if !r.sub_pool.is_empty() {
        return Err(RequestError::Invalid(format!(
            "--ip-range {} is not supported by the ipvlan-bgp IPAM: every host takes blocks of the whole --subnet; leave --ip-range out, or use a smaller --subnet",
            r.sub_pool
        )));
    }
    let mut block_len = None;
    for (k, v) in r.options.iter().flatten() {
        if k.starts_with("com.docker.") {
            continue;
        }
        if k != BLOCK_SIZE_OPTION {
            return Err(RequestError::Invalid(format!(
                "unknown --ipam-opt {k:?}; the ipvlan-bgp IPAM knows {BLOCK_SIZE_OPTION}=N (the prefix length of each host's blocks, e.g. 26)"
            )));
        }
        let text = match v {
            Value::String(s) => s.trim().trim_start_matches('/'),
            _ => "",
        };
        let len: u8 = text.parse().map_err(|_| {
            RequestError::Invalid(format!(
                "--ipam-opt {BLOCK_SIZE_OPTION}={v} is not a prefix length (e.g. 26 for blocks of 64 IPv4 addresses)"
            ))
        })?;
        block_len = Some(len);
    }
    Ok(PoolWanted { pool, block_len })
}

/// The RequestPool answer.
pub fn pool_answer(pool: IpNet) -> PoolResponse {
    PoolResponse {
        pool_id: pool_id(pool),
        pool: pool.to_string(),
        data: BTreeMap::new(),
    }
}

/// Checks a RequestAddress: the gateway (dockerd always asks this IPAM for
/// one; each host's is an address of its own, so `--gateway` is refused),
/// a given address (`--ip`, `--aux-address`) of the pool's family, or any.
pub fn address_request(r: &AddressRequest) -> Result<(IpNet, Want), RequestError> {
    let pool = parse_pool_id(&r.pool_id)?;
    let gateway = r
        .options
        .as_ref()
        .and_then(|o| o.get(REQUEST_ADDRESS_TYPE))
        .is_some_and(|v| v == GATEWAY_TYPE);
    let given = match r.address.trim() {
        "" => None,
        a => Some(parse_addr(a)?),
    };
    if let Some(a) = given {
        if a.is_ipv4() != pool.addr().is_ipv4() {
            return Err(RequestError::Invalid(format!(
                "address {a} is not of pool {pool}'s family"
            )));
        }
    }
    let want = match (gateway, given) {
        (true, None) => Want::Gateway,
        (true, Some(g)) => {
            return Err(RequestError::Invalid(format!(
                "--gateway {g} is not supported with the ipvlan-bgp IPAM: each host's gateway is an address of its own block (the same gateway on every host would be claimed by all of them); leave --gateway out"
            )))
        }
        (false, None) => Want::Any,
        (false, Some(a)) => Want::Exact(a),
    };
    Ok((pool, want))
}

/// An address as RequestAddress answers it: a container's as a host route
/// (`/32`, `/128`), the gateway with the pool's prefix length.
pub fn address_answer(addr: IpAddr, pool: IpNet, want: Want) -> AddressResponse {
    let len = match want {
        Want::Gateway => pool.prefix_len(),
        Want::Any | Want::Exact(_) => IpNet::from(addr).prefix_len(),
    };
    AddressResponse {
        address: format!("{addr}/{len}"),
        data: BTreeMap::new(),
    }
}

/// Checks a ReleaseAddress.
pub fn release_request(r: &ReleaseAddressRequest) -> Result<(IpNet, IpAddr), RequestError> {
    Ok((parse_pool_id(&r.pool_id)?, parse_addr(&r.address)?))
}

/// An address, alone or with a prefix length (`10.20.0.5`, `10.20.0.5/32`).
fn parse_addr(a: &str) -> Result<IpAddr, RequestError> {
    let bare = a.split_once('/').map_or(a, |(x, _)| x);
    bare.parse()
        .map_err(|_| RequestError::Invalid(format!("{a:?} is not an IP address")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool_req(v: Value) -> PoolRequest {
        serde_json::from_value(v).unwrap()
    }
    fn addr_req(v: Value) -> AddressRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pool_ids_name_their_pool() {
        for p in ["10.20.0.0/16", "fd00:20::/64"] {
            let p: IpNet = p.parse().unwrap();
            assert_eq!(parse_pool_id(&pool_id(p)).unwrap(), p);
        }
        for bad in [
            "rec-local/10.20.0.0/16",
            "ipvlan-bgp/10.20.0.1/16",
            "ipvlan-bgp/x",
            "",
        ] {
            assert!(parse_pool_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pools_need_a_subnet_and_known_options() {
        let ok = pool_request(&pool_req(json!({"AddressSpace": "ipvlan-bgp", "Pool": "10.20.0.0/16", "SubPool": "", "Options": {}, "V6": false}))).unwrap();
        assert_eq!(
            ok,
            PoolWanted {
                pool: "10.20.0.0/16".parse().unwrap(),
                block_len: None
            }
        );
        let sized = pool_request(&pool_req(
            json!({"Pool": "10.20.0.0/16", "Options": {"block-size": "28"}}),
        ))
        .unwrap();
        assert_eq!(sized.block_len, Some(28));
        let v6 = pool_request(&pool_req(json!({"Pool": "fd00:40::/64", "V6": true}))).unwrap();
        assert_eq!(v6.pool, "fd00:40::/64".parse::<IpNet>().unwrap());
        for (req, want) in [
            (json!({"Pool": ""}), "needs --subnet"),
            (json!({"Pool": "10.20.0.1/16"}), "did you mean 10.20.0.0/16"),
            (json!({"Pool": "10.20.0.0/16", "V6": true}), "is not IPv6"),
            (json!({"Pool": "127.0.0.0/16"}), "loopback"),
            (
                json!({"Pool": "10.30.0.0/16", "SubPool": "10.30.1.0/24"}),
                "--ip-range 10.30.1.0/24 is not supported",
            ),
            (
                json!({"Pool": "10.30.0.0/16", "Options": {"k": "v"}}),
                "unknown --ipam-opt \"k\"",
            ),
            (
                json!({"Pool": "10.30.0.0/16", "Options": {"block-size": "big"}}),
                "not a prefix length",
            ),
        ] {
            let e = pool_request(&pool_req(req.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{req}: {e}");
        }
    }

    #[test]
    fn addresses_gateways_and_their_answers() {
        let id = "ipvlan-bgp/10.20.0.0/16";
        let pool: IpNet = "10.20.0.0/16".parse().unwrap();
        let gw = address_request(&addr_req(json!({"PoolID": id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}))).unwrap();
        assert_eq!(gw, (pool, Want::Gateway));
        let any = address_request(&addr_req(
            json!({"PoolID": id, "Address": "", "Options": null}),
        ))
        .unwrap();
        assert_eq!(any.1, Want::Any);
        let exact = address_request(&addr_req(
            json!({"PoolID": id, "Address": "10.20.5.5", "Options": null}),
        ))
        .unwrap();
        assert_eq!(exact.1, Want::Exact("10.20.5.5".parse().unwrap()));
        let e = address_request(&addr_req(json!({"PoolID": id, "Address": "10.20.0.254", "Options": {"RequestAddressType": "com.docker.network.gateway"}}))).unwrap_err();
        assert!(
            e.to_string()
                .contains("--gateway 10.20.0.254 is not supported"),
            "{e}"
        );
        let e =
            address_request(&addr_req(json!({"PoolID": id, "Address": "fd00::5"}))).unwrap_err();
        assert!(e.to_string().contains("family"), "{e}");
        let a: IpAddr = "10.20.0.7".parse().unwrap();
        assert_eq!(address_answer(a, pool, Want::Any).address, "10.20.0.7/32");
        assert_eq!(
            address_answer(a, pool, Want::Gateway).address,
            "10.20.0.7/16"
        );
        let p6: IpNet = "fd00:40::/64".parse().unwrap();
        let a6: IpAddr = "fd00:40::7".parse().unwrap();
        assert_eq!(
            address_answer(a6, p6, Want::Exact(a6)).address,
            "fd00:40::7/128"
        );
        let r = release_request(
            &serde_json::from_value(json!({"PoolID": id, "Address": "10.20.0.7"})).unwrap(),
        )
        .unwrap();
        assert_eq!(r, (pool, a));
    }
}
