//! The underlay and its hosts: segments (the default one, `underlay`,
//! unless the file declares some), each host's name, segment and addresses
//! (defaults: `.1, .2, ...` on the default segment, `.10, .11, ...` on
//! declared ones, the same offset in `subnet6`), the BGP transport's family
//! on every host, and the reflectors.
//!
//! In: the file's raw sections, hosts after template expansion. Out:
//! segments, addressed hosts, the `[bgp]` section with every reflector.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, Result};
use ipnet::{Ipv4Net, Ipv6Net};

use super::valid_name;
use crate::scenario::locate::Here;
use crate::scenario::model::RawScenario;
use crate::scenario::schema::{BgpMode, BgpSection, Family, HostDef, SegmentDef};

/// The segments (and whether the file declared them).
pub(in crate::scenario) fn segments(
    raw: &RawScenario,
    here: Here,
) -> Result<(Vec<SegmentDef>, bool)> {
    let file = here.file;
    let explicit_segments = !raw.segments.is_empty();
    let segments: Vec<SegmentDef> = if explicit_segments {
        raw.segments.clone()
    } else {
        vec![SegmentDef {
            name: "underlay".into(),
            subnet: raw.underlay,
            subnet6: raw.underlay6,
        }]
    };
    for (k, seg) in segments.iter().enumerate() {
        if !valid_name(&seg.name) || segments[..k].iter().any(|o| o.name == seg.name) {
            return Err(anyhow!(
                "{file}: segment name {:?} is invalid or used twice",
                seg.name
            ));
        }
    }
    Ok((segments, explicit_segments))
}

/// Every host named, on a known segment, addressed inside it.
pub(in crate::scenario) fn hosts(
    expanded: &[(HostDef, usize)],
    segments: &[SegmentDef],
    explicit_segments: bool,
    here: Here,
) -> Result<Vec<HostDef>> {
    let file = here.file;
    let at = |off: usize, msg: String| here.at(off, msg);
    let mut hosts = Vec::new();
    let mut per_segment: BTreeMap<String, u32> = BTreeMap::new();
    for (i, (h, off)) in expanded.iter().enumerate() {
        let mut host = h.clone();
        let off = *off;
        if !valid_name(&host.name) {
            return Err(at(
                off,
                format!("host name {:?}: use 1-8 letters, digits or '-'", host.name),
            ));
        }
        if hosts.iter().any(|o: &HostDef| o.name == host.name) {
            return Err(at(off, format!("host {} is declared twice", host.name)));
        }
        // Addressed by `check/uplinks`, on links of their own.
        if !host.uplinks.is_empty() {
            hosts.push(host);
            continue;
        }
        let seg_name = host
            .segment
            .clone()
            .unwrap_or_else(|| segments[0].name.clone());
        let seg = segments
            .iter()
            .find(|s| s.name == seg_name)
            .ok_or_else(|| {
                at(
                    off,
                    format!("host {}: unknown segment {seg_name:?}", host.name),
                )
            })?;
        let k = per_segment.entry(seg_name.clone()).or_default();
        // Without explicit segments hosts are .1, .2, ...; with them .10, .11, ... (routers take the low ones).
        let offset = if explicit_segments {
            10 + *k
        } else {
            i as u32 + 1
        };
        *k += 1;
        let addr = match host.address {
            Some(a) => a,
            None => Ipv4Net::new(
                Ipv4Addr::from(u32::from(seg.subnet.network()) + offset),
                seg.subnet.prefix_len(),
            )
            .map_err(|e| at(off, e.to_string()))?,
        };
        if !seg.subnet.contains(&addr.addr()) {
            return Err(at(
                off,
                format!(
                    "address {addr} is outside segment {} ({})",
                    seg.name, seg.subnet
                ),
            ));
        }
        host.address = Some(addr);
        host.address6 = match (host.address6, seg.subnet6) {
            (Some(a), Some(net)) if net.contains(&a.addr()) => Some(a),
            (Some(a), Some(net)) => {
                return Err(at(
                    off,
                    format!("address6 {a} is outside segment {} ({net})", seg.name),
                ))
            }
            (Some(a), None) => {
                return Err(at(
                    off,
                    format!(
                        "host {}: address6 {a} on segment {}, which has no subnet6 (underlay6)",
                        host.name, seg.name
                    ),
                ))
            }
            (None, Some(net)) => Some(
                Ipv6Net::new(
                    Ipv6Addr::from(u128::from(net.network()) + u128::from(offset)),
                    net.prefix_len(),
                )
                .map_err(|e| at(off, e.to_string()))?,
            ),
            (None, None) => None,
        };
        host.segment = Some(seg_name);
        hosts.push(host);
    }
    if hosts.is_empty() {
        return Err(anyhow!("{file}: no [[hosts]]"));
    }
    Ok(hosts)
}

/// `[bgp] transport = "ipv6"` needs an IPv6 address on every host.
pub(in crate::scenario) fn transport(
    raw: &RawScenario,
    hosts: &[HostDef],
    here: Here,
) -> Result<()> {
    let file = here.file;
    if raw.bgp.transport == Family::Ipv6 {
        if let Some(h) = hosts.iter().find(|h| h.address6.is_none()) {
            return Err(anyhow!(
                "{file}: [bgp] transport = \"ipv6\" but host {} has no IPv6 underlay address (give underlay6 or the segment's subnet6)",
                h.name
            ));
        }
    }
    Ok(())
}

/// A host template may not have a host's name.
pub(in crate::scenario) fn template_names(
    host_groups: &BTreeMap<String, Vec<String>>,
    host_names: &BTreeSet<String>,
    here: Here,
) -> Result<()> {
    let file = here.file;
    for g in host_groups.keys() {
        if host_names.contains(g) {
            return Err(anyhow!(
                "{file}: host template {g} has the name of a host; rename one of them"
            ));
        }
    }
    Ok(())
}

/// `reflector` and `reflectors` (names or templates) become one list, in a
/// mode that has reflectors and with at least one client.
pub(in crate::scenario) fn bgp(
    raw: &RawScenario,
    host_groups: &BTreeMap<String, Vec<String>>,
    host_names: &BTreeSet<String>,
    hosts: &[HostDef],
    here: Here,
) -> Result<BgpSection> {
    let file = here.file;
    // `reflector` and `reflectors` (names or templates) become one list.
    let mut bgp = raw.bgp.clone();
    let mut reflectors: Vec<String> = Vec::new();
    for r in raw.bgp.reflector.iter().chain(&raw.bgp.reflectors) {
        let names = match host_groups.get(r) {
            Some(members) => members.clone(),
            None if host_names.contains(r) => vec![r.clone()],
            None => return Err(anyhow!("{file}: [bgp] reflector {r:?} is not a host")),
        };
        for n in names {
            if reflectors.contains(&n) {
                return Err(anyhow!("{file}: [bgp] reflector {n} is listed twice"));
            }
            reflectors.push(n);
        }
    }
    match raw.bgp.mode {
        BgpMode::RouteReflector if reflectors.is_empty() => {
            return Err(anyhow!(
                "{file}: [bgp] mode = \"route-reflector\" needs reflector = \"<host>\" or reflectors = [\"<host>\", ...]"
            ))
        }
        BgpMode::RouteReflector => {}
        _ if !reflectors.is_empty() => {
            return Err(anyhow!(
                "{file}: [bgp] reflector/reflectors need mode = \"route-reflector\""
            ))
        }
        _ => {}
    }
    if !reflectors.is_empty() && reflectors.len() == hosts.len() {
        return Err(anyhow!(
            "{file}: [bgp] every host is a reflector; who are the clients?"
        ));
    }
    bgp.reflectors = reflectors;

    Ok(bgp)
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, DUAL};
    use crate::scenario::schema::Family;

    #[test]
    fn dual_stack_underlays_and_networks_parse() {
        let s = parse(DUAL).unwrap();
        let a6 = |n: &str| s.host(n).unwrap().address6.unwrap().to_string();
        assert_eq!(a6("h1"), "fd00:2::1/64");
        assert_eq!(a6("h2"), "fd00:2::2/64");
        assert_eq!(a6("h3"), "fd00:2::3/64");
        assert_eq!(s.bgp.transport, Family::Ipv6);
        let dual = &s.networks[0];
        assert_eq!(dual.subnets6["h3"].to_string(), "fd00:10:3::/64");
        assert_eq!(dual.subnets["h3"].to_string(), "10.2.3.0/24");
        let v6 = &s.networks[1];
        assert!(v6.subnets.is_empty());
        assert!(v6.on("h1") && !v6.on("h2"));
        assert_eq!(v6.hosts_on(), ["h1"]);
        // Without an IPv6 underlay, an IPv6 transport has nothing to run on.
        let m = parse(&DUAL.replace("underlay6 = \"fd00:2::/64\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("transport = \"ipv6\" but host h1 has no IPv6"),
            "{m}"
        );
        let m = parse(&DUAL.replace("subnets6 = { h1 = \"fd00:20:1::/64\" }", ""))
            .unwrap_err()
            .to_string();
        assert!(m.contains("give subnets or subnets6"), "{m}");
        let router = "[[routers]]\nname = \"r\"\nkind = \"bird\"\nasn = 65100\nlinks = { underlay = \"192.0.2.200/24\" }\nneighbors = [\"h1\"]\n";
        let m = parse(&format!("{DUAL}{router}")).unwrap_err().to_string();
        assert!(
            m.contains("router r: neighbour \"h1\" has no IPv6 address"),
            "{m}"
        );
        let ok = router.replace(
            "neighbors",
            "links6 = { underlay = \"fd00:2::c8/64\" }\nneighbors",
        );
        parse(&format!("{DUAL}{ok}")).unwrap();
        // Only IPv6 through a shim needs the host to forward IPv6.
        assert!(!s.ipv6_through_shims(), "ipvlan L3 by default");
        let l2 = DUAL.replace(
            "name = \"v6only\"\n",
            "name = \"v6only\"\noptions = { ipvlan_mode = \"l2\" }\n",
        );
        assert!(parse(&l2).unwrap().ipv6_through_shims());
    }
}
