//! `expect-withdrawn`: a prefix leaves every other host, timed from the
//! last event (a host frozen, cut off or dead): what a failover claims.
//!
//! In: the step's prefix, hosts, deadline and hold; the runner's last
//! event. Out: the time from that event until the last host lost the
//! route (polled on every host together every 10 ms, a kernel handle per
//! host opened once), each host's own time in the step's detail; or the
//! error naming the hosts that still hold it, and how. Owns nothing.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Family;

use super::Runner;
use crate::scenario::Action;

/// How often every host's routes are read: the resolution of the step's time.
const FAST_POLL: Duration = Duration::from_millis(10);

impl Runner<'_> {
    pub(super) fn expect_withdrawn(&mut self, a: &Action) -> Result<Option<Duration>> {
        let Action::ExpectWithdrawn {
            prefix,
            hosts,
            within,
            hold,
            family,
        } = a
        else {
            bail!("internal: {a:?} is not expect-withdrawn");
        };
        let dst = self.prefix_of_family(prefix, *family)?;
        let own = self.s.container(prefix).map(|c| c.host.clone());
        let names: Vec<String> = match hosts {
            Some(list) => self.s.expand_hosts(list).map_err(|e| anyhow!(e))?,
            None => self
                .w
                .hosts
                .iter()
                .filter(|h| h.runs_driver() && Some(&h.def.name) != own.as_ref())
                .map(|h| h.def.name.clone())
                .collect(),
        };
        if names.is_empty() {
            bail!("no host to check: {prefix} runs on the only Docker host");
        }
        let kfam = match dst {
            ipnet::IpNet::V4(_) => Family::V4,
            ipnet::IpNet::V6(_) => Family::V6,
        };
        let tag = ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL;
        let mut kernels = Vec::new();
        for n in &names {
            let h = self.w.host(n)?;
            kernels.push((n.clone(), Kernel::open_in_netns(&h.ns.path())?));
        }
        // The route's next hops on a host, if it still has it.
        let held = |k: &mut Kernel| -> Result<Option<String>> {
            Ok(k.routes(kfam, Some(tag))?
                .into_iter()
                .filter(|r| r.dst == dst)
                .map(|r| format!("{:?}", r.via))
                .reduce(|a, b| format!("{a}, {b}")))
        };
        let since = self.action.end;
        let deadline = since + self.scale(*within);
        let mut gone: Vec<Option<Instant>> = vec![None; kernels.len()];
        loop {
            for (i, (_, k)) in kernels.iter_mut().enumerate() {
                if gone[i].is_none() && held(k)?.is_none() {
                    gone[i] = Some(Instant::now());
                }
            }
            if gone.iter().all(Option::is_some) {
                break;
            }
            if Instant::now() >= deadline {
                let mut still = Vec::new();
                for (i, (n, k)) in kernels.iter_mut().enumerate() {
                    if gone[i].is_none() {
                        still.push(format!(
                            "{n} (via {})",
                            held(k)?.unwrap_or_else(|| "?".into())
                        ));
                    }
                }
                bail!(
                    "{dst} still on {} {:?} after the last event (limit {:?}); gone from: {}",
                    still.join(", "),
                    since.elapsed(),
                    self.scale(*within),
                    self.times(&names, &gone, since)
                );
            }
            std::thread::sleep(FAST_POLL);
        }
        let last = gone.iter().flatten().max().copied().unwrap_or(since);
        let took = last.saturating_duration_since(since);
        let hold = self.hold_for(false, *hold).unwrap_or_default();
        let until = Instant::now() + hold;
        while Instant::now() < until {
            for (n, k) in kernels.iter_mut() {
                if let Some(via) = held(k)? {
                    bail!("{dst} left every host {took:?} after the last event, then came back on {n} (via {via}) within the {hold:?} hold");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.note = Some(format!(
            "{dst} gone from {} (read every {FAST_POLL:?}; absent for {hold:?} after)",
            self.times(&names, &gone, since)
        ));
        Ok(Some(took))
    }

    /// "h1 after 812ms, h3 after 905ms" (hosts not gone yet: "not yet").
    fn times(&self, names: &[String], gone: &[Option<Instant>], since: Instant) -> String {
        names
            .iter()
            .zip(gone)
            .map(|(n, g)| match g {
                Some(t) => format!("{n} after {:?}", t.saturating_duration_since(since)),
                None => format!("{n} not yet"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
