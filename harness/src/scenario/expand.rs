//! Templates expanded: a host template (`count = N`) into N hosts with the
//! next addresses, a subnet pattern (`"10.2.{n}.0/24"`) into one subnet per
//! host, per-host containers (`hosts = [...]`) into one definition per
//! host, and host names and templates into host names.
//!
//! In: the file's raw hosts, networks and containers, and the scenario so
//! far. Out: the expanded definitions, each with the file offset of the
//! template it came from (for error lines). Owns the naming rules
//! (`h1`..`hN`, `<host>-<name>`); checks only what expanding needs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ipnet::{Ipv4Net, Ipv6Net};
use toml::Spanned;

use super::locate::Here;
use super::model::Scenario;
use super::schema::{ContainerDef, HostDef, Role};

/// A subnet of either family as a network's pattern makes it.
pub(in crate::scenario) trait SubnetText: Clone + std::fmt::Display {
    fn parse(text: &str) -> Option<Self>;
    fn is_trunc(&self) -> bool;
    fn overlaps(&self, other: &Self) -> bool;
}

impl SubnetText for Ipv4Net {
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
    fn is_trunc(&self) -> bool {
        *self == self.trunc()
    }
    fn overlaps(&self, o: &Self) -> bool {
        self.contains(o) || o.contains(self)
    }
}

impl SubnetText for Ipv6Net {
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
    fn is_trunc(&self) -> bool {
        *self == self.trunc()
    }
    fn overlaps(&self, o: &Self) -> bool {
        self.contains(o) || o.contains(self)
    }
}

/// Host templates (`count = N`) become N hosts; each keeps the template's
/// offset for its messages. Also answers template name -> its host names.
#[allow(clippy::type_complexity)]
pub(super) fn host_templates(
    raw_hosts: &[Spanned<HostDef>],
    here: Here,
) -> Result<(Vec<(HostDef, usize)>, BTreeMap<String, Vec<String>>)> {
    let at = |off: usize, msg: String| here.at(off, msg);
    // Host templates (`count = N`) become N hosts first; each keeps the
    // template's span for its messages.
    let mut expanded: Vec<(HostDef, usize)> = Vec::new();
    let mut host_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in raw_hosts {
        let def = h.get_ref();
        let off = h.span().start;
        match def.count {
            None => expanded.push((def.clone(), off)),
            Some(0) => {
                return Err(at(
                    off,
                    format!("host {}: count must be at least 1", def.name),
                ))
            }
            Some(n) => {
                let mut names = Vec::new();
                for k in 1..=n {
                    let name = format!("{}{k}", def.name);
                    let address = match def.address {
                        Some(a) => Some(
                            Ipv4Net::new(
                                Ipv4Addr::from(u32::from(a.addr()) + (k as u32 - 1)),
                                a.prefix_len(),
                            )
                            .map_err(|e| at(off, e.to_string()))?,
                        ),
                        None => None,
                    };
                    let address6 = match def.address6 {
                        Some(a) => Some(
                            Ipv6Net::new(
                                Ipv6Addr::from(u128::from(a.addr()) + (k as u128 - 1)),
                                a.prefix_len(),
                            )
                            .map_err(|e| at(off, e.to_string()))?,
                        ),
                        None => None,
                    };
                    names.push(name.clone());
                    expanded.push((
                        HostDef {
                            name,
                            count: None,
                            address,
                            address6,
                            ..def.clone()
                        },
                        off,
                    ));
                }
                if host_groups.insert(def.name.clone(), names).is_some() {
                    return Err(at(
                        off,
                        format!("host template {} is declared twice", def.name),
                    ));
                }
            }
        }
    }
    Ok((expanded, host_groups))
}

/// Per-host containers (`hosts = [...]`) become one definition per host,
/// named `<host>-<name>`: (definition, offset, the template's name).
pub(super) fn per_host_containers(
    s: &Scenario,
    raw_containers: &[Spanned<ContainerDef>],
    here: Here,
) -> Result<Vec<(ContainerDef, usize, Option<String>)>> {
    let at = |off: usize, msg: String| here.at(off, msg);
    // Per-host containers (`hosts = [...]`) become one definition per host.
    let mut flat: Vec<(ContainerDef, usize, Option<String>)> = Vec::new();
    for c in raw_containers {
        let def = c.get_ref();
        let off = c.span().start;
        match (&def.hosts, def.host.is_empty()) {
            (Some(_), false) => {
                return Err(at(
                    off,
                    format!("container {}: give host or hosts, not both", def.name),
                ))
            }
            (None, true) => {
                return Err(at(
                    off,
                    format!(
                        "container {}: give host = \"<host>\" or hosts = [...]",
                        def.name
                    ),
                ))
            }
            (None, false) => flat.push((def.clone(), off, None)),
            (Some(list), true) => {
                let on = s
                    .expand_hosts(list)
                    .map_err(|e| at(off, format!("container {}: {e}", def.name)))?;
                for h in on {
                    flat.push((
                        ContainerDef {
                            name: format!("{h}-{}", def.name),
                            host: h,
                            hosts: None,
                            ..def.clone()
                        },
                        off,
                        Some(def.name.clone()),
                    ));
                }
            }
        }
    }
    Ok(flat)
}

impl Scenario {
    /// Host names and templates to host names (each once, in order).
    pub fn expand_hosts(&self, names: &[String]) -> std::result::Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let members = match self.host_groups.get(n) {
                Some(m) => m.clone(),
                None if self.host(n).is_some() => vec![n.clone()],
                None => return Err(format!("unknown host or host template {n:?}")),
            };
            for m in members {
                if out.contains(&m) {
                    return Err(format!("host {m} is named twice"));
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A network's subnet per host of one family: as written, or derived
    /// from its `subnet` (`subnet6`) pattern for each of its `hosts`
    /// (default every Docker host). With `one_subnet` (the cluster-wide
    /// IPAM) the pattern may be one subnet for every host.
    pub(in crate::scenario) fn network_subnets<N: SubnetText>(
        &self,
        written: &BTreeMap<String, N>,
        pattern: &Option<String>,
        hosts: &Option<Vec<String>>,
        one_subnet: bool,
    ) -> std::result::Result<BTreeMap<String, N>, String> {
        let Some(pattern) = pattern else {
            if hosts.is_some() && written.is_empty() {
                return Ok(BTreeMap::new());
            }
            if hosts.is_some() {
                return Err("hosts goes with a subnet pattern; subnets names its hosts".into());
            }
            return Ok(written.clone());
        };
        if !written.is_empty() {
            return Err("give subnets or a subnet pattern, not both".into());
        }
        if !pattern.contains("{n}") && !one_subnet {
            return Err(format!(
                "subnet pattern {pattern:?} has no {{n}} (the host's number), so every host would get the same subnet"
            ));
        }
        let on = match hosts {
            Some(list) => self.expand_hosts(list)?,
            None => self
                .hosts
                .iter()
                .filter(|h| h.role == Role::Docker)
                .map(|h| h.name.clone())
                .collect(),
        };
        let mut out: BTreeMap<String, N> = BTreeMap::new();
        for h in on {
            let n = self.hosts.iter().position(|d| d.name == h).unwrap_or(0) + 1;
            let text = pattern.replace("{n}", &n.to_string());
            let subnet: N = N::parse(&text).ok_or_else(|| {
                format!("subnet pattern {pattern:?} gives {text:?} for host {h} (number {n}), which is not a subnet")
            })?;
            if !subnet.is_trunc() {
                return Err(format!(
                    "subnet pattern {pattern:?} gives {subnet} for host {h}, which has host bits set"
                ));
            }
            let overlap = out.iter().find(|(_, o)| o.overlaps(&subnet));
            if let Some((other, o)) = overlap.filter(|_| !one_subnet) {
                return Err(format!(
                    "subnet pattern {pattern:?} gives overlapping subnets: {o} for {other} and {subnet} for {h}"
                ));
            }
            out.insert(h, subnet);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, SCALE};
    use crate::scenario::step_kinds::Measure;
    use crate::scenario::steps::Action;

    #[test]
    fn host_templates_subnet_patterns_and_per_host_containers_expand() {
        let s = parse(SCALE).unwrap();
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "h2", "h3", "rr1", "rr2"]);
        let addr = |n: &str| s.host(n).unwrap().address.unwrap().to_string();
        assert_eq!(addr("h1"), "192.0.2.1/24");
        assert_eq!(addr("h3"), "192.0.2.3/24");
        assert_eq!(addr("rr1"), "192.0.2.250/24");
        assert_eq!(addr("rr2"), "192.0.2.251/24");
        assert_eq!(s.bgp.reflectors, ["rr1", "rr2"]);
        assert_eq!(s.host_groups["h"], ["h1", "h2", "h3"]);
        let subnets: Vec<String> = s.networks[0]
            .subnets
            .iter()
            .map(|(h, n)| format!("{h}={n}"))
            .collect();
        assert_eq!(
            subnets,
            ["h1=10.2.1.0/24", "h2=10.2.2.0/24", "h3=10.2.3.0/24"]
        );
        assert_eq!(s.containers.len(), 6);
        assert_eq!(s.containers[0].name, "h1-c1");
        assert_eq!(s.containers[5].name, "h3-c2");
        assert_eq!(s.containers[5].host, "h3");
        assert_eq!(s.expand(&["c".into()]).len(), 6);
        assert_eq!(s.expand(&["h2-c".into()]), ["h2-c1", "h2-c2"]);
        assert!(matches!(s.steps[1].action, Action::ExpectConverged { .. }));
        assert_eq!(s.steps[1].kind.measure, Measure::Expectation);
    }

    #[test]
    fn the_old_single_reflector_still_works() {
        let src = SCALE.replace("reflectors = [\"rr\"]", "reflector = \"rr2\"");
        assert_eq!(parse(&src).unwrap().bgp.reflectors, ["rr2"]);
        let src = SCALE.replace(
            "reflectors = [\"rr\"]",
            "reflector = \"rr1\"\nreflectors = [\"rr2\"]",
        );
        assert_eq!(parse(&src).unwrap().bgp.reflectors, ["rr1", "rr2"]);
    }

    #[test]
    fn template_mistakes_are_refused_clearly() {
        let e = |from: &str, to: &str| {
            let src = SCALE.replace(from, to);
            assert_ne!(src, SCALE, "{from} not found");
            parse(&src).unwrap_err().to_string()
        };
        let m = e("reflectors = [\"rr\"]", "reflectors = [\"rr9\"]");
        assert!(m.contains("reflector \"rr9\" is not a host"), "{m}");
        let m = e("reflectors = [\"rr\"]", "reflectors = [\"rr\", \"rr1\"]");
        assert!(m.contains("rr1 is listed twice"), "{m}");
        let m = e("10.2.{n}.0/24", "10.2.0.0/24");
        assert!(m.contains("has no {n}"), "{m}");
        let m = e("10.2.{n}.0/24", "10.2.{n}.0/15");
        assert!(m.contains("host bits") || m.contains("overlapping"), "{m}");
        let m = e("10.2.{n}.0/24", "10.2.{n}00.0/24");
        assert!(
            m.contains("gives \"10.2.300.0/24\" for host h3 (number 3), which is not a subnet"),
            "{m}"
        );
        let m = e("hosts = [\"h\"]", "hosts = [\"x\"]");
        assert!(m.contains("unknown host or host template \"x\""), "{m}");
        let m = e("hosts = [\"h\"]", "host = \"h1\"\nhosts = [\"h\"]");
        assert!(m.contains("not both"), "{m}");
        let m = e("name = \"h\"\ncount = 3", "name = \"h\"\ncount = 0");
        assert!(m.contains("count must be at least 1"), "{m}");
        let m = e("name = \"h\"\ncount = 3", "name = \"hostname\"\ncount = 30");
        assert!(m.contains("hostname1") && m.contains("1-8"), "{m}");
        let m = e("within = \"5s\"", "within = \"5s\"\nhosts = [\"rr1\"]");
        assert!(m.contains("rr1 is not a Docker host"), "{m}");
    }
}
