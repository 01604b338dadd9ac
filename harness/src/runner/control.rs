//! Daemons controlled: gobgpd and the driver belong to the world (signals,
//! starts), dockerd and a managed plugin to the engine; after dockerd comes
//! back, each container's namespace (and address) is read again.
//!
//! In: a host, a daemon, what to do. Out: done, or the error.

use std::time::Duration;

use anyhow::{anyhow, Result};
use nix::sys::signal::Signal;

use super::{Runner, POLL};
use crate::engine::Control;
use crate::scenario::DaemonKind;
use crate::util::eventually;

impl Runner<'_> {
    /// Kills, stops, starts or restarts a daemon: gobgpd and the driver
    /// belong to the world, dockerd to the engine. After dockerd comes back,
    /// the containers' namespaces are read again (their processes restarted).
    pub(super) fn control(
        &mut self,
        host: &str,
        daemon: DaemonKind,
        action: Control,
    ) -> Result<Option<Duration>> {
        let hi = self.w.host_index(host)?;
        match (daemon, action) {
            (DaemonKind::Dockerd, _) => {
                self.engine.control(&self.w, hi, action)?;
                if matches!(action, Control::Start | Control::Restart) {
                    self.refresh_containers(hi)?;
                }
            }
            (DaemonKind::Driver, _) if self.w.driver_is_plugin() => {
                self.engine.control_driver(&self.w, hi, action)?
            }
            (_, Control::Kill) => self.w.signal_daemon(hi, daemon, Signal::SIGKILL)?,
            (_, Control::Stop) => self.w.signal_daemon(hi, daemon, Signal::SIGTERM)?,
            (_, Control::Start) => self.w.start_daemon(hi, daemon)?,
            (_, Control::Restart) => {
                self.w.signal_daemon(hi, daemon, Signal::SIGTERM)?;
                self.w.start_daemon(hi, daemon)?;
            }
        }
        Ok(None)
    }

    pub(super) fn refresh_containers(&mut self, host: usize) -> Result<()> {
        let names: Vec<String> = self
            .running
            .values()
            .filter(|c| c.host == host)
            .map(|c| c.name.clone())
            .collect();
        let deadline = self.w.opts.scale(Duration::from_secs(60));
        for n in names {
            let mut c = self.running[&n].clone();
            let old = c.netns.clone();
            self.tcp.forget(&old);
            eventually(deadline, POLL, || {
                self.engine
                    .refresh(&self.w, &mut c)
                    .map_err(|e| format!("{e:#}"))
            })
            .map_err(|e| anyhow!("container {n} did not come back: {e}"))?;
            self.running.insert(n, c);
        }
        Ok(())
    }
}
