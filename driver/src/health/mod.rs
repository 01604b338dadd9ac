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
//! driver's state), and what Docker says about containers: the event stream
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
//! - at start, every running container is inspected before the BGP side
//!   gets its first view (for at most `STARTUP_SYNC`): a restarted driver
//!   rebuilds the gate from Docker and neither withdraws a healthy endpoint
//!   nor announces an unhealthy one meanwhile;
//! - after every (re)connection of the event stream, and every
//!   [`RESYNC_EVERY`], all of them are inspected again, so a missed event
//!   is repaired.

pub mod docker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::driver::{Driver, View};
use crate::metrics::Metrics;
use crate::model::network::{host_route, Announce};
use crate::model::state::State;
use docker::{Container, DockerApi, Hint};

/// Endpoints never classified are announced after Docker has been
/// unreachable this long (fail open; see the module docs).
pub const FAIL_OPEN_AFTER: Duration = Duration::from_secs(10);
/// Every running container is inspected again this often.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Deadline of each call to the Docker API.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An endpoint waiting this long for its first classification (its
/// container's `start` event did not classify it) makes the classifier
/// inspect every running container, at most this often.
const WAITING_RESYNC: Duration = Duration::from_secs(2);

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

/// What Docker says about an endpoint's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Running, no health check: announced as without the gate.
    NoCheck,
    Healthy,
    Starting,
    Unhealthy,
}

impl Verdict {
    /// `None` for a container that is not running.
    pub fn of(c: &Container) -> Option<Verdict> {
        if !c.running {
            return None;
        }
        Some(match c.health.as_deref() {
            None => Verdict::NoCheck,
            Some("healthy") => Verdict::Healthy,
            Some("unhealthy") => Verdict::Unhealthy,
            // "starting", and anything a newer daemon may invent: hold.
            Some(_) => Verdict::Starting,
        })
    }

    pub fn announces(self) -> bool {
        matches!(self, Verdict::NoCheck | Verdict::Healthy)
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::NoCheck => "no health check",
            Verdict::Healthy => "healthy",
            Verdict::Starting => "starting",
            Verdict::Unhealthy => "unhealthy",
        }
    }
}

/// What the classifier tells the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A fresh inspect of one container.
    Container(Container),
    /// The container is gone.
    Gone(String),
    /// Every running container: replaces all that the gate knew.
    Sync(Vec<Container>),
    /// The event stream is connected.
    ApiUp,
    /// Docker cannot be reached, and why.
    ApiDown(String),
}

/// The gate's decisions, free of I/O (the tasks feed it).
#[derive(Debug)]
pub struct Gate {
    /// Endpoint ID → its container and verdict.
    verdicts: HashMap<String, (String, Verdict)>,
    /// Container ID → its endpoint IDs, as last inspected.
    containers: HashMap<String, Vec<String>>,
    api_up: bool,
    /// Since when Docker is unreachable (from the start until it answers).
    api_down_since: Option<Instant>,
    /// Endpoints in the View not classified yet, since when.
    waiting: HashMap<String, Instant>,
    /// Endpoints announced without a verdict because Docker was unreachable.
    failed_open: HashSet<String>,
    /// Verdict changes (including the first one) of endpoints.
    pub transitions: u64,
    pub fail_open: u64,
}

/// What the filter decided about one view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    pub view: View,
    /// Held endpoints (ID → why).
    pub held: BTreeMap<String, String>,
    /// Endpoints released just now, with how long they waited for their first verdict.
    pub released: Vec<(String, Duration)>,
    /// Some endpoint waits for its first verdict.
    pub waiting: bool,
}

impl Gate {
    pub fn new(now: Instant) -> Gate {
        Gate {
            verdicts: HashMap::new(),
            containers: HashMap::new(),
            api_up: false,
            api_down_since: Some(now),
            waiting: HashMap::new(),
            failed_open: HashSet::new(),
            transitions: 0,
            fail_open: 0,
        }
    }

    pub fn api_up(&self) -> bool {
        self.api_up
    }

    /// How long the longest-waiting unclassified endpoint has waited.
    pub fn longest_wait(&self, now: Instant) -> Option<Duration> {
        self.waiting
            .values()
            .map(|t| now.saturating_duration_since(*t))
            .max()
    }

    fn forget(&mut self, container: &str) {
        if let Some(eps) = self.containers.remove(container) {
            for e in eps {
                if self.verdicts.get(&e).is_some_and(|(c, _)| c == container) {
                    self.verdicts.remove(&e);
                }
            }
        }
    }

    fn learn(&mut self, c: Container) {
        let verdict = Verdict::of(&c);
        // Endpoints it no longer has (or all, when it stopped) lose their verdict.
        let keep: &[String] = if verdict.is_some() { &c.endpoints } else { &[] };
        if let Some(old) = self.containers.get(&c.id) {
            for e in old.iter().filter(|e| !keep.contains(e)) {
                if self.verdicts.get(e).is_some_and(|(o, _)| o == &c.id) {
                    self.verdicts.remove(e);
                }
            }
        }
        let Some(v) = verdict else {
            self.containers.remove(&c.id);
            return;
        };
        for e in &c.endpoints {
            let old = self.verdicts.insert(e.clone(), (c.id.clone(), v));
            if old.map(|(_, o)| o) != Some(v) {
                self.transitions += 1;
                info!(
                    endpoint = short(e),
                    container = short(&c.id),
                    verdict = v.name(),
                    announce = v.announces(),
                    "health gate: verdict"
                );
            }
            self.failed_open.remove(e);
        }
        self.containers.insert(c.id, c.endpoints);
    }

    pub fn apply(&mut self, u: Update, now: Instant) {
        match u {
            Update::Container(c) => self.learn(c),
            Update::Gone(id) => self.forget(&id),
            Update::Sync(all) => {
                let keep: HashSet<&String> = all.iter().map(|c| &c.id).collect();
                let gone: Vec<String> = self
                    .containers
                    .keys()
                    .filter(|c| !keep.contains(c))
                    .cloned()
                    .collect();
                for c in gone {
                    self.forget(&c);
                }
                for c in all {
                    self.learn(c);
                }
            }
            Update::ApiUp => {
                self.api_up = true;
                self.api_down_since = None;
            }
            Update::ApiDown(_) => {
                if self.api_up || self.api_down_since.is_none() {
                    self.api_down_since = Some(now);
                }
                self.api_up = false;
            }
        }
    }

    /// The view without the held endpoints' announcements. `endpoints`
    /// maps each joined endpoint's host route to its endpoint ID; any other
    /// announcement (a subnet) passes untouched.
    pub fn filter(
        &mut self,
        view: &View,
        endpoints: &BTreeMap<IpNet, String>,
        now: Instant,
    ) -> Filtered {
        let mut out = Filtered {
            view: view.clone(),
            ..Filtered::default()
        };
        let down_for = self
            .api_down_since
            .filter(|_| !self.api_up)
            .map(|t| now.saturating_duration_since(t));
        let mut still_waiting = HashSet::new();
        let mut fail_open = Vec::new();
        out.view.announcements.retain(|prefix, _| {
            let Some(e) = endpoints.get(prefix) else {
                return true;
            };
            match self.verdicts.get(e) {
                Some((_, v)) => {
                    if let Some(since) = self.waiting.remove(e) {
                        if v.announces() {
                            out.released
                                .push((e.clone(), now.saturating_duration_since(since)));
                        }
                    }
                    if !v.announces() {
                        out.held.insert(e.clone(), v.name().to_string());
                    }
                    v.announces()
                }
                None => {
                    let since = *self.waiting.entry(e.clone()).or_insert(now);
                    still_waiting.insert(e.clone());
                    let waited = now.saturating_duration_since(since);
                    let open = self.failed_open.contains(e)
                        || down_for.is_some_and(|d| d.min(waited) >= FAIL_OPEN_AFTER);
                    if open {
                        fail_open.push(e.clone());
                    } else {
                        out.held.insert(e.clone(), "waiting for Docker".into());
                    }
                    open
                }
            }
        });
        self.waiting.retain(|e, _| still_waiting.contains(e));
        for e in fail_open {
            if self.failed_open.insert(e.clone()) {
                self.fail_open += 1;
                warn!(endpoint = short(&e), after = ?FAIL_OPEN_AFTER,
                    "health gate: Docker is unreachable and this endpoint was never classified: announced WITHOUT a health verdict (fail open)");
            }
        }
        self.failed_open.retain(|e| still_waiting.contains(e));
        out.waiting = !self.waiting.is_empty();
        out
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Each joined endpoint's host routes → its ID, for networks that announce
/// endpoints (subnet announcements are not gated).
pub fn endpoint_routes(state: &State) -> BTreeMap<IpNet, String> {
    let mut m = BTreeMap::new();
    for net in state.networks.values() {
        if net.spec.announce != Announce::Endpoint {
            continue;
        }
        for (id, ep) in &net.endpoints {
            if ep.joined {
                for a in ep.spec.addrs() {
                    m.insert(host_route(a), id.clone());
                }
            }
        }
    }
    m
}

/// At start, Docker is asked once for so long before the BGP side gets
/// its first view: a restarted driver then announces its healthy endpoints
/// without first withdrawing them (Docker answers in milliseconds; one that
/// does not costs the start this much at most).
const STARTUP_SYNC: Duration = Duration::from_secs(3);

/// Starts the gate between the driver's View (`views`) and the BGP side;
/// answers the gated View the BGP side should follow (already decided from
/// one look at Docker's running containers, when Docker answers).
pub async fn spawn(
    cfg: GateConfig,
    driver: Arc<Mutex<Driver>>,
    mut views: watch::Receiver<Arc<View>>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> (watch::Receiver<Arc<View>>, tokio::task::JoinHandle<()>) {
    let api = DockerApi::new(cfg.socket.clone(), CALL_TIMEOUT);
    let mut gate = Gate::new(Instant::now());
    match tokio::time::timeout(STARTUP_SYNC, sync_all(&api)).await {
        Ok(Ok(all)) => {
            info!(containers = all.len(), "health gate: classified the running containers at start");
            gate.apply(Update::Sync(all), Instant::now());
        }
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "health gate: Docker does not answer at start; endpoints are held until it does (fail open after {FAIL_OPEN_AFTER:?})"),
        Err(_) => warn!("health gate: Docker did not answer within {STARTUP_SYNC:?} at start; endpoints are held until it does (fail open after {FAIL_OPEN_AFTER:?})"),
    }
    let (view, routes) = snapshot(&driver, &mut views).await;
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
    let filter = tokio::spawn(async move {
        filter_loop(
            gate, driver, views, out_tx, upd_rx, want_sync, metrics, stop,
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
    driver: &Arc<Mutex<Driver>>,
    views: &mut watch::Receiver<Arc<View>>,
) -> (Arc<View>, BTreeMap<IpNet, String>) {
    // Marked seen first: a View published after this wakes the caller again.
    views.borrow_and_update();
    let d = driver.clone();
    let mut rx = views.clone();
    let read = tokio::task::spawn_blocking(move || {
        let d = d.lock().unwrap_or_else(|p| p.into_inner());
        let view = rx.borrow_and_update().clone();
        (view, endpoint_routes(d.state()))
    })
    .await;
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
    driver: Arc<Mutex<Driver>>,
    mut views: watch::Receiver<Arc<View>>,
    out: watch::Sender<Arc<View>>,
    mut updates: mpsc::Receiver<Update>,
    want_sync: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut view, mut routes) = snapshot(&driver, &mut views).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ask = Instant::now();
    loop {
        let now = Instant::now();
        let f = gate.filter(&view, &routes, now);
        for (e, waited) in &f.released {
            info!(
                endpoint = short(e),
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
                .map(|(e, why)| (short(e).to_string(), why.clone()))
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
                (view, routes) = snapshot(&driver, &mut views).await;
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
                            warn!(container = short(&id), error = %format!("{e:#}"), "health gate: cannot inspect the container; the next sync retries");
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
mod tests;
