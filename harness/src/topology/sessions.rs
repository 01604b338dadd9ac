//! The one BGP session planner: who peers with whom, at which address,
//! and who reflects to whom, from a (validated) scenario alone.
//!
//! In: a [`Scenario`]. Out: each host's and each router's [`Neighbor`]s
//! (what its gobgpd, FRR or BIRD is configured with: the world writes them
//! into the daemons' configuration) and the [`Session`]s both ends
//! configure (what the HTML page draws). Owns the rules: a host's `peers`
//! when given, else `[bgp] mode` (mesh: every host with every other;
//! route-reflector: every client with each reflector, reflectors not with
//! each other); plus each router's `neighbors`; and which side of each
//! session runs BFD. Pure functions, no I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Result};

use super::configs::Neighbor;
use crate::scenario::{BgpMode, Family, HostDef, RouterDef, Scenario};

/// What kind of session two speakers have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionKind {
    Ibgp,
    Ebgp,
    /// iBGP from a route reflector to one of its clients.
    RrClient,
}

/// One BGP session, named once (`a` before `b` in declaration order:
/// hosts, then routers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub a: String,
    pub b: String,
    pub kind: SessionKind,
    /// Both ends run BFD on it.
    pub bfd: bool,
}

/// A host's address of the BGP transport's family (validation made sure
/// every host has one; else its IPv4 address, else none at all).
fn host_address(h: &HostDef, transport: Family) -> IpAddr {
    let v4 = h.address.map(|a| IpAddr::V4(a.addr()));
    match transport {
        Family::Ipv4 => v4,
        Family::Ipv6 => h.address6.map(|a| IpAddr::V6(a.addr())).or(v4),
    }
    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// gobgpd's neighbours of host `i` (its index in `s.hosts`).
pub fn host_neighbours(s: &Scenario, i: usize) -> Vec<Neighbor> {
    let me = &s.hosts[i];
    let transport = s.bgp.transport;
    // Of two gobgpd hosts, the one declared later waits to be dialled.
    let declared_before_me = |name: &str| s.hosts[..i].iter().any(|h| h.name == name);
    let host = |h: &HostDef, rr_client: bool| Neighbor {
        name: h.name.clone(),
        addr: host_address(h, transport),
        asn: h.asn,
        rr_client,
        bfd: s.bfd_towards(&me.name, &h.name),
        passive: declared_before_me(&h.name),
    };
    if let Some(peers) = &me.peers {
        return peers
            .iter()
            .filter_map(|p| {
                Some(Neighbor {
                    name: p.clone(),
                    addr: s.shared_address_of(&me.name, p, transport)?.addr(),
                    asn: s.asn_of(p)?,
                    rr_client: false,
                    bfd: s.bfd_towards(&me.name, p),
                    passive: declared_before_me(p),
                })
            })
            .collect();
    }
    let others = || s.hosts.iter().enumerate().filter(move |(k, _)| *k != i);
    match s.bgp.mode {
        BgpMode::None => vec![],
        BgpMode::Mesh => others().map(|(_, h)| host(h, false)).collect(),
        // Every client peers with each reflector; reflectors do not peer
        // with each other. Each reflects with its own cluster ID (its
        // router ID, see `configs::gobgpd`), so a client holds one path
        // per reflector for every prefix, each learned independently:
        // when one reflector dies the other's paths are already there.
        BgpMode::RouteReflector => {
            let rrs = &s.bgp.reflectors;
            let is_rr = |h: &HostDef| rrs.contains(&h.name);
            if is_rr(me) {
                others()
                    .filter(|(_, h)| !is_rr(h))
                    .map(|(_, h)| host(h, h.asn == me.asn))
                    .collect()
            } else {
                others()
                    .filter(|(_, h)| is_rr(h))
                    .map(|(_, h)| host(h, false))
                    .collect()
            }
        }
    }
}

/// Router `def`'s neighbour `n`, at its address on a segment they share
/// in the BGP transport's family.
pub fn router_neighbour(s: &Scenario, def: &RouterDef, n: &str) -> Result<Neighbor> {
    let addr = s
        .shared_address_of(&def.name, n, s.bgp.transport)
        .ok_or_else(|| {
            anyhow!(
                "{} shares no segment with {n} (in {:?}, the BGP transport)",
                def.name,
                s.bgp.transport
            )
        })?;
    Ok(Neighbor {
        name: n.to_string(),
        addr: addr.addr(),
        asn: s.asn_of(n).ok_or_else(|| anyhow!("no AS for {n}"))?,
        rr_client: def.rr_clients.contains(&n.to_string()),
        bfd: s.bfd_towards(&def.name, n),
        // FRR and BIRD resolve a connection collision: routers dial too.
        passive: false,
    })
}

/// Every neighbour of router `def` (the first that cannot be resolved is the error).
pub fn router_neighbours(s: &Scenario, def: &RouterDef) -> Result<Vec<Neighbor>> {
    def.neighbors
        .iter()
        .map(|n| router_neighbour(s, def, n))
        .collect()
}

/// The sessions of the scenario: one for each pair whose both ends
/// configure it (one side alone never gets it established), named once.
pub fn sessions(s: &Scenario) -> Vec<Session> {
    // Declaration order, so each session has one spelling.
    let order: Vec<&str> = s
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain(s.routers.iter().map(|r| r.name.as_str()))
        .collect();
    let pos = |n: &str| order.iter().position(|x| *x == n);
    // (from, to) -> whether `from` treats `to` as a route-reflector
    // client, and whether it runs BFD towards it.
    let mut configured: BTreeMap<(usize, usize), (bool, bool)> = BTreeMap::new();
    let mut add = |from: &str, n: &Neighbor| {
        if let (Some(a), Some(b)) = (pos(from), pos(&n.name)) {
            if a != b {
                let e = configured.entry((a, b)).or_default();
                e.0 |= n.rr_client;
                e.1 |= n.bfd;
            }
        }
    };
    for (i, h) in s.hosts.iter().enumerate() {
        for n in host_neighbours(s, i) {
            add(&h.name, &n);
        }
    }
    for r in &s.routers {
        for n in r.neighbors.iter() {
            // A neighbour the world cannot resolve is never configured.
            if let Ok(n) = router_neighbour(s, r, n) {
                add(&r.name, &n);
            }
        }
    }
    let mut out = Vec::new();
    for (&(a, b), &(rr, bfd)) in &configured {
        let Some(&(rr_back, bfd_back)) = configured.get(&(b, a)) else {
            continue;
        };
        if a > b {
            continue; // counted from the other end
        }
        let kind = if s.asn_of(order[a]) != s.asn_of(order[b]) {
            SessionKind::Ebgp
        } else if rr || rr_back {
            SessionKind::RrClient
        } else {
            SessionKind::Ibgp
        };
        out.push(Session {
            a: order[a].to_string(),
            b: order[b].to_string(),
            kind,
            bfd: bfd && bfd_back,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn scenario(src: &str) -> Scenario {
        Scenario::parse(src, Path::new("t.toml")).expect("parses")
    }

    const THREE: &str = r#"
description = "d"
[bgp]
mode = "route-reflector"
reflector = "h1"
[[hosts]]
name = "h1"
[[hosts]]
name = "h2"
[[hosts]]
name = "h3"
asn = 65001
"#;

    /// What the world configures and what the page draws come from one
    /// plan: the reflector names its same-AS client as a reflector client,
    /// the client names the reflector plainly, and the session is drawn
    /// once, as a reflector-client session; the other-AS client is eBGP.
    #[test]
    fn a_reflector_and_its_clients_plan_the_same_sessions_from_both_ends() {
        let s = scenario(THREE);
        let rr: Vec<(String, bool)> = host_neighbours(&s, 0)
            .into_iter()
            .map(|n| (n.name, n.rr_client))
            .collect();
        assert_eq!(rr, [("h2".to_string(), true), ("h3".to_string(), false)]);
        let client = host_neighbours(&s, 1);
        assert_eq!(client.len(), 1);
        assert_eq!(
            (client[0].name.as_str(), client[0].rr_client),
            ("h1", false)
        );
        assert_eq!(client[0].addr.to_string(), "192.0.2.1");
        let got: Vec<String> = sessions(&s)
            .iter()
            .map(|x| format!("{}-{} {:?}", x.a, x.b, x.kind))
            .collect();
        assert_eq!(got, ["h1-h2 RrClient", "h1-h3 Ebgp"]);
    }

    /// Of two gobgpd hosts exactly one dials: the later-declared one waits
    /// (gobgpd 4.8's collision deadlock, docs/gobgp-v4.md §9); routers are
    /// never passive.
    #[test]
    fn one_side_of_each_host_session_waits_to_be_dialled() {
        let s = scenario(THREE);
        let passive = |i: usize| -> Vec<(String, bool)> {
            host_neighbours(&s, i)
                .into_iter()
                .map(|n| (n.name, n.passive))
                .collect()
        };
        assert_eq!(
            passive(0),
            [("h2".to_string(), false), ("h3".to_string(), false)]
        );
        assert_eq!(passive(1), [("h1".to_string(), true)]);
        assert_eq!(passive(2), [("h1".to_string(), true)]);
        let mesh = scenario(&THREE.replace(
            "mode = \"route-reflector\"\nreflector = \"h1\"",
            "mode = \"mesh\"",
        ));
        let dials = |i: usize, j: &str| {
            host_neighbours(&mesh, i)
                .iter()
                .any(|n| n.name == j && !n.passive)
        };
        for (a, b) in [(0, "h2"), (0, "h3"), (1, "h3")] {
            assert!(dials(a, b), "host {a} dials {b}");
        }
        for (a, b) in [(1, "h1"), (2, "h1"), (2, "h2")] {
            assert!(!dials(a, b), "host {a} waits for {b}");
        }
    }

    #[test]
    fn a_peer_on_no_shared_segment_is_dropped() {
        let src = THREE.replace(
            "name = \"h3\"\nasn = 65001",
            "name = \"h3\"\nasn = 65001\npeers = [\"h1\"]",
        );
        let s = scenario(&src);
        assert_eq!(host_neighbours(&s, 2).len(), 1);
        let mut broken = s.clone();
        broken.hosts[2].peers = Some(vec!["nobody".into()]);
        assert!(host_neighbours(&broken, 2).is_empty());
    }
}
