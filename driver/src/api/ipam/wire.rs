//! Docker's remote IPAM protocol as serde types, field for field, as
//! dockerd 20.10 sends them (`tests/fixtures/dockerd-ipam-requests.jsonl`),
//! plus the bodies of our own `IpvlanBgp.Ipam*` calls (`ipam show`,
//! `ipam release-host`).
//!
//! They hold raw strings; [`super::convert`] turns them into pools, wanted
//! addresses and answers before the IPAM sees them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapabilitiesResponse {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    #[serde(rename = "RequiresRequestReplay")]
    pub requires_request_replay: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpacesResponse {
    pub local_default_address_space: String,
    pub global_default_address_space: String,
}

/// `RequestPool`: `Pool` is `--subnet` (empty without it), `SubPool` is
/// `--ip-range`, `Options` the `--ipam-opt`s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PoolRequest {
    #[serde(default)]
    pub address_space: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub sub_pool: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, Value>>,
    #[serde(rename = "V6", default)]
    pub v6: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleasePoolRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `RequestAddress`: `Address` is a wanted address (`--ip`, `--gateway`,
/// `--aux-address`) or empty; `Options` is `null` for a container and holds
/// `RequestAddressType: com.docker.network.gateway` for the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Options", default)]
    pub options: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressResponse {
    /// `a.b.c.d/len`.
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseAddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Address")]
    pub address: String,
}

/// `IpvlanBgp.IpamReleaseHost` (ours): the host id whose blocks to release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseHostRequest {
    pub host: String,
}

/// The key dockerd sets in `RequestAddress`'s `Options` and its value for
/// the network's gateway.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
pub const GATEWAY_TYPE: &str = "com.docker.network.gateway";
