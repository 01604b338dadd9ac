//! `harness bench convergence`: a container joins on one host; how long
//! until the other host has its route and its container reaches it, and how
//! long the withdrawal takes after it stops.
//!
//! Nothing here polls the routing table: the route's arrival and removal on
//! b2 are stamped by a netlink route subscription in b2's namespace
//! ([`RouteEvents`]), and reachability by one ICMP echo every 2 ms from b2's
//! container over a single raw socket ([`Pinger`]), so on a 2-core machine
//! the measuring does not compete with the driver it measures.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::{rss_kib, two_hosts, BenchResult, RouteEvents, Series};
use crate::engine::Engine;
use crate::probe::Pinger;
use crate::util::scaled;
use crate::world::Options;

/// How often the reachability probe sends: light, and still finer than the
/// millisecond-scale figures it measures.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// Two hosts over iBGP: `runs` times a container joins on b1 (emulated
/// `docker run`); when b2's kernel has its route, when b2's container
/// reaches it, and, after it stops, when the route leaves b2. Also the
/// drivers' memory.
pub fn convergence(runs: usize, opts: &Options) -> Result<BenchResult> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (w, mut e, net) = two_hosts(opts, &["b1", "b2"])?;
    let rss_idle = rss_kib(w.hosts[1].driver.pid());
    let c2 = e.start(&w, 1, &net, "c2")?;
    let mut events = RouteEvents::open(&w, 1)?;
    let mut pinger = Pinger::open(&c2.netns)?;
    let (mut join, mut route, mut reach, mut withdraw) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t0 = Instant::now();
        let c1 = e.start(&w, 0, &net, &format!("c1r{i}"))?;
        join.push(t0.elapsed());
        let dst = ipnet::IpNet::V4(ipnet::Ipv4Net::new(c1.address, 32)?);
        let on_b2 = events.wait(dst, false, t0, Duration::from_secs(10))?;
        route.push(on_b2 - t0);
        let answered = pinger
            .first_reply(c1.address, PROBE_INTERVAL, scaled(Duration::from_secs(10)))
            .ok_or_else(|| anyhow!("run {i}: b2's container never reached {}", c1.address))?;
        reach.push(answered - t0);
        let t1 = Instant::now();
        e.stop(&w, &c1)?;
        let gone = events.wait(dst, true, t1, Duration::from_secs(10))?;
        withdraw.push(gone - t1);
        if (i + 1) % 50 == 0 || i + 1 == runs {
            eprintln!("[bench] convergence: {}/{runs} joins", i + 1);
        }
    }
    let rss_busy = rss_kib(w.hosts[1].driver.pid());
    e.stop(&w, &c2)?;
    drop(events);
    drop(w);
    let mut r = BenchResult::new(
        "convergence",
        format!("sudo target/release/harness bench convergence --runs {runs}"),
    );
    r.setup.insert("runs".into(), runs.to_string());
    r.setup.insert(
        "timing".into(),
        "from the start of the emulated docker run on b1; route events from a netlink \
         subscription in b2's namespace; reachability by ICMP echo every 2 ms from b2's container"
            .into(),
    );
    r.series = vec![
        Series::ms("container started on b1", &join),
        Series::ms("route on b2", &route),
        Series::ms("reachable from b2", &reach),
        Series::ms("route gone from b2 after stop", &withdraw),
    ];
    r.figures
        .insert("b2 driver RSS idle (KiB)".into(), rss_idle as f64);
    r.figures.insert(
        format!("b2 driver RSS after {runs} joins (KiB)"),
        rss_busy as f64,
    );
    let med = |k: usize| r.series[k].stats().map_or(0.0, |s| s.median);
    r.summary = format!(
        "{runs} joins on b1 (emulated docker run: CreateEndpoint..OperInfo and the sandbox), iBGP to b2: \
         median start {:.1} ms, route on b2 {:.1} ms, reachable from b2 {:.1} ms; withdrawal (from the \
         start of the stop) {:.1} ms; b2's driver RSS {rss_idle} KiB idle, {rss_busy} KiB after",
        med(0),
        med(1),
        med(2),
        med(3)
    );
    Ok(r)
}
