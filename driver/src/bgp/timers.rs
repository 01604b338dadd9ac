//! What runs beside the BGP session on its own clock.
//!
//! In: a gobgpd client. Out: a lost gobgpd reported within
//! [`LIVENESS_EVERY`] plus the call deadline ([`check_liveness`]), run as a
//! task the session aborts when it goes ([`AbortOnDrop`]). (Stale routes
//! expire on the learner's thread: [`super::learning`].)

use std::time::Duration;

use super::gobgp::{self, Gobgp, GobgpApi};

/// How often the host's addresses are re-read (in steps of this) and at most
/// how long a stale route outlives its deadline.
pub const TICK: Duration = Duration::from_secs(1);

/// How often the liveness check asks gobgpd something.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// Asks gobgpd for its global config every [`LIVENESS_EVERY`]; reports on
/// `lost` the first answer that fails or overruns the client's deadline.
pub async fn check_liveness(mut client: Gobgp, lost: tokio::sync::oneshot::Sender<String>) {
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        if let Err(e) = client.get_bgp().await {
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
    use std::time::Instant;

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
        let limit = Duration::from_millis(500);
        let ch = gobgp::channel(&gobgp::GobgpAddr::Unix(path), Duration::from_secs(1))
            .await
            .unwrap();
        // A client as if detected (detection itself would time out here).
        let client = Gobgp::V3(crate::bgp::gobgp_v3::V3::new(ch, limit));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = Instant::now();
        let _check = AbortOnDrop(tokio::spawn(check_liveness(client, tx)));
        let why = tokio::time::timeout(LIVENESS_EVERY + limit + Duration::from_secs(1), rx)
            .await
            .expect("reported in time")
            .expect("a reason");
        assert!(why.contains("GetBgp"), "{why}");
        assert!(start.elapsed() >= LIVENESS_EVERY + limit);
    }
}
