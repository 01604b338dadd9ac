//! A burst on another machine, as the fabric sees it: host routes arriving
//! from a third host's gobgpd at a container burst's pace, with no
//! container started on this kernel.
//!
//! `bench convergence --load` emulates "a 50-container burst on another
//! host" by starting 50 containers on b3, which shares this machine's two
//! cores and its one kernel (the RTNL lock every link and route change
//! takes) with the measured b1 and b2. Real hosts share neither; what
//! reaches them from another machine's burst is its routes. In: b3's
//! gobgpd API and address, how many routes, and the measured join. Out:
//! the routes originated one AddPath every [`PACE`] while the join runs,
//! then (on b2's route events) seen in, withdrawn and seen gone before the
//! next round.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::bgp::gobgp::{Gobgp, GobgpAddr, GobgpApi, OwnPath};
use ipvlan_bgp::model::attrs::RouteAttrs;

use super::measure::{poll_until, tagged_routes, RouteEvents};
use crate::topology::World;

/// One route every this long: faster than the container burst it stands
/// for (a container start takes tens of ms here), so no gentler.
pub(super) const PACE: Duration = Duration::from_millis(10);
/// Where the burst's /32s start: the top /24 of the learned routes' /15,
/// which the load's learned routes (at most [`MAX_LEARNED`]) leave free.
pub(super) const FIRST: Ipv4Addr = Ipv4Addr::new(10, 29, 255, 0);
/// The load's learned routes must end below [`FIRST`].
pub(super) const MAX_LEARNED: u32 = (1 << 17) - 256;

/// The burst's paths: `count` /32s from [`FIRST`], next hop `nh` (b3).
fn paths(count: usize, nh: Ipv4Addr) -> Vec<OwnPath> {
    (0..count as u32)
        .map(|k| OwnPath {
            prefix: IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(u32::from(FIRST) + k), 32).expect("a /32 is valid"),
            ),
            next_hop: IpAddr::V4(nh),
            attrs: RouteAttrs::default(),
        })
        .collect()
}

/// The burst's routes, originated: [`Burst::withdraw`] takes them back.
pub(super) struct Burst {
    rt: tokio::runtime::Runtime,
    client: Gobgp,
    paths: Vec<OwnPath>,
}

/// Runs `f` while b3's gobgpd (`api`, next hop `nh`) originates `count`
/// host routes one every [`PACE`], from `lead` of them on. Returns `f`'s
/// result once every route is sent, and the burst to withdraw.
pub(super) fn during<T>(
    api: &Path,
    nh: Ipv4Addr,
    count: usize,
    lead: usize,
    f: impl FnOnce() -> Result<T>,
) -> Result<(T, Burst)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let addr = GobgpAddr::Unix(api.to_path_buf());
    let client = rt
        .block_on(Gobgp::connect(&addr, Duration::from_secs(5)))
        .context("connect to b3's gobgpd")?;
    let paths = paths(count, nh);
    let sent = AtomicUsize::new(0);
    let measured = std::thread::scope(|s| {
        let sending = s.spawn(|| -> Result<()> {
            let mut c = client.clone();
            let r = rt.block_on(async {
                for p in &paths {
                    let next = tokio::time::Instant::now() + PACE;
                    c.add_path(p, 0).await?;
                    sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep_until(next).await;
                }
                Ok::<_, anyhow::Error>(())
            });
            // Counted even on failure, so that the wait below ends.
            sent.store(count, Ordering::SeqCst);
            r.map_err(|e| anyhow!("originate the burst's routes on b3: {e}"))
        });
        let lead = poll_until(Duration::from_secs(30), || {
            Ok(sent.load(Ordering::SeqCst) >= lead || sending.is_finished())
        });
        let measured = lead.and_then(|_| f());
        let sent = sending
            .join()
            .map_err(|_| anyhow!("the route burst on b3 panicked"))
            .and_then(|r| r);
        measured.and_then(|m| sent.map(|_| m))
    })?;
    Ok((measured, Burst { rt, client, paths }))
}

impl Burst {
    /// Waits until b2 (host 1 of `w`) holds every route of the burst (a
    /// route withdrawn before it arrived might never show: b2's table is
    /// read, since the join's waits drop older route events), withdraws
    /// them, and waits until b2's route events (`events`) show every one
    /// gone.
    pub(super) fn withdraw(mut self, w: &World, events: &mut RouteEvents) -> Result<()> {
        let limit = Duration::from_secs(30);
        // A dump of a few thousand routes each time: poll gently.
        poll_until(limit, || {
            std::thread::sleep(Duration::from_millis(50));
            let held = tagged_routes(w, 1)?;
            Ok(self
                .paths
                .iter()
                .all(|p| held.iter().any(|r| r.dst == p.prefix)))
        })
        .context("b2 never installed every route of the burst")?;
        let t = Instant::now();
        let client = &mut self.client;
        let paths = &self.paths;
        self.rt
            .block_on(async {
                for p in paths {
                    client.delete_path(p, 0).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
            .map_err(|e| anyhow!("withdraw the burst's routes on b3: {e}"))?;
        for p in &self.paths {
            events.wait(p.prefix, true, t, limit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_stays_in_the_top_24_above_the_learned_routes() {
        let p = paths(250, Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(p[0].prefix.to_string(), "10.29.255.0/32");
        assert_eq!(p[249].prefix.to_string(), "10.29.255.249/32");
        let last_learned = u32::from(Ipv4Addr::new(10, 28, 0, 0)) + MAX_LEARNED - 1;
        assert!(last_learned < u32::from(FIRST));
        let pool: IpNet = "10.28.0.0/15".parse().unwrap();
        assert!(p.iter().all(|x| pool.contains(&x.prefix)));
    }
}
