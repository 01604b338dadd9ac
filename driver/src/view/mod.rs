//! What this host announces: the [`View`], published by the Docker side and
//! read by the BGP side and the health gate.
//!
//! ```text
//! docker (networks, endpoints, state) ──View──► health gate ──View──► bgp
//! ```
//! In: the driver's state ([`build`]: the whole view, or one endpoint's
//! entries again) and, for each endpoint, the evidence of whether it may be
//! announced ([`decide`]: the one place that decides). Out: a plain value —
//! prefixes to announce with their parent and BGP attributes, the pools to
//! accept, the cluster IPAM's pools (whose held blocks [`blocks`] announces
//! in place of their containers' host routes), this host's endpoint addresses, the parents in use — on a watch
//! channel. Neither BGP nor the gate imports the Docker side: this is all
//! they see of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use imbl::{OrdMap, OrdSet};
use ipnet::IpNet;

use crate::model::attrs::RouteAttrs;

pub mod blocks;
pub mod build;
pub mod decide;
pub mod diff;

/// A cluster-IPAM network's pool: the parent its blocks are announced
/// behind and the network's BGP attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamPool {
    pub parent: String,
    pub attrs: RouteAttrs,
}

/// What the BGP side needs to know about this host's networks.
///
/// The collections that grow with the endpoints are persistent maps
/// (`imbl`, B-trees sharing their unchanged nodes): publishing the view
/// after one endpoint changed clones it in O(1) instead of copying every
/// entry, and comparing or diffing two versions skips the nodes they
/// share. The per-network ones stay plain: a host has a few networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Prefixes to announce, each with the parent interface it lives behind.
    pub announcements: OrdMap<IpNet, String>,
    /// The subnets of this host's networks: learned prefixes inside them are accepted.
    pub pools: BTreeSet<IpNet>,
    /// This host's own endpoint addresses: never installed from a peer.
    pub local_endpoints: OrdSet<IpAddr>,
    /// Those of them this host reaches through its own routing table (L2
    /// data planes and host links: traffic goes through the shim). ipvlan
    /// L3 hands a packet to its container by address before any route.
    pub endpoints_via_host: OrdSet<IpAddr>,
    /// The parent interfaces in use: learned next hops must be on-link on one of them.
    pub parents: BTreeSet<String>,
    /// BGP attributes of the announcements that have any (network's merged
    /// with the endpoint's); most have none, so most prefixes are absent.
    pub attrs: OrdMap<IpNet, RouteAttrs>,
    /// The cluster IPAM's pools this host announces containers of (its
    /// networks with `--ipam-driver ipvlan-bgp`): where a held block is
    /// announced, behind which parent, with the network's attributes.
    pub ipam_pools: BTreeMap<IpNet, IpamPool>,
    /// The host is drained since this unix time (`ipvlan-bgp drain`): every
    /// announcement goes out made less preferred, with GRACEFUL_SHUTDOWN.
    pub drained: Option<u64>,
}
