//! The expectations that no event can date, read by polling: BGP up,
//! container view, best path, rejected, status, log, link, marked links,
//! BGP steady; plus the snapshots (`link-snapshot`, `bgp-snapshot`) they
//! compare. (Routes are `routes.rs`'s, dated by route events; reachability
//! is `reachability.rs`'s, probed every 2 ms.)
//!
//! In: one expectation [`Action`] from the play loop. Out: how long it took
//! to hold (convergence) and, in the runner's `resolution`, how finely the
//! polls knew it; or the error saying what still differs. The comparisons
//! themselves are in `views`, the poll loop in `poll`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::poll::{poll, poll_then_hold, Polled};
use super::views::{
    bounds, count_lines, status_matches, BestPath, ContainerView, ContainerWant, PeerView,
};
use super::Runner;
use crate::scenario::{Action, DaemonKind};

impl Runner<'_> {
    /// Plays an expectation, or a snapshot or probe an expectation compares against.
    pub(super) fn expect(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::WaitBgp { within } => {
                let deadline = self.scale(*within);
                let hosts: Vec<usize> = (0..self.w.hosts.len()).collect();
                let took =
                    self.polled(poll(deadline, || {
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
                    }))?;
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
                let took = self.polled(poll_then_hold(self.scale(*within), None, || {
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
                }))?;
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
                let took = self.polled(poll_then_hold(self.scale(*within), None, || {
                    let rib = self
                        .gobgp_json(host, &["global", "rib", "-a", afi, &prefix.to_string()])
                        .map_err(|e| format!("{e:#}"))?;
                    let best = BestPath::from_rib(&rib, prefix)?;
                    best.check(originator, cluster_list.as_deref())
                        .map_err(|e| format!("{host}'s best path for {prefix}: {e} ({best})"))
                }))?;
                Ok(Some(took))
            }
            Action::ExpectRejected {
                host,
                reason,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let took = self.polled(poll(self.scale(*within), || {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    let n = st.pointer(&format!("/bgp/rejected/{reason}")).and_then(|v| v.as_u64()).unwrap_or(0);
                    if n > 0 { Ok(()) } else { Err(format!("{host}'s driver has not rejected any route for {reason}; rejected so far: {}", st["bgp"]["rejected"])) }
                }))?;
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
                let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
                let mut last = None;
                let check = || -> std::result::Result<(), String> {
                    let st = self.w.driver_status(hi).map_err(|e| format!("{e:#}"))?;
                    last = st.pointer(&pointer).cloned();
                    status_matches(&st, field, want.as_ref(), *at_least, *at_most)
                        .map_err(|e| format!("{host}'s driver status: {e}"))
                };
                let hold = hold.map(|h| self.scale(h));
                let took = self.polled(poll_then_hold(self.scale(*within), hold, check))?;
                self.note = Some(format!(
                    "{field} = {}",
                    last.map_or("(not counted yet)".to_string(), |v| v.to_string())
                ));
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
                let took = self.polled(poll(self.scale(*within), || {
                    let n = count_lines(&log, contains).map_err(|e| format!("{e:#}"))?;
                    bounds(
                        n as f64,
                        at_least.map(|v| v as f64),
                        at_most.map(|v| v as f64),
                    )
                    .map_err(|e| {
                        format!("{} lines of {} contain {contains:?}: {e}", n, log.display())
                    })
                }))?;
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
                let took = self.polled(poll(self.scale(*within), || {
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
                }))?;
                Ok(Some(took))
            }
            Action::ExpectMarkedLinks {
                host,
                at_least,
                at_most,
                within,
            } => {
                let ns = &self.w.host(host)?.ns;
                let took = self.polled(poll(self.scale(*within), || {
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
                }))?;
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
            other => bail!("internal: {other:?} is not an expectation step"),
        }
    }
}

impl Runner<'_> {
    /// Keeps a poll's resolution for the step's report; answers how long
    /// it took.
    pub(super) fn polled<T>(&mut self, p: Result<Polled<T>>) -> Result<Duration> {
        let p = p?;
        self.resolution = Some(p.resolution);
        Ok(p.took)
    }

    /// The hosts an `expect-converged` or route watch checks: those named
    /// (templates expanded), or every Docker host.
    pub(super) fn converged_hosts(&self, hosts: &Option<Vec<String>>) -> Result<Vec<usize>> {
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
