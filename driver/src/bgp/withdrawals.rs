//! Withdrawals, sorted by whether the peer that withdrew is still there.
//!
//! In: a batch of learned paths from gobgpd's event stream, and gobgpd to
//! ask whether a peer's session is established. Out: the paths to apply now
//! (announcements, withdrawals of peers still up) and withdrawals held for
//! [`SESSION_LOSS_HOLD`] ([`HeldWithdrawals`]): when gobgpd itself shuts down
//! it drops every peer before our stream, and held withdrawals then become
//! stale routes instead of an outage.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use tracing::debug;

use super::gobgp::apipb::ListPeerRequest;
use super::gobgp::{self, Client, LearnedPath};

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
/// container left). Withdrawals from a peer whose session is gone are held
/// for [`SESSION_LOSS_HOLD`]: when gobgpd itself shuts down it first drops
/// every peer (withdrawing everything) and then closes our stream; held
/// withdrawals then become stale routes instead of an outage. When gobgpd
/// answers too late whether a peer is up (busy with the burst a lost
/// session causes), the withdrawal is held as if the session were gone:
/// a path that replaces it cancels it, and a real withdrawal is only
/// late by the hold. Fails on other errors.
pub async fn sort(
    client: &mut Client,
    paths: Vec<LearnedPath>,
    held: &mut HeldWithdrawals,
    limit: Duration,
) -> Result<Vec<LearnedPath>, tonic::Status> {
    let mut now = Vec::with_capacity(paths.len());
    let mut peers_up: BTreeMap<String, bool> = BTreeMap::new();
    for p in paths {
        if !p.withdraw {
            held.cancel(&p.prefix);
            now.push(p);
            continue;
        }
        let peer = p.peer.clone().unwrap_or_default();
        let up = match peers_up.get(&peer) {
            Some(up) => *up,
            None => {
                let up = match peer_established(client, &peer, limit).await {
                    Ok(up) => up,
                    Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                        debug!(peer, "peer state late; holding its withdrawals");
                        false
                    }
                    Err(e) => return Err(e),
                };
                peers_up.insert(peer, up);
                up
            }
        };
        if up {
            now.push(p);
        } else {
            held.hold(p, tokio::time::Instant::now() + SESSION_LOSS_HOLD);
        }
    }
    Ok(now)
}

/// Whether gobgpd still has an established session with `peer`.
async fn peer_established(
    client: &mut Client,
    peer: &str,
    limit: Duration,
) -> Result<bool, tonic::Status> {
    let list = client.list_peer(ListPeerRequest {
        address: peer.to_string(),
        enable_advertised: false,
    });
    let mut s = match gobgp::deadline("ListPeer", limit, list).await {
        Ok(r) => r.into_inner(),
        // A stuck gobgpd ends the session; any other answer means "not up".
        Err(e) if e.code() == tonic::Code::DeadlineExceeded => return Err(e),
        Err(_) => return Ok(false),
    };
    let mut up = false;
    while let Some(r) = gobgp::next_within("ListPeer", limit, &mut s).await? {
        up |= r
            .peer
            .and_then(|p| p.state)
            .is_some_and(|st| st.session_state == 6);
    }
    Ok(up)
}
