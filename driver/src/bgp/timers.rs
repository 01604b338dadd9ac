//! What runs beside the BGP session on its own clock.
//!
//! In: the learner (shared with the session) and a gobgpd client. Out: stale
//! routes removed when their time is up, whatever the session is doing
//! ([`expire_stale`], removals to the installer), and a lost gobgpd
//! reported within [`LIVENESS_EVERY`] plus the call deadline
//! ([`check_liveness`]); both run as tasks the session aborts when it goes
//! ([`AbortOnDrop`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gobgp::{self, Client};
use super::learner::{lock_learner, Learner};
use crate::rib::installer;

/// How often the host's addresses are re-read (in steps of this) and at most
/// how long a stale route outlives its deadline.
pub const TICK: Duration = Duration::from_secs(1);

/// Removes stale routes when their time is up, on its own timer: at the
/// earliest stale deadline, and at least every [`TICK`] (a disconnection
/// sets new deadlines). The removals go to `send` (the installer).
pub async fn expire_stale(learner: Arc<Mutex<Learner>>, send: impl Fn(Vec<installer::Change>)) {
    loop {
        let cap = Instant::now() + TICK;
        let next = lock_learner(&learner)
            .next_expiry()
            .map_or(cap, |t| t.min(cap));
        tokio::time::sleep_until(next.into()).await;
        let changes = lock_learner(&learner).expire(Instant::now());
        if !changes.is_empty() {
            send(changes);
        }
    }
}

/// How often the liveness check asks gobgpd something.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// Asks gobgpd for its global config every [`LIVENESS_EVERY`]; reports on
/// `lost` the first answer that fails or overruns `limit`.
pub async fn check_liveness(
    mut client: Client,
    limit: Duration,
    lost: tokio::sync::oneshot::Sender<String>,
) {
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        let ask = client.get_bgp(gobgp::apipb::GetBgpRequest {});
        if let Err(e) = gobgp::deadline("GetBgp", limit, ask).await {
            let _ = lost.send(format!("liveness check: {}", gobgp::describe(&e)));
            return;
        }
    }
}

/// Aborts a spawned task when dropped (the task's owner went away).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::policy::{ParentInfo, PolicyInputs};
    use crate::kernel::Route;
    use crate::metrics::Metrics;
    use installer::Change;
    use ipnet::IpNet;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The liveness check reports a gobgpd that accepts but never answers
    /// within its interval plus the call deadline.
    #[tokio::test]
    async fn liveness_check_reports_a_silent_gobgpd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let _held = AbortOnDrop(tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        }));
        let client = gobgp::connect(&gobgp::GobgpAddr::Unix(path), Duration::from_secs(1))
            .await
            .unwrap();
        let limit = Duration::from_millis(500);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = Instant::now();
        let _check = AbortOnDrop(tokio::spawn(check_liveness(client, limit, tx)));
        let why = tokio::time::timeout(LIVENESS_EVERY + limit + Duration::from_secs(1), rx)
            .await
            .expect("reported in time")
            .expect("a reason");
        assert!(why.contains("GetBgp"), "{why}");
        assert!(start.elapsed() >= LIVENESS_EVERY + limit);
    }

    /// The expiry timer needs nothing from the session: a route adopted with
    /// a 300 ms stale time is removed right after its deadline, whatever the
    /// session is (not) doing.
    #[tokio::test]
    async fn stale_routes_expire_on_their_own_timer() {
        let stale = Duration::from_millis(300);
        let mut learner = Learner::new(73, 100, stale, Arc::new(Metrics::default()));
        let _ = learner.set_inputs(PolicyInputs {
            pools: vec![n("10.1.0.0/16")],
            parents: vec![ParentInfo {
                name: "eth1".into(),
                index: 7,
                nets: vec![n("192.0.2.0/24")],
            }],
            ..PolicyInputs::default()
        });
        let route = Route {
            dst: n("10.1.2.0/24"),
            via: "192.0.2.2".parse().ok(),
            oif: Some(7),
            protocol: 73,
        };
        let start = Instant::now();
        assert_eq!(learner.adopt(&[route], start), vec![]);
        let learner = Arc::new(Mutex::new(learner));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _timer = AbortOnDrop(tokio::spawn(expire_stale(learner, move |c| {
            let _ = tx.send(c);
        })));
        let changes = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("removed within 3 s")
            .expect("timer alive");
        let took = start.elapsed();
        assert_eq!(changes, vec![Change::Remove(route.dst)]);
        assert!(
            took >= stale && took < stale + Duration::from_millis(500),
            "removed after {took:?}, stale time {stale:?}"
        );
    }
}
