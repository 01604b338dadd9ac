//! `start-probed-from-route`: a container starts while a container on
//! another host waits for its route, and pings it from the route's arrival
//! (its netlink event in that host's namespace, not a poll of the table)
//! every 2 ms: the first echo must be answered. What a client that sends
//! as soon as it learns the route sees; it fails when the route is
//! announced before the container can answer (the address not configured
//! yet, the serving host's neighbour entry failing).
//!
//! In: the container to start, the prober (`from`, running, on another
//! host), the family and the bound. Out: the container running, the figure
//! (route → first answer) in the log, or the error saying how many echoes
//! were lost after the route arrived.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;

use super::Runner;
use crate::engine::Subnets;
use crate::probe::from_route::{lost_after_route, probe_from_route};
use crate::probe::{Pinger, RouteEvents};
use crate::scenario::Family;
use crate::util::Dur;

impl Runner<'_> {
    pub(super) fn start_probed_from_route(
        &mut self,
        name: &str,
        from: &str,
        family: Option<Family>,
        within: Dur,
    ) -> Result<Option<Duration>> {
        let family = family.unwrap_or_default();
        if self.running.contains_key(name) {
            bail!("{name} is already running");
        }
        let prober = self
            .running
            .get(from)
            .ok_or_else(|| anyhow!("{from} is not running (start it first)"))?
            .clone();
        let def = self
            .s
            .container(name)
            .ok_or_else(|| anyhow!("unknown container {name}"))?
            .clone();
        let host = self.w.host_index(&def.host)?;
        if host == prober.host {
            bail!("{from} is on {name}'s host: it must probe from another host");
        }
        let subnets = Subnets::of(&self.network_def(&def.network)?, &def.host);
        let pool: IpNet = match family {
            Family::Ipv4 => subnets.v4.map(IpNet::V4),
            Family::Ipv6 => subnets.v6.map(IpNet::V6),
        }
        .ok_or_else(|| anyhow!("{name}'s network has no {family:?} subnet on {}", def.host))?;
        let bound = self.scale(within);
        // Both open before the start: no event, no answer, slips by.
        let mut events = RouteEvents::open(&self.w.hosts[prober.host].ns.path(), None)
            .context("subscribe to the prober host's route events")?;
        let mut pinger = match family {
            Family::Ipv4 => Pinger::open(&prober.netns),
            Family::Ipv6 => Pinger::open6(&prober.netns),
        }?;
        let t0 = Instant::now();
        let (started, seen) = std::thread::scope(|s| {
            let probe = s.spawn(|| probe_from_route(&mut events, &mut pinger, pool, t0, bound));
            let started = self.start_one(name);
            let seen = probe
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the probe thread panicked")));
            (started, seen)
        });
        let c = started?;
        let addr = c.addr_of(family)?;
        self.running.insert(name.to_string(), c);
        let seen = seen.with_context(|| format!("{from} waiting for {name}'s route"))?;
        if seen.route.addr() != addr {
            bail!(
                "the first route to arrive in {pool} was {}, not {name}'s {addr}",
                seen.route
            );
        }
        let what = format!("{from} → {name} ({addr})");
        match seen.to_answer() {
            Some(took) if seen.first_echo_answered() => {
                eprintln!(
                    "[{}] {what}: route on {from}'s host {:.1} ms after the start; the first echo after it answered in {:.1} ms (0 lost)",
                    self.s.name,
                    seen.route_at.saturating_duration_since(t0).as_secs_f64() * 1e3,
                    took.as_secs_f64() * 1e3
                );
                Ok(Some(took))
            }
            _ => Err(lost_after_route(&what, &seen)),
        }
    }
}
