//! Networks and endpoints as domain types: modes, data planes, parents,
//! subnets, endpoint addresses.
//!
//! These are what the state file stores (their serde names are its format)
//! and what the driver acts on. [`crate::api::convert`] builds them from
//! Docker's requests; the rules that need no request (IDs, interface names,
//! reserved subnets) live here. Nothing in this module touches the kernel.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::kernel::LinkKind;

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

    pub fn link_kind(&self) -> LinkKind {
        match *self {
            Dataplane::Ipvlan { mode, flag } => LinkKind::Ipvlan { mode, flag },
            Dataplane::Macvlan { mode } => LinkKind::Macvlan { mode },
        }
    }

    pub fn is_ipvlan(&self) -> bool {
        matches!(self, Dataplane::Ipvlan { .. })
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
    /// One host route (/32) per joined endpoint.
    #[default]
    Endpoint,
    /// The network's whole subnet, for as long as the network exists.
    Subnet,
}

/// The parent interface, and the 802.1Q sub-interface to make when the name asks for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub name: String,
    /// `Some((lower, id))` when `name` is `lower.id`.
    pub vlan: Option<(String, u16)>,
}

/// A network as this driver understands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub id: String,
    pub parent: Parent,
    pub dataplane: Dataplane,
    pub subnet: Ipv4Net,
    /// The gateway address with the subnet's prefix length (the shim's address in L2 modes).
    pub gateway: Option<Ipv4Net>,
    pub announce: Announce,
    /// `--internal`: nothing is announced for this network.
    pub internal: bool,
    /// ipvlan L3/L3S: a host-side ipvlan link holds the gateway address so the
    /// host can reach its own containers (L3 mode isolates them from the parent).
    #[serde(default)]
    pub host_link: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> InvalidRequest {
    InvalidRequest(msg.into())
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
        })
    }
}

impl NetworkSpec {
    /// Refuses subnets that can never be container networks: those that
    /// overlap [`RESERVED`]. Checked before any kernel change.
    pub fn check_subnet(&self) -> Result<(), InvalidRequest> {
        match reserved_overlap(self.subnet) {
            None => Ok(()),
            Some((range, what)) => Err(invalid(format!(
                "subnet {} overlaps {range} ({what}), which is reserved and can never be a container network; choose another subnet",
                self.subnet
            ))),
        }
    }

    /// Whether the network has a host-side link: the L2 shim, or the L3 host link.
    pub fn has_shim(&self) -> bool {
        self.dataplane.is_l2() || self.host_link
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// The endpoint's IPv4 address (with the subnet's prefix length) and the MAC
/// address the user asked for, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub id: String,
    pub address: Ipv4Net,
    pub mac: Option<[u8; 6]>,
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

/// Ranges that are never container networks, with what they are.
pub const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved for future use, and broadcast"),
];

/// The reserved range `subnet` overlaps, if any.
pub fn reserved_overlap(subnet: Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    RESERVED.iter().find_map(|(r, what)| {
        let r: Ipv4Net = r.parse().ok()?;
        (r.contains(&subnet.network()) || subnet.contains(&r.network())).then_some((r, *what))
    })
}

/// The host route announced for an endpoint.
pub fn host_route(addr: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::new(addr, 32).expect("32 is a valid prefix length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_are_named() {
        for (net, what) in [
            ("0.0.0.0/8", "this network"),
            ("0.1.0.0/16", "this network"),
            ("127.0.0.0/24", "loopback"),
            ("169.254.1.0/24", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("239.255.0.0/16", "multicast"),
            ("240.0.0.0/8", "future"),
            ("255.255.255.0/24", "future"),
            // Wider than a reserved range: overlaps it too.
            ("0.0.0.0/1", "this network"),
            ("192.0.0.0/2", "multicast"),
        ] {
            let got = reserved_overlap(net.parse().unwrap());
            assert!(got.is_some_and(|(_, w)| w.contains(what)), "{net}: {got:?}");
        }
        for net in [
            "10.0.0.0/8",
            "192.0.2.0/24",
            "169.255.0.0/16",
            "223.255.255.0/24",
            "1.0.0.0/8",
        ] {
            assert_eq!(reserved_overlap(net.parse().unwrap()), None, "{net}");
        }
    }
}
