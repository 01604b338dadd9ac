//! Talking to gobgpd 3.x over gRPC: connection and path (de)coding.
//!
//! In: an address (`127.0.0.1:50051`, `[::1]:50051` or `unix:///path`) and
//! our prefixes. Out: a connected `GobgpApiClient`, `Path` messages for
//! AddPath/DeletePath, and learned paths decoded into [`LearnedPath`]. The
//! attribute encoding (NLRI and attributes packed in `google.protobuf.Any`
//! with `type.googleapis.com/apipb.<Message>` URLs) lives only here, for
//! IPv4 unicast (NEXT_HOP) and IPv6 unicast (MP_REACH_NLRI) alike.
//!
//! Nothing here waits on gobgpd without a bound: [`deadline`] limits a unary
//! call or the opening of a stream, [`next_within`] limits the wait for each
//! message of a list stream, and the channel sends HTTP/2 PINGs even while
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
use prost::Message;
use prost_types::Any;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Status, Streaming};

use super::policy::is_link_local;

pub mod apipb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("apipb");
}

pub use apipb::gobgp_api_client::GobgpApiClient;
use apipb::{
    family, AsPathAttribute, AsSegment, CommunitiesAttribute, Family, IpAddressPrefix,
    LargeCommunitiesAttribute, LargeCommunity, LocalPrefAttribute, MpReachNlriAttribute,
    MpUnreachNlriAttribute, MultiExitDiscAttribute, NextHopAttribute, OriginAttribute, Path,
};

use crate::model::attrs::RouteAttrs;

pub type Client = GobgpApiClient<Channel>;

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

/// Why a connection to gobgpd failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The transport error with its causes (tonic's own text is only "transport error").
    #[error("{0}")]
    Transport(String),
}

/// Connects to gobgpd (no retries here; the caller owns the backoff). The
/// whole attempt, socket and HTTP/2 handshake, is bounded by `timeout`.
pub async fn connect(addr: &GobgpAddr, timeout: Duration) -> Result<Client, ConnectError> {
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
    let channel = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    Ok(GobgpApiClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
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

const TYPE_PREFIX: &str = "type.googleapis.com/apipb.";

fn pack<M: Message>(name: &str, m: &M) -> Any {
    Any {
        type_url: format!("{TYPE_PREFIX}{name}"),
        value: m.encode_to_vec(),
    }
}

fn type_name(a: &Any) -> &str {
    a.type_url
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_start_matches("apipb.")
}

pub fn family_of(prefix: &IpNet) -> Family {
    Family {
        afi: match prefix {
            IpNet::V4(_) => family::Afi::Ip as i32,
            IpNet::V6(_) => family::Afi::Ip6 as i32,
        },
        safi: family::Safi::Unicast as i32,
    }
}

/// The address families the driver announces and learns: IPv4 and IPv6 unicast.
pub fn families() -> [Family; 2] {
    [
        family_of(&IpNet::V4(ipnet::Ipv4Net::default())),
        family_of(&IpNet::V6(ipnet::Ipv6Net::default())),
    ]
}

/// A path with only communities (see [`path_with_attrs`]); the harness
/// floods gobgpd with these.
#[cfg(any(test, feature = "test-support"))]
pub fn local_path(prefix: IpNet, next_hop: IpAddr, communities: &[u32]) -> Path {
    let attrs = RouteAttrs {
        communities: communities.to_vec(),
        ..RouteAttrs::default()
    };
    path_with_attrs(prefix, next_hop, &attrs, 0)
}

/// AS_SEQUENCE in an [`AsSegment`].
const AS_SEQUENCE: u32 = 2;

/// A path for AddPath/DeletePath: prefix, next hop, ORIGIN IGP, and the
/// attributes in `attrs` (already [`RouteAttrs::effective`]), in type-code
/// order. IPv4 carries its next hop in NEXT_HOP; IPv6 (AFI 2, SAFI 1) in an
/// MP_REACH_NLRI attribute holding the family, the next hop and the NLRI
/// (gobgpd refuses an IPv6 path without one: "nexthop not found").
/// The prepend is our own AS `asn` n times; gobgpd adds it once more towards
/// eBGP peers, as for any path it originates. Without an AS (`asn` 0: BGP not
/// started) there is nothing to prepend.
pub fn path_with_attrs(prefix: IpNet, next_hop: IpAddr, attrs: &RouteAttrs, asn: u32) -> Path {
    let nlri = pack(
        "IPAddressPrefix",
        &IpAddressPrefix {
            prefix_len: prefix.prefix_len() as u32,
            prefix: prefix.network().to_string(),
        },
    );
    let mut pattrs = vec![pack("OriginAttribute", &OriginAttribute { origin: 0 })];
    match attrs.as_path_prepend {
        Some(n) if n > 0 && asn != 0 => pattrs.push(pack(
            "AsPathAttribute",
            &AsPathAttribute {
                segments: vec![AsSegment {
                    r#type: AS_SEQUENCE,
                    numbers: vec![asn; usize::from(n)],
                }],
            },
        )),
        _ => {}
    }
    match prefix {
        IpNet::V4(_) => pattrs.push(pack(
            "NextHopAttribute",
            &NextHopAttribute {
                next_hop: next_hop.to_string(),
            },
        )),
        IpNet::V6(_) => pattrs.push(pack(
            "MpReachNLRIAttribute",
            &MpReachNlriAttribute {
                family: Some(family_of(&prefix)),
                next_hops: vec![next_hop.to_string()],
                nlris: vec![nlri.clone()],
            },
        )),
    }
    if let Some(med) = attrs.med {
        pattrs.push(pack(
            "MultiExitDiscAttribute",
            &MultiExitDiscAttribute { med },
        ));
    }
    if let Some(local_pref) = attrs.local_pref {
        pattrs.push(pack(
            "LocalPrefAttribute",
            &LocalPrefAttribute { local_pref },
        ));
    }
    if !attrs.communities.is_empty() {
        pattrs.push(pack(
            "CommunitiesAttribute",
            &CommunitiesAttribute {
                communities: attrs.communities.clone(),
            },
        ));
    }
    if !attrs.large_communities.is_empty() {
        pattrs.push(pack(
            "LargeCommunitiesAttribute",
            &LargeCommunitiesAttribute {
                communities: attrs
                    .large_communities
                    .iter()
                    .map(|&[global_admin, local_data1, local_data2]| LargeCommunity {
                        global_admin,
                        local_data1,
                        local_data2,
                    })
                    .collect(),
            },
        ));
    }
    Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(family_of(&prefix)),
        ..Path::default()
    }
}

/// The attributes of a path we originated, as [`path_with_attrs`] wrote them
/// (lists sorted), so the announcer can tell whether gobgpd still holds what
/// it wants. An AS path that is not `asn` repeated decodes to a prepend no
/// option can ask for, so it never matches.
pub fn decode_attrs(p: &Path, asn: u32) -> RouteAttrs {
    let mut out = RouteAttrs::default();
    for a in &p.pattrs {
        let v = a.value.as_slice();
        match type_name(a) {
            "AsPathAttribute" => {
                let numbers: Vec<u32> = AsPathAttribute::decode(v)
                    .map(|ap| ap.segments.into_iter().flat_map(|s| s.numbers).collect())
                    .unwrap_or_default();
                if !numbers.is_empty() {
                    let ours = asn != 0 && numbers.iter().all(|&n| n == asn);
                    out.as_path_prepend = Some(match u8::try_from(numbers.len()) {
                        Ok(n) if ours => n,
                        _ => u8::MAX,
                    });
                }
            }
            "MultiExitDiscAttribute" => {
                out.med = MultiExitDiscAttribute::decode(v).ok().map(|m| m.med);
            }
            "LocalPrefAttribute" => {
                out.local_pref = LocalPrefAttribute::decode(v).ok().map(|l| l.local_pref);
            }
            "CommunitiesAttribute" => {
                out.communities = CommunitiesAttribute::decode(v)
                    .map(|c| c.communities)
                    .unwrap_or_default();
                out.communities.sort_unstable();
            }
            "LargeCommunitiesAttribute" => {
                out.large_communities = LargeCommunitiesAttribute::decode(v)
                    .map(|c| {
                        c.communities
                            .iter()
                            .map(|l| [l.global_admin, l.local_data1, l.local_data2])
                            .collect()
                    })
                    .unwrap_or_default();
                out.large_communities.sort_unstable();
            }
            _ => {}
        }
    }
    out
}

/// Opens a stream of every destination of `family` (see [`families`]) in
/// gobgpd's global RIB, one destination per message; read it with
/// [`next_within`] so a large RIB is walked without holding all of it.
pub async fn open_global_rib(
    client: &mut Client,
    family: Family,
    limit: Duration,
) -> Result<Streaming<apipb::ListPathResponse>, Status> {
    Ok(deadline(
        "ListPath",
        limit,
        client.list_path(apipb::ListPathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family),
            ..apipb::ListPathRequest::default()
        }),
    )
    .await?
    .into_inner())
}

/// A path as learned from gobgpd's RIB, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedPath {
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    pub withdraw: bool,
    /// The peer it came from; `None` for paths originated on this gobgpd.
    pub peer: Option<String>,
    pub as_path: Vec<u32>,
}

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

pub fn decode_path(p: &Path) -> Result<LearnedPath, DecodeError> {
    let nlri = p.nlri.as_ref().ok_or(DecodeError::NoNlri)?;
    if type_name(nlri) != "IPAddressPrefix" {
        return Err(DecodeError::NotPrefix(type_name(nlri).to_string()));
    }
    let pfx = IpAddressPrefix::decode(nlri.value.as_slice())
        .map_err(|_| DecodeError::Undecodable("IPAddressPrefix"))?;
    let addr: IpAddr = pfx
        .prefix
        .parse()
        .map_err(|_| DecodeError::BadPrefix(pfx.prefix.clone()))?;
    // A length that does not fit (288 would truncate to /32, 256 to /0) is refused.
    let prefix = u8::try_from(pfx.prefix_len)
        .ok()
        .and_then(|len| IpNet::new(addr, len).ok())
        .ok_or_else(|| DecodeError::BadPrefix(format!("{}/{}", pfx.prefix, pfx.prefix_len)))?
        .trunc();
    let mut next_hop = None;
    let mut as_path = Vec::new();
    for a in &p.pattrs {
        match type_name(a) {
            "NextHopAttribute" => {
                if let Ok(nh) = NextHopAttribute::decode(a.value.as_slice()) {
                    next_hop = nh.next_hop.parse().ok().or(next_hop);
                }
            }
            "MpReachNLRIAttribute" => {
                if let Ok(mp) = MpReachNlriAttribute::decode(a.value.as_slice()) {
                    next_hop = mp_next_hop(&mp.next_hops).or(next_hop);
                }
            }
            "MpUnreachNLRIAttribute" => {
                let _ = MpUnreachNlriAttribute::decode(a.value.as_slice());
            }
            "AsPathAttribute" => {
                if let Ok(ap) = AsPathAttribute::decode(a.value.as_slice()) {
                    as_path = ap.segments.into_iter().flat_map(|s| s.numbers).collect();
                }
            }
            _ => {}
        }
    }
    let peer = match p.neighbor_ip.as_str() {
        "" | "<nil>" => None,
        other => Some(other.to_string()),
    };
    Ok(LearnedPath {
        prefix,
        next_hop,
        withdraw: p.is_withdraw,
        peer,
        as_path,
    })
}

/// The next hop of an MP_REACH_NLRI: IPv6 peers may send a global address
/// and a link-local one (RFC 2545); the global one wins. A link-local address
/// alone is returned as it is, and the import policy refuses it: gobgpd's
/// API does not say which interface it was learned on, and a link-local
/// next hop means nothing without one.
fn mp_next_hop(next_hops: &[String]) -> Option<IpAddr> {
    let parsed: Vec<IpAddr> = next_hops.iter().filter_map(|n| n.parse().ok()).collect();
    parsed
        .iter()
        .find(|a| !is_link_local(a))
        .or(parsed.first())
        .copied()
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
    fn local_path_round_trips_through_decode() {
        let p = local_path(
            "10.1.1.2/32".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            &[0xfde8_0001],
        );
        assert_eq!(
            p.nlri.as_ref().unwrap().type_url,
            "type.googleapis.com/apipb.IPAddressPrefix"
        );
        let d = decode_path(&p).unwrap();
        assert_eq!(d.prefix, "10.1.1.2/32".parse::<IpNet>().unwrap());
        assert_eq!(d.next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(d.peer, None);
        assert!(!d.withdraw);
    }

    /// Every attribute goes in type-code order, in the messages gobgpd 3.10
    /// takes (`gobgp global rib -j` then shows them; see tests/bgp_attrs.rs),
    /// and decodes back to what was asked for.
    #[test]
    fn attributes_are_encoded_and_decode_back() {
        let attrs = RouteAttrs {
            communities: vec![65000 << 16 | 100, 65000 << 16 | 200],
            large_communities: vec![[65000, 1, 2]],
            local_pref: Some(200),
            med: Some(50),
            as_path_prepend: Some(2),
        };
        let p = path_with_attrs(
            "10.1.1.2/32".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            &attrs,
            65000,
        );
        let names: Vec<&str> = p.pattrs.iter().map(type_name).collect();
        assert_eq!(
            names,
            [
                "OriginAttribute",
                "AsPathAttribute",
                "NextHopAttribute",
                "MultiExitDiscAttribute",
                "LocalPrefAttribute",
                "CommunitiesAttribute",
                "LargeCommunitiesAttribute"
            ]
        );
        let ap = AsPathAttribute::decode(p.pattrs[1].value.as_slice()).unwrap();
        assert_eq!(ap.segments.len(), 1);
        assert_eq!(ap.segments[0].r#type, AS_SEQUENCE);
        assert_eq!(ap.segments[0].numbers, [65000, 65000]);
        let lc = LargeCommunitiesAttribute::decode(p.pattrs[6].value.as_slice()).unwrap();
        assert_eq!(
            (
                lc.communities[0].global_admin,
                lc.communities[0].local_data1,
                lc.communities[0].local_data2
            ),
            (65000, 1, 2)
        );
        assert_eq!(decode_attrs(&p, 65000), attrs);
        // Another AS in the path never matches a prepend.
        assert_eq!(decode_attrs(&p, 65001).as_path_prepend, Some(u8::MAX));
        // Without an AS there is nothing to prepend; no attributes, none sent.
        let p = path_with_attrs(
            "10.1.1.2/32".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            &attrs,
            0,
        );
        assert!(!p.pattrs.iter().any(|a| type_name(a) == "AsPathAttribute"));
        let p = path_with_attrs(
            "fd00::2/128".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            &RouteAttrs::default(),
            65000,
        );
        assert_eq!(p.pattrs.len(), 2);
        assert!(decode_attrs(&p, 65000).is_empty());
    }

    /// A prefix length beyond the family's is refused, never truncated
    /// (`as u8` made 288 a /32 and 256 a default route).
    #[test]
    fn a_prefix_length_out_of_range_is_refused_not_truncated() {
        let with_len = |prefix: &str, len: u32| {
            let mut p = local_path(
                "10.1.1.2/32".parse().unwrap(),
                "192.0.2.1".parse().unwrap(),
                &[],
            );
            p.nlri = Some(pack(
                "IPAddressPrefix",
                &IpAddressPrefix {
                    prefix_len: len,
                    prefix: prefix.into(),
                },
            ));
            decode_path(&p)
        };
        for (prefix, len) in [
            ("10.1.1.2", 288),
            ("10.1.1.2", 256),
            ("10.1.1.2", 33),
            ("fd00::2", 384),
            ("fd00::2", 129),
        ] {
            assert!(
                matches!(with_len(prefix, len), Err(DecodeError::BadPrefix(_))),
                "{prefix}/{len}"
            );
        }
        assert_eq!(
            with_len("10.1.1.2", 32).unwrap().prefix,
            "10.1.1.2/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            with_len("fd00::2", 128).unwrap().prefix,
            "fd00::2/128".parse::<IpNet>().unwrap()
        );
    }

    /// IPv6: family AFI 2 / SAFI 1 on the path, next hop in MP_REACH_NLRI
    /// (with the family and the NLRI), no NEXT_HOP attribute.
    #[test]
    fn ipv6_paths_carry_their_next_hop_in_mp_reach() {
        let p = local_path(
            "fd00:1:1::5/128".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            &[],
        );
        assert_eq!(p.family, Some(Family { afi: 2, safi: 1 }));
        let names: Vec<&str> = p.pattrs.iter().map(type_name).collect();
        assert_eq!(names, ["OriginAttribute", "MpReachNLRIAttribute"]);
        let mp = MpReachNlriAttribute::decode(p.pattrs[1].value.as_slice()).unwrap();
        assert_eq!(mp.family, Some(Family { afi: 2, safi: 1 }));
        assert_eq!(mp.next_hops, ["2001:db8::1"]);
        assert_eq!(mp.nlris.len(), 1);
        let d = decode_path(&p).unwrap();
        assert_eq!(d.prefix, "fd00:1:1::5/128".parse::<IpNet>().unwrap());
        assert_eq!(d.next_hop, Some("2001:db8::1".parse().unwrap()));
    }

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
    fn learned_path_from_a_peer() {
        let mut p = local_path(
            "10.1.2.0/24".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            &[],
        );
        p.neighbor_ip = "192.0.2.2".into();
        p.is_withdraw = true;
        let d = decode_path(&p).unwrap();
        assert_eq!(d.peer.as_deref(), Some("192.0.2.2"));
        assert!(d.withdraw);
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
    /// answers. A unary call fails at its deadline, and a stream waiting
    /// without one (WatchEvent) is broken by the keepalives.
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
        let mut client = connect(&addr, Duration::from_secs(2)).await.unwrap();
        let t = std::time::Instant::now();
        let e = deadline(
            "GetBgp",
            Duration::from_millis(300),
            client.get_bgp(apipb::GetBgpRequest {}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(t.elapsed() < Duration::from_secs(1));

        let mut client = connect(&addr, Duration::from_secs(2)).await.unwrap();
        let t = std::time::Instant::now();
        let bound = KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + Duration::from_secs(2);
        let watch = client.watch_event(apipb::WatchEventRequest::default());
        let r = tokio::time::timeout(bound, watch)
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
        assert!(parse_community("70000:1").is_err());
    }
}
