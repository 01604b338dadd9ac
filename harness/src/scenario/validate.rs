//! Turns the raw file into a checked [`Scenario`]: names valid and unique,
//! addresses inside their segments, every host, router, network, container
//! and group a step names declared, step fields that fit together; and the
//! step names made up from their fields when the file gives none.
//!
//! In: the TOML text and its path. Out: a [`Scenario`], or an error that
//! names the file, the line and what is wrong. Owns every parse-time check
//! and its message; touches nothing on the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{anyhow, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::schema::*;

/// A subnet of either family as a network's pattern makes it.
trait SubnetText: Clone + std::fmt::Display {
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

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

impl Scenario {
    pub fn parse(src: &str, path: &Path) -> Result<Scenario> {
        let file = path.display().to_string();
        let raw: RawScenario = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            anyhow!("{file}:{line}: {}", e.message())
        })?;
        let at = |offset: usize, msg: String| anyhow!("{file}:{}: {msg}", line_of(src, offset));

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
        // Host templates (`count = N`) become N hosts first; each keeps the
        // template's span for its messages.
        let mut expanded: Vec<(HostDef, usize)> = Vec::new();
        let mut host_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &raw.hosts {
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
        if raw.bgp.transport == Family::Ipv6 {
            if let Some(h) = hosts.iter().find(|h| h.address6.is_none()) {
                return Err(anyhow!(
                    "{file}: [bgp] transport = \"ipv6\" but host {} has no IPv6 underlay address (give underlay6 or the segment's subnet6)",
                    h.name
                ));
            }
        }
        let host_names: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
        for g in host_groups.keys() {
            if host_names.contains(g) {
                return Err(anyhow!(
                    "{file}: host template {g} has the name of a host; rename one of them"
                ));
            }
        }
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
                let s = segments.iter().find(|s| &s.name == seg).ok_or_else(|| {
                    at(off, format!("router {}: unknown segment {seg:?}", def.name))
                })?;
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
                let s = segments.iter().find(|s| &s.name == seg).ok_or_else(|| {
                    at(off, format!("router {}: unknown segment {seg:?}", def.name))
                })?;
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
        let mut requires: BTreeSet<Capability> = raw.requires.iter().copied().collect();
        for r in &routers {
            requires.insert(match r.kind {
                RouterKind::Frr => Capability::Frr,
                RouterKind::Bird => Capability::Bird,
            });
        }
        let mut s = Scenario {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
            file: file.clone(),
            description: raw.description.clone(),
            requires,
            engines: Vec::new(),
            underlay: raw.underlay,
            segments,
            bgp,
            driver: raw.driver.clone(),
            hosts,
            routers,
            networks: Vec::new(),
            containers: Vec::new(),
            groups: BTreeMap::new(),
            host_groups,
            steps: Vec::new(),
        };
        let (hosts, routers) = (s.hosts.clone(), s.routers.clone());
        for (r, span) in routers.iter().zip(&raw.routers) {
            let off = span.span().start;
            for n in &r.neighbors {
                s.shared_address(&r.name, n).ok_or_else(|| {
                    at(off, format!("router {}: neighbour {n:?} is not a host or router on one of its segments", r.name))
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
        for (h, (_, off)) in hosts.iter().zip(&expanded) {
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

        let mut networks = Vec::new();
        for n in &raw.networks {
            let mut net = n.get_ref().clone();
            let off = n.span().start;
            if networks.iter().any(|o: &NetworkDef| o.name == net.name) {
                return Err(at(off, format!("network {} is declared twice", net.name)));
            }
            net.subnets = s
                .network_subnets(&net.subnets, &net.subnet, &net.hosts)
                .map_err(|e| at(off, format!("network {}: {e}", net.name)))?;
            net.subnets6 = s
                .network_subnets(&net.subnets6, &net.subnet6, &net.hosts)
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

        let mut containers = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Per-host containers (`hosts = [...]`) become one definition per host.
        let mut flat: Vec<(ContainerDef, usize, Option<String>)> = Vec::new();
        for c in &raw.containers {
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
        for (def, off, family) in &flat {
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

        s.networks = networks;
        s.containers = containers;
        s.groups = groups;
        if raw.engines.is_empty() {
            return Err(anyhow!("{file}: engines must name at least one engine"));
        }
        s.engines = raw
            .engines
            .iter()
            .map(|e| e.parse::<Engine>().map_err(|m| anyhow!("{file}: {m}")))
            .collect::<Result<_>>()?;
        if let Some(h) = s.hosts.iter().find(|h| h.embedded_gobgpd) {
            if !s.driver.plugin {
                return Err(anyhow!(
                    "{file}: host {}: embedded_gobgpd needs [driver] plugin = true",
                    h.name
                ));
            }
        }
        if s.engines.iter().any(|e| *e != Engine::Dockerd) {
            if let Some(c) = s.containers.iter().find(|c| c.health.is_some()) {
                return Err(anyhow!(
                    "{file}: container {}: health needs engines = [\"dockerd\"]",
                    c.name
                ));
            }
        }
        if s.driver.plugin && s.engines.iter().any(|e| *e != Engine::Dockerd) {
            return Err(anyhow!(
                "{file}: [driver] plugin = true needs engines = [\"dockerd\"]: only dockerd runs managed plugins"
            ));
        }
        for (i, t) in raw.steps.iter().enumerate() {
            let line = line_of(src, t.span().start);
            let mut table = t.get_ref().clone();
            let name = match table.remove("name") {
                Some(toml::Value::String(n)) => Some(n),
                Some(_) => return Err(anyhow!("{file}:{line}: step name must be a string")),
                None => None,
            };
            let action: Action =
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        anyhow!("{file}:{line}: step {}: {}", i + 1, e.message())
                    })?;
            let name = name.unwrap_or_else(|| {
                format!(
                    "{} {}",
                    table.get("do").and_then(|v| v.as_str()).unwrap_or("step"),
                    summary(&table)
                )
                .trim()
                .to_string()
            });
            s.check_action(&action)
                .map_err(|e| anyhow!("{file}:{line}: step {} ({name}): {e}", i + 1))?;
            s.steps.push(Step { name, line, action });
        }
        Ok(s)
    }

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
    /// (default every Docker host).
    fn network_subnets<N: SubnetText>(
        &self,
        written: &BTreeMap<String, N>,
        pattern: &Option<String>,
        hosts: &Option<Vec<String>>,
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
        if !pattern.contains("{n}") {
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
            if let Some((other, o)) = out.iter().find(|(_, o)| o.overlaps(&subnet)) {
                return Err(format!(
                    "subnet pattern {pattern:?} gives overlapping subnets: {o} for {other} and {subnet} for {h}"
                ));
            }
            out.insert(h, subnet);
        }
        Ok(out)
    }

    fn check_container(&self, n: &str) -> std::result::Result<(), String> {
        if self.container(n).is_some() || self.groups.contains_key(n) {
            Ok(())
        } else {
            Err(format!("unknown container {n:?}"))
        }
    }

    fn check_member(&self, n: &str) -> std::result::Result<(), String> {
        if self.host(n).is_some() {
            Ok(())
        } else {
            self.check_container(n)
                .map_err(|_| format!("{n:?} is neither a container nor a host"))
        }
    }

    /// A prefix a step names: a CIDR (either family) or a container (its /32 or /128).
    fn check_prefix(&self, prefix: &str) -> std::result::Result<(), String> {
        if prefix.parse::<IpNet>().is_err() {
            self.check_container(prefix)
                .map_err(|_| format!("prefix {prefix:?} is neither a CIDR nor a container"))?;
        }
        Ok(())
    }

    /// A next hop a step names: an address, a host or a router.
    fn check_via(&self, v: &str) -> std::result::Result<(), String> {
        if v.parse::<IpAddr>().is_err() && self.host(v).is_none() && self.router(v).is_none() {
            return Err(format!(
                "via {v:?} is neither an address, a host nor a router"
            ));
        }
        Ok(())
    }

    fn check_host(&self, n: &str) -> std::result::Result<(), String> {
        self.host(n)
            .map(|_| ())
            .ok_or_else(|| format!("unknown host {n:?}"))
    }

    fn check_action(&self, a: &Action) -> std::result::Result<(), String> {
        match a {
            Action::WaitBgp { .. } => Ok(()),
            Action::CreateNetwork { network, hosts, .. }
            | Action::DeleteNetwork { network, hosts } => {
                let net = self
                    .networks
                    .iter()
                    .find(|n| &n.name == network)
                    .ok_or_else(|| format!("unknown network {network:?}"))?;
                for h in hosts.iter().flatten() {
                    self.check_host(h)?;
                    if !net.on(h) {
                        return Err(format!("network {network} has no subnet on host {h}"));
                    }
                }
                Ok(())
            }
            Action::Start {
                expect_error: Some(_),
                within: Some(_),
                ..
            } => Err("expect_error and within exclude each other".into()),
            Action::Start { containers, .. }
            | Action::Stop { containers }
            | Action::KillContainer { containers } => {
                if containers.is_empty() {
                    return Err("no containers listed".into());
                }
                containers.iter().try_for_each(|c| self.check_container(c))
            }
            Action::ExpectReachable { from, to, .. }
            | Action::ExpectUnreachable { from, to, .. }
            | Action::ProbeStart { from, to, .. } => {
                if from.is_empty() || to.is_empty() {
                    return Err("from and to must not be empty".into());
                }
                from.iter().chain(to).try_for_each(|m| self.check_member(m))
            }
            Action::ExpectMatrix { members, .. } => members
                .iter()
                .flatten()
                .try_for_each(|m| self.check_member(m)),
            Action::ExpectRoute {
                host,
                prefix,
                via,
                protocol,
                ..
            } => {
                self.check_host(host)?;
                if let Some(p) = protocol {
                    route_protocol(p)?;
                }
                self.check_prefix(prefix)?;
                via.iter().try_for_each(|v| self.check_via(v))
            }
            Action::ExpectContainer {
                container,
                address,
                default_route,
                gateway,
                ..
            } => {
                self.check_container(container)?;
                if address.is_none() && default_route.is_none() && gateway.is_none() {
                    return Err("give address, default_route or gateway".into());
                }
                if *default_route == Some(DefaultRoute::Connected) && *gateway == Some(true) {
                    return Err("a connected default route has no gateway".into());
                }
                Ok(())
            }
            Action::ExpectBgpPath {
                host,
                prefix,
                originator,
                cluster_list,
                ..
            } => {
                self.check_host(host)?;
                self.check_prefix(prefix)?;
                if originator.is_none() && cluster_list.is_none() {
                    return Err("give originator or cluster_list".into());
                }
                originator
                    .iter()
                    .chain(cluster_list.iter().flatten())
                    .try_for_each(|v| self.check_via(v))
            }
            Action::ExpectRoutes { host, routes, .. } => {
                self.check_host(host)?;
                let mut seen = BTreeSet::new();
                for r in routes {
                    self.check_prefix(r.prefix())?;
                    r.via().iter().try_for_each(|v| self.check_via(v))?;
                    if !seen.insert(r.prefix()) {
                        return Err(format!("{} is listed twice", r.prefix()));
                    }
                }
                Ok(())
            }
            Action::RouteWatchStop { .. } => Ok(()),
            Action::ExpectConverged { hosts, .. } | Action::RouteWatchStart { hosts, .. } => {
                if let Some(list) = hosts {
                    if list.is_empty() {
                        return Err("hosts must not be empty (leave it out for every host)".into());
                    }
                    for h in self.expand_hosts(list)? {
                        if self.host(&h).map(|d| d.role) != Some(Role::Docker) {
                            return Err(format!("host {h} is not a Docker host"));
                        }
                    }
                }
                Ok(())
            }
            Action::ExpectRejected { host, .. }
            | Action::LinkDown { host }
            | Action::LinkUp { host }
            | Action::Inject { host, .. }
            | Action::PlantRoute { host, .. } => self.check_host(host),
            Action::Run { host, command } => {
                self.check_host(host)?;
                if command.is_empty() {
                    return Err("command must not be empty".into());
                }
                for arg in command {
                    for name in placeholders(arg)? {
                        self.check_container(&name)
                            .map_err(|e| format!("{e} in {arg:?}"))?;
                    }
                }
                Ok(())
            }
            Action::Exec { container, command } => {
                if self.container(container).is_none() {
                    return Err(format!("unknown container {container}"));
                }
                if command.is_empty() {
                    return Err("command must not be empty".into());
                }
                if self.engines.iter().any(|e| *e != Engine::Dockerd) {
                    return Err("exec needs engines = [\"dockerd\"]".into());
                }
                Ok(())
            }
            Action::Freeze { host, daemon } | Action::Thaw { host, daemon } => {
                self.check_host(host)?;
                if *daemon == DaemonKind::Dockerd {
                    return Err("freeze/thaw works on gobgpd and the driver".into());
                }
                Ok(())
            }
            Action::Pause { .. } | Action::FloodWait { .. } => Ok(()),
            Action::ExpectStatus {
                host,
                field,
                equals,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if field.is_empty() || field.split('.').any(str::is_empty) {
                    return Err(format!(
                        "field {field:?}: use a dotted path such as bgp.kernel_drift"
                    ));
                }
                if equals.is_none() && at_least.is_none() && at_most.is_none() {
                    return Err("give equals, at_least or at_most".into());
                }
                Ok(())
            }
            Action::ExpectMetrics {
                host,
                metric,
                equals,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                crate::runner::metrics::parse_series(metric)?;
                if equals.is_none() && at_least.is_none() && at_most.is_none() {
                    return Err("give equals, at_least or at_most".into());
                }
                Ok(())
            }
            Action::ExpectLog {
                host,
                daemon,
                contains,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if *daemon == DaemonKind::Dockerd {
                    return Err("expect-log reads gobgpd's or the driver's log".into());
                }
                if contains.is_empty() {
                    return Err("contains must not be empty".into());
                }
                if at_least.is_none() && at_most.is_none() {
                    return Err("give at_least or at_most".into());
                }
                Ok(())
            }
            Action::LinkSnapshot { host, links, .. } => {
                self.check_host(host)?;
                if links.is_empty() {
                    return Err("no links listed".into());
                }
                Ok(())
            }
            Action::ExpectLink {
                host,
                links,
                present,
                kind,
                alias_prefix,
                unchanged_since,
                ..
            } => {
                self.check_host(host)?;
                if links.is_empty() {
                    return Err("no links listed".into());
                }
                if !present
                    && (kind.is_some() || alias_prefix.is_some() || unchanged_since.is_some())
                {
                    return Err(
                        "present = false takes no kind, alias_prefix or unchanged_since".into(),
                    );
                }
                Ok(())
            }
            Action::ExpectMarkedLinks {
                host,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if at_least.is_none() && at_most.is_none() {
                    return Err("give at_least or at_most".into());
                }
                Ok(())
            }
            Action::BgpSnapshot { host, .. } | Action::ExpectBgpSteady { host, .. } => {
                self.check_host(host)
            }
            Action::Flood { host, count, .. } => {
                self.check_host(host)?;
                if *count == 0 {
                    return Err("count must be at least 1".into());
                }
                Ok(())
            }
            Action::Kill {
                daemon: DaemonKind::Driver,
                ..
            } if self.driver.plugin => Err(
                "the driver runs as a Docker plugin here: restart, stop or start it (docker plugin disable/enable); kill is not supported"
                    .into(),
            ),
            Action::Kill { host, daemon }
            | Action::StopDaemon { host, daemon }
            | Action::StartDaemon { host, daemon }
            | Action::Restart { host, daemon } => {
                self.check_host(host)?;
                if *daemon != DaemonKind::Gobgpd
                    && self.host(host).map(|h| h.role) == Some(Role::Reflector)
                {
                    return Err(format!("host {host} is a reflector and runs no {daemon:?}"));
                }
                if *daemon == DaemonKind::Gobgpd
                    && self.host(host).is_some_and(|h| h.embedded_gobgpd)
                {
                    return Err(format!(
                        "host {host}'s gobgpd runs inside the plugin: control the driver instead"
                    ));
                }
                if *daemon == DaemonKind::Dockerd && !self.engines.contains(&Engine::Dockerd) {
                    return Err(
                        "dockerd can only be controlled in a scenario with engines = [\"dockerd\"]"
                            .into(),
                    );
                }
                Ok(())
            }
            Action::ProbeStop { .. } => Ok(()),
            Action::ExpectRouterRoute {
                router,
                prefix,
                via,
                ..
            } => {
                self.router(router)
                    .ok_or_else(|| format!("unknown router {router:?}"))?;
                self.check_prefix(prefix)?;
                via.iter().try_for_each(|v| self.check_via(v))
            }
            Action::ExpectRouterBgp {
                router,
                prefix,
                from,
                ..
            } => {
                let r = self
                    .router(router)
                    .ok_or_else(|| format!("unknown router {router:?}"))?;
                if r.kind != RouterKind::Frr {
                    return Err(format!("expect-router-bgp reads FRR; {router} is not FRR"));
                }
                self.check_prefix(prefix)?;
                from.iter().try_for_each(|v| self.check_via(v))
            }
            Action::RouterDown { router } | Action::RouterUp { router } => self
                .router(router)
                .map(|_| ())
                .ok_or_else(|| format!("unknown router {router:?}")),
        }
    }
}

/// The route protocol number a scenario names (`ours` is the driver's default tag).
pub fn route_protocol(p: &str) -> std::result::Result<u8, String> {
    match p {
        "ours" => Ok(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
        "kernel" => Ok(2),
        "boot" => Ok(3),
        "static" => Ok(4),
        n => n.parse().map_err(|_| {
            format!("protocol {p:?}: use ours, kernel, boot, static or a number 0-255")
        }),
    }
}

/// The container names written as `{{name}}` in a `run` argument (replaced
/// by the running container's address). Double braces, because single ones
/// are nft's and the shell's.
pub fn placeholders(arg: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {arg:?}"))?;
        out.push(after[..close].to_string());
        rest = &after[close + 2..];
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 8 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn summary(t: &toml::Table) -> String {
    let mut parts = Vec::new();
    for key in [
        "host",
        "daemon",
        "network",
        "containers",
        "from",
        "to",
        "prefix",
        "name",
        "field",
        "contains",
        "links",
        "id",
    ] {
        if let Some(v) = t.get(key) {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            parts.push(if key == "from" || key == "to" {
                format!("{key} {s}")
            } else {
                s
            });
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Dur;

    const GOOD: &str = r#"
description = "two hosts"
requires = ["macvlan"]

[[hosts]]
name = "h1"

[[hosts]]
name = "h2"
asn = 65001

[[networks]]
name = "blue"
options = { dataplane = "macvlan" }
subnets = { h1 = "10.1.1.0/24", h2 = "10.1.2.0/24" }

[[containers]]
name = "c"
host = "h1"
network = "blue"
count = 3

[[containers]]
name = "d"
host = "h2"
network = "blue"

[[steps]]
do = "start"
containers = ["c", "d"]

[[steps]]
name = "all see all"
do = "expect-reachable"
from = ["c1"]
to = ["d", "h2"]
within = "5s"
"#;

    fn parse(src: &str) -> Result<Scenario> {
        Scenario::parse(src, Path::new("scenarios/x.toml"))
    }

    #[test]
    fn parses_and_expands() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.hosts[0].address, Some("192.0.2.1/24".parse().unwrap()));
        assert_eq!(s.hosts[1].address, Some("192.0.2.2/24".parse().unwrap()));
        assert_eq!(s.containers.len(), 4);
        assert_eq!(
            s.expand(&["c".into(), "h1".into()]),
            vec!["c1", "c2", "c3", "h1"]
        );
        assert_eq!(s.steps[0].name, "start c,d");
        assert_eq!(s.steps[1].name, "all see all");
        assert_eq!(s.steps[1].line, 32);
        assert!(
            matches!(s.steps[1].action, Action::ExpectReachable { within: Dur(d), .. } if d.as_secs() == 5)
        );
    }

    #[test]
    fn plugin_mode_needs_dockerd_and_has_no_kill() {
        let on = |engines: &str, extra: &str| {
            let src = format!(
                "engines = {engines}\n{}",
                GOOD.replacen("[[hosts]]", "[driver]\nplugin = true\n\n[[hosts]]", 1)
                    .replace("name = \"h2\"", "name = \"h2\"\nembedded_gobgpd = true")
            );
            parse(&format!("{src}{extra}"))
        };
        let e = on("[\"emulator\"]", "").unwrap_err().to_string();
        assert!(e.contains("plugin = true needs engines"), "{e}");
        assert!(on("[\"dockerd\"]", "").is_ok());
        let kill = "\n[[steps]]\ndo = \"kill\"\nhost = \"h1\"\ndaemon = \"driver\"\n";
        let e = on("[\"dockerd\"]", kill).unwrap_err().to_string();
        assert!(e.contains("kill is not supported"), "{e}");
        let gobgpd = kill.replace("\"driver\"", "\"gobgpd\"").replace("h1", "h2");
        let e = on("[\"dockerd\"]", &gobgpd).unwrap_err().to_string();
        assert!(e.contains("runs inside the plugin"), "{e}");
        let e = parse(&GOOD.replace("name = \"h2\"", "name = \"h2\"\nembedded_gobgpd = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("embedded_gobgpd needs [driver] plugin"), "{e}");
    }

    #[test]
    fn health_checks_and_exec_need_dockerd() {
        let on = |engines: &str, extra: &str| {
            let src = format!(
                "engines = {engines}\n{}",
                GOOD.replacen(
                    "network = \"blue\"\n\n",
                    "network = \"blue\"\nhealth = { cmd = \"test -f /ok\", interval = \"1s\", retries = 1 }\n\n",
                    1
                )
            );
            parse(&format!("{src}{extra}"))
        };
        let exec =
            "\n[[steps]]\ndo = \"exec\"\ncontainer = \"d\"\ncommand = [\"touch\", \"/ok\"]\n";
        let s = on("[\"dockerd\"]", exec).unwrap();
        let d = s.container("d").unwrap().health.as_ref().unwrap();
        assert_eq!((d.cmd.as_str(), d.retries), ("test -f /ok", Some(1)));
        assert!(s.container("c1").unwrap().health.is_none());
        let e = on("[\"emulator\"]", "").unwrap_err().to_string();
        assert!(e.contains("container d: health needs engines"), "{e}");
        let no_health = format!("engines = [\"emulator\"]\n{GOOD}{exec}");
        let e = parse(&no_health).unwrap_err().to_string();
        assert!(e.contains("exec needs engines"), "{e}");
        let e = on("[\"dockerd\"]", &exec.replace("\"d\"", "\"nobody\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown container nobody"), "{e}");
        let e = on("[\"dockerd\"]", &exec.replace("[\"touch\", \"/ok\"]", "[]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("command must not be empty"), "{e}");
    }

    #[test]
    fn unknown_step_field_names_the_line() {
        let bad = GOOD.replace("within = \"5s\"", "withn = \"5s\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:32: step 2"), "{e}");
        assert!(e.contains("withn"), "{e}");
    }

    #[test]
    fn unknown_container_names_the_line() {
        let bad = GOOD.replace("to = [\"d\", \"h2\"]", "to = [\"zz\"]");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains(":32:") && e.contains("\"zz\""), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let bad = GOOD.replace("name = \"h2\"", "name = h2");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:9:"), "{e}");
    }

    #[test]
    fn bad_durations_and_actions_are_refused() {
        let e = parse(&GOOD.replace("\"5s\"", "\"5 parsecs\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":32:") && e.contains("unit"), "{e}");
        let e = parse(&GOOD.replace("do = \"start\"", "do = \"launch\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":28:") && e.contains("launch"), "{e}");
    }

    #[test]
    fn run_placeholders_are_double_braced() {
        assert_eq!(placeholders("{{c1}}/32").unwrap(), vec!["c1"]);
        assert_eq!(placeholders("a {{c1}} {{d}}").unwrap(), vec!["c1", "d"]);
        assert!(placeholders("chain { type filter ; }").unwrap().is_empty());
        assert!(placeholders("{{c1").is_err());
        let bad = GOOD.replace(
            "[[steps]]\ndo = \"start\"",
            "[[steps]]\ndo = \"run\"\nhost = \"h1\"\ncommand = [\"ip\", \"{{zz}}\"]\n\n[[steps]]\ndo = \"start\"",
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("\"zz\""), "{e}");
    }

    #[test]
    fn expect_routes_takes_prefixes_containers_and_vias() {
        let src = format!(
            "{GOOD}\n[[steps]]\ndo = \"expect-routes\"\nhost = \"h2\"\nroutes = [\"c1\", {{ prefix = \"10.9.0.0/24\", via = \"h1\" }}]\n"
        );
        let s = parse(&src).unwrap();
        match &s.steps[2].action {
            Action::ExpectRoutes { routes, .. } => {
                assert_eq!(routes.len(), 2);
                assert_eq!((routes[0].prefix(), routes[0].via()), ("c1", None));
                assert_eq!(routes[1].via(), Some("h1"));
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(s.steps[2].action.measure(), Measure::Expectation);
        let e = parse(&src.replace("\"c1\", {", "\"zz\", {"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zz"), "{e}");
        let e = parse(&src.replace("via = \"h1\"", "via = \"nowhere\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn network_on_missing_host_is_refused() {
        let e = parse(&GOOD.replace("h2 = \"10.1.2.0/24\"", "h9 = \"10.1.2.0/24\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("h9"), "{e}");
    }

    const SCALE: &str = r#"
description = "templates"
requires = ["macvlan"]

[bgp]
mode = "route-reflector"
reflectors = ["rr"]

[[hosts]]
name = "h"
count = 3

[[hosts]]
name = "rr"
count = 2
role = "reflector"
address = "192.0.2.250/24"

[[networks]]
name = "n"
subnet = "10.2.{n}.0/24"

[[containers]]
name = "c"
hosts = ["h"]
network = "n"
count = 2

[[steps]]
do = "start"
containers = ["c"]

[[steps]]
do = "expect-converged"
within = "5s"
"#;

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
        assert_eq!(s.steps[1].action.measure(), Measure::Expectation);
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

    const DUAL: &str = r#"
description = "dual stack"
underlay6 = "fd00:2::/64"
[bgp]
transport = "ipv6"
[[hosts]]
name = "h"
count = 3
[[networks]]
name = "dual"
subnet = "10.2.{n}.0/24"
subnet6 = "fd00:10:{n}::/64"
[[networks]]
name = "v6only"
subnets6 = { h1 = "fd00:20:1::/64" }
[[containers]]
name = "c6"
host = "h1"
network = "v6only"
[[steps]]
do = "expect-route"
host = "h2"
prefix = "c6"
family = "ipv6"
via = "h1"
[[steps]]
do = "inject"
host = "h1"
prefix = "::/0"
next_hop = "fd00:2::1"
"#;

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
