//! gobgpd's API in neutral words: what both codecs speak and the rest of
//! the driver reads.
//!
//! In: nothing but the address of gobgpd. Out: the channel ([`channel`],
//! with its keepalives and deadlines), the neutral values both lines decode
//! into ([`GlobalInfo`], [`PeerInfo`], [`RibPath`], [`Event`], …), the
//! decoded streams ([`RibStream`], [`EventStream`]) and the operations the
//! driver needs ([`GobgpApi`]), which each codec ([`super::gobgp_v3`],
//! [`super::gobgp_v4`]) implements for its line. It names neither codec's
//! types, so the codecs and the client that dispatches to them
//! ([`super::gobgp::Gobgp`]) all stand on it without a circle.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status, Streaming};

use super::policy::is_link_local;
use crate::model::attrs::RouteAttrs;
use futures::stream::{BoxStream, Stream, StreamExt};

/// Where gobgpd's API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GobgpAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for GobgpAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() || !p.starts_with('/') {
                return Err(format!("{s}: expected unix:///absolute/path"));
            }
            return Ok(GobgpAddr::Unix(PathBuf::from(p)));
        }
        let hostport = s.strip_prefix("http://").unwrap_or(s);
        if hostport.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "{s}: expected HOST:PORT with an IP address (e.g. 127.0.0.1:50051) or unix:///path"
            ));
        }
        Ok(GobgpAddr::Tcp(hostport.to_string()))
    }
}

impl std::fmt::Display for GobgpAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GobgpAddr::Tcp(a) => write!(f, "{a}"),
            GobgpAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl GobgpAddr {
    /// A TCP address: reachable by any local user, unlike a root-only unix socket.
    pub fn is_tcp(&self) -> bool {
        matches!(self, GobgpAddr::Tcp(_))
    }
}

/// What the driver logs at start when gobgpd's API is on TCP.
pub const TCP_WARNING: &str = "gobgpd's API is on a TCP address: any local user can reach a loopback TCP port and announce any prefix to the whole BGP fabric through it; run gobgpd with --api-hosts unix:///run/gobgpd.sock (a socket only root can open) and point --gobgp at it";

/// HTTP/2 PING interval on the gobgpd channel, also while no call is running.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A PING unanswered this long closes the channel (and every stream on it).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest message accepted from gobgpd (a big ListPath destination).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Which of GoBGP's two gRPC APIs a gobgpd speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiLine {
    /// gobgpd 3.x: `apipb.GobgpApi` (what Debian and Ubuntu ship).
    V3,
    /// gobgpd 4.x: `api.GoBgpService` (BFD from 4.6, End-of-RIB events).
    V4,
}

impl ApiLine {
    pub fn name(self) -> &'static str {
        match self {
            ApiLine::V3 => "v3",
            ApiLine::V4 => "v4",
        }
    }
}

impl std::fmt::Display for ApiLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a connection to gobgpd failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The transport error with its causes (tonic's own text is only "transport error").
    #[error("{0}")]
    Transport(String),
    /// Connected, but neither API line answered.
    #[error("no GoBGP API answered: {0}")]
    Detect(String),
}

/// Opens the channel to gobgpd (no retries here; the caller owns the
/// backoff). The whole attempt, socket and HTTP/2 handshake, is bounded by
/// `timeout`.
pub async fn channel(addr: &GobgpAddr, timeout: Duration) -> Result<Channel, ConnectError> {
    let endpoint = |uri: String| -> Result<Endpoint, ConnectError> {
        Ok(Endpoint::from_shared(uri)
            .map_err(|e| describe_transport(&e))?
            .connect_timeout(timeout)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true))
    };
    let attempt = async {
        match addr {
            GobgpAddr::Tcp(a) => {
                endpoint(format!("http://{a}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await
            }
            GobgpAddr::Unix(path) => {
                let path = path.clone();
                // The authority is never used: the connector below ignores the URI.
                endpoint("http://[::1]:50051".into())?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(s))
                        }
                    }))
                    .await
            }
        }
        .map_err(|e| describe_transport(&e))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

fn describe_transport(e: &tonic::transport::Error) -> ConnectError {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    ConnectError::Transport(out)
}

/// A failed call in words: the message and its causes (a broken channel says
/// only "http2 error"; the cause says "keep-alive timed out").
pub fn describe(e: &Status) -> String {
    let mut out = e.message().to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Runs one gobgpd call (a unary call, or the opening of a stream) with a
/// deadline; a call that overruns fails with `DEADLINE_EXCEEDED` naming `what`.
pub async fn deadline<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "gobgpd did not answer {what} within {limit:?}"
        ))),
    }
}

/// The next message of a list stream, waiting at most `idle` for it.
pub async fn next_within<T>(
    what: &str,
    idle: Duration,
    stream: &mut Streaming<T>,
) -> Result<Option<T>, Status> {
    deadline(what, idle, stream.message()).await
}

/// The unicast address families the driver announces and learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Family {
    #[serde(rename = "ipv4-unicast")]
    Ipv4,
    #[serde(rename = "ipv6-unicast")]
    Ipv6,
}

impl Family {
    /// Both, IPv4 first.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    /// BGP's AFI number (SAFI is always 1, unicast).
    pub fn afi(self) -> i32 {
        match self {
            Family::Ipv4 => 1,
            Family::Ipv6 => 2,
        }
    }

    /// The family of an AFI/SAFI pair; `None` for anything but unicast IP.
    pub fn from_afi_safi(afi: i32, safi: i32) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4),
            (2, 1) => Some(Family::Ipv6),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4-unicast",
            Family::Ipv6 => "ipv6-unicast",
        }
    }
}

/// The global settings gobgpd runs with (GetBgp); `asn` 0: BGP not started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalInfo {
    pub asn: u32,
    pub router_id: String,
    /// ECMP: several equal best paths per prefix.
    pub use_multiple_paths: bool,
}

/// What StartBgp sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartSettings {
    pub asn: u32,
    pub router_id: String,
    /// 0: 179; negative: no BGP listener.
    pub listen_port: i32,
    pub use_multiple_paths: bool,
}

/// A BGP session's FSM state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    #[default]
    Unknown,
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    /// The FSM state numbered as both lines number it (IDLE 1 .. ESTABLISHED 6).
    pub fn from_number(n: i32) -> SessionState {
        match n {
            1 => SessionState::Idle,
            2 => SessionState::Connect,
            3 => SessionState::Active,
            4 => SessionState::OpenSent,
            5 => SessionState::OpenConfirm,
            6 => SessionState::Established,
            _ => SessionState::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionState::Unknown => "unknown",
            SessionState::Idle => "idle",
            SessionState::Connect => "connect",
            SessionState::Active => "active",
            SessionState::OpenSent => "opensent",
            SessionState::OpenConfirm => "openconfirm",
            SessionState::Established => "established",
        }
    }
}

/// A BFD session's state (RFC 5880).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BfdState {
    #[default]
    Unknown,
    AdminDown,
    Down,
    Init,
    Up,
}

impl BfdState {
    pub fn name(self) -> &'static str {
        match self {
            BfdState::Unknown => "unknown",
            BfdState::AdminDown => "admin-down",
            BfdState::Down => "down",
            BfdState::Init => "init",
            BfdState::Up => "up",
        }
    }
}

/// BFD of a peer as gobgpd reports it: its settings and its session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdInfo {
    pub settings: Bfd,
    pub state: BfdState,
}

/// Why gobgpd last took a peer's session down (4.x only; 3.x does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Our hold timer ran out: the peer went silent (frozen, link cut).
    HoldTimerExpired,
    /// We sent a NOTIFICATION (BFD going down does this: "BFD is down").
    NotificationSent(String),
    /// The peer sent a NOTIFICATION (it shut down or was de-configured).
    NotificationReceived(String),
    /// The TCP connection broke (the peer died or restarted).
    ConnectionLost,
    /// The peer announced a graceful restart.
    GracefulRestart,
    /// Shut or removed here (gobgpd stopping, a DeletePeer, admin down).
    Local,
    Other(String),
}

impl DownReason {
    /// A failure whose paths must not be kept as stale: the peer did not
    /// restart, it went away (hold expiry, BFD, an error we reported).
    /// gobgpd as a graceful-restart helper keeps them for the peer's
    /// restart-time after a hold expiry; the driver does not.
    pub fn is_hard(&self) -> bool {
        matches!(
            self,
            DownReason::HoldTimerExpired | DownReason::NotificationSent(_)
        )
    }

    pub fn describe(&self) -> String {
        match self {
            DownReason::HoldTimerExpired => "hold timer expired".into(),
            DownReason::NotificationSent(m) => format!("notification sent ({m})"),
            DownReason::NotificationReceived(m) => format!("notification received ({m})"),
            DownReason::ConnectionLost => "connection lost".into(),
            DownReason::GracefulRestart => "graceful restart".into(),
            DownReason::Local => "stopped here".into(),
            DownReason::Other(m) => m.clone(),
        }
    }
}

/// A neighbour as gobgpd reports it (ListPeer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: String,
    pub asn: u32,
    pub state: SessionState,
    /// BFD settings and state (4.x, when configured).
    pub bfd: Option<BfdInfo>,
    /// Graceful restart configured on this neighbour (restart-time, seconds).
    pub graceful_restart: Option<u32>,
    /// Families for which graceful restart was negotiated both ways.
    pub gr_families: Vec<Family>,
    /// Families whose End-of-RIB the peer has sent.
    pub end_of_rib: Vec<Family>,
    /// Why the session last went down (4.x).
    pub down_reason: Option<DownReason>,
    /// NOTIFICATIONs we sent to this peer so far (3.x: how a hold expiry
    /// shows when no reason is given).
    pub notifications_sent: u64,
    pub hold_time: u64,
    pub keepalive: u64,
    /// The session's own local address (gobgpd fills it in while the
    /// session is established; the IPv6 next hop prefers it).
    pub local_address: Option<IpAddr>,
}

impl PeerInfo {
    pub fn is_established(&self) -> bool {
        self.state == SessionState::Established
    }
}

/// BFD settings of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bfd {
    /// Desired transmit and required receive interval.
    pub interval: Duration,
    pub multiplier: u8,
}

impl Bfd {
    /// How long a silent peer takes to be declared down (when both ends agree).
    pub fn detection(&self) -> Duration {
        self.interval * u32::from(self.multiplier)
    }
}

/// Graceful restart (RFC 4724) of a neighbour, as the driver configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// How long helpers keep our paths when we restart.
    pub restart_time: u32,
    /// How long gobgpd, as the restarting speaker, waits for its peers'
    /// End-of-RIB before it sends its own updates.
    pub deferral_time: u32,
    /// Act as the restarting speaker on the next session (R and F bits).
    pub restarting: bool,
    /// Long-lived graceful restart (RFC 9494): stale time in seconds after
    /// the restart time; `None` off.
    pub long_lived: Option<u32>,
}

/// A peer's TCP MD5 password: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What AddPeer/UpdatePeer send for one neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    pub address: IpAddr,
    pub peer_asn: u32,
    pub password: Option<Secret>,
    pub passive: bool,
    pub rr_client: bool,
    pub multihop: Option<u32>,
    pub hold_time: u64,
    pub keepalive: u64,
    pub connect_retry: u64,
    pub bfd: Option<Bfd>,
    pub graceful_restart: Option<GracefulRestart>,
}

/// The attributes of a path as gobgpd holds it (lists sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathAttrs {
    pub as_path: Vec<u32>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

impl PathAttrs {
    /// The attributes as we would have written them for AS `asn`, so the
    /// announcer can tell whether gobgpd still holds what it wants. `None`
    /// for attributes the announcer never sends (an AS path that is not
    /// `asn` repeated, or longer than a prepend can be): they match nothing
    /// wanted.
    pub fn as_ours(&self, asn: u32) -> Option<RouteAttrs> {
        let as_path_prepend = if self.as_path.is_empty() {
            None
        } else {
            let ours = asn != 0 && self.as_path.iter().all(|&n| n == asn);
            match u8::try_from(self.as_path.len()) {
                Ok(n) if ours => Some(n),
                _ => return None,
            }
        };
        Some(RouteAttrs {
            communities: self.communities.clone(),
            large_communities: self.large_communities.clone(),
            local_pref: self.local_pref,
            med: self.med,
            as_path_prepend,
        })
    }
}

/// A path as learned from gobgpd's RIB or events, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedPath {
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    pub withdraw: bool,
    /// The peer it came from; `None` for paths originated on this gobgpd.
    pub peer: Option<String>,
    pub as_path: Vec<u32>,
}

/// A path of gobgpd's global RIB (ListPath), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibPath {
    pub path: LearnedPath,
    pub attrs: PathAttrs,
    /// gobgpd marks it best (4.x: every member of an equal set).
    pub best: bool,
    /// Kept from a peer that is restarting gracefully.
    pub stale: bool,
}

/// One of our paths, as AddPath/DeletePath send it: `attrs` already
/// [`RouteAttrs::effective`]; the prepend repeats `asn` (gobgpd's AS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnPath {
    pub prefix: IpNet,
    pub next_hop: IpAddr,
    pub attrs: RouteAttrs,
}

/// What gobgpd's event stream reports, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's session changed state.
    Peer {
        address: String,
        asn: u32,
        state: SessionState,
    },
    /// Best paths that replace what a prefix had: for each prefix in it, its
    /// whole set of best paths (one, or every equal one with multipath), or
    /// one withdrawal (3.x always; 4.x without multipath).
    Best(Vec<LearnedPath>),
    /// Per-path changes of the equal best paths of prefixes (4.x with
    /// multipath: an added member, or one member withdrawn while others
    /// stay). Resolved into whole sets with [`Gobgp::best_sets`] before the
    /// learner sees them.
    BestDelta(Vec<LearnedPath>),
    /// A peer's End-of-RIB marker for a family (4.x only).
    EndOfRib { peer: String, family: Family },
}

/// A path gobgpd sent that the codec could not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("path without NLRI")]
    NoNlri,
    #[error("NLRI of type {0} is not an IP prefix")]
    NotPrefix(String),
    #[error("bad prefix {0}")]
    BadPrefix(String),
    #[error("undecodable {0}")]
    Undecodable(&'static str),
}

/// The prefix of an IP NLRI, checked and truncated.
pub fn parse_prefix(prefix: &str, len: u32) -> Result<IpNet, DecodeError> {
    let addr: IpAddr = prefix
        .parse()
        .map_err(|_| DecodeError::BadPrefix(prefix.to_string()))?;
    let len = u8::try_from(len).map_err(|_| DecodeError::BadPrefix(format!("{prefix}/{len}")))?;
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|_| DecodeError::BadPrefix(format!("{prefix}/{len}")))
}

/// The peer a path came from: `None` for our own (3.x writes `"<nil>"`, 4.x `""`).
pub fn path_peer(neighbor_ip: &str) -> Option<String> {
    match neighbor_ip {
        "" | "<nil>" => None,
        other => Some(other.to_string()),
    }
}

/// The next hop of an MP_REACH_NLRI: IPv6 peers may send a global address
/// and a link-local one (RFC 2545); the global one wins. A link-local address
/// alone is returned as it is, and the import policy refuses it: gobgpd's
/// API does not say which interface it was learned on, and a link-local
/// next hop means nothing without one.
pub fn mp_next_hop(next_hops: &[String]) -> Option<IpAddr> {
    let parsed: Vec<IpAddr> = next_hops.iter().filter_map(|n| n.parse().ok()).collect();
    parsed
        .iter()
        .find(|a| !is_link_local(a))
        .or(parsed.first())
        .copied()
}

/// Seconds gobgpd waits before it connects again to a peer it reset (a
/// hold or BFD expiry): its own default is 30 s, during which it also
/// refuses the peer's connections, so a returning uplink's session would
/// stay down that long (seen by the dual-uplink scenario). The harness's
/// gobgpd configuration uses the same.
pub const IDLE_HOLD_AFTER_RESET: u64 = 1;

/// GRACEFUL_SHUTDOWN (RFC 8326), 65535:0.
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;
/// The LOCAL_PREF a received GRACEFUL_SHUTDOWN path gets (RFC 8326 says 0;
/// gobgpd silently drops a policy action of 0, docs/gobgp-v4.md §7).
pub const GSHUT_LOCAL_PREF: u32 = 1;
/// Names of the import policy that honours GRACEFUL_SHUTDOWN.
pub const GSHUT_SET: &str = "ipvlan-bgp-gshut";
pub const GSHUT_POLICY: &str = "ipvlan-bgp-gshut";
pub const GSHUT_STATEMENT: &str = "ipvlan-bgp-gshut-lp";
/// Names of the export policy that sends peers only the paths this host
/// originates (`--export own`): one statement accepting route type LOCAL
/// (gobgpd's paths added through its API, ours), every other path rejected
/// by the assignment's default action.
pub const EXPORT_POLICY: &str = "ipvlan-bgp-export-own";
pub const EXPORT_STATEMENT: &str = "ipvlan-bgp-own-paths";
/// Dual-uplink mode: the export statement (and its neighbour set) that
/// gives one uplink peer our IPv6 paths with that uplink's own IPv6 address
/// as next hop; the peer's address follows the prefix. Placed before
/// [`EXPORT_STATEMENT`]. Without it gobgpd gives an IPv6 path sent over an
/// IPv4 session the IPv4-mapped `::ffff:<local IPv4>`, which no kernel
/// installs (docs/dual-uplink.md).
pub const EXPORT_V6_NEXT_HOP: &str = "ipvlan-bgp-v6-next-hop-";

/// One uplink peer and the IPv6 next hop our IPv6 paths carry towards it:
/// the global IPv6 address of the uplink the peer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerNextHop6 {
    pub peer: IpAddr,
    pub next_hop: Ipv6Addr,
}

impl PeerNextHop6 {
    /// The name of this peer's statement and of its neighbour set.
    pub fn name(&self) -> String {
        format!("{EXPORT_V6_NEXT_HOP}{}", self.peer)
    }

    /// The neighbour set's one entry: the peer's address as a host prefix
    /// (gobgpd's API parses the entries as CIDR).
    pub fn neighbor_entry(&self) -> String {
        let len = if self.peer.is_ipv4() { 32 } else { 128 };
        format!("{}/{len}", self.peer)
    }
}

/// gobgpd's answer to a DeletePath by a UUID it does not hold: "can't find a
/// specified path" (measured on 3.10), "can't find a specified path(s) with
/// the given UUID(s)" (4.8's server.go).
pub fn uuid_not_found(e: &Status) -> bool {
    e.message().contains("can't find")
}

/// An answer that only says "this already exists": configuring again is fine.
pub fn already_exists(e: &Status) -> bool {
    e.code() == Code::AlreadyExists || e.message().contains("already exist")
}

/// An answer to AddDefinedSet, AddPolicy or AddPolicyAssignment that says
/// what we add is there already: "statement NAME already defined" (a
/// policy added again), "duplicated policy NAME" (assigned again), as
/// gobgpd 3.x and 4.x word them. Installing again is then a no-op.
pub fn policy_already_installed(e: &Status) -> bool {
    already_exists(e)
        || e.message().contains("already defined")
        || e.message().contains("duplicated policy")
}

/// A stream of gobgpd's global RIB, one destination per message, decoded
/// by the codec that opened it (undecodable paths are skipped).
pub struct RibStream(BoxStream<'static, Result<Vec<RibPath>, Status>>);

impl RibStream {
    /// A codec's decoded ListPath stream.
    pub fn new(s: impl Stream<Item = Result<Vec<RibPath>, Status>> + Send + 'static) -> Self {
        RibStream(s.boxed())
    }

    /// The paths of the next destination, waiting at most `limit`; `None`
    /// at the end.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Vec<RibPath>>, Status> {
        deadline("ListPath", limit, async { self.0.next().await.transpose() }).await
    }
}

/// gobgpd's event stream (peer states, best paths, End-of-RIB), decoded by
/// the codec that opened it.
pub struct EventStream(BoxStream<'static, Result<Vec<Event>, Status>>);

impl EventStream {
    /// A codec's decoded WatchEvent stream.
    pub fn new(s: impl Stream<Item = Result<Vec<Event>, Status>> + Send + 'static) -> Self {
        EventStream(s.boxed())
    }

    /// The events of the next message; `None` when gobgpd closed the stream.
    /// No deadline: gobgpd may stay quiet for hours; the channel's
    /// keepalives and the liveness check break it if gobgpd is gone.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, Status>> {
        self.0.next().await
    }
}

/// The operations the driver needs from gobgpd, in neutral words; each
/// codec implements them for its line. Every call carries the client's
/// deadline; list calls read their stream to the end (each message within
/// the deadline).
pub trait GobgpApi {
    /// gobgpd's global settings; `asn` 0 when BGP has not started.
    fn get_bgp(&mut self) -> impl Future<Output = Result<GlobalInfo, Status>> + Send;
    fn start_bgp(&mut self, s: &StartSettings) -> impl Future<Output = Result<(), Status>> + Send;
    /// Stops BGP; `graceful` sends no NOTIFICATION to peers that negotiated
    /// graceful restart, so they keep our paths (4.x only).
    fn stop_bgp(&mut self, graceful: bool) -> impl Future<Output = Result<(), Status>> + Send;
    /// Every neighbour, or the one at `address`.
    fn list_peers(
        &mut self,
        address: Option<&str>,
    ) -> impl Future<Output = Result<Vec<PeerInfo>, Status>> + Send;
    /// Whether the session with the neighbour at `address` is established,
    /// read without ListPeer's count of the paths it sent (which walks that
    /// peer's whole Adj-RIB-In inside gobgpd's management loop, where every
    /// AddPath waits: 4.8 with 5,000 paths from the peer spent half its CPU
    /// there when withdrawals came one by one). `None`: this line has no
    /// such read (3.x); ask [`GobgpApi::list_peers`].
    fn peer_up(
        &mut self,
        address: &str,
    ) -> impl Future<Output = Result<Option<bool>, Status>> + Send {
        let _ = address;
        async { Ok(None) }
    }
    fn add_peer(&mut self, p: &PeerSettings) -> impl Future<Output = Result<(), Status>> + Send;
    fn update_peer(&mut self, p: &PeerSettings) -> impl Future<Output = Result<(), Status>> + Send;
    /// Removes the neighbour at `address` (its session and its paths).
    fn delete_peer(&mut self, address: &str) -> impl Future<Output = Result<(), Status>> + Send;
    /// Adds (or replaces) one of our paths; answers gobgpd's UUID of it
    /// (both lines answer one for a unary AddPath; empty if none).
    fn add_path(
        &mut self,
        p: &OwnPath,
        asn: u32,
    ) -> impl Future<Output = Result<Vec<u8>, Status>> + Send;
    /// Many paths in one client stream; `limit` bounds the whole stream.
    fn add_paths(
        &mut self,
        paths: &[OwnPath],
        asn: u32,
        limit: Duration,
    ) -> impl Future<Output = Result<(), Status>> + Send;
    fn delete_path(
        &mut self,
        p: &OwnPath,
        asn: u32,
    ) -> impl Future<Output = Result<(), Status>> + Send;
    /// Deletes the path AddPath answered `uuid` for. A UUID gobgpd no longer
    /// holds (the path was withdrawn, or replaced by another AddPath) fails:
    /// see [`uuid_not_found`].
    fn delete_path_uuid(
        &mut self,
        family: Family,
        uuid: &[u8],
    ) -> impl Future<Output = Result<(), Status>> + Send;
    /// Deletes every local path of `family`.
    fn delete_family(&mut self, family: Family) -> impl Future<Output = Result<(), Status>> + Send;
    /// Opens the global RIB of `family`; only `prefixes` (exact) when given.
    fn open_rib(
        &mut self,
        family: Family,
        prefixes: &[IpNet],
    ) -> impl Future<Output = Result<RibStream, Status>> + Send;
    /// Opens the event stream: peer states, best-path changes and (4.x)
    /// End-of-RIB markers. `multipath`: gobgpd runs with equal best paths.
    fn watch(
        &mut self,
        multipath: bool,
    ) -> impl Future<Output = Result<EventStream, Status>> + Send;
    /// A global import policy that gives paths carrying GRACEFUL_SHUTDOWN
    /// the LOCAL_PREF [`GSHUT_LOCAL_PREF`], so any other path wins.
    fn honour_graceful_shutdown(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
    /// A global export policy that sends peers only the paths this gobgpd
    /// originates ([`EXPORT_POLICY`]): a dual-homed host is no transit.
    /// `v6_next_hops` (dual-uplink mode): first, per uplink peer, a
    /// statement that sends it our IPv6 paths with that uplink's IPv6
    /// address as next hop ([`EXPORT_V6_NEXT_HOP`]).
    fn export_only_own_paths(
        &mut self,
        v6_next_hops: &[PeerNextHop6],
    ) -> impl Future<Output = Result<(), Status>> + Send;
}

/// Parses a community written as `ASN:VALUE` (each 0..65535) or as one number.
pub fn parse_community(s: &str) -> Result<u32, String> {
    if let Some((a, v)) = s.split_once(':') {
        let a: u16 = a
            .parse()
            .map_err(|_| format!("community {s}: {a} is not 0..65535"))?;
        let v: u16 = v
            .parse()
            .map_err(|_| format!("community {s}: {v} is not 0..65535"))?;
        Ok(((a as u32) << 16) | v as u32)
    } else {
        s.parse()
            .map_err(|_| format!("community {s}: expected ASN:VALUE or a 32-bit number"))
    }
}
