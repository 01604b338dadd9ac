//! `route-events-start` / `route-events-stop`: a route's kernel events in
//! a host's or router's namespace, read from its route log (a netlink
//! subscription open from before the first step, `probe::routes`), so
//! that "never withdrawn" (a restart that must not withdraw and re-add) is
//! checked by something that sees a withdrawal however briefly it lasts.
//!
//! In: the step's namespace (host: the driver's tag; router: any
//! protocol), prefix and bound. Out: on stop, the events in the detail,
//! or the error listing them when there were too many deletions, or
//! saying that notifications were lost. The open recordings are the
//! runner's (`recordings`); the log keeps their events until they stop.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;

use super::{Recording, Runner};
use crate::probe::routes::Change;
use crate::scenario::Action;

impl Runner<'_> {
    pub(super) fn route_events(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::RouteEventsStart {
                id,
                host,
                router,
                prefix,
                family,
            } => {
                if self.recordings.contains_key(id) {
                    bail!("route events {id} are already recorded");
                }
                let dst = self.prefix_of_family(prefix, *family)?;
                let (what, log, ns, protocol) = match (host, router) {
                    (Some(h), _) => (
                        format!("{h}'s tagged route {dst}"),
                        h.clone(),
                        self.w.host(h)?.ns.path(),
                        Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
                    ),
                    (None, Some(r)) => {
                        let rt = self
                            .w
                            .routers
                            .iter()
                            .find(|x| &x.def.name == r)
                            .ok_or_else(|| anyhow!("unknown router {r}"))?;
                        (
                            format!("router {r}'s route {dst}"),
                            r.clone(),
                            rt.ns.path(),
                            None,
                        )
                    }
                    (None, None) => bail!("route-events-start needs a host or a router"),
                };
                if !self.route_logs.contains_key(&log) {
                    bail!("no route events are recorded in {log}'s namespace");
                }
                // Events count from before the look: a route that leaves in
                // between is an event.
                let since = Instant::now();
                let mut k = ipvlan_bgp::kernel::real::Kernel::open_in_netns(&ns)?;
                let fam = match dst {
                    IpNet::V4(_) => ipvlan_bgp::kernel::Family::V4,
                    IpNet::V6(_) => ipvlan_bgp::kernel::Family::V6,
                };
                if !k.routes(fam, protocol)?.iter().any(|r| r.dst == dst) {
                    bail!("{what} is not there: nothing to watch");
                }
                self.recordings.insert(
                    id.clone(),
                    Recording {
                        what,
                        log,
                        dst,
                        protocol,
                        since,
                    },
                );
                Ok(None)
            }
            Action::RouteEventsStop {
                id,
                max_withdrawals,
            } => {
                let r = self
                    .recordings
                    .remove(id)
                    .ok_or_else(|| anyhow!("no route events named {id}"))?;
                let log = self.route_logs.get(&r.log).ok_or_else(|| {
                    anyhow!("no route events are recorded in {}'s namespace", r.log)
                })?;
                let mut evs: Vec<(Instant, bool)> = Vec::new();
                for e in log.since(r.since) {
                    match e.what {
                        Change::Overrun => bail!(
                            "{}: route notifications were lost (ENOBUFS) {:?} after the start: a withdrawal cannot be ruled out",
                            r.what,
                            e.at.saturating_duration_since(r.since)
                        ),
                        Change::Route {
                            dst,
                            protocol,
                            deleted,
                            ..
                        } if dst == r.dst && r.protocol.is_none_or(|p| p == protocol) => {
                            evs.push((e.at, deleted))
                        }
                        _ => {}
                    }
                }
                let deleted = evs.iter().filter(|e| e.1).count() as u64;
                let list: Vec<String> = evs
                    .iter()
                    .map(|(t, del)| {
                        format!(
                            "{} at +{:?}",
                            if *del { "deleted" } else { "added/replaced" },
                            t.saturating_duration_since(r.since)
                        )
                    })
                    .collect();
                let summary = format!(
                    "{} over {:?}: {deleted} deletion(s), {} addition(s)/replacement(s){}{}",
                    r.what,
                    r.since.elapsed(),
                    evs.len() as u64 - deleted,
                    if list.is_empty() { "" } else { ": " },
                    list.join(", ")
                );
                if deleted > *max_withdrawals {
                    bail!("{summary} (at most {max_withdrawals} allowed)");
                }
                self.note = Some(summary);
                Ok(None)
            }
            other => bail!("internal: {other:?} is not a route-events step"),
        }
    }
}
