//! The cluster-wide IPAM's parts of a scenario: the `[etcd]` section (its
//! members addressed on a known segment, clear of hosts and routers, a
//! gateway router that is on that segment), and networks with
//! `ipam = "ipvlan-bgp"` (one subnet on every host, an etcd to claim its
//! blocks in), containers with a fixed `ip` (only on such a network, inside
//! its subnet).
//!
//! In: the raw section, the segments, hosts, routers, networks and
//! containers checked so far. Out: the [`EtcdSection`] with its members'
//! addresses, or an error naming what to change.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{anyhow, Result};
use ipnet::Ipv4Net;

use crate::scenario::locate::Here;
use crate::scenario::model::{RawScenario, Scenario};
use crate::scenario::schema::{EtcdSection, IpamKind};

/// At most this many members (an etcd cluster larger than 7 only slows
/// its writes).
const MAX_MEMBERS: usize = 7;

/// The `[etcd]` section checked, its members' addresses chosen: the last
/// usable addresses of its segment (routers take the first ones, hosts
/// the next), `e1` the highest.
pub(in crate::scenario) fn etcd(
    s: &Scenario,
    raw: &RawScenario,
    here: Here,
) -> Result<Option<EtcdSection>> {
    let Some(e) = raw.etcd.clone() else {
        return Ok(None);
    };
    let err = |m: String| anyhow!("{}: [etcd]: {m}", here.file);
    if e.members == 0 || e.members > MAX_MEMBERS {
        return Err(err(format!(
            "members = {} (between 1 and {MAX_MEMBERS}; 3 tolerates one member down)",
            e.members
        )));
    }
    let seg_name = e
        .segment
        .clone()
        .unwrap_or_else(|| s.segments[0].name.clone());
    let seg = s
        .segments
        .iter()
        .find(|x| x.name == seg_name)
        .ok_or_else(|| err(format!("unknown segment {seg_name:?}")))?;
    if let Some(g) = &e.gateway {
        let r = s
            .routers
            .iter()
            .find(|r| &r.name == g)
            .ok_or_else(|| err(format!("gateway {g:?} is not a router")))?;
        if !r.links.contains_key(&seg_name) {
            return Err(err(format!(
                "gateway {g} has no link on segment {seg_name}"
            )));
        }
    }
    let taken: BTreeSet<Ipv4Addr> = s
        .hosts
        .iter()
        .filter_map(|h| h.address.map(|a| a.addr()))
        .chain(
            s.routers
                .iter()
                .flat_map(|r| r.links.values().map(|a| a.addr())),
        )
        .collect();
    let net = seg.subnet;
    let top = u32::from(net.broadcast());
    let mut out = e.clone();
    out.segment = Some(seg_name.clone());
    out.addresses = (1..=e.members as u32)
        .map(|i| {
            let a = Ipv4Addr::from(top.saturating_sub(i));
            if !net.contains(&a) || a == net.network() {
                return Err(err(format!(
                    "segment {seg_name} ({net}) has no room for {} members",
                    e.members
                )));
            }
            if taken.contains(&a) {
                return Err(err(format!(
                    "member address {a} (the top of segment {seg_name}) is taken by a host or router; move it"
                )));
            }
            Ok(Ipv4Net::new(a, net.prefix_len()).expect("prefix of the segment"))
        })
        .collect::<Result<_>>()?;
    Ok(Some(out))
}

/// Networks of the cluster IPAM need an etcd and one subnet; fixed
/// addresses only on them, inside the subnet.
pub(in crate::scenario) fn cluster(s: &Scenario, here: Here) -> Result<()> {
    let err = |m: String| anyhow!("{}: {m}", here.file);
    for n in &s.networks {
        if n.ipam != IpamKind::Cluster {
            if n.block_size.is_some() {
                return Err(err(format!(
                    "network {}: block_size goes with ipam = \"ipvlan-bgp\"",
                    n.name
                )));
            }
            continue;
        }
        if s.etcd.is_none() {
            return Err(err(format!(
                "network {} uses ipam = \"ipvlan-bgp\", which needs an [etcd] section",
                n.name
            )));
        }
        let v4: BTreeSet<_> = n.subnets.values().collect();
        let v6: BTreeSet<_> = n.subnets6.values().collect();
        if v4.len() > 1 || v6.len() > 1 {
            return Err(err(format!(
                "network {} uses ipam = \"ipvlan-bgp\": give every host the same subnet (one `subnet` without {{n}})",
                n.name
            )));
        }
    }
    for c in &s.containers {
        let Some(ip) = c.ip else { continue };
        let n = s
            .networks
            .iter()
            .find(|n| n.name == c.network)
            .ok_or_else(|| err(format!("container {}: unknown network", c.name)))?;
        if n.ipam != IpamKind::Cluster {
            return Err(err(format!(
                "container {}: a fixed ip needs a network with ipam = \"ipvlan-bgp\"",
                c.name
            )));
        }
        if !n.subnets.values().any(|s| s.contains(&ip)) {
            return Err(err(format!(
                "container {}: ip {ip} is outside network {}'s subnet",
                c.name, n.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::parse;

    const CLUSTER: &str = r#"
description = "x"
[etcd]
tls = true
[[hosts]]
name = "h"
count = 3
[[networks]]
name = "blue"
ipam = "ipvlan-bgp"
subnet = "10.20.0.0/16"
[[containers]]
name = "c"
host = "h1"
network = "blue"
ip = "10.20.9.9"
"#;

    #[test]
    fn a_cluster_network_has_one_subnet_and_members_get_the_top_addresses() {
        let s = parse(CLUSTER).unwrap();
        let e = s.etcd.as_ref().unwrap();
        assert_eq!(e.members, 3);
        let a: Vec<String> = e.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["192.0.2.254/24", "192.0.2.253/24", "192.0.2.252/24"]);
        let n = &s.networks[0];
        assert_eq!(n.subnets.len(), 3);
        assert!(n.subnets.values().all(|s| s.to_string() == "10.20.0.0/16"));
    }

    #[test]
    fn mistakes_are_named() {
        for (from, to, want) in [
            ("[etcd]\ntls = true\n", "", "needs an [etcd] section"),
            (
                "ip = \"10.20.9.9\"",
                "ip = \"10.21.0.1\"",
                "outside network blue",
            ),
            ("tls = true", "members = 9", "between 1 and 7"),
            ("tls = true", "segment = \"nope\"", "unknown segment"),
            ("ipam = \"ipvlan-bgp\"\n", "", "has no {n}"),
        ] {
            let e = parse(&CLUSTER.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }
}
