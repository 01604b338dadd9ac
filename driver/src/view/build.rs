//! The [`View`] from the driver's state: whole, or one endpoint at a time.
//!
//! In: the [`State`] (networks, endpoints, who is joined), the networks
//! that cannot serve now (their parent is missing: they announce nothing)
//! and the joined endpoints whose address is not live yet ([`Pending`]).
//! Out: the view [`View::from_state`] decides, the same entries decided again
//! for one address ([`View::update_for`], what a Join or Leave costs), and
//! each joined endpoint's host routes with its ID ([`endpoint_routes`], what
//! the health gate holds announcements by). Whether an endpoint is announced
//! is asked of [`super::decide`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::decide::{decide, Address, Evidence, Health, Sandbox};
use super::{IpamPool, View};
use crate::model::attrs::RouteAttrs;
use crate::model::network::{host_route, Announce};
use crate::model::state::{EndpointRecord, State};

/// Joined endpoints whose address the driver waits to see live in the
/// container: endpoint ID → the ticket of that watch.
pub type Pending = BTreeMap<String, u64>;

/// Whether the record says the endpoint is announced: joined, by Docker's
/// own word (the sandbox was checked at start, the health gate comes after),
/// and its address live (not `pending`).
fn announces(ep: &EndpointRecord, pending: &Pending) -> bool {
    let address = if pending.contains_key(&ep.spec.id) {
        Address::Pending
    } else {
        Address::Ready
    };
    decide(&Evidence {
        joined: ep.joined,
        sandbox: Sandbox::Unchecked,
        address,
        health: Health::Ungated,
    })
    .announces()
}

impl View {
    /// The view of `state`; networks in `unavailable` (their parent is
    /// missing) announce nothing until they are repaired, endpoints in
    /// `pending` not until their address is live.
    pub fn from_state(
        state: &State,
        unavailable: &BTreeMap<String, String>,
        pending: &Pending,
    ) -> View {
        let mut v = View {
            drained: state.drained,
            ..View::default()
        };
        for net in state.networks.values() {
            let spec = &net.spec;
            v.pools.extend(spec.subnets());
            v.parents.insert(spec.parent.name.clone());
            for ep in net.endpoints.values() {
                v.local_endpoints.extend(ep.spec.addrs());
                if spec.has_shim() {
                    v.endpoints_via_host.extend(ep.spec.addrs());
                }
            }
            if spec.internal || unavailable.contains_key(&spec.id) {
                continue;
            }
            match spec.announce {
                Announce::Subnet => {
                    for subnet in spec.subnets() {
                        v.announcements.insert(subnet, spec.parent.name.clone());
                        if !spec.attrs.is_empty() {
                            v.attrs.insert(subnet, spec.attrs.clone());
                        }
                    }
                }
                Announce::Endpoint => {
                    if spec.cluster_ipam {
                        for pool in spec.subnets() {
                            v.ipam_pools.insert(
                                pool,
                                IpamPool {
                                    parent: spec.parent.name.clone(),
                                    attrs: spec.attrs.clone(),
                                },
                            );
                        }
                    }
                    for ep in net.endpoints.values().filter(|e| announces(e, pending)) {
                        let attrs = spec.attrs.merged(&ep.spec.attrs);
                        for addr in ep.spec.addrs() {
                            v.announcements
                                .insert(host_route(addr), spec.parent.name.clone());
                            if !attrs.is_empty() {
                                v.attrs.insert(host_route(addr), attrs.clone());
                            }
                        }
                    }
                }
            }
        }
        v
    }

    /// Decides the view's entries for one endpoint address `addr` again,
    /// as [`View::from_state`] would decide them, by a scan of the records
    /// that allocates nothing; the full rebuild (and the comparison with
    /// the last view) cost ~0.2-0.35 ms at 1,000 endpoints, on every Join.
    /// Says whether the view changed; the caller sends it.
    pub fn update_for(
        &mut self,
        state: &State,
        unavailable: &BTreeMap<String, String>,
        pending: &Pending,
        addr: IpAddr,
    ) -> bool {
        let route = host_route(addr);
        let mut local = false;
        let mut via_host = false;
        let mut announced: Option<(&String, RouteAttrs)> = None;
        for net in state.networks.values() {
            let spec = &net.spec;
            let mut joined: Option<&RouteAttrs> = None;
            for ep in net.endpoints.values() {
                if ep.spec.has_addr(addr) {
                    local = true;
                    via_host |= spec.has_shim();
                    if announces(ep, pending) {
                        joined = Some(&ep.spec.attrs);
                    }
                }
            }
            if spec.internal || unavailable.contains_key(&spec.id) {
                continue;
            }
            let attrs = match spec.announce {
                Announce::Subnet => spec
                    .subnets()
                    .any(|s| s == route)
                    .then(|| spec.attrs.clone()),
                Announce::Endpoint => joined.map(|ep| spec.attrs.merged(ep)),
            };
            if let Some(attrs) = attrs {
                announced = Some((&spec.parent.name, attrs));
            }
        }
        // imbl's sets answer what they held before, not whether they changed.
        let mut changed = if local {
            self.local_endpoints.insert(addr).is_none()
        } else {
            self.local_endpoints.remove(&addr).is_some()
        };
        changed |= if via_host {
            self.endpoints_via_host.insert(addr).is_none()
        } else {
            self.endpoints_via_host.remove(&addr).is_some()
        };
        let attrs = match announced {
            Some((parent, attrs)) => {
                if self.announcements.get(&route) != Some(parent) {
                    self.announcements.insert(route, parent.clone());
                    changed = true;
                }
                attrs
            }
            None => {
                changed |= self.announcements.remove(&route).is_some();
                RouteAttrs::default()
            }
        };
        if attrs.is_empty() {
            changed |= self.attrs.remove(&route).is_some();
        } else if self.attrs.get(&route) != Some(&attrs) {
            self.attrs.insert(route, attrs);
            changed = true;
        }
        changed
    }
}

/// Each joined endpoint's host routes → its ID, for networks that announce
/// endpoints (subnet announcements are not gated).
pub fn endpoint_routes(state: &State, pending: &Pending) -> BTreeMap<IpNet, String> {
    let mut m = BTreeMap::new();
    for net in state.networks.values() {
        if net.spec.announce != Announce::Endpoint {
            continue;
        }
        for (id, ep) in &net.endpoints {
            if announces(ep, pending) {
                for a in ep.spec.addrs() {
                    m.insert(host_route(a), id.clone());
                }
            }
        }
    }
    m
}

/// What [`View::update_for`]'s scan of every endpoint costs at 1,000
/// dual-stack endpoints, against a whole rebuild and comparison. Ignored:
/// `cargo test -p ipvlan-bgp --lib measure_ -- --ignored --nocapture`,
/// best with the crate optimised (`CARGO_PROFILE_DEV_OPT_LEVEL=3`).
#[cfg(test)]
mod measure {
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    use ipnet::Ipv4Net;

    use super::*;
    use crate::model::network::{Dataplane, EndpointSpec, MacvlanMode, NetworkSpec, Parent};
    use crate::model::state::NetworkRecord;

    fn endpoint(n: u32) -> EndpointRecord {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 10)) + n);
        EndpointRecord {
            spec: EndpointSpec {
                id: format!("{n:012x}{}", "e".repeat(52)),
                address: Some(Ipv4Net::new(addr, 16).unwrap()),
                address6: Some(format!("fd00:1::{:x}/64", n + 10).parse().unwrap()),
                mac: None,
                attrs: Default::default(),
            },
            link: format!("l{n}"),
            joined: true,
            sandbox: String::new(),
            unmarked: false,
            health: None,
        }
    }

    fn median(mut v: Vec<Duration>) -> String {
        v.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "n={} p10 {:.1} median {:.1} p90 {:.1} us",
            v.len(),
            us(v[v.len() / 10]),
            us(v[v.len() / 2]),
            us(v[v.len() * 9 / 10])
        )
    }

    #[test]
    #[ignore]
    fn measure_update_for_at_1000_endpoints() {
        let spec = NetworkSpec {
            id: "a".repeat(64),
            parent: Parent::parse("eth0").unwrap(),
            dataplane: Dataplane::Macvlan {
                mode: MacvlanMode::Bridge,
            },
            subnet: Some("10.1.0.0/16".parse().unwrap()),
            gateway: Some("10.1.0.1/16".parse().unwrap()),
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            gateway6: None,
            announce: Announce::Endpoint,
            internal: false,
            host_link: false,
            attrs: Default::default(),
            cluster_ipam: false,
        };
        let mut net = NetworkRecord {
            spec,
            shim: None,
            endpoints: BTreeMap::new(),
        };
        for n in 0..1000 {
            let e = endpoint(n);
            net.endpoints.insert(e.spec.id.clone(), e);
        }
        let mut state = State::default();
        state.networks.insert("a".repeat(64), net);
        let (none, mut pending) = (BTreeMap::new(), Pending::new());
        let mut view = View::from_state(&state, &none, &pending);
        let (mut upd, mut full) = (Vec::new(), Vec::new());
        for rep in 0..400u32 {
            let e = endpoint(rep / 2 % 1000);
            // The endpoint's address waits again, then goes live.
            if rep % 2 == 0 {
                pending.insert(e.spec.id.clone(), 1);
            } else {
                pending.remove(&e.spec.id);
            }
            let t = Instant::now();
            let mut changed = false;
            for a in e.spec.addrs() {
                changed |= view.update_for(&state, &none, &pending, a);
            }
            upd.push(t.elapsed());
            let t = Instant::now();
            let whole = View::from_state(&state, &none, &pending);
            let same = whole == view;
            full.push(t.elapsed());
            assert!(changed, "rep {rep}");
            assert!(same, "rep {rep}");
        }
        println!("update_for (2 addresses)      {}", median(upd));
        println!("from_state + compare (whole)   {}", median(full));
    }
}
