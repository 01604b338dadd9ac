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

pub mod announcer;
pub mod gobgp;
pub mod installer;
pub mod learner;
pub mod policy;
pub mod route_table;
pub mod route_watch;
pub mod speaker;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use crate::driver::View;
use crate::kernel::{Kernel, Route};
use crate::metrics::{Metrics, PeerStatus};
use announcer::Announcer;
use gobgp::apipb::{watch_event_request, watch_event_response, ListPeerRequest, WatchEventRequest};
use gobgp::{decode_path, Client, GobgpAddr, LearnedPath};
use installer::InstallerHandle;
use learner::Learner;
use policy::{ParentInfo, PolicyInputs};
use speaker::SpeakerConfig;

#[derive(Debug, Clone)]
pub struct BgpConfig {
    pub gobgp: GobgpAddr,
    pub speaker: SpeakerConfig,
    pub next_hop: Option<IpAddr>,
    pub communities: Vec<u32>,
    pub protocol: u8,
    pub accept_pools: Vec<IpNet>,
    pub max_learned: usize,
    pub stale_time: Duration,
    pub default_parent: Option<String>,
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
        next_hops: cfg.next_hop.into_iter().collect(),
        default_gateways: host.default_gateways.clone(),
    }
}

/// Prefix -> next hop for everything the view announces and we can announce.
fn wanted_announcements(
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    warned: &mut BTreeSet<String>,
) -> BTreeMap<IpNet, IpAddr> {
    let mut out = BTreeMap::new();
    for (prefix, parent) in &view.announcements {
        match cfg.next_hop.or_else(|| host.parent_v4(parent)) {
            Some(nh) => {
                out.insert(*prefix, nh);
            }
            None => {
                if warned.insert(parent.clone()) {
                    warn!(parent = %parent, "parent has no IPv4 address to use as next hop; set --next-hop or address the parent; not announcing its prefixes");
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
    learner: Learner,
    announcer: Announcer,
    host: HostInfo,
    warned: BTreeSet<String>,
}

/// How often the host's addresses are re-read and stale routes checked.
const TICK: Duration = Duration::from_secs(1);
const HOST_REFRESH: Duration = Duration::from_secs(3);

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
            announcer: Announcer::new(cfg.communities.clone()),
            cfg,
            metrics,
            view,
            installer,
            host_kernel: Arc::new(Mutex::new(host_kernel)),
            learner,
            host,
            warned: BTreeSet::new(),
        }
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
        self.installer.send(self.learner.set_inputs(inputs));
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match gobgp::connect(&self.cfg.gobgp, Duration::from_secs(3)).await {
                Ok(client) => {
                    let result = self.session(client, &mut shutdown).await;
                    self.learner.disconnected(Instant::now());
                    self.metrics.bgp(|b| {
                        b.connected = false;
                        b.peers.clear();
                    });
                    match result {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(gobgp = %self.cfg.gobgp, error = %e, stale_secs = self.cfg.stale_time.as_secs(), "lost gobgpd; keeping learned routes while retrying");
                            self.metrics.bgp(|b| b.last_error = Some(e.clone()));
                            failures = 0;
                            backoff = Duration::from_millis(200);
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    let msg = format!("connect: {e}");
                    if failures == 1 || failures % 30 == 0 {
                        warn!(gobgp = %self.cfg.gobgp, error = %msg, attempts = failures, "gobgpd is not reachable; retrying with backoff (Docker requests are still served)");
                    }
                    self.metrics.bgp(|b| b.last_error = Some(msg));
                }
            }
            // Wait out the backoff while keeping stale expiry and inputs current.
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
                    _ = tokio::time::sleep(TICK) => {
                        self.installer.send(self.learner.expire(Instant::now()));
                    }
                }
            }
        }
    }

    /// One connection's life. `Ok(())` on shutdown, `Err` when gobgpd is lost.
    async fn session(
        &mut self,
        mut client: Client,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut speaker_cfg = self.cfg.speaker.clone();
        if speaker_cfg.manages_gobgpd() && speaker_cfg.router_id.is_none() {
            speaker_cfg.router_id = self.default_router_id().map(|r| r.to_string());
        }
        speaker::configure(&mut client, &speaker_cfg)
            .await
            .map_err(|e| format!("configure gobgpd: {}", e.message()))?;
        // Watch first, snapshot second: nothing that happens in between is missed.
        let mut events = client
            .watch_event(WatchEventRequest {
                peer: Some(watch_event_request::PeerFilter {}),
                table: Some(watch_event_request::Table {
                    filters: vec![watch_event_request::table::Filter {
                        r#type: watch_event_request::table::filter::Type::Best as i32,
                        init: false,
                    }],
                }),
            })
            .await
            .map_err(|e| format!("watch: {}", e.message()))?
            .into_inner();
        let snapshot = list_best(&mut client)
            .await
            .map_err(|e| format!("list paths: {}", e.message()))?;
        let n = snapshot.len();
        self.installer
            .send(self.learner.snapshot(snapshot, Instant::now()));
        self.refresh_host().await;
        let view = self.view.borrow().clone();
        let wanted = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
        let pools: Vec<IpNet> = view.pools.iter().copied().collect();
        let mut nhs: Vec<IpAddr> = wanted.values().copied().collect();
        nhs.extend(self.cfg.next_hop);
        self.announcer
            .resync(&mut client, &pools, &nhs)
            .await
            .map_err(|e| format!("read local paths: {}", e.message()))?;
        self.announcer
            .sync(&mut client, &wanted)
            .await
            .map_err(|e| format!("announce: {}", e.message()))?;
        let announced = self.announcer.count();
        self.metrics.bgp(|b| {
            b.connected = true;
            b.connects += 1;
            b.last_error = None;
            b.announced = announced;
        });
        info!(gobgp = %self.cfg.gobgp, best_paths = n, announced, "connected to gobgpd");
        self.refresh_peers(&mut client).await;

        let mut last_host = tokio::time::Instant::now();
        let mut last_peers = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        let mut held = HeldWithdrawals::default();
        loop {
            let hold_until = held.next_deadline();
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                    let due = held.take_due(tokio::time::Instant::now());
                    if !due.is_empty() {
                        self.installer.send(self.learner.learn(due));
                    }
                }
                msg = events.next() => {
                    let first = match msg {
                        None => return Err("gobgpd closed the event stream".into()),
                        Some(Err(e)) => return Err(format!("event stream: {}", e.message())),
                        Some(Ok(m)) => m,
                    };
                    // Drain what is already queued so one kernel batch covers it all.
                    let mut paths = Vec::new();
                    self.collect(first, &mut paths);
                    while let Some(Some(next)) = futures::FutureExt::now_or_never(events.next()) {
                        match next {
                            Ok(m) => self.collect(m, &mut paths),
                            Err(e) => return Err(format!("event stream: {}", e.message())),
                        }
                    }
                    if !paths.is_empty() {
                        let now_apply = self.sort_withdrawals(&mut client, paths, &mut held).await;
                        self.installer.send(self.learner.learn(now_apply));
                    }
                }
                r = self.view.changed() => {
                    if r.is_err() { return Ok(()); }
                    self.apply_inputs();
                    let view = self.view.borrow().clone();
                    let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
                    self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", e.message()))?;
                    let c = self.announcer.count();
                    self.metrics.bgp(|b| b.announced = c);
                }
                _ = tick.tick() => {
                    self.installer.send(self.learner.expire(Instant::now()));
                    if last_host.elapsed() >= HOST_REFRESH {
                        last_host = tokio::time::Instant::now();
                        let before = self.host.clone();
                        self.refresh_host().await;
                        if before != self.host {
                            // A parent got (or lost) its address: announcements may change.
                            let view = self.view.borrow().clone();
                            let w = wanted_announcements(&view, &self.host, &self.cfg, &mut self.warned);
                            self.announcer.sync(&mut client, &w).await.map_err(|e| format!("announce: {}", e.message()))?;
                        }
                    }
                    if last_peers.elapsed() >= Duration::from_secs(5) {
                        last_peers = tokio::time::Instant::now();
                        self.refresh_peers(&mut client).await;
                    }
                }
            }
        }
    }

    /// Withdrawals from a peer whose session is still up apply at once (a
    /// container left). Withdrawals from a peer whose session is gone are held
    /// for [`SESSION_LOSS_HOLD`]: when gobgpd itself shuts down it first drops
    /// every peer (withdrawing everything) and then closes our stream; held
    /// withdrawals then become stale routes instead of an outage.
    async fn sort_withdrawals(
        &mut self,
        client: &mut Client,
        paths: Vec<LearnedPath>,
        held: &mut HeldWithdrawals,
    ) -> Vec<LearnedPath> {
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
                    let up = peer_established(client, &peer).await;
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
        now
    }

    /// The first IPv4 address of a parent, else of any non-loopback link.
    fn default_router_id(&self) -> Option<IpAddr> {
        let view = self.view.borrow();
        let parents = view.parents.iter().chain(self.cfg.default_parent.iter());
        parents
            .filter_map(|p| self.host.parent_v4(p))
            .next()
            .or(self.cfg.next_hop)
            .or_else(|| {
                self.host
                    .links
                    .iter()
                    .flat_map(|(_, _, nets)| nets.iter())
                    .map(|n| n.addr())
                    .find(|a| a.is_ipv4() && !a.is_loopback())
            })
    }

    fn collect(&mut self, m: gobgp::apipb::WatchEventResponse, paths: &mut Vec<LearnedPath>) {
        match m.event {
            Some(watch_event_response::Event::Table(t)) => {
                for p in t.paths {
                    match decode_path(&p) {
                        Ok(lp) => paths.push(lp),
                        Err(e) => debug!(error = %e, "ignoring a path"),
                    }
                }
            }
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

    async fn refresh_peers(&mut self, client: &mut Client) {
        let Ok(resp) = client.list_peer(ListPeerRequest::default()).await else {
            return;
        };
        let mut stream = resp.into_inner();
        let mut peers = Vec::new();
        while let Some(Ok(r)) = stream.next().await {
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
async fn peer_established(client: &mut Client, peer: &str) -> bool {
    let Ok(resp) = client
        .list_peer(ListPeerRequest {
            address: peer.to_string(),
            enable_advertised: false,
        })
        .await
    else {
        return false;
    };
    let mut s = resp.into_inner();
    while let Some(Ok(r)) = s.next().await {
        if r.peer
            .and_then(|p| p.state)
            .is_some_and(|st| st.session_state == 6)
        {
            return true;
        }
    }
    false
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

/// The best path of every IPv4 destination in gobgpd's global RIB.
async fn list_best(client: &mut Client) -> Result<Vec<LearnedPath>, tonic::Status> {
    let mut out = Vec::new();
    for dest in gobgp::global_rib(client).await? {
        let best = dest
            .paths
            .iter()
            .find(|p| p.best)
            .or_else(|| dest.paths.first());
        if let Some(p) = best {
            if let Ok(lp) = decode_path(p) {
                out.push(lp);
            }
        }
    }
    Ok(out)
}
