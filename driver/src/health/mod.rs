//! The health gate (`--health-gate unix:///var/run/docker.sock`, off by
//! default): announce a container's endpoint only while its health check
//! passes.
//!
//! ```text
//! driver ─View─► filter ─gated View─► bgp (announcer)
//!                  ▲ Updates
//! dockerd ─/events, /containers─► classifier
//! ```
//! In: the driver's [`View`] (and, for each joined endpoint, its ID from the
//! driver's state, read through a [`ReadView`] the wiring hands in), and
//! what Docker says about containers: the event stream
//! as hints, `GET /containers/{id}/json` as the truth. Out: the same View
//! with the announcements of held endpoints removed, for the BGP side; the
//! gate's state in [`crate::metrics::HealthGate`]. Only announcements are
//! gated: links, addresses and the accepted pools stay as they are.
//!
//! Docker is never called from inside a Docker request (dockerd holds its
//! locks there): the classifier runs on its own task. The rules:
//! - an endpoint is *held* from the moment it appears in the View until its
//!   container is classified: the filter stands between the driver and the
//!   announcer, so a starting or unhealthy container is never announced,
//!   not even for a moment. A container without a health check is released
//!   as soon as its `start` event has been inspected (the delay is logged);
//! - `healthy` and "no health check" announce; `starting`, `unhealthy` and
//!   "not running" hold;
//! - Docker unreachable: decisions already made stay (no flapping because
//!   the API blinked); an endpoint that was never classified fails open
//!   after [`FAIL_OPEN_AFTER`] of unreachability (announced as without the
//!   gate), logged as a warning and counted; the next sync corrects it;
//! - every verdict Docker gives is persisted in the driver's state (the
//!   endpoint's record; never a fail-open guess), and a restarted driver
//!   starts from those: until Docker answers, it decides as before its
//!   restart, so one that starts before dockerd's API answers withdraws no
//!   healthy endpoint and announces no unhealthy one;
//! - at start, every running container is inspected before the BGP side
//!   gets its first view (for at most `STARTUP_SYNC`): a restarted driver
//!   rebuilds the gate from Docker, replacing what it remembered;
//! - after every (re)connection of the event stream, and every
//!   [`RESYNC_EVERY`], all of them are inspected again, so a missed event
//!   is repaired.
//!
//! The decisions are [`gate`]'s (pure); this file runs the tasks that feed
//! it (the filter between the views, the classifier, the event follower).

pub mod docker;
pub mod gate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::model::names::short_id;
use crate::model::network::host_route;
use crate::model::state::HealthRecord;
use crate::view::View;
use docker::{Container, DockerApi, Hint};
use gate::{Gate, Update, FAIL_OPEN_AFTER, WAITING_RESYNC};

/// Reads the driver's current View from the receiver it is given, and the
/// endpoint behind each of its endpoint announcements (host route → endpoint
/// ID), together: under the driver's lock, under which the driver publishes
/// its View, so that every endpoint announcement of the View is found in the
/// map. Blocking (it takes the driver's lock); the wiring makes it.
pub type ReadView = Arc<
    dyn Fn(&mut watch::Receiver<Arc<View>>) -> (Arc<View>, BTreeMap<IpNet, String>) + Send + Sync,
>;

/// Persists the verdicts that changed (endpoint ID → what Docker last said,
/// `None`: nothing any more) in the driver's state. Blocking (it takes the
/// driver's lock and writes the journal); the wiring makes it.
pub type Persist = Arc<dyn Fn(Vec<(String, Option<HealthRecord>)>) + Send + Sync>;

/// Every running container is inspected again this often.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Deadline of each call to the Docker API.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// `--health-gate`: where the Docker API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    pub socket: PathBuf,
}

impl std::str::FromStr for GateConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<GateConfig, String> {
        match s.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => Ok(GateConfig { socket: p.into() }),
            _ => Err(format!(
                "--health-gate {s:?}: give the Docker API's unix socket, e.g. unix:///var/run/docker.sock"
            )),
        }
    }
}

/// At start, Docker is asked once for so long before the BGP side gets
/// its first view: a restarted driver then announces its healthy endpoints
/// without first withdrawing them (Docker answers in milliseconds; one that
/// does not costs the start this much at most).
const STARTUP_SYNC: Duration = Duration::from_secs(3);

/// Where the gate starts from: the verdicts a previous run persisted
/// (endpoint ID, container, verdict), and where to persist the changes.
pub struct Memory {
    pub remembered: Vec<(String, HealthRecord)>,
    pub persist: Persist,
}

/// Starts the gate between the driver's View (`views`) and the BGP side;
/// answers the gated View the BGP side should follow: decided from the
/// verdicts a previous run persisted, then from one look at Docker's
/// running containers, when Docker answers.
pub async fn spawn(
    cfg: GateConfig,
    read: ReadView,
    mut views: watch::Receiver<Arc<View>>,
    memory: Memory,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> (watch::Receiver<Arc<View>>, tokio::task::JoinHandle<()>) {
    let api = DockerApi::new(cfg.socket.clone(), CALL_TIMEOUT);
    let mut gate = Gate::new(Instant::now());
    if !memory.remembered.is_empty() {
        info!(
            endpoints = memory.remembered.len(),
            "health gate: deciding as before the restart until Docker answers"
        );
    }
    gate.remember(memory.remembered);
    match tokio::time::timeout(STARTUP_SYNC, sync_all(&api)).await {
        Ok(Ok(all)) => {
            info!(containers = all.len(), "health gate: classified the running containers at start");
            gate.apply(Update::Sync(all), Instant::now());
        }
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "health gate: Docker does not answer at start; endpoints are held until it does (fail open after {FAIL_OPEN_AFTER:?})"),
        Err(_) => warn!("health gate: Docker did not answer within {STARTUP_SYNC:?} at start; endpoints are held until it does (fail open after {FAIL_OPEN_AFTER:?})"),
    }
    let (view, routes) = snapshot(&read, &mut views).await;
    let first = gate.filter(&view, &routes, Instant::now());
    let (out_tx, out_rx) = watch::channel(Arc::new(first.view));
    let (upd_tx, upd_rx) = mpsc::channel(1024);
    let want_sync = Arc::new(Notify::new());
    metrics.bgp(|b| {
        b.health.enabled = true;
        b.health.docker = format!("unix://{}", cfg.socket.display());
    });
    info!(docker = %cfg.socket.display(), "health gate on: endpoints of containers with a health check are announced only while healthy");
    let classifier = tokio::spawn(classify(
        api,
        upd_tx,
        want_sync.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    let persist = memory.persist;
    let filter = tokio::spawn(async move {
        filter_loop(
            gate, read, persist, views, out_tx, upd_rx, want_sync, metrics, stop,
        )
        .await;
        let _ = classifier.await;
    });
    (out_rx, filter)
}

/// The driver's current View and its endpoints' routes, read together
/// under the driver's lock (the driver publishes its View under that lock),
/// so that every endpoint announcement of the View is found in the map: an
/// endpoint that left in between cannot slip through as "not an endpoint".
async fn snapshot(
    read: &ReadView,
    views: &mut watch::Receiver<Arc<View>>,
) -> (Arc<View>, BTreeMap<IpNet, String>) {
    // Marked seen first: a View published after this wakes the caller again.
    views.borrow_and_update();
    let read = read.clone();
    let mut rx = views.clone();
    let read = tokio::task::spawn_blocking(move || read(&mut rx)).await;
    match read {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "health gate: could not read the driver's state; holding every endpoint");
            let view = views.borrow().clone();
            let all = view
                .local_endpoints
                .iter()
                .map(|a| (host_route(*a), a.to_string()))
                .collect();
            (view, all)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn filter_loop(
    mut gate: Gate,
    read: ReadView,
    persist: Persist,
    mut views: watch::Receiver<Arc<View>>,
    out: watch::Sender<Arc<View>>,
    mut updates: mpsc::Receiver<Update>,
    want_sync: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut view, mut routes) = snapshot(&read, &mut views).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ask = Instant::now();
    loop {
        let changes = gate.take_changes();
        if !changes.is_empty() {
            let persist = persist.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || persist(changes)).await {
                warn!(error = %e, "health gate: could not persist the verdicts");
            }
        }
        let now = Instant::now();
        let f = gate.filter(&view, &routes, now);
        for (e, waited) in &f.released {
            info!(
                endpoint = short_id(e),
                held_ms = waited.as_millis() as u64,
                "health gate: released for announcement"
            );
        }
        // An endpoint is normally classified by its container's `start`
        // event; one that waits longer than that makes Docker be asked.
        let overdue = gate.longest_wait(now).is_some_and(|w| w >= WAITING_RESYNC);
        if overdue && gate.api_up() && now.duration_since(last_ask) >= WAITING_RESYNC {
            last_ask = now;
            want_sync.notify_one();
        }
        metrics.bgp(|b| {
            b.health.api_connected = gate.api_up();
            b.health.gated = f.held.len();
            b.health.held = f
                .held
                .iter()
                .map(|(e, why)| (short_id(e).to_string(), why.clone()))
                .collect();
            b.health.transitions = gate.transitions;
            b.health.fail_open = gate.fail_open;
        });
        out.send_if_modified(|cur| {
            if **cur != f.view {
                *cur = Arc::new(f.view);
                true
            } else {
                false
            }
        });
        tokio::select! {
            r = views.changed() => {
                if r.is_err() {
                    return;
                }
                (view, routes) = snapshot(&read, &mut views).await;
            }
            u = updates.recv() => match u {
                Some(u) => {
                    gate.apply(u, Instant::now());
                    // Take whatever else is queued before deciding again.
                    while let Ok(u) = updates.try_recv() {
                        gate.apply(u, Instant::now());
                    }
                }
                None => return,
            },
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Internal messages of the classifier.
enum Feed {
    Hint(Hint),
    Connected,
    Lost(String),
}

async fn classify(
    api: DockerApi,
    updates: mpsc::Sender<Update>,
    want_sync: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let (feed_tx, mut feed) = mpsc::channel::<Feed>(1024);
    let follower = tokio::spawn(follow(api.clone(), feed_tx, metrics.clone()));
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let error = |e: &anyhow::Error| {
        metrics.bgp(|b| {
            b.health.api_errors += 1;
            b.health.last_error = Some(format!("{e:#}"));
        });
    };
    loop {
        let sync = tokio::select! {
            _ = stop.changed() => break,
            f = feed.recv() => match f {
                None => break,
                Some(Feed::Connected) => {
                    let _ = updates.send(Update::ApiUp).await;
                    true
                }
                Some(Feed::Lost(why)) => {
                    let _ = updates.send(Update::ApiDown(why)).await;
                    false
                }
                Some(Feed::Hint(Hint::Gone(id))) => {
                    let _ = updates.send(Update::Gone(id)).await;
                    false
                }
                Some(Feed::Hint(Hint::Container(id))) => {
                    match api.inspect(&id).await {
                        Ok(Some(c)) => { let _ = updates.send(Update::Container(c)).await; }
                        Ok(None) => { let _ = updates.send(Update::Gone(id)).await; }
                        Err(e) => {
                            warn!(container = short_id(&id), error = %format!("{e:#}"), "health gate: cannot inspect the container; the next sync retries");
                            error(&e);
                        }
                    }
                    false
                }
            },
            _ = want_sync.notified() => true,
            _ = resync.tick() => true,
        };
        if sync {
            match sync_all(&api).await {
                Ok(all) => {
                    debug!(containers = all.len(), "health gate: synced with Docker");
                    let _ = updates.send(Update::Sync(all)).await;
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "health gate: cannot list Docker's containers");
                    error(&e);
                }
            }
        }
    }
    follower.abort();
}

/// Every running container, inspected.
async fn sync_all(api: &DockerApi) -> anyhow::Result<Vec<Container>> {
    let mut all = Vec::new();
    for id in api.running().await? {
        if let Some(c) = api.inspect(&id).await? {
            all.push(c);
        }
    }
    Ok(all)
}

/// Follows Docker's event stream, reconnecting with backoff.
async fn follow(api: DockerApi, feed: mpsc::Sender<Feed>, metrics: Arc<Metrics>) {
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        let (hint_tx, mut hint_rx) = mpsc::channel::<Hint>(256);
        let mut connected = false;
        let pump = async {
            while let Some(h) = hint_rx.recv().await {
                if feed.send(Feed::Hint(h)).await.is_err() {
                    break;
                }
            }
        };
        let conn_feed = feed.clone();
        let run = api.follow_events(hint_tx, || {
            connected = true;
            let _ = conn_feed.try_send(Feed::Connected);
        });
        let (r, ()) = tokio::join!(run, pump);
        if feed.is_closed() {
            return;
        }
        let why = match r {
            Ok(()) => "the event stream ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        metrics.bgp(|b| {
            b.health.api_errors += 1;
            b.health.last_error = Some(why.clone());
        });
        if connected {
            backoff = BACKOFF_MIN;
            logged_down = false;
        }
        if !logged_down {
            warn!(docker = %api.socket().display(), error = %why,
                "health gate: Docker API unreachable; decisions made stay, endpoints never classified fail open after {FAIL_OPEN_AFTER:?}; retrying");
            logged_down = true;
        } else {
            debug!(error = %why, "health gate: Docker API still unreachable");
        }
        let _ = feed.send(Feed::Lost(why)).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_flag_parses() {
        assert_eq!(
            "unix:///run/docker.sock"
                .parse::<GateConfig>()
                .unwrap()
                .socket,
            PathBuf::from("/run/docker.sock")
        );
        assert!("docker.sock".parse::<GateConfig>().is_err());
    }
}
