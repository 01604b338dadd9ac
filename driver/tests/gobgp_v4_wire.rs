//! Our GoBGP 4.x proto (proto/gobgp_v4.proto) against a real gobgpd 4.x.
//!
//! Needs `gobgpd-v4` (ci/install.sh builds the pinned 4.8.0; skipped with
//! the reason otherwise, a failure under `CI=true`); the detection test also
//! needs Debian's `gobgpd` (3.x). Each daemon listens for no BGP peer
//! (`listen_port = -1`) and serves its API on a unix socket in a temporary
//! folder: no namespace, no port, no root needed.
//!
//! The generated code is included straight from OUT_DIR: the driver does not
//! use the v4 proto yet, and this test depends on no driver module.
//!
//! Checked:
//! - StartBgp/GetBgp/SetLogLevel/StopBgp answer with our messages;
//! - AddPath of a /32 (NEXT_HOP) and a /128 (MP_REACH_NLRI), both with
//!   communities (GRACEFUL_SHUTDOWN among them) and a large community, comes
//!   back from ListPath and from WatchEvent (BEST, init) with the same
//!   prefix, next hop, communities and uuid; a DeletePath by path arrives as
//!   a withdrawal;
//! - AddPeer with BFD, graceful restart (with long-lived GR) and per-family
//!   settings reads back the same from ListPeer; UpdatePeer changes the BFD
//!   intervals; DeletePeer removes it;
//! - a 3.x and a 4.x daemon each answer UNIMPLEMENTED to the other line's
//!   GetBgp (how the driver tells them apart at connect);
//! - two gobgpd 4.x peering over loopback (127.0.0.1 and 127.0.0.2, each on
//!   a free port; still no root) with graceful restart, configured only over
//!   gRPC: the peer event says ESTABLISHED, the peer's path arrives with its
//!   `neighbor_ip`, a path of the peer that is not best never comes through
//!   the BEST filter, the End-of-RIB marker arrives through the EOR filter
//!   as a path without NLRI, and ListPeer shows `end_of_rib_received` and
//!   the peer's graceful-restart capability.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

use common::{skip, Outcome};

#[allow(clippy::all, dead_code, missing_docs)]
mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

#[allow(clippy::all, dead_code, missing_docs)]
mod apipb {
    include!(concat!(env!("OUT_DIR"), "/apipb.rs"));
}

use api::go_bgp_service_client::GoBgpServiceClient;
use api::{attribute::Attr, family, nlri, Attribute, Family, Path as ApiPath};

type Client = GoBgpServiceClient<Channel>;

/// GRACEFUL_SHUTDOWN (RFC 8326), 65535:0.
const GSHUT: u32 = 0xFFFF_0000;
const OURS: u32 = 65000 << 16 | 100;
/// Longest wait for anything from gobgpd.
const WAIT: Duration = Duration::from_secs(10);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `prog` with its API on `dir/api.sock` (no config file: it serves
/// only gRPC until StartBgp).
fn start(prog: &str, dir: &Path) -> (Daemon, PathBuf) {
    let sock = dir.join("api.sock");
    let log = std::fs::File::create(dir.join(format!("{prog}.log"))).expect("log");
    let child = Command::new(prog)
        .args(["-p", "--pprof-disable"])
        .arg(format!("--api-hosts=unix://{}", sock.display()))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {prog}: {e}"));
    (Daemon(child), sock)
}

fn installed(prog: &str) -> bool {
    Command::new(prog).arg("--version").output().is_ok()
}

/// A channel to the unix socket, retried until the daemon has made it.
async fn channel(sock: &Path) -> Channel {
    let deadline = Instant::now() + WAIT;
    loop {
        let path = sock.to_path_buf();
        // The authority is never used: the connector ignores the URI.
        let attempt = Endpoint::from_static("http://[::1]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await;
        match attempt {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{}: {e}", sock.display()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn v4() -> Family {
    Family {
        afi: family::Afi::Ip as i32,
        safi: family::Safi::Unicast as i32,
    }
}

fn v6() -> Family {
    Family {
        afi: family::Afi::Ip6 as i32,
        safi: family::Safi::Unicast as i32,
    }
}

fn prefix(p: &str, len: u32) -> api::Nlri {
    api::Nlri {
        nlri: Some(nlri::Nlri::Prefix(api::IpAddressPrefix {
            prefix: p.into(),
            prefix_len: len,
        })),
    }
}

fn attr(a: Attr) -> Attribute {
    Attribute { attr: Some(a) }
}

/// A locally originated unicast path: IPv4 with NEXT_HOP, IPv6 with
/// MP_REACH_NLRI (as the driver announces them).
fn path(p: &str, len: u32, nh: &str, communities: &[u32]) -> ApiPath {
    let ipv6 = p.contains(':');
    let mut pattrs = vec![attr(Attr::Origin(api::OriginAttribute { origin: 0 }))];
    if ipv6 {
        pattrs.push(attr(Attr::MpReach(api::MpReachNlriAttribute {
            family: Some(v6()),
            next_hops: vec![nh.into()],
            nlris: vec![prefix(p, len)],
        })));
    } else {
        pattrs.push(attr(Attr::NextHop(api::NextHopAttribute {
            next_hop: nh.into(),
        })));
    }
    pattrs.push(attr(Attr::Communities(api::CommunitiesAttribute {
        communities: communities.to_vec(),
    })));
    pattrs.push(attr(Attr::LargeCommunities(
        api::LargeCommunitiesAttribute {
            communities: vec![api::LargeCommunity {
                global_admin: 65000,
                local_data1: 1,
                local_data2: 2,
            }],
        },
    )));
    ApiPath {
        nlri: Some(prefix(p, len)),
        pattrs,
        family: Some(if ipv6 { v6() } else { v4() }),
        ..ApiPath::default()
    }
}

/// "prefix/len" of a path's NLRI.
fn nlri_of(p: &ApiPath) -> Option<String> {
    match p.nlri.as_ref()?.nlri.as_ref()? {
        nlri::Nlri::Prefix(x) => Some(format!("{}/{}", x.prefix, x.prefix_len)),
    }
}

/// The next hop, from NEXT_HOP or MP_REACH_NLRI.
fn next_hop(p: &ApiPath) -> Option<String> {
    p.pattrs.iter().find_map(|a| match a.attr.as_ref()? {
        Attr::NextHop(n) => Some(n.next_hop.clone()),
        Attr::MpReach(m) => m.next_hops.first().cloned(),
        _ => None,
    })
}

fn communities(p: &ApiPath) -> Vec<u32> {
    p.pattrs
        .iter()
        .find_map(|a| match a.attr.as_ref()? {
            Attr::Communities(c) => Some(c.communities.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn large_communities(p: &ApiPath) -> Vec<(u32, u32, u32)> {
    p.pattrs
        .iter()
        .find_map(|a| match a.attr.as_ref()? {
            Attr::LargeCommunities(c) => Some(
                c.communities
                    .iter()
                    .map(|l| (l.global_admin, l.local_data1, l.local_data2))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

async fn start_bgp(c: &mut Client) {
    c.start_bgp(api::StartBgpRequest {
        global: Some(api::Global {
            asn: 65000,
            router_id: "192.0.2.1".into(),
            listen_port: -1,
            ..api::Global::default()
        }),
    })
    .await
    .expect("StartBgp");
}

/// Every path of `family` in the global table.
async fn list(c: &mut Client, family: Family) -> Vec<ApiPath> {
    let mut s = c
        .list_path(api::ListPathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(family),
            ..api::ListPathRequest::default()
        })
        .await
        .expect("ListPath")
        .into_inner();
    let mut out = vec![];
    while let Some(r) = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("ListPath stalled")
        .expect("ListPath")
    {
        out.extend(r.destination.expect("destination").paths);
    }
    out
}

/// Each trial ends within a minute: a call gobgpd never answers (a stream
/// whose headers never come) fails the test instead of hanging it.
async fn bounded(trial: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(60), trial)
        .await
        .unwrap_or_else(|_| panic!("gobgpd left a call unanswered for 60 s"))
}

fn main() {
    common::run_async_trials(vec![
        ("paths_round_trip_through_gobgpd_v4", || {
            Box::pin(bounded(paths_round_trip_through_gobgpd_v4()))
        }),
        ("peer_settings_round_trip_through_gobgpd_v4", || {
            Box::pin(bounded(peer_settings_round_trip_through_gobgpd_v4()))
        }),
        ("each_line_answers_unimplemented_to_the_other", || {
            Box::pin(bounded(each_line_answers_unimplemented_to_the_other()))
        }),
        ("peer_events_and_end_of_rib_between_two_gobgpd_v4", || {
            Box::pin(bounded(peer_events_and_end_of_rib_between_two_gobgpd_v4()))
        }),
    ])
}

async fn paths_round_trip_through_gobgpd_v4() -> Outcome {
    if !installed("gobgpd-v4") {
        return skip("gobgpd-v4 is not installed (ci/install.sh builds it)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, sock) = start("gobgpd-v4", dir.path());
    let mut c = GoBgpServiceClient::new(channel(&sock).await);

    start_bgp(&mut c).await;
    let g = c
        .get_bgp(api::GetBgpRequest {})
        .await
        .expect("GetBgp")
        .into_inner()
        .global
        .expect("global");
    assert_eq!((g.asn, g.router_id.as_str()), (65000, "192.0.2.1"));
    c.set_log_level(api::SetLogLevelRequest {
        level: api::set_log_level_request::Level::Debug as i32,
    })
    .await
    .expect("SetLogLevel");

    let wanted = [
        ("10.1.1.2", 32, "192.0.2.1", vec![OURS, GSHUT]),
        ("fd00:1::2", 128, "2001:db8::1", vec![GSHUT]),
    ];
    let add = |mut c: Client, (p, len, nh, comms): (&'static str, u32, &'static str, Vec<u32>)| async move {
        let r = c
            .add_path(api::AddPathRequest {
                table_type: api::TableType::Global as i32,
                path: Some(path(p, len, nh, &comms)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("AddPath {p}/{len}: {e}"))
            .into_inner();
        assert_eq!(r.uuid.len(), 16, "AddPath answers a 16-byte uuid");
    };
    // The /32 before the watch (it must come in the watch's initial dump of
    // best paths), the /128 after it (an event).
    add(c.clone(), wanted[0].clone()).await;
    let mut watch = c
        .watch_event(api::WatchEventRequest {
            table: Some(api::watch_event_request::Table {
                filters: vec![api::watch_event_request::table::Filter {
                    r#type: api::watch_event_request::table::filter::Type::Best as i32,
                    init: true,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        })
        .await
        .expect("WatchEvent")
        .into_inner();
    add(c.clone(), wanted[1].clone()).await;

    // ListPath gives back what we added, with the uuid AddPath answered.
    // (4.8.0's ListPath leaves `uuid` empty: find paths by NLRI.)
    for ((p, len, nh, comms), family) in wanted.iter().zip([v4(), v6()]) {
        let paths = list(&mut c, family).await;
        assert_eq!(paths.len(), 1, "{paths:?}");
        let got = &paths[0];
        assert_eq!(nlri_of(got).as_deref(), Some(format!("{p}/{len}").as_str()));
        assert_eq!(next_hop(got).as_deref(), Some(*nh));
        assert_eq!(&communities(got), comms);
        assert_eq!(large_communities(got), vec![(65000, 1, 2)]);
        assert!(got.best, "the only path is best in ListPath");
        assert!(!got.is_withdraw);
    }

    // WatchEvent (BEST) delivers both, then the withdrawal of a deleted one.
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 2 {
        let ev = tokio::time::timeout_at(deadline.into(), watch.message())
            .await
            .unwrap_or_else(|_| panic!("WatchEvent: only {seen:?} within {WAIT:?}"))
            .expect("WatchEvent")
            .expect("stream ended");
        if let Some(api::watch_event_response::Event::Table(t)) = ev.event {
            for p in t.paths {
                seen.insert(nlri_of(&p).expect("nlri"), p);
            }
        }
    }
    for (p, len, nh, comms) in &wanted {
        let got = &seen[&format!("{p}/{len}")];
        assert_eq!(next_hop(got).as_deref(), Some(*nh));
        assert_eq!(&communities(got), comms);
        assert!(!got.is_withdraw);
    }

    // Delete by path (NLRI + next hop): a withdrawal event follows.
    c.delete_path(api::DeletePathRequest {
        table_type: api::TableType::Global as i32,
        family: Some(v4()),
        path: Some(path("10.1.1.2", 32, "192.0.2.1", &[])),
        ..Default::default()
    })
    .await
    .expect("DeletePath");
    let withdrawn = loop {
        let ev = tokio::time::timeout(WAIT, watch.message())
            .await
            .expect("no withdrawal event")
            .expect("WatchEvent")
            .expect("stream ended");
        if let Some(api::watch_event_response::Event::Table(t)) = ev.event {
            if let Some(p) = t.paths.into_iter().find(|p| p.is_withdraw) {
                break p;
            }
        }
    };
    assert_eq!(nlri_of(&withdrawn).as_deref(), Some("10.1.1.2/32"));
    assert!(list(&mut c, v4()).await.is_empty());
    assert_eq!(list(&mut c, v6()).await.len(), 1);

    c.stop_bgp(api::StopBgpRequest::default())
        .await
        .expect("StopBgp");
    let e = c
        .list_path(api::ListPathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(v6()),
            ..Default::default()
        })
        .await
        .err()
        .map(|e| e.message().to_string());
    // After StopBgp the daemon serves gRPC but has no BGP server.
    assert!(e.as_deref().is_some_and(|m| m.contains("stopped")), "{e:?}");
    Ok(())
}

async fn peer_settings_round_trip_through_gobgpd_v4() -> Outcome {
    if !installed("gobgpd-v4") {
        return skip("gobgpd-v4 is not installed (ci/install.sh builds it)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, sock) = start("gobgpd-v4", dir.path());
    let mut c = GoBgpServiceClient::new(channel(&sock).await);
    start_bgp(&mut c).await;

    let family = |f: Family| api::AfiSafi {
        config: Some(api::AfiSafiConfig {
            family: Some(f),
            enabled: true,
        }),
        mp_graceful_restart: Some(api::MpGracefulRestart {
            config: Some(api::MpGracefulRestartConfig { enabled: true }),
            state: None,
        }),
        long_lived_graceful_restart: Some(api::LongLivedGracefulRestart {
            config: Some(api::LongLivedGracefulRestartConfig {
                enabled: true,
                restart_time: 300,
            }),
            state: None,
        }),
        use_multiple_paths: Some(api::UseMultiplePaths {
            config: Some(api::UseMultiplePathsConfig { enabled: true }),
            state: None,
        }),
        ..Default::default()
    };
    let bfd = |tx_us: u32| api::BfdPeerConfig {
        enabled: true,
        port: 3784,
        desired_minimum_tx_interval: tx_us,
        required_minimum_receive: 300_000,
        detection_multiplier: 3,
    };
    // 192.0.2.2 does not exist: the session stays down, the settings stay.
    let peer = api::Peer {
        conf: Some(api::PeerConf {
            neighbor_address: "192.0.2.2".into(),
            peer_asn: 65001,
            description: "wire test".into(),
            ..Default::default()
        }),
        timers: Some(api::Timers {
            config: Some(api::TimersConfig {
                connect_retry: 5,
                hold_time: 9,
                keepalive_interval: 3,
                ..Default::default()
            }),
            state: None,
        }),
        graceful_restart: Some(api::GracefulRestart {
            enabled: true,
            restart_time: 120,
            longlived_enabled: true,
            ..Default::default()
        }),
        afi_safis: vec![family(v4()), family(v6())],
        bfd: Some(bfd(300_000)),
        ..Default::default()
    };
    c.add_peer(api::AddPeerRequest {
        peer: Some(peer.clone()),
    })
    .await
    .expect("AddPeer");

    let listed = |mut c: Client| async move {
        let mut s = c
            .list_peer(api::ListPeerRequest {
                address: "192.0.2.2".into(),
                ..Default::default()
            })
            .await
            .expect("ListPeer")
            .into_inner();
        let mut peers = vec![];
        while let Some(r) = tokio::time::timeout(WAIT, s.message())
            .await
            .expect("ListPeer stalled")
            .expect("ListPeer")
        {
            peers.push(r.peer.expect("peer"));
        }
        peers
    };
    let peers = listed(c.clone()).await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    let p = &peers[0];
    let conf = p.conf.as_ref().expect("conf");
    assert_eq!(
        (conf.neighbor_address.as_str(), conf.peer_asn),
        ("192.0.2.2", 65001)
    );
    let state = p.state.as_ref().expect("state");
    assert_ne!(
        state.session_state,
        api::peer_state::SessionState::Established as i32
    );
    assert_eq!(
        p.bfd.as_ref(),
        Some(&bfd(300_000)),
        "BFD settings read back"
    );
    assert!(
        state.bfd_state.is_some(),
        "a BFD peer has a BFD state: {state:?}"
    );
    assert_ne!(
        state.bfd_state.as_ref().unwrap().session_state,
        api::BfdSessionState::BfdUp as i32,
        "no BFD peer answers at 192.0.2.2"
    );
    let gr = p.graceful_restart.as_ref().expect("graceful restart");
    assert!(
        gr.enabled && gr.longlived_enabled && gr.restart_time == 120,
        "{gr:?}"
    );
    let t = p
        .timers
        .as_ref()
        .and_then(|t| t.config.as_ref())
        .expect("timers");
    assert_eq!((t.hold_time, t.keepalive_interval), (9, 3));
    assert_eq!(p.afi_safis.len(), 2, "{:?}", p.afi_safis);
    for a in &p.afi_safis {
        let mp = a
            .mp_graceful_restart
            .as_ref()
            .and_then(|m| m.config.as_ref());
        assert_eq!(mp.map(|m| m.enabled), Some(true), "{a:?}");
        let ll = a
            .long_lived_graceful_restart
            .as_ref()
            .and_then(|l| l.config.as_ref())
            .expect("LLGR");
        assert!(ll.enabled && ll.restart_time == 300, "{ll:?}");
    }

    // UpdatePeer changes the BFD intervals at run time.
    let mut changed = peer.clone();
    changed.bfd = Some(bfd(100_000));
    c.update_peer(api::UpdatePeerRequest {
        peer: Some(changed),
        do_soft_reset_in: false,
    })
    .await
    .expect("UpdatePeer");
    let peers = listed(c.clone()).await;
    assert_eq!(peers[0].bfd.as_ref(), Some(&bfd(100_000)));

    c.delete_peer(api::DeletePeerRequest {
        address: "192.0.2.2".into(),
        ..Default::default()
    })
    .await
    .expect("DeletePeer");
    assert!(listed(c.clone()).await.is_empty());
    Ok(())
}

async fn each_line_answers_unimplemented_to_the_other() -> Outcome {
    for prog in ["gobgpd-v4", "gobgpd"] {
        if !installed(prog) {
            return skip(&format!("{prog} is not installed (ci/install.sh)"));
        }
    }
    let d4 = tempfile::tempdir().expect("tempdir");
    let d3 = tempfile::tempdir().expect("tempdir");
    let (_g4, s4) = start("gobgpd-v4", d4.path());
    let (_g3, s3) = start("gobgpd", d3.path());
    let (c4, c3) = (channel(&s4).await, channel(&s3).await);

    // Each daemon knows its own GetBgp (it answers, here "not started").
    let own4 = api::go_bgp_service_client::GoBgpServiceClient::new(c4.clone())
        .get_bgp(api::GetBgpRequest {})
        .await;
    assert!(own4
        .as_ref()
        .map_or_else(|e| e.code() != Code::Unimplemented, |_| true));
    let own3 = apipb::gobgp_api_client::GobgpApiClient::new(c3.clone())
        .get_bgp(apipb::GetBgpRequest {})
        .await;
    assert!(own3
        .as_ref()
        .map_or_else(|e| e.code() != Code::Unimplemented, |_| true));

    // ... and answers UNIMPLEMENTED to the other line's, at once.
    let t = Instant::now();
    let v3_on_v4 = apipb::gobgp_api_client::GobgpApiClient::new(c4)
        .get_bgp(apipb::GetBgpRequest {})
        .await
        .expect_err("gobgpd 4.x answered /apipb.GobgpApi/GetBgp");
    let took4 = t.elapsed();
    let t = Instant::now();
    let v4_on_v3 = api::go_bgp_service_client::GoBgpServiceClient::new(c3)
        .get_bgp(api::GetBgpRequest {})
        .await
        .expect_err("gobgpd 3.x answered /api.GoBgpService/GetBgp");
    let took3 = t.elapsed();
    assert_eq!(v3_on_v4.code(), Code::Unimplemented, "{v3_on_v4:?}");
    assert_eq!(v4_on_v3.code(), Code::Unimplemented, "{v4_on_v3:?}");
    eprintln!(
        "detection: v3 GetBgp on 4.x: {took4:?} ({}); v4 GetBgp on 3.x: {took3:?} ({})",
        v3_on_v4.message(),
        v4_on_v3.message()
    );
    Ok(())
}

/// A TCP port nobody listens on right now (the kernel's pick).
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// StartBgp listening on `ip:port`, then AddPeer towards `peer:peer_port`
/// (iBGP, AS 65000) with graceful restart on IPv4 unicast.
async fn start_speaker(c: &mut Client, ip: &str, port: u16, peer: &str, peer_port: u16) {
    c.start_bgp(api::StartBgpRequest {
        global: Some(api::Global {
            asn: 65000,
            router_id: ip.into(),
            listen_port: i32::from(port),
            listen_addresses: vec![ip.into()],
            ..Default::default()
        }),
    })
    .await
    .expect("StartBgp");
    c.add_peer(api::AddPeerRequest {
        peer: Some(api::Peer {
            conf: Some(api::PeerConf {
                neighbor_address: peer.into(),
                peer_asn: 65000,
                ..Default::default()
            }),
            transport: Some(api::Transport {
                local_address: ip.into(),
                remote_port: u32::from(peer_port),
                ..Default::default()
            }),
            timers: Some(api::Timers {
                config: Some(api::TimersConfig {
                    connect_retry: 1,
                    hold_time: 9,
                    keepalive_interval: 3,
                    idle_hold_time_after_reset: 1,
                    ..Default::default()
                }),
                state: None,
            }),
            graceful_restart: Some(api::GracefulRestart {
                enabled: true,
                restart_time: 30,
                ..Default::default()
            }),
            afi_safis: vec![api::AfiSafi {
                config: Some(api::AfiSafiConfig {
                    family: Some(v4()),
                    enabled: true,
                }),
                mp_graceful_restart: Some(api::MpGracefulRestart {
                    config: Some(api::MpGracefulRestartConfig { enabled: true }),
                    state: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    })
    .await
    .expect("AddPeer");
}

async fn peer_events_and_end_of_rib_between_two_gobgpd_v4() -> Outcome {
    use api::watch_event_request::table::{filter::Type, Filter};
    use api::watch_event_response::{peer_event, Event};
    if !installed("gobgpd-v4") {
        return skip("gobgpd-v4 is not installed (ci/install.sh builds it)");
    }
    let (ip_a, ip_b) = ("127.0.0.1", "127.0.0.2");
    let (port_a, port_b) = (free_port(ip_a), free_port(ip_b));
    let (da, db) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (_ga, sa) = start("gobgpd-v4", da.path());
    let (_gb, sb) = start("gobgpd-v4", db.path());
    let mut a = GoBgpServiceClient::new(channel(&sa).await);
    let mut b = GoBgpServiceClient::new(channel(&sb).await);
    start_speaker(&mut a, ip_a, port_a, ip_b, port_b).await;
    let filter = |t: Type| Filter {
        r#type: t as i32,
        init: true,
        ..Default::default()
    };
    let mut watch = a
        .watch_event(api::WatchEventRequest {
            peer: Some(api::watch_event_request::Peer {}),
            table: Some(api::watch_event_request::Table {
                filters: vec![filter(Type::Best), filter(Type::Eor)],
            }),
            batch_size: 0,
        })
        .await
        .expect("WatchEvent")
        .into_inner();
    // 10.2.0.2/32 from both: a's own path stays best, so BEST events carry
    // only a's; b's, sent before 10.2.0.1/32, must never show up.
    a.add_path(api::AddPathRequest {
        table_type: api::TableType::Global as i32,
        path: Some(path("10.2.0.2", 32, ip_a, &[])),
        ..Default::default()
    })
    .await
    .expect("AddPath on a");
    start_speaker(&mut b, ip_b, port_b, ip_a, port_a).await;
    for p in ["10.2.0.2", "10.2.0.1"] {
        b.add_path(api::AddPathRequest {
            table_type: api::TableType::Global as i32,
            path: Some(path(p, 32, ip_b, &[OURS])),
            ..Default::default()
        })
        .await
        .expect("AddPath on b");
    }

    let (mut established, mut learned, mut eor) = (false, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(established && learned.is_some() && eor.is_some()) {
        let ev = tokio::time::timeout_at(deadline.into(), watch.message())
            .await
            .unwrap_or_else(|_| {
                panic!("within 30 s: established={established} path={learned:?} eor={eor:?}")
            })
            .expect("WatchEvent")
            .expect("stream ended");
        match ev.event {
            Some(Event::Peer(pe)) => {
                let st = pe.peer.and_then(|p| p.state).unwrap_or_default();
                if pe.r#type == peer_event::Type::State as i32
                    && st.neighbor_address == ip_b
                    && st.session_state == api::peer_state::SessionState::Established as i32
                {
                    established = true;
                }
            }
            Some(Event::Table(t)) => {
                for p in t.paths {
                    match nlri_of(&p) {
                        Some(n) if n == "10.2.0.1/32" => learned = Some(p),
                        Some(n) if n == "10.2.0.2/32" => assert_eq!(
                            p.neighbor_ip, "",
                            "a BEST event carried a path that is not best: {p:?}"
                        ),
                        Some(_) => {}
                        None => eor = Some(p),
                    }
                }
            }
            None => {}
        }
    }
    let learned = learned.unwrap();
    assert_eq!(learned.neighbor_ip, ip_b, "{learned:?}");
    assert_eq!(next_hop(&learned).as_deref(), Some(ip_b));
    assert_eq!(communities(&learned), vec![OURS]);
    assert!(!learned.is_withdraw && !learned.stale);
    let eor = eor.unwrap();
    assert_eq!(
        eor.family,
        Some(v4()),
        "End-of-RIB for IPv4 unicast: {eor:?}"
    );
    assert_eq!(eor.neighbor_ip, ip_b, "{eor:?}");
    assert!(eor.pattrs.is_empty(), "{eor:?}");

    // Both 10.2.0.2/32 paths are in a's table (b's did arrive).
    let both = list(&mut a, v4()).await;
    let from: Vec<&str> = both
        .iter()
        .filter(|p| nlri_of(p).as_deref() == Some("10.2.0.2/32"))
        .map(|p| p.neighbor_ip.as_str())
        .collect();
    assert_eq!(from.len(), 2, "{both:?}");
    assert!(from.contains(&ip_b), "{from:?}");

    let mut s = a
        .list_peer(api::ListPeerRequest {
            address: ip_b.into(),
            ..Default::default()
        })
        .await
        .expect("ListPeer")
        .into_inner();
    let peer = s
        .message()
        .await
        .expect("ListPeer")
        .and_then(|r| r.peer)
        .expect("a peer");
    let gr_state = peer
        .afi_safis
        .iter()
        .find_map(|f| f.mp_graceful_restart.as_ref()?.state)
        .expect("graceful restart state");
    assert!(
        gr_state.received && gr_state.advertised && gr_state.end_of_rib_received,
        "{gr_state:?}"
    );
    let st = peer.state.expect("state");
    let gr_cap = st.remote_cap.iter().find_map(|c| match &c.cap {
        Some(api::capability::Cap::GracefulRestart(g)) => Some(g.clone()),
        _ => None,
    });
    assert_eq!(
        gr_cap.as_ref().map(|g| (g.time, g.tuples.len())),
        Some((30, 1)),
        "b offered graceful restart, 30 s, for one family: {:?}",
        st.remote_cap
    );
    Ok(())
}
