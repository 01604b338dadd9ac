//! The IPAM's background work, one loop per driver: compares the held
//! blocks with etcd (at start and every minute), writes the usage mirror
//! (every few seconds), releases blocks empty for the grace period (every
//! minute) and probes etcd (every few seconds) so that status and
//! `/metrics` say whether the store answers.
//!
//! In: the [`Ipam`], the [`Intervals`], a stop signal. Out: calls on the
//! Ipam and log lines when etcd goes away or comes back, when a block is
//! adopted, lost or released. While the probe fails, the work that needs
//! etcd waits for the next round instead of queueing behind a dead store:
//! a `docker run` that needs a new block meets one deadline, not several.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::store::Store;
use super::Ipam;

/// How often each piece of work runs.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    pub probe: Duration,
    pub usage: Duration,
    pub reconcile: Duration,
    pub idle: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            probe: Duration::from_secs(5),
            usage: Duration::from_secs(5),
            reconcile: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

impl Intervals {
    /// The defaults, with idle blocks looked for often enough that a block
    /// goes within about 1.5 times a short grace period (`--ipam-grace`):
    /// every grace/2, at least every second, at most every minute.
    pub fn for_grace(grace: Duration) -> Intervals {
        let d = Intervals::default();
        Intervals {
            idle: (grace / 2).clamp(Duration::from_secs(1), d.idle),
            ..d
        }
    }
}

/// Runs until `stop` turns true.
pub async fn run<S: Store + 'static>(
    ipam: Arc<Ipam<S>>,
    every: Intervals,
    mut stop: watch::Receiver<bool>,
) {
    let tick = |d: Duration| {
        let mut i = tokio::time::interval(d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    };
    let (mut probe, mut usage, mut reconcile, mut idle) = (
        tick(every.probe),
        tick(every.usage),
        tick(every.reconcile),
        tick(every.idle),
    );
    let mut up = None;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break;
                }
            }
            _ = probe.tick() => {
                let now_up = match ipam.ping().await {
                    Ok(()) => true,
                    Err(e) => {
                        if up != Some(false) {
                            warn!(error = %e, "etcd does not answer: running containers and addresses from held blocks are not affected; new blocks and new pools wait for it");
                        }
                        false
                    }
                };
                if now_up && up == Some(false) {
                    info!("etcd answers again");
                }
                up = Some(now_up);
            }
            _ = usage.tick(), if up == Some(true) => {
                match ipam.sync_usage().await {
                    Ok(0) => {}
                    Ok(n) => debug!(records = n, "usage mirror written"),
                    Err(e) => debug!(error = %e, "usage mirror not written (tried again later)"),
                }
            }
            _ = reconcile.tick(), if up == Some(true) => {
                match ipam.reconcile().await {
                    Ok(r) => {
                        for b in &r.adopted {
                            info!(block = %b, "adopted a block etcd says this host holds");
                        }
                        for b in &r.lost {
                            warn!(block = %b, "etcd no longer gives this host the block: its addresses in use are strays now");
                        }
                    }
                    Err(e) => debug!(error = %e, "reconcile with etcd failed (tried again later)"),
                }
            }
            _ = idle.tick(), if up == Some(true) => {
                match ipam.release_idle_blocks(SystemTime::now()).await {
                    Ok(released) => {
                        for b in released {
                            info!(block = %b, "released a block empty for the grace period");
                        }
                    }
                    Err(e) => debug!(error = %e, "releasing idle blocks failed (tried again later)"),
                }
            }
        }
    }
}
