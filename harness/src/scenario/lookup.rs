//! Finding things in a checked scenario by name: hosts, routers,
//! containers, their links (segments and uplinks) and addresses per segment and family, the
//! address two nodes share a segment on, AS numbers, groups.
//!
//! In: a [`Scenario`] and names. Out: definitions and addresses. Pure.

use ipnet::{IpNet, Ipv4Net};

use super::model::Scenario;
use super::schema::{ContainerDef, Family, HostDef, RouterDef, Uplink};

impl Scenario {
    /// The address of `b` on a segment it shares with `a` (hosts and routers).
    pub fn shared_address(&self, a: &str, b: &str) -> Option<Ipv4Net> {
        let a_segs = self.links_of(a);
        self.links_of(b)
            .into_iter()
            .find(|(seg, _)| a_segs.iter().any(|(s, _)| s == seg))
            .map(|(_, addr)| addr)
    }

    /// Whether a network routes IPv6 through a host-side shim (macvlan or
    /// ipvlan L2 with IPv6 subnets): what needs the host to forward IPv6
    /// (ipvlan L3/L3S route inside the ipvlan driver and need none).
    pub fn ipv6_through_shims(&self) -> bool {
        self.networks.iter().any(|n| {
            let o = |k: &str| n.options.get(k).map(String::as_str);
            !n.subnets6.is_empty()
                && (o("dataplane") == Some("macvlan")
                    || o("mode") == Some("macvlan")
                    || o("ipvlan_mode") == Some("l2"))
        })
    }

    /// The address of `b` of `family` on a segment it shares with `a`.
    pub fn shared_address_of(&self, a: &str, b: &str, family: Family) -> Option<IpNet> {
        let a_segs = self.links_of_family(a, family);
        self.links_of_family(b, family)
            .into_iter()
            .find(|(seg, _)| a_segs.iter().any(|(s, _)| s == seg))
            .map(|(_, addr)| addr)
    }

    /// (segment, address) of every link of a host or router in one family.
    pub fn links_of_family(&self, name: &str, family: Family) -> Vec<(String, IpNet)> {
        if family == Family::Ipv4 {
            return self
                .links_of(name)
                .into_iter()
                .map(|(s, a)| (s, IpNet::V4(a)))
                .collect();
        }
        if let Some(h) = self.host(name) {
            if !h.uplink_links.is_empty() {
                return h
                    .uplink_links
                    .iter()
                    .filter_map(|u| Some((u.segment.clone(), IpNet::V6(u.host_addr6?))))
                    .collect();
            }
            return h
                .segment
                .clone()
                .zip(h.address6.map(IpNet::V6))
                .into_iter()
                .collect();
        }
        self.router(name)
            .map(|r| {
                r.links6
                    .iter()
                    .map(|(s, a)| (s.clone(), IpNet::V6(*a)))
                    .chain(
                        self.uplinks_to(name)
                            .filter_map(|u| Some((u.segment.clone(), IpNet::V6(u.router_addr6?)))),
                    )
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every host's uplink to router `router` (`[[hosts]] uplinks`).
    pub fn uplinks_to<'a>(&'a self, router: &'a str) -> impl Iterator<Item = &'a Uplink> + 'a {
        self.hosts
            .iter()
            .flat_map(|h| &h.uplink_links)
            .filter(move |u| u.router == router)
    }

    /// Whether some host has uplinks (the routers then run multipath).
    pub fn has_uplinks(&self) -> bool {
        self.hosts.iter().any(|h| !h.uplink_links.is_empty())
    }

    /// The host that has the uplink `segment` (`h1.up1`).
    pub fn uplink_host(&self, segment: &str) -> Option<(&HostDef, &Uplink)> {
        self.hosts.iter().find_map(|h| {
            h.uplink_links
                .iter()
                .find(|u| u.segment == segment)
                .map(|u| (h, u))
        })
    }

    /// (segment, address) of every link of a host or router.
    pub fn links_of(&self, name: &str) -> Vec<(String, Ipv4Net)> {
        if let Some(h) = self.host(name) {
            if !h.uplink_links.is_empty() {
                return h
                    .uplink_links
                    .iter()
                    .map(|u| (u.segment.clone(), u.host_addr))
                    .collect();
            }
            return h.segment.clone().zip(h.address).into_iter().collect();
        }
        self.router(name)
            .map(|r| {
                r.links
                    .iter()
                    .map(|(s, a)| (s.clone(), *a))
                    .chain(
                        self.uplinks_to(name)
                            .map(|u| (u.segment.clone(), u.router_addr)),
                    )
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The AS number of a host or router.
    pub fn asn_of(&self, name: &str) -> Option<u32> {
        self.host(name)
            .map(|h| h.asn)
            .or_else(|| self.router(name).map(|r| r.asn))
    }

    pub fn router(&self, name: &str) -> Option<&RouterDef> {
        self.routers.iter().find(|r| r.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&HostDef> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerDef> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Expands group names; keeps host names as they are.
    pub fn expand(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            match self.groups.get(n) {
                Some(members) if self.container(n).is_none() => out.extend(members.iter().cloned()),
                _ => out.push(n.clone()),
            }
        }
        out
    }
}
