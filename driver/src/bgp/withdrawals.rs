//! Withdrawals, sorted by whether the peer that withdrew is still there.
//!
//! In: a batch of learned paths from gobgpd's event stream, and gobgpd to
//! ask about the peer that withdrew. Out: the paths to apply now
//! (announcements, withdrawals of peers still up, or of peers that went
//! down for a reason gobgpd names and that is not its own shutdown) and
//! withdrawals held for [`SESSION_LOSS_HOLD`] ([`HeldWithdrawals`]): when
//! gobgpd itself shuts down it drops every peer before our stream, and held
//! withdrawals then become stale routes instead of an outage.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use tracing::debug;

use super::gobgp::{DownReason, Gobgp, GobgpApi, LearnedPath, PeerInfo};

/// How long withdrawals caused by a lost session wait before they apply.
pub const SESSION_LOSS_HOLD: Duration = Duration::from_secs(1);

/// Withdrawals waiting out [`SESSION_LOSS_HOLD`].
#[derive(Default)]
pub struct HeldWithdrawals {
    paths: Vec<(tokio::time::Instant, LearnedPath)>,
}

impl HeldWithdrawals {
    fn hold(&mut self, p: LearnedPath, until: tokio::time::Instant) {
        self.cancel(&p.prefix);
        self.paths.push((until, p));
    }

    /// The prefix was learned again: its held withdrawal no longer applies.
    pub fn cancel(&mut self, prefix: &IpNet) {
        self.paths.retain(|(_, p)| p.prefix != *prefix);
    }

    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.paths.iter().map(|(t, _)| *t).min()
    }

    pub fn take_due(&mut self, now: tokio::time::Instant) -> Vec<LearnedPath> {
        let (due, keep): (Vec<_>, Vec<_>) = self.paths.drain(..).partition(|(t, _)| *t <= now);
        self.paths = keep;
        due.into_iter().map(|(_, p)| p).collect()
    }
}

/// Withdrawals from a peer whose session is still up apply at once (a
/// container left), and so do those of a peer that gobgpd says went down
/// for a reason of its own (4.x: a BFD reset, a hold expiry, a
/// NOTIFICATION): BFD's sub-second failover must not wait. Withdrawals from
/// a peer whose session is gone without a reason (3.x), or because gobgpd
/// is stopping, are held for [`SESSION_LOSS_HOLD`]: when gobgpd itself
/// shuts down it first drops every peer (withdrawing everything) and then
/// closes our stream; held withdrawals then become stale routes instead of
/// an outage. When gobgpd answers too late whether a peer is up (busy with
/// the burst a lost session causes), the withdrawal is held as if the
/// session were gone: a path that replaces it cancels it, and a real
/// withdrawal is only late by the hold; so does any other failed read.
pub async fn sort(
    client: &mut Gobgp,
    paths: Vec<LearnedPath>,
    held: &mut HeldWithdrawals,
) -> Result<Vec<LearnedPath>, tonic::Status> {
    let mut now = Vec::with_capacity(paths.len());
    let mut apply: BTreeMap<String, bool> = BTreeMap::new();
    for p in paths {
        if !p.withdraw {
            held.cancel(&p.prefix);
            now.push(p);
            continue;
        }
        let peer = p.peer.clone().unwrap_or_default();
        let at_once = match apply.get(&peer) {
            Some(a) => *a,
            None => {
                debug!(prefix = %p.prefix, mono_us = crate::clock::mono_us(), "withdrawal: asking the peer's state");
                let a = at_once(client, &peer).await;
                debug!(
                    mono_us = crate::clock::mono_us(),
                    "withdrawal: peer state answered"
                );
                apply.insert(peer, a);
                a
            }
        };
        if at_once {
            now.push(p);
        } else {
            held.hold(p, tokio::time::Instant::now() + SESSION_LOSS_HOLD);
        }
    }
    Ok(now)
}

/// Whether withdrawals from `peer` apply at once: asked of gobgpd after
/// they reached us, so the state it answers is at least as new as theirs
/// (gobgpd marks a session down before it withdraws the peer's paths).
/// First the cheap read of the session's state ([`GobgpApi::peer_up`]);
/// only when that is not "up" (or this line has none) ListPeer, whose
/// count of the peer's paths is then cheap (gobgpd counts only an
/// established session's) and which names why the session fell.
async fn at_once(client: &mut Gobgp, peer: &str) -> bool {
    // A withdrawal that names no peer: ListPeer of every peer, as before.
    let probe = if peer.is_empty() {
        Ok(None)
    } else {
        client.peer_up(peer).await
    };
    match probe {
        Ok(Some(true)) => return true,
        Ok(_) => {}
        Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
            debug!(peer, "peer state late; holding its withdrawals");
            return false;
        }
        Err(e) => {
            debug!(peer, error = %e, "could not read the peer's state from a watch; asking ListPeer")
        }
    }
    match client.list_peers(Some(peer)).await {
        Ok(found) => found.iter().any(applies_at_once),
        Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
            debug!(peer, "peer state late; holding its withdrawals");
            false
        }
        // A stuck gobgpd ends the session (the liveness check);
        // any other answer means "not up".
        Err(_) => false,
    }
}

/// Whether a withdrawal from this peer applies without the hold: its
/// session is up, or gobgpd gave a reason for its fall that is not gobgpd
/// stopping.
fn applies_at_once(p: &PeerInfo) -> bool {
    p.is_established()
        || p.down_reason
            .as_ref()
            .is_some_and(|r| *r != DownReason::Local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp::SessionState;

    #[test]
    fn only_an_unexplained_or_local_fall_holds_withdrawals() {
        let peer = |state, down_reason| PeerInfo {
            state,
            down_reason,
            ..PeerInfo::default()
        };
        assert!(applies_at_once(&peer(SessionState::Established, None)));
        // 3.x: no reason given.
        assert!(!applies_at_once(&peer(SessionState::Active, None)));
        // 4.x: gobgpd stopping (its peers de-configured) holds them.
        assert!(!applies_at_once(&peer(
            SessionState::Idle,
            Some(DownReason::Local)
        )));
        // 4.x: a BFD reset applies at once.
        assert!(applies_at_once(&peer(
            SessionState::Idle,
            Some(DownReason::NotificationSent("BFD is down".into()))
        )));
        assert!(applies_at_once(&peer(
            SessionState::Active,
            Some(DownReason::ConnectionLost)
        )));
    }
}
