//! Connecting to gobgpd, again and again: the BGP side's outer loop.
//!
//! In: the shutdown signal, gobgpd's address, and the View (kept applied to
//! the learner's inputs while no connection is up). Out: each connection
//! handed to [`super::connection`] once the API line it speaks is known
//! (logged when new or changed, in status, and refused when the
//! configuration needs what the line lacks: [`RunError::Refused`]); the
//! learner told when a connection ends; failed attempts retried with
//! exponential backoff (200 ms to 5 s), in status and logged sparsely.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Bgp, Ended, RunError};
use crate::bgp::gobgp::{self, ApiLine, Gobgp};
use crate::bgp::learning::LearnerGone;
use crate::bgp::speaker;

impl Bgp {
    /// Runs until `shutdown` resolves (`Ok`). Fails when gobgpd's line
    /// cannot honour the configuration (BFD against a 3.x gobgpd:
    /// [`RunError::Refused`], the driver must not run then), or when the
    /// learner's thread dies ([`RunError::Failed`]: the supervisor decides
    /// what next). Stale routes expire on the learner's own timer: nothing
    /// the session awaits (a connect, a call to a stuck gobgpd) can hold
    /// them back.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
        #[cfg(test)]
        if super::PANIC_AT_START.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("BGP task: panic asked by a test");
        }
        if self.cfg.gobgp.is_tcp() {
            warn!(gobgp = %self.cfg.gobgp, "{}", gobgp::TCP_WARNING);
        }
        // The policy needs the host's facts before it can judge the routes
        // a previous run left.
        let gone = |_| RunError::Failed("the learner's thread ended".to_string());
        self.refresh_host().await.map_err(gone)?;
        let adopted = std::mem::take(&mut self.adopted);
        self.learner
            .adopt(adopted, Instant::now())
            .await
            .map_err(gone)?;
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match Gobgp::connect(&self.cfg.gobgp, self.cfg.call_timeout).await {
                Ok(client) => {
                    self.detected(client.line()).map_err(RunError::Refused)?;
                    self.session_up = false;
                    let result = self.session(client, &mut shutdown).await;
                    self.metrics.bgp(|b| {
                        b.connected = false;
                        b.peers.clear();
                    });
                    if matches!(result, Ended::LearnerGone) {
                        return Err(gone(LearnerGone));
                    }
                    self.learner
                        .disconnected(Instant::now())
                        .await
                        .map_err(gone)?;
                    match result {
                        Ended::Shutdown => return Ok(()),
                        Ended::LearnerGone => unreachable!("returned above"),
                        // The session was up: say once that it is lost.
                        Ended::Lost(e) if self.session_up => {
                            warn!(gobgp = %self.cfg.gobgp, error = %e, stale_secs = self.cfg.stale_time.as_secs(), "lost gobgpd; keeping learned routes while retrying");
                            self.metrics.bgp(|b| b.last_error = Some(e.clone()));
                            failures = 0;
                            backoff = Duration::from_millis(200);
                        }
                        // It never came up (gobgpd accepts but does not answer):
                        // a failed attempt like any other, logged sparsely.
                        Ended::Lost(e) => self.attempt_failed(&mut failures, e),
                    }
                }
                Err(e) => self.attempt_failed(&mut failures, format!("connect: {e}")),
            }
            // Wait out the backoff while keeping the policy inputs current.
            let until = tokio::time::Instant::now() + backoff;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.changed() => return Ok(()),
                    r = self.view.changed() => {
                        if r.is_err() { return Ok(()); }
                        self.apply_inputs().await.map_err(gone)?;
                    }
                }
            }
        }
    }

    /// Notes the line gobgpd speaks (logged when it is new or changed, as
    /// after an upgrade) and refuses settings it cannot honour.
    fn detected(&mut self, line: ApiLine) -> Result<(), String> {
        if self.line != Some(line) {
            let api = match line {
                ApiLine::V3 => "3.x (apipb.GobgpApi)",
                ApiLine::V4 => "4.x (api.GoBgpService)",
            };
            info!(gobgp = %self.cfg.gobgp, api = %line, "gobgpd speaks GoBGP's {api} API");
            self.line = Some(line);
            self.metrics.bgp(|b| b.api = Some(line.name().to_string()));
        }
        speaker::refuse(&self.cfg.speaker, line)
    }

    fn attempt_failed(&self, failures: &mut u32, msg: String) {
        *failures += 1;
        if *failures == 1 || *failures % 30 == 0 {
            warn!(gobgp = %self.cfg.gobgp, error = %msg, attempts = *failures, "gobgpd is not reachable; retrying with backoff (Docker requests are still served)");
        }
        self.metrics.bgp(|b| b.last_error = Some(msg));
    }
}
