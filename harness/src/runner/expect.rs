//! The expectations: BGP up, reachable/unreachable, matrix, route(s),
//! router routes, container view, best path, rejected, status, log, link,
//! marked links, BGP steady; plus the snapshots (`link-snapshot`,
//! `bgp-snapshot`) and loss probes (`probe-start`, `probe-stop`) they compare.
//!
//! In: one expectation [`Action`] from the play loop. Out: how long it took
//! to hold (convergence), or the error saying what still differs. Owns the
//! poll-then-hold loop; the comparisons themselves are in `views`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Family;

use super::converged::{wait_converged, watch_held, Expected, Readers, Watch};
use super::views::{
    bounds, count_lines, hops_text, status_matches, BestPath, ContainerView, ContainerWant,
    PeerView, SeenRoutes, WantRoute,
};
use super::{Runner, POLL};
use crate::probe::Prober;
use crate::scenario::{Action, DaemonKind, Probe};
use crate::util::eventually;

impl Runner<'_> {
    /// Plays an expectation, or a snapshot or probe an expectation compares against.
    pub(super) fn expect(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::WaitBgp { within } => {
                let deadline = self.scale(*within);
                let hosts: Vec<usize> = (0..self.w.hosts.len()).collect();
                let (_, took) =
                    eventually(deadline, POLL, || {
                        let mut down = Vec::new();
                        for &i in &hosts {
                            match self.w.bgp_sessions(i) {
                                Ok(peers) if peers.is_empty() => {
                                    down.push(format!("{}: no peers yet", self.w.hosts[i].def.name))
                                }
                                Ok(peers) => {
                                    down.extend(peers.iter().filter(|p| !p.1).map(|p| {
                                        format!("{} -> {}", self.w.hosts[i].def.name, p.0)
                                    }))
                                }
                                Err(e) => down.push(format!("{}: {e:#}", self.w.hosts[i].def.name)),
                            }
                            // BFD where the scenario runs it: a failover measured
                            // before BFD is up would measure the hold time.
                            match self.w.bfd_sessions(i) {
                                Ok(peers) => down.extend(peers.iter().filter(|p| !p.1).map(|p| {
                                    format!("{} -> {} BFD", self.w.hosts[i].def.name, p.0)
                                })),
                                Err(e) => down.push(format!("{}: {e:#}", self.w.hosts[i].def.name)),
                            }
                        }
                        for r in self.w.routers.iter().filter(|r| !r.daemons.is_empty()) {
                            match r.bfd_sessions() {
                                Ok(peers) => down.extend(
                                    peers
                                        .iter()
                                        .filter(|p| !p.1)
                                        .map(|p| format!("{} -> {}", r.def.name, p.0)),
                                ),
                                Err(e) => down.push(format!("{}: {e:#}", r.def.name)),
                            }
                            match r.sessions() {
                                Ok(peers) => down.extend(
                                    peers
                                        .iter()
                                        .filter(|p| !p.1)
                                        .map(|p| format!("{} -> {}", r.def.name, p.0)),
                                ),
                                Err(e) => down.push(format!("{}: {e:#}", r.def.name)),
                            }
                        }
                        if down.is_empty() {
                            Ok(())
                        } else {
                            Err(format!("sessions not established: {}", down.join(", ")))
                        }
                    })
                    .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectRouterRoute {
                router,
                prefix,
                present,
                via,
                within,
                hold,
                family,
            } => {
                let ri = self
                    .w
                    .routers
                    .iter()
                    .position(|r| &r.def.name == router)
                    .ok_or_else(|| anyhow!("unknown router {router}"))?;
                let prefix = self.prefix_of_family(prefix, *family)?;
                let fam = family_of(&prefix);
                let via_name = via.clone();
                let via = via
                    .as_deref()
                    .map(|v| self.resolve_addr_of(router, v, fam))
                    .transpose()?;
                // A router named as next hop of an IPv6 route also matches
                // by its link-local addresses: FRR installs the link-local
                // next hop a peer sends beside its global one.
                let also: Vec<IpAddr> = match (
                    fam,
                    self.w
                        .routers
                        .iter()
                        .find(|r| Some(&r.def.name) == via_name.as_ref()),
                ) {
                    (crate::scenario::Family::Ipv6, Some(r)) => r.link_locals(),
                    _ => Vec::new(),
                };
                let present = *present;
                let hold = self.hold_for(present, *hold);
                let took = poll_then_hold(self.scale(*within), hold, || {
                    let routes = self.w.routers[ri].routes().map_err(|e| format!("{e:#}"))?;
                    match (present, routes.get(&prefix)) {
                        (true, None) => Err(format!("{router} has no route for {prefix}")),
                        (true, Some(hops)) => match via {
                            Some(v)
                                if !hops.contains(&v) && !also.iter().any(|a| hops.contains(a)) =>
                            {
                                Err(format!(
                                    "{router} routes {prefix} via {hops:?}, expected {v}"
                                ))
                            }
                            _ => Ok(()),
                        },
                        (false, None) => Ok(()),
                        (false, Some(h)) => {
                            Err(format!("{router} still routes {prefix} via {h:?}"))
                        }
                    }
                })?;
                Ok(Some(took))
            }
            Action::ExpectReachable {
                from,
                to,
                within,
                probe,
                family,
            } => {
                let pairs = self.pairs_of(from, to, *family)?;
                let deadline = self.scale(*within);
                let mut ok = vec![false; pairs.len()];
                let (_, took) = eventually(deadline, POLL, || {
                    let todo: Vec<usize> = (0..pairs.len()).filter(|i| !ok[*i]).collect();
                    let sub: Vec<_> = todo.iter().map(|i| pairs[*i].clone()).collect();
                    for (i, r) in todo.iter().zip(self.probe(&sub, *probe)?) {
                        ok[*i] = r;
                    }
                    self.record_reach(&pairs, &ok);
                    let missing: Vec<String> = pairs
                        .iter()
                        .zip(&ok)
                        .filter(|(_, ok)| !**ok)
                        .map(|((a, b), _)| format!("{} -> {} ({})", a.label, b.label, b.addr))
                        .collect();
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} of {} pairs unreachable: {}",
                            missing.len(),
                            pairs.len(),
                            missing.join(", ")
                        ))
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectUnreachable {
                from,
                to,
                within,
                hold,
                family,
            } => {
                let pairs = self.pairs_of(from, to, *family)?;
                let check = |me: &mut Self| -> std::result::Result<(), String> {
                    let got = me.probe(&pairs, Probe::Icmp)?;
                    let reached: Vec<String> = pairs
                        .iter()
                        .zip(got)
                        .filter(|(_, r)| *r)
                        .map(|((a, b), _)| format!("{} -> {}", a.label, b.label))
                        .collect();
                    if reached.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("still reachable: {}", reached.join(", ")))
                    }
                };
                let deadline = self.scale(*within);
                let (_, took) =
                    eventually(deadline, POLL, || check(self)).map_err(|e| anyhow!(e))?;
                if let Some(h) = hold {
                    let until = Instant::now() + self.scale(*h);
                    while Instant::now() < until {
                        check(self)
                            .map_err(|e| anyhow!("became reachable during the hold: {e}"))?;
                        std::thread::sleep(POLL);
                    }
                }
                Ok(Some(took))
            }
            Action::ExpectMatrix {
                members,
                within,
                family,
            } => {
                let members: Vec<String> = match members {
                    Some(m) => self.s.expand(m),
                    None => self.running.keys().cloned().collect(),
                };
                if members.len() < 2 {
                    bail!("a matrix needs at least two running members");
                }
                let pairs = self.pairs_of(&members, &members, *family)?;
                let mut ok = vec![false; pairs.len()];
                // Pairs that were reachable in some round: said so when they fail later.
                let mut once = vec![false; pairs.len()];
                let unreachable = |ok: &[bool], once: &[bool]| -> Vec<String> {
                    pairs
                        .iter()
                        .zip(ok.iter().zip(once))
                        .filter(|(_, (ok, _))| !**ok)
                        .map(|((a, b), (_, once))| {
                            let was = if *once { ", reachable earlier" } else { "" };
                            format!("{} -> {} ({}{was})", a.label, b.label, b.addr)
                        })
                        .collect()
                };
                let took = poll_then_hold(self.scale(*within), None, || {
                    // Pairs not yet seen reachable first (cheap while converging)...
                    let todo: Vec<usize> = (0..pairs.len()).filter(|i| !ok[*i]).collect();
                    let sub: Vec<_> = todo.iter().map(|i| pairs[*i].clone()).collect();
                    for (i, r) in todo.iter().zip(self.probe(&sub, Probe::Icmp)?) {
                        ok[*i] = r;
                        once[*i] |= r;
                    }
                    self.record_reach(&pairs, &ok);
                    let missing = unreachable(&ok, &once);
                    if !missing.is_empty() {
                        return Err(format!(
                            "{} of {} pairs unreachable: {}",
                            missing.len(),
                            pairs.len(),
                            missing.join(", ")
                        ));
                    }
                    // ...then every pair again in one round: a pair that was
                    // reachable once and broke since does not count.
                    ok = self.probe(&pairs, Probe::Icmp)?;
                    self.record_reach(&pairs, &ok);
                    let lost = unreachable(&ok, &once);
                    if lost.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "every pair was reachable once, but in the final round (all pairs at once) {} of {} were not: {}",
                            lost.len(),
                            pairs.len(),
                            lost.join(", ")
                        ))
                    }
                })?;
                Ok(Some(took))
            }
            Action::ExpectRoute {
                host,
                prefix,
                present,
                via,
                protocol,
                within,
                hold,
                family,
            } => {
                let proto = match protocol {
                    Some(p) => crate::scenario::route_protocol(p).map_err(|e| anyhow!(e))?,
                    None => ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL,
                };
                let whose = match protocol.as_deref() {
                    None | Some("ours") => "tagged".to_string(),
                    Some(p) => format!("proto {p}"),
                };
                let hi = self.w.host_index(host)?;
                let dst = self.prefix_of_family(prefix, *family)?;
                let want = WantRoute {
                    dst,
                    via: via
                        .as_deref()
                        .map(|v| self.resolve_addr_of(host, v, family_of(&dst)))
                        .transpose()?,
                };
                let ns = self.w.hosts[hi].ns.path();
                let present = *present;
                let kfam = kernel_family(&dst);
                let check = || -> std::result::Result<(), String> {
                    let mut k = Kernel::open_in_netns(&ns).map_err(|e| e.to_string())?;
                    let all = k.routes(kfam, None).map_err(|e| e.to_string())?;
                    let (routes, others): (Vec<_>, Vec<_>) =
                        all.into_iter().partition(|r| r.protocol == proto);
                    let seen = SeenRoutes::from_kernel(&routes);
                    if present {
                        seen.compare(std::slice::from_ref(&want), false).map_err(|d| {
                            let others: Vec<String> = others
                                .iter()
                                .filter(|r| r.dst == want.dst)
                                .map(|r| format!("{} via {:?} proto {}", r.dst, r.via, r.protocol))
                                .collect();
                            format!(
                                "{whose} routes on {host} differ: {d} (other routes for {}: [{}]); {whose} routes: {seen}",
                                want.dst,
                                others.join(", "),
                            )
                        })
                    } else {
                        match seen.0.get(&want.dst) {
                            None => Ok(()),
                            Some(hops) => Err(format!(
                                "{whose} route {} via {} is on {host}",
                                want.dst,
                                hops_text(hops)
                            )),
                        }
                    }
                };
                let hold = self.hold_for(present, *hold);
                let took = poll_then_hold(self.scale(*within), hold, check)?;
                Ok(Some(took))
            }
            Action::ExpectContainer {
                container,
                address,
                default_route,
                gateway,
                host_route,
                within,
            } => {
                let mut views = Vec::new();
                for name in self.s.expand(std::slice::from_ref(container)) {
                    let c = self
                        .running
                        .get(&name)
                        .ok_or_else(|| anyhow!("{name} is not running"))?;
                    let host = &self.s.hosts[c.host].name;
                    let net = self.network_def(&c.network)?;
                    // Docker's IPAM gives each subnet's first address to the gateway.
                    let mut fams: Vec<(IpAddr, IpAddr)> = Vec::new();
                    if let (Some(a), Some(n)) = (c.address, net.subnets.get(host)) {
                        fams.push((a.into(), Ipv4Addr::from(u32::from(n.network()) + 1).into()));
                    }
                    if let (Some(a), Some(n)) = (c.address6, net.subnets6.get(host)) {
                        fams.push((a.into(), Ipv6Addr::from(u128::from(n.network()) + 1).into()));
                    }
                    if fams.is_empty() {
                        bail!("{name} has no address on network {}", c.network);
                    }
                    views.push((name, c.netns.clone(), fams));
                }
                let want = ContainerWant {
                    address: *address,
                    default_route: *default_route,
                    gateway: *gateway,
                    host_route: *host_route,
                };
                let took = poll_then_hold(self.scale(*within), None, || {
                    let mut wrong = Vec::new();
                    for (name, netns, fams) in &views {
                        let seen =
                            ContainerView::read(netns).map_err(|e| format!("{name}: {e:#}"))?;
                        if let Err(e) = want.check(&seen, fams) {
                            wrong.push(format!("{name}: {e}; it has {seen}"));
                        }
                    }
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(wrong.join("; "))
                    }
                })?;
                Ok(Some(took))
            }
            Action::ExpectBgpPath {
                host,
                prefix,
                originator,
                cluster_list,
                within,
                family,
            } => {
                let prefix = self.prefix_of_family(prefix, *family)?;
                let originator = originator
                    .as_deref()
                    .map(|v| self.resolve_addr(host, v))
                    .transpose()?;
                let cluster_list = cluster_list
                    .as_ref()
                    .map(|l| {
                        l.iter()
                            .map(|v| self.resolve_addr(host, v))
                            .collect::<Result<Vec<_>>>()
                    })
                    .transpose()?;
                let afi = if prefix.addr().is_ipv6() {
                    "ipv6"
                } else {
                    "ipv4"
                };
                let took = poll_then_hold(self.scale(*within), None, || {
                    let rib = self
                        .gobgp_json(host, &["global", "rib", "-a", afi, &prefix.to_string()])
                        .map_err(|e| format!("{e:#}"))?;
                    let best = BestPath::from_rib(&rib, prefix)?;
                    best.check(originator, cluster_list.as_deref())
                        .map_err(|e| format!("{host}'s best path for {prefix}: {e} ({best})"))
                })?;
                Ok(Some(took))
            }
            Action::ExpectRoutes {
                host,
                routes,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let mut want = Vec::new();
                for r in routes {
                    // A name as next hop means its address of the prefix's family.
                    let via_of = |dst: &IpNet| {
                        r.via()
                            .map(|v| self.resolve_addr_of(host, v, family_of(dst)))
                            .transpose()
                    };
                    let p = r.prefix();
                    if p.parse::<IpNet>().is_err() && self.s.container(p).is_none() {
                        // A group: its members running now (stopped ones are withdrawn).
                        for m in self.s.expand(&[p.to_string()]) {
                            if let Some(c) = self.running.get(&m) {
                                for dst in c.host_prefixes() {
                                    want.push(WantRoute {
                                        dst,
                                        via: via_of(&dst)?,
                                    });
                                }
                            }
                        }
                    } else if let Some(c) = self.running.get(p) {
                        // A running container: its /32 and its /128, as it has them.
                        for dst in c.host_prefixes() {
                            want.push(WantRoute {
                                dst,
                                via: via_of(&dst)?,
                            });
                        }
                    } else {
                        let dst = self.prefix_of(p)?;
                        want.push(WantRoute {
                            dst,
                            via: via_of(&dst)?,
                        });
                    }
                }
                let ns = self.w.hosts[hi].ns.path();
                let took = poll_then_hold(self.scale(*within), None, || {
                    let mut k = Kernel::open_in_netns(&ns).map_err(|e| e.to_string())?;
                    let tag = Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL);
                    let mut routes = k.routes(Family::V4, tag).map_err(|e| e.to_string())?;
                    routes.extend(k.routes(Family::V6, tag).map_err(|e| e.to_string())?);
                    let seen = SeenRoutes::from_kernel(&routes);
                    seen.compare(&want, true).map_err(|d| {
                        format!(
                            "{host}'s tagged routes differ from the {} expected: {d}; seen: {seen}",
                            want.len()
                        )
                    })
                })?;
                Ok(Some(took))
            }
            Action::RouteWatchStart { id, hosts } => {
                if self.watches.contains_key(id) {
                    bail!("route watch {id} is already running");
                }
                let idx = self.converged_hosts(hosts)?;
                let e = Expected::new(&self.w, &idx, self.running.values())?;
                let readers = Readers::open(&self.w, &e)?;
                self.note = Some(format!(
                    "watching {} routes on {} hosts",
                    e.total(),
                    idx.len()
                ));
                self.watches.insert(id.clone(), Watch::start(readers, e));
                Ok(None)
            }
            Action::RouteWatchStop { id, max_lost } => {
                let w = self
                    .watches
                    .remove(id)
                    .ok_or_else(|| anyhow!("no route watch {id} was started"))?;
                let (l, text) = w.stop()?;
                if l.count() as u64 > *max_lost || !l.other.is_empty() {
                    bail!(
                        "route watch {id}: {} host-route pairs went missing in {} rounds over every host (at most {max_lost} allowed):\n  {text}",
                        l.count(),
                        l.rounds
                    );
                }
                self.note = Some(format!(
                    "route watch {id}: {} routes lost in {} rounds over every host",
                    l.count(),
                    l.rounds
                ));
                Ok(None)
            }
            Action::ExpectConverged {
                hosts,
                within,
                hold,
            } => {
                let t = Instant::now();
                let idx = self.converged_hosts(hosts)?;
                let e = Expected::new(&self.w, &idx, self.running.values())?;
                let mut readers = Readers::open(&self.w, &e)?;
                let c = wait_converged(&mut readers, &e, self.scale(*within))?;
                let slowest = c
                    .per_host
                    .iter()
                    .max_by_key(|p| p.1)
                    .map(|p| p.0.clone())
                    .unwrap_or_default();
                let mut note = format!(
                    "{} hosts hold all {} routes ({} each on average; the last: {slowest})",
                    idx.len(),
                    e.total(),
                    e.total() / idx.len().max(1)
                );
                if let Some(wave) = self.wave {
                    note.push_str(&format!(
                        "; {:.3}s after the first and {:.3}s after the last of {} container {}s",
                        c.at.duration_since(wave.first).as_secs_f64(),
                        c.at.saturating_duration_since(wave.last).as_secs_f64(),
                        wave.count,
                        wave.what
                    ));
                }
                if let Some(h) = hold {
                    let h = self.scale(*h);
                    let l = watch_held(&mut readers, &e, h);
                    if l.count() > 0 || !l.other.is_empty() {
                        bail!(
                            "{note}; then, within the {h:?} hold ({} rounds over every host), {} routes went missing:\n  {}",
                            l.rounds,
                            l.count(),
                            l.describe(&e)
                        );
                    }
                    note.push_str(&format!(
                        "; held for {h:?} ({} rounds over every host, 0 routes lost)",
                        l.rounds
                    ));
                }
                self.note = Some(note);
                Ok(Some(c.at.saturating_duration_since(t)))
            }
            Action::ExpectRejected {
                host,
                reason,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    let n = st.pointer(&format!("/bgp/rejected/{reason}")).and_then(|v| v.as_u64()).unwrap_or(0);
                    if n > 0 { Ok(()) } else { Err(format!("{host}'s driver has not rejected any route for {reason}; rejected so far: {}", st["bgp"]["rejected"])) }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectStatus {
                host,
                field,
                equals,
                at_least,
                at_most,
                within,
                hold,
            } => {
                let hi = self.w.host_index(host)?;
                let want = equals
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .context("equals")?;
                let check = || -> std::result::Result<(), String> {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    status_matches(&st, field, want.as_ref(), *at_least, *at_most)
                        .map_err(|e| format!("{host}'s driver status: {e}"))
                };
                let hold = hold.map(|h| self.scale(h));
                let took = poll_then_hold(self.scale(*within), hold, check)?;
                Ok(Some(took))
            }
            Action::ExpectLog {
                host,
                daemon,
                contains,
                at_least,
                at_most,
                within,
            } => {
                let h = self.w.host(host)?;
                let log = match daemon {
                    DaemonKind::Gobgpd => h.gobgpd.log.clone(),
                    DaemonKind::Driver2 => h.driver2.log.clone(),
                    _ => h.driver.log.clone(),
                };
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let n = count_lines(&log, contains).map_err(|e| format!("{e:#}"))?;
                    bounds(
                        n as f64,
                        at_least.map(|v| v as f64),
                        at_most.map(|v| v as f64),
                    )
                    .map_err(|e| {
                        format!("{} lines of {} contain {contains:?}: {e}", n, log.display())
                    })
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::LinkSnapshot { id, host, links } => {
                let all = crate::probe::links::list(&self.w.host(host)?.ns)?;
                let mut snap = BTreeMap::new();
                for name in links {
                    let l = all
                        .get(name)
                        .ok_or_else(|| anyhow!("{host} has no link {name} to remember"))?;
                    snap.insert(name.clone(), l.clone());
                }
                self.link_snaps.insert(id.clone(), (host.clone(), snap));
                Ok(None)
            }
            Action::ExpectLink {
                host,
                links,
                present,
                kind,
                alias_prefix,
                unchanged_since,
                within,
            } => {
                let snap = match unchanged_since {
                    Some(id) => {
                        let (h, snap) = self
                            .link_snaps
                            .get(id)
                            .ok_or_else(|| anyhow!("no link snapshot named {id}"))?;
                        if h != host {
                            bail!("link snapshot {id} was taken on {h}, not {host}");
                        }
                        Some(snap.clone())
                    }
                    None => None,
                };
                let ns = &self.w.host(host)?.ns;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let all = crate::probe::links::list(ns).map_err(|e| format!("{e:#}"))?;
                    let mut wrong = Vec::new();
                    for name in links {
                        match (all.get(name), present) {
                            (None, true) => wrong.push(format!("{name} is missing")),
                            (Some(l), false) => wrong.push(format!(
                                "{name} exists ({} {:?})",
                                l.kind.as_deref().unwrap_or("?"),
                                l.alias
                            )),
                            (None, false) => {}
                            (Some(l), true) => {
                                if let Some(k) = kind {
                                    if l.kind.as_deref() != Some(k.as_str()) {
                                        wrong.push(format!("{name} is a {:?}, not {k}", l.kind));
                                    }
                                }
                                if let Some(p) = alias_prefix {
                                    if !l
                                        .alias
                                        .as_deref()
                                        .is_some_and(|a| a.starts_with(p.as_str()))
                                    {
                                        wrong.push(format!(
                                            "{name}'s alias is {:?}, expected {p}...",
                                            l.alias
                                        ));
                                    }
                                }
                                if let Some(before) = snap.as_ref().and_then(|s| s.get(name)) {
                                    if let Some(d) = before.diff(l) {
                                        wrong.push(format!("{name} changed: {d}"));
                                    }
                                }
                            }
                        }
                    }
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("on {host}: {}", wrong.join("; ")))
                    }
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::ExpectMarkedLinks {
                host,
                at_least,
                at_most,
                within,
            } => {
                let ns = &self.w.host(host)?.ns;
                let (_, took) = eventually(self.scale(*within), POLL, || {
                    let all = crate::probe::links::list(ns).map_err(|e| format!("{e:#}"))?;
                    let n = all.values().filter(|l| l.marked()).count();
                    bounds(
                        n as f64,
                        at_least.map(|v| v as f64),
                        at_most.map(|v| v as f64),
                    )
                    .map_err(|e| {
                        let seen: Vec<String> = all
                            .values()
                            .map(|l| {
                                format!(
                                    "{} {} alias={:?}",
                                    l.name,
                                    l.kind.as_deref().unwrap_or("-"),
                                    l.alias
                                )
                            })
                            .collect();
                        format!(
                            "{n} links on {host} carry the mark {}: {e}; links: {}",
                            crate::probe::links::MARK_PREFIX,
                            seen.join(", ")
                        )
                    })
                })
                .map_err(|e| anyhow!(e))?;
                Ok(Some(took))
            }
            Action::BgpSnapshot { id, host } => {
                let hi = self.w.host_index(host)?;
                let peers = PeerView::all(&self.w.gobgp_neighbors(hi)?)?;
                if let Some(p) = peers.iter().find(|p| !p.established) {
                    bail!("{host}'s session to {} is not established", p.address);
                }
                self.bgp_snaps.insert(id.clone(), (host.clone(), peers));
                Ok(None)
            }
            Action::ExpectBgpSteady { host, since } => {
                let hi = self.w.host_index(host)?;
                let (h, before) = self
                    .bgp_snaps
                    .get(since)
                    .ok_or_else(|| anyhow!("no BGP snapshot named {since}"))?;
                if h != host {
                    bail!("BGP snapshot {since} was taken on {h}, not {host}");
                }
                let now = PeerView::all(&self.w.gobgp_neighbors(hi)?)?;
                let mut wrong = Vec::new();
                for b in before {
                    match now.iter().find(|n| n.address == b.address) {
                        None => wrong.push(format!("session to {} is gone", b.address)),
                        Some(n) => {
                            if let Some(d) = b.diff(n) {
                                wrong.push(format!("session to {}: {d}", b.address));
                            }
                        }
                    }
                }
                if !wrong.is_empty() {
                    bail!(
                        "{host}'s BGP sessions did not stay steady: {}",
                        wrong.join("; ")
                    );
                }
                Ok(None)
            }
            Action::ProbeStart {
                id: name,
                from,
                to,
                interval,
                family,
            } => {
                if self.probers.contains_key(name) {
                    bail!("probe {name} is already running");
                }
                let pairs = self.pairs_of(from, to, *family)?;
                let p = Prober::start(pairs, interval.0)?;
                self.probers.insert(name.clone(), p);
                Ok(None)
            }
            Action::ProbeStop {
                id: name,
                max_loss,
                max_outage,
            } => {
                let p = self
                    .probers
                    .remove(name)
                    .ok_or_else(|| anyhow!("no probe named {name}"))?;
                let interval = p.interval;
                let stats = p.stop();
                let lost: u64 = stats.iter().map(|s| s.sent - s.received.min(s.sent)).sum();
                let sent: u64 = stats.iter().map(|s| s.sent).sum();
                let outage = |s: &crate::probe::PairStats| s.longest_outage;
                let longest = stats.iter().map(outage).max().unwrap_or_default();
                let last_event = self.last_event;
                let detail: Vec<String> = stats
                    .iter()
                    .map(|s| {
                        // Where the outage sits against the last event (a
                        // negative offset: it began before that event).
                        let began = s.outage_began.map(|b| {
                            if b >= last_event {
                                format!(", began {:?} after the last event", b - last_event)
                            } else {
                                format!(", began {:?} before the last event", last_event - b)
                            }
                        });
                        format!(
                            "{}->{}: {}/{} answered, longest outage {:?} ({} probes lost in a row, every {:?}){}",
                            s.from,
                            s.to,
                            s.received,
                            s.sent,
                            outage(s),
                            s.longest_gap,
                            interval,
                            began.unwrap_or_default()
                        )
                    })
                    .collect();
                eprintln!(
                    "[{}] probe {name}: {sent} sent, {lost} lost, longest outage {longest:?}; {}",
                    self.s.name,
                    detail.join("; ")
                );
                if sent == 0 {
                    bail!("probe {name} sent nothing");
                }
                if let Some(limit) = max_outage {
                    if longest > self.scale(*limit) {
                        bail!(
                            "probe {name}: longest outage {longest:?} exceeds {:?}: {}",
                            self.scale(*limit),
                            detail.join("; ")
                        );
                    }
                }
                // Without an outage limit, no loss is allowed unless said otherwise.
                let allowed = max_loss.unwrap_or(if max_outage.is_some() { u64::MAX } else { 0 });
                if lost > allowed {
                    bail!(
                        "probe {name} lost {lost} of {sent} probes (allowed {allowed}): {}",
                        detail.join("; ")
                    );
                }
                // The outage is the convergence this probe measured.
                Ok(Some(longest))
            }
            other => bail!("internal: {other:?} is not an expectation step"),
        }
    }
}

impl Runner<'_> {
    /// The hosts an `expect-converged` or route watch checks: those named
    /// (templates expanded), or every Docker host.
    fn converged_hosts(&self, hosts: &Option<Vec<String>>) -> Result<Vec<usize>> {
        match hosts {
            Some(list) => self
                .s
                .expand_hosts(list)
                .map_err(|e| anyhow!(e))?
                .iter()
                .map(|h| self.w.host_index(h))
                .collect(),
            None => Ok((0..self.w.hosts.len())
                .filter(|&i| self.w.hosts[i].runs_driver())
                .collect()),
        }
    }
}

/// Polls `check` until it holds (at most `within`), then, with a `hold`,
/// keeps checking that it still holds for so long. Returns how long it took
/// to hold first.
/// The scenario family of a prefix.
fn family_of(p: &IpNet) -> crate::scenario::Family {
    match p {
        IpNet::V4(_) => crate::scenario::Family::Ipv4,
        IpNet::V6(_) => crate::scenario::Family::Ipv6,
    }
}

/// The kernel's family of a prefix (which table to dump).
fn kernel_family(p: &IpNet) -> Family {
    match p {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn poll_then_hold(
    within: Duration,
    hold: Option<Duration>,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> Result<Duration> {
    let (_, took) = eventually(within, POLL, &mut check).map_err(|e| anyhow!(e))?;
    if let Some(h) = hold {
        let until = Instant::now() + h;
        while Instant::now() < until {
            check().map_err(|e| {
                anyhow!("held for {took:?}, then changed within the {h:?} hold: {e}")
            })?;
            std::thread::sleep(POLL);
        }
    }
    Ok(took)
}
