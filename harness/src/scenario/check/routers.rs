//! Routers and who peers with whom: each router's name, links (inside
//! their segments' subnets, IPv6 ones on segments that have a `subnet6`),
//! neighbours that share a segment with it (in the BGP transport's family),
//! route-reflector clients among its neighbours; each host's gateway (a
//! router on its segment) and `peers` (hosts or routers on its segment).
//!
//! In: the file's raw routers, the segments, the hosts. Out: checked
//! [`RouterDef`]s, or the error naming the line.

use std::collections::BTreeSet;

use anyhow::Result;

use super::valid_name;
use crate::scenario::locate::Here;
use crate::scenario::model::{RawScenario, Scenario};
use crate::scenario::schema::{HostDef, RouterDef, SegmentDef};

/// Every router named once, with links on known segments inside their subnets.
pub(in crate::scenario) fn routers(
    raw: &RawScenario,
    segments: &[SegmentDef],
    host_names: &BTreeSet<String>,
    here: Here,
) -> Result<Vec<RouterDef>> {
    let at = |off: usize, msg: String| here.at(off, msg);
    let mut routers: Vec<RouterDef> = Vec::new();
    for r in &raw.routers {
        let def = r.get_ref().clone();
        let off = r.span().start;
        if !valid_name(&def.name)
            || host_names.contains(&def.name)
            || routers.iter().any(|o| o.name == def.name)
        {
            return Err(at(
                off,
                format!("router name {:?} is invalid or used twice", def.name),
            ));
        }
        if def.links.is_empty() {
            return Err(at(off, format!("router {} has no links", def.name)));
        }
        for (seg, addr) in &def.links {
            let s = segments
                .iter()
                .find(|s| &s.name == seg)
                .ok_or_else(|| at(off, format!("router {}: unknown segment {seg:?}", def.name)))?;
            if !s.subnet.contains(&addr.addr()) {
                return Err(at(
                    off,
                    format!(
                        "router {}: {addr} is outside segment {seg} ({})",
                        def.name, s.subnet
                    ),
                ));
            }
        }
        for (seg, addr) in &def.links6 {
            let s = segments
                .iter()
                .find(|s| &s.name == seg)
                .ok_or_else(|| at(off, format!("router {}: unknown segment {seg:?}", def.name)))?;
            if !def.links.contains_key(seg) {
                return Err(at(
                    off,
                    format!("router {}: links6 names {seg}, links does not", def.name),
                ));
            }
            if !s.subnet6.is_some_and(|n| n.contains(&addr.addr())) {
                return Err(at(
                    off,
                    format!(
                        "router {}: {addr} is outside segment {seg}'s subnet6 ({:?})",
                        def.name, s.subnet6
                    ),
                ));
            }
        }
        routers.push(def);
    }
    Ok(routers)
}

/// Each router's neighbours share a segment with it (in the transport's
/// family); its rr clients are among them.
pub(in crate::scenario) fn neighbours(s: &Scenario, raw: &RawScenario, here: Here) -> Result<()> {
    let at = |off: usize, msg: String| here.at(off, msg);
    let routers = &s.routers;
    for (r, span) in routers.iter().zip(&raw.routers) {
        let off = span.span().start;
        for n in &r.neighbors {
            s.shared_address(&r.name, n).ok_or_else(|| {
                at(
                    off,
                    format!(
                        "router {}: neighbour {n:?} is not a host or router on one of its segments",
                        r.name
                    ),
                )
            })?;
            s.shared_address_of(&r.name, n, s.bgp.transport).ok_or_else(|| {
                at(off, format!("router {}: neighbour {n:?} has no IPv6 address on a segment they share, and [bgp] transport = \"ipv6\" (give links6)", r.name))
            })?;
        }
        for c in &r.rr_clients {
            if !r.neighbors.contains(c) {
                return Err(at(
                    off,
                    format!(
                        "router {}: rr client {c:?} is not among its neighbors",
                        r.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Each host's gateway is a router on its segment; its peers are hosts or
/// routers on its segment.
pub(in crate::scenario) fn gateways_and_peers(
    s: &Scenario,
    expanded: &[(HostDef, usize)],
    here: Here,
) -> Result<()> {
    let at = |off: usize, msg: String| here.at(off, msg);
    let (hosts, routers) = (&s.hosts, &s.routers);
    for (h, (_, off)) in hosts.iter().zip(expanded) {
        let off = *off;
        if let Some(g) = &h.gateway {
            let seg = h.segment.as_deref().unwrap_or_default();
            if !routers
                .iter()
                .any(|r| &r.name == g && r.links.contains_key(seg))
            {
                return Err(at(
                    off,
                    format!(
                        "host {}: gateway {g:?} is not a router on segment {seg}",
                        h.name
                    ),
                ));
            }
        }
        for p in h.peers.iter().flatten() {
            s.shared_address(&h.name, p).ok_or_else(|| {
                at(
                    off,
                    format!(
                        "host {}: peer {p:?} is not a host or router on its segment",
                        h.name
                    ),
                )
            })?;
        }
    }

    Ok(())
}
