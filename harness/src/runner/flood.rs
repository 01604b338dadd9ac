//! Floods a gobgpd with /32 paths over its gRPC API (`flood` steps and the
//! bench). In: the API socket, first address, count, next hop. Out: how
//! long gobgpd took to accept them. Owns its own tokio runtime; depends on
//! no other part of the runner.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};

/// Originates `count` /32s from `first` via `nh` on the gobgpd behind
/// `api` (AddPathStream, 1,000 paths per message); returns how long gobgpd
/// took to accept them. Runs on its own thread with its own runtime.
pub fn flood(api: &std::path::Path, first: Ipv4Addr, count: u32, nh: Ipv4Addr) -> Result<Duration> {
    use ipvlan_bgp::bgp::gobgp::{apipb, connect, local_path, GobgpAddr};
    let base = u32::from(first);
    if base.checked_add(count - 1).is_none() {
        bail!("{count} addresses from {first} run past 255.255.255.255");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let addr = GobgpAddr::Unix(api.to_path_buf());
    let t = Instant::now();
    rt.block_on(async {
        let mut c = connect(&addr, Duration::from_secs(5)).await?;
        let msgs = (0..count).step_by(1000).map(move |start| {
            let end = (start + 1000).min(count);
            apipb::AddPathStreamRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                paths: (start..end)
                    .map(|i| {
                        let p = Ipv4Net::new(Ipv4Addr::from(base + i), 32).expect("a /32 is valid");
                        local_path(IpNet::V4(p), std::net::IpAddr::V4(nh), &[])
                    })
                    .collect(),
            }
        });
        // gobgpd's gRPC server drops a connection whose client keeps pinging
        // (our channel's keepalives) while the server writes nothing, as it
        // does during a long client stream ("too many pings"): a cheap call
        // each second keeps it writing, as the driver's liveness check does.
        let mut talk = c.clone();
        let keep_talking = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = talk.get_bgp(apipb::GetBgpRequest {}).await;
            }
        });
        let sent = c.add_path_stream(tokio_stream::iter(msgs)).await;
        keep_talking.abort();
        sent?;
        Ok::<_, anyhow::Error>(())
    })
    .with_context(|| format!("flood {count} paths into {}", api.display()))?;
    Ok(t.elapsed())
}
