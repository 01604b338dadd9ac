//! What this host announces, made equal in gobgpd, and the drain.
//!
//! In: the View, the host's facts and the next-hop choice, the peers' AS
//! numbers (for the drain's method). Out: gobgpd's paths made equal to the
//! wanted announcements ([`crate::bgp::announcer`]): all of them, or after
//! a view change only the prefixes it touched when nothing else they are
//! made of changed since the last sync ([`Synced`]); drained ones made less
//! preferred ([`crate::bgp::drain`]), and in status: what is announced,
//! the announcer's counts and the drain's progress (how many of our
//! prefixes a peer now has another path for, and when it is safe to stop).

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use tracing::info;

use super::{Bgp, Synced};
use crate::bgp::announcer::Announcement;
use crate::bgp::drain::{self, DrainMethod};
use crate::bgp::gobgp::{self, Family, Gobgp, GobgpApi};
use crate::bgp::host::{update_wanted, wanted_announcements};
use crate::metrics::{now_unix, DrainStatus};
use crate::view::diff::announced_changes;
use crate::view::View;

impl Bgp {
    /// What the announcer holds in gobgpd and has sent it, for status and metrics.
    fn publish_announcer(&self) {
        let held = self.announcer.count();
        let counts = self.announcer.counts;
        self.metrics.bgp(|b| {
            b.announced = held;
            b.announcer = counts;
        });
    }

    /// What this host announces now: the View's prefixes with their next
    /// hops and attributes, made less preferred while drained.
    pub(super) fn wanted(&mut self, view: &View) -> BTreeMap<IpNet, Announcement> {
        let mut w = wanted_announcements(
            view,
            &self.host,
            &self.cfg,
            &mut self.next_hop,
            &mut self.warned,
        );
        if view.drained.is_some() {
            drain::drain_all(&mut w, self.drain_method());
        }
        w
    }

    /// Prepend when every peer is eBGP, LOCAL_PREF 0 when one is iBGP.
    fn drain_method(&self) -> DrainMethod {
        let peers: Vec<u32> = self
            .metrics
            .bgp(|b| b.peers.iter().map(|p| p.asn).collect());
        let configured = self.cfg.speaker.peers.iter().filter_map(|p| {
            // A peer without an AS of its own is iBGP.
            Some(p.asn.unwrap_or(self.cfg.speaker.asn?))
        });
        let asn = if self.asn != 0 {
            self.asn
        } else {
            self.cfg.speaker.asn.unwrap_or(0)
        };
        drain::method(asn, peers.into_iter().chain(configured))
    }

    /// Makes gobgpd's paths equal `wanted`, then notes what it holds (and
    /// the drain's progress) for status.
    pub(super) async fn sync(
        &mut self,
        client: &mut Gobgp,
        view: &Arc<View>,
        wanted: BTreeMap<IpNet, Announcement>,
    ) -> Result<(), String> {
        self.synced = None;
        self.announcer
            .sync(client, &wanted, None)
            .await
            .map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
        self.metrics.announced(wanted.keys());
        self.synced = Some(Synced {
            view: view.clone(),
            host: self.host.clone(),
            session_local: self.next_hop.session_local.clone(),
            wanted,
        });
        self.synced_status(view);
        Ok(())
    }

    /// The view changed: the announcements of the prefixes whose entries
    /// it changed are decided again and only they are compared with what
    /// gobgpd holds, when the last sync succeeded with the same host, the
    /// same sessions' local addresses and no drain (the drain's method
    /// follows the peers); else everything is, as [`Bgp::sync`] does.
    pub(super) async fn sync_view_change(
        &mut self,
        client: &mut Gobgp,
        view: &Arc<View>,
    ) -> Result<(), String> {
        let Some(mut last) = self.synced.take().filter(|s| {
            s.host == self.host
                && s.session_local == self.next_hop.session_local
                && s.view.drained.is_none()
                && view.drained.is_none()
        }) else {
            let w = self.wanted(view);
            return self.sync(client, view, w).await;
        };
        let touched = announced_changes(&last.view, view);
        update_wanted(
            &mut last.wanted,
            &touched,
            view,
            &self.host,
            &self.cfg,
            &mut self.next_hop,
            &mut self.warned,
        );
        self.announcer
            .sync(client, &last.wanted, Some(&touched))
            .await
            .map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
        self.metrics.announced_touched(&touched, &last.wanted);
        last.view = view.clone();
        self.synced = Some(last);
        self.synced_status(view);
        Ok(())
    }

    /// After a successful sync: what the announcer holds, and the drain's
    /// state, for status.
    fn synced_status(&mut self, view: &View) {
        self.publish_announcer();
        let count = self.announcer.count();
        match view.drained {
            Some(since) => {
                if !self.drain.drained || self.drain.since != Some(since) {
                    info!(prefixes = count, method = self.drain_method().name(), "drained: every announcement carries GRACEFUL_SHUTDOWN and is made less preferred");
                    self.drain = DrainStatus {
                        drained: true,
                        since: Some(since),
                        ..DrainStatus::default()
                    };
                }
                self.drain.method = Some(self.drain_method().name());
                self.drain.prefixes = count;
                self.drain.accepted.get_or_insert(now_unix());
            }
            None if self.drain.drained => {
                info!("undrained: announcements are back to normal");
                self.drain = DrainStatus::default();
            }
            None => {}
        }
        let d = self.drain.clone();
        self.metrics.bgp(|b| b.drain = d);
    }

    /// While drained and not yet safe to stop: how many of our prefixes a
    /// peer advertises another path for (it moved), and whether it is safe.
    pub(super) async fn drain_progress(&mut self, client: &mut Gobgp) {
        if !self.drain.drained || self.drain.safe_since.is_some() {
            return;
        }
        let ours: Vec<IpNet> = self
            .metrics
            .bgp(|b| b.announced_prefixes.iter().copied().collect());
        let mut moved = 0;
        let limit = self.cfg.call_timeout;
        for family in Family::ALL {
            let prefixes: Vec<IpNet> = ours
                .iter()
                .filter(|p| Family::of(p) == family)
                .copied()
                .collect();
            for chunk in prefixes.chunks(1000) {
                let Ok(mut rib) = client.open_rib(family, chunk).await else {
                    return;
                };
                while let Ok(Some(dest)) = rib.next(limit).await {
                    if dest
                        .iter()
                        .any(|p| p.path.peer.is_some() && !p.path.withdraw)
                    {
                        moved += 1;
                    }
                }
            }
        }
        self.drain.moved = moved;
        drain::settle(&mut self.drain, now_unix());
        if let Some(t) = self.drain.safe_since {
            info!(safe_since = t, moved, prefixes = self.drain.prefixes, detail = %self.drain.detail, "drained: safe to stop");
        }
        let d = self.drain.clone();
        self.metrics.bgp(|b| b.drain = d);
    }
}
