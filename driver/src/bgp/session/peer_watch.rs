//! The peers as gobgpd lists them, and what their changes do to the learner.
//!
//! In: ListPeer (every tick while routes wait for End-of-RIB or a failed
//! peer is away, else every few seconds), the peers' actions
//! ([`crate::bgp::peers`]: a hard failure, End-of-RIB, a complete RIB).
//! Out: the peers in status, a handshake stuck past its hold time counted
//! and (for a peer we configured) deleted and added again
//! ([`crate::bgp::stuck`]), the sessions' local addresses for the IPv6
//! next hop, and the learner told: a failed peer's routes dropped (another
//! peer's path for the same prefix taken in place), End-of-RIB, a RIB
//! re-read when a failed peer is back ([`super::rib_read`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::{Bgp, Ended};
use crate::bgp::gobgp::{self, Family, Gobgp, GobgpApi, PeerInfo};
use crate::bgp::peers::PeerAction;
use crate::bgp::speaker;
use crate::bgp::stuck::Stuck;
use crate::metrics::{PeerBfd, PeerStatus};

impl Bgp {
    /// Re-reads the peers for status, applies what they show (End-of-RIB
    /// flags on 3.x, a failure the events missed, completeness), and notes
    /// the local addresses of the established sessions for the next hop.
    /// Answers whether those changed.
    pub(super) async fn refresh_peers(&mut self, client: &mut Gobgp) -> Result<bool, Ended> {
        let infos = match client.list_peers(None).await {
            Ok(infos) => infos,
            // A gobgpd busy with a burst of updates (a peer lost with
            // thousands of paths) answers ListPeer late: the status waits for
            // the next refresh. Whether gobgpd is stuck is the liveness
            // check's call, not this one's.
            Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                debug!(error = %gobgp::describe(&e), "peer list late; kept the last one");
                return Ok(false);
            }
            Err(e) => return Err(Ended::Lost(format!("list peers: {}", gobgp::describe(&e)))),
        };
        let peers: Vec<PeerStatus> = infos.iter().map(peer_status).collect();
        self.metrics.bgp(|b| b.peers = peers);
        for s in self.handshakes.observe(&infos, Instant::now()) {
            self.unstick(client, s).await?;
        }
        let changed = self.note_local_addresses(&infos);
        let actions = self.peers.listed(&infos);
        self.apply(client, actions).await?;
        Ok(changed)
    }

    /// A session stuck in its handshake past its hold time: counted and
    /// logged; one this driver configured is deleted and added again (the
    /// only thing that frees gobgpd 4.8's deadlocked session), one the
    /// operator configured is left to the operator. If the peer cannot be
    /// added back, the connection to gobgpd is given up: the next one adds
    /// every configured peer again.
    async fn unstick(&mut self, client: &mut Gobgp, s: Stuck) -> Result<(), Ended> {
        self.metrics.bgp(|b| b.stuck_handshakes += 1);
        let (peer, state, secs, hold) =
            (&s.peer, s.state.name(), s.stuck_for.as_secs(), s.hold_time);
        match speaker::re_add_peer(client, &self.speaker_cfg, peer).await {
            Ok(true) => {
                warn!(%peer, state, stuck_s = secs, hold, "BGP session stuck in its handshake past its hold time (a gobgpd fault, docs/gobgp-v4.md §9): deleted the peer and added it again");
                Ok(())
            }
            Ok(false) => {
                warn!(%peer, state, stuck_s = secs, hold, "BGP session stuck in its handshake past its hold time (a gobgpd fault, docs/gobgp-v4.md §9); not a peer this driver configured, so left alone: delete and add it again in gobgpd, or restart gobgpd");
                Ok(())
            }
            Err(e) => {
                let e = gobgp::describe(&e);
                Err(Ended::Lost(format!("re-adding the stuck peer {peer}: {e}")))
            }
        }
    }

    /// The local addresses of the established sessions (gobgpd reports the
    /// connection's own address then, on either API line); answers whether
    /// they changed.
    pub(super) fn note_local_addresses(&mut self, infos: &[PeerInfo]) -> bool {
        let local: BTreeSet<IpAddr> = infos
            .iter()
            .filter(|p| p.is_established())
            .filter_map(|p| p.local_address)
            .collect();
        let changed = local != self.next_hop.session_local;
        self.next_hop.session_local = local;
        changed
    }

    /// Applies the peers' actions to the learner (and relists gobgpd's RIB).
    pub(super) async fn apply(
        &mut self,
        client: &mut Gobgp,
        actions: Vec<PeerAction>,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        for a in actions {
            match a {
                PeerAction::Drop { peer, reason } => {
                    // Another peer's path for the same prefix (anycast, a
                    // second uplink) replaces the failed one's in place.
                    let prefixes = self.learner.prefixes_from(peer.clone()).await?;
                    let others = self
                        .usable_paths(client, &prefixes)
                        .await
                        .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
                    self.learner.learn(others, now).await?;
                    let n = self.learner.drop_peer(peer.clone(), now).await?;
                    warn!(peer, reason, routes = n, kept = (prefixes.len() as u64).saturating_sub(n), "peer failed (not a graceful restart): its routes are removed now, whatever gobgpd keeps as stale");
                    self.metrics.bgp(|b| b.peer_routes_dropped += n);
                }
                PeerAction::EndOfRib { peer, family } => {
                    debug!(peer, family = family.name(), "End-of-RIB");
                    self.learner.end_of_rib(peer, family, now).await?;
                }
                PeerAction::RibComplete(family) => self.learner.rib_complete(family, now).await?,
                PeerAction::Relist => {
                    let n = self.list_best(client, false).await?;
                    self.last_relist = Some(tokio::time::Instant::now());
                    info!(
                        best_paths = n,
                        "a failed peer is back with its End-of-RIB: re-read gobgpd's RIB"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A peer as status and metrics show it.
fn peer_status(p: &PeerInfo) -> PeerStatus {
    let names = |f: &[Family]| f.iter().map(|f| f.name()).collect();
    PeerStatus {
        address: p.address.clone(),
        asn: p.asn,
        state: p.state.name().to_string(),
        bfd: p.bfd.map(|b| PeerBfd {
            state: b.state.name().to_string(),
            interval_ms: u64::try_from(b.settings.interval.as_millis()).unwrap_or(u64::MAX),
            multiplier: b.settings.multiplier,
        }),
        graceful_restart: p.graceful_restart,
        graceful_restart_families: names(&p.gr_families),
        end_of_rib: names(&p.end_of_rib),
        last_down: p.down_reason.as_ref().map(|r| r.describe()),
        hold_time: p.hold_time,
        keepalive: p.keepalive,
    }
}
