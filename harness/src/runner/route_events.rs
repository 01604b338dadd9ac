//! `route-events-start` / `route-events-stop`: a route's kernel events in
//! a host's or router's namespace, recorded from a netlink subscription, so
//! that "never withdrawn" (a restart that must not withdraw and re-add) is
//! checked by something that sees a withdrawal however briefly it lasts.
//!
//! In: the step's namespace (host: the driver's tag; router: any
//! protocol), prefix and bound. Out: on stop, the events in the detail,
//! or the error listing them when there were too many deletions. The open
//! recordings are the runner's (`recordings`).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;

use super::Runner;
use crate::probe::{Recording, RouteEvents};
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
                let (what, ns, proto) = match (host, router) {
                    (Some(h), _) => (
                        format!("{h}'s tagged route {dst}"),
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
                        (format!("router {r}'s route {dst}"), rt.ns.path(), None)
                    }
                    (None, None) => bail!("route-events-start needs a host or a router"),
                };
                // Subscribe first, then look: a route that leaves in between is an event.
                let events = RouteEvents::open(&ns, proto)?;
                let mut k = ipvlan_bgp::kernel::real::Kernel::open_in_netns(&ns)?;
                let fam = match dst {
                    IpNet::V4(_) => ipvlan_bgp::kernel::Family::V4,
                    IpNet::V6(_) => ipvlan_bgp::kernel::Family::V6,
                };
                if !k.routes(fam, proto)?.iter().any(|r| r.dst == dst) {
                    bail!("{what} is not there: nothing to watch");
                }
                self.recordings.insert(
                    id.clone(),
                    Recording {
                        what,
                        dst,
                        since: Instant::now(),
                        events,
                    },
                );
                Ok(None)
            }
            Action::RouteEventsStop {
                id,
                max_withdrawals,
            } => {
                let mut r = self
                    .recordings
                    .remove(id)
                    .ok_or_else(|| anyhow!("no route events named {id}"))?;
                let evs: Vec<(Instant, bool)> = r
                    .events
                    .drain()?
                    .into_iter()
                    .filter(|e| e.1 == r.dst)
                    .map(|e| (e.0, e.2))
                    .collect();
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
