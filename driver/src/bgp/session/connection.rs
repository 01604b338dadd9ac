//! One gobgpd connection's life: brought up ([`super::bring_up`]), then one
//! loop until shutdown, gobgpd lost or the learner gone.
//!
//! In: the connected client, the shutdown signal, the View's changes, the
//! learner's relist requests, a tick, gobgpd's event stream, the
//! withdrawals held back ([`crate::bgp::withdrawals`]) and the liveness
//! check's verdict ([`crate::bgp::timers`]). Out: each handed to the room
//! that acts on it (see [`super`]'s picture), and why the connection ended
//! ([`Ended`]). The loop is `biased`: events already queued before the
//! hold's timer, the rare View changes and ticks before events, so a flood
//! starves neither.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tracing::debug;

use super::events::stream_error;
use super::{Bgp, Ended};
use crate::bgp::gobgp::Gobgp;
use crate::bgp::timers::{check_liveness, AbortOnDrop, TICK};
use crate::bgp::withdrawals::HeldWithdrawals;

/// How often the host's links and addresses are read again.
const HOST_REFRESH: Duration = Duration::from_secs(3);

/// How often the peers shown in status are re-read from gobgpd.
const PEER_REFRESH: Duration = Duration::from_secs(5);

/// gobgpd's RIB is read again for the learner at most this often when it
/// asks (room freed after paths were dropped as over a limit): a flood that
/// keeps it full must not turn into a loop of full reads.
const RELIST_GAP: Duration = Duration::from_secs(10);

impl Bgp {
    /// One connection's life, until shutdown, gobgpd lost (the stream broke,
    /// or a call overran its deadline: gobgpd is stuck) or the learner gone.
    pub(super) async fn session(
        &mut self,
        client: Gobgp,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        match self.connected(client, shutdown).await {
            Ok(()) => Ended::Shutdown,
            Err(e) => e,
        }
    }

    async fn connected(
        &mut self,
        mut client: Gobgp,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Ended> {
        // gobgpd's gRPC server (grpc-go's default policy) closes a connection
        // that sends keepalive PINGs while the server itself writes nothing
        // (GOAWAY "too_many_pings", measured: after ~8 s with only the event
        // stream open). The liveness check keeps gobgpd writing, and itself
        // notices a gobgpd that is alive but no longer answers.
        let (lost_tx, mut lost) = tokio::sync::oneshot::channel();
        let _liveness = AbortOnDrop(tokio::spawn(check_liveness(client.clone(), lost_tx)));
        let (mut events, mut known_pools) = self.bring_up(&mut client).await?;

        let mut last_host = tokio::time::Instant::now();
        let mut last_peers = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = HeldWithdrawals::default();
        loop {
            let hold_until = held.next_deadline();
            let relist_at = self.learner.relist_wanted().then(|| {
                self.last_relist
                    .map_or_else(tokio::time::Instant::now, |t| t + RELIST_GAP)
            });
            tokio::select! {
                // In this order: events already queued (a path that replaces
                // a held withdrawal cancels it) before the hold's timer; the
                // rare view changes and ticks before events, so a flood of
                // events starves neither.
                biased;
                _ = shutdown.changed() => {
                    self.stop_gobgpd(&mut client).await;
                    return Ok(());
                }
                r = &mut lost => return Err(Ended::Lost(r.unwrap_or_else(|_| "liveness check ended".into()))),
                r = self.view.changed() => {
                    if r.is_err() {
                        // The view's sender goes with the API server, just
                        // before the stop signal: this is the shutdown too.
                        self.stop_gobgpd(&mut client).await;
                        return Ok(());
                    }
                    debug!(mono_us = crate::clock::mono_us(), "view change seen");
                    // The learner first: a learned route over a new endpoint
                    // leaves the kernel without waiting for gobgpd's answer
                    // to the announcement. Cheap: the endpoint sets are the
                    // view's own (imbl), sent, not copied.
                    self.apply_inputs().await?;
                    debug!(mono_us = crate::clock::mono_us(), "learner inputs set");
                    let view = self.view.borrow().clone();
                    // Paths refused as outside every pool are not kept by the
                    // learner; when the pools widen, gobgpd's RIB is read again
                    // so those paths get a new decision.
                    if pools_widened(&known_pools, &view.pools) {
                        let n = self.list_best(&mut client, false).await?;
                        self.last_relist = Some(tokio::time::Instant::now());
                        debug!(best_paths = n, "pools widened: re-read gobgpd's RIB");
                    }
                    known_pools = view.pools.clone();
                    self.sync_view_change(&mut client, &view).await?;
                }
                // The learner asks for gobgpd's RIB again (the pools widened
                // after it dropped paths outside them, or room freed after it
                // dropped paths over a limit): at most once per RELIST_GAP.
                _ = tokio::time::sleep_until(relist_at.unwrap_or_else(tokio::time::Instant::now)), if relist_at.is_some() => {
                    let n = self.list_best(&mut client, false).await?;
                    self.last_relist = Some(tokio::time::Instant::now());
                    debug!(best_paths = n, "the learner asked: re-read gobgpd's RIB");
                }
                _ = self.learner.relist_changed() => {}
                _ = tick.tick() => {
                    let mut changed = false;
                    // While routes wait for End-of-RIB (3.x reports it only
                    // in ListPeer) or a failed peer is away, every tick.
                    let pending = self.peers.pending() && self.learner.has_stale();
                    if pending || self.peers.has_dropped() || last_peers.elapsed() >= PEER_REFRESH {
                        last_peers = tokio::time::Instant::now();
                        // A session came up from another local address:
                        // the IPv6 next hop may change.
                        changed = self.refresh_peers(&mut client).await?;
                    }
                    if last_host.elapsed() >= HOST_REFRESH || changed {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await?;
                        if before != self.host || changed {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = self.wanted(&view);
                            self.sync(&mut client, &view, w).await?;
                        }
                    }
                    self.drain_progress(&mut client).await;
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err(Ended::Lost("gobgpd closed the event stream".into())),
                        Some(Err(e)) => return Err(Ended::Lost(stream_error(&e))),
                        Some(Ok(m)) => m,
                    };
                    self.on_events(&mut client, first, &mut events, &mut held).await?;
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                    let due = held.take_due(tokio::time::Instant::now());
                    if !due.is_empty() {
                        self.learner.learn(due, Instant::now()).await?;
                    }
                }
            }
        }
    }
}

/// Whether `new` holds a pool that `old` did not: paths the learner dropped
/// as outside every pool may now be accepted.
fn pools_widened(old: &BTreeSet<IpNet>, new: &BTreeSet<IpNet>) -> bool {
    new.iter().any(|p| !old.iter().any(|o| o.contains(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_widen_only_with_room_outside_the_old_ones() {
        let old: BTreeSet<IpNet> = [n("10.1.0.0/16")].into();
        assert!(!pools_widened(&old, &old));
        assert!(!pools_widened(&old, &[n("10.1.2.0/24")].into()));
        assert!(!pools_widened(&old, &BTreeSet::new()));
        assert!(pools_widened(&old, &[n("10.2.0.0/24")].into()));
        assert!(pools_widened(&old, &[n("10.0.0.0/8")].into()));
        assert!(pools_widened(&BTreeSet::new(), &old));
    }

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
}
