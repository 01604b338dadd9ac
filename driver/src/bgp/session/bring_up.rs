//! Bringing a new gobgpd connection up, in the order that keeps peers whole.
//!
//! In: the connected client, the speaker settings (the router ID filled in
//! from the host when none is set), the host's uplinks, the View. Out, in
//! this order: gobgpd configured ([`crate::bgp::speaker::start`]: StartBgp,
//! the GRACEFUL_SHUTDOWN import and the export policy, or the policies a
//! failed start left owed), gobgpd's event stream opened, its RIB read as
//! the learner's snapshot ([`super::rib_read`]), the host's facts and the
//! sessions' local addresses read, our paths made equal to the View
//! ([`super::announcing`]), and only then the peers added: a path added
//! after a peer's End-of-RIB makes graceful-restart helpers flush our stale
//! copies (docs/gobgp-v4.md §5). Also the dual-uplink warnings (IPv6 next
//! hops, gobgpd without multipath) and status set to connected.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::{info, warn};

use super::{Bgp, Ended};
use crate::bgp::gobgp::{self, EventStream, Gobgp, GobgpApi};
use crate::bgp::peers::Peers;
use crate::bgp::speaker;
use crate::bgp::stuck::Handshakes;

impl Bgp {
    /// Brings a new connection up, in the order that keeps peers whole:
    /// StartBgp and the policies when the driver manages gobgpd, the event
    /// stream watched before the RIB is read (nothing in between is
    /// missed), the snapshot to the learner, the host's facts and the
    /// sessions' local addresses, our paths made equal to the View, and
    /// only then the peers. Returns the event stream and the pools the
    /// announcements were made for.
    pub(super) async fn bring_up(
        &mut self,
        client: &mut Gobgp,
    ) -> Result<(EventStream, BTreeSet<IpNet>), Ended> {
        let mut speaker_cfg = self.cfg.speaker.clone();
        if speaker_cfg.manages_gobgpd() && speaker_cfg.router_id.is_none() {
            speaker_cfg.router_id = self.default_router_id().map(|r| r.to_string());
        }
        self.speaker_cfg = speaker_cfg.clone();
        self.handshakes = Handshakes::default();
        let v6 = self.uplink_next_hops(&speaker_cfg);
        let started = speaker::start(client, &speaker_cfg, &v6.per_peer, &mut self.policies_owed)
            .await
            .map_err(|e| format!("configure gobgpd: {e}"))?;
        self.v6_next_hops = None;
        if started.fresh
            && speaker_cfg.export == speaker::Export::Own
            && !self.cfg.uplinks.is_empty()
        {
            for w in &v6.warnings {
                warn!("{w}");
            }
            self.v6_next_hops = Some(v6.per_peer);
        }
        if let Some(w) = multipath_warning(&self.cfg.uplinks, started.global.use_multiple_paths) {
            warn!("{w}");
        }
        // Watch first, snapshot second: nothing that happens in between is missed.
        let events = client
            .watch(started.global.use_multiple_paths)
            .await
            .map_err(|e| format!("watch: {}", gobgp::describe(&e)))?;
        let n = self.list_best(client, true).await?;
        self.asn = started.global.asn;
        self.peers = Peers::default();
        self.refresh_host().await?;
        // The sessions' local addresses first: the IPv6 next hop prefers
        // one, so a restarted driver chooses what it announced before.
        match client.list_peers(None).await {
            Ok(infos) => {
                self.note_local_addresses(&infos);
            }
            Err(e) => return Err(Ended::Lost(format!("list peers: {}", gobgp::describe(&e)))),
        }
        let view = self.view.borrow().clone();
        let known_pools = view.pools.clone();
        let wanted = self.wanted(&view);
        let pools: Vec<IpNet> = view.pools.iter().copied().collect();
        let mut nhs: Vec<IpAddr> = wanted.values().map(|a| a.next_hop).collect();
        nhs.extend(self.cfg.next_hops.iter().copied());
        self.announcer
            .resync(client, &pools, &nhs, &wanted)
            .await
            .map_err(|e| format!("read local paths: {}", gobgp::describe(&e)))?;
        self.sync(client, &view, wanted).await?;
        // Peers last: our paths are in gobgpd before any session sends its
        // End-of-RIB (a path added after it makes graceful-restart helpers
        // flush our stale copies: docs/gobgp-v4.md §5).
        speaker::add_peers(client, &speaker_cfg, started.fresh)
            .await
            .map_err(|e| format!("configure gobgpd's peers: {}", gobgp::describe(&e)))?;
        let announced = self.announcer.count();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
        });
        info!(gobgp = %self.cfg.gobgp, api = %client.line(), best_paths = n, announced, "connected to gobgpd");
        self.session_up = true;
        if self.refresh_peers(client).await? {
            // A session came up from another local address meanwhile.
            let view = self.view.borrow().clone();
            let w = self.wanted(&view);
            self.sync(client, &view, w).await?;
        }
        Ok((events, known_pools))
    }

    /// The first IPv4 address of the first uplink, else of a parent, else
    /// of any non-loopback link.
    fn default_router_id(&self) -> Option<IpAddr> {
        let view = self.view.borrow();
        let parents = self
            .cfg
            .uplinks
            .iter()
            .chain(view.parents.iter())
            .chain(self.cfg.default_parent.iter());
        parents
            .filter_map(|p| self.host.parent_v4(p))
            .next()
            .or_else(|| self.cfg.next_hops.iter().copied().find(|a| a.is_ipv4()))
            .or_else(|| {
                self.host
                    .links
                    .iter()
                    .flat_map(|(_, _, nets)| nets.iter())
                    .map(|n| n.addr())
                    .find(|a| a.is_ipv4() && !a.is_loopback())
            })
    }
}

/// Dual-uplink mode needs gobgpd to report every equal best path: the
/// warning when its `use_multiple_paths` is off (an operator's gobgpd
/// without `[global.use-multiple-paths.config] enabled = true`).
fn multipath_warning(uplinks: &[String], use_multiple_paths: bool) -> Option<String> {
    (!uplinks.is_empty() && !use_multiple_paths).then(|| {
        "gobgpd runs without use_multiple_paths: it reports one best path per prefix, so each learned route gets one next hop and one uplink in dual-uplink mode; set [global.use-multiple-paths.config] enabled = true in gobgpd's configuration (or let the driver configure gobgpd with --asn)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_uplink_mode_warns_when_gobgpd_has_no_multipath() {
        let up = vec!["up1".to_string(), "up2".to_string()];
        let w = multipath_warning(&up, false).unwrap();
        assert!(
            w.contains("use_multiple_paths") && w.contains("enabled = true"),
            "{w}"
        );
        assert_eq!(multipath_warning(&up, true), None);
        assert_eq!(multipath_warning(&[], false), None);
    }
}
