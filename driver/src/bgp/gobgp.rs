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

use std::time::Duration;

use ipnet::IpNet;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use super::gobgp_api::*;
use super::gobgp_v3::V3;
use super::gobgp_v4::V4;

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
    async fn peer_up(&mut self, address: &str) -> Result<Option<bool>, Status> {
        either!(self, c => c.peer_up(address).await)
    }
    async fn add_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        either!(self, c => c.add_peer(p).await)
    }
    async fn update_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        either!(self, c => c.update_peer(p).await)
    }
    async fn delete_peer(&mut self, address: &str) -> Result<(), Status> {
        either!(self, c => c.delete_peer(address).await)
    }
    async fn add_path(&mut self, p: &OwnPath, asn: u32) -> Result<Vec<u8>, Status> {
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
    async fn delete_path_uuid(&mut self, family: Family, uuid: &[u8]) -> Result<(), Status> {
        either!(self, c => c.delete_path_uuid(family, uuid).await)
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
    async fn export_only_own_paths(&mut self, v6: &[PeerNextHop6]) -> Result<(), Status> {
        either!(self, c => c.export_only_own_paths(v6).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::policy::is_link_local;
    use crate::model::attrs::RouteAttrs;
    use std::net::IpAddr;

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
        let ours = a.as_ours(65000).unwrap();
        assert_eq!(ours.as_path_prepend, Some(2));
        assert_eq!(ours.med, Some(5));
        // Another AS (or none known) is never ours: no wanted path matches.
        assert_eq!(a.as_ours(65001), None);
        assert_eq!(a.as_ours(0), None);
        // An AS path longer than any prepend is not ours either.
        let long = PathAttrs {
            as_path: vec![65000; 256],
            ..PathAttrs::default()
        };
        assert_eq!(long.as_ours(65000), None);
        assert_eq!(
            PathAttrs::default().as_ours(65000),
            Some(RouteAttrs::default())
        );
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
