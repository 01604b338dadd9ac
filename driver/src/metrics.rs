//! Counters, histograms and the live BGP status behind `/metrics` and
//! `ipvlan-bgp status`.
//!
//! In: the API layer counts requests (and hands over the IPAM's figures,
//! [`IpamFigures`], before each scrape); the BGP tasks write the gobgpd
//! connection, peers, announced/learned/installed counts and every rejection
//! by reason into [`BgpStatus`], and mark the moments the latency histograms
//! measure (a Join, gobgpd accepting its path; a WatchEvent, the kernel's ACK
//! of its route). Out: a snapshot for status, and the Prometheus text
//! exposition (prometheus-client: HELP and TYPE lines) for scrapes.
//!
//! Label values are bounded: request methods come from the fixed protocol
//! list (anything else is `other`), outcomes and rejection reasons from fixed
//! enums, and per-peer series stop at [`MAX_PEER_SERIES`] peers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Peers beyond this many (sorted by address) get no `ipvlan_bgp_peer_up`
/// series of their own; they still count in `ipvlan_bgp_peers`.
pub const MAX_PEER_SERIES: usize = 64;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// At most this many prefixes wait for their announcement or install; past
/// it, entries older than [`PENDING_MAX_AGE`] are dropped, then new ones are
/// not timed (a flood costs bounded memory, not a wrong figure).
const PENDING_MAX: usize = 16_384;
const PENDING_MAX_AGE: Duration = Duration::from_secs(300);

/// Why an endpoint was announced without its address seen live: the
/// bound passed, or the changes could not be heard (no subscription, or
/// lost notifications).
pub const FALLBACK_REASONS: [&str; 2] = ["deadline", "subscription"];

/// How a live endpoint's gratuitous ARP / unsolicited NA went (sent off the
/// announcement's path): sent, failed (ENOBUFS on a parent with many
/// siblings, say), or skipped (the sandbox is in another mount namespace:
/// the managed plugin).
pub const NEIGHBOUR_FRAME_RESULTS: [&str; 3] = ["sent", "failed", "skipped"];

/// The Docker methods counted under their own name.
const METHODS: &[&str] = &[
    "Plugin.Activate",
    "NetworkDriver.GetCapabilities",
    "NetworkDriver.CreateNetwork",
    "NetworkDriver.DeleteNetwork",
    "NetworkDriver.AllocateNetwork",
    "NetworkDriver.FreeNetwork",
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.EndpointOperInfo",
    "NetworkDriver.DeleteEndpoint",
    "NetworkDriver.Join",
    "NetworkDriver.Leave",
    "NetworkDriver.ProgramExternalConnectivity",
    "NetworkDriver.RevokeExternalConnectivity",
    "NetworkDriver.DiscoverNew",
    "NetworkDriver.DiscoverDelete",
    "IpamDriver.GetCapabilities",
    "IpamDriver.GetDefaultAddressSpaces",
    "IpamDriver.RequestPool",
    "IpamDriver.ReleasePool",
    "IpamDriver.RequestAddress",
    "IpamDriver.ReleaseAddress",
    "IpvlanBgp.Status",
    "IpvlanBgp.Drain",
    "IpvlanBgp.IpamShow",
    "IpvlanBgp.IpamReleaseHost",
    "metrics",
    "unknown",
];

/// The cluster-wide IPAM's figures on this host, as of the last scrape
/// (none of its series appear while it is off).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IpamFigures {
    pub enabled: bool,
    /// Whether etcd answered the last call (None: not asked yet).
    pub store_up: Option<bool>,
    /// etcd calls that failed since start.
    pub store_failures: u64,
    pub pools: usize,
    /// Blocks this host holds.
    pub blocks: usize,
    /// Addresses in use here (gateways and containers, strays included).
    pub addresses: usize,
    pub strays: usize,
    pub claims: u64,
    pub lost_races: u64,
    /// Requests that failed because they needed etcd and etcd failed.
    pub etcd_failures: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub address: String,
    pub asn: u32,
    pub state: String,
    /// BFD with this peer, when configured (gobgpd 4.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bfd: Option<PeerBfd>,
    /// Graceful restart configured with this peer: our restart time, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<u32>,
    /// Families for which graceful restart was negotiated both ways.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub graceful_restart_families: Vec<&'static str>,
    /// Families whose End-of-RIB the peer has sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub end_of_rib: Vec<&'static str>,
    /// Why the session last went down, when gobgpd says (4.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_down: Option<String>,
    /// Hold time and keepalive configured, seconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub hold_time: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub keepalive: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A peer's BFD: its session state and the settings gobgpd runs it with.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PeerBfd {
    /// up, down, init, admin-down or unknown.
    pub state: String,
    pub interval_ms: u64,
    pub multiplier: u8,
}

/// When the driver saw a peer enter its current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSince {
    pub state: String,
    /// Unix time.
    pub since: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedSample {
    pub prefix: String,
    pub reason: &'static str,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BgpStatus {
    /// Whether BGP is enabled at all (`--gobgp none` disables it).
    pub enabled: bool,
    pub gobgp: String,
    /// The GoBGP API line gobgpd speaks, `v3` or `v4`, once detected.
    pub api: Option<String>,
    pub connected: bool,
    pub last_error: Option<String>,
    pub connects: u64,
    pub announced: usize,
    pub learned: usize,
    pub installed: usize,
    pub stale: usize,
    pub install_errors: u64,
    /// Installs refused because another owner's route holds the prefix
    /// (counted once per prefix each time it becomes blocked).
    pub route_conflicts: u64,
    /// Routes the reconciler re-added, replaced or removed because the kernel
    /// differed from the driver's decision.
    pub kernel_drift: u64,
    /// Prefixes currently wanted but held by another owner's route.
    pub conflicted: usize,
    pub rejected: BTreeMap<String, u64>,
    /// Gateways of the main table's default routes, as the installer last
    /// saw them (dumps and route notifications); the import policy refuses
    /// prefixes covering them.
    pub default_gateways: Vec<std::net::IpAddr>,
    /// The last refused prefixes (bounded sample), newest last.
    pub recent_rejected: VecDeque<RejectedSample>,
    pub peers: Vec<PeerStatus>,
    /// Per peer address: its state and since when (kept by [`Metrics::bgp`]).
    pub peer_since: BTreeMap<String, PeerSince>,
    /// The prefixes gobgpd accepted from us in the last successful sync.
    pub announced_prefixes: BTreeSet<IpNet>,
    /// Kernel route protocol number of the routes we install.
    pub route_protocol: Option<u8>,
    /// Unix time of the last change of installed routes.
    pub last_route_change: Option<u64>,
    /// The health gate (`--health-gate`), kept by [`crate::health`].
    pub health: HealthGate,
    /// Graceful shutdown (`ipvlan-bgp drain`), kept by [`crate::bgp::drain`].
    pub drain: DrainStatus,
    /// Routes removed at once because their peer failed hard (hold expiry,
    /// BFD) while gobgpd, as a graceful-restart helper, kept its paths.
    pub peer_routes_dropped: u64,
    /// What the announcer did, kept by [`crate::bgp::announcer`].
    pub announcer: AnnouncerCounts,
    /// The route installer's dumps of the main table and the kernel events
    /// it saw, kept by [`crate::rib`].
    pub route_watch: RouteWatch,
    /// Supervised tasks started again after they ended (by task name).
    pub task_restarts: BTreeMap<&'static str, u64>,
    /// BGP sessions found stuck in their handshake past their hold time
    /// (counted once per bound; see `bgp::stuck`).
    pub stuck_handshakes: u64,
    /// Installed learned routes with a next hop through each interface
    /// (by index), kept by the route installer.
    #[serde(skip)]
    pub routes_by_oif: BTreeMap<u32, usize>,
    /// Dual-uplink mode: each uplink's state and routes, read at each
    /// status request and scrape.
    pub uplinks: Vec<crate::provision::uplinks::UplinkState>,
    /// Dual-uplink mode: the host settings found unlike the design wants
    /// them at start (one line each; the driver never changes them).
    pub host_warnings: Vec<String>,
    /// Dual-uplink mode: container ports repaired (drift).
    pub port_repairs: u64,
}

/// What the announcer did, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AnnouncerCounts {
    /// Paths added (AddPath or in a stream), since start.
    pub additions: u64,
    /// Paths withdrawn (DeletePath), since start.
    pub withdrawals: u64,
    /// Local paths found at the last resync in one of our pools with our
    /// next hop that the announcer's ledger does not prove ours: left alone.
    pub foreign: usize,
    /// Paths adopted at the last resync (proven ours by the ledger).
    pub adopted: usize,
}

/// The drain as status shows it (`bgp.drain`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainStatus {
    pub drained: bool,
    /// Unix time the drain was asked for.
    pub since: Option<u64>,
    /// How the drained paths are made less preferred besides GRACEFUL_SHUTDOWN.
    pub method: Option<&'static str>,
    /// Unix time gobgpd took every drained path.
    pub accepted: Option<u64>,
    /// Prefixes announced drained.
    pub prefixes: usize,
    /// Of those, prefixes a peer advertises another path for (it moved).
    pub moved: usize,
    /// Unix time from which the host is safe to stop.
    pub safe_since: Option<u64>,
    /// Why it is (or is not yet) safe, in words.
    pub detail: String,
}

/// Why the route installer read the whole main table (a label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DumpReason {
    /// At start: the routes a previous run left.
    Start,
    /// The periodic reconcile.
    Periodic,
    /// A link that carries our routes changed state.
    Link,
    /// A route event hinted at drift or a freed prefix.
    Route,
    /// Kernel notifications were lost.
    Overrun,
    /// A prefix held by another owner may be free again.
    Conflict,
    /// A failed read or delete is tried again.
    Retry,
    /// A create was refused (EEXIST): who holds the prefix?
    Resolve,
    /// The accepted pools widened: other owners' routes in them are read.
    Scope,
}

impl DumpReason {
    pub const ALL: [DumpReason; 9] = [
        DumpReason::Start,
        DumpReason::Periodic,
        DumpReason::Link,
        DumpReason::Route,
        DumpReason::Overrun,
        DumpReason::Conflict,
        DumpReason::Retry,
        DumpReason::Resolve,
        DumpReason::Scope,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DumpReason::Start => "start",
            DumpReason::Periodic => "periodic",
            DumpReason::Link => "link",
            DumpReason::Route => "route",
            DumpReason::Overrun => "overrun",
            DumpReason::Conflict => "conflict",
            DumpReason::Retry => "retry",
            DumpReason::Resolve => "resolve",
            DumpReason::Scope => "scope",
        }
    }
}

/// Dumps of the main table and kernel events, for status and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RouteWatch {
    /// Full dumps of the main table by reason ([`DumpReason::label`]).
    pub dumps: BTreeMap<&'static str, u64>,
    /// Link and route notifications the installer received.
    pub events: u64,
    /// Events that cannot affect a wanted route: nothing was done.
    pub ignored: u64,
    /// Events that joined a dump already planned.
    pub coalesced: u64,
}

impl RouteWatch {
    pub fn dump(&mut self, why: DumpReason) {
        *self.dumps.entry(why.label()).or_default() += 1;
    }

    /// Full dumps for any reason.
    pub fn dumps_total(&self) -> u64 {
        self.dumps.values().sum()
    }
}

/// The health gate's state for status and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HealthGate {
    pub enabled: bool,
    /// The Docker API it follows.
    pub docker: String,
    pub api_connected: bool,
    pub api_errors: u64,
    pub last_error: Option<String>,
    /// Endpoints held back now (short ID → why).
    pub held: BTreeMap<String, String>,
    pub gated: usize,
    /// Verdict changes of endpoints (healthy, unhealthy, ...).
    pub transitions: u64,
    /// Endpoints announced without a verdict because Docker was unreachable.
    pub fail_open: u64,
}

impl BgpStatus {
    /// Notes when each peer entered its current state.
    fn track_peers(&mut self, now: u64) {
        let BgpStatus {
            peers, peer_since, ..
        } = self;
        peer_since.retain(|a, _| peers.iter().any(|p| &p.address == a));
        for p in peers.iter() {
            match peer_since.get_mut(&p.address) {
                Some(s) if s.state == p.state => {}
                Some(s) => {
                    s.state.clone_from(&p.state);
                    s.since = now;
                }
                None => {
                    peer_since.insert(
                        p.address.clone(),
                        PeerSince {
                            state: p.state.clone(),
                            since: now,
                        },
                    );
                }
            }
        }
    }
}

/// Moments waiting for their outcome: prefix -> when it started.
#[derive(Debug, Default)]
struct Pending(HashMap<IpNet, Instant>);

impl Pending {
    fn start(&mut self, prefix: IpNet, at: Instant) {
        if self.0.len() >= PENDING_MAX && !self.0.contains_key(&prefix) {
            self.0.retain(|_, t| t.elapsed() < PENDING_MAX_AGE);
            if self.0.len() >= PENDING_MAX {
                return;
            }
        }
        self.0.insert(prefix, at);
    }

    fn finish(&mut self, prefix: &IpNet) -> Option<Duration> {
        self.0.remove(prefix).map(|t| t.elapsed())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    outcome: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    networks: Gauge,
    endpoints: Gauge,
    networks_unavailable: Gauge,
    parents_lost: Counter,
    join_to_announce: Histogram,
    join_to_live: Histogram,
    announce_fallback: Family<Vec<(String, String)>, Counter>,
    neighbour_frames: Family<Vec<(String, String)>, Counter>,
    neighbour_frames_time: Histogram,
    learn_to_install: Histogram,
    joins: Mutex<Pending>,
    learns: Mutex<Pending>,
    bgp: Arc<Mutex<BgpStatus>>,
    ipam: Arc<Mutex<IpamFigures>>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let networks = Gauge::default();
        let endpoints = Gauge::default();
        let networks_unavailable = Gauge::default();
        let parents_lost = Counter::default();
        let join_to_announce = Histogram::new(LATENCY_BUCKETS);
        let join_to_live = Histogram::new(LATENCY_BUCKETS);
        let announce_fallback = Family::<Vec<(String, String)>, Counter>::default();
        for reason in FALLBACK_REASONS {
            // Present at 0 from the start: a scrape can say "never".
            let _ =
                announce_fallback.get_or_create(&vec![("reason".to_string(), reason.to_string())]);
        }
        let neighbour_frames = Family::<Vec<(String, String)>, Counter>::default();
        for result in NEIGHBOUR_FRAME_RESULTS {
            let _ =
                neighbour_frames.get_or_create(&vec![("result".to_string(), result.to_string())]);
        }
        let neighbour_frames_time = Histogram::new(LATENCY_BUCKETS);
        let learn_to_install = Histogram::new(LATENCY_BUCKETS);
        let bgp = Arc::new(Mutex::new(BgpStatus::default()));
        registry.register(
            "ipvlan_bgp_requests",
            "Docker plugin requests by method and outcome (ok, or the error class)",
            requests.clone(),
        );
        registry.register(
            "ipvlan_bgp_networks",
            "Networks this driver holds",
            networks.clone(),
        );
        registry.register(
            "ipvlan_bgp_endpoints",
            "Endpoints this driver holds (joined or not)",
            endpoints.clone(),
        );
        registry.register(
            "ipvlan_bgp_networks_unavailable",
            "Networks that cannot serve now (their parent is missing)",
            networks_unavailable.clone(),
        );
        registry.register(
            "ipvlan_bgp_parents_lost",
            "Times a network's parent interface disappeared while the driver ran",
            parents_lost.clone(),
        );
        registry.register(
            "ipvlan_bgp_join_to_announce_seconds",
            "From a Docker Join to gobgpd accepting the endpoint's path",
            join_to_announce.clone(),
        );
        registry.register(
            "ipvlan_bgp_join_to_address_live_seconds",
            "From a Docker Join to the endpoint's address live in the container (configured, its link up, IPv6 past DAD): the announcement's trigger",
            join_to_live.clone(),
        );
        registry.register(
            "ipvlan_bgp_announce_fallback",
            "Endpoints announced without their address seen live in the container: the bound passed (deadline) or its changes could not be heard (subscription)",
            announce_fallback.clone(),
        );
        registry.register(
            "ipvlan_bgp_neighbour_frames",
            "Gratuitous ARP / unsolicited NA sends from live endpoints' interfaces, off the announcement's path, by result: sent, failed (logged with the error), skipped (the sandbox is not a namespace the driver can enter: the managed plugin)",
            neighbour_frames.clone(),
        );
        registry.register(
            "ipvlan_bgp_neighbour_frames_seconds",
            "From the announcement decision to a live endpoint's gratuitous ARP / unsolicited NA sent (or failed)",
            neighbour_frames_time.clone(),
        );
        registry.register(
            "ipvlan_bgp_learn_to_install_seconds",
            "From a learned path's WatchEvent to the kernel's ACK of its route",
            learn_to_install.clone(),
        );
        registry.register_collector(Box::new(BgpCollector(bgp.clone())));
        let ipam = Arc::new(Mutex::new(IpamFigures::default()));
        registry.register_collector(Box::new(IpamCollector(ipam.clone())));
        Metrics {
            registry,
            requests,
            networks,
            endpoints,
            networks_unavailable,
            parents_lost,
            join_to_announce,
            join_to_live,
            announce_fallback,
            neighbour_frames,
            neighbour_frames_time,
            learn_to_install,
            joins: Mutex::default(),
            learns: Mutex::default(),
            bgp,
            ipam,
        }
    }
}

impl Metrics {
    pub fn count_request(&self, method: &str, outcome: &str) {
        let method = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.requests
            .get_or_create(&RequestLabels {
                method,
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Runs `f` on the BGP status (and notes peers' state changes).
    pub fn bgp<R>(&self, f: impl FnOnce(&mut BgpStatus) -> R) -> R {
        let mut guard = lock(&self.bgp);
        let r = f(&mut guard);
        guard.track_peers(now_unix());
        r
    }

    /// Runs `f` on the route installer's dump and event counters.
    pub fn route_watch<R>(&self, f: impl FnOnce(&mut RouteWatch) -> R) -> R {
        f(&mut lock(&self.bgp).route_watch)
    }

    pub fn bgp_snapshot(&self) -> BgpStatus {
        lock(&self.bgp).clone()
    }

    /// The IPAM's figures for the next scrape.
    pub fn set_ipam(&self, figures: IpamFigures) {
        *lock(&self.ipam) = figures;
    }

    /// A Join of the endpoint owning `prefix` started `at`.
    /// A joined endpoint's address was seen live, `after` its Join.
    pub fn address_live(&self, after: Duration) {
        self.join_to_live.observe(after.as_secs_f64());
    }

    /// A joined endpoint was announced without its address seen live;
    /// `reason` is one of [`FALLBACK_REASONS`].
    pub fn announce_fallback(&self, reason: &str) {
        let reason = if FALLBACK_REASONS.contains(&reason) {
            reason
        } else {
            "subscription"
        };
        self.announce_fallback
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// A live endpoint's gratuitous ARP / unsolicited NA went out (or
    /// not: `result` is one of [`NEIGHBOUR_FRAME_RESULTS`]), `took` after
    /// the announcement decision.
    pub fn neighbour_frames(&self, result: &str, took: Option<Duration>) {
        let result = if NEIGHBOUR_FRAME_RESULTS.contains(&result) {
            result
        } else {
            "failed"
        };
        self.neighbour_frames
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
        if let Some(t) = took {
            self.neighbour_frames_time.observe(t.as_secs_f64());
        }
    }

    pub fn join_started(&self, prefix: IpNet, at: Instant) {
        lock(&self.joins).start(prefix, at);
    }

    /// gobgpd accepted every prefix of `announced` (a successful sync).
    pub fn announced<'a>(&self, announced: impl IntoIterator<Item = &'a IpNet>) {
        let set: BTreeSet<IpNet> = announced.into_iter().copied().collect();
        {
            let mut joins = lock(&self.joins);
            for p in &set {
                if let Some(d) = joins.finish(p) {
                    self.join_to_announce.observe(d.as_secs_f64());
                }
            }
        }
        self.bgp(|b| b.announced_prefixes = set);
    }

    /// gobgpd accepted a sync that changed only the `touched` prefixes of
    /// the last one's: each is announced now if `wanted` holds it. Equals
    /// [`Metrics::announced`] with all of `wanted`'s prefixes when the last
    /// call had all of the last sync's, at a cost of what changed (and of
    /// the joins still waiting) instead of everything announced.
    pub fn announced_touched<V>(&self, touched: &BTreeSet<IpNet>, wanted: &BTreeMap<IpNet, V>) {
        self.bgp(|b| {
            for p in touched {
                if wanted.contains_key(p) {
                    b.announced_prefixes.insert(*p);
                } else {
                    b.announced_prefixes.remove(p);
                }
            }
        });
        let mut joins = lock(&self.joins);
        let done: Vec<IpNet> = joins
            .0
            .keys()
            .filter(|p| wanted.contains_key(p))
            .copied()
            .collect();
        for p in &done {
            if let Some(d) = joins.finish(p) {
                self.join_to_announce.observe(d.as_secs_f64());
            }
        }
    }

    /// The learner decided to install (or change) routes to `prefixes` for
    /// paths that arrived `at`.
    pub fn learned(&self, prefixes: impl IntoIterator<Item = IpNet>, at: Instant) {
        let mut learns = lock(&self.learns);
        for p in prefixes {
            learns.start(p, at);
        }
    }

    /// The kernel acknowledged our route to `prefix`.
    pub fn installed(&self, prefix: &IpNet) {
        if let Some(d) = lock(&self.learns).finish(prefix) {
            self.learn_to_install.observe(d.as_secs_f64());
        }
    }

    /// The driver's own health, read at each scrape: networks that cannot
    /// serve now, and parents lost while it ran (in all).
    pub fn set_availability(&self, unavailable: usize, parents_lost: u64) {
        self.networks_unavailable
            .set(i64::try_from(unavailable).unwrap_or(i64::MAX));
        self.parents_lost
            .inner()
            .store(parents_lost, std::sync::atomic::Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, networks: usize, endpoints: usize) -> String {
        self.networks
            .set(i64::try_from(networks).unwrap_or(i64::MAX));
        self.endpoints
            .set(i64::try_from(endpoints).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            out.push_str(&format!("# encoding failed: {e}\n"));
        }
        out
    }
}

/// Encodes the BGP status on each scrape (its values live in [`BgpStatus`]).
#[derive(Debug)]
struct BgpCollector(Arc<Mutex<BgpStatus>>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for BgpCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let b = lock(&self.0).clone();
        let up = |p: &PeerStatus| p.state == "established";
        let n = |v: usize| v as u64;
        gauge(
            &mut e,
            "ipvlan_bgp_gobgp_connected",
            "1 while the driver is connected to gobgpd.",
            u64::from(b.connected),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_gobgp_connects",
            "Connections made to gobgpd.",
            b.connects,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_peer_handshakes_stuck",
            "BGP sessions found in OpenSent or OpenConfirm for longer than their hold time plus 10 s (a gobgpd 4.8 fault after a connection collision); peers the driver configured are deleted and added again.",
            b.stuck_handshakes,
        )?;
        let g = ConstGauge::new(0i64);
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_gobgp_info",
            "1 for the GoBGP API line gobgpd speaks (api=v3 or v4), once detected; gobgpd's API does not report its own version.",
            None,
            g.metric_type(),
        )?;
        if let Some(api) = &b.api {
            ConstGauge::new(1i64).encode(enc.encode_family(&[("api", api.as_str())])?)?;
        }
        gauge(
            &mut e,
            "ipvlan_bgp_peers",
            "BGP peers gobgpd has.",
            n(b.peers.len()),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_peers_up",
            "BGP peers in state established.",
            n(b.peers.iter().filter(|p| up(p)).count()),
        )?;
        // Only addresses become label values (gobgpd may report a peer
        // without one for a moment).
        let mut peers: Vec<&PeerStatus> = b
            .peers
            .iter()
            .filter(|p| p.address.parse::<std::net::IpAddr>().is_ok())
            .collect();
        peers.sort_by(|a, b| a.address.cmp(&b.address));
        let g = ConstGauge::new(0i64);
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_peer_up",
            "1 while the BGP session with this peer is established (first 64 peers by address).",
            None,
            g.metric_type(),
        )?;
        for p in peers.iter().take(MAX_PEER_SERIES) {
            let labels = [("peer", p.address.as_str())];
            ConstGauge::new(i64::from(up(p))).encode(enc.encode_family(&labels)?)?;
        }
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_peer_bfd_up",
            "1 while BFD with this peer is up, for peers with BFD configured (first 64 peers by address).",
            None,
            g.metric_type(),
        )?;
        for p in peers.iter().take(MAX_PEER_SERIES) {
            if let Some(bfd) = &p.bfd {
                let labels = [("peer", p.address.as_str())];
                ConstGauge::new(i64::from(bfd.state == "up"))
                    .encode(enc.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut e,
            "ipvlan_bgp_announced_prefixes",
            "Prefixes gobgpd holds from this host.",
            n(b.announced),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_path_announcements",
            "Paths gobgpd accepted from this driver (a path announced again counts again), since it started.",
            b.announcer.additions,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_path_withdrawals",
            "Paths this driver withdrew from gobgpd, since it started.",
            b.announcer.withdrawals,
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_announcer_foreign_paths",
            "Local paths in gobgpd, in our pools with our next hop, that the driver did not add (left alone; at the last resync).",
            n(b.announcer.foreign),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_learned_prefixes",
            "Learned prefixes the import policy accepted (best paths).",
            n(b.learned),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_installed_routes",
            "Routes this driver holds in the kernel.",
            n(b.installed),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_stale_routes",
            "Installed routes gobgpd cannot confirm now (kept for --stale-routes-time).",
            n(b.stale),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_conflicted_routes",
            "Wanted routes held by another owner's route.",
            n(b.conflicted),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_install_errors",
            "Route writes the kernel refused (retried).",
            b.install_errors,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_route_conflicts",
            "Installs refused because another owner's route holds the prefix.",
            b.route_conflicts,
        )?;
        if !b.uplinks.is_empty() {
            let g = ConstGauge::new(0i64);
            let mut enc = e.encode_descriptor(
                "ipvlan_bgp_uplink_up",
                "Dual-uplink mode: 1 while the uplink is up with carrier.",
                None,
                g.metric_type(),
            )?;
            for u in &b.uplinks {
                ConstGauge::new(i64::from(u.state == "up"))
                    .encode(enc.encode_family(&[("uplink", u.name.as_str())])?)?;
            }
            let mut enc = e.encode_descriptor(
                "ipvlan_bgp_uplink_routes",
                "Dual-uplink mode: installed learned routes with a next hop through the uplink.",
                None,
                g.metric_type(),
            )?;
            for u in &b.uplinks {
                ConstGauge::new(i64::try_from(u.routes).unwrap_or(i64::MAX))
                    .encode(enc.encode_family(&[("uplink", u.name.as_str())])?)?;
            }
        }
        gauge(
            &mut e,
            "ipvlan_bgp_host_check_warnings",
            "Dual-uplink mode: host settings found unlike the design wants them at start (logged; never changed).",
            n(b.host_warnings.len()),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_port_repairs",
            "Dual-uplink mode: container ports found down, unmarked or without a gateway, and repaired.",
            b.port_repairs,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_kernel_drift",
            "Corrections made where the kernel differed from the driver's decisions.",
            b.kernel_drift,
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_drained",
            "1 while this host is drained (ipvlan-bgp drain: GRACEFUL_SHUTDOWN on every announcement).",
            u64::from(b.drain.drained),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_drain_safe",
            "1 once a drained host is safe to stop (peers moved, or the settle time passed).",
            u64::from(b.drain.drained && b.drain.safe_since.is_some()),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_peer_routes_dropped",
            "Routes removed at once because their peer failed hard (hold expiry, BFD) while gobgpd kept its paths as stale.",
            b.peer_routes_dropped,
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_health_gated_endpoints",
            "Endpoints held back from announcement by the health gate now.",
            n(b.health.gated),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_health_transitions",
            "Health verdict changes of endpoints seen by the health gate.",
            b.health.transitions,
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_health_docker_connected",
            "1 while the health gate follows Docker's event stream.",
            u64::from(b.health.api_connected),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_health_docker_errors",
            "Docker API calls of the health gate that failed.",
            b.health.api_errors,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_health_fail_open",
            "Endpoints announced without a health verdict because Docker was unreachable.",
            b.health.fail_open,
        )?;
        let c = ConstCounter::new(0u64);
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_rejected_routes",
            "Learned paths the import policy refused, by reason.",
            None,
            c.metric_type(),
        )?;
        for (reason, v) in &b.rejected {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(*v).encode(enc.encode_family(&labels)?)?;
        }
        let w = &b.route_watch;
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_route_dumps",
            "Full reads of the kernel's main routing table by the route installer, by reason.",
            None,
            c.metric_type(),
        )?;
        for why in DumpReason::ALL {
            let v = w.dumps.get(why.label()).copied().unwrap_or(0);
            ConstCounter::new(v).encode(enc.encode_family(&[("reason", why.label())])?)?;
        }
        let mut enc = e.encode_descriptor(
            "ipvlan_bgp_task_restarts",
            "Supervised tasks (the BGP side) started again after they ended or panicked.",
            None,
            c.metric_type(),
        )?;
        let v = b.task_restarts.get("bgp").copied().unwrap_or(0);
        ConstCounter::new(v).encode(enc.encode_family(&[("task", "bgp")])?)?;
        counter(
            &mut e,
            "ipvlan_bgp_route_watch_events",
            "Link and route notifications the route installer received.",
            w.events,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_route_watch_ignored",
            "Notifications that could not affect a wanted route (nothing done).",
            w.ignored,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_route_watch_coalesced",
            "Notifications that joined a table read already planned.",
            w.coalesced,
        )?;
        Ok(())
    }
}

/// Encodes the IPAM's figures on each scrape, when the IPAM is on.
#[derive(Debug)]
struct IpamCollector(Arc<Mutex<IpamFigures>>);

impl Collector for IpamCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let f = lock(&self.0).clone();
        if !f.enabled {
            return Ok(());
        }
        let n = |v: usize| v as u64;
        gauge(
            &mut e,
            "ipvlan_bgp_ipam_store_up",
            "1 while etcd answers the IPAM's calls (0 when the last one failed).",
            u64::from(f.store_up == Some(true)),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_ipam_store_failures",
            "etcd calls of the IPAM that failed (timeouts included).",
            f.store_failures,
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_ipam_pools",
            "Pools of the cluster-wide IPAM this host knows.",
            n(f.pools),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_ipam_blocks",
            "Address blocks this host holds in etcd.",
            n(f.blocks),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_ipam_addresses",
            "Addresses this host handed out and has not got back (gateways and strays included).",
            n(f.addresses),
        )?;
        gauge(
            &mut e,
            "ipvlan_bgp_ipam_strays",
            "Addresses in use here outside the blocks this host holds.",
            n(f.strays),
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_ipam_block_claims",
            "Blocks this host claimed in etcd.",
            f.claims,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_ipam_lost_races",
            "Claims that lost a block to another host and tried another.",
            f.lost_races,
        )?;
        counter(
            &mut e,
            "ipvlan_bgp_ipam_etcd_failures",
            "Docker requests that needed etcd (a new block or pool) and failed because it did not answer.",
            f.etcd_failures,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn renders_help_type_and_counters() {
        let m = Metrics::default();
        m.count_request("NetworkDriver.Join", "ok");
        m.count_request("NetworkDriver.Join", "ok");
        m.bgp(|b| {
            *b.rejected.entry("default-route".into()).or_default() += 1;
            b.route_conflicts = 3;
            b.kernel_drift = 4;
        });
        let text = m.render(1, 2);
        assert_eq!(
            value(
                &text,
                r#"ipvlan_bgp_requests_total{method="NetworkDriver.Join",outcome="ok"}"#
            ),
            Some("2")
        );
        assert_eq!(value(&text, "ipvlan_bgp_endpoints"), Some("2"));
        assert_eq!(
            value(
                &text,
                r#"ipvlan_bgp_rejected_routes_total{reason="default-route"}"#
            ),
            Some("1")
        );
        assert_eq!(value(&text, "ipvlan_bgp_route_conflicts_total"), Some("3"));
        assert_eq!(value(&text, "ipvlan_bgp_kernel_drift_total"), Some("4"));
        assert!(text.contains("# TYPE ipvlan_bgp_kernel_drift_total counter\n"));
        assert!(text.contains("# HELP ipvlan_bgp_installed_routes "));
        assert!(text.contains("# TYPE ipvlan_bgp_join_to_announce_seconds histogram\n"));
    }

    #[test]
    fn each_uplink_has_its_state_and_routes_and_the_host_checks_are_counted() {
        use crate::provision::uplinks::UplinkState;
        let m = Metrics::default();
        let text = m.render(0, 0);
        assert!(
            !text.contains("ipvlan_bgp_uplink_up"),
            "no uplinks, no series"
        );
        m.bgp(|b| {
            b.uplinks = vec![
                UplinkState {
                    name: "up1".into(),
                    state: "up".into(),
                    routes: 5,
                },
                UplinkState {
                    name: "up2".into(),
                    state: "no-carrier".into(),
                    routes: 2,
                },
            ];
            b.host_warnings = vec!["net.ipv4.fib_multipath_hash_policy is 0".into()];
            b.port_repairs = 3;
        });
        let text = m.render(0, 0);
        assert_eq!(
            value(&text, r#"ipvlan_bgp_uplink_up{uplink="up1"}"#),
            Some("1")
        );
        assert_eq!(
            value(&text, r#"ipvlan_bgp_uplink_up{uplink="up2"}"#),
            Some("0")
        );
        assert_eq!(
            value(&text, r#"ipvlan_bgp_uplink_routes{uplink="up1"}"#),
            Some("5")
        );
        assert_eq!(
            value(&text, r#"ipvlan_bgp_uplink_routes{uplink="up2"}"#),
            Some("2")
        );
        assert_eq!(value(&text, "ipvlan_bgp_host_check_warnings"), Some("1"));
        assert_eq!(value(&text, "ipvlan_bgp_port_repairs_total"), Some("3"));
        assert_eq!(text.matches("# HELP ipvlan_bgp_uplink_up ").count(), 1);
    }

    #[test]
    fn route_dumps_are_counted_by_reason_with_every_reason_present() {
        let m = Metrics::default();
        m.route_watch(|w| {
            w.dump(DumpReason::Link);
            w.dump(DumpReason::Link);
            w.events = 5;
            w.ignored = 2;
            w.coalesced = 1;
        });
        let text = m.render(0, 0);
        assert_eq!(
            value(&text, r#"ipvlan_bgp_route_dumps_total{reason="link"}"#),
            Some("2")
        );
        for why in DumpReason::ALL {
            let series = format!(
                r#"ipvlan_bgp_route_dumps_total{{reason="{}"}}"#,
                why.label()
            );
            assert!(value(&text, &series).is_some(), "{series}");
        }
        assert_eq!(
            value(&text, "ipvlan_bgp_route_watch_events_total"),
            Some("5")
        );
        assert_eq!(
            value(&text, "ipvlan_bgp_route_watch_ignored_total"),
            Some("2")
        );
        assert_eq!(
            value(&text, "ipvlan_bgp_route_watch_coalesced_total"),
            Some("1")
        );
        assert_eq!(m.bgp_snapshot().route_watch.dumps_total(), 2);
    }

    #[test]
    fn every_series_has_help_and_type() {
        let m = Metrics::default();
        m.count_request("Plugin.Activate", "ok");
        m.bgp(|b| {
            b.peers.push(PeerStatus {
                address: "192.0.2.2".into(),
                asn: 65000,
                state: "established".into(),
                ..PeerStatus::default()
            });
            *b.rejected.entry("reserved".into()).or_default() += 1;
        });
        let text = m.render(0, 0);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                .unwrap_or(name);
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }

    #[test]
    fn ipam_series_appear_only_when_it_is_on() {
        let m = Metrics::default();
        assert!(!m.render(0, 0).contains("bgp_ipam_"), "off: no IPAM series");
        m.set_ipam(IpamFigures {
            enabled: true,
            store_up: Some(true),
            blocks: 2,
            addresses: 7,
            claims: 3,
            ..IpamFigures::default()
        });
        m.count_request("IpamDriver.RequestAddress", "etcd");
        let text = m.render(0, 0);
        assert_eq!(value(&text, "ipvlan_bgp_ipam_store_up"), Some("1"));
        assert_eq!(value(&text, "ipvlan_bgp_ipam_blocks"), Some("2"));
        assert_eq!(value(&text, "ipvlan_bgp_ipam_addresses"), Some("7"));
        assert_eq!(
            value(&text, "ipvlan_bgp_ipam_block_claims_total"),
            Some("3")
        );
        assert_eq!(
            value(
                &text,
                r#"ipvlan_bgp_requests_total{method="IpamDriver.RequestAddress",outcome="etcd"}"#
            ),
            Some("1")
        );
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            m.count_request(&format!("/random/{i}"), "malformed");
        }
        let text = m.render(0, 0);
        assert_eq!(
            value(
                &text,
                r#"ipvlan_bgp_requests_total{method="other",outcome="malformed"}"#
            ),
            Some("100")
        );
        assert_eq!(text.matches("ipvlan_bgp_requests_total{").count(), 1);
    }

    #[test]
    fn join_to_announce_counts_each_join_once() {
        let m = Metrics::default();
        let a: IpNet = "10.1.0.2/32".parse().unwrap();
        let b: IpNet = "10.1.0.3/32".parse().unwrap();
        m.join_started(a, Instant::now());
        m.announced([&a, &b]);
        m.announced([&a, &b]);
        let text = m.render(0, 0);
        assert_eq!(
            value(&text, "ipvlan_bgp_join_to_announce_seconds_count"),
            Some("1")
        );
        assert_eq!(
            value(
                &text,
                r#"ipvlan_bgp_join_to_announce_seconds_bucket{le="+Inf"}"#
            ),
            Some("1")
        );
        assert_eq!(m.bgp_snapshot().announced_prefixes.len(), 2);
    }

    #[test]
    fn fallbacks_read_zero_until_counted() {
        let m = Metrics::default();
        let text = m.render(0, 0);
        for r in FALLBACK_REASONS {
            let series = format!(r#"ipvlan_bgp_announce_fallback_total{{reason="{r}"}}"#);
            assert_eq!(value(&text, &series), Some("0"), "{text}");
        }
        m.announce_fallback("deadline");
        m.address_live(Duration::from_millis(3));
        let text = m.render(0, 0);
        let deadline = r#"ipvlan_bgp_announce_fallback_total{reason="deadline"}"#;
        assert_eq!(value(&text, deadline), Some("1"));
        assert_eq!(
            value(&text, "ipvlan_bgp_join_to_address_live_seconds_count"),
            Some("1")
        );
    }

    #[test]
    fn learn_to_install_counts_installs_of_learned_prefixes() {
        let m = Metrics::default();
        let p: IpNet = "10.1.0.9/32".parse().unwrap();
        let q: IpNet = "10.1.0.10/32".parse().unwrap();
        m.learned([p], Instant::now());
        m.installed(&p);
        m.installed(&q);
        m.installed(&p);
        let text = m.render(0, 0);
        assert_eq!(
            value(&text, "ipvlan_bgp_learn_to_install_seconds_count"),
            Some("1")
        );
    }

    #[test]
    fn the_api_line_and_bfd_state_are_series() {
        let m = Metrics::default();
        let text = m.render(0, 0);
        assert!(text.contains("# TYPE ipvlan_bgp_gobgp_info gauge"));
        assert!(
            !text.contains("ipvlan_bgp_gobgp_info{"),
            "no line before detection"
        );
        m.bgp(|b| {
            b.api = Some("v4".into());
            b.peers = vec![
                PeerStatus {
                    address: "192.0.2.2".into(),
                    state: "established".into(),
                    bfd: Some(PeerBfd {
                        state: "up".into(),
                        interval_ms: 300,
                        multiplier: 3,
                    }),
                    ..PeerStatus::default()
                },
                PeerStatus {
                    address: "192.0.2.3".into(),
                    state: "active".into(),
                    bfd: Some(PeerBfd {
                        state: "down".into(),
                        interval_ms: 300,
                        multiplier: 3,
                    }),
                    ..PeerStatus::default()
                },
                PeerStatus {
                    address: "192.0.2.4".into(),
                    state: "established".into(),
                    ..PeerStatus::default()
                },
            ];
        });
        let text = m.render(0, 0);
        assert_eq!(
            value(&text, r#"ipvlan_bgp_gobgp_info{api="v4"}"#),
            Some("1")
        );
        assert_eq!(
            value(&text, r#"ipvlan_bgp_peer_bfd_up{peer="192.0.2.2"}"#),
            Some("1")
        );
        assert_eq!(
            value(&text, r#"ipvlan_bgp_peer_bfd_up{peer="192.0.2.3"}"#),
            Some("0")
        );
        // No BFD configured: no BFD series for that peer.
        assert!(!text.contains(r#"ipvlan_bgp_peer_bfd_up{peer="192.0.2.4"}"#));
    }

    #[test]
    fn peer_series_are_bounded_and_since_follows_state() {
        let m = Metrics::default();
        m.bgp(|b| {
            b.peers = (0..100)
                .map(|i| PeerStatus {
                    address: format!("10.0.{}.{}", i / 250, i % 250),
                    asn: 65000,
                    state: if i % 2 == 0 { "established" } else { "active" }.into(),
                    bfd: Some(PeerBfd::default()),
                    ..PeerStatus::default()
                })
                .collect();
        });
        let text = m.render(0, 0);
        assert_eq!(value(&text, "ipvlan_bgp_peers"), Some("100"));
        assert_eq!(value(&text, "ipvlan_bgp_peers_up"), Some("50"));
        assert_eq!(text.matches("ipvlan_bgp_peer_up{").count(), MAX_PEER_SERIES);
        assert_eq!(
            text.matches("ipvlan_bgp_peer_bfd_up{").count(),
            MAX_PEER_SERIES
        );
        m.bgp(|b| b.peers[0].address = "<nil>".into());
        assert!(!m.render(0, 0).contains("<nil>"));
        let s = m.bgp_snapshot();
        assert_eq!(s.peer_since["10.0.0.1"].state, "active");
        m.bgp(|b| b.peers[1].state = "established".into());
        assert_eq!(m.bgp_snapshot().peer_since["10.0.0.1"].state, "established");
        m.bgp(|b| b.peers.clear());
        assert!(m.bgp_snapshot().peer_since.is_empty());
    }
}
