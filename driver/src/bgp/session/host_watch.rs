//! The host's facts, read off the async workers, and the learner's inputs.
//!
//! In: the host's links and addresses (read on a blocking thread), the
//! View, the peers in status, the uplinks. Out: [`super::Bgp`]'s host
//! facts, the learner's policy inputs ([`crate::bgp::host::policy_inputs`]),
//! each configured peer's IPv6 next hop in dual-uplink mode, and a warning
//! (once per change) when an uplink's IPv6 address moved after the export
//! policy fixed it.

use std::net::IpAddr;

use tracing::warn;

use super::Bgp;
use crate::bgp::host::{policy_inputs, HostInfo};
use crate::bgp::learning::LearnerGone;
use crate::bgp::speaker;
use crate::bgp::uplink_next_hops::{changed_warning, uplink_next_hops, UplinkNextHops};

impl Bgp {
    /// Reads the host's links and addresses on a blocking thread.
    pub(super) async fn refresh_host(&mut self) -> Result<(), LearnerGone> {
        let k = self.host_kernel.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut k = k.lock().unwrap_or_else(|p| p.into_inner());
            HostInfo::read(&mut *k)
        })
        .await;
        match read {
            Ok(Ok(h)) => {
                self.host = h.with_gateways(&self.metrics);
                self.check_v6_next_hops();
                // Also picks up peers gobgpd reported since (cheap when nothing changed).
                self.apply_inputs().await?;
            }
            Ok(Err(e)) => warn!(error = %e, "could not read the host's addresses"),
            Err(e) => warn!(error = %e, "host refresh task failed"),
        }
        Ok(())
    }

    /// Dual-uplink mode: each configured peer's IPv6 next hop from the
    /// host as last read (none without `--uplink`).
    pub(super) fn uplink_next_hops(&self, cfg: &speaker::SpeakerConfig) -> UplinkNextHops {
        if self.cfg.uplinks.is_empty() {
            return UplinkNextHops::default();
        }
        let peers: Vec<IpAddr> = cfg.peers.iter().map(|p| p.address).collect();
        uplink_next_hops(&self.host, &self.cfg.uplinks, &peers)
    }

    /// The export policy's IPv6 next hops are fixed when BGP starts on
    /// gobgpd: when an uplink's IPv6 address changes later, say (once per
    /// change) that gobgpd still sends the old one and a gobgpd restart
    /// installs the new one.
    fn check_v6_next_hops(&mut self) {
        let Some(installed) = &self.v6_next_hops else {
            return;
        };
        let now = self.uplink_next_hops(&self.speaker_cfg).per_peer;
        let Some(msg) = changed_warning(installed, &now) else {
            return;
        };
        if self.warned.insert(msg.clone()) {
            warn!("{msg}");
        }
    }

    pub(super) async fn apply_inputs(&mut self) -> Result<(), LearnerGone> {
        let peers = self.metrics.bgp(|b| b.peers.clone());
        let inputs = policy_inputs(&self.view.borrow(), &self.host, &self.cfg, &peers);
        self.learner.set_inputs(inputs).await
    }
}
