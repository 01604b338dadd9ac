//! BGP: announce this host's containers through gobgpd, learn the others'.
//!
//! ```text
//!  driver View ──watch──► session ──AddPath/DeletePath──► gobgpd ──BGP──► peers
//!                           ▲  │
//!    gobgpd WatchEvent ─────┘  └─► learner ─► policy ─► installer ─netlink─► kernel
//! ```
//! One task (the session) owns the gobgpd connection: it connects with
//! backoff, configures gobgpd when the driver manages it, re-announces from
//! the driver's state after every (re)connection, and feeds best paths to the
//! learner. The learner and the installer outlive connections, so routes stay
//! installed (stale) while gobgpd is away. The driver keeps serving Docker
//! whatever gobgpd does.
//!
//! Both address families, the same way: IPv4 and IPv6 unicast are announced
//! (each prefix with a next hop of its own family: `--next-hop`, else the
//! parent's IPv4 address or first global IPv6 address), read from gobgpd's
//! RIB, watched, decided and installed.
//!
//! Nothing waits on gobgpd without a bound: every call has a deadline
//! (`--gobgp-timeout`), list streams a per-message one, and the channel's
//! HTTP/2 keepalives break the event stream of a frozen gobgpd within ~5 s.
//! Stale routes expire on their own timer, never behind a call. Learned paths
//! reach the learner in batches of at most [`EVENT_BATCH`], with a yield
//! between batches.

pub mod announcer;
pub mod gobgp;
pub mod learner;
pub mod policy;
pub mod speaker;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use crate::kernel::real::Kernel;
use crate::kernel::Route;
use crate::metrics::{Metrics, PeerStatus};
use crate::rib::installer;
use crate::rib::worker::InstallerHandle;
use crate::view::View;
use announcer::{Announcement, Announcer};
use gobgp::apipb::{
    watch_event_request, watch_event_response, ListPeerRequest, Path, WatchEventRequest,
};
use gobgp::{decode_path, Client, GobgpAddr, LearnedPath};
use learner::Learner;
use policy::{ParentInfo, PolicyInputs};
use speaker::SpeakerConfig;

#[derive(Debug, Clone)]
pub struct BgpConfig {
    pub gobgp: GobgpAddr,
    /// Deadline of every gobgpd call (`--gobgp-timeout`).
    pub call_timeout: Duration,
    pub speaker: SpeakerConfig,
    /// `--next-hop`: at most one address per family (checked by the config).
    pub next_hops: Vec<IpAddr>,
    pub communities: Vec<u32>,
    pub protocol: u8,
    pub accept_pools: Vec<IpNet>,
    pub max_learned: usize,
    pub stale_time: Duration,
    pub default_parent: Option<String>,
}

impl BgpConfig {
    /// The configured next hop for `prefix`'s family, if any.
    pub fn next_hop_for(&self, prefix: &IpNet) -> Option<IpAddr> {
        let v4 = matches!(prefix, IpNet::V4(_));
        self.next_hops.iter().copied().find(|a| a.is_ipv4() == v4)
    }
}

/// What the host looks like: its addresses, the parents' networks, and the
/// gateways of its default routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// ifindex, name, networks of its addresses.
    pub links: Vec<(u32, String, Vec<IpNet>)>,
    /// Gateways of the main table's default routes (IPv4 and IPv6).
    pub default_gateways: BTreeSet<IpAddr>,
}

impl HostInfo {
    /// Reads links and addresses. The default gateways come from the route
    /// installer (`Metrics` `bgp.default_gateways`), which sees every dump
    /// and route notification anyway: a dump here every refresh would cost
    /// ~140 ms at 100k installed routes. See [`HostInfo::with_gateways`].
    pub fn read(kernel: &mut Kernel) -> Result<HostInfo, crate::kernel::KernelError> {
        let links = kernel.links()?;
        let addrs = kernel.addresses()?;
        Ok(HostInfo {
            default_gateways: BTreeSet::new(),
            links: links
                .into_iter()
                .map(|l| {
                    let nets = addrs
                        .iter()
                        .filter(|a| a.index == l.index)
                        .map(|a| a.net)
                        .collect();
                    (l.index, l.name, nets)
                })
                .collect(),
        })
    }

    /// The same host with the default gateways the installer published.
    pub fn with_gateways(mut self, metrics: &Metrics) -> HostInfo {
        self.default_gateways = metrics.bgp(|b| b.default_gateways.iter().copied().collect());
        self
    }

    fn link(&self, name: &str) -> Option<&(u32, String, Vec<IpNet>)> {
        self.links.iter().find(|(_, n, _)| n == name)
    }

    /// The first IPv4 address on `parent`: the next hop we announce.
    pub fn parent_v4(&self, parent: &str) -> Option<IpAddr> {
        self.link(parent)?
            .2
            .iter()
            .find(|n| matches!(n, IpNet::V4(_)))
            .map(|n| n.addr())
    }

    /// The first global IPv6 address on `parent` (ULA included): the next
    /// hop we announce for IPv6 prefixes. Never a link-local one: a peer
    /// cannot use it without knowing the interface, and a route reflector
    /// passes it to hosts on other links.
    pub fn parent_v6(&self, parent: &str) -> Option<IpAddr> {
        self.link(parent)?.2.iter().map(|n| n.addr()).find(|a| {
            a.is_ipv6()
                && !policy::is_link_local(a)
                && !a.is_loopback()
                && !a.is_multicast()
                && !a.is_unspecified()
        })
    }

    /// This host's next hop for `prefix` on `parent`: its address of the same family.
    pub fn parent_next_hop(&self, parent: &str, prefix: &IpNet) -> Option<IpAddr> {
        match prefix {
            IpNet::V4(_) => self.parent_v4(parent),
            IpNet::V6(_) => self.parent_v6(parent),
        }
    }
}

/// The import policy's inputs. `peers`: the BGP neighbours gobgpd reports
/// (the learner adds the peers and next hops of the paths it holds).
pub fn policy_inputs(
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    peers: &[PeerStatus],
) -> PolicyInputs {
    let mut pools: Vec<IpNet> = view.pools.iter().copied().collect();
    pools.extend(cfg.accept_pools.iter().copied());
    let mut parent_names: BTreeSet<String> = view.parents.clone();
    parent_names.extend(cfg.default_parent.clone());
    PolicyInputs {
        pools,
        network_subnets: view.pools.iter().copied().collect(),
        local_endpoints: view.local_endpoints.clone(),
        connected: host
            .links
            .iter()
            .flat_map(|(_, _, nets)| nets.iter().map(|n| n.trunc()))
            .filter(|n| !view.pools.contains(n))
            .collect(),
        own_addresses: host
            .links
            .iter()
            .flat_map(|(_, _, nets)| nets.iter().map(|n| n.addr()))
            .collect(),
        parents: parent_names
            .iter()
            .filter_map(|name| {
                host.link(name).map(|(index, name, nets)| ParentInfo {
                    name: name.clone(),
                    index: *index,
                    nets: nets.iter().map(|n| n.trunc()).collect(),
                })
            })
            .collect(),
        neighbors: peers
            .iter()
            .filter_map(|p| p.address.parse::<IpAddr>().ok())
            .collect(),
        // Our own announcements' next hop is in use as well.
        next_hops: cfg.next_hops.iter().copied().collect(),
        default_gateways: host.default_gateways.clone(),
    }
}

/// Prefix -> next hop and attributes for everything the view announces and we can announce.
/// The next hop is of the prefix's family: `--next-hop` of that family, else
/// the parent's address of that family (IPv6: a global one).
fn wanted_announcements(
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    warned: &mut BTreeSet<String>,
) -> BTreeMap<IpNet, Announcement> {
    let mut out = BTreeMap::new();
    for (prefix, parent) in &view.announcements {
        match cfg
            .next_hop_for(prefix)
            .or_else(|| host.parent_next_hop(parent, prefix))
        {
            Some(next_hop) => {
                let attrs = view.attrs.get(prefix).cloned().unwrap_or_default();
                out.insert(*prefix, Announcement { next_hop, attrs });
            }
            None => {
                let (family, what) = match prefix {
                    IpNet::V4(_) => ("IPv4", "an IPv4 address"),
                    IpNet::V6(_) => ("IPv6", "a global IPv6 address (link-local is not enough)"),
                };
                if warned.insert(format!("{parent} {family}")) {
                    warn!(parent = %parent, family, "parent has no {what} to use as next hop; set --next-hop for {family} or address the parent; not announcing its {family} prefixes");
                }
            }
        }
    }
    out
}

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

/// How often the host's addresses are re-read (in steps of this) and at most
/// how long a stale route outlives its deadline.
const TICK: Duration = Duration::from_secs(1);
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
        let announced = self.announcer.count();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
            b.announced = announced;
        });
        info!(gobgp = %self.cfg.gobgp, best_paths = n, announced, "connected to gobgpd");
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
                    let c = self.announcer.count();
                    self.metrics.bgp(|b| b.announced = c);
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
                        let now_apply = self
                            .sort_withdrawals(&mut client, batch, &mut held)
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

    /// Withdrawals from a peer whose session is still up apply at once (a
    /// container left). Withdrawals from a peer whose session is gone are held
    /// for [`SESSION_LOSS_HOLD`]: when gobgpd itself shuts down it first drops
    /// every peer (withdrawing everything) and then closes our stream; held
    /// withdrawals then become stale routes instead of an outage. When gobgpd
    /// answers too late whether a peer is up (busy with the burst a lost
    /// session causes), the withdrawal is held as if the session were gone:
    /// a path that replaces it cancels it, and a real withdrawal is only
    /// late by the hold. Fails on other errors.
    async fn sort_withdrawals(
        &mut self,
        client: &mut Client,
        paths: Vec<LearnedPath>,
        held: &mut HeldWithdrawals,
    ) -> Result<Vec<LearnedPath>, tonic::Status> {
        let mut now = Vec::with_capacity(paths.len());
        let mut peers_up: BTreeMap<String, bool> = BTreeMap::new();
        for p in paths {
            if !p.withdraw {
                held.cancel(&p.prefix);
                now.push(p);
                continue;
            }
            let peer = p.peer.clone().unwrap_or_default();
            let up = match peers_up.get(&peer) {
                Some(up) => *up,
                None => {
                    let up = match peer_established(client, &peer, self.cfg.call_timeout).await {
                        Ok(up) => up,
                        Err(e) if e.code() == tonic::Code::DeadlineExceeded => {
                            debug!(peer, "peer state late; holding its withdrawals");
                            false
                        }
                        Err(e) => return Err(e),
                    };
                    peers_up.insert(peer, up);
                    up
                }
            };
            if up {
                now.push(p);
            } else {
                held.hold(p, tokio::time::Instant::now() + SESSION_LOSS_HOLD);
            }
        }
        Ok(now)
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

fn lock_learner(learner: &Mutex<Learner>) -> MutexGuard<'_, Learner> {
    learner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes stale routes when their time is up, on its own timer: at the
/// earliest stale deadline, and at least every [`TICK`] (a disconnection
/// sets new deadlines). The removals go to `send` (the installer).
async fn expire_stale(learner: Arc<Mutex<Learner>>, send: impl Fn(Vec<installer::Change>)) {
    loop {
        let cap = Instant::now() + TICK;
        let next = lock_learner(&learner)
            .next_expiry()
            .map_or(cap, |t| t.min(cap));
        tokio::time::sleep_until(next.into()).await;
        let changes = lock_learner(&learner).expire(Instant::now());
        if !changes.is_empty() {
            send(changes);
        }
    }
}

/// How often the liveness check asks gobgpd something.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// Asks gobgpd for its global config every [`LIVENESS_EVERY`]; reports on
/// `lost` the first answer that fails or overruns `limit`.
async fn check_liveness(
    mut client: Client,
    limit: Duration,
    lost: tokio::sync::oneshot::Sender<String>,
) {
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        let ask = client.get_bgp(gobgp::apipb::GetBgpRequest {});
        if let Err(e) = gobgp::deadline("GetBgp", limit, ask).await {
            let _ = lost.send(format!("liveness check: {}", gobgp::describe(&e)));
            return;
        }
    }
}

/// Aborts a spawned task when dropped (the task's owner went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long withdrawals caused by a lost session wait before they apply.
const SESSION_LOSS_HOLD: Duration = Duration::from_secs(1);

/// Withdrawals waiting out [`SESSION_LOSS_HOLD`].
#[derive(Default)]
struct HeldWithdrawals {
    paths: Vec<(tokio::time::Instant, LearnedPath)>,
}

impl HeldWithdrawals {
    fn hold(&mut self, p: LearnedPath, until: tokio::time::Instant) {
        self.cancel(&p.prefix);
        self.paths.push((until, p));
    }

    /// The prefix was learned again: its held withdrawal no longer applies.
    fn cancel(&mut self, prefix: &IpNet) {
        self.paths.retain(|(_, p)| p.prefix != *prefix);
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.paths.iter().map(|(t, _)| *t).min()
    }

    fn take_due(&mut self, now: tokio::time::Instant) -> Vec<LearnedPath> {
        let (due, keep): (Vec<_>, Vec<_>) = self.paths.drain(..).partition(|(t, _)| *t <= now);
        self.paths = keep;
        due.into_iter().map(|(_, p)| p).collect()
    }
}

/// Whether gobgpd still has an established session with `peer`.
async fn peer_established(
    client: &mut Client,
    peer: &str,
    limit: Duration,
) -> Result<bool, tonic::Status> {
    let list = client.list_peer(ListPeerRequest {
        address: peer.to_string(),
        enable_advertised: false,
    });
    let mut s = match gobgp::deadline("ListPeer", limit, list).await {
        Ok(r) => r.into_inner(),
        // A stuck gobgpd ends the session; any other answer means "not up".
        Err(e) if e.code() == tonic::Code::DeadlineExceeded => return Err(e),
        Err(_) => return Ok(false),
    };
    let mut up = false;
    while let Some(r) = gobgp::next_within("ListPeer", limit, &mut s).await? {
        up |= r
            .peer
            .and_then(|p| p.state)
            .is_some_and(|st| st.session_state == 6);
    }
    Ok(up)
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
    use installer::Change;
    use policy::ParentInfo;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn cfg(next_hops: &[&str]) -> BgpConfig {
        BgpConfig {
            gobgp: GobgpAddr::Unix("/run/gobgpd.sock".into()),
            call_timeout: Duration::from_secs(5),
            speaker: SpeakerConfig::default(),
            next_hops: next_hops.iter().map(|a| a.parse().unwrap()).collect(),
            communities: Vec::new(),
            protocol: 73,
            accept_pools: Vec::new(),
            max_learned: 100,
            stale_time: Duration::from_secs(60),
            default_parent: None,
        }
    }

    fn med(m: u32) -> crate::model::attrs::RouteAttrs {
        crate::model::attrs::RouteAttrs {
            med: Some(m),
            ..Default::default()
        }
    }

    /// Each prefix gets a next hop of its own family: `--next-hop` of that
    /// family, else the parent's address; for IPv6 a global one, never the
    /// link-local one (nothing is announced for IPv6 without a global one).
    #[test]
    fn announcements_take_a_next_hop_of_their_family() {
        let view = View {
            announcements: [
                (n("10.1.1.2/32"), "eth1".to_string()),
                (n("fd00:1:1::2/128"), "eth1".to_string()),
                (n("fd00:1:2::/64"), "eth1".to_string()),
            ]
            .into(),
            attrs: [(n("10.1.1.2/32"), med(7))].into(),
            ..View::default()
        };
        let host = |nets: &[&str]| HostInfo {
            links: vec![(7, "eth1".into(), nets.iter().map(|s| n(s)).collect())],
            default_gateways: BTreeSet::new(),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let dual = host(&["fe80::1/64", "192.0.2.1/24", "2001:db8:f::1/64"]);
        let w = wanted_announcements(&view, &dual, &cfg(&[]), &mut BTreeSet::new());
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("192.0.2.1"));
        assert_eq!(w[&n("fd00:1:1::2/128")].next_hop, ip("2001:db8:f::1"));
        assert_eq!(w[&n("fd00:1:2::/64")].next_hop, ip("2001:db8:f::1"));
        // Attributes ride along with their prefix only.
        assert_eq!(w[&n("10.1.1.2/32")].attrs, med(7));
        assert!(w[&n("fd00:1:1::2/128")].attrs.is_empty());
        // Only a link-local IPv6 address: IPv4 is announced, IPv6 is not.
        let v4_only = host(&["fe80::1/64", "192.0.2.1/24"]);
        let mut warned = BTreeSet::new();
        let w = wanted_announcements(&view, &v4_only, &cfg(&[]), &mut warned);
        assert_eq!(w.keys().copied().collect::<Vec<_>>(), [n("10.1.1.2/32")]);
        assert_eq!(warned.len(), 1, "one warning per parent and family");
        // `--next-hop` of one family replaces the parent's address of that family only.
        let w = wanted_announcements(&view, &v4_only, &cfg(&["2001:db8::7"]), &mut warned);
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("192.0.2.1"));
        assert_eq!(w[&n("fd00:1:1::2/128")].next_hop, ip("2001:db8::7"));
        let w = wanted_announcements(
            &view,
            &dual,
            &cfg(&["198.51.100.1", "2001:db8::7"]),
            &mut warned,
        );
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("198.51.100.1"));
        assert_eq!(w[&n("fd00:1:2::/64")].next_hop, ip("2001:db8::7"));
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
        let client = gobgp::connect(&gobgp::GobgpAddr::Unix(path), Duration::from_secs(1))
            .await
            .unwrap();
        let limit = Duration::from_millis(500);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = Instant::now();
        let _check = AbortOnDrop(tokio::spawn(check_liveness(client, limit, tx)));
        let why = tokio::time::timeout(LIVENESS_EVERY + limit + Duration::from_secs(1), rx)
            .await
            .expect("reported in time")
            .expect("a reason");
        assert!(why.contains("GetBgp"), "{why}");
        assert!(start.elapsed() >= LIVENESS_EVERY + limit);
    }

    /// The expiry timer needs nothing from the session: a route adopted with
    /// a 300 ms stale time is removed right after its deadline, whatever the
    /// session is (not) doing.
    #[tokio::test]
    async fn stale_routes_expire_on_their_own_timer() {
        let stale = Duration::from_millis(300);
        let mut learner = Learner::new(73, 100, stale, Arc::new(Metrics::default()));
        let _ = learner.set_inputs(PolicyInputs {
            pools: vec![n("10.1.0.0/16")],
            parents: vec![ParentInfo {
                name: "eth1".into(),
                index: 7,
                nets: vec![n("192.0.2.0/24")],
            }],
            ..PolicyInputs::default()
        });
        let route = Route {
            dst: n("10.1.2.0/24"),
            via: "192.0.2.2".parse().ok(),
            oif: Some(7),
            protocol: 73,
        };
        let start = Instant::now();
        assert_eq!(learner.adopt(&[route], start), vec![]);
        let learner = Arc::new(Mutex::new(learner));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _timer = AbortOnDrop(tokio::spawn(expire_stale(learner, move |c| {
            let _ = tx.send(c);
        })));
        let changes = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("removed within 3 s")
            .expect("timer alive");
        let took = start.elapsed();
        assert_eq!(changes, vec![Change::Remove(route.dst)]);
        assert!(
            took >= stale && took < stale + Duration::from_millis(500),
            "removed after {took:?}, stale time {stale:?}"
        );
    }
}
