//! Talking to gobgpd, whichever line it runs: the codec-neutral client.
//!
//! In: an address (`127.0.0.1:50051`, `[::1]:50051` or `unix:///path`), and
//! what the BGP side asks of gobgpd in its own words (start BGP, peers with
//! their timers, BFD and graceful restart, our paths with their
//! [`RouteAttrs`], the global RIB, events). Out: a connected [`Gobgp`] that
//! knows which API line it talks to ([`ApiLine`], detected at connect), and
//! gobgpd's answers decoded into the same neutral values on both lines:
//! [`GlobalInfo`], [`PeerInfo`], [`RibPath`], [`Event`].
//!
//! The two codecs live beside this file, each in its own room:
//! [`super::gobgp_v3`] (gobgpd 3.x: package `apipb`, attributes packed in
//! `google.protobuf.Any`) and [`super::gobgp_v4`] (gobgpd 4.x: package `api`,
//! typed attributes, BFD, End-of-RIB events). Both implement [`GobgpApi`];
//! [`Gobgp`] dispatches to the one detected. Nothing outside the two codec
//! files sees a generated message.
//!
//! Detection (docs/gobgp-v4.md §3): v4's `/api.GoBgpService/GetBgp` is
//! answered by a 4.x daemon (with its global config, or "not started"), and
//! UNIMPLEMENTED by a 3.x one; then v3's `GetBgp` confirms 3.x. Neither
//! answer carries gobgpd's own version: the API has no such call.
//!
//! Nothing here waits on gobgpd without a bound: every call carries the
//! client's deadline (`--gobgp-timeout`), each message of a list stream
//! waits at most that long, and the channel sends HTTP/2 PINGs even while
//! idle, so a frozen gobgpd (SIGSTOP keeps its socket open) breaks a stream
//! that is only waiting for events within [`KEEPALIVE_INTERVAL`] +
//! [`KEEPALIVE_TIMEOUT`].

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status, Streaming};

use super::gobgp_v3::{self, V3};
use super::gobgp_v4::{self, V4};
use super::policy::is_link_local;
use crate::model::attrs::RouteAttrs;

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
    /// The attributes as we would have written them for AS `asn`: an AS path
    /// that is not `asn` repeated decodes to a prepend no option can ask for,
    /// so it never matches.
    pub fn as_ours(&self, asn: u32) -> RouteAttrs {
        let as_path_prepend = (!self.as_path.is_empty()).then(|| {
            let ours = asn != 0 && self.as_path.iter().all(|&n| n == asn);
            match u8::try_from(self.as_path.len()) {
                Ok(n) if ours => n,
                _ => u8::MAX,
            }
        });
        RouteAttrs {
            communities: self.communities.clone(),
            large_communities: self.large_communities.clone(),
            local_pref: self.local_pref,
            med: self.med,
            as_path_prepend,
        }
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

/// GRACEFUL_SHUTDOWN (RFC 8326), 65535:0.
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;
/// The LOCAL_PREF a received GRACEFUL_SHUTDOWN path gets (RFC 8326 says 0;
/// gobgpd silently drops a policy action of 0, docs/gobgp-v4.md §7).
pub const GSHUT_LOCAL_PREF: u32 = 1;
/// Names of the import policy that honours GRACEFUL_SHUTDOWN.
pub const GSHUT_SET: &str = "ipvlan-bgp-gshut";
pub const GSHUT_POLICY: &str = "ipvlan-bgp-gshut";
pub const GSHUT_STATEMENT: &str = "ipvlan-bgp-gshut-lp";

/// An answer that only says "this already exists": configuring again is fine.
pub fn already_exists(e: &Status) -> bool {
    e.code() == Code::AlreadyExists || e.message().contains("already exist")
}

/// A stream of gobgpd's global RIB, one destination per message.
pub enum RibStream {
    V3(Streaming<gobgp_v3::apipb::ListPathResponse>),
    V4(Streaming<gobgp_v4::api::ListPathResponse>),
}

impl RibStream {
    /// The paths of the next destination (undecodable ones are skipped),
    /// waiting at most `limit`; `None` at the end.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Vec<RibPath>>, Status> {
        Ok(match self {
            RibStream::V3(s) => next_within("ListPath", limit, s)
                .await?
                .map(gobgp_v3::decode_destination),
            RibStream::V4(s) => next_within("ListPath", limit, s)
                .await?
                .map(gobgp_v4::decode_destination),
        })
    }
}

/// gobgpd's event stream (peer states, best paths, End-of-RIB), decoded.
pub enum EventStream {
    V3(Streaming<gobgp_v3::apipb::WatchEventResponse>),
    V4 {
        stream: Streaming<gobgp_v4::api::WatchEventResponse>,
        multipath: bool,
    },
}

impl EventStream {
    /// The events of the next message; `None` when gobgpd closed the stream.
    /// No deadline: gobgpd may stay quiet for hours; the channel's
    /// keepalives and the liveness check break it if gobgpd is gone.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, Status>> {
        match self {
            EventStream::V3(s) => s
                .message()
                .await
                .transpose()
                .map(|r| r.map(gobgp_v3::decode_event)),
            EventStream::V4 { stream, multipath } => {
                let multipath = *multipath;
                stream
                    .message()
                    .await
                    .transpose()
                    .map(|r| r.map(|m| gobgp_v4::decode_event(m, multipath)))
            }
        }
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
    fn add_peer(&mut self, p: &PeerSettings) -> impl Future<Output = Result<(), Status>> + Send;
    fn update_peer(&mut self, p: &PeerSettings) -> impl Future<Output = Result<(), Status>> + Send;
    fn add_path(
        &mut self,
        p: &OwnPath,
        asn: u32,
    ) -> impl Future<Output = Result<(), Status>> + Send;
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
}

/// A connected gobgpd client of the line it speaks.
#[derive(Clone)]
pub enum Gobgp {
    V3(V3),
    V4(V4),
}

/// Runs `$body` with `$c` bound to whichever codec this client holds.
macro_rules! either {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            Gobgp::V3($c) => $body,
            Gobgp::V4($c) => $body,
        }
    };
}

impl Gobgp {
    /// Connects and tells the line apart (one GetBgp on each, at most): every
    /// later call waits at most `limit`.
    pub async fn connect(addr: &GobgpAddr, limit: Duration) -> Result<Gobgp, ConnectError> {
        let channel = channel(addr, limit).await?;
        Gobgp::detect(channel, limit).await
    }

    /// Which line answers on `channel`: v4's GetBgp first (UNIMPLEMENTED on
    /// a 3.x daemon), then v3's.
    pub async fn detect(channel: Channel, limit: Duration) -> Result<Gobgp, ConnectError> {
        let mut v4 = V4::new(channel.clone(), limit);
        let v4_err = match v4.get_bgp().await {
            Ok(_) => return Ok(Gobgp::V4(v4)),
            Err(e) if e.code() != Code::Unimplemented => return Err(detect_error(&e)),
            Err(e) => e,
        };
        let mut v3 = V3::new(channel, limit);
        match v3.get_bgp().await {
            Ok(_) => Ok(Gobgp::V3(v3)),
            Err(e) if e.code() == Code::Unimplemented => Err(ConnectError::Detect(format!(
                "v4: {}; v3: {}",
                describe(&v4_err),
                describe(&e)
            ))),
            Err(e) => Err(detect_error(&e)),
        }
    }

    pub fn line(&self) -> ApiLine {
        match self {
            Gobgp::V3(_) => ApiLine::V3,
            Gobgp::V4(_) => ApiLine::V4,
        }
    }

    /// The deadline of each call.
    pub fn limit(&self) -> Duration {
        either!(self, c => c.limit())
    }

    /// Resolves per-path changes ([`Event::BestDelta`]) into whole sets:
    /// asks gobgpd for the current best paths of every prefix they touch
    /// (one ListPath per family). A prefix with no best path left becomes a
    /// withdrawal carrying the peer of the last withdrawn member.
    pub async fn best_sets(
        &mut self,
        deltas: Vec<LearnedPath>,
    ) -> Result<Vec<LearnedPath>, Status> {
        let limit = self.limit();
        let mut touched: std::collections::BTreeMap<IpNet, LearnedPath> = Default::default();
        for d in deltas {
            touched.insert(d.prefix, d);
        }
        let mut out = Vec::with_capacity(touched.len());
        for family in Family::ALL {
            let prefixes: Vec<IpNet> = touched
                .keys()
                .filter(|p| Family::of(p) == family)
                .copied()
                .collect();
            for chunk in prefixes.chunks(1000) {
                let mut found = std::collections::BTreeSet::new();
                let mut rib = self.open_rib(family, chunk).await?;
                while let Some(dest) = rib.next(limit).await? {
                    for p in dest.into_iter().filter(|p| p.best && !p.path.withdraw) {
                        found.insert(p.path.prefix);
                        out.push(p.path);
                    }
                }
                for p in chunk.iter().filter(|p| !found.contains(p)) {
                    if let Some(last) = touched.get(p) {
                        out.push(LearnedPath {
                            withdraw: true,
                            ..last.clone()
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn detect_error(e: &Status) -> ConnectError {
    ConnectError::Detect(format!("GetBgp: {}: {}", e.code(), describe(e)))
}

impl GobgpApi for Gobgp {
    async fn get_bgp(&mut self) -> Result<GlobalInfo, Status> {
        either!(self, c => c.get_bgp().await)
    }
    async fn start_bgp(&mut self, s: &StartSettings) -> Result<(), Status> {
        either!(self, c => c.start_bgp(s).await)
    }
    async fn stop_bgp(&mut self, graceful: bool) -> Result<(), Status> {
        either!(self, c => c.stop_bgp(graceful).await)
    }
    async fn list_peers(&mut self, address: Option<&str>) -> Result<Vec<PeerInfo>, Status> {
        either!(self, c => c.list_peers(address).await)
    }
    async fn add_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        either!(self, c => c.add_peer(p).await)
    }
    async fn update_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        either!(self, c => c.update_peer(p).await)
    }
    async fn add_path(&mut self, p: &OwnPath, asn: u32) -> Result<(), Status> {
        either!(self, c => c.add_path(p, asn).await)
    }
    async fn add_paths(
        &mut self,
        paths: &[OwnPath],
        asn: u32,
        limit: Duration,
    ) -> Result<(), Status> {
        either!(self, c => c.add_paths(paths, asn, limit).await)
    }
    async fn delete_path(&mut self, p: &OwnPath, asn: u32) -> Result<(), Status> {
        either!(self, c => c.delete_path(p, asn).await)
    }
    async fn delete_family(&mut self, family: Family) -> Result<(), Status> {
        either!(self, c => c.delete_family(family).await)
    }
    async fn open_rib(&mut self, family: Family, prefixes: &[IpNet]) -> Result<RibStream, Status> {
        either!(self, c => c.open_rib(family, prefixes).await)
    }
    async fn watch(&mut self, multipath: bool) -> Result<EventStream, Status> {
        either!(self, c => c.watch(multipath).await)
    }
    async fn honour_graceful_shutdown(&mut self) -> Result<(), Status> {
        either!(self, c => c.honour_graceful_shutdown().await)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_next_hop_wins_over_link_local() {
        let hops = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            mp_next_hop(&hops(&["2001:db8::2", "fe80::2"])),
            ip("2001:db8::2")
        );
        assert_eq!(
            mp_next_hop(&hops(&["fe80::2", "2001:db8::2"])),
            ip("2001:db8::2")
        );
        // Alone, the link-local one is kept for the policy to refuse.
        assert_eq!(mp_next_hop(&hops(&["fe80::2"])), ip("fe80::2"));
        assert_eq!(mp_next_hop(&hops(&["junk"])), None);
        assert_eq!(mp_next_hop(&[]), None);
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
        assert!(!is_link_local(&"169.254.1.1".parse().unwrap()));
    }

    #[test]
    fn own_paths_have_no_peer_on_either_line() {
        assert_eq!(path_peer("<nil>"), None, "3.x");
        assert_eq!(path_peer(""), None, "4.x");
        assert_eq!(path_peer("192.0.2.2").as_deref(), Some("192.0.2.2"));
    }

    #[test]
    fn prefixes_are_checked_and_truncated() {
        assert_eq!(
            parse_prefix("10.1.1.7", 24),
            Ok("10.1.1.0/24".parse().unwrap())
        );
        assert!(parse_prefix("10.1.1.7", 33).is_err());
        assert!(parse_prefix("10.1.1.7", 300).is_err());
        assert!(parse_prefix("nope", 8).is_err());
        // A length that does not fit is refused, never truncated (`as u8`
        // made 288 a /32 and 256 a default route), on both families.
        for (prefix, len) in [
            ("10.1.1.2", 288),
            ("10.1.1.2", 256),
            ("fd00::2", 384),
            ("fd00::2", 129),
        ] {
            assert!(
                matches!(parse_prefix(prefix, len), Err(DecodeError::BadPrefix(_))),
                "{prefix}/{len}"
            );
        }
        assert_eq!(
            parse_prefix("fd00::2", 128),
            Ok("fd00::2/128".parse().unwrap())
        );
    }

    #[test]
    fn our_attributes_are_recognised_by_the_as_path() {
        let a = PathAttrs {
            as_path: vec![65000, 65000],
            med: Some(5),
            ..PathAttrs::default()
        };
        assert_eq!(a.as_ours(65000).as_path_prepend, Some(2));
        assert_eq!(a.as_ours(65000).med, Some(5));
        // Another AS (or none known) never matches a prepend.
        assert_eq!(a.as_ours(65001).as_path_prepend, Some(u8::MAX));
        assert_eq!(a.as_ours(0).as_path_prepend, Some(u8::MAX));
        assert_eq!(PathAttrs::default().as_ours(65000), RouteAttrs::default());
    }

    #[test]
    fn hard_failures_are_told_from_restarts() {
        assert!(DownReason::HoldTimerExpired.is_hard());
        assert!(DownReason::NotificationSent("BFD is down".into()).is_hard());
        for soft in [
            DownReason::ConnectionLost,
            DownReason::GracefulRestart,
            DownReason::Local,
            DownReason::NotificationReceived("cease".into()),
        ] {
            assert!(!soft.is_hard(), "{soft:?}");
        }
    }

    #[tokio::test]
    async fn calls_past_their_deadline_fail_and_name_the_call() {
        let limit = Duration::from_millis(50);
        let hung = deadline(
            "ListPeer",
            limit,
            std::future::pending::<Result<(), Status>>(),
        );
        let e = hung.await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(e.message().contains("ListPeer"), "{}", e.message());
        assert_eq!(
            deadline("AddPath", limit, async { Ok(7) }).await.unwrap(),
            7
        );
        let refused = deadline("AddPath", limit, async {
            Err::<(), _>(Status::invalid_argument("no origin path attr"))
        });
        assert_eq!(
            refused.await.unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    /// A frozen gobgpd: its socket accepts (the kernel does that) but nothing
    /// answers. Detection fails at its deadline, and a stream waiting without
    /// one (WatchEvent) is broken by the keepalives.
    #[tokio::test]
    async fn a_gobgpd_that_never_answers_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frozen.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let _held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let addr = GobgpAddr::Unix(path);
        let t = std::time::Instant::now();
        let e = Gobgp::connect(&addr, Duration::from_millis(300))
            .await
            .err()
            .expect("nothing answers");
        assert!(e.to_string().contains("GetBgp"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));

        let ch = channel(&addr, Duration::from_secs(2)).await.unwrap();
        let mut v3 = V3::new(ch, Duration::from_secs(2));
        let t = std::time::Instant::now();
        let bound = KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + Duration::from_secs(2);
        let r = tokio::time::timeout(bound, v3.raw_watch())
            .await
            .expect("the keepalive breaks the stream before the bound");
        assert!(r.is_err(), "no answer, yet the call succeeded");
        assert!(
            t.elapsed() >= KEEPALIVE_TIMEOUT,
            "failed too early: {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn only_tcp_addresses_are_tcp() {
        assert!("127.0.0.1:50051".parse::<GobgpAddr>().unwrap().is_tcp());
        assert!(!"unix:///run/gobgpd.sock"
            .parse::<GobgpAddr>()
            .unwrap()
            .is_tcp());
    }

    #[test]
    fn addresses_and_communities_parse() {
        assert_eq!(
            "unix:///run/gobgp.sock".parse::<GobgpAddr>().unwrap(),
            GobgpAddr::Unix("/run/gobgp.sock".into())
        );
        assert_eq!(
            "127.0.0.1:50051".parse::<GobgpAddr>().unwrap(),
            GobgpAddr::Tcp("127.0.0.1:50051".into())
        );
        assert!("localhost".parse::<GobgpAddr>().is_err());
        assert_eq!(parse_community("65000:1").unwrap(), 65000 << 16 | 1);
        assert_eq!(parse_community("65535:0").unwrap(), GRACEFUL_SHUTDOWN);
        assert!(parse_community("70000:1").is_err());
    }
}
