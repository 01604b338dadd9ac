//! The BGP session: one task that owns the gobgpd connection.
//!
//! In: the [`View`] (a watch channel), best paths from gobgpd (its global RIB
//! at connect, then its event stream), the host's facts ([`super::host`])
//! and the peers gobgpd reports. Out: announcements made equal to the View
//! ([`super::announcer`]; drained ones made less preferred,
//! [`super::drain`]), gobgpd configured when the driver manages it
//! ([`super::speaker`]: StartBgp, then our paths, then the peers), learned
//! paths handed to the learner in batches of at most [`EVENT_BATCH`] and its
//! decisions sent to the route installer ([`crate::rib`]), the peers'
//! failures and End-of-RIB applied to the learner ([`super::peers`]), and the
//! session's state in [`Metrics`]. It connects with backoff, detects the API
//! line each time, re-announces after every (re)connection, and ends a
//! session when gobgpd stops answering (stream broken, a call over its
//! deadline, the liveness check). The learner and the installer outlive
//! connections. On shutdown with `--stop-gobgpd-on-exit` it stops BGP on a
//! 4.x gobgpd without a NOTIFICATION, so peers keep our paths.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::announcer::{Announcement, Announcer};
use super::config::BgpConfig;
use super::drain::{self, DrainMethod};
use super::gobgp::{
    self, ApiLine, Event, EventStream, Family, Gobgp, GobgpApi, LearnedPath, PeerInfo, RibPath,
};
use super::host::{policy_inputs, wanted_announcements, HostInfo};
use super::learner::{lock_learner, Learner};
use super::peers::{PeerAction, Peers};
use super::speaker;
use super::timers::{check_liveness, expire_stale, AbortOnDrop, TICK};
use super::withdrawals::{self, HeldWithdrawals};
use crate::kernel::real::Kernel;
use crate::kernel::Route;
use crate::metrics::{now_unix, DrainStatus, Metrics, PeerBfd, PeerStatus};
use crate::rib::installer;
use crate::rib::worker::InstallerHandle;
use crate::view::View;

/// The BGP side of the driver, running until `shutdown` fires.
pub struct Bgp {
    cfg: BgpConfig,
    metrics: Arc<Metrics>,
    view: watch::Receiver<Arc<View>>,
    installer: InstallerHandle,
    host_kernel: Arc<Mutex<Kernel>>,
    /// Shared with the expiry task (see [`expire_stale`]); locked briefly, never across an await.
    learner: Arc<Mutex<Learner>>,
    announcer: Announcer,
    host: HostInfo,
    warned: BTreeSet<String>,
    /// The current session got as far as "connected to gobgpd".
    session_up: bool,
    /// The API line of the last gobgpd connected to.
    line: Option<ApiLine>,
    /// The peers of the current connection, as the learner must see them.
    peers: Peers,
    /// gobgpd's AS on the current connection (0 before BGP starts).
    asn: u32,
    /// The drain as status shows it.
    drain: DrainStatus,
}

const HOST_REFRESH: Duration = Duration::from_secs(3);
/// How often the peers shown in status are re-read from gobgpd.
const PEER_REFRESH: Duration = Duration::from_secs(5);
/// At most this many learned paths go to the learner at once; the session
/// yields between batches so a flood (a leaked full table) neither builds
/// one huge batch nor keeps the runtime from answering Docker.
pub const EVENT_BATCH: usize = 4096;

impl Bgp {
    pub fn new(
        cfg: BgpConfig,
        metrics: Arc<Metrics>,
        view: watch::Receiver<Arc<View>>,
        installer: InstallerHandle,
        host_kernel: Kernel,
        adopted: Vec<Route>,
    ) -> Bgp {
        let mut host_kernel = host_kernel;
        let host = HostInfo::read(&mut host_kernel)
            .unwrap_or_else(|e| {
                warn!(error = %e, "could not read the host's addresses");
                HostInfo::default()
            })
            .with_gateways(&metrics);
        let mut learner = Learner::new(
            cfg.protocol,
            cfg.max_learned,
            cfg.stale_time,
            metrics.clone(),
        );
        let inputs = policy_inputs(&view.borrow(), &host, &cfg, &[]);
        installer.send(learner.set_inputs(inputs));
        installer.send(learner.adopt(&adopted, Instant::now()));
        metrics.bgp(|b| {
            b.enabled = true;
            b.gobgp = cfg.gobgp.to_string();
        });
        Bgp {
            announcer: Announcer::new(cfg.communities.clone(), cfg.call_timeout),
            cfg,
            metrics,
            view,
            installer,
            host_kernel: Arc::new(Mutex::new(host_kernel)),
            learner: Arc::new(Mutex::new(learner)),
            host,
            warned: BTreeSet::new(),
            session_up: false,
            line: None,
            peers: Peers::default(),
            asn: 0,
            drain: DrainStatus::default(),
        }
    }

    fn learner(&self) -> MutexGuard<'_, Learner> {
        lock_learner(&self.learner)
    }

    /// What the announcer holds in gobgpd and has sent it, for status and metrics.
    fn publish_announcer(&self) {
        let held = self.announcer.count();
        let (added, withdrawn) = self.announcer.sent();
        self.metrics.bgp(|b| {
            b.announced = held;
            b.path_announcements = added;
            b.path_withdrawals = withdrawn;
        });
    }

    async fn refresh_host(&mut self) {
        let k = self.host_kernel.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut k = k.lock().unwrap_or_else(|p| p.into_inner());
            HostInfo::read(&mut k)
        })
        .await;
        match read {
            Ok(Ok(h)) => {
                self.host = h.with_gateways(&self.metrics);
                // Also picks up peers gobgpd reported since (cheap when nothing changed).
                self.apply_inputs();
            }
            Ok(Err(e)) => warn!(error = %e, "could not read the host's addresses"),
            Err(e) => warn!(error = %e, "host refresh task failed"),
        }
    }

    fn apply_inputs(&mut self) {
        let peers = self.metrics.bgp(|b| b.peers.clone());
        let inputs = policy_inputs(&self.view.borrow(), &self.host, &self.cfg, &peers);
        let changes = self.learner().set_inputs(inputs);
        self.installer.send(changes);
    }

    /// Runs until `shutdown` resolves. Fails only when gobgpd's line cannot
    /// honour the configuration (BFD against a 3.x gobgpd): the driver must
    /// not run then.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        if self.cfg.gobgp.is_tcp() {
            warn!(gobgp = %self.cfg.gobgp, "{}", gobgp::TCP_WARNING);
        }
        // Stale routes expire on their own timer: nothing the session awaits
        // (a connect, a call to a stuck gobgpd) can hold them back.
        let installer = self.installer.clone();
        let _expiry = AbortOnDrop(tokio::spawn(expire_stale(
            self.learner.clone(),
            move |changes| installer.send(changes),
        )));
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match Gobgp::connect(&self.cfg.gobgp, self.cfg.call_timeout).await {
                Ok(client) => {
                    self.detected(client.line())?;
                    self.session_up = false;
                    let result = self.session(client, &mut shutdown).await;
                    self.learner().disconnected(Instant::now());
                    self.metrics.bgp(|b| {
                        b.connected = false;
                        b.peers.clear();
                    });
                    match result {
                        Ok(()) => return Ok(()),
                        // The session was up: say once that it is lost.
                        Err(e) if self.session_up => {
                            warn!(gobgp = %self.cfg.gobgp, error = %e, stale_secs = self.cfg.stale_time.as_secs(), "lost gobgpd; keeping learned routes while retrying");
                            self.metrics.bgp(|b| b.last_error = Some(e.clone()));
                            failures = 0;
                            backoff = Duration::from_millis(200);
                        }
                        // It never came up (gobgpd accepts but does not answer):
                        // a failed attempt like any other, logged sparsely.
                        Err(e) => self.attempt_failed(&mut failures, e),
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
                        self.apply_inputs();
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

    /// One connection's life. `Ok(())` on shutdown, `Err` when gobgpd is lost
    /// (the stream broke, or a call overran its deadline: gobgpd is stuck).
    async fn session(
        &mut self,
        mut client: Gobgp,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        // gobgpd's gRPC server (grpc-go's default policy) closes a connection
        // that sends keepalive PINGs while the server itself writes nothing
        // (GOAWAY "too_many_pings", measured: after ~8 s with only the event
        // stream open). The liveness check keeps gobgpd writing, and itself
        // notices a gobgpd that is alive but no longer answers.
        let (lost_tx, mut lost) = tokio::sync::oneshot::channel();
        let _liveness = AbortOnDrop(tokio::spawn(check_liveness(client.clone(), lost_tx)));
        let mut speaker_cfg = self.cfg.speaker.clone();
        if speaker_cfg.manages_gobgpd() && speaker_cfg.router_id.is_none() {
            speaker_cfg.router_id = self.default_router_id().map(|r| r.to_string());
        }
        let started = speaker::start(&mut client, &speaker_cfg)
            .await
            .map_err(|e| format!("configure gobgpd: {}", gobgp::describe(&e)))?;
        // Watch first, snapshot second: nothing that happens in between is missed.
        let mut events = client
            .watch(started.global.use_multiple_paths)
            .await
            .map_err(|e| format!("watch: {}", gobgp::describe(&e)))?;
        let n = self
            .list_best(&mut client, true)
            .await
            .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
        self.asn = started.global.asn;
        self.peers = Peers::default();
        self.refresh_host().await;
        let view = self.view.borrow().clone();
        let mut known_pools = view.pools.clone();
        let wanted = self.wanted(&view);
        let pools: Vec<IpNet> = view.pools.iter().copied().collect();
        let mut nhs: Vec<IpAddr> = wanted.values().map(|a| a.next_hop).collect();
        nhs.extend(self.cfg.next_hops.iter().copied());
        self.announcer
            .resync(&mut client, &pools, &nhs, &wanted)
            .await
            .map_err(|e| format!("read local paths: {}", gobgp::describe(&e)))?;
        self.sync(&mut client, &view, wanted).await?;
        // Peers last: our paths are in gobgpd before any session sends its
        // End-of-RIB (a path added after it makes graceful-restart helpers
        // flush our stale copies: docs/gobgp-v4.md §5).
        speaker::add_peers(&mut client, &speaker_cfg, started.fresh)
            .await
            .map_err(|e| format!("configure gobgpd's peers: {}", gobgp::describe(&e)))?;
        let announced = self.announcer.count();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
        });
        info!(gobgp = %self.cfg.gobgp, api = %client.line(), best_paths = n, announced, "connected to gobgpd");
        self.session_up = true;
        self.refresh_peers(&mut client)
            .await
            .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;

        let mut last_host = tokio::time::Instant::now();
        let mut last_peers = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = HeldWithdrawals::default();
        loop {
            let hold_until = held.next_deadline();
            tokio::select! {
                // In this order: events already queued (a path that replaces
                // a held withdrawal cancels it) before the hold's timer; the
                // rare view changes and ticks before events, so a flood of
                // events starves neither.
                biased;
                _ = shutdown.changed() => {
                    self.stop_gobgpd(&mut client).await;
                    return Ok(());
                }
                r = &mut lost => return Err(r.unwrap_or_else(|_| "liveness check ended".into())),
                r = self.view.changed() => {
                    if r.is_err() { return Ok(()); }
                    self.apply_inputs();
                    let view = self.view.borrow().clone();
                    // Paths refused as outside every pool are not kept by the
                    // learner; when the pools widen, gobgpd's RIB is read again
                    // so those paths get a new decision.
                    let relist = self.learner().needs_relist();
                    if relist || pools_widened(&known_pools, &view.pools) {
                        let n = self
                            .list_best(&mut client, false)
                            .await
                            .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
                        debug!(best_paths = n, "pools widened: re-read gobgpd's RIB");
                    }
                    known_pools = view.pools.clone();
                    let w = self.wanted(&view);
                    self.sync(&mut client, &view, w).await?;
                }
                _ = tick.tick() => {
                    if last_host.elapsed() >= HOST_REFRESH {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await;
                        if before != self.host {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = self.wanted(&view);
                            self.sync(&mut client, &view, w).await?;
                        }
                    }
                    // While routes wait for End-of-RIB (3.x reports it only
                    // in ListPeer) or a failed peer is away, every tick.
                    let pending = self.peers.pending() && self.learner().has_stale();
                    if pending || self.peers.has_dropped() || last_peers.elapsed() >= PEER_REFRESH {
                        last_peers = tokio::time::Instant::now();
                        match self.refresh_peers(&mut client).await {
                            Ok(()) => {}
                            // A gobgpd busy with a burst of updates (a peer lost
                            // with thousands of paths) answers ListPeer late: the
                            // status waits for the next refresh. Whether gobgpd is
                            // stuck is the liveness check's call, not this one's.
                            Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                                debug!(error = %gobgp::describe(&e), "peer list late; kept the last one");
                            }
                            Err(e) => return Err(format!("list peers: {}", gobgp::describe(&e))),
                        }
                    }
                    self.drain_progress(&mut client).await;
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err("gobgpd closed the event stream".into()),
                        Some(Err(e)) => return Err(stream_error(&e)),
                        Some(Ok(m)) => m,
                    };
                    self.on_events(&mut client, first, &mut events, &mut held).await?;
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                    let due = held.take_due(tokio::time::Instant::now());
                    if !due.is_empty() {
                        let changes = self.learner().learn(due);
                        self.installer.send(changes);
                    }
                }
            }
        }
    }

    /// What this host announces now: the View's prefixes with their next
    /// hops and attributes, made less preferred while drained.
    fn wanted(&mut self, view: &View) -> BTreeMap<IpNet, Announcement> {
        let mut w = wanted_announcements(view, &self.host, &self.cfg, &mut self.warned);
        if view.drained.is_some() {
            drain::drain_all(&mut w, self.drain_method());
        }
        w
    }

    /// Prepend when every peer is eBGP, LOCAL_PREF 0 when one is iBGP.
    fn drain_method(&self) -> DrainMethod {
        let peers: Vec<u32> = self
            .metrics
            .bgp(|b| b.peers.iter().map(|p| p.asn).collect());
        let configured = self.cfg.speaker.peers.iter().filter_map(|p| {
            // A peer without an AS of its own is iBGP.
            Some(p.asn.unwrap_or(self.cfg.speaker.asn?))
        });
        let asn = if self.asn != 0 {
            self.asn
        } else {
            self.cfg.speaker.asn.unwrap_or(0)
        };
        drain::method(asn, peers.into_iter().chain(configured))
    }

    /// Makes gobgpd's paths equal `wanted`, then notes what it holds (and
    /// the drain's progress) for status.
    async fn sync(
        &mut self,
        client: &mut Gobgp,
        view: &View,
        wanted: BTreeMap<IpNet, Announcement>,
    ) -> Result<(), String> {
        self.announcer
            .sync(client, &wanted)
            .await
            .map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
        self.metrics.announced(wanted.keys());
        self.publish_announcer();
        let count = self.announcer.count();
        match view.drained {
            Some(since) => {
                if !self.drain.drained || self.drain.since != Some(since) {
                    info!(prefixes = count, method = self.drain_method().name(), "drained: every announcement carries GRACEFUL_SHUTDOWN and is made less preferred");
                    self.drain = DrainStatus {
                        drained: true,
                        since: Some(since),
                        ..DrainStatus::default()
                    };
                }
                self.drain.method = Some(self.drain_method().name());
                self.drain.prefixes = count;
                self.drain.accepted.get_or_insert(now_unix());
            }
            None if self.drain.drained => {
                info!("undrained: announcements are back to normal");
                self.drain = DrainStatus::default();
            }
            None => {}
        }
        let d = self.drain.clone();
        self.metrics.bgp(|b| b.drain = d);
        Ok(())
    }

    /// While drained and not yet safe to stop: how many of our prefixes a
    /// peer advertises another path for (it moved), and whether it is safe.
    async fn drain_progress(&mut self, client: &mut Gobgp) {
        if !self.drain.drained || self.drain.safe_since.is_some() {
            return;
        }
        let ours: Vec<IpNet> = self
            .metrics
            .bgp(|b| b.announced_prefixes.iter().copied().collect());
        let mut moved = 0;
        let limit = self.cfg.call_timeout;
        for family in Family::ALL {
            let prefixes: Vec<IpNet> = ours
                .iter()
                .filter(|p| Family::of(p) == family)
                .copied()
                .collect();
            for chunk in prefixes.chunks(1000) {
                let Ok(mut rib) = client.open_rib(family, chunk).await else {
                    return;
                };
                while let Ok(Some(dest)) = rib.next(limit).await {
                    if dest
                        .iter()
                        .any(|p| p.path.peer.is_some() && !p.path.withdraw)
                    {
                        moved += 1;
                    }
                }
            }
        }
        self.drain.moved = moved;
        drain::settle(&mut self.drain, now_unix());
        if let Some(t) = self.drain.safe_since {
            info!(safe_since = t, moved, prefixes = self.drain.prefixes, detail = %self.drain.detail, "drained: safe to stop");
        }
        let d = self.drain.clone();
        self.metrics.bgp(|b| b.drain = d);
    }

    /// On shutdown with `--stop-gobgpd-on-exit`: stop BGP on gobgpd without
    /// a NOTIFICATION (4.x), so peers keep our paths while it restarts. 3.x
    /// cannot: it would send a Cease, which makes peers withdraw at once.
    async fn stop_gobgpd(&mut self, client: &mut Gobgp) {
        if !self.cfg.stop_gobgpd_on_exit {
            return;
        }
        match client.line() {
            ApiLine::V4 => match client.stop_bgp(true).await {
                Ok(()) => info!("stopped BGP on gobgpd gracefully: peers keep this host's paths for the restart time"),
                Err(e) => warn!(error = %gobgp::describe(&e), "could not stop BGP on gobgpd gracefully"),
            },
            ApiLine::V3 => warn!("gobgpd 3.x cannot stop without a Cease to its peers; left running (killed with SIGKILL its peers keep our paths; SIGTERM would withdraw them)"),
        }
    }

    /// A message of events, and what is already queued behind it (up to
    /// one batch; the rest waits in the stream, bounded by HTTP/2 flow
    /// control): learned paths first, then the peers' falls and
    /// End-of-RIB, which may remove routes the same batch confirmed.
    async fn on_events(
        &mut self,
        client: &mut Gobgp,
        first: Vec<Event>,
        events: &mut EventStream,
        held: &mut HeldWithdrawals,
    ) -> Result<(), String> {
        let arrived = Instant::now();
        let mut c = Collected::default();
        self.collect(first, &mut c);
        while c.paths.len() + c.deltas.len() < EVENT_BATCH {
            match futures::FutureExt::now_or_never(events.next()) {
                Some(Some(Ok(m))) => self.collect(m, &mut c),
                Some(Some(Err(e))) => return Err(stream_error(&e)),
                Some(None) | None => break,
            }
        }
        let mut paths = c.paths;
        if !c.deltas.is_empty() {
            // 4.x with multipath: per-path changes become the prefixes'
            // whole sets of best paths again.
            paths.extend(
                client
                    .best_sets(c.deltas)
                    .await
                    .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?,
            );
        }
        // A peer that failed hard: its stale paths stay out.
        paths.retain(|p| p.withdraw || !self.peers.ignores(p.peer.as_deref()));
        // One message may itself carry more than a batch.
        let mut paths = paths.into_iter().peekable();
        while paths.peek().is_some() {
            let batch: Vec<LearnedPath> = paths.by_ref().take(EVENT_BATCH).collect();
            let now_apply = withdrawals::sort(client, batch, held)
                .await
                .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;
            let changes = self.learner().learn(now_apply);
            let set = changes.iter().filter_map(|c| match c {
                installer::Change::Set(r) => Some(r.dst),
                installer::Change::Remove(_) => None,
            });
            self.metrics.learned(set, arrived);
            self.installer.send(changes);
            tokio::task::yield_now().await;
        }
        let mut actions = Vec::new();
        for peer in c.fell {
            // Why it fell decides whether its routes stay (a restart) or go.
            match client.list_peers(Some(&peer)).await {
                Ok(infos) => {
                    for info in &infos {
                        actions.extend(self.peers.fell(info));
                    }
                }
                Err(e) => {
                    debug!(peer, error = %gobgp::describe(&e), "could not ask why the peer fell; the next refresh will")
                }
            }
        }
        for (peer, family) in c.end_of_rib {
            actions.extend(self.peers.end_of_rib(&peer, family));
        }
        self.apply(client, actions).await
    }

    /// Applies the peers' actions to the learner (and relists gobgpd's RIB).
    async fn apply(&mut self, client: &mut Gobgp, actions: Vec<PeerAction>) -> Result<(), String> {
        let now = Instant::now();
        for a in actions {
            let changes = match a {
                PeerAction::Drop { peer, reason } => {
                    // Another peer's path for the same prefix (anycast, a
                    // second uplink) replaces the failed one's in place.
                    let prefixes = self.learner().prefixes_from(&peer);
                    let others = self
                        .usable_paths(client, &prefixes)
                        .await
                        .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
                    let replaced = self.learner().learn(others);
                    self.installer.send(replaced);
                    let changes = self.learner().drop_peer(&peer, now);
                    let n = changes
                        .iter()
                        .filter(|c| matches!(c, installer::Change::Remove(_)))
                        .count() as u64;
                    warn!(peer, reason, routes = n, kept = prefixes.len() as u64 - n, "peer failed (not a graceful restart): its routes are removed now, whatever gobgpd keeps as stale");
                    self.metrics.bgp(|b| b.peer_routes_dropped += n);
                    changes
                }
                PeerAction::EndOfRib { peer, family } => {
                    debug!(peer, family = family.name(), "End-of-RIB");
                    self.learner().end_of_rib(&peer, family, now)
                }
                PeerAction::RibComplete(family) => self.learner().rib_complete(family, now),
                PeerAction::Relist => {
                    let n = self
                        .list_best(client, false)
                        .await
                        .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
                    info!(
                        best_paths = n,
                        "a failed peer is back with its End-of-RIB: re-read gobgpd's RIB"
                    );
                    Vec::new()
                }
            };
            self.installer.send(changes);
        }
        Ok(())
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

    /// Takes a message's events: peer state changes go to status at once,
    /// the rest is queued for the batch.
    fn collect(&mut self, events: Vec<Event>, c: &mut Collected) {
        for ev in events {
            match ev {
                Event::Best(p) => c.paths.extend(p),
                Event::BestDelta(p) => c.deltas.extend(p),
                Event::Peer {
                    address,
                    asn,
                    state,
                } => {
                    info!(peer = %address, state = state.name(), "BGP peer state");
                    if self.peers.event(&address, state) {
                        c.fell.push(address.clone());
                    }
                    self.metrics.bgp(
                        |b| match b.peers.iter_mut().find(|p| p.address == address) {
                            Some(p) => p.state = state.name().to_string(),
                            None => b.peers.push(PeerStatus {
                                address: address.clone(),
                                asn,
                                state: state.name().to_string(),
                                ..PeerStatus::default()
                            }),
                        },
                    );
                }
                Event::EndOfRib { peer, family } => c.end_of_rib.push((peer, family)),
            }
        }
    }

    /// The best remaining paths of `prefixes` in gobgpd's RIB, leaving out
    /// the stale paths of peers that failed hard (gobgpd may still rank one
    /// of those best: then the next one is taken).
    async fn usable_paths(
        &mut self,
        client: &mut Gobgp,
        prefixes: &[IpNet],
    ) -> Result<Vec<LearnedPath>, tonic::Status> {
        let limit = self.cfg.call_timeout;
        let mut out = Vec::new();
        for family in Family::ALL {
            let of: Vec<IpNet> = prefixes
                .iter()
                .filter(|p| Family::of(p) == family)
                .copied()
                .collect();
            for chunk in of.chunks(1000) {
                let mut rib = client.open_rib(family, chunk).await?;
                while let Some(dest) = rib.next(limit).await? {
                    let dest: Vec<RibPath> = dest
                        .into_iter()
                        .filter(|p| !(p.stale && self.peers.ignores(p.path.peer.as_deref())))
                        .collect();
                    out.extend(best_paths(dest).into_iter().filter(|p| !p.withdraw));
                }
            }
        }
        Ok(out)
    }

    /// Re-reads the peers for status, and applies what they show (End-of-RIB
    /// flags on 3.x, a failure the events missed, completeness).
    async fn refresh_peers(&mut self, client: &mut Gobgp) -> Result<(), tonic::Status> {
        let infos = client.list_peers(None).await?;
        let peers: Vec<PeerStatus> = infos.iter().map(peer_status).collect();
        self.metrics.bgp(|b| b.peers = peers);
        let actions = self.peers.listed(&infos);
        if let Err(e) = self.apply(client, actions).await {
            return Err(tonic::Status::unavailable(e));
        }
        Ok(())
    }

    /// Reads the best path of every IPv4 and IPv6 destination in gobgpd's global RIB
    /// and hands them to the learner in batches of [`EVENT_BATCH`], yielding
    /// between batches. With `snapshot`, the first batch is the learner's
    /// snapshot (what gobgpd does not hold becomes stale); otherwise it is a
    /// re-read after the pools widened ([`Learner::relisted`]: nothing becomes
    /// stale, refusals are not counted twice). Returns the count.
    async fn list_best(
        &mut self,
        client: &mut Gobgp,
        snapshot: bool,
    ) -> Result<usize, tonic::Status> {
        let limit = self.cfg.call_timeout;
        let started = Instant::now();
        let mut first = snapshot;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut count = 0;
        // One stream per family (IPv4, then IPv6), read one after the other
        // as if they were one: the snapshot makes everything stale first and
        // every later batch confirms what it holds, of either family.
        let mut pending = vec![Family::Ipv6];
        let mut stream = client.open_rib(Family::Ipv4, &[]).await?;
        loop {
            let mut msg = stream.next(limit).await?;
            if msg.is_none() {
                if let Some(family) = pending.pop() {
                    stream = client.open_rib(family, &[]).await?;
                    msg = stream.next(limit).await?;
                }
            }
            let done = msg.is_none() && pending.is_empty();
            if let Some(dest) = msg {
                // A peer that failed hard: gobgpd's stale copies stay out.
                let dest = dest
                    .into_iter()
                    .filter(|p| !(p.stale && self.peers.ignores(p.path.peer.as_deref())));
                batch.extend(best_paths(dest.collect()));
            }
            if batch.len() >= EVENT_BATCH || (done && (first || !batch.is_empty())) {
                count += batch.len();
                let paths = std::mem::replace(&mut batch, Vec::with_capacity(EVENT_BATCH));
                let changes = if first {
                    self.learner().snapshot(paths, started)
                } else {
                    self.learner().relisted(paths, started)
                };
                first = false;
                self.installer.send(changes);
                tokio::task::yield_now().await;
            }
            if done {
                return Ok(count);
            }
        }
    }
}

/// What a batch of events holds, sorted by what the session does with it.
#[derive(Default)]
struct Collected {
    paths: Vec<LearnedPath>,
    deltas: Vec<LearnedPath>,
    /// Peers that left Established.
    fell: Vec<String>,
    end_of_rib: Vec<(String, Family)>,
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

/// A peer as status and metrics show it.
fn peer_status(p: &PeerInfo) -> PeerStatus {
    let names = |f: &[Family]| f.iter().map(|f| f.name()).collect();
    PeerStatus {
        address: p.address.clone(),
        asn: p.asn,
        state: p.state.name().to_string(),
        bfd: p.bfd.map(|b| PeerBfd {
            state: b.state.name().to_string(),
            interval_ms: u64::try_from(b.settings.interval.as_millis()).unwrap_or(u64::MAX),
            multiplier: b.settings.multiplier,
        }),
        graceful_restart: p.graceful_restart,
        graceful_restart_families: names(&p.gr_families),
        end_of_rib: names(&p.end_of_rib),
        last_down: p.down_reason.as_ref().map(|r| r.describe()),
        hold_time: p.hold_time,
        keepalive: p.keepalive,
    }
}

/// The best paths of a destination: those gobgpd marks best (4.x marks every
/// member of an equal set; 3.x one), else its first path.
fn best_paths(dest: Vec<RibPath>) -> Vec<LearnedPath> {
    let marked: Vec<LearnedPath> = dest
        .iter()
        .filter(|p| p.best && !p.path.withdraw)
        .map(|p| p.path.clone())
        .collect();
    if marked.is_empty() {
        dest.into_iter()
            .next()
            .map(|p| p.path)
            .into_iter()
            .collect()
    } else {
        marked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
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
