//! What the harness sees and what it wants, compared without side effects:
//! a container's own addresses and routes, a best path's reflection
//! attributes, a host's learned route set (the one shared route comparison,
//! with its diff), BGP sessions, status-field and log-line bounds.
//!
//! In: kernel routes, `gobgp -j` JSON, status JSON, log files. Out: views
//! and `Result<(), String>` checks the expectations poll. Owns these types
//! and their unit tests; depends on no other part of the runner.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, Result};
use ipnet::IpNet;
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Family;

use crate::scenario::DefaultRoute;

/// A container's own eth0 addresses and routes (both families; IPv6
/// link-local ones left out: every interface has them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerView {
    pub eth0: Vec<IpNet>,
    /// (destination, next hop, leaves through eth0)
    pub routes: Vec<(IpNet, Option<std::net::IpAddr>, bool)>,
}

impl ContainerView {
    pub fn read(netns: &std::path::Path) -> Result<ContainerView> {
        let mut k = Kernel::open_in_netns(netns)?;
        let eth0 = k
            .link("eth0")?
            .ok_or_else(|| anyhow!("no eth0 in the container"))?;
        let addrs = k
            .addresses()?
            .into_iter()
            .filter(|a| a.index == eth0.index && !link_local(&a.net))
            .map(|a| a.net)
            .collect();
        let mut all = k.routes(Family::V4, None)?;
        all.extend(k.routes(Family::V6, None)?);
        let routes = all
            .into_iter()
            .filter(|r| !link_local(&r.dst) && !r.dst.addr().is_multicast())
            .map(|r| (r.dst, r.via, r.oif == Some(eth0.index)))
            .collect();
        Ok(ContainerView {
            eth0: addrs,
            routes,
        })
    }

    fn default_route(&self, v6: bool) -> Option<&(IpNet, Option<std::net::IpAddr>, bool)> {
        self.routes
            .iter()
            .find(|r| r.0.prefix_len() == 0 && r.0.addr().is_ipv6() == v6)
    }
}

/// fe80::/10: every IPv6 interface has one, nobody routes them.
fn link_local(n: &IpNet) -> bool {
    matches!(n.addr(), IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

impl std::fmt::Display for ContainerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a: Vec<String> = self.eth0.iter().map(|n| n.to_string()).collect();
        let r: Vec<String> = self
            .routes
            .iter()
            .map(|(d, v, eth0)| {
                let dev = if *eth0 { " dev eth0" } else { "" };
                match v {
                    Some(v) => format!("{d} via {v}{dev}"),
                    None => format!("{d}{dev}"),
                }
            })
            .collect();
        write!(f, "eth0 [{}], routes [{}]", a.join(" "), r.join(", "))
    }
}

/// What `expect-container` wants of a container's view.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerWant {
    pub address: Option<bool>,
    pub default_route: Option<DefaultRoute>,
    pub gateway: Option<bool>,
    /// The address is a host route and so is every on-link route but the
    /// default one (or, `false`, the address is not a host route).
    pub host_route: Option<bool>,
}

impl ContainerWant {
    /// Each family the container has: `fams` holds (the address the
    /// engine's IPAM gave, the network's gateway) per family; every check
    /// applies to each, and a failure names the family.
    pub fn check(
        &self,
        v: &ContainerView,
        fams: &[(IpAddr, IpAddr)],
    ) -> std::result::Result<(), String> {
        let mut wrong = Vec::new();
        for (addr, gw) in fams {
            if let Err(e) = self.check_family(v, *addr, *gw) {
                let fam = if addr.is_ipv6() { "IPv6" } else { "IPv4" };
                wrong.push(format!("{fam}: {e}"));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    fn check_family(
        &self,
        v: &ContainerView,
        addr: IpAddr,
        gw: IpAddr,
    ) -> std::result::Result<(), String> {
        let v6 = addr.is_ipv6();
        let mut wrong = Vec::new();
        if let Some(want) = self.address {
            let has = v.eth0.iter().any(|n| n.addr() == addr);
            if has != want {
                wrong.push(if want {
                    format!("eth0 lacks its address {addr}")
                } else {
                    format!("eth0 holds {addr}")
                });
            }
        }
        if let Some(want) = self.host_route {
            let max = if v6 { 128 } else { 32 };
            match v.eth0.iter().find(|n| n.addr() == addr) {
                None => wrong.push(format!("eth0 lacks its address {addr}")),
                Some(n) if (n.prefix_len() == max) != want => wrong.push(format!(
                    "eth0 holds {n}, {}a host route",
                    if want { "not " } else { "" }
                )),
                Some(_) => {}
            }
            if want {
                let wide: Vec<String> = v
                    .routes
                    .iter()
                    .filter(|(d, via, eth0)| {
                        *eth0
                            && via.is_none()
                            && d.addr().is_ipv6() == v6
                            && d.prefix_len() != 0
                            && d.prefix_len() != max
                    })
                    .map(|(d, _, _)| d.to_string())
                    .collect();
                if !wide.is_empty() {
                    wrong.push(format!(
                        "on-link routes to more than one address (bridged, not routed): {}",
                        wide.join(", ")
                    ));
                }
            }
        }
        let default = v.default_route(v6);
        match (self.default_route, default) {
            (None, _) => {}
            (Some(_), None) => wrong.push("no default route".into()),
            (Some(_), Some((_, _, false))) => {
                wrong.push("the default route does not leave through eth0".into())
            }
            (Some(DefaultRoute::Connected), Some((_, Some(v), _))) => {
                wrong.push(format!("the default route is via {v}, expected connected"))
            }
            (Some(DefaultRoute::Gateway), Some((_, None, _))) => {
                wrong.push("the default route is connected, expected via a gateway".into())
            }
            (Some(_), Some(_)) => {}
        }
        match self.gateway {
            Some(true) if default.map(|d| d.1) != Some(Some(gw)) => {
                wrong.push(format!("the default route is not via the gateway {gw}"));
            }
            None | Some(true) => {}
            Some(false) => {
                let via: Vec<String> = v
                    .routes
                    .iter()
                    .filter(|(d, _, _)| d.addr().is_ipv6() == v6)
                    .filter_map(|(d, h, _)| h.map(|h| format!("{d} via {h}")))
                    .collect();
                if !via.is_empty() {
                    wrong.push(format!("expected no gateway, but has {}", via.join(", ")));
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// The route-reflection attributes of the best path gobgpd holds for a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct BestPath {
    pub next_hop: Option<String>,
    /// ORIGINATOR_ID (attribute type 9).
    pub originator: Option<String>,
    /// CLUSTER_LIST (attribute type 10).
    pub cluster_list: Option<Vec<String>>,
}

impl std::fmt::Display for BestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "next hop {}, originator {}, cluster list {}",
            self.next_hop.as_deref().unwrap_or("-"),
            self.originator.as_deref().unwrap_or("none"),
            self.cluster_list
                .as_ref()
                .map_or("none".to_string(), |l| format!("[{}]", l.join(", ")))
        )
    }
}

impl BestPath {
    /// From `gobgp -j global rib -a ipv4 PREFIX`: `{prefix: [path...]}`,
    /// each path with `best` and `attrs` (`{"type": 9, "value": "a.b.c.d"}`,
    /// `{"type": 10, "value": ["a.b.c.d", ...]}`).
    pub fn from_rib(
        rib: &serde_json::Value,
        prefix: IpNet,
    ) -> std::result::Result<BestPath, String> {
        let paths = rib
            .get(prefix.to_string())
            .and_then(|p| p.as_array())
            .ok_or_else(|| format!("no path for {prefix} in the RIB: {rib}"))?;
        let best = paths
            .iter()
            .find(|p| p.get("best").and_then(|b| b.as_bool()) == Some(true))
            .ok_or_else(|| format!("no best path for {prefix} among {}", paths.len()))?;
        let attrs = best
            .get("attrs")
            .and_then(|a| a.as_array())
            .ok_or_else(|| format!("path without attrs: {best}"))?;
        let attr = |t: u64| {
            attrs
                .iter()
                .find(|a| a.get("type").and_then(|v| v.as_u64()) == Some(t))
        };
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        Ok(BestPath {
            next_hop: attr(3).and_then(|a| a.get("nexthop")).and_then(text),
            originator: attr(9).and_then(|a| a.get("value")).and_then(text),
            cluster_list: attr(10)
                .and_then(|a| a.get("value"))
                .and_then(|v| v.as_array())
                .map(|l| l.iter().filter_map(text).collect()),
        })
    }

    pub fn check(
        &self,
        originator: Option<IpAddr>,
        cluster_list: Option<&[IpAddr]>,
    ) -> std::result::Result<(), String> {
        let mut wrong = Vec::new();
        if let Some(o) = originator {
            if self.originator.as_deref() != Some(o.to_string().as_str()) {
                wrong.push(format!("ORIGINATOR_ID is not {o}"));
            }
        }
        if let Some(want) = cluster_list {
            let want: Vec<String> = want.iter().map(|a| a.to_string()).collect();
            if self.cluster_list.as_ref() != Some(&want) {
                wrong.push(format!("CLUSTER_LIST is not [{}]", want.join(", ")));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// One route an expectation wants: a prefix and, optionally, its next hop.
#[derive(Debug, Clone, PartialEq)]
pub struct WantRoute {
    pub dst: IpNet,
    pub via: Option<IpAddr>,
}

impl std::fmt::Display for WantRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via {
            Some(v) => write!(f, "{} via {v}", self.dst),
            None => write!(f, "{}", self.dst),
        }
    }
}

/// The routes seen (of one owner): prefix -> next hops (`None`: no gateway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenRoutes(pub BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>>);

pub(super) fn hops_text(hops: &[Option<std::net::IpAddr>]) -> String {
    hops.iter()
        .map(|h| h.map_or("(connected)".to_string(), |a| a.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

impl std::fmt::Display for SeenRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        let all: Vec<String> = self
            .0
            .iter()
            .map(|(d, h)| format!("{d} via {}", hops_text(h)))
            .collect();
        write!(f, "{}", all.join(", "))
    }
}

impl SeenRoutes {
    pub fn from_kernel(routes: &[ipvlan_bgp::kernel::Route]) -> SeenRoutes {
        let mut m: BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>> = BTreeMap::new();
        for r in routes {
            m.entry(r.dst).or_default().push(r.via);
        }
        SeenRoutes(m)
    }

    /// The one route comparison of `expect-route` and `expect-routes`:
    /// every wanted prefix is there (through its `via` when given) and,
    /// when `exact`, nothing else is.
    pub fn compare(&self, want: &[WantRoute], exact: bool) -> std::result::Result<(), RouteDiff> {
        let mut d = RouteDiff::default();
        for w in want {
            match self.0.get(&w.dst) {
                None => d.missing.push(w.clone()),
                Some(hops) => {
                    if let Some(v) = w.via {
                        if !hops.contains(&Some(v)) {
                            d.wrong_via.push((w.clone(), hops_text(hops)));
                        }
                    }
                }
            }
        }
        if exact {
            // A set: a whole host's routes at scale (thousands) against as many wanted.
            let wanted: std::collections::BTreeSet<IpNet> = want.iter().map(|w| w.dst).collect();
            for (dst, hops) in &self.0 {
                if !wanted.contains(dst) {
                    d.extra.push(format!("{dst} via {}", hops_text(hops)));
                } else if hops.len() > 1 {
                    // One route per prefix: a second one is a duplicate.
                    d.extra.push(format!(
                        "{dst} via {} ({} routes for one prefix)",
                        hops_text(hops),
                        hops.len()
                    ));
                }
            }
        }
        if d.missing.is_empty() && d.extra.is_empty() && d.wrong_via.is_empty() {
            Ok(())
        } else {
            Err(d)
        }
    }
}

/// How seen routes differ from the wanted ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDiff {
    pub missing: Vec<WantRoute>,
    pub extra: Vec<String>,
    /// The wanted route and the next hops seen instead.
    pub wrong_via: Vec<(WantRoute, String)>,
}

impl std::fmt::Display for RouteDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let m: Vec<String> = self.missing.iter().map(|w| w.to_string()).collect();
            parts.push(format!("missing [{}]", m.join(", ")));
        }
        if !self.extra.is_empty() {
            parts.push(format!("extra [{}]", self.extra.join(", ")));
        }
        if !self.wrong_via.is_empty() {
            let w: Vec<String> = self
                .wrong_via
                .iter()
                .map(|(w, seen)| {
                    format!(
                        "{} via {seen}, expected {}",
                        w.dst,
                        w.via.map_or(String::new(), |v| v.to_string())
                    )
                })
                .collect();
            parts.push(format!("wrong next hop [{}]", w.join(", ")));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Whether the status JSON's value at a dotted `field` passes the tests.
pub(super) fn status_matches(
    st: &serde_json::Value,
    field: &str,
    equals: Option<&serde_json::Value>,
    at_least: Option<f64>,
    at_most: Option<f64>,
) -> std::result::Result<(), String> {
    let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
    let seen = st.pointer(&pointer);
    if let Some(want) = equals {
        let same = match (seen, want) {
            (Some(a), b) if a.is_number() && b.is_number() => a.as_f64() == b.as_f64(),
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same {
            return Err(format!(
                "{field} is {}, expected {want}",
                seen.map_or("missing".to_string(), |v| v.to_string())
            ));
        }
    }
    if at_least.is_some() || at_most.is_some() {
        // A key not there yet in a map of counters (`bgp.rejected`) has
        // counted nothing; any other missing field is a misspelt name, never
        // a passing 0.
        let parent: String = match pointer.rfind('/') {
            Some(i) => pointer[..i].to_string(),
            None => String::new(),
        };
        let counters = st
            .pointer(&parent)
            .and_then(|p| p.as_object())
            .is_some_and(|m| m.values().all(serde_json::Value::is_number));
        let n = match seen {
            None if counters => 0.0,
            None => return Err(format!("{field} is missing from the status")),
            Some(serde_json::Value::Null) => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{field} is {v}, not a number"))?,
        };
        bounds(n, at_least, at_most).map_err(|e| format!("{field} is {n}: {e}"))?;
    }
    Ok(())
}

pub(super) fn bounds(
    n: f64,
    at_least: Option<f64>,
    at_most: Option<f64>,
) -> std::result::Result<(), String> {
    if let Some(lo) = at_least {
        if n < lo {
            return Err(format!("expected at least {lo}"));
        }
    }
    if let Some(hi) = at_most {
        if n > hi {
            return Err(format!("expected at most {hi}"));
        }
    }
    Ok(())
}

/// Lines of a log file that contain `needle` (a missing file has none).
pub(super) fn count_lines(log: &std::path::Path, needle: &str) -> Result<usize> {
    match std::fs::read(log) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow!("read {}: {e}", log.display())),
    }
}

/// One BGP session as `gobgp -j neighbor` shows it: enough to tell whether
/// it was reset (uptime) or carried new routes (UPDATEs received).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub address: String,
    pub established: bool,
    /// When the session came up (`timers.state.uptime`), as gobgpd reports it.
    pub uptime: serde_json::Value,
    pub updates_received: u64,
}

impl PeerView {
    pub fn all(neighbors: &[serde_json::Value]) -> Result<Vec<PeerView>> {
        neighbors
            .iter()
            .map(|n| {
                let address = n
                    .pointer("/conf/neighbor_address")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| anyhow!("gobgp neighbor without conf.neighbor_address: {n}"))?
                    .to_string();
                Ok(PeerView {
                    address,
                    established: n.pointer("/state/session_state").and_then(|v| v.as_u64())
                        == Some(6),
                    // Both are required: a snapshot without them would
                    // compare nothing and always look steady.
                    uptime: n.pointer("/timers/state/uptime").cloned().ok_or_else(|| {
                        anyhow!("gobgp neighbor without timers.state.uptime: {n}")
                    })?,
                    updates_received: n
                        .pointer("/state/messages/received/update")
                        .and_then(|v| v.as_u64())
                        .ok_or_else(|| {
                            anyhow!("gobgp neighbor without state.messages.received.update: {n}")
                        })?,
                })
            })
            .collect()
    }

    /// How `now` differs from this earlier view, or `None` if the session is steady.
    pub fn diff(&self, now: &PeerView) -> Option<String> {
        let mut d = Vec::new();
        if !now.established {
            d.push("not established".to_string());
        }
        if now.uptime != self.uptime {
            d.push(format!(
                "reset (up since {} -> {})",
                self.uptime, now.uptime
            ));
        }
        if now.updates_received != self.updates_received {
            d.push(format!(
                "{} new UPDATEs received",
                now.updates_received.saturating_sub(self.updates_received)
            ));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::Ipv4Addr;

    fn seen(routes: &[(&str, Option<&str>)]) -> SeenRoutes {
        let mut m: BTreeMap<IpNet, Vec<Option<std::net::IpAddr>>> = BTreeMap::new();
        for (d, v) in routes {
            m.entry(d.parse().unwrap())
                .or_default()
                .push(v.map(|v| v.parse().unwrap()));
        }
        SeenRoutes(m)
    }

    fn want(d: &str, via: Option<&str>) -> WantRoute {
        WantRoute {
            dst: d.parse().unwrap(),
            via: via.map(|v| v.parse().unwrap()),
        }
    }

    #[test]
    fn route_sets_diff_missing_extra_and_wrong_next_hop() {
        let s = seen(&[
            ("10.1.1.2/32", Some("192.0.2.1")),
            ("10.1.3.2/32", Some("192.0.2.9")),
            ("10.9.9.9/32", Some("192.0.2.3")),
        ]);
        let w = [
            want("10.1.1.2/32", Some("192.0.2.1")),
            want("10.1.3.2/32", Some("192.0.2.3")),
            want("10.1.4.2/32", None),
        ];
        let d = s.compare(&w, true).unwrap_err();
        assert_eq!(d.missing, vec![want("10.1.4.2/32", None)]);
        assert_eq!(d.extra, vec!["10.9.9.9/32 via 192.0.2.3".to_string()]);
        let text = d.to_string();
        assert!(
            text.contains("missing [10.1.4.2/32]")
                && text.contains("extra [10.9.9.9/32 via 192.0.2.3]")
                && text.contains("wrong next hop [10.1.3.2/32 via 192.0.2.9, expected 192.0.2.3]"),
            "{text}"
        );
        // Not exact: extras are allowed, the rest still counts.
        let d = s.compare(&w, false).unwrap_err();
        assert!(d.extra.is_empty() && d.missing.len() == 1 && d.wrong_via.len() == 1);
        // The same set, with or without next hops, matches exactly.
        let all = [
            want("10.1.1.2/32", Some("192.0.2.1")),
            want("10.1.3.2/32", None),
            want("10.9.9.9/32", Some("192.0.2.3")),
        ];
        assert_eq!(s.compare(&all, true), Ok(()));
        // Two routes for one prefix are one too many when the set is exact.
        let dup = seen(&[
            ("10.1.1.2/32", Some("192.0.2.1")),
            ("10.1.1.2/32", Some("192.0.2.3")),
        ]);
        let d = dup.compare(&all[..1], true).unwrap_err();
        assert!(d.to_string().contains("2 routes for one prefix"), "{d}");
        assert!(dup.compare(&all[..1], false).is_ok());
        assert!(SeenRoutes::default().compare(&[], true).is_ok());
        assert!(SeenRoutes::default().compare(&all[..1], true).is_err());
    }

    #[test]
    fn host_routes_are_told_from_bridged_addresses() {
        let addr: IpAddr = "10.20.0.5".parse().unwrap();
        let gw: IpAddr = "10.20.0.1".parse().unwrap();
        let routed = ContainerView {
            eth0: vec!["10.20.0.5/32".parse().unwrap()],
            routes: vec![
                ("0.0.0.0/0".parse().unwrap(), Some(gw), true),
                ("10.20.0.1/32".parse().unwrap(), None, true),
            ],
        };
        let bridged = ContainerView {
            eth0: vec!["10.20.0.5/16".parse().unwrap()],
            routes: vec![
                ("0.0.0.0/0".parse().unwrap(), Some(gw), true),
                ("10.20.0.0/16".parse().unwrap(), None, true),
            ],
        };
        let want = ContainerWant {
            host_route: Some(true),
            ..ContainerWant::default()
        };
        assert_eq!(want.check(&routed, &[(addr, gw)]), Ok(()));
        let e = want.check(&bridged, &[(addr, gw)]).unwrap_err();
        assert!(
            e.contains("not a host route") && e.contains("bridged, not routed"),
            "{e}"
        );
        let not = ContainerWant {
            host_route: Some(false),
            ..ContainerWant::default()
        };
        assert!(not.check(&bridged, &[(addr, gw)]).is_ok());
        assert!(not.check(&routed, &[(addr, gw)]).is_err());
    }

    #[test]
    fn container_views_are_checked_per_data_plane() {
        let addr: Ipv4Addr = "10.1.1.2".parse().unwrap();
        let gw: Ipv4Addr = "10.1.1.1".parse().unwrap();
        let l3 = ContainerView {
            eth0: vec!["10.1.1.2/32".parse().unwrap()],
            routes: vec![("0.0.0.0/0".parse().unwrap(), None, true)],
        };
        let macvlan = ContainerView {
            eth0: vec!["10.1.1.2/24".parse().unwrap()],
            routes: vec![
                (
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.1.1".parse().unwrap()),
                    true,
                ),
                ("10.1.1.0/24".parse().unwrap(), None, true),
            ],
        };
        let want_l3 = ContainerWant {
            address: Some(true),
            default_route: Some(DefaultRoute::Connected),
            gateway: Some(false),
            host_route: None,
        };
        let want_l2 = ContainerWant {
            address: Some(true),
            default_route: Some(DefaultRoute::Gateway),
            gateway: Some(true),
            host_route: None,
        };
        let (addr, gw) = (IpAddr::V4(addr), IpAddr::V4(gw));
        assert_eq!(want_l3.check(&l3, &[(addr, gw)]), Ok(()));
        assert_eq!(want_l2.check(&macvlan, &[(addr, gw)]), Ok(()));
        let e = want_l3.check(&macvlan, &[(addr, gw)]).unwrap_err();
        assert!(
            e.contains("via 10.1.1.1, expected connected") && e.contains("expected no gateway"),
            "{e}"
        );
        let e = want_l2.check(&l3, &[(addr, gw)]).unwrap_err();
        assert!(
            e.contains("expected via a gateway") && e.contains("not via the gateway 10.1.1.1"),
            "{e}"
        );
        let e = want_l2
            .check(&macvlan, &[("10.1.1.3".parse().unwrap(), gw)])
            .unwrap_err();
        assert!(e.contains("lacks its address 10.1.1.3"), "{e}");
        let e = want_l3
            .check(&ContainerView::default(), &[(addr, gw)])
            .unwrap_err();
        assert!(e.contains("no default route"), "{e}");
        // Dual stack: each family checked on its own, and named.
        let (a6, gw6): (IpAddr, IpAddr) =
            ("fd00:1::2".parse().unwrap(), "fd00:1::1".parse().unwrap());
        let mut dual = macvlan.clone();
        dual.eth0.push("fd00:1::2/64".parse().unwrap());
        dual.routes.push(("::/0".parse().unwrap(), Some(gw6), true));
        assert_eq!(want_l2.check(&dual, &[(addr, gw), (a6, gw6)]), Ok(()));
        let e = want_l2
            .check(&macvlan, &[(addr, gw), (a6, gw6)])
            .unwrap_err();
        assert!(
            e.starts_with("IPv6: eth0 lacks its address fd00:1::2; no default route"),
            "{e}"
        );
        assert!(!e.contains("IPv4"), "{e}");
    }

    #[test]
    fn reflected_paths_show_originator_and_cluster_list() {
        // As gobgp 3 prints a path FRR reflected (captured from frr-rr).
        let rib = json!({"10.20.1.2/32":[{"nlri":{"prefix":"10.20.1.2/32"},"best":true,
            "attrs":[{"type":1,"value":0},{"type":2,"as_paths":[]},{"type":3,"nexthop":"192.0.2.1"},
                     {"type":4,"metric":0},{"type":5,"value":100},{"type":9,"value":"192.0.2.1"},
                     {"type":10,"value":["192.0.2.254"]}],"neighbor-ip":"192.0.2.254"}]});
        let p: IpNet = "10.20.1.2/32".parse().unwrap();
        let b = BestPath::from_rib(&rib, p).unwrap();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            b.check(Some(a("192.0.2.1")), Some(&[a("192.0.2.254")])),
            Ok(())
        );
        let e = b.check(Some(a("192.0.2.2")), Some(&[])).unwrap_err();
        assert!(
            e.contains("ORIGINATOR_ID is not 192.0.2.2") && e.contains("CLUSTER_LIST is not []"),
            "{e}"
        );
        // A path learned straight from its originator has neither attribute.
        let direct =
            json!({"10.20.1.2/32":[{"best":true,"attrs":[{"type":3,"nexthop":"192.0.2.1"}]}]});
        let b = BestPath::from_rib(&direct, p).unwrap();
        assert!(b.check(Some(a("192.0.2.1")), None).is_err());
        assert!(
            b.to_string().contains("originator none, cluster list none"),
            "{b}"
        );
        assert!(BestPath::from_rib(&serde_json::Value::Null, p).is_err());
    }

    #[test]
    fn status_fields_are_dotted_paths_with_bounds() {
        let st = json!({"bgp": {"kernel_drift": 2, "rejected": {"outside-pools": 20000}, "gobgp": "unix:///x"}});
        assert!(status_matches(&st, "bgp.kernel_drift", None, Some(1.0), None).is_ok());
        let e = status_matches(&st, "bgp.kernel_drift", None, Some(3.0), None).unwrap_err();
        assert!(e.contains("is 2") && e.contains("at least 3"), "{e}");
        assert!(status_matches(
            &st,
            "bgp.rejected.outside-pools",
            Some(&json!(20000)),
            None,
            None
        )
        .is_ok());
        assert!(status_matches(
            &st,
            "bgp.rejected.outside-pools",
            Some(&json!(19999)),
            None,
            None
        )
        .is_err());
        assert!(status_matches(&st, "bgp.gobgp", Some(&json!("unix:///x")), None, None).is_ok());
        // A reason not counted yet in a map of counters has counted nothing...
        assert!(status_matches(&st, "bgp.rejected.reserved", None, None, Some(0.0)).is_ok());
        assert!(status_matches(&st, "bgp.rejected.reserved", None, Some(1.0), None).is_err());
        // ...but a missing field is never a passing 0, and equality needs the field.
        let e = status_matches(&st, "bgp.route_conflicts", None, None, Some(0.0)).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        assert!(status_matches(&st, "bgp.route_conflicts", Some(&json!(0)), None, None).is_err());
        assert!(status_matches(&st, "bgp.gobgp", None, Some(1.0), None).is_err());
    }

    #[test]
    fn log_lines_are_counted_by_substring() {
        let dir = std::env::temp_dir().join(format!("harness-count-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("driver.log");
        std::fs::write(&f, "a outside-pools\nb\nc outside-pools x\n").unwrap();
        assert_eq!(count_lines(&f, "outside-pools").unwrap(), 2);
        assert_eq!(count_lines(&dir.join("none.log"), "x").unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reset_or_an_update_is_not_steady() {
        let n = |up: i64, upd: u64, state: u64| {
            json!({"conf": {"neighbor_address": "192.0.2.2"},
                   "state": {"session_state": state, "messages": {"received": {"update": upd}}},
                   "timers": {"state": {"uptime": {"seconds": up}}}})
        };
        let before = PeerView::all(&[n(100, 3, 6)]).unwrap();
        assert_eq!(
            before[0].diff(&PeerView::all(&[n(100, 3, 6)]).unwrap()[0]),
            None
        );
        let reset = before[0]
            .diff(&PeerView::all(&[n(200, 3, 6)]).unwrap()[0])
            .unwrap();
        assert!(reset.contains("reset"), "{reset}");
        let upd = before[0]
            .diff(&PeerView::all(&[n(100, 4, 6)]).unwrap()[0])
            .unwrap();
        assert!(upd.contains("1 new UPDATE"), "{upd}");
        assert!(before[0]
            .diff(&PeerView::all(&[n(100, 3, 3)]).unwrap()[0])
            .is_some());
    }
}
