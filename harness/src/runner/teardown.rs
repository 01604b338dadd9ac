//! Teardown: stops probes, withdraws injected paths, stops containers and
//! deletes networks through the engine (so the driver's cleanup path runs),
//! reaps killed containers, then checks that no link of ours is left.
//!
//! In: the [`Runner`] after its steps (passed or failed). Out: `Ok(())` or
//! every teardown error joined. The world's cleanup stack runs after it, in
//! `run()`.

use std::time::Duration;

use anyhow::{bail, Result};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Family;
use nix::sys::signal::Signal;

use super::{Runner, POLL};
use crate::probe::links::LinkInfo;
use crate::util::eventually;

impl Runner<'_> {
    /// Stops containers and deletes networks through the engine, then checks
    /// that the driver left none of its links behind.
    pub(super) fn teardown(&mut self) -> Result<()> {
        for (_, p) in self.probers.drain() {
            let _ = p.stop();
        }
        for (_, f) in self.flows.drain() {
            let _ = f.stop();
        }
        for (_, w) in self.watches.drain() {
            let _ = w.watch.stop();
        }
        let mut errors = Vec::new();
        for (host, prefix, nh) in std::mem::take(&mut self.injected) {
            if self.w.host(&host).is_ok_and(|h| h.gobgpd.running()) {
                if let Err(e) = self.gobgp_rib(&host, "del", prefix, nh) {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        // A daemon a failed scenario left frozen would stall everything below.
        for h in &self.w.hosts {
            for d in [&h.gobgpd, &h.driver] {
                if d.running() {
                    let _ = d.send(Signal::SIGCONT);
                }
            }
        }
        for m in self.w.etcd.iter().flat_map(|e| &e.members) {
            if m.daemon.running() {
                let _ = m.daemon.send(Signal::SIGCONT);
            }
        }
        for (id, f) in self.floods.drain() {
            // A flood still sending ends with gobgpd (stopped by the cleanup stack).
            if f.is_finished() {
                if let Ok(Err(e)) = f.join() {
                    errors.push(format!("flood {id}: {e:#}"));
                }
            }
        }
        for c in std::mem::take(&mut self.killed) {
            if self.w.hosts[c.host].driver.running() {
                if let Err(e) = self.engine.reap(&self.w, &c) {
                    errors.push(format!("reap the killed {}: {e:#}", c.name));
                }
            }
        }
        let cs: Vec<_> = std::mem::take(&mut self.running).into_values().collect();
        for c in &cs {
            self.tcp.forget(&c.netns);
        }
        for (c, r) in cs.iter().zip(self.engine.stop_many(&self.w, &cs)) {
            if let Err(e) = r {
                errors.push(format!("stop {}: {e:#}", c.name));
            }
        }
        let nets: Vec<(usize, String)> = self.networks.iter().cloned().collect();
        for (hi, net) in nets {
            if !self.w.hosts[hi].driver.running() {
                continue;
            }
            let host = self.w.hosts[hi].def.name.clone();
            if let Err(e) = self.delete_network(&net, &host) {
                errors.push(format!("delete network {net} on {host}: {e:#}"));
            }
        }
        if errors.is_empty() {
            for h in &self.w.hosts {
                if !h.runs_driver() || !h.driver.running() {
                    continue;
                }
                // By the driver's mark, never by name: a scenario's own
                // foreign `ib*` links must stay, and are not the driver's.
                let left: Vec<String> = crate::probe::links::list(&h.ns)?
                    .into_values()
                    .filter(LinkInfo::marked)
                    .map(|l| format!("{} ({})", l.name, l.alias.unwrap_or_default()))
                    .collect();
                if !left.is_empty() {
                    errors.push(format!(
                        "links left on {} after every container and network was removed: {}",
                        h.def.name,
                        left.join(", ")
                    ));
                }
            }
        }
        // Routers' own announcements are not ours to check: stop them first.
        for r in &mut self.w.routers {
            if let Err(e) = r.stop() {
                errors.push(format!("stop router {}: {e:#}", r.def.name));
            }
        }
        if errors.is_empty() {
            // Every announcement is withdrawn, so every learned route must go too.
            let hosts: Vec<(String, std::path::PathBuf)> = self
                .w
                .hosts
                .iter()
                .filter(|h| h.runs_driver() && h.driver.running())
                .map(|h| (h.def.name.clone(), h.ns.path()))
                .collect();
            let r = eventually(self.w.opts.scale(Duration::from_secs(15)), POLL, || {
                let mut left = Vec::new();
                for (name, ns) in &hosts {
                    let mut k = Kernel::open_in_netns(ns).map_err(|e| e.to_string())?;
                    let routes = k
                        .routes(Family::V4, Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL))
                        .map_err(|e| e.to_string())?;
                    left.extend(routes.iter().map(|r| format!("{} on {name}", r.dst)));
                }
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            });
            if let Err(e) = r {
                errors.push(format!(
                    "tagged routes left after every container and network was removed: {e}"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(errors.join("; "))
        }
    }
}
