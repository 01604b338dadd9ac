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
//! deadline, the liveness check). The learner (on its own thread,
//! [`super::learning`]) and the installer outlive connections. Nothing here
//! blocks a worker: host reads go through `spawn_blocking`, every policy
//! decision to the learner's thread. The IPv6 next hop prefers the local
//! address of an established session (ListPeer, either line). On shutdown with `--stop-gobgpd-on-exit` it stops BGP on a
//! 4.x gobgpd without a NOTIFICATION, so peers keep our paths.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
use super::gobgp_api::PeerNextHop6;
use super::host::{policy_inputs, wanted_announcements, HostInfo, NextHopChoice};
use super::learner::Learner;
use super::learning::{LearnerGone, LearnerHandle};
use super::ledger::Ledger;
use super::peers::{PeerAction, Peers};
use super::speaker;
use super::stuck::{Handshakes, Stuck};
use super::timers::{check_liveness, AbortOnDrop, TICK};
use super::uplink_next_hops::{changed_warning, uplink_next_hops, UplinkNextHops};
use super::withdrawals::{self, HeldWithdrawals};
use crate::kernel::real::Kernel;
use crate::kernel::MultiRoute;
use crate::metrics::{now_unix, DrainStatus, Metrics, PeerBfd, PeerStatus};
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
    adopted: Vec<MultiRoute>,
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
    /// The API line of the last gobgpd connected to.
    line: Option<ApiLine>,
    /// The peers of the current connection, as the learner must see them.
    peers: Peers,
    /// gobgpd's AS on the current connection (0 before BGP starts).
    asn: u32,
    /// The drain as status shows it.
    drain: DrainStatus,
    /// The peers' handshakes, watched for a stuck one.
    handshakes: Handshakes,
    /// The speaker settings of the current connection (the router ID
    /// filled in): what a stuck peer of ours is added again with.
    speaker_cfg: speaker::SpeakerConfig,
    /// Dual-uplink mode: the per-peer IPv6 next hops the export policy of
    /// the current gobgpd holds (installed when the driver started BGP on
    /// it); `None` when the driver installed none.
    v6_next_hops: Option<Vec<PeerNextHop6>>,
    /// Our StartBgp succeeded but a policy install after it failed: the
    /// next connection installs them ([`speaker::start`]).
    policies_owed: bool,
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

/// Why [`Bgp::run`] ended before shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// gobgpd's line cannot honour the configuration (BFD against 3.x):
    /// the driver must not run; restarting the BGP side would not help.
    Refused(String),
    /// The learner's thread died: this BGP side cannot go on (its
    /// supervisor starts another).
    Failed(String),
}

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
        adopted: Vec<MultiRoute>,
        ledger: Ledger,
    ) -> std::io::Result<Bgp> {
        let learner = Learner::new(cfg.protocol, cfg.limits, cfg.stale_time, metrics.clone());
        let learner = LearnerHandle::start(learner, installer, metrics.clone())?;
        metrics.bgp(|b| {
            b.enabled = true;
            b.gobgp = cfg.gobgp.to_string();
        });
        Ok(Bgp {
            announcer: Announcer::new(cfg.communities.clone(), cfg.call_timeout, ledger),
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
            line: None,
            peers: Peers::default(),
            asn: 0,
            drain: DrainStatus::default(),
            handshakes: Handshakes::default(),
            speaker_cfg: speaker::SpeakerConfig::default(),
            v6_next_hops: None,
            policies_owed: false,
        })
    }

    /// What the announcer holds in gobgpd and has sent it, for status and metrics.
    fn publish_announcer(&self) {
        let held = self.announcer.count();
        let counts = self.announcer.counts;
        self.metrics.bgp(|b| {
            b.announced = held;
            b.announcer = counts;
        });
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
                self.check_v6_next_hops();
                // Also picks up peers gobgpd reported since (cheap when nothing changed).
                self.apply_inputs().await?;
            }
            Ok(Err(e)) => warn!(error = %e, "could not read the host's addresses"),
            Err(e) => warn!(error = %e, "host refresh task failed"),
        }
        Ok(())
    }

    /// Dual-uplink mode: each configured peer's IPv6 next hop from the
    /// host as last read (none without `--uplink`).
    fn uplink_next_hops(&self, cfg: &speaker::SpeakerConfig) -> UplinkNextHops {
        if self.cfg.uplinks.is_empty() {
            return UplinkNextHops::default();
        }
        let peers: Vec<IpAddr> = cfg.peers.iter().map(|p| p.address).collect();
        uplink_next_hops(&self.host, &self.cfg.uplinks, &peers)
    }

    /// The export policy's IPv6 next hops are fixed when BGP starts on
    /// gobgpd: when an uplink's IPv6 address changes later, say (once per
    /// change) that gobgpd still sends the old one and a gobgpd restart
    /// installs the new one.
    fn check_v6_next_hops(&mut self) {
        let Some(installed) = &self.v6_next_hops else {
            return;
        };
        let now = self.uplink_next_hops(&self.speaker_cfg).per_peer;
        let Some(msg) = changed_warning(installed, &now) else {
            return;
        };
        if self.warned.insert(msg.clone()) {
            warn!("{msg}");
        }
    }

    async fn apply_inputs(&mut self) -> Result<(), LearnerGone> {
        let peers = self.metrics.bgp(|b| b.peers.clone());
        let inputs = policy_inputs(&self.view.borrow(), &self.host, &self.cfg, &peers);
        self.learner.set_inputs(inputs).await
    }

    /// Runs until `shutdown` resolves (`Ok`). Fails when gobgpd's line
    /// cannot honour the configuration (BFD against a 3.x gobgpd:
    /// [`RunError::Refused`], the driver must not run then), or when the
    /// learner's thread dies ([`RunError::Failed`]: the supervisor decides
    /// what next). Stale routes expire on the learner's own timer: nothing
    /// the session awaits (a connect, a call to a stuck gobgpd) can hold
    /// them back.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
        #[cfg(test)]
        if PANIC_AT_START.swap(false, std::sync::atomic::Ordering::SeqCst) {
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

    /// One connection's life, until shutdown, gobgpd lost (the stream broke,
    /// or a call overran its deadline: gobgpd is stuck) or the learner gone.
    async fn session(&mut self, client: Gobgp, shutdown: &mut watch::Receiver<bool>) -> Ended {
        match self.connected(client, shutdown).await {
            Ok(()) => Ended::Shutdown,
            Err(e) => e,
        }
    }

    async fn connected(
        &mut self,
        mut client: Gobgp,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Ended> {
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
        self.speaker_cfg = speaker_cfg.clone();
        self.handshakes = Handshakes::default();
        let v6 = self.uplink_next_hops(&speaker_cfg);
        let started = speaker::start(
            &mut client,
            &speaker_cfg,
            &v6.per_peer,
            &mut self.policies_owed,
        )
        .await
        .map_err(|e| format!("configure gobgpd: {}", gobgp::describe(&e)))?;
        self.v6_next_hops = None;
        if started.fresh
            && speaker_cfg.export == speaker::Export::Own
            && !self.cfg.uplinks.is_empty()
        {
            for w in &v6.warnings {
                warn!("{w}");
            }
            self.v6_next_hops = Some(v6.per_peer);
        }
        if let Some(w) = multipath_warning(&self.cfg.uplinks, started.global.use_multiple_paths) {
            warn!("{w}");
        }
        // Watch first, snapshot second: nothing that happens in between is missed.
        let mut events = client
            .watch(started.global.use_multiple_paths)
            .await
            .map_err(|e| format!("watch: {}", gobgp::describe(&e)))?;
        let n = self.list_best(&mut client, true).await?;
        self.asn = started.global.asn;
        self.peers = Peers::default();
        self.refresh_host().await?;
        // The sessions' local addresses first: the IPv6 next hop prefers
        // one, so a restarted driver chooses what it announced before.
        match client.list_peers(None).await {
            Ok(infos) => {
                self.note_local_addresses(&infos);
            }
            Err(e) => return Err(Ended::Lost(format!("list peers: {}", gobgp::describe(&e)))),
        }
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
        if self.refresh_peers(&mut client).await? {
            // A session came up from another local address meanwhile.
            let view = self.view.borrow().clone();
            let w = self.wanted(&view);
            self.sync(&mut client, &view, w).await?;
        }

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
                _ = shutdown.changed() => {
                    self.stop_gobgpd(&mut client).await;
                    return Ok(());
                }
                r = &mut lost => return Err(Ended::Lost(r.unwrap_or_else(|_| "liveness check ended".into()))),
                r = self.view.changed() => {
                    if r.is_err() {
                        // The view's sender goes with the API server, just
                        // before the stop signal: this is the shutdown too.
                        self.stop_gobgpd(&mut client).await;
                        return Ok(());
                    }
                    debug!(mono_us = crate::clock::mono_us(), "view change seen");
                    self.apply_inputs().await?;
                    debug!(mono_us = crate::clock::mono_us(), "learner inputs set");
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
                    let w = self.wanted(&view);
                    self.sync(&mut client, &view, w).await?;
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
                    // While routes wait for End-of-RIB (3.x reports it only
                    // in ListPeer) or a failed peer is away, every tick.
                    let pending = self.peers.pending() && self.learner.has_stale();
                    if pending || self.peers.has_dropped() || last_peers.elapsed() >= PEER_REFRESH {
                        last_peers = tokio::time::Instant::now();
                        // A session came up from another local address:
                        // the IPv6 next hop may change.
                        changed = self.refresh_peers(&mut client).await?;
                    }
                    if last_host.elapsed() >= HOST_REFRESH || changed {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await?;
                        if before != self.host || changed {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = self.wanted(&view);
                            self.sync(&mut client, &view, w).await?;
                        }
                    }
                    self.drain_progress(&mut client).await;
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err(Ended::Lost("gobgpd closed the event stream".into())),
                        Some(Err(e)) => return Err(Ended::Lost(stream_error(&e))),
                        Some(Ok(m)) => m,
                    };
                    self.on_events(&mut client, first, &mut events, &mut held).await?;
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

    /// What this host announces now: the View's prefixes with their next
    /// hops and attributes, made less preferred while drained.
    fn wanted(&mut self, view: &View) -> BTreeMap<IpNet, Announcement> {
        let mut w = wanted_announcements(
            view,
            &self.host,
            &self.cfg,
            &mut self.next_hop,
            &mut self.warned,
        );
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
    ) -> Result<(), Ended> {
        let arrived = Instant::now();
        let mut c = Collected::default();
        self.collect(first, &mut c);
        while c.paths.len() + c.deltas.len() < EVENT_BATCH {
            match futures::FutureExt::now_or_never(events.next()) {
                Some(Some(Ok(m))) => self.collect(m, &mut c),
                Some(Some(Err(e))) => return Err(Ended::Lost(stream_error(&e))),
                Some(None) | None => break,
            }
        }
        let mut paths = c.paths;
        if !c.deltas.is_empty() {
            // 4.x with multipath: per-path changes become the prefixes'
            // whole sets of best paths again (the latest word on them).
            let latest = c.events + 1;
            paths.extend(
                client
                    .best_sets(c.deltas)
                    .await
                    .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?
                    .into_iter()
                    .map(|p| (latest, p)),
            );
        }
        let mut paths = latest_sets(paths);
        // A peer that failed hard: its stale paths stay out.
        paths.retain(|p| p.withdraw || !self.peers.ignores(p.peer.as_deref()));
        // One message may itself carry more than a batch; a prefix's set
        // never straddles two (the learner takes each batch's paths of a
        // prefix as its whole set).
        let mut paths = paths.into_iter().peekable();
        while paths.peek().is_some() {
            let mut batch: Vec<LearnedPath> = paths.by_ref().take(EVENT_BATCH).collect();
            while let Some(last) = batch.last().map(|p| p.prefix) {
                match paths.next_if(|p| p.prefix == last) {
                    Some(p) => batch.push(p),
                    None => break,
                }
            }
            let now_apply = withdrawals::sort(client, batch, held)
                .await
                .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;
            // Waits when the learner's queue is full: the rest stays in
            // gobgpd's stream (HTTP/2 flow control).
            self.learner.learn(now_apply, arrived).await?;
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
    async fn apply(&mut self, client: &mut Gobgp, actions: Vec<PeerAction>) -> Result<(), Ended> {
        let now = Instant::now();
        for a in actions {
            match a {
                PeerAction::Drop { peer, reason } => {
                    // Another peer's path for the same prefix (anycast, a
                    // second uplink) replaces the failed one's in place.
                    let prefixes = self.learner.prefixes_from(peer.clone()).await?;
                    let others = self
                        .usable_paths(client, &prefixes)
                        .await
                        .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
                    self.learner.learn(others, now).await?;
                    let n = self.learner.drop_peer(peer.clone(), now).await?;
                    warn!(peer, reason, routes = n, kept = (prefixes.len() as u64).saturating_sub(n), "peer failed (not a graceful restart): its routes are removed now, whatever gobgpd keeps as stale");
                    self.metrics.bgp(|b| b.peer_routes_dropped += n);
                }
                PeerAction::EndOfRib { peer, family } => {
                    debug!(peer, family = family.name(), "End-of-RIB");
                    self.learner.end_of_rib(peer, family, now).await?;
                }
                PeerAction::RibComplete(family) => self.learner.rib_complete(family, now).await?,
                PeerAction::Relist => {
                    let n = self.list_best(client, false).await?;
                    self.last_relist = Some(tokio::time::Instant::now());
                    info!(
                        best_paths = n,
                        "a failed peer is back with its End-of-RIB: re-read gobgpd's RIB"
                    );
                }
            }
        }
        Ok(())
    }

    /// The first IPv4 address of the first uplink, else of a parent, else
    /// of any non-loopback link.
    fn default_router_id(&self) -> Option<IpAddr> {
        let view = self.view.borrow();
        let parents = self
            .cfg
            .uplinks
            .iter()
            .chain(view.parents.iter())
            .chain(self.cfg.default_parent.iter());
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
                Event::Best(p) => {
                    c.events += 1;
                    let n = c.events;
                    c.paths.extend(p.into_iter().map(|p| (n, p)));
                }
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
                    let ignored =
                        |p: &RibPath| p.stale && self.peers.ignores(p.path.peer.as_deref());
                    out.extend(best_paths(dest, ignored));
                }
            }
        }
        Ok(out)
    }

    /// Re-reads the peers for status, applies what they show (End-of-RIB
    /// flags on 3.x, a failure the events missed, completeness), and notes
    /// the local addresses of the established sessions for the next hop.
    /// Answers whether those changed.
    async fn refresh_peers(&mut self, client: &mut Gobgp) -> Result<bool, Ended> {
        let infos = match client.list_peers(None).await {
            Ok(infos) => infos,
            // A gobgpd busy with a burst of updates (a peer lost with
            // thousands of paths) answers ListPeer late: the status waits for
            // the next refresh. Whether gobgpd is stuck is the liveness
            // check's call, not this one's.
            Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                debug!(error = %gobgp::describe(&e), "peer list late; kept the last one");
                return Ok(false);
            }
            Err(e) => return Err(Ended::Lost(format!("list peers: {}", gobgp::describe(&e)))),
        };
        let peers: Vec<PeerStatus> = infos.iter().map(peer_status).collect();
        self.metrics.bgp(|b| b.peers = peers);
        for s in self.handshakes.observe(&infos, Instant::now()) {
            self.unstick(client, s).await?;
        }
        let changed = self.note_local_addresses(&infos);
        let actions = self.peers.listed(&infos);
        self.apply(client, actions).await?;
        Ok(changed)
    }

    /// A session stuck in its handshake past its hold time: counted and
    /// logged; one this driver configured is deleted and added again (the
    /// only thing that frees gobgpd 4.8's deadlocked session), one the
    /// operator configured is left to the operator. If the peer cannot be
    /// added back, the connection to gobgpd is given up: the next one adds
    /// every configured peer again.
    async fn unstick(&mut self, client: &mut Gobgp, s: Stuck) -> Result<(), Ended> {
        self.metrics.bgp(|b| b.stuck_handshakes += 1);
        let (peer, state, secs, hold) =
            (&s.peer, s.state.name(), s.stuck_for.as_secs(), s.hold_time);
        match speaker::re_add_peer(client, &self.speaker_cfg, peer).await {
            Ok(true) => {
                warn!(%peer, state, stuck_s = secs, hold, "BGP session stuck in its handshake past its hold time (a gobgpd fault, docs/gobgp-v4.md §9): deleted the peer and added it again");
                Ok(())
            }
            Ok(false) => {
                warn!(%peer, state, stuck_s = secs, hold, "BGP session stuck in its handshake past its hold time (a gobgpd fault, docs/gobgp-v4.md §9); not a peer this driver configured, so left alone: delete and add it again in gobgpd, or restart gobgpd");
                Ok(())
            }
            Err(e) => {
                let e = gobgp::describe(&e);
                Err(Ended::Lost(format!("re-adding the stuck peer {peer}: {e}")))
            }
        }
    }

    /// The local addresses of the established sessions (gobgpd reports the
    /// connection's own address then, on either API line); answers whether
    /// they changed.
    fn note_local_addresses(&mut self, infos: &[PeerInfo]) -> bool {
        let local: BTreeSet<IpAddr> = infos
            .iter()
            .filter(|p| p.is_established())
            .filter_map(|p| p.local_address)
            .collect();
        let changed = local != self.next_hop.session_local;
        self.next_hop.session_local = local;
        changed
    }

    /// Reads the best path of every IPv4 and IPv6 destination in gobgpd's global RIB
    /// and hands them to the learner in batches of [`EVENT_BATCH`], yielding
    /// between batches. With `snapshot`, the first batch is the learner's
    /// snapshot (what gobgpd does not hold becomes stale); otherwise it is a
    /// re-read after the pools widened ([`Learner::relisted`]: nothing becomes
    /// stale, refusals are not counted twice). Returns the count.
    async fn list_best(&mut self, client: &mut Gobgp, snapshot: bool) -> Result<usize, Ended> {
        self.list_best_inner(client, snapshot)
            .await
            .map_err(|e| match e {
                ListError::Gobgp(e) => Ended::Lost(format!("list paths: {}", gobgp::describe(&e))),
                ListError::Learner => Ended::LearnerGone,
            })
    }

    async fn list_best_inner(
        &mut self,
        client: &mut Gobgp,
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
                let ignored = |p: &RibPath| p.stale && self.peers.ignores(p.path.peer.as_deref());
                batch.extend(best_paths(dest, ignored));
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

/// What a batch of events holds, sorted by what the session does with it.
#[derive(Default)]
struct Collected {
    /// Each with the number of the event that carried it.
    paths: Vec<(u32, LearnedPath)>,
    events: u32,
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

/// The best paths of a destination: only those gobgpd marks best (4.x
/// marks every member of an equal set; 3.x one). A destination without one
/// (no path selected, every next hop invalid) has nothing to install:
/// another path is never taken in its place. One exception: when every
/// marked path is `ignored` (the stale copy of a peer that failed hard,
/// which gobgpd may still rank best), the next usable path stands in, as
/// gobgpd will choose it once it flushes the stale one.
fn best_paths(dest: Vec<RibPath>, ignored: impl Fn(&RibPath) -> bool) -> Vec<LearnedPath> {
    let best_ignored = dest.iter().any(|p| p.best && ignored(p));
    let kept: Vec<RibPath> = dest.into_iter().filter(|p| !ignored(p)).collect();
    let marked: Vec<LearnedPath> = kept
        .iter()
        .filter(|p| p.best && !p.path.withdraw)
        .map(|p| p.path.clone())
        .collect();
    if marked.is_empty() && best_ignored {
        kept.into_iter()
            .find(|p| !p.path.withdraw)
            .map(|p| p.path)
            .into_iter()
            .collect()
    } else {
        marked
    }
}

/// Several events about one prefix in a batch: each carried the prefix's
/// whole set of best paths (or its withdrawal), so only the latest event's
/// word on it counts. Out: those paths, each prefix's together, prefixes in
/// the order they were first named.
fn latest_sets(paths: Vec<(u32, LearnedPath)>) -> Vec<LearnedPath> {
    let mut latest: HashMap<IpNet, (u32, usize)> = HashMap::new();
    for (k, (event, p)) in paths.iter().enumerate() {
        let e = latest.entry(p.prefix).or_insert((*event, k));
        e.0 = e.0.max(*event);
    }
    let mut kept: Vec<(usize, LearnedPath)> = paths
        .into_iter()
        .filter(|(event, p)| latest.get(&p.prefix).is_some_and(|l| l.0 == *event))
        .map(|(_, p)| (latest.get(&p.prefix).map_or(0, |l| l.1), p))
        .collect();
    kept.sort_by_key(|(first, _)| *first);
    kept.into_iter().map(|(_, p)| p).collect()
}

/// Dual-uplink mode needs gobgpd to report every equal best path: the
/// warning when its `use_multiple_paths` is off (an operator's gobgpd
/// without `[global.use-multiple-paths.config] enabled = true`).
fn multipath_warning(uplinks: &[String], use_multiple_paths: bool) -> Option<String> {
    (!uplinks.is_empty() && !use_multiple_paths).then(|| {
        "gobgpd runs without use_multiple_paths: it reports one best path per prefix, so each learned route gets one next hop and one uplink in dual-uplink mode; set [global.use-multiple-paths.config] enabled = true in gobgpd's configuration (or let the driver configure gobgpd with --asn)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_uplink_mode_warns_when_gobgpd_has_no_multipath() {
        let up = vec!["up1".to_string(), "up2".to_string()];
        let w = multipath_warning(&up, false).unwrap();
        assert!(
            w.contains("use_multiple_paths") && w.contains("enabled = true"),
            "{w}"
        );
        assert_eq!(multipath_warning(&up, true), None);
        assert_eq!(multipath_warning(&[], false), None);
    }

    /// A prefix's set in two events of one batch: the later event's set
    /// replaces the earlier one (3.x sends the whole set each time), and a
    /// prefix's paths stay together.
    #[test]
    fn the_latest_event_names_a_prefixs_set() {
        let p = |prefix: &str, nh: &str, withdraw: bool| LearnedPath {
            prefix: n(prefix),
            next_hop: nh.parse().ok(),
            withdraw,
            peer: Some(nh.to_string()),
            as_path: vec![65010],
        };
        let got = latest_sets(vec![
            (1, p("10.9.0.1/32", "192.0.2.2", false)),
            (1, p("10.9.0.1/32", "192.0.2.3", false)),
            (2, p("10.9.0.2/32", "192.0.2.2", false)),
            (3, p("10.9.0.1/32", "192.0.2.3", false)),
            (4, p("10.9.0.2/32", "192.0.2.2", true)),
        ]);
        assert_eq!(
            got,
            vec![
                p("10.9.0.1/32", "192.0.2.3", false),
                p("10.9.0.2/32", "192.0.2.2", true)
            ]
        );
    }

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rib_path(nh: &str, best: bool, stale: bool) -> RibPath {
        RibPath {
            path: LearnedPath {
                prefix: n("10.1.2.5/32"),
                next_hop: nh.parse().ok(),
                withdraw: false,
                peer: Some(nh.into()),
                as_path: vec![65010],
            },
            attrs: Default::default(),
            best,
            stale,
        }
    }

    /// A ListPath destination (either line): only the paths gobgpd marks
    /// best are taken; without one, nothing (never the first path in its
    /// place), unless the marked one is a failed peer's ignored stale copy.
    #[test]
    fn only_the_paths_marked_best_are_taken() {
        let none = |_: &RibPath| false;
        let hops = |v: Vec<LearnedPath>| v.into_iter().map(|p| p.next_hop).collect::<Vec<_>>();
        let d = vec![
            rib_path("192.0.2.2", false, false),
            rib_path("192.0.2.3", true, false),
        ];
        assert_eq!(hops(best_paths(d, none)), ["192.0.2.3".parse().ok()]);
        // 4.x with multipath: every member of the equal set.
        let d = vec![
            rib_path("192.0.2.2", true, false),
            rib_path("192.0.2.3", true, false),
        ];
        assert_eq!(best_paths(d, none).len(), 2);
        let d = vec![
            rib_path("192.0.2.2", false, false),
            rib_path("192.0.2.3", false, false),
        ];
        assert!(best_paths(d, none).is_empty(), "no path marked best");
        assert!(best_paths(vec![], none).is_empty());
        // The best is the stale copy of a peer that failed hard.
        let failed = |p: &RibPath| p.stale && p.path.peer.as_deref() == Some("192.0.2.2");
        let d = vec![
            rib_path("192.0.2.2", true, true),
            rib_path("192.0.2.3", false, false),
        ];
        assert_eq!(hops(best_paths(d, failed)), ["192.0.2.3".parse().ok()]);
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
