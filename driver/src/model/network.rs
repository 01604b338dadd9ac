//! Networks and endpoints as domain types: modes, data planes, parents,
//! subnets, endpoint addresses.
//!
//! A network has an IPv4 subnet, an IPv6 subnet, or both (dual stack); an
//! endpoint has one address in each of its network's subnets.
//!
//! These are what the state file stores (their serde names are its format)
//! and what the driver acts on. [`crate::api::convert`] builds them from
//! Docker's requests; the rules that need no request (IDs, interface names,
//! subnets against [`super::reserved`]) live here, refusing with an
//! [`InvalidRequest`]. Nothing in this module touches the kernel (the
//! kernel facade translates [`Dataplane`] into its own link kinds).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::attrs::RouteAttrs;
use super::invalid::{invalid, InvalidRequest};
use super::names::short_id;
use super::reserved::reserved_overlap;

/// ipvlan's modes. The serde names are part of `state.json`'s format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanFlag {
    Bridge,
    Private,
    Vepa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
}

/// How containers attach to the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "dataplane", rename_all = "lowercase")]
pub enum Dataplane {
    Ipvlan { mode: IpvlanMode, flag: IpvlanFlag },
    Macvlan { mode: MacvlanMode },
}

impl Dataplane {
    /// L2-style data planes: containers use the gateway held by a host-side
    /// shim; L3 ones get a connected default route instead.
    pub fn is_l2(&self) -> bool {
        !matches!(
            self,
            Dataplane::Ipvlan {
                mode: IpvlanMode::L3 | IpvlanMode::L3s,
                ..
            }
        )
    }

    pub fn is_ipvlan(&self) -> bool {
        matches!(self, Dataplane::Ipvlan { .. })
    }

    /// The container port's key for this data plane: its ipvlan mode and
    /// flag, or its macvlan mode (`l3b`, `l3sp`, `l2v`, `mvb`, ...). One
    /// port per key: a link of another ipvlan mode silently switches the
    /// whole parent's mode, and macvlan and ipvlan links cannot share a
    /// parent (docs/dual-uplink.md).
    pub fn port_key(&self) -> String {
        let flag = |f: IpvlanFlag| match f {
            IpvlanFlag::Bridge => 'b',
            IpvlanFlag::Private => 'p',
            IpvlanFlag::Vepa => 'v',
        };
        match self {
            Dataplane::Ipvlan { mode, flag: f } => {
                let m = match mode {
                    IpvlanMode::L2 => "l2",
                    IpvlanMode::L3 => "l3",
                    IpvlanMode::L3s => "l3s",
                };
                format!("{m}{}", flag(*f))
            }
            Dataplane::Macvlan { mode } => match mode {
                MacvlanMode::Bridge => "mvb",
                MacvlanMode::Private => "mvp",
                MacvlanMode::Vepa => "mvv",
            }
            .to_string(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Dataplane::Ipvlan { mode, flag } => format!(
                "ipvlan {} ({})",
                format!("{mode:?}").to_lowercase(),
                format!("{flag:?}").to_lowercase()
            ),
            Dataplane::Macvlan { mode } => {
                format!("macvlan {}", format!("{mode:?}").to_lowercase())
            }
        }
    }
}

/// What a network announces over BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Announce {
    /// One host route (/32, /128) per joined endpoint.
    #[default]
    Endpoint,
    /// The network's whole subnets, for as long as the network exists.
    Subnet,
}

/// The parent interface, and the 802.1Q sub-interface to make when the name asks for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub name: String,
    /// `Some((lower, id))` when `name` is `lower.id`.
    pub vlan: Option<(String, u16)>,
    /// Dual-uplink mode: `name` is the container port's containers' end
    /// ("pa", [`super::names::port`]), made by the driver for this data
    /// plane and shared by its networks; the gateways sit on the host's end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port: bool,
}

/// A network as this driver understands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub id: String,
    pub parent: Parent,
    pub dataplane: Dataplane,
    /// The IPv4 subnet; `None` on an IPv6-only network.
    pub subnet: Option<Ipv4Net>,
    /// The gateway address with the subnet's prefix length (the shim's address in L2 modes).
    pub gateway: Option<Ipv4Net>,
    /// The IPv6 subnet (`--ipv6`); absent from state files of IPv4-only networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// The IPv6 gateway with the subnet's prefix length (held by the shim in L2 modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Net>,
    pub announce: Announce,
    /// `--internal`: nothing is announced for this network.
    pub internal: bool,
    /// ipvlan L3/L3S: a host-side ipvlan link holds the gateway address so the
    /// host can reach its own containers (L3 mode isolates them from the parent).
    #[serde(default)]
    pub host_link: bool,
    /// BGP attributes on what this network announces (`-o bgp_*`).
    #[serde(default, skip_serializing_if = "RouteAttrs::is_empty")]
    pub attrs: RouteAttrs,
    /// Its addresses come from the cluster-wide IPAM (`--ipam-driver
    /// ipvlan-bgp`): one subnet on every host, containers hold host routes
    /// (/32, /128) and reach even their own subnet through the gateway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_ipam: bool,
}

/// Docker's network IDs are 64 hex characters; accept any non-empty hex-ish
/// token but refuse what could break a file name or a link name.
pub fn check_id(kind: &str, id: &str) -> Result<(), InvalidRequest> {
    if id.len() < 12 || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(format!(
            "{kind} {id:?} is not a valid ID (expected Docker's hexadecimal ID, at least 12 characters)"
        )));
    }
    Ok(())
}

/// Whether `name` can be a Linux interface name.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

impl Parent {
    pub fn parse(name: &str) -> Result<Parent, InvalidRequest> {
        if !valid_ifname(name) {
            return Err(invalid(format!(
                "parent {name:?} is not a valid interface name (at most 15 characters, no '/', ':' or spaces)"
            )));
        }
        let vlan = match name.rsplit_once('.') {
            Some((lower, id)) if !lower.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => {
                let id: u16 = id
                    .parse()
                    .ok()
                    .filter(|v| (1..=4094).contains(v))
                    .ok_or_else(|| {
                        invalid(format!(
                            "parent {name:?}: VLAN ID must be between 1 and 4094"
                        ))
                    })?;
                Some((lower.to_string(), id))
            }
            _ => None,
        };
        Ok(Parent {
            name: name.to_string(),
            vlan,
            port: false,
        })
    }

    /// The container port of `dataplane` (dual-uplink mode).
    pub fn port(dataplane: &Dataplane) -> Parent {
        Parent {
            name: super::names::port(&dataplane.port_key()).0,
            vlan: None,
            port: true,
        }
    }

    /// The container port's host end ("pb"), for a port parent.
    pub fn port_host_end(&self) -> Option<String> {
        self.port
            .then(|| self.name.strip_suffix("-a").map(|b| format!("{b}-b")))
            .flatten()
    }
}

impl NetworkSpec {
    /// Refuses what can never be a container network: no subnet at all, a
    /// subnet that overlaps a reserved range ([`super::reserved`]), an IPv6 subnet
    /// too small for an endpoint. Checked before any kernel change.
    pub fn check_subnet(&self) -> Result<(), InvalidRequest> {
        if self.subnet.is_none() && self.subnet6.is_none() {
            return Err(invalid(
                "the network has no subnet: add --subnet (IPv4, or IPv6 with --ipv6)",
            ));
        }
        if let Some(s4) = self.subnet {
            check_reserved(IpNet::V4(s4))?;
        }
        match self.subnet6 {
            Some(s6) => Self::check_subnet6(s6),
            None => Ok(()),
        }
    }

    /// An IPv6 subnet that is not reserved and holds a gateway and endpoints.
    pub fn check_subnet6(s6: Ipv6Net) -> Result<(), InvalidRequest> {
        check_reserved(IpNet::V6(s6))?;
        if s6.prefix_len() > MAX_PREFIX6 {
            return Err(invalid(format!(
                "IPv6 subnet {s6} is too small to hold a gateway and an endpoint; use a prefix of /{MAX_PREFIX6} or shorter (/64 is usual)"
            )));
        }
        Ok(())
    }

    /// The network's subnets: IPv4 first, then IPv6.
    pub fn subnets(&self) -> impl Iterator<Item = IpNet> {
        let v4 = self.subnet.map(IpNet::V4);
        let v6 = self.subnet6.map(IpNet::V6);
        v4.into_iter().chain(v6)
    }

    /// The gateway addresses (with their prefix length): IPv4 first, then IPv6.
    pub fn gateways(&self) -> impl Iterator<Item = IpNet> {
        let v4 = self.gateway.map(IpNet::V4);
        let v6 = self.gateway6.map(IpNet::V6);
        v4.into_iter().chain(v6)
    }

    /// A subnet of `self` that overlaps one of `other`, with that one.
    pub fn overlap(&self, other: &NetworkSpec) -> Option<(IpNet, IpNet)> {
        self.subnets().find_map(|a| {
            other
                .subnets()
                .find(|b| a.contains(&b.network()) || b.contains(&a.network()))
                .map(|b| (a, b))
        })
    }

    /// The subnets for humans: `10.1.1.0/24, fd00:1::/64`.
    pub fn subnets_text(&self) -> String {
        join(self.subnets().map(|s| s.to_string()))
    }

    /// The gateway addresses for humans, if any.
    pub fn gateways_text(&self) -> Option<String> {
        let text = join(self.gateways().map(|g| g.addr().to_string()));
        (!text.is_empty()).then_some(text)
    }

    /// Whether the network has a host-side link: the L2 shim, or the L3 host link.
    pub fn has_shim(&self) -> bool {
        !self.parent.port && (self.dataplane.is_l2() || self.host_link)
    }

    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The endpoint's addresses (each with its subnet's prefix length) and the
/// MAC address the user asked for, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub id: String,
    /// The IPv4 address; `None` on an IPv6-only network.
    pub address: Option<Ipv4Net>,
    /// The IPv6 address; absent from state files of IPv4-only networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    pub mac: Option<[u8; 6]>,
    /// BGP attributes from the container's `--driver-opt bgp_*`, merged over
    /// the network's (see [`RouteAttrs::merged`]).
    #[serde(default, skip_serializing_if = "RouteAttrs::is_empty")]
    pub attrs: RouteAttrs,
}

impl EndpointSpec {
    /// The endpoint's addresses: IPv4 first, then IPv6.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> {
        let v4 = self.address.map(|a| IpAddr::V4(a.addr()));
        let v6 = self.address6.map(|a| IpAddr::V6(a.addr()));
        v4.into_iter().chain(v6)
    }

    pub fn has_addr(&self, addr: IpAddr) -> bool {
        self.addrs().any(|a| a == addr)
    }

    /// The addresses for humans: `10.1.1.2, fd00:1::2`.
    pub fn addresses_text(&self) -> String {
        join(self.addrs().map(|a| a.to_string()))
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn check_reserved(subnet: IpNet) -> Result<(), InvalidRequest> {
    match reserved_overlap(subnet) {
        None => Ok(()),
        Some((range, what)) => Err(invalid(format!(
            "subnet {subnet} overlaps {range} ({what}), which is reserved and can never be a container network; choose another subnet"
        ))),
    }
}

/// The longest IPv6 prefix a network may have: room for a gateway and endpoints.
pub const MAX_PREFIX6: u8 = 126;

/// The host route announced for an endpoint address: /32 or /128.
pub fn host_route(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}
