//! What the gobgp CLI cannot do on a gobgpd 4.x, over gRPC as the driver
//! will: the measuring tool behind the "configured over gRPC" and "StopBgp
//! with graceful restart" rows of docs/gobgp-v4.md.
//!
//! In: `gobgp_v4_ctl unix:///api.sock add|update ADDR ASN HOLD_S BFD_MS MULT GR_S`
//! adds or updates one neighbour with BFD and graceful restart (BFD_MS 0: no
//! BFD; GR_S 0: no graceful restart; keepalive = hold / 3) and prints it as
//! ListPeer then shows it (Debug); `gobgp_v4_ctl unix:///api.sock stop-gr`
//! calls StopBgp with `allow_graceful_restart` (no NOTIFICATION to peers
//! that negotiated graceful restart).

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

#[allow(clippy::all, dead_code, missing_docs)]
mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!(
                "usage: gobgp_v4_ctl unix:///api.sock add|update ADDR ASN HOLD_S BFD_MS MULT GR_S | stop-gr ({what}?)"
            );
            std::process::exit(2)
        })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let target: String = arg(&args, 1, "target");
    let verb: String = arg(&args, 2, "verb");
    let sock = PathBuf::from(
        target
            .strip_prefix("unix://")
            .ok_or("expected unix:///path")?,
    );
    let channel = Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = sock.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await?;
    let mut c = api::go_bgp_service_client::GoBgpServiceClient::new(channel);
    if verb == "stop-gr" {
        c.stop_bgp(api::StopBgpRequest {
            allow_graceful_restart: true,
        })
        .await?;
        return Ok(());
    }
    let addr: String = arg(&args, 3, "ADDR");
    let asn: u32 = arg(&args, 4, "ASN");
    let hold: u64 = arg(&args, 5, "HOLD_S");
    let bfd_ms: u32 = arg(&args, 6, "BFD_MS");
    let mult: u32 = arg(&args, 7, "MULT");
    let gr: u32 = arg(&args, 8, "GR_S");
    let family = |afi: api::family::Afi| api::AfiSafi {
        config: Some(api::AfiSafiConfig {
            family: Some(api::Family {
                afi: afi as i32,
                safi: api::family::Safi::Unicast as i32,
            }),
            enabled: true,
        }),
        mp_graceful_restart: (gr > 0).then_some(api::MpGracefulRestart {
            config: Some(api::MpGracefulRestartConfig { enabled: true }),
            state: None,
        }),
        ..Default::default()
    };
    let peer = api::Peer {
        conf: Some(api::PeerConf {
            neighbor_address: addr.clone(),
            peer_asn: asn,
            ..Default::default()
        }),
        timers: Some(api::Timers {
            config: Some(api::TimersConfig {
                connect_retry: 1,
                hold_time: hold,
                keepalive_interval: (hold / 3).max(1),
                idle_hold_time_after_reset: 1,
                ..Default::default()
            }),
            state: None,
        }),
        graceful_restart: (gr > 0).then_some(api::GracefulRestart {
            enabled: true,
            restart_time: gr,
            ..Default::default()
        }),
        afi_safis: vec![family(api::family::Afi::Ip), family(api::family::Afi::Ip6)],
        bfd: (bfd_ms > 0).then_some(api::BfdPeerConfig {
            enabled: true,
            port: 3784,
            desired_minimum_tx_interval: bfd_ms * 1000,
            required_minimum_receive: bfd_ms * 1000,
            detection_multiplier: mult,
        }),
        ..Default::default()
    };
    match verb.as_str() {
        "add" => {
            c.add_peer(api::AddPeerRequest { peer: Some(peer) }).await?;
        }
        "update" => {
            c.update_peer(api::UpdatePeerRequest {
                peer: Some(peer),
                do_soft_reset_in: false,
            })
            .await?;
        }
        v => return Err(format!("{v}: expected add or update").into()),
    }
    let mut s = c
        .list_peer(api::ListPeerRequest {
            address: addr,
            enable_advertised: false,
        })
        .await?
        .into_inner();
    while let Some(r) = s.message().await? {
        println!("{:?}", r.peer);
    }
    Ok(())
}
