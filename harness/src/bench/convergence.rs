//! `harness bench convergence`: a dual-stack container joins on one host;
//! how long until the other host has its IPv4 and its IPv6 route and its
//! container reaches it over each family, and how long each withdrawal
//! takes after it stops.
//!
//! Nothing here polls the routing table: the route's arrival and removal on
//! b2 are stamped by a netlink route subscription in b2's namespace
//! ([`RouteEvents`]), and reachability by one ICMP echo every 2 ms from b2's
//! container over a single raw socket ([`Pinger`]), so on a 2-core machine
//! the measuring does not compete with the driver it measures. The probe
//! starts when `docker run` returned, or (`--probe-from-route`) when the
//! route reaches b2, aimed at the address Docker's serial IPAM will give.
//! IPv6 is always probed from when `docker run` returned (ICMPv6 echo over
//! a second raw socket), after the IPv4 answer: its route time is stamped
//! by the same subscription, so only its reachability figure includes the
//! IPv4 probe's wait.
//!
//! Each run also reads both drivers' count of full dumps of the main table
//! (`/bgp/route_watch/dumps` in their status) before its start and after its
//! withdrawal: what one container's life costs in dumps.
//!
//! In: the number of runs, run options. Out: a [`BenchResult`] (route and
//! reachability times per family, withdrawal times, full dumps per run,
//! driver memory).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::hosts::two_hosts_dual;
use super::measure::{route_events, rss_kib};
use super::stats::{BenchResult, Series};
use crate::engine::ContainerEngine;
use crate::probe::Pinger;
use crate::topology::{Options, World};
use crate::util::scaled;

/// How often the reachability probe sends: light, and still finer than the
/// millisecond-scale figures it measures.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// Two hosts over iBGP: `runs` times a container joins on b1 (emulated
/// `docker run`); when b2's kernel has its route, when b2's container
/// reaches it, and, after it stops, when the route leaves b2. Also the
/// drivers' memory.
///
/// Reachability is probed from when `docker run` returned (the container
/// exists; what a client that learned of it then would see), or, with
/// `probe_from_route`, from the moment its route reaches b2 — before b1 has
/// configured the container's address, so the first echoes find no
/// neighbour there and the answer waits for b1's next ARP attempt (about
/// 1 s). The two modes measure different things and are never mixed in one run.
pub fn convergence(runs: usize, probe_from_route: bool, opts: &Options) -> Result<BenchResult> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (w, mut e, net) = two_hosts_dual(opts, &["b1", "b2"])?;
    let rss_idle = rss_kib(w.hosts[1].driver.pid());
    let c2 = e.start(&w, 1, &net, "c2")?;
    let mut events = route_events(&w, 1)?;
    let mut pinger = Pinger::open(&c2.netns)?;
    let mut pinger6 = Pinger::open6(&c2.netns)?;
    let (mut join, mut route, mut reach, mut withdraw) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut route6, mut reach6, mut withdraw6) = (Vec::new(), Vec::new(), Vec::new());
    // Docker's serial IPAM (the emulator's too) gives each new container the
    // address after the last one: the early probe aims there.
    let subnet = net.subnets["b1"];
    let mut predicted = std::net::Ipv4Addr::from(u32::from(subnet.network()) + 2);
    let mut mispredicted = 0;
    let (mut dumps_b1, mut dumps_b2) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let before = (full_dumps(&w, 0)?, full_dumps(&w, 1)?);
        let t0 = Instant::now();
        let foreseen = ipnet::IpNet::V4(ipnet::Ipv4Net::new(predicted, 32)?);
        let name = format!("c1r{i}");
        let (started, early) = if probe_from_route {
            std::thread::scope(|s| {
                let probe = s.spawn(|| -> Result<(Instant, Option<Instant>)> {
                    let on_b2 = events.wait(foreseen, false, t0, Duration::from_secs(10))?;
                    let answered = pinger.first_reply(
                        predicted.into(),
                        PROBE_INTERVAL,
                        scaled(Duration::from_secs(10)),
                    );
                    Ok((on_b2, answered))
                });
                let started = e.start(&w, 0, &net, &name).map(|c| (c, t0.elapsed()));
                (started, probe.join().ok())
            })
        } else {
            (e.start(&w, 0, &net, &name).map(|c| (c, t0.elapsed())), None)
        };
        let (c1, took) = started?;
        join.push(took);
        let (a4, a6) = match (c1.address, c1.address6) {
            (Some(a4), Some(a6)) => (a4, a6),
            _ => bail!(
                "run {i}: the dual-stack container has {:?} / {:?}",
                c1.address,
                c1.address6
            ),
        };
        let dst = ipnet::IpNet::from(std::net::IpAddr::V4(a4));
        let dst6 = ipnet::IpNet::from(std::net::IpAddr::V6(a6));
        let answered = match early {
            Some(Ok((on_b2, Some(at)))) if a4 == predicted => {
                route.push(on_b2 - t0);
                at
            }
            _ => {
                if probe_from_route {
                    mispredicted += 1;
                }
                let on_b2 = events.wait(dst, false, t0, Duration::from_secs(10))?;
                route.push(on_b2 - t0);
                pinger
                    .first_reply(a4.into(), PROBE_INTERVAL, scaled(Duration::from_secs(10)))
                    .ok_or_else(|| anyhow!("run {i}: b2's container never reached {a4}"))?
            }
        };
        reach.push(answered - t0);
        let on_b2 = events.wait(dst6, false, t0, Duration::from_secs(10))?;
        route6.push(on_b2 - t0);
        let answered6 = pinger6
            .first_reply(a6.into(), PROBE_INTERVAL, scaled(Duration::from_secs(10)))
            .ok_or_else(|| anyhow!("run {i}: b2's container never reached {a6}"))?;
        reach6.push(answered6 - t0);
        predicted = next_in(subnet, a4);
        let t1 = Instant::now();
        e.stop(&w, &c1)?;
        let gone = events.wait(dst, true, t1, Duration::from_secs(10))?;
        withdraw.push(gone - t1);
        let gone6 = events.wait(dst6, true, t1, Duration::from_secs(10))?;
        withdraw6.push(gone6 - t1);
        dumps_b1.push(full_dumps(&w, 0)?.saturating_sub(before.0) as f64);
        dumps_b2.push(full_dumps(&w, 1)?.saturating_sub(before.1) as f64);
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
        format!(
            "sudo target/release/harness bench convergence --runs {runs}{}",
            if probe_from_route {
                " --probe-from-route"
            } else {
                ""
            }
        ),
    );
    r.setup.insert("runs".into(), runs.to_string());
    r.setup.insert(
        "network".into(),
        "dual stack (10.30.x.0/24 and fd00:31:x::/64 per host, macvlan); each join has both addresses"
            .into(),
    );
    r.setup.insert(
        "reachability probed from".into(),
        if probe_from_route {
            "the route's arrival on b2"
        } else {
            "the return of docker run"
        }
        .into(),
    );
    r.setup.insert(
        "timing".into(),
        "from the start of the emulated docker run on b1; route events from a netlink \
         subscription in b2's namespace; reachability by ICMP echo every 2 ms from b2's container"
            .into(),
    );
    r.series = vec![
        Series::ms("container started on b1", &join),
        Series::ms("route on b2", &route),
        Series::ms(
            if probe_from_route {
                "reachable from b2 (probed from the route's arrival)"
            } else {
                "reachable from b2 (probed once docker run returned)"
            },
            &reach,
        ),
        Series::ms("route gone from b2 after stop", &withdraw),
        Series::ms("IPv6 route on b2", &route6),
        Series::ms(
            "IPv6 reachable from b2 (probed after the IPv4 answer)",
            &reach6,
        ),
        Series::ms("IPv6 route gone from b2 after stop", &withdraw6),
        Series::new(
            "full route dumps on b1 per container start and stop",
            "dumps",
            dumps_b1.clone(),
        ),
        Series::new(
            "full route dumps on b2 per container start and stop on b1",
            "dumps",
            dumps_b2.clone(),
        ),
    ];
    r.figures.insert(
        format!("full route dumps on b1 in {runs} runs"),
        dumps_b1.iter().sum(),
    );
    r.figures.insert(
        format!("full route dumps on b2 in {runs} runs"),
        dumps_b2.iter().sum(),
    );
    r.figures
        .insert("b2 driver RSS idle (KiB)".into(), rss_idle as f64);
    if probe_from_route {
        r.figures.insert(
            "joins whose address was not foreseen (probed after the start)".into(),
            f64::from(mispredicted),
        );
    }
    r.figures.insert(
        format!("b2 driver RSS after {runs} joins (KiB)"),
        rss_busy as f64,
    );
    let med = |k: usize| r.series[k].stats().map_or(0.0, |s| s.median);
    r.summary = format!(
        "{runs} dual-stack joins on b1 (emulated docker run: CreateEndpoint..OperInfo and the sandbox), iBGP to b2: \
         median start {:.1} ms, route on b2 {:.1} ms (IPv6 {:.1} ms), reachable from b2 {:.1} ms (IPv6 {:.1} ms); \
         withdrawal (from the start of the stop) {:.1} ms (IPv6 {:.1} ms); b2's driver RSS {rss_idle} KiB idle, \
         {rss_busy} KiB after; full route dumps per container start and stop: b1 median {:.0} (max {:.0}, {:.0} in all), \
         b2 median {:.0} (max {:.0}, {:.0} in all)",
        med(0),
        med(1),
        med(4),
        med(2),
        med(5),
        med(3),
        med(6),
        med(7),
        dumps_b1.iter().copied().fold(0.0, f64::max),
        dumps_b1.iter().sum::<f64>(),
        med(8),
        dumps_b2.iter().copied().fold(0.0, f64::max),
        dumps_b2.iter().sum::<f64>(),
    );
    Ok(r)
}

/// Full dumps of the main table the driver on host `i` has made, every
/// reason together (its status, `/bgp/route_watch/dumps`).
fn full_dumps(w: &World, i: usize) -> Result<u64> {
    let status = w.driver_status(i)?;
    let dumps = status
        .pointer("/bgp/route_watch/dumps")
        .and_then(|d| d.as_object())
        .ok_or_else(|| anyhow!("host {i}'s driver status has no /bgp/route_watch/dumps"))?;
    Ok(dumps.values().filter_map(|v| v.as_u64()).sum())
}

/// The address Docker's serial allocator hands out after `a` in `subnet`
/// (the gateway, the first host address, is never free).
fn next_in(subnet: ipnet::Ipv4Net, a: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    let first = u32::from(subnet.network()) + 2;
    let last = u32::from(subnet.broadcast()) - 1;
    let n = u32::from(a) + 1;
    std::net::Ipv4Addr::from(if n > last { first } else { n })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_address_wraps_past_the_gateway() {
        let s: ipnet::Ipv4Net = "10.30.1.0/24".parse().unwrap();
        assert_eq!(
            super::next_in(s, "10.30.1.7".parse().unwrap()).to_string(),
            "10.30.1.8"
        );
        assert_eq!(
            super::next_in(s, "10.30.1.254".parse().unwrap()).to_string(),
            "10.30.1.2"
        );
    }
}
