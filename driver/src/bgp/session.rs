//! The BGP session: one task that owns the gobgpd connection.
//!
//! In: the [`View`] (a watch channel), best paths from gobgpd (its global RIB
//! at connect, then its event stream), the host's facts ([`super::host`])
//! and the peers gobgpd reports. Out: announcements made equal to the View
//! ([`super::announcer`]), gobgpd configured when the driver manages it
//! ([`super::speaker`]), learned paths handed to the learner in batches of at
//! most [`EVENT_BATCH`] and its decisions sent to the route installer
//! ([`crate::rib`]), and the session's state in [`Metrics`]. It connects with
//! backoff, re-announces after every (re)connection, and ends a session when
//! gobgpd stops answering (stream broken, a call over its deadline, the
//! liveness check). The learner (on its own thread, [`super::learning`]) and
//! the installer outlive connections. Nothing here blocks a worker: host
//! reads go through `spawn_blocking`, every policy decision to the learner's
//! thread.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use super::announcer::Announcer;
use super::config::BgpConfig;
use super::gobgp::apipb::{
    watch_event_request, watch_event_response, ListPeerRequest, Path, WatchEventRequest,
};
use super::gobgp::{self, decode_path, Client, LearnedPath};
use super::host::{policy_inputs, wanted_announcements, HostInfo, NextHopChoice};
use super::learner::Learner;
use super::learning::{LearnerGone, LearnerHandle};
use super::speaker;
use super::timers::{check_liveness, AbortOnDrop, TICK};
use super::withdrawals::{self, HeldWithdrawals};
use crate::kernel::real::Kernel;
use crate::kernel::Route;
use crate::metrics::{Metrics, PeerStatus};
use crate::rib::worker::InstallerHandle;
use crate::view::View;

/// The BGP side of the driver, running until `shutdown` fires.
pub struct Bgp {
    cfg: BgpConfig,
    metrics: Arc<Metrics>,
    view: watch::Receiver<Arc<View>>,
    host_kernel: Arc<Mutex<Kernel>>,
    learner: LearnerHandle,
    /// Routes a previous run left, adopted once the host's facts are read.
    adopted: Vec<Route>,
    /// When gobgpd's RIB was last read again for the learner.
    last_relist: Option<tokio::time::Instant>,
    announcer: Announcer,
    host: HostInfo,
    /// How the IPv6 next hop is chosen (the sessions' local addresses, the
    /// address chosen before).
    next_hop: NextHopChoice,
    warned: BTreeSet<String>,
    /// The current session got as far as "connected to gobgpd".
    session_up: bool,
}

const HOST_REFRESH: Duration = Duration::from_secs(3);
/// How often the peers shown in status are re-read from gobgpd.
const PEER_REFRESH: Duration = Duration::from_secs(5);
/// At most this many learned paths go to the learner at once; the session
/// yields between batches so a flood (a leaked full table) neither builds
/// one huge batch nor keeps the runtime from answering Docker.
pub const EVENT_BATCH: usize = 4096;
/// gobgpd's RIB is read again for the learner at most this often when it
/// asks (room freed after paths were dropped as over a limit): a flood that
/// keeps it full must not turn into a loop of full reads.
const RELIST_GAP: Duration = Duration::from_secs(10);

/// Test hook: the next [`Bgp::run`] panics at once (the supervisor's test).
#[cfg(test)]
pub(crate) static PANIC_AT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Why one connection's life ended.
enum Ended {
    /// Shutdown asked.
    Shutdown,
    /// gobgpd was lost (retried with backoff).
    Lost(String),
    /// The learner's thread died: this BGP side cannot go on.
    LearnerGone,
}

impl From<LearnerGone> for Ended {
    fn from(_: LearnerGone) -> Ended {
        Ended::LearnerGone
    }
}

impl From<String> for Ended {
    fn from(e: String) -> Ended {
        Ended::Lost(e)
    }
}

impl Bgp {
    /// The BGP side, ready to [`Bgp::run`]. Reads nothing yet (the host's
    /// facts are read in `run`, off the async workers); starts the
    /// learner's thread, so it needs a tokio runtime. `adopted`: routes of
    /// a previous run (or a previous BGP side) to keep until gobgpd confirms them.
    pub fn new(
        cfg: BgpConfig,
        metrics: Arc<Metrics>,
        view: watch::Receiver<Arc<View>>,
        installer: InstallerHandle,
        host_kernel: Kernel,
        adopted: Vec<Route>,
    ) -> std::io::Result<Bgp> {
        let learner = Learner::new(cfg.protocol, cfg.limits, cfg.stale_time, metrics.clone());
        let learner = LearnerHandle::start(learner, installer, metrics.clone())?;
        metrics.bgp(|b| {
            b.enabled = true;
            b.gobgp = cfg.gobgp.to_string();
        });
        Ok(Bgp {
            announcer: Announcer::new(cfg.communities.clone(), cfg.call_timeout),
            cfg,
            metrics,
            view,
            host_kernel: Arc::new(Mutex::new(host_kernel)),
            learner,
            adopted,
            last_relist: None,
            host: HostInfo::default(),
            next_hop: NextHopChoice::default(),
            warned: BTreeSet::new(),
            session_up: false,
        })
    }

    /// Reads the host's links and addresses on a blocking thread.
    async fn refresh_host(&mut self) -> Result<(), LearnerGone> {
        let k = self.host_kernel.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut k = k.lock().unwrap_or_else(|p| p.into_inner());
            HostInfo::read(&mut *k)
        })
        .await;
        match read {
            Ok(Ok(h)) => {
                self.host = h.with_gateways(&self.metrics);
                // Also picks up peers gobgpd reported since (cheap when nothing changed).
                self.apply_inputs().await?;
            }
            Ok(Err(e)) => warn!(error = %e, "could not read the host's addresses"),
            Err(e) => warn!(error = %e, "host refresh task failed"),
        }
        Ok(())
    }

    async fn apply_inputs(&mut self) -> Result<(), LearnerGone> {
        let peers = self.metrics.bgp(|b| b.peers.clone());
        let inputs = policy_inputs(&self.view.borrow(), &self.host, &self.cfg, &peers);
        self.learner.set_inputs(inputs).await
    }

    /// Runs until `shutdown` resolves (`Ok`), or until the learner's thread
    /// dies (`Err`: the supervisor decides what next). Stale routes expire
    /// on the learner's own timer: nothing the session awaits (a connect, a
    /// call to a stuck gobgpd) can hold them back.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        #[cfg(test)]
        if PANIC_AT_START.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("BGP task: panic asked by a test");
        }
        if self.cfg.gobgp.is_tcp() {
            warn!(gobgp = %self.cfg.gobgp, "{}", gobgp::TCP_WARNING);
        }
        // The policy needs the host's facts before it can judge the routes
        // a previous run left.
        let gone = |_| "the learner's thread ended".to_string();
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
            match gobgp::connect(&self.cfg.gobgp, self.cfg.call_timeout).await {
                Ok(client) => {
                    self.session_up = false;
                    let result = self.session(client, &mut shutdown).await;
                    self.metrics.bgp(|b| {
                        b.connected = false;
                        b.peers.clear();
                    });
                    if matches!(result, Ended::LearnerGone) {
                        return Err("the learner's thread ended".into());
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

    fn attempt_failed(&self, failures: &mut u32, msg: String) {
        *failures += 1;
        if *failures == 1 || *failures % 30 == 0 {
            warn!(gobgp = %self.cfg.gobgp, error = %msg, attempts = *failures, "gobgpd is not reachable; retrying with backoff (Docker requests are still served)");
        }
        self.metrics.bgp(|b| b.last_error = Some(msg));
    }

    /// One connection's life, until shutdown, gobgpd lost (the stream broke,
    /// or a call overran its deadline: gobgpd is stuck) or the learner gone.
    async fn session(&mut self, client: Client, shutdown: &mut watch::Receiver<bool>) -> Ended {
        match self.connected(client, shutdown).await {
            Ok(()) => Ended::Shutdown,
            Err(e) => e,
        }
    }

    async fn connected(
        &mut self,
        mut client: Client,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Ended> {
        let limit = self.cfg.call_timeout;
        // gobgpd's gRPC server (grpc-go's default policy) closes a connection
        // that sends keepalive PINGs while the server itself writes nothing
        // (GOAWAY "too_many_pings", measured: after ~8 s with only the event
        // stream open). The liveness check keeps gobgpd writing, and itself
        // notices a gobgpd that is alive but no longer answers.
        let (lost_tx, mut lost) = tokio::sync::oneshot::channel();
        let _liveness = AbortOnDrop(tokio::spawn(check_liveness(client.clone(), limit, lost_tx)));
        let mut speaker_cfg = self.cfg.speaker.clone();
        if speaker_cfg.manages_gobgpd() && speaker_cfg.router_id.is_none() {
            speaker_cfg.router_id = self.default_router_id().map(|r| r.to_string());
        }
        speaker::configure(&mut client, &speaker_cfg, limit)
            .await
            .map_err(|e| format!("configure gobgpd: {}", gobgp::describe(&e)))?;
        // Watch first, snapshot second: nothing that happens in between is missed.
        let watch = client.watch_event(WatchEventRequest {
            peer: Some(watch_event_request::PeerFilter {}),
            table: Some(watch_event_request::Table {
                filters: vec![watch_event_request::table::Filter {
                    r#type: watch_event_request::table::filter::Type::Best as i32,
                    init: false,
                }],
            }),
        });
        let mut events = gobgp::deadline("WatchEvent", limit, watch)
            .await
            .map_err(|e| format!("watch: {}", gobgp::describe(&e)))?
            .into_inner();
        let n = self.list_best(&mut client, true).await?;
        self.refresh_host().await?;
        // The sessions' local addresses first: the IPv6 next hop prefers
        // one, so a restarted driver chooses what it announced before.
        self.refresh_peers(&mut client)
            .await
            .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;
        let view = self.view.borrow().clone();
        let mut known_pools = view.pools.clone();
        let wanted = wanted_announcements(
            &view,
            &self.host,
            &self.cfg,
            &mut self.next_hop,
            &mut self.warned,
        );
        let pools: Vec<IpNet> = view.pools.iter().copied().collect();
        let mut nhs: Vec<IpAddr> = wanted.values().map(|a| a.next_hop).collect();
        nhs.extend(self.cfg.next_hops.iter().copied());
        self.announcer
            .resync(&mut client, &pools, &nhs, &wanted)
            .await
            .map_err(|e| format!("read local paths: {}", gobgp::describe(&e)))?;
        self.announcer
            .sync(&mut client, &wanted)
            .await
            .map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
        self.metrics.announced(wanted.keys());
        let announced = self.announcer.count();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
            b.announced = announced;
        });
        info!(gobgp = %self.cfg.gobgp, best_paths = n, announced, "connected to gobgpd");
        self.session_up = true;

        let mut last_host = tokio::time::Instant::now();
        let mut last_peers = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = HeldWithdrawals::default();
        loop {
            let hold_until = held.next_deadline();
            let relist_at = self.learner.relist_wanted().then(|| {
                self.last_relist
                    .map_or_else(tokio::time::Instant::now, |t| t + RELIST_GAP)
            });
            tokio::select! {
                // In this order: events already queued (a path that replaces
                // a held withdrawal cancels it) before the hold's timer; the
                // rare view changes and ticks before events, so a flood of
                // events starves neither.
                biased;
                _ = shutdown.changed() => return Ok(()),
                r = &mut lost => return Err(Ended::Lost(r.unwrap_or_else(|_| "liveness check ended".into()))),
                r = self.view.changed() => {
                    if r.is_err() { return Ok(()); }
                    self.apply_inputs().await?;
                    let view = self.view.borrow().clone();
                    // Paths refused as outside every pool are not kept by the
                    // learner; when the pools widen, gobgpd's RIB is read again
                    // so those paths get a new decision.
                    if pools_widened(&known_pools, &view.pools) {
                        let n = self.list_best(&mut client, false).await?;
                        self.last_relist = Some(tokio::time::Instant::now());
                        debug!(best_paths = n, "pools widened: re-read gobgpd's RIB");
                    }
                    known_pools = view.pools.clone();
                    let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.next_hop, &mut self.warned);
                    self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
                    self.metrics.announced(w.keys());
                    let c = self.announcer.count();
                    self.metrics.bgp(|b| b.announced = c);
                }
                // The learner asks for gobgpd's RIB again (the pools widened
                // after it dropped paths outside them, or room freed after it
                // dropped paths over a limit): at most once per RELIST_GAP.
                _ = tokio::time::sleep_until(relist_at.unwrap_or_else(tokio::time::Instant::now)), if relist_at.is_some() => {
                    let n = self.list_best(&mut client, false).await?;
                    self.last_relist = Some(tokio::time::Instant::now());
                    debug!(best_paths = n, "the learner asked: re-read gobgpd's RIB");
                }
                _ = self.learner.relist_changed() => {}
                _ = tick.tick() => {
                    let mut changed = false;
                    if last_peers.elapsed() >= PEER_REFRESH {
                        last_peers = tokio::time::Instant::now();
                        match self.refresh_peers(&mut client).await {
                            // A session came up from another local address:
                            // the IPv6 next hop may change.
                            Ok(c) => changed = c,
                            // A gobgpd busy with a burst of updates (a peer lost
                            // with thousands of paths) answers ListPeer late: the
                            // status waits for the next refresh. Whether gobgpd is
                            // stuck is the liveness check's call, not this one's.
                            Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                                debug!(error = %gobgp::describe(&e), "peer list late; kept the last one");
                            }
                            Err(e) => return Err(Ended::Lost(format!("list peers: {}", gobgp::describe(&e)))),
                        }
                    }
                    if last_host.elapsed() >= HOST_REFRESH || changed {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await?;
                        if before != self.host || changed {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.next_hop, &mut self.warned);
                            self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
                        }
                    }
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err(Ended::Lost("gobgpd closed the event stream".into())),
                        Some(Err(e)) => return Err(Ended::Lost(stream_error(&e))),
                        Some(Ok(m)) => m,
                    };
                    let arrived = Instant::now();
                    // Take what is already queued, up to one batch: the rest
                    // waits in the stream (bounded by HTTP/2 flow control).
                    let mut paths = Vec::new();
                    self.collect(first, &mut paths);
                    while paths.len() < EVENT_BATCH {
                        match futures::FutureExt::now_or_never(events.next()) {
                            Some(Some(Ok(m))) => self.collect(m, &mut paths),
                            Some(Some(Err(e))) => return Err(Ended::Lost(stream_error(&e))),
                            Some(None) | None => break,
                        }
                    }
                    // One message may itself carry more than a batch.
                    let mut paths = paths.into_iter().peekable();
                    while paths.peek().is_some() {
                        let batch = decode_batch(paths.by_ref().take(EVENT_BATCH));
                        let now_apply =
                            withdrawals::sort(&mut client, batch, &mut held, self.cfg.call_timeout)
                                .await
                            .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;
                        // Waits when the learner's queue is full: the rest
                        // stays in gobgpd's stream (HTTP/2 flow control).
                        self.learner.learn(now_apply, arrived).await?;
                        tokio::task::yield_now().await;
                    }
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                    let due = held.take_due(tokio::time::Instant::now());
                    if !due.is_empty() {
                        self.learner.learn(due, Instant::now()).await?;
                    }
                }
            }
        }
    }

    /// The first IPv4 address of a parent, else of any non-loopback link.
    fn default_router_id(&self) -> Option<IpAddr> {
        let view = self.view.borrow();
        let parents = view.parents.iter().chain(self.cfg.default_parent.iter());
        parents
            .filter_map(|p| self.host.parent_v4(p))
            .next()
            .or_else(|| self.cfg.next_hops.iter().copied().find(|a| a.is_ipv4()))
            .or_else(|| {
                self.host
                    .links
                    .iter()
                    .flat_map(|(_, _, nets)| nets.iter())
                    .map(|n| n.addr())
                    .find(|a| a.is_ipv4() && !a.is_loopback())
            })
    }

    /// Takes an event: peer state changes go to status at once, table paths
    /// are queued undecoded (decoding waits for their batch).
    fn collect(&mut self, m: gobgp::apipb::WatchEventResponse, paths: &mut Vec<Path>) {
        match m.event {
            Some(watch_event_response::Event::Table(t)) => paths.extend(t.paths),
            Some(watch_event_response::Event::Peer(pe)) => {
                if let Some(st) = pe.peer.and_then(|p| p.state) {
                    let state = session_state_name(st.session_state);
                    info!(peer = %st.neighbor_address, state, "BGP peer state");
                    self.metrics.bgp(|b| {
                        match b
                            .peers
                            .iter_mut()
                            .find(|p| p.address == st.neighbor_address)
                        {
                            Some(p) => p.state = state.to_string(),
                            None => b.peers.push(PeerStatus {
                                address: st.neighbor_address.clone(),
                                asn: st.peer_asn,
                                state: state.to_string(),
                            }),
                        }
                    });
                }
            }
            None => {}
        }
    }

    /// Reads gobgpd's peers for status, and the local addresses of the
    /// established sessions for the next hop; answers whether those changed.
    async fn refresh_peers(&mut self, client: &mut Client) -> Result<bool, tonic::Status> {
        let limit = self.cfg.call_timeout;
        let list = client.list_peer(ListPeerRequest::default());
        let mut stream = gobgp::deadline("ListPeer", limit, list).await?.into_inner();
        let mut peers = Vec::new();
        let mut local = BTreeSet::new();
        while let Some(r) = gobgp::next_within("ListPeer", limit, &mut stream).await? {
            if let Some(p) = r.peer {
                let conf = p.conf.unwrap_or_default();
                let st = p.state.unwrap_or_default();
                let state = session_state_name(st.session_state);
                if state == "established" {
                    // gobgpd reports the connection's own local address then.
                    local.extend(
                        p.transport
                            .and_then(|t| t.local_address.parse::<IpAddr>().ok()),
                    );
                }
                peers.push(PeerStatus {
                    address: conf.neighbor_address,
                    asn: conf.peer_asn,
                    state: state.to_string(),
                });
            }
        }
        self.metrics.bgp(|b| b.peers = peers);
        let changed = local != self.next_hop.session_local;
        self.next_hop.session_local = local;
        Ok(changed)
    }

    /// Reads the best path of every IPv4 and IPv6 destination in gobgpd's global RIB
    /// and hands them to the learner in batches of [`EVENT_BATCH`], yielding
    /// between batches. With `snapshot`, the first batch is the learner's
    /// snapshot (what gobgpd does not hold becomes stale); otherwise it is a
    /// re-read after the pools widened ([`Learner::relisted`]: nothing becomes
    /// stale, refusals are not counted twice). Returns the count.
    async fn list_best(&mut self, client: &mut Client, snapshot: bool) -> Result<usize, Ended> {
        self.list_best_inner(client, snapshot)
            .await
            .map_err(|e| match e {
                ListError::Gobgp(e) => Ended::Lost(format!("list paths: {}", gobgp::describe(&e))),
                ListError::Learner => Ended::LearnerGone,
            })
    }

    async fn list_best_inner(
        &mut self,
        client: &mut Client,
        snapshot: bool,
    ) -> Result<usize, ListError> {
        let limit = self.cfg.call_timeout;
        let started = Instant::now();
        let mut first = snapshot;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut count = 0;
        // One stream per family (IPv4, then IPv6), read one after the other
        // as if they were one: the snapshot makes everything stale first and
        // every later batch confirms what it holds, of either family.
        let [v4, v6] = gobgp::families();
        let mut pending = vec![v6];
        let mut stream = gobgp::open_global_rib(client, v4, limit).await?;
        loop {
            let mut msg = gobgp::next_within("ListPath", limit, &mut stream).await?;
            if msg.is_none() {
                if let Some(family) = pending.pop() {
                    stream = gobgp::open_global_rib(client, family, limit).await?;
                    msg = gobgp::next_within("ListPath", limit, &mut stream).await?;
                }
            }
            let done = msg.is_none() && pending.is_empty();
            if let Some(best) = msg.and_then(|m| m.destination).and_then(|d| best_path(&d)) {
                batch.push(best);
            }
            if batch.len() >= EVENT_BATCH || (done && (first || !batch.is_empty())) {
                count += batch.len();
                let paths = std::mem::replace(&mut batch, Vec::with_capacity(EVENT_BATCH));
                if first {
                    self.learner.snapshot(paths, started).await?;
                } else {
                    self.learner.relisted(paths, started).await?;
                }
                first = false;
                tokio::task::yield_now().await;
            }
            if done {
                return Ok(count);
            }
        }
    }
}

/// A read of gobgpd's RIB failed: gobgpd, or the learner's thread.
enum ListError {
    Gobgp(tonic::Status),
    Learner,
}

impl From<tonic::Status> for ListError {
    fn from(e: tonic::Status) -> ListError {
        ListError::Gobgp(e)
    }
}

impl From<LearnerGone> for ListError {
    fn from(_: LearnerGone) -> ListError {
        ListError::Learner
    }
}

/// Decodes a batch of paths; undecodable ones are skipped (logged at debug).
fn decode_batch(paths: impl Iterator<Item = Path>) -> Vec<LearnedPath> {
    paths
        .filter_map(|p| {
            decode_path(&p)
                .map_err(|e| debug!(error = %e, "ignoring a path"))
                .ok()
        })
        .collect()
}

/// The event stream broke: say so in words an operator can act on.
fn stream_error(e: &tonic::Status) -> String {
    format!(
        "event stream broke ({}: {}); gobgpd stopped, restarted or stopped answering keepalives",
        e.code(),
        gobgp::describe(e)
    )
}

/// Whether `new` holds a pool that `old` did not: paths the learner dropped
/// as outside every pool may now be accepted.
fn pools_widened(old: &BTreeSet<IpNet>, new: &BTreeSet<IpNet>) -> bool {
    new.iter().any(|p| !old.iter().any(|o| o.contains(p)))
}

fn session_state_name(s: i32) -> &'static str {
    match s {
        1 => "idle",
        2 => "connect",
        3 => "active",
        4 => "opensent",
        5 => "openconfirm",
        6 => "established",
        _ => "unknown",
    }
}

/// The best path of a destination, decoded: the one gobgpd marks `best`.
/// A destination without one (no path selected, every next hop invalid)
/// has nothing to install: another path is never taken in its place.
fn best_path(dest: &gobgp::apipb::Destination) -> Option<LearnedPath> {
    let best = dest.paths.iter().find(|p| p.best)?;
    decode_path(best).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A ListPath destination: only the path gobgpd marks best is taken;
    /// without one, nothing (never the first path in its place).
    #[test]
    fn only_the_path_marked_best_is_taken() {
        let p = |nh: &str, best: bool| {
            let mut p = gobgp::local_path(n("10.1.2.5/32"), nh.parse().unwrap(), &[]);
            p.best = best;
            p.neighbor_ip = "192.0.2.9".into();
            p
        };
        let dest = |paths| gobgp::apipb::Destination {
            prefix: "10.1.2.5/32".into(),
            paths,
        };
        let d = dest(vec![p("192.0.2.2", false), p("192.0.2.3", true)]);
        assert_eq!(
            best_path(&d).and_then(|b| b.next_hop),
            "192.0.2.3".parse().ok()
        );
        assert!(best_path(&dest(vec![p("192.0.2.2", false), p("192.0.2.3", false)])).is_none());
        assert!(best_path(&dest(vec![])).is_none());
    }

    #[test]
    fn pools_widen_only_with_room_outside_the_old_ones() {
        let old: BTreeSet<IpNet> = [n("10.1.0.0/16")].into();
        assert!(!pools_widened(&old, &old));
        assert!(!pools_widened(&old, &[n("10.1.2.0/24")].into()));
        assert!(!pools_widened(&old, &BTreeSet::new()));
        assert!(pools_widened(&old, &[n("10.2.0.0/24")].into()));
        assert!(pools_widened(&old, &[n("10.0.0.0/8")].into()));
        assert!(pools_widened(&BTreeSet::new(), &old));
    }
}
