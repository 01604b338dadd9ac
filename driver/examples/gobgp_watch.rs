//! Prints a gobgpd's WatchEvent stream as timestamped lines: the measuring
//! tool behind docs/gobgp-v4.md (BFD, graceful restart, End-of-RIB,
//! multipath). Speaks both GoBGP lines with our own protos and tells them
//! apart as the driver will: GetBgp of 4.x first, 3.x on UNIMPLEMENTED.
//!
//! In: `gobgp_watch unix:///path/to/api.sock` (gobgpd's --api-hosts).
//! Out, one line per event on stdout, each starting with the wall-clock time
//! in seconds (microseconds), so a script can subtract its own timestamps:
//! ```text
//! 1767000000.123456 line v4
//! 1767000000.123456 table n=2
//! 1767000000.123456 path 10.1.1.2/32 nh=192.0.2.2 from=192.0.2.2 withdraw=false stale=false comm=[65000:1]
//! 1767000000.123456 eor ipv4 from=192.0.2.2            (4.x only)
//! 1767000000.123456 peer 192.0.2.2 ESTABLISHED reason=... bfd=UP
//! ```
//! Exits when the stream ends or breaks (prints `end ...`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use prost::Message;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

#[allow(clippy::all, dead_code, missing_docs)]
mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

#[allow(clippy::all, dead_code, missing_docs)]
mod apipb {
    include!(concat!(env!("OUT_DIR"), "/apipb.rs"));
}

fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

fn out(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{} {line}", now());
    let _ = o.flush();
}

fn community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

/// No HTTP/2 keepalive PINGs: gobgpd's gRPC server (grpc-go defaults, both
/// lines) closes a connection that pings while it writes nothing ("too many
/// pings"), which would end a quiet watch after a few seconds.
async fn channel(sock: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = sock.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
}

// ----- 4.x -----

fn v4_path(p: &api::Path) -> String {
    use api::attribute::Attr;
    let prefix = match p.nlri.as_ref().and_then(|n| n.nlri.as_ref()) {
        Some(api::nlri::Nlri::Prefix(x)) => format!("{}/{}", x.prefix, x.prefix_len),
        None => "-".into(),
    };
    let mut nh = "-".to_string();
    let mut comm = vec![];
    let mut lp = None;
    for a in &p.pattrs {
        match a.attr.as_ref() {
            Some(Attr::NextHop(n)) => nh = n.next_hop.clone(),
            Some(Attr::MpReach(m)) => nh = m.next_hops.join(","),
            Some(Attr::Communities(c)) => {
                comm = c.communities.iter().map(|c| community(*c)).collect()
            }
            Some(Attr::LocalPref(l)) => lp = Some(l.local_pref),
            _ => {}
        }
    }
    let lp = lp.map(|l| format!(" lp={l}")).unwrap_or_default();
    format!(
        "{prefix} nh={nh} from={:?} withdraw={} stale={} best={} id={}{lp} comm=[{}]",
        p.neighbor_ip,
        p.is_withdraw,
        p.stale,
        p.best,
        p.identifier,
        comm.join(",")
    )
}

async fn watch_v4(c: Channel) {
    use api::watch_event_request::table::{filter::Type, Filter};
    let mut client = api::go_bgp_service_client::GoBgpServiceClient::new(c);
    let filter = |t: Type, init: bool| Filter {
        r#type: t as i32,
        init,
        ..Filter::default()
    };
    let req = api::WatchEventRequest {
        peer: Some(api::watch_event_request::Peer {}),
        table: Some(api::watch_event_request::Table {
            filters: vec![filter(Type::Best, true), filter(Type::Eor, false)],
        }),
        batch_size: 0,
    };
    let mut s = match client.watch_event(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return out(&format!("end watch: {e}")),
    };
    loop {
        match s.message().await {
            Ok(Some(ev)) => match ev.event {
                Some(api::watch_event_response::Event::Table(t)) => {
                    out(&format!("table n={}", t.paths.len()));
                    for p in &t.paths {
                        // An End-of-RIB marker comes as a path without NLRI.
                        if p.nlri.as_ref().and_then(|n| n.nlri.as_ref()).is_none() {
                            let f = p.family.unwrap_or_default();
                            out(&format!(
                                "eor afi={} safi={} from={:?} withdraw={} raw={:?}",
                                f.afi, f.safi, p.neighbor_ip, p.is_withdraw, p
                            ));
                        } else {
                            out(&format!("path {}", v4_path(p)));
                        }
                    }
                }
                Some(api::watch_event_response::Event::Peer(pe)) => {
                    let peer = pe.peer.unwrap_or_default();
                    let st = peer.state.unwrap_or_default();
                    let bfd = st
                        .bfd_state
                        .as_ref()
                        .map(|b| {
                            format!(
                                " bfd={:?}",
                                api::BfdSessionState::try_from(b.session_state).unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                    out(&format!(
                        "peer {} {:?} type={:?} reason={:?} msg={:?}{bfd}",
                        st.neighbor_address,
                        api::peer_state::SessionState::try_from(st.session_state)
                            .unwrap_or_default(),
                        api::watch_event_response::peer_event::Type::try_from(pe.r#type)
                            .unwrap_or_default(),
                        api::peer_state::DisconnectReason::try_from(st.disconnect_reason)
                            .unwrap_or_default(),
                        st.disconnect_message
                    ));
                }
                None => out("unknown event"),
            },
            Ok(None) => return out("end stream closed"),
            Err(e) => return out(&format!("end stream: {e}")),
        }
    }
}

// ----- 3.x -----

fn any_is<M: Message + Default>(a: &prost_types::Any, name: &str) -> Option<M> {
    a.type_url
        .ends_with(&format!("/apipb.{name}"))
        .then(|| M::decode(a.value.as_slice()).ok())
        .flatten()
}

fn v3_path(p: &apipb::Path) -> String {
    let prefix = p
        .nlri
        .as_ref()
        .and_then(|a| any_is::<apipb::IpAddressPrefix>(a, "IPAddressPrefix"))
        .map(|x| format!("{}/{}", x.prefix, x.prefix_len))
        .unwrap_or_else(|| "-".into());
    let mut nh = "-".to_string();
    let mut comm = vec![];
    let mut lp = None;
    for a in &p.pattrs {
        if let Some(n) = any_is::<apipb::NextHopAttribute>(a, "NextHopAttribute") {
            nh = n.next_hop;
        } else if let Some(m) = any_is::<apipb::MpReachNlriAttribute>(a, "MpReachNLRIAttribute") {
            nh = m.next_hops.join(",");
        } else if let Some(c) = any_is::<apipb::CommunitiesAttribute>(a, "CommunitiesAttribute") {
            comm = c.communities.iter().map(|c| community(*c)).collect();
        } else if let Some(l) = any_is::<apipb::LocalPrefAttribute>(a, "LocalPrefAttribute") {
            lp = Some(l.local_pref);
        }
    }
    let lp = lp.map(|l| format!(" lp={l}")).unwrap_or_default();
    format!(
        "{prefix} nh={nh} from={:?} withdraw={} stale={} best={} id={}{lp} comm=[{}]",
        p.neighbor_ip,
        p.is_withdraw,
        p.stale,
        p.best,
        p.identifier,
        comm.join(",")
    )
}

async fn watch_v3(c: Channel) {
    use apipb::watch_event_request::table::{filter::Type, Filter};
    let mut client = apipb::gobgp_api_client::GobgpApiClient::new(c);
    let req = apipb::WatchEventRequest {
        peer: Some(apipb::watch_event_request::PeerFilter {}),
        table: Some(apipb::watch_event_request::Table {
            filters: vec![Filter {
                r#type: Type::Best as i32,
                init: true,
            }],
        }),
    };
    let mut s = match client.watch_event(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return out(&format!("end watch: {e}")),
    };
    loop {
        match s.message().await {
            Ok(Some(ev)) => match ev.event {
                Some(apipb::watch_event_response::Event::Table(t)) => {
                    out(&format!("table n={}", t.paths.len()));
                    for p in &t.paths {
                        out(&format!("path {}", v3_path(p)));
                    }
                }
                Some(apipb::watch_event_response::Event::Peer(pe)) => {
                    let st = pe.peer.and_then(|p| p.state).unwrap_or_default();
                    out(&format!(
                        "peer {} state={} type={}",
                        st.neighbor_address, st.session_state, pe.r#type
                    ));
                }
                None => out("unknown event"),
            },
            Ok(None) => return out("end stream closed"),
            Err(e) => return out(&format!("end stream: {e}")),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(target) = std::env::args().nth(1) else {
        eprintln!("usage: gobgp_watch unix:///path/to/api.sock");
        std::process::exit(2);
    };
    let Some(sock) = target.strip_prefix("unix://").map(PathBuf::from) else {
        eprintln!("{target}: expected unix:///path");
        std::process::exit(2);
    };
    // gobgpd may still be starting: retry the connection for 10 s.
    let mut channel_ = None;
    for _ in 0..200 {
        if let Ok(c) = channel(sock.clone()).await {
            channel_ = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(c) = channel_ else {
        eprintln!("{target}: no gobgpd answers");
        std::process::exit(1);
    };
    let t = std::time::Instant::now();
    let probe = api::go_bgp_service_client::GoBgpServiceClient::new(c.clone())
        .get_bgp(api::GetBgpRequest {})
        .await;
    match probe {
        Err(e) if e.code() == Code::Unimplemented => {
            out(&format!("line v3 (detected in {:?})", t.elapsed()));
            watch_v3(c).await
        }
        _ => {
            out(&format!("line v4 (detected in {:?})", t.elapsed()));
            watch_v4(c).await
        }
    }
}
