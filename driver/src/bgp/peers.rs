//! The peers' sessions as the learner must see them: graceful restarts
//! told from failures, and End-of-RIB.
//!
//! In: peer state events, what ListPeer reports ([`PeerInfo`]: state, why
//! it went down, End-of-RIB flags, NOTIFICATIONs sent) and End-of-RIB
//! events (4.x). Out: [`PeerAction`]s for the session to apply to the
//! learner, and whether a learned path must be ignored for now.
//!
//! - A peer that fails hard (4.x: hold timer expired, or a NOTIFICATION we
//!   sent, as BFD's reset does; 3.x: a NOTIFICATION we sent since we last
//!   looked, which is how a hold expiry shows there) loses its routes at
//!   once ([`PeerAction::Drop`]), although gobgpd as a graceful-restart
//!   helper keeps its paths as stale for the peer's restart-time
//!   (docs/gobgp-v4.md §5). Until the peer is back with its End-of-RIB (or
//!   without graceful restart), its paths are ignored ([`Peers::ignores`]);
//!   then gobgpd's RIB is read again ([`PeerAction::Relist`]): gobgpd sends
//!   no event when a stale path comes back unchanged.
//! - A peer whose session just broke (TCP lost, a graceful restart) keeps
//!   its routes: gobgpd keeps them stale, and so does the learner.
//! - Routes the learner holds as stale (after a gobgpd or driver restart)
//!   go at their peer's End-of-RIB if it did not send them again
//!   ([`PeerAction::EndOfRib`]), and every remaining one of a family
//!   (those adopted from the kernel, whose peer is unknown) once every
//!   peer has sent its End-of-RIB for it ([`PeerAction::RibComplete`]).
//!   Without End-of-RIB (no graceful restart negotiated) the stale time
//!   decides, as before.
//!
//! One per connection to gobgpd: a new gobgpd has new sessions. Pure state.

use std::collections::{BTreeMap, BTreeSet};

use super::gobgp::{DownReason, Family, PeerInfo, SessionState};

/// What the session does for the peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    /// Remove every route learned from `peer` now.
    Drop { peer: String, reason: String },
    /// `peer` sent End-of-RIB for `family`: its stale routes not sent again go.
    EndOfRib { peer: String, family: Family },
    /// Every peer has sent End-of-RIB for `family`: every stale route of it goes.
    RibComplete(Family),
    /// Read gobgpd's RIB again (a dropped peer is back).
    Relist,
}

#[derive(Debug, Default)]
struct Peer {
    established: bool,
    notifications_sent: u64,
    end_of_rib: BTreeSet<Family>,
    /// Families with graceful restart negotiated (End-of-RIB will come).
    graceful: BTreeSet<Family>,
    /// Its routes were dropped; its paths are ignored until it is back.
    dropped: bool,
}

#[derive(Debug, Default)]
pub struct Peers {
    peers: BTreeMap<String, Peer>,
    /// Families already reported complete on this connection.
    complete: BTreeSet<Family>,
}

impl Peers {
    /// Whether learned paths of `peer` are ignored now (it failed hard and
    /// gobgpd still holds its stale paths).
    pub fn ignores(&self, peer: Option<&str>) -> bool {
        peer.and_then(|p| self.peers.get(p))
            .is_some_and(|p| p.dropped)
    }

    /// A family is not complete yet: stale routes may wait for End-of-RIB.
    pub fn pending(&self) -> bool {
        self.complete.len() < Family::ALL.len()
    }

    /// A peer failed hard and is not back yet.
    pub fn has_dropped(&self) -> bool {
        self.peers.values().any(|p| p.dropped)
    }

    /// A state event: whether the session must ask gobgpd why the peer fell
    /// (it left Established).
    pub fn event(&mut self, address: &str, state: SessionState) -> bool {
        let p = self.peers.entry(address.to_string()).or_default();
        let up = state == SessionState::Established;
        let fell = p.established && !up;
        if fell || (up && !p.established) {
            // A new session sends its End-of-RIB again.
            p.end_of_rib.clear();
        }
        p.established = up;
        fell
    }

    /// Why the peer fell, as gobgpd reports it: a hard failure drops its
    /// routes.
    pub fn fell(&mut self, info: &PeerInfo) -> Vec<PeerAction> {
        let p = self.peers.entry(info.address.clone()).or_default();
        let sent_more = info.notifications_sent > p.notifications_sent;
        p.notifications_sent = info.notifications_sent;
        p.established = info.is_established();
        if p.established || p.dropped {
            return vec![];
        }
        let reason = match &info.down_reason {
            Some(r) if r.is_hard() => r.describe(),
            Some(DownReason::Local) => return vec![],
            // 3.x gives no reason, nor does 4.8's ListPeer (and its log calls
            // a hold expiry with graceful restart negotiated
            // "graceful-restart"): a NOTIFICATION we sent is a failure we
            // reported (hold expiry, BFD's reset), not the peer restarting.
            _ if sent_more => "a NOTIFICATION sent (hold timer expired or BFD down)".to_string(),
            _ => return vec![],
        };
        p.dropped = true;
        p.end_of_rib.clear();
        vec![PeerAction::Drop {
            peer: info.address.clone(),
            reason,
        }]
    }

    /// An End-of-RIB event (4.x).
    pub fn end_of_rib(&mut self, peer: &str, family: Family) -> Vec<PeerAction> {
        let p = self.peers.entry(peer.to_string()).or_default();
        p.end_of_rib.insert(family);
        p.graceful.insert(family);
        let mut out = vec![PeerAction::EndOfRib {
            peer: peer.to_string(),
            family,
        }];
        out.extend(self.returned());
        out.extend(self.completed());
        out
    }

    /// What ListPeer reports, all peers: the End-of-RIB flags (3.x has no
    /// event), failures the events did not show, and completeness.
    pub fn listed(&mut self, infos: &[PeerInfo]) -> Vec<PeerAction> {
        let mut out = Vec::new();
        self.peers
            .retain(|a, _| infos.iter().any(|i| &i.address == a));
        for info in infos {
            let p = self.peers.entry(info.address.clone()).or_default();
            let was_up = p.established;
            p.graceful = info.gr_families.iter().copied().collect();
            if was_up && !info.is_established() {
                out.extend(self.fell(info));
                continue;
            }
            let p = self.peers.entry(info.address.clone()).or_default();
            p.notifications_sent = info.notifications_sent;
            p.established = info.is_established();
            if !p.established {
                continue;
            }
            for f in &info.end_of_rib {
                if p.end_of_rib.insert(*f) {
                    out.push(PeerAction::EndOfRib {
                        peer: info.address.clone(),
                        family: *f,
                    });
                }
            }
        }
        out.extend(self.returned());
        out.extend(self.completed());
        out
    }

    /// Dropped peers that are back for good: established, with End-of-RIB
    /// for every family graceful restart covers (none without it).
    fn returned(&mut self) -> Vec<PeerAction> {
        let mut back = false;
        for p in self.peers.values_mut() {
            if p.dropped && p.established && p.graceful.is_subset(&p.end_of_rib) {
                p.dropped = false;
                back = true;
            }
        }
        if back {
            vec![PeerAction::Relist]
        } else {
            vec![]
        }
    }

    /// Families newly complete: every peer established with its End-of-RIB.
    fn completed(&mut self) -> Vec<PeerAction> {
        let mut out = Vec::new();
        if self.peers.is_empty() {
            return out;
        }
        for f in Family::ALL {
            if self.complete.contains(&f) {
                continue;
            }
            let all = self
                .peers
                .values()
                .all(|p| p.established && !p.dropped && p.end_of_rib.contains(&f));
            if all {
                self.complete.insert(f);
                out.push(PeerAction::RibComplete(f));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addr: &str, state: SessionState) -> PeerInfo {
        PeerInfo {
            address: addr.into(),
            state,
            gr_families: Family::ALL.to_vec(),
            ..PeerInfo::default()
        }
    }

    const A: &str = "192.0.2.2";
    const B: &str = "192.0.2.3";

    fn drops(actions: &[PeerAction]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                PeerAction::Drop { peer, .. } => Some(peer.as_str()),
                _ => None,
            })
            .collect()
    }

    /// 4.x: a hold expiry or BFD's reset drops the peer's routes; a broken
    /// connection (a restart) or gobgpd stopping keeps them.
    #[test]
    fn hard_failures_drop_and_restarts_keep() {
        for (reason, dropped) in [
            (Some(DownReason::HoldTimerExpired), true),
            (
                Some(DownReason::NotificationSent("BFD is down".into())),
                true,
            ),
            (Some(DownReason::ConnectionLost), false),
            (Some(DownReason::GracefulRestart), false),
            (Some(DownReason::Local), false),
            (None, false),
        ] {
            let mut p = Peers::default();
            p.listed(&[info(A, SessionState::Established)]);
            assert!(p.event(A, SessionState::Active), "left Established");
            let mut down = info(A, SessionState::Active);
            down.down_reason = reason.clone();
            let a = p.fell(&down);
            assert_eq!(drops(&a) == [A], dropped, "{reason:?}: {a:?}");
            assert_eq!(p.ignores(Some(A)), dropped);
            assert!(!p.ignores(Some(B)) && !p.ignores(None));
        }
    }

    /// 3.x: no reason, but the NOTIFICATION we sent (hold timer expired)
    /// counts; a peer that just vanished (killed, restarting) does not.
    #[test]
    fn on_3x_a_notification_we_sent_is_a_hard_failure() {
        let mut p = Peers::default();
        let mut up = info(A, SessionState::Established);
        up.notifications_sent = 1;
        p.listed(&[up]);
        p.event(A, SessionState::Active);
        let mut down = info(A, SessionState::Active);
        down.notifications_sent = 1;
        assert!(p.fell(&down).is_empty(), "nothing sent: a restart");
        p.event(A, SessionState::Established);
        p.event(A, SessionState::Active);
        down.notifications_sent = 2;
        assert_eq!(drops(&p.fell(&down)), [A]);
    }

    /// 4.8 logs a hold expiry with graceful restart negotiated as
    /// "graceful-restart" and its ListPeer gives no reason: the NOTIFICATION
    /// we sent decides; a shutdown here (admin down) never drops.
    #[test]
    fn a_notification_we_sent_outweighs_a_graceful_restart_reason() {
        for (reason, dropped) in [
            (Some(DownReason::GracefulRestart), true),
            (Some(DownReason::ConnectionLost), true),
            (Some(DownReason::Local), false),
        ] {
            let mut p = Peers::default();
            p.listed(&[info(A, SessionState::Established)]);
            p.event(A, SessionState::Active);
            let mut down = info(A, SessionState::Active);
            down.down_reason = reason.clone();
            down.notifications_sent = 1;
            assert_eq!(drops(&p.fell(&down)) == [A], dropped, "{reason:?}");
        }
    }

    /// A failure the events missed (a refresh finds the peer down, with a
    /// hard reason) drops too.
    #[test]
    fn a_refresh_finds_a_hard_failure() {
        let mut p = Peers::default();
        p.listed(&[info(A, SessionState::Established)]);
        let mut down = info(A, SessionState::Idle);
        down.down_reason = Some(DownReason::HoldTimerExpired);
        assert_eq!(drops(&p.listed(&[down])), [A]);
    }

    /// A dropped peer is ignored until it is back with its End-of-RIB for
    /// every graceful family; then the RIB is read again.
    #[test]
    fn a_dropped_peer_comes_back_at_its_end_of_rib() {
        let mut p = Peers::default();
        p.listed(&[info(A, SessionState::Established)]);
        p.event(A, SessionState::Idle);
        let mut down = info(A, SessionState::Idle);
        down.down_reason = Some(DownReason::HoldTimerExpired);
        p.fell(&down);
        p.event(A, SessionState::Established);
        assert!(p.ignores(Some(A)), "up, but no End-of-RIB yet");
        let a = p.end_of_rib(A, Family::Ipv4);
        assert!(!a.contains(&PeerAction::Relist));
        assert!(p.ignores(Some(A)));
        let a = p.end_of_rib(A, Family::Ipv6);
        assert!(a.contains(&PeerAction::Relist), "{a:?}");
        assert!(!p.ignores(Some(A)));
        // Without graceful restart there is no End-of-RIB: back when up.
        let mut p = Peers::default();
        let mut plain = info(A, SessionState::Established);
        plain.gr_families.clear();
        p.listed(&[plain.clone()]);
        p.event(A, SessionState::Idle);
        let mut down = plain.clone();
        down.state = SessionState::Idle;
        down.down_reason = Some(DownReason::HoldTimerExpired);
        p.fell(&down);
        assert!(p.listed(&[plain]).contains(&PeerAction::Relist));
        assert!(!p.ignores(Some(A)));
    }

    /// Stale routes: each peer's End-of-RIB clears its own; a family is
    /// complete once every peer has sent it, once per connection.
    #[test]
    fn end_of_rib_per_peer_then_complete_per_family() {
        let mut p = Peers::default();
        let mut a = info(A, SessionState::Established);
        let mut b = info(B, SessionState::Active);
        let acts = p.listed(&[a.clone(), b.clone()]);
        assert!(acts.is_empty(), "{acts:?}");
        assert!(p.pending());
        // 3.x: the flags in ListPeer.
        a.end_of_rib = vec![Family::Ipv4];
        let acts = p.listed(&[a.clone(), b.clone()]);
        assert_eq!(
            acts,
            [PeerAction::EndOfRib {
                peer: A.into(),
                family: Family::Ipv4
            }]
        );
        assert!(
            p.listed(&[a.clone(), b.clone()]).is_empty(),
            "reported once"
        );
        b.state = SessionState::Established;
        p.event(B, SessionState::Established);
        // 4.x: the event.
        let acts = p.end_of_rib(B, Family::Ipv4);
        assert_eq!(
            acts,
            [
                PeerAction::EndOfRib {
                    peer: B.into(),
                    family: Family::Ipv4
                },
                PeerAction::RibComplete(Family::Ipv4)
            ]
        );
        a.end_of_rib = Family::ALL.to_vec();
        b.end_of_rib = Family::ALL.to_vec();
        let acts = p.listed(&[a.clone(), b.clone()]);
        assert!(
            acts.contains(&PeerAction::RibComplete(Family::Ipv6)),
            "{acts:?}"
        );
        assert!(!acts.contains(&PeerAction::RibComplete(Family::Ipv4)));
        assert!(!p.pending() && !p.has_dropped());
        // No peers at all: never complete (the stale time decides).
        let mut none = Peers::default();
        assert!(none.listed(&[]).is_empty());
    }
}
