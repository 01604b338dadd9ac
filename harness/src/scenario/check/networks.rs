//! Networks and containers: each network named once with a subnet of
//! either family on known hosts (patterns expanded), each container on a
//! known host and a network that exists there, names used once, `count`
//! groups and per-host groups recorded.
//!
//! In: the file's raw networks and containers (per-host containers already
//! expanded), the hosts. Out: checked [`NetworkDef`]s, [`ContainerDef`]s
//! and the groups (group name -> members).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::scenario::locate::Here;
use crate::scenario::model::{RawScenario, Scenario};
use crate::scenario::schema::{ContainerDef, IpamKind, NetworkDef};

/// Every network once, with its subnets per host (patterns expanded).
pub(in crate::scenario) fn networks(
    s: &Scenario,
    raw: &RawScenario,
    host_names: &BTreeSet<String>,
    here: Here,
) -> Result<Vec<NetworkDef>> {
    let at = |off: usize, msg: String| here.at(off, msg);
    let mut networks = Vec::new();
    for n in &raw.networks {
        let mut net = n.get_ref().clone();
        let off = n.span().start;
        if networks.iter().any(|o: &NetworkDef| o.name == net.name) {
            return Err(at(off, format!("network {} is declared twice", net.name)));
        }
        let one = net.ipam == IpamKind::Cluster;
        net.subnets = s
            .network_subnets(&net.subnets, &net.subnet, &net.hosts, one)
            .map_err(|e| at(off, format!("network {}: {e}", net.name)))?;
        net.subnets6 = s
            .network_subnets(&net.subnets6, &net.subnet6, &net.hosts, one)
            .map_err(|e| at(off, format!("network {}: {e}", net.name)))?;
        if net.subnets.is_empty() && net.subnets6.is_empty() {
            return Err(at(
                off,
                format!(
                    "network {}: give subnets or subnets6 (or a subnet/subnet6 pattern)",
                    net.name
                ),
            ));
        }
        for h in net.hosts_on().iter() {
            if !host_names.contains(h) {
                return Err(at(
                    off,
                    format!("network {}: unknown host {h:?} in subnets", net.name),
                ));
            }
        }
        networks.push(net);
    }

    Ok(networks)
}

/// Every container (`count` expanded) on a known host and network; the
/// groups: a `count` or per-host template's name -> its containers.
#[allow(clippy::type_complexity)]
pub(in crate::scenario) fn containers(
    flat: &[(ContainerDef, usize, Option<String>)],
    host_names: &BTreeSet<String>,
    networks: &[NetworkDef],
    here: Here,
) -> Result<(Vec<ContainerDef>, BTreeMap<String, Vec<String>>)> {
    let at = |off: usize, msg: String| here.at(off, msg);
    let mut containers = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (def, off, family) in flat {
        let (def, off) = (def, *off);
        if !host_names.contains(&def.host) {
            return Err(at(
                off,
                format!("container {}: unknown host {:?}", def.name, def.host),
            ));
        }
        let Some(net) = networks.iter().find(|n| n.name == def.network) else {
            return Err(at(
                off,
                format!("container {}: unknown network {:?}", def.name, def.network),
            ));
        };
        if !net.on(&def.host) {
            return Err(at(
                off,
                format!(
                    "container {}: network {} has no subnet on host {}",
                    def.name, def.network, def.host
                ),
            ));
        }
        let names: Vec<String> = match def.count {
            None => vec![def.name.clone()],
            Some(0) => return Err(at(off, "count must be at least 1".into())),
            Some(n) => (1..=n).map(|i| format!("{}{i}", def.name)).collect(),
        };
        for name in &names {
            if host_names.contains(name)
                || containers.iter().any(|o: &ContainerDef| &o.name == name)
            {
                return Err(at(off, format!("name {name} is used twice")));
            }
            containers.push(ContainerDef {
                name: name.clone(),
                count: None,
                hosts: None,
                ..def.clone()
            });
        }
        if let Some(f) = family {
            groups.entry(f.clone()).or_default().extend(names.clone());
        }
        groups.entry(def.name.clone()).or_default().extend(names);
    }

    Ok((containers, groups))
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, GOOD};

    #[test]
    fn network_on_missing_host_is_refused() {
        let e = parse(&GOOD.replace("h2 = \"10.1.2.0/24\"", "h9 = \"10.1.2.0/24\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("h9"), "{e}");
    }
}
