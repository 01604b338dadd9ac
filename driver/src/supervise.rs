//! Supervision of the driver's long-running tasks: the BGP side and the
//! health gate. Announcements must never freeze silently.
//!
//! In: a task to run (the BGP side: made again on each start), the shutdown
//! signal. Out: a task that ends before shutdown (returned or panicked) is
//! logged as an error and counted (`task_restarts` in [`Metrics`]); the BGP
//! side is started again after [`Budget::backoff`], at most [`Budget::max`] times
//! within [`Budget::window`]; past that, or for a task that cannot be
//! restarted in place (the health gate: the BGP side reads its output), the
//! reason goes to `fatal` and the driver exits with an error, so that its
//! service manager (systemd, dockerd for the plugin) starts it again: a
//! restart of the driver keeps containers and routes (hitless).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::error;

use crate::metrics::Metrics;

/// How many restarts are tried before giving up, and the wait before each.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max: usize,
    pub window: Duration,
    pub backoff: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max: 5,
            window: Duration::from_secs(600),
            backoff: Duration::from_secs(1),
        }
    }
}

/// How a supervised task ended.
fn ended(r: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "returned".to_string(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("panicked: {msg}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

/// Runs the task `start` makes until `shutdown` is set; restarts it when it
/// ends early, within `budget`; else sends the reason to `fatal`.
pub async fn restarting<F, Fut>(
    name: &'static str,
    mut start: F,
    budget: Budget,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    fatal: mpsc::Sender<String>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        let mut task = tokio::spawn(start());
        let result = tokio::select! {
            r = &mut task => r,
            _ = shutdown.changed() => {
                let _ = task.await;
                return;
            }
        };
        if *shutdown.borrow() {
            return;
        }
        let how = ended(result);
        let now = Instant::now();
        restarts.retain(|t| now.duration_since(*t) < budget.window);
        if restarts.len() >= budget.max {
            let why = format!(
                "the {name} task {how}, after {} restarts within {} s; giving up",
                restarts.len(),
                budget.window.as_secs()
            );
            error!(task = name, "{why}");
            let _ = fatal.send(why).await;
            return;
        }
        restarts.push(now);
        metrics.bgp(|b| *b.task_restarts.entry(name).or_default() += 1);
        error!(
            task = name,
            "the {name} task {how}; starting it again in {:?} (its routes stay in the kernel)",
            budget.backoff
        );
        tokio::select! {
            _ = tokio::time::sleep(budget.backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Watches a task that cannot be restarted in place: if it ends before
/// `shutdown`, the reason goes to `fatal` (the driver exits).
pub async fn fatal_on_end(
    name: &'static str,
    task: tokio::task::JoinHandle<()>,
    mut shutdown: watch::Receiver<bool>,
    fatal: mpsc::Sender<String>,
) {
    let mut task = task;
    let result = tokio::select! {
        r = &mut task => r,
        _ = shutdown.changed() => {
            let _ = task.await;
            return;
        }
    };
    if *shutdown.borrow() {
        return;
    }
    let why = format!(
        "the {name} task {}; without it announcements would freeze",
        ended(result.map(Ok))
    );
    error!(task = name, "{why}");
    let _ = fatal.send(why).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn fatal_within(rx: &mut mpsc::Receiver<String>, d: Duration) -> Option<String> {
        tokio::time::timeout(d, rx.recv()).await.ok().flatten()
    }

    /// A task that keeps panicking is restarted within the budget, then
    /// the driver is told to exit, naming the task and the panic.
    #[tokio::test]
    async fn a_task_that_keeps_ending_is_restarted_then_the_driver_exits() {
        let metrics = Arc::new(Metrics::default());
        let (_stop_tx, stop) = watch::channel(false);
        let (fatal_tx, mut fatal) = mpsc::channel(1);
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        let budget = Budget {
            max: 3,
            window: Duration::from_secs(600),
            backoff: Duration::from_millis(10),
        };
        tokio::spawn(restarting(
            "bgp",
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                async { panic!("boom") }
            },
            budget,
            stop,
            metrics.clone(),
            fatal_tx,
        ));
        let why = fatal_within(&mut fatal, Duration::from_secs(60))
            .await
            .expect("told to exit");
        assert!(
            why.contains("bgp") && why.contains("panicked: boom"),
            "{why}"
        );
        assert_eq!(starts.load(Ordering::SeqCst), 4);
        assert_eq!(metrics.bgp_snapshot().task_restarts.get("bgp"), Some(&3));
    }

    /// A task that returns while the driver runs is an end like a panic.
    #[tokio::test]
    async fn a_health_task_that_returns_makes_the_driver_exit() {
        let (_stop_tx, stop) = watch::channel(false);
        let (fatal_tx, mut fatal) = mpsc::channel(1);
        let task = tokio::spawn(async {});
        tokio::spawn(fatal_on_end("health gate", task, stop, fatal_tx));
        let why = fatal_within(&mut fatal, Duration::from_secs(5))
            .await
            .expect("told to exit");
        assert!(why.contains("health gate task returned"), "{why}");
    }

    /// At shutdown, tasks that end are no reason to exit or restart.
    #[tokio::test]
    async fn shutdown_ends_supervision_quietly() {
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop) = watch::channel(false);
        let (fatal_tx, mut fatal) = mpsc::channel(1);
        let sup = tokio::spawn(restarting(
            "bgp",
            {
                let stop = stop.clone();
                move || {
                    let mut stop = stop.clone();
                    async move {
                        let _ = stop.changed().await;
                        Ok(())
                    }
                }
            },
            Budget::default(),
            stop.clone(),
            metrics.clone(),
            fatal_tx.clone(),
        ));
        let task = tokio::spawn({
            let mut stop = stop.clone();
            async move {
                let _ = stop.changed().await;
            }
        });
        let watch = tokio::spawn(fatal_on_end("health gate", task, stop, fatal_tx));
        stop_tx.send(true).unwrap();
        sup.await.unwrap();
        watch.await.unwrap();
        assert!(fatal.try_recv().is_err());
        assert!(metrics.bgp_snapshot().task_restarts.is_empty());
    }
}
