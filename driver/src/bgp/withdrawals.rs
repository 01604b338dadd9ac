//! Withdrawals, sorted by whether the peer that withdrew is still there.
//!
//! In: a batch of learned paths from gobgpd's event stream, and gobgpd to
//! ask about the peer that withdrew (its session's state from a peer-only
//! watch where the line has one, else ListPeer). Out: the paths to apply now
//! (announcements, withdrawals of peers still up, or of peers that went
//! down for a reason gobgpd names and that is not its own shutdown) and
//! withdrawals held for [`SESSION_LOSS_HOLD`] ([`HeldWithdrawals`]): when
//! gobgpd itself shuts down it drops every peer before our stream, and held
//! withdrawals then become stale routes instead of an outage.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use tracing::debug;

use super::gobgp::{DownReason, GobgpApi, LearnedPath, PeerInfo};

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
pub async fn sort<C: GobgpApi>(
    client: &mut C,
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
async fn at_once<C: GobgpApi>(client: &mut C, peer: &str) -> bool {
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
    use crate::bgp::gobgp_api::{
        EventStream, Family, GlobalInfo, OwnPath, PeerNextHop6, PeerSettings, RibStream,
        StartSettings,
    };
    use tonic::Status;

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

    /// A gobgpd that answers the peer-state read and ListPeer as told,
    /// and counts how often each was asked.
    struct Fake {
        probe: Probe,
        peer: Result<PeerInfo, ()>,
        probes: usize,
        lists: usize,
    }

    #[derive(Clone, Copy)]
    enum Probe {
        Up,
        NotUp,
        /// 3.x: no cheap read.
        Absent,
        Late,
        Fails,
    }

    fn fake(probe: Probe, state: SessionState, reason: Option<DownReason>) -> Fake {
        let peer = PeerInfo {
            address: "192.0.2.2".into(),
            state,
            down_reason: reason,
            ..PeerInfo::default()
        };
        Fake {
            probe,
            peer: Ok(peer),
            probes: 0,
            lists: 0,
        }
    }

    fn no(what: &str) -> Status {
        Status::unimplemented(format!("the fake does not {what}"))
    }

    impl GobgpApi for Fake {
        async fn get_bgp(&mut self) -> Result<GlobalInfo, Status> {
            Err(no("get_bgp"))
        }
        async fn start_bgp(&mut self, _: &StartSettings) -> Result<(), Status> {
            Err(no("start_bgp"))
        }
        async fn stop_bgp(&mut self, _: bool) -> Result<(), Status> {
            Err(no("stop_bgp"))
        }
        async fn list_peers(&mut self, _: Option<&str>) -> Result<Vec<PeerInfo>, Status> {
            self.lists += 1;
            self.peer
                .clone()
                .map(|p| vec![p])
                .map_err(|_| no("answer ListPeer"))
        }
        async fn peer_up(&mut self, _: &str) -> Result<Option<bool>, Status> {
            self.probes += 1;
            match self.probe {
                Probe::Up => Ok(Some(true)),
                Probe::NotUp => Ok(Some(false)),
                Probe::Absent => Ok(None),
                Probe::Late => Err(Status::deadline_exceeded("late")),
                Probe::Fails => Err(Status::unavailable("stream closed")),
            }
        }
        async fn add_peer(&mut self, _: &PeerSettings) -> Result<(), Status> {
            Err(no("add_peer"))
        }
        async fn update_peer(&mut self, _: &PeerSettings) -> Result<(), Status> {
            Err(no("update_peer"))
        }
        async fn delete_peer(&mut self, _: &str) -> Result<(), Status> {
            Err(no("delete_peer"))
        }
        async fn add_path(&mut self, _: &OwnPath, _: u32) -> Result<Vec<u8>, Status> {
            Err(no("add_path"))
        }
        async fn add_paths(&mut self, _: &[OwnPath], _: u32, _: Duration) -> Result<(), Status> {
            Err(no("add_paths"))
        }
        async fn delete_path(&mut self, _: &OwnPath, _: u32) -> Result<(), Status> {
            Err(no("delete_path"))
        }
        async fn delete_path_uuid(&mut self, _: Family, _: &[u8]) -> Result<(), Status> {
            Err(no("delete_path_uuid"))
        }
        async fn delete_family(&mut self, _: Family) -> Result<(), Status> {
            Err(no("delete_family"))
        }
        async fn open_rib(&mut self, _: Family, _: &[IpNet]) -> Result<RibStream, Status> {
            Err(no("open_rib"))
        }
        async fn watch(&mut self, _: bool) -> Result<EventStream, Status> {
            Err(no("watch"))
        }
        async fn honour_graceful_shutdown(&mut self) -> Result<(), Status> {
            Err(no("honour_graceful_shutdown"))
        }
        async fn export_only_own_paths(&mut self, _: &[PeerNextHop6]) -> Result<(), Status> {
            Err(no("export_only_own_paths"))
        }
    }

    fn withdrawal(prefix: &str, peer: Option<&str>) -> LearnedPath {
        LearnedPath {
            prefix: prefix.parse().unwrap(),
            next_hop: None,
            withdraw: true,
            peer: peer.map(String::from),
            as_path: vec![],
        }
    }

    /// What [`sort`] applies now of two withdrawals from B, and how often
    /// it asked each way.
    async fn sorted(mut f: Fake) -> (usize, bool, usize, usize) {
        let mut held = HeldWithdrawals::default();
        let paths = vec![
            withdrawal("10.2.1.1/32", Some("192.0.2.2")),
            withdrawal("10.2.1.2/32", Some("192.0.2.2")),
        ];
        let now = sort(&mut f, paths, &mut held).await.unwrap();
        (now.len(), held.next_deadline().is_some(), f.probes, f.lists)
    }

    /// The session read as up: at once, without ListPeer; read once per
    /// batch and peer.
    #[tokio::test]
    async fn a_session_read_as_up_applies_at_once_without_listpeer() {
        let f = fake(Probe::Up, SessionState::Idle, Some(DownReason::Local));
        assert_eq!(sorted(f).await, (2, false, 1, 0));
    }

    /// Not up: ListPeer decides, with its reason (gobgpd's own stop holds,
    /// a BFD reset does not); 3.x (no read) asks ListPeer alone.
    #[tokio::test]
    async fn a_session_not_up_is_asked_of_listpeer() {
        let local = fake(Probe::NotUp, SessionState::Idle, Some(DownReason::Local));
        assert_eq!(sorted(local).await, (0, true, 1, 1));
        let bfd = Some(DownReason::NotificationSent("BFD is down".into()));
        let reset = fake(Probe::NotUp, SessionState::Idle, bfd);
        assert_eq!(sorted(reset).await, (2, false, 1, 1));
        let v3 = fake(Probe::Absent, SessionState::Established, None);
        assert_eq!(sorted(v3).await, (2, false, 1, 1));
        let v3_down = fake(Probe::Absent, SessionState::Active, None);
        assert_eq!(sorted(v3_down).await, (0, true, 1, 1));
    }

    /// A late read holds, as a late ListPeer did; a failed read falls back
    /// to ListPeer, and a failed ListPeer holds.
    #[tokio::test]
    async fn a_late_read_holds_and_a_failed_one_asks_listpeer() {
        let late = fake(Probe::Late, SessionState::Established, None);
        assert_eq!(sorted(late).await, (0, true, 1, 0));
        let fails = fake(Probe::Fails, SessionState::Established, None);
        assert_eq!(sorted(fails).await, (2, false, 1, 1));
        let mut both = fake(Probe::Fails, SessionState::Established, None);
        both.peer = Err(());
        assert_eq!(sorted(both).await, (0, true, 1, 1));
    }

    /// A withdrawal naming no peer is not read from a watch: ListPeer.
    #[tokio::test]
    async fn a_withdrawal_without_a_peer_asks_listpeer() {
        let mut f = fake(Probe::Up, SessionState::Established, None);
        let mut held = HeldWithdrawals::default();
        let now = sort(&mut f, vec![withdrawal("10.2.1.1/32", None)], &mut held)
            .await
            .unwrap();
        assert_eq!((now.len(), f.probes, f.lists), (1, 0, 1));
    }
}
