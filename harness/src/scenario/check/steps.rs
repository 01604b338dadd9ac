//! Each step's check: every host, router, network, container and group it
//! names is declared, its fields fit together (`expect_error` or `within`,
//! bounds given, a metric that parses, ...), and what it needs of the
//! engines and the driver holds.
//!
//! In: one parsed [`Action`] and the scenario. Out: `Ok(())` or the
//! message (the parse adds the file, line and step). Adding a step: its
//! arm in [`Scenario::check_action`] (the compiler asks for it).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::probe::metrics::parse_series;
use crate::scenario::model::Scenario;
use crate::scenario::schema::{DaemonKind, Engine, Role, RouterKind};
use crate::scenario::steps::{Action, DefaultRoute};

impl Scenario {
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
        let container = prefix.strip_prefix("block-of:").unwrap_or(prefix);
        if prefix.parse::<IpNet>().is_err() {
            self.check_container(container)
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

    pub(in crate::scenario) fn check_action(&self, a: &Action) -> std::result::Result<(), String> {
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
            Action::Start { containers, .. }
            | Action::Stop { containers }
            | Action::KillContainer { containers } => {
                if containers.is_empty() {
                    return Err("no containers listed".into());
                }
                containers.iter().try_for_each(|c| self.check_container(c))
            }
            Action::StartProbedFromRoute {
                container, from, ..
            } => {
                self.check_container(container)?;
                self.check_member(from)
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
                next_hops,
                protocol,
                present,
                ..
            } => {
                self.check_host(host)?;
                if let Some(p) = protocol {
                    route_protocol(p)?;
                }
                self.check_prefix(prefix)?;
                if let Some(hops) = next_hops {
                    if via.is_some() || !present || hops.is_empty() {
                        return Err("next_hops: one or more next hops of a route that is present, without via".into());
                    }
                    hops.iter().try_for_each(|v| self.check_via(v))?;
                }
                via.iter().try_for_each(|v| self.check_via(v))
            }
            Action::ExpectContainer {
                container,
                address,
                default_route,
                gateway,
                host_route,
                ..
            } => {
                self.check_container(container)?;
                if address.is_none()
                    && default_route.is_none()
                    && gateway.is_none()
                    && host_route.is_none()
                {
                    return Err("give address, default_route, gateway or host_route".into());
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
            Action::RouteEventsStart {
                host,
                router,
                prefix,
                ..
            } => {
                match (host, router) {
                    (Some(h), None) => self.check_host(h)?,
                    (None, Some(r)) => {
                        if self.router(r).is_none() {
                            return Err(format!("unknown router {r}"));
                        }
                    }
                    _ => return Err("give one of host or router".into()),
                }
                self.check_prefix(prefix)
            }
            Action::RouteEventsStop { .. } => Ok(()),
            Action::Drain { host, .. } | Action::Undrain { host } => {
                if self.host(host).map(|d| d.role) != Some(Role::Docker) {
                    return Err(format!("{host} is not a Docker host (no driver to drain)"));
                }
                Ok(())
            }
            Action::ExpectWithdrawn { prefix, hosts, .. } => {
                self.check_prefix(prefix)?;
                if let Some(list) = hosts {
                    if list.is_empty() {
                        return Err("hosts must not be empty (leave it out for every other host)".into());
                    }
                    for h in self.expand_hosts(list)? {
                        if self.host(&h).map(|d| d.role) != Some(Role::Docker) {
                            return Err(format!("host {h} is not a Docker host"));
                        }
                    }
                }
                Ok(())
            }
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
            Action::PluginCall {
                host,
                daemon,
                method,
                body,
                ..
            } => {
                self.check_host(host)?;
                if !matches!(daemon, DaemonKind::Driver | DaemonKind::Driver2) {
                    return Err("plugin-call goes to a driver: daemon = driver | driver2".into());
                }
                if self.host(host).map(|h| h.role) == Some(Role::Reflector) {
                    return Err(format!("host {host} is a reflector and runs no driver"));
                }
                if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(format!(
                        "method {method:?}: the NetworkDriver method, e.g. CreateNetwork"
                    ));
                }
                if !body.is_object() {
                    return Err("body must be a table (the request's JSON object)".into());
                }
                Ok(())
            }
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
            Action::UpgradePlugin { host } => {
                self.check_host(host)?;
                if !self.driver.plugin || self.driver.registry.is_none() {
                    return Err(
                        "upgrade-plugin needs [driver] plugin = true and a registry ([driver] registry = HOST)"
                            .into(),
                    );
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
                parse_series(metric)?;
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
            Action::ProbeStop { .. } | Action::FlowsStop { .. } => Ok(()),
            Action::FlowsStart {
                from, to, flows, ..
            } => {
                if *flows == 0 {
                    return Err("flows must be at least 1".into());
                }
                if from == to {
                    return Err("from and to must differ".into());
                }
                self.check_member(from)?;
                self.check_member(to)
            }
            Action::UplinkCountersStart { hosts, .. } => {
                if hosts.is_empty() {
                    return Err("no hosts listed".into());
                }
                hosts.iter().try_for_each(|h| {
                    self.check_host(h)?;
                    match self.host(h) {
                        Some(d) if d.uplink_links.is_empty() => {
                            Err(format!("host {h} has no uplinks"))
                        }
                        _ => Ok(()),
                    }
                })
            }
            Action::UplinkCountersStop { min_share, .. } => {
                if *min_share > 100 {
                    return Err(format!("min_share {min_share} is a percentage: 0 to 100"));
                }
                Ok(())
            }
            Action::UplinkDown { host, uplink } | Action::UplinkUp { host, uplink } => {
                self.check_host(host)?;
                let d = self.host(host).ok_or_else(|| format!("unknown host {host:?}"))?;
                if !d.uplink_links.iter().any(|u| &u.iface == uplink) {
                    let have: Vec<&str> = d.uplink_links.iter().map(|u| u.iface.as_str()).collect();
                    return Err(format!(
                        "host {host} has no uplink {uplink:?} (its uplinks: {have:?})"
                    ));
                }
                Ok(())
            }
            Action::TorPortDown { router, host }
            | Action::TorPortUp { router, host }
            | Action::Blackhole { router, host }
            | Action::BlackholeEnd { router, host } => {
                self.router(router)
                    .ok_or_else(|| format!("unknown router {router:?}"))?;
                self.check_host(host)?;
                if self.uplinks_to(router).all(|u| {
                    self.uplink_host(&u.segment).map(|(h, _)| h.name.as_str()) != Some(host)
                }) {
                    return Err(format!("host {host} has no uplink to router {router}"));
                }
                Ok(())
            }
            Action::EtcdKill { members }
            | Action::EtcdStart { members }
            | Action::EtcdFreeze { members }
            | Action::EtcdThaw { members } => {
                let n = self.etcd.as_ref().map_or(0, |e| e.members);
                if members.is_empty() {
                    return Err("no members listed".into());
                }
                for m in members {
                    let ok = m
                        .strip_prefix('e')
                        .and_then(|i| i.parse::<usize>().ok())
                        .is_some_and(|i| (1..=n).contains(&i));
                    if !ok {
                        return Err(format!(
                            "unknown etcd member {m:?} (the [etcd] section has e1..e{n})"
                        ));
                    }
                }
                Ok(())
            }
            Action::IpamReleaseHost { host, release } => {
                self.check_host(host)?;
                self.check_host(release)?;
                if host == release {
                    return Err("release-host runs on another host than the one released".into());
                }
                Ok(())
            }
            Action::ExpectIpam {
                network,
                hosts,
                gone,
                ..
            } => {
                let net = self
                    .networks
                    .iter()
                    .find(|n| &n.name == network)
                    .ok_or_else(|| format!("unknown network {network:?}"))?;
                if net.ipam != crate::scenario::schema::IpamKind::Cluster {
                    return Err(format!(
                        "network {network} does not use ipam = \"ipvlan-bgp\""
                    ));
                }
                for h in hosts.iter().flatten().chain(gone) {
                    self.check_host(h)?;
                }
                Ok(())
            }
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
            Action::ExpectRouterReceived {
                router,
                from,
                prefixes,
                ..
            } => {
                let r = self
                    .router(router)
                    .ok_or_else(|| format!("unknown router {router:?}"))?;
                if r.kind != RouterKind::Frr {
                    return Err(format!(
                        "expect-router-received reads FRR; {router} is not FRR"
                    ));
                }
                prefixes.iter().try_for_each(|p| self.check_prefix(p))?;
                self.check_via(from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::{parse, GOOD};
    use crate::scenario::step_kinds::Measure;

    #[test]
    fn unknown_container_names_the_line() {
        let bad = GOOD.replace("to = [\"d\", \"h2\"]", "to = [\"zz\"]");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains(":32:") && e.contains("\"zz\""), "{e}");
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
        assert_eq!(s.steps[2].kind.measure, Measure::Expectation);
        let e = parse(&src.replace("\"c1\", {", "\"zz\", {"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zz"), "{e}");
        let e = parse(&src.replace("via = \"h1\"", "via = \"nowhere\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere"), "{e}");
    }
}
