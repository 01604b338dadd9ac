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
    use ipvlan_bgp::bgp::gobgp::{Gobgp, GobgpAddr, GobgpApi, OwnPath};
    use ipvlan_bgp::model::attrs::RouteAttrs;
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
        let mut c = Gobgp::connect(&addr, crate::util::scaled(Duration::from_secs(5))).await?;
        let paths: Vec<OwnPath> = (0..count)
            .map(|i| OwnPath {
                prefix: IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(base + i), 32).expect("a /32 is valid"),
                ),
                next_hop: std::net::IpAddr::V4(nh),
                attrs: RouteAttrs::default(),
            })
            .collect();
        // gobgpd's gRPC server drops a connection whose client keeps pinging
        // (our channel's keepalives) while the server writes nothing, as it
        // does during a long client stream ("too many pings"): a cheap call
        // each second keeps it writing, as the driver's liveness check does.
        let mut talk = c.clone();
        let keep_talking = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = talk.get_bgp().await;
            }
        });
        // One deadline for the whole stream: 5 s per 1,000 paths.
        let limit = Duration::from_secs(5) * count.div_ceil(1000).max(1);
        let sent = c.add_paths(&paths, 0, limit).await;
        keep_talking.abort();
        sent?;
        Ok::<_, anyhow::Error>(())
    })
    .with_context(|| format!("flood {count} paths into {}", api.display()))?;
    Ok(t.elapsed())
}
