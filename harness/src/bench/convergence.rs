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
//! route reaches b2, aimed at the address the route names (the first host
//! route in b1's subnet since the start: [`probe_from_route`]); then the
//! bench also reports "route arrived → first answer" and how many joins
//! had their first echo after the route answered.
//! IPv6 is always probed from when `docker run` returned (ICMPv6 echo over
//! a second raw socket), after the IPv4 answer: its route time is stamped
//! by the same subscription, so only its reachability figure includes the
//! IPv4 probe's wait.
//!
//! Each join is also traced hop by hop on its way out, from b1's driver's
//! debug lines that carry a `mono_us` stamp (the monotonic clock every
//! process here shares, placed beside the bench's own stamps): address live
//! in the container (the driver's address watch), the announcer decides to
//! announce, its ledger records the intent, gobgpd acknowledges the AddPath;
//! then the route in b2's kernel (the route subscription). The series
//! "address live → route on b2" is the measure of the tail, per
//! family; the joins over 20 ms are broken down by hop. A driver without
//! those lines (an older build) gives no hop series. The reading of those
//! lines is [`super::join_trace`]'s.
//!
//! With `--hold-teardown` every other join's emulated `docker stop` holds
//! its teardown (the interface moved back, DeleteEndpoint, the sandbox
//! deleted) after Leave until both routes are gone from b2. Both hosts are
//! namespaces of one kernel, so that teardown's link moves and namespace
//! deletion take the kernel locks (RTNL) that b2's installer needs for its
//! route delete; two real hosts share no such lock. The held joins report
//! the withdrawal as two real hosts would see it, the others the real
//! order, in the same run under the same load: the withdrawal series
//! (from the stop, and from Leave by step) are reported for each.
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
use super::join_trace::{hop_series, mono_us, DriverLog, Traced, HELD};
use super::measure::{route_events, rss_kib};
use super::stats::{BenchResult, Series};
use crate::engine::ContainerEngine;
use crate::probe::from_route::{self, FromRoute};
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
/// `probe_from_route`, from the moment its route reaches b2: what a client
/// that sends as soon as it learns the route sees (a driver that announced
/// before the container's address was live made the first echoes find no
/// neighbour on b1, and the answer wait for b1's next ARP attempt, about
/// 1 s). The two modes measure different things and are never mixed in one run.
pub fn convergence(
    runs: usize,
    probe_from_route: bool,
    hold_teardown: bool,
    dataplane: &str,
    opts: &Options,
) -> Result<BenchResult> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let load_at_start = super::stats::loadavg();
    let (w, mut e, net) = two_hosts_dual(opts, &["b1", "b2"], dataplane)?;
    let rss_idle = rss_kib(w.hosts[1].driver.pid());
    let c2 = e.start(&w, 1, &net, "c2")?;
    let mut events = route_events(&w, 1)?;
    let mut pinger = Pinger::open(&c2.netns)?;
    let mut pinger6 = Pinger::open6(&c2.netns)?;
    let (mut join, mut route, mut reach, mut withdraw) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut route6, mut reach6, mut withdraw6) = (Vec::new(), Vec::new(), Vec::new());
    let (mut withdraw_held, mut withdraw6_held) = (Vec::new(), Vec::new());
    let subnet = ipnet::IpNet::V4(net.subnets["b1"]);
    let (mut to_answer, mut first_echo_answered) = (Vec::new(), 0usize);
    let (mut dumps_b1, mut dumps_b2) = (Vec::new(), Vec::new());
    let mut b1_log = DriverLog::open(w.hosts[0].driver.log.clone());
    let mut b2_log = DriverLog::open(w.hosts[1].driver.log.clone());
    let mut traced: Vec<Traced> = Vec::new();
    for i in 0..runs {
        let before = (full_dumps(&w, 0)?, full_dumps(&w, 1)?);
        let t0 = Instant::now();
        let mono0 = mono_us();
        let name = format!("c1r{i}");
        let (started, early) = if probe_from_route {
            std::thread::scope(|s| {
                let probe = s.spawn(|| -> Result<FromRoute> {
                    from_route::probe_from_route(
                        &mut events,
                        &mut pinger,
                        subnet,
                        t0,
                        scaled(Duration::from_secs(10)),
                    )
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
            Some(Ok(seen)) if probe_from_route => {
                if seen.route != dst {
                    bail!(
                        "run {i}: the first route in {subnet} was {}, not {dst}",
                        seen.route
                    );
                }
                let (Some(a), Some(took)) = (seen.answer, seen.to_answer()) else {
                    bail!("run {i}: b2's container never reached {a4} after its route arrived");
                };
                route.push(seen.route_at - t0);
                to_answer.push(took);
                if seen.first_echo_answered() {
                    first_echo_answered += 1;
                }
                a.at
            }
            Some(Err(e)) => return Err(e.context(format!("run {i}: probing from the route"))),
            _ => {
                let on_b2 = events.wait(dst, false, t0, Duration::from_secs(10))?;
                route.push(on_b2 - t0);
                pinger
                    .first_reply(a4.into(), PROBE_INTERVAL, scaled(Duration::from_secs(10)))
                    .ok_or_else(|| anyhow!("run {i}: b2's container never reached {a4}"))?
            }
        };
        reach.push(answered - t0);
        let on_b2_6 = events.wait(dst6, false, t0, Duration::from_secs(10))?;
        route6.push(on_b2_6 - t0);
        let at = |t: Instant| mono0 + (t - t0).as_micros() as u64;
        let route_at = at(t0 + route[route.len() - 1]);
        let answered6 = pinger6
            .first_reply(a6.into(), PROBE_INTERVAL, scaled(Duration::from_secs(10)))
            .ok_or_else(|| anyhow!("run {i}: b2's container never reached {a6}"))?;
        reach6.push(answered6 - t0);
        let held = hold_teardown && i % 2 == 1;
        let t1 = Instant::now();
        let (gone, gone6) = if held {
            let mut seen = None;
            e.stop_held(&w, &c1, &mut || {
                let gone = events.wait(dst, true, t1, Duration::from_secs(10))?;
                let gone6 = events.wait(dst6, true, t1, Duration::from_secs(10))?;
                seen = Some((gone, gone6));
                Ok(())
            })?;
            seen.ok_or_else(|| anyhow!("run {i}: the held stop saw no withdrawal"))?
        } else {
            e.stop(&w, &c1)?;
            (
                events.wait(dst, true, t1, Duration::from_secs(10))?,
                events.wait(dst6, true, t1, Duration::from_secs(10))?,
            )
        };
        let (v4, v6) = if held {
            (&mut withdraw_held, &mut withdraw6_held)
        } else {
            (&mut withdraw, &mut withdraw6)
        };
        v4.push(gone - t1);
        v6.push(gone6 - t1);
        let (log1, log2) = (b1_log.read_new()?, b2_log.read_new()?);
        if let Some(t) = Traced::from_log(&log1, dst, route_at, at(on_b2_6)) {
            traced.push(t.b2(&log2, dst).gone(at(gone)).held(held));
        }
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
    // Each data plane is its own entry (macvlan keeps the plain name the
    // committed figures use).
    let name = match dataplane {
        "macvlan" => "convergence".to_string(),
        dp => format!("convergence ipvlan {dp}"),
    };
    let mut r = BenchResult::new(
        &name,
        format!(
            "sudo target/release/harness bench convergence --runs {runs}{}{}{}",
            if probe_from_route {
                " --probe-from-route"
            } else {
                ""
            },
            if hold_teardown {
                " --hold-teardown"
            } else {
                ""
            },
            if dataplane == "macvlan" {
                String::new()
            } else {
                format!(" --dataplane {dataplane}")
            }
        ),
    );
    r.record_load(&load_at_start);
    r.setup.insert(
        "driver binary".into(),
        opts.driver_bin.display().to_string(),
    );
    r.setup.insert("runs".into(), runs.to_string());
    r.setup.insert(
        "network".into(),
        format!("dual stack (10.30.x.0/24 and fd00:31:x::/64 per host, {}); each join has both addresses",
            if dataplane == "macvlan" { "macvlan".to_string() } else { format!("ipvlan {dataplane}") }),
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
        "teardown".into(),
        if hold_teardown {
            "every other join's stop holds its teardown (interface back, DeleteEndpoint, sandbox \
             deleted) after Leave until both routes are gone from b2 (the series ending in \
             '(teardown held)'); the other joins in the real order"
        } else {
            "the real order: Leave, then the teardown at once (on the same kernel as b2)"
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
    if hold_teardown {
        r.series.push(Series::ms(
            format!("route gone from b2 after stop{HELD}"),
            &withdraw_held,
        ));
        r.series.push(Series::ms(
            format!("IPv6 route gone from b2 after stop{HELD}"),
            &withdraw6_held,
        ));
    }
    if probe_from_route {
        r.series.push(Series::ms(
            "route arrived on b2 → first answer (echo every 2 ms from the route's event)",
            &to_answer,
        ));
        r.figures.insert(
            format!("joins whose first echo after the route was answered (of {runs})"),
            first_echo_answered as f64,
        );
    }
    r.figures.insert(
        format!("b2 driver RSS after {runs} joins (KiB)"),
        rss_busy as f64,
    );
    hop_series(&mut r, &traced);
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
