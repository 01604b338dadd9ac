//! Sessions that hang in the handshake: gobgpd 4.8 can leave a session in
//! OpenSent or OpenConfirm for good after a connection collision. Its FSM
//! switches to the connection it dialled without reading the OPEN that came
//! on it (the negotiated hold time stays 0, so no hold timer and no
//! keepalives run) and then waits on the connection it dropped; neither its
//! hold timer nor an admin disable reaches it (docs/gobgp-v4.md §9). Only a
//! new neighbour (DeletePeer, AddPeer) gets the session going again.
//!
//! In: each ListPeer answer ([`PeerInfo`]s) with the time it came. Out: the
//! peers that have sat in OpenSent or OpenConfirm, at every look without a
//! break, for longer than [`bound`] (their hold time plus [`MARGIN`]): once
//! per stretch, then again after each further bound while it lasts (the
//! remedy did not help, or the peer really never answers). A healthy
//! handshake takes milliseconds; a peer that accepts TCP but never sends
//! its OPEN is only retried sooner than gobgpd's own 4-minute OpenSent
//! timer would. Pure state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::gobgp::{PeerInfo, SessionState};

/// Beyond the hold time: at least two of the session's peer refreshes.
pub const MARGIN: Duration = Duration::from_secs(10);
/// The hold time assumed when gobgpd reports none (RFC 4271's suggestion).
const DEFAULT_HOLD: u64 = 90;

/// How long a handshake may last before it counts as stuck.
pub fn bound(hold_time: u64) -> Duration {
    let hold = if hold_time == 0 {
        DEFAULT_HOLD
    } else {
        hold_time
    };
    Duration::from_secs(hold) + MARGIN
}

/// One stuck handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub peer: String,
    pub state: SessionState,
    /// Since the first look that found it in the handshake.
    pub stuck_for: Duration,
    pub hold_time: u64,
}

#[derive(Debug, Default)]
pub struct Handshakes {
    /// Per peer: when it was first seen in the handshake, and when it was
    /// last reported stuck.
    seen: BTreeMap<String, (Instant, Option<Instant>)>,
}

fn in_handshake(s: SessionState) -> bool {
    matches!(s, SessionState::OpenSent | SessionState::OpenConfirm)
}

impl Handshakes {
    /// Takes one look at every peer; answers those stuck past their bound.
    pub fn observe(&mut self, infos: &[PeerInfo], now: Instant) -> Vec<Stuck> {
        self.seen.retain(|peer, _| {
            infos
                .iter()
                .any(|p| &p.address == peer && in_handshake(p.state))
        });
        let mut out = Vec::new();
        for p in infos.iter().filter(|p| in_handshake(p.state)) {
            let (since, reported) = self.seen.entry(p.address.clone()).or_insert((now, None));
            let limit = bound(p.hold_time);
            let due = match reported {
                None => now.duration_since(*since) > limit,
                Some(at) => now.duration_since(*at) > limit,
            };
            if due {
                *reported = Some(now);
                out.push(Stuck {
                    peer: p.address.clone(),
                    state: p.state,
                    stuck_for: now.duration_since(*since),
                    hold_time: p.hold_time,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, state: SessionState, hold: u64) -> PeerInfo {
        PeerInfo {
            address: addr.into(),
            asn: 65000,
            state,
            bfd: None,
            graceful_restart: None,
            gr_families: vec![],
            end_of_rib: vec![],
            down_reason: None,
            notifications_sent: 0,
            hold_time: hold,
            keepalive: hold / 3,
            local_address: None,
        }
    }

    #[test]
    fn a_handshake_past_hold_plus_margin_is_stuck_once_per_bound() {
        let t0 = Instant::now();
        let mut h = Handshakes::default();
        let s = |st| vec![peer("192.0.2.2", st, 9)];
        assert!(h.observe(&s(SessionState::OpenConfirm), t0).is_empty());
        assert!(h
            .observe(&s(SessionState::OpenConfirm), t0 + Duration::from_secs(19))
            .is_empty());
        let stuck = h.observe(&s(SessionState::OpenConfirm), t0 + Duration::from_secs(20));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].peer, "192.0.2.2");
        assert_eq!(stuck[0].stuck_for, Duration::from_secs(20));
        // Not again at the next look, but after another bound.
        assert!(h
            .observe(&s(SessionState::OpenSent), t0 + Duration::from_secs(25))
            .is_empty());
        assert_eq!(
            h.observe(&s(SessionState::OpenSent), t0 + Duration::from_secs(40))
                .len(),
            1
        );
    }

    #[test]
    fn leaving_the_handshake_starts_the_clock_again() {
        let t0 = Instant::now();
        let mut h = Handshakes::default();
        let p = |st| vec![peer("192.0.2.2", st, 3)];
        h.observe(&p(SessionState::OpenSent), t0);
        h.observe(&p(SessionState::Established), t0 + Duration::from_secs(5));
        h.observe(&p(SessionState::OpenSent), t0 + Duration::from_secs(10));
        assert!(h
            .observe(&p(SessionState::OpenSent), t0 + Duration::from_secs(22))
            .is_empty());
        assert_eq!(
            h.observe(&p(SessionState::OpenSent), t0 + Duration::from_secs(24))
                .len(),
            1
        );
        // A peer gone from the list is forgotten.
        h.observe(&[], t0 + Duration::from_secs(25));
        assert!(h.seen.is_empty());
    }

    #[test]
    fn other_states_and_unknown_hold_times() {
        let t0 = Instant::now();
        let mut h = Handshakes::default();
        for st in [
            SessionState::Idle,
            SessionState::Active,
            SessionState::Established,
        ] {
            h.observe(&[peer("192.0.2.3", st, 9)], t0);
            assert!(h
                .observe(&[peer("192.0.2.3", st, 9)], t0 + Duration::from_secs(600))
                .is_empty());
        }
        assert_eq!(bound(0), Duration::from_secs(100));
    }
}
