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
//! liveness check). The learner and the installer outlive connections.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
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
use super::host::{policy_inputs, wanted_announcements, HostInfo};
use super::learner::{lock_learner, Learner};
use super::speaker;
use super::timers::{check_liveness, expire_stale, AbortOnDrop, TICK};
use super::withdrawals::{self, HeldWithdrawals};
use crate::kernel::real::Kernel;
use crate::kernel::Route;
use crate::metrics::{Metrics, PeerStatus};
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

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
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
                return;
            }
            match gobgp::connect(&self.cfg.gobgp, self.cfg.call_timeout).await {
                Ok(client) => {
                    self.session_up = false;
                    let result = self.session(client, &mut shutdown).await;
                    self.learner().disconnected(Instant::now());
                    self.metrics.bgp(|b| {
                        b.connected = false;
                        b.peers.clear();
                    });
                    match result {
                        Ok(()) => return,
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
                    _ = shutdown.changed() => return,
                    r = self.view.changed() => {
                        if r.is_err() { return; }
                        self.apply_inputs();
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

    /// One connection's life. `Ok(())` on shutdown, `Err` when gobgpd is lost
    /// (the stream broke, or a call overran its deadline: gobgpd is stuck).
    async fn session(
        &mut self,
        mut client: Client,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
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
        let n = self
            .list_best(&mut client, true)
            .await
            .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?;
        self.refresh_host().await;
        let view = self.view.borrow().clone();
        let mut known_pools = view.pools.clone();
        let wanted = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
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
        self.publish_announcer();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
        });
        info!(gobgp = %self.cfg.gobgp, best_paths = n, announced = self.announcer.count(), "connected to gobgpd");
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
                _ = shutdown.changed() => return Ok(()),
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
                    let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
                    self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
                    self.metrics.announced(w.keys());
                    self.publish_announcer();
                }
                _ = tick.tick() => {
                    if last_host.elapsed() >= HOST_REFRESH {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await;
                        if before != self.host {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
                            self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", gobgp::describe(&e)))?;
                            self.publish_announcer();
                        }
                    }
                    if last_peers.elapsed() >= PEER_REFRESH {
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
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err("gobgpd closed the event stream".into()),
                        Some(Err(e)) => return Err(stream_error(&e)),
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
                            Some(Some(Err(e))) => return Err(stream_error(&e)),
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
                        let changes = self.learner().learn(now_apply);
                        let set = changes.iter().filter_map(|c| match c {
                            installer::Change::Set(r) => Some(r.dst),
                            installer::Change::Remove(_) => None,
                        });
                        self.metrics.learned(set, arrived);
                        self.installer.send(changes);
                        tokio::task::yield_now().await;
                    }
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

    async fn refresh_peers(&mut self, client: &mut Client) -> Result<(), tonic::Status> {
        let limit = self.cfg.call_timeout;
        let list = client.list_peer(ListPeerRequest::default());
        let mut stream = gobgp::deadline("ListPeer", limit, list).await?.into_inner();
        let mut peers = Vec::new();
        while let Some(r) = gobgp::next_within("ListPeer", limit, &mut stream).await? {
            if let Some(p) = r.peer {
                let conf = p.conf.unwrap_or_default();
                let st = p.state.unwrap_or_default();
                peers.push(PeerStatus {
                    address: conf.neighbor_address,
                    asn: conf.peer_asn,
                    state: session_state_name(st.session_state).to_string(),
                });
            }
        }
        self.metrics.bgp(|b| b.peers = peers);
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
        client: &mut Client,
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

/// The best path of a destination, decoded (gobgpd marks it `best`; else its first).
fn best_path(dest: &gobgp::apipb::Destination) -> Option<LearnedPath> {
    let best = dest
        .paths
        .iter()
        .find(|p| p.best)
        .or_else(|| dest.paths.first())?;
    decode_path(best).ok()
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
