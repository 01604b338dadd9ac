//! `harness bench learned-routes`: one host's gobgpd originates N routes;
//! how fast they land in the other host's kernel through gobgpd and our
//! driver, and go again; and the driver's resident memory before, with
//! them, and after they went. The routes are /32s from 10.28.0.0 up, inside
//! the accepted pool 10.28.0.0/15 (up to 131,072 of them: 100,000 fits).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{ms, poll_until, rss_kib, tagged_routes, two_hosts};
use crate::world::Options;

/// /32s in 10.28.0.0/15.
const MAX_ROUTES: usize = 1 << 17;

/// b1's gobgpd originates `routes` /32s (AddPathStream); how fast do they
/// land in b2's kernel through gobgpd and our driver, and go again.
pub fn learned_routes(routes: usize, opts: &Options) -> Result<String> {
    use ipvlan_bgp::bgp::gobgp::{apipb, connect, family_v4, local_path, GobgpAddr};
    if routes == 0 || routes > MAX_ROUTES {
        bail!("--routes must be between 1 and {MAX_ROUTES} (inside 10.28.0.0/15)");
    }
    let (w, _e, _net) = two_hosts(opts, &["b2"])?;
    let rss_before = rss_kib(w.hosts[1].driver.pid());
    let nh = std::net::IpAddr::V4(w.hosts[0].addr.addr());
    let base = u32::from(std::net::Ipv4Addr::new(10, 28, 0, 0));
    let paths: Vec<apipb::Path> = (0..routes as u32)
        .map(|i| {
            let p = ipnet::IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(base + i), 32).expect("valid"),
            );
            local_path(p, nh, &[])
        })
        .collect();
    let api = GobgpAddr::Unix(w.hosts[0].gobgp_api());
    let t0 = Instant::now();
    w.rt.block_on(async {
        // Streams of at most 10,000 paths, each on a fresh connection.
        // Known gap: at 100,000 routes gobgpd's API still ends the call with
        // a broken pipe (70,000 work); the cause is not found yet.
        for block in paths.chunks(10_000) {
            let mut c = connect(&api, Duration::from_secs(5)).await?;
            let msgs: Vec<apipb::AddPathStreamRequest> = block
                .chunks(1000)
                .map(|ch| apipb::AddPathStreamRequest {
                    table_type: apipb::TableType::Global as i32,
                    vrf_id: String::new(),
                    paths: ch.to_vec(),
                })
                .collect();
            c.add_path_stream(tokio_stream::iter(msgs)).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let sent = t0.elapsed();
    poll_until(Duration::from_secs(120), || {
        Ok(tagged_routes(&w, 1)?.len() >= routes)
    })?;
    let installed = t0.elapsed();
    let rss_after = rss_kib(w.hosts[1].driver.pid());
    let gobgpd_rss = rss_kib(w.hosts[1].gobgpd.pid());
    let t1 = Instant::now();
    w.rt.block_on(async {
        let mut c = connect(&api, Duration::from_secs(5)).await?;
        c.delete_path(apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family_v4()),
            ..Default::default()
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    poll_until(Duration::from_secs(120), || {
        Ok(tagged_routes(&w, 1)?.is_empty())
    })?;
    let removed = t1.elapsed();
    let rss_gone = rss_kib(w.hosts[1].driver.pid());
    drop(w);
    Ok(format!(
        "learned routes: {routes} /32s originated on b1 (AddPathStream took {:.0} ms), all in b2's kernel {:.0} ms after the first \
         was sent ({:.0} routes/s end to end, both gobgpds included); all gone from b2's kernel {:.0} ms after the delete; \
         b2 driver RSS {rss_before} KiB before, {rss_after} KiB with them, {rss_gone} KiB after they went (b2's gobgpd: {gobgpd_rss} KiB with them)",
        ms(sent),
        ms(installed),
        routes as f64 / installed.as_secs_f64(),
        ms(removed),
    ))
}
