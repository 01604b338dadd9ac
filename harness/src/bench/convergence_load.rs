//! `harness bench convergence --load`: does convergence stay flat when the
//! serving host is full and another host is busy (issue 24, point 4)?
//!
//! Two worlds of three hosts each (b1 serves, b2 watches, b3 is the
//! third), built side by side on this machine from one scenario, so that
//! both meet the same machine:
//! - **idle**: nothing on the hosts but the measured container;
//! - **loaded**: b1 already holds 1,000 endpoints (emulated `docker
//!   run`s, each announced) and 5,000 learned routes (which
//!   b3's gobgpd originates, as `bench learned-routes` does, and which b1
//!   and b2 both install);
//! - **burst**: the loaded world while b3 starts 50 containers back
//!   to back; the join on b1 begins once [`BURST_LEAD`] of them are up.
//!
//! Every round joins once on each side, the order rotated round by round
//! (idle, loaded, burst; loaded, burst, idle; …). Each join is measured as
//! `bench convergence` measures it: b2's route events (a netlink
//! subscription) stamp the routes' arrival and removal, and b1's driver's
//! `mono_us` debug lines stamp the moment the address was live in the
//! container ([`Traced`]), so "address live → route on b2" is the issue's
//! figure, per family; the withdrawal is timed from the start of the stop
//! (Leave is its first driver call). Out: a [`BenchResult`] with those
//! series per side, the ratio of each loaded side's p99 to the idle p99
//! (the goal: at most 1.2), each side's hops (median and p90, as
//! `bench convergence` traces them), and the machine's load at every round.
//! The sizes are [`LoadSizes`] (the issue's by default).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::hosts::hosts_from;
use super::join_trace::{mono_us, DriverLog, Traced, ARRIVE, HOPS, STEPS};
use super::measure::{poll_until, route_events, tagged_routes, RouteEvents};
use super::route_burst;
use super::stats::{load1, loadavg, BenchResult, SampleStats, Series, MIN_SAMPLES_TO_COMPARE};
use crate::engine::{ContainerEngine, ContainerRt, Emulator, Subnets};
use crate::scenario::NetworkDef;
use crate::topology::{Options, World};

/// How much load the loaded sides carry (the issue's sizes by default).
#[derive(Debug, Clone, Copy)]
pub struct LoadSizes {
    /// Endpoints already on the loaded world's b1 (at most 4,000: its /20).
    pub endpoints: usize,
    /// Routes b3's gobgpd originates into the loaded world (10.28.0.0/15).
    pub learned: u32,
    /// Containers of the burst on b3 (at most 250: its /24).
    pub burst: usize,
}

impl Default for LoadSizes {
    fn default() -> LoadSizes {
        LoadSizes {
            endpoints: 1000,
            learned: 5000,
            burst: 50,
        }
    }
}
/// Burst containers up before the measured join starts.
const BURST_LEAD: usize = 5;
/// The goal: each loaded side's p99 within this many times the idle p99.
const GOAL: f64 = 1.2;

/// b1's /20 holds the 1,000 endpoints and the measured joins.
const SCENARIO: &str = r#"
description = "convergence under load (bench convergence --load)"
underlay6 = "fd00:30::/64"
[driver]
args = ["--accept-pool", "10.30.0.0/16", "--accept-pool", "fd00:31::/32", "--accept-pool", "10.28.0.0/15"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[hosts]]
name = "b3"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.16.0/20", b2 = "10.30.2.0/24", b3 = "10.30.3.0/24" }
subnets6 = { b1 = "fd00:31:1::/64", b2 = "fd00:31:2::/64", b3 = "fd00:31:3::/64" }
"#;

/// The sides, in the order of round 0.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Idle,
    Loaded,
    Burst,
    /// The loaded world while b3's gobgpd originates the burst's routes
    /// alone ([`super::route_burst`]): a burst on another machine as the
    /// fabric sees it, without its containers on this kernel and cores.
    RouteBurst,
}

const SIDES: [Side; 4] = [Side::Idle, Side::Loaded, Side::Burst, Side::RouteBurst];

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Idle => "idle",
            Side::Loaded => "loaded",
            Side::Burst => "loaded + burst",
            Side::RouteBurst => "loaded + the burst's routes",
        }
    }
}

/// Round `r`'s order: [`SIDES`] rotated by `r`.
fn order(r: usize) -> [Side; SIDES.len()] {
    std::array::from_fn(|i| SIDES[(r + i) % SIDES.len()])
}

/// One join, as measured (ms); `traced` is `None` when b1's driver logged
/// no hop line for it.
#[derive(Default)]
struct Samples {
    route: Vec<f64>,
    live4: Vec<f64>,
    live6: Vec<f64>,
    gone4: Vec<f64>,
    gone6: Vec<f64>,
    /// Each traced join's hops ([`HOPS`]), in ms.
    hops: Vec<[f64; 4]>,
    /// Each traced join's first-hop steps ([`STEPS`], `None` where the
    /// driver logged no line), then the rest of the first hop, in ms.
    steps: Vec<([Option<f64>; STEPS.len()], f64)>,
    /// Each traced join's last-hop steps on b2 ([`ARRIVE`]), in ms.
    arrive: Vec<[Option<f64>; ARRIVE.len()]>,
    untraced: usize,
}

/// What watches one world: b2's route events and both drivers' logs.
struct Watch {
    events: RouteEvents,
    log: DriverLog,
    log2: DriverLog,
}

impl Watch {
    fn open(w: &World) -> Result<Watch> {
        Ok(Watch {
            events: route_events(w, 1)?,
            log: DriverLog::open(w.hosts[0].driver.log.clone()),
            log2: DriverLog::open(w.hosts[1].driver.log.clone()),
        })
    }
}

/// One join of a fresh dual-stack container on b1 and its stop: the route
/// on b2 from the start of the run, address live → route on b2 per family,
/// and the withdrawal per family.
fn join_once(
    w: &World,
    e: &mut Emulator,
    net: &NetworkDef,
    watch: &mut Watch,
    name: &str,
    into: &mut Samples,
) -> Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Lines from before this join (the load's set-up, the last round) are not its hops.
    watch.log.read_new()?;
    watch.log2.read_new()?;
    let t0 = Instant::now();
    let mono0 = mono_us();
    let c = e.start(w, 0, net, name)?;
    let (Some(a4), Some(a6)) = (c.address, c.address6) else {
        bail!(
            "{name}: the dual-stack container has {:?} / {:?}",
            c.address,
            c.address6
        );
    };
    let dst4 = ipnet::IpNet::from(std::net::IpAddr::V4(a4));
    let dst6 = ipnet::IpNet::from(std::net::IpAddr::V6(a6));
    let limit = Duration::from_secs(10);
    let on4 = watch.events.wait(dst4, false, t0, limit)?;
    let on6 = watch.events.wait(dst6, false, t0, limit)?;
    let t1 = Instant::now();
    e.stop(w, &c)?;
    let gone4 = watch.events.wait(dst4, true, t1, limit)?;
    let gone6 = watch.events.wait(dst6, true, t1, limit)?;
    let at = |t: Instant| mono0 + (t - t0).as_micros() as u64;
    into.route.push(ms(on4 - t0));
    into.gone4.push(ms(gone4 - t1));
    into.gone6.push(ms(gone6 - t1));
    match Traced::from_log(&watch.log.read_new()?, dst4, at(on4), at(on6)) {
        Some(t) => {
            let t = t.b2(&watch.log2.read_new()?, dst4);
            into.arrive.push(t.arrive_steps());
            into.live4.push(t.live_to_route());
            into.live6.push(t.live_to_route6());
            into.hops.push(t.hops());
            into.steps.push((t.steps(), t.last_step_to_decided()));
        }
        None => into.untraced += 1,
    }
    Ok(())
}

/// Runs `f` while b3 starts `burst` containers back to back (from
/// [`BURST_LEAD`] up on), then stops them and waits until b2 has seen
/// their IPv4 routes go (so the next round starts without them).
fn during_burst(
    burst: usize,
    w: &World,
    e3: &mut Emulator,
    net: &NetworkDef,
    watch: &mut Watch,
    round: usize,
    f: impl FnOnce(&mut Watch) -> Result<()>,
) -> Result<()> {
    let up = AtomicUsize::new(0);
    let (measured, started) = std::thread::scope(|s| {
        let starting = s.spawn(|| -> Result<Vec<ContainerRt>> {
            let mut cs = Vec::with_capacity(burst);
            for k in 0..burst {
                let c = e3.start(w, 2, net, &format!("burst{round}-{k}"));
                // Counted even on failure, so that the wait below ends.
                up.fetch_add(1, Ordering::SeqCst);
                cs.push(c.with_context(|| format!("burst container {k} on b3"))?);
            }
            Ok(cs)
        });
        let lead = poll_until(Duration::from_secs(60), || {
            Ok(up.load(Ordering::SeqCst) >= BURST_LEAD || starting.is_finished())
        });
        let measured = lead.and_then(|_| f(watch));
        let started = starting
            .join()
            .map_err(|_| anyhow!("the burst on b3 panicked"))
            .and_then(|r| r);
        (measured, started)
    });
    let cs = started?;
    let t = Instant::now();
    for r in e3.stop_many(w, &cs) {
        r.context("stop a burst container on b3")?;
    }
    for c in &cs {
        if let Some(a) = c.address {
            let dst = ipnet::IpNet::from(std::net::IpAddr::V4(a));
            watch.events.wait(dst, true, t, Duration::from_secs(30))?;
        }
    }
    measured
}

/// The loaded world's state: `sz.endpoints` containers on b1, `sz.learned`
/// routes from b3's gobgpd, and b1 and b2 holding them (b2 also holds
/// b1's endpoints). Returns the containers (they stay up) and the counts
/// of tagged IPv4 routes on b1 and b2.
fn load(
    sz: LoadSizes,
    w: &World,
    e: &mut Emulator,
    net: &NetworkDef,
) -> Result<(Vec<ContainerRt>, usize, usize)> {
    let endpoints = sz.endpoints;
    let mut held = Vec::with_capacity(endpoints);
    for i in 0..endpoints {
        held.push(
            e.start(w, 0, net, &format!("load{i}"))
                .with_context(|| format!("load endpoint {} of {endpoints} on b1", i + 1))?,
        );
        if (i + 1) % 200 == 0 {
            eprintln!(
                "[bench] convergence --load: {}/{endpoints} endpoints on b1",
                i + 1
            );
        }
    }
    let nh = w.hosts[2].addr.addr();
    crate::runner::flood(
        &w.hosts[2].gobgp_api(),
        std::net::Ipv4Addr::new(10, 28, 0, 0),
        sz.learned,
        nh,
    )?;
    // A dump of a few thousand routes each time: poll gently.
    let count = |host: usize| -> Result<usize> {
        std::thread::sleep(Duration::from_millis(200));
        Ok(tagged_routes(w, host)?.len())
    };
    poll_until(Duration::from_secs(180), || {
        Ok(count(0)? >= sz.learned as usize)
    })
    .context("b1 never installed the learned routes")?;
    poll_until(Duration::from_secs(180), || {
        Ok(count(1)? >= sz.learned as usize + endpoints)
    })
    .context("b2 never installed the learned routes and b1's endpoints")?;
    Ok((held, count(0)?, count(1)?))
}

/// `runs` rounds of one join per side, the order rotated.
pub fn convergence_load(runs: usize, sz: LoadSizes, opts: &Options) -> Result<BenchResult> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(1..=4000).contains(&sz.endpoints) || !(1..=250).contains(&sz.burst) {
        bail!("--endpoints must be 1..=4000 (b1's /20) and --burst 1..=250 (b3's /24)");
    }
    if sz.learned == 0 || sz.learned > route_burst::MAX_LEARNED {
        bail!(
            "--learned must be 1..={} (10.28.0.0/15 below the burst's routes)",
            route_burst::MAX_LEARNED
        );
    }
    let (endpoints, learned, burst) = (sz.endpoints, sz.learned, sz.burst);
    let load_at_start = loadavg();
    let (wa, mut ea, net) = hosts_from(SCENARIO, opts, &["b1", "b2"])?;
    let (wb, mut eb, _) = hosts_from(SCENARIO, opts, &["b1", "b2"])?;
    let mut e3 = Emulator::default();
    e3.create_network(&wb, 2, &net, Subnets::of(&net, "b3"))?;
    let t = Instant::now();
    let (held, on_b1, on_b2) = load(sz, &wb, &mut eb, &net)?;
    eprintln!(
        "[bench] convergence --load: loaded in {:.0} s ({on_b1} tagged IPv4 routes on b1, {on_b2} on b2)",
        t.elapsed().as_secs_f64()
    );
    let (mut watch_a, mut watch_b) = (Watch::open(&wa)?, Watch::open(&wb)?);
    let mut got: [Samples; SIDES.len()] = Default::default();
    let (b3_api, b3_addr) = (wb.hosts[2].gobgp_api(), wb.hosts[2].addr.addr());
    let mut loads = Vec::with_capacity(runs);
    for r in 0..runs {
        loads.push(load1());
        for side in order(r) {
            let k = SIDES.iter().position(|s| *s == side).unwrap_or(0);
            let name = format!("m{r}");
            let into = &mut got[k];
            match side {
                Side::Idle => join_once(&wa, &mut ea, &net, &mut watch_a, &name, into),
                Side::Loaded => join_once(&wb, &mut eb, &net, &mut watch_b, &name, into),
                Side::Burst => during_burst(burst, &wb, &mut e3, &net, &mut watch_b, r, |watch| {
                    join_once(&wb, &mut eb, &net, watch, &format!("{name}b"), into)
                }),
                Side::RouteBurst => {
                    route_burst::during(&b3_api, b3_addr, burst, BURST_LEAD, || {
                        join_once(&wb, &mut eb, &net, &mut watch_b, &format!("{name}r"), into)
                    })
                    .and_then(|((), b)| b.withdraw(&wb, &mut watch_b.events))
                }
            }
            .with_context(|| format!("round {r}, {}", side.name()))?;
        }
        if (r + 1) % 10 == 0 || r + 1 == runs {
            eprintln!("[bench] convergence --load: {}/{runs} rounds", r + 1);
        }
    }
    // The world's cleanup removes the held containers' namespaces with the hosts.
    drop(held);
    drop((watch_a, watch_b));
    drop(wa);
    drop(wb);
    let mut res = BenchResult::new(
        "convergence-load",
        format!(
            "sudo target/release/harness bench convergence --load --runs {runs} --endpoints {endpoints} --learned {learned} --burst {burst}"
        ),
    );
    res.record_load(&load_at_start);
    res.setup.insert(
        "driver binary".into(),
        opts.driver_bin.display().to_string(),
    );
    res.setup.insert("rounds".into(), runs.to_string());
    res.setup.insert(
        "sides".into(),
        format!(
            "idle: a world of three hosts with nothing but the measured container; loaded: a second \
             such world whose b1 holds {endpoints} endpoints and whose b1 and b2 hold {learned} routes \
             originated by b3's gobgpd ({on_b1} and {on_b2} tagged IPv4 routes); loaded + burst: the \
             loaded world while b3 starts {burst} containers back to back, the join beginning once \
             {BURST_LEAD} are up; loaded + the burst's routes: the loaded world while b3's gobgpd \
             originates {burst} host routes one every {} ms (what a burst on another machine sends; \
             no container on this kernel), the join beginning once {BURST_LEAD} are sent. One join \
             per side per round, the order rotated",
            route_burst::PACE.as_millis()
        ),
    );
    res.setup.insert(
        "network".into(),
        "dual stack, macvlan (b1 10.30.16.0/20 and fd00:31:1::/64); each join announces a /32 and a /128"
            .into(),
    );
    res.setup.insert(
        "timing".into(),
        "address live: b1's driver's mono_us debug line; route on b2 and gone: a netlink route \
         subscription in b2's namespace; withdrawal from the start of the stop (Leave first)"
            .into(),
    );
    let mut p99 = |series: &str, pick: fn(&Samples) -> &Vec<f64>| {
        let idle = SampleStats::of(pick(&got[0])).map(|s| s.p99);
        for (k, side) in SIDES.iter().enumerate().skip(1) {
            if let (Some(i), Some(s)) = (idle, SampleStats::of(pick(&got[k])).map(|s| s.p99)) {
                if i > 0.0 {
                    res.figures
                        .insert(format!("p99 {} / p99 idle, {series}", side.name()), s / i);
                }
            }
        }
    };
    p99("address live → route on b2 (IPv4)", |s| &s.live4);
    p99("address live → route on b2 (IPv6)", |s| &s.live6);
    p99("route gone from b2 after the stop (IPv4)", |s| &s.gone4);
    p99("route gone from b2 after the stop (IPv6)", |s| &s.gone6);
    for (k, side) in SIDES.iter().enumerate() {
        let n = side.name();
        let s = &got[k];
        res.series.extend([
            Series::new(
                format!("{n}: address live → route on b2 (IPv4)"),
                "ms",
                s.live4.clone(),
            ),
            Series::new(
                format!("{n}: address live → route on b2 (IPv6)"),
                "ms",
                s.live6.clone(),
            ),
            Series::new(
                format!("{n}: route gone from b2 after the stop (IPv4)"),
                "ms",
                s.gone4.clone(),
            ),
            Series::new(
                format!("{n}: route gone from b2 after the stop (IPv6)"),
                "ms",
                s.gone6.clone(),
            ),
            Series::new(
                format!("{n}: route on b2 from the start of docker run (IPv4)"),
                "ms",
                s.route.clone(),
            ),
        ]);
        res.figures
            .insert(format!("{n}: joins without a hop trace"), s.untraced as f64);
        // Where each side's time goes: the median and p90 of every hop.
        for (h, hop) in HOPS.iter().enumerate() {
            let v: Vec<f64> = s.hops.iter().map(|x| x[h]).collect();
            median_and_p90(&mut res, n, hop, &v);
        }
        // The last hop split into b2's steps.
        for (k, (_, _, step)) in ARRIVE.iter().enumerate() {
            let v: Vec<f64> = s.arrive.iter().filter_map(|a| a[k]).collect();
            median_and_p90(&mut res, n, step, &v);
        }
        // The first hop split into the steps the driver logs, and the rest of it.
        let rest = "step: → the announcer decides (wanted, announcer sync)";
        for (k, step) in STEPS
            .iter()
            .map(|(_, name)| *name)
            .chain([rest])
            .enumerate()
        {
            let v: Vec<f64> = s
                .steps
                .iter()
                .filter_map(|(st, rest)| st.get(k).copied().unwrap_or(Some(*rest)))
                .collect();
            median_and_p90(&mut res, n, step, &v);
        }
    }
    res.series.push(Series::new(
        "load average (1 min) at each round's start",
        "load",
        loads,
    ));
    res.summary = summary(&res, runs, sz);
    Ok(res)
}

/// `side`'s median and p90 of `what` (ms) as figures, when it has samples.
fn median_and_p90(res: &mut BenchResult, side: &str, what: &str, v: &[f64]) {
    if let Some(st) = SampleStats::of(v) {
        res.figures
            .insert(format!("{side}: median of {what} (ms)"), st.median);
        res.figures
            .insert(format!("{side}: p90 of {what} (ms)"), st.p90);
    }
}

/// The p99s side by side, their ratios against the goal, and how the
/// medians compare (inside the spread or not).
fn summary(r: &BenchResult, runs: usize, sz: LoadSizes) -> String {
    let LoadSizes {
        endpoints,
        learned,
        burst,
    } = sz;
    let mut parts = vec![format!(
        "{runs} rounds, one dual-stack join per side each (idle; loaded: {endpoints} endpoints and \
         {learned} learned routes on the serving host; loaded + burst: also {burst} containers \
         starting on a third host; loaded + the burst's routes: only their routes, from a third \
         host's gobgpd); goal: each loaded p99 within {GOAL}x the idle p99"
    )];
    for what in [
        "address live → route on b2 (IPv4)",
        "address live → route on b2 (IPv6)",
        "route gone from b2 after the stop (IPv4)",
        "route gone from b2 after the stop (IPv6)",
    ] {
        let s = |side: Side| r.series_named(&format!("{}: {what}", side.name()));
        let p = |side: Side| {
            s(side)
                .and_then(|x| x.stats())
                .map_or("no samples".to_string(), |st| {
                    format!("median {:.1} p99 {:.1} ms (n {})", st.median, st.p99, st.n)
                })
        };
        let ratio = |side: Side| {
            r.figures
                .get(&format!("p99 {} / p99 idle, {what}", side.name()))
                .map_or("-".to_string(), |v| {
                    format!("{v:.2}x ({})", if *v <= GOAL { "within" } else { "over" })
                })
        };
        // The medians, worded by their spread (p10..p90), as everywhere.
        let cmp = |side: Side| match (s(side), s(Side::Idle)) {
            (Some(a), Some(b)) if a.samples.len().min(b.samples.len()) < MIN_SAMPLES_TO_COMPARE => {
                "too few samples to compare medians"
            }
            (Some(a), Some(b)) if SampleStats::separated(&a.samples, &b.samples) => {
                "median differs from idle beyond the spread"
            }
            (Some(_), Some(_)) => "median: no measurable difference from idle",
            _ => "",
        };
        let mut line = format!("{what}: idle {}", p(Side::Idle));
        for side in &SIDES[1..] {
            line.push_str(&format!(
                "; {} {}, p99 ratio {}, {}",
                side.name(),
                p(*side),
                ratio(*side),
                cmp(*side)
            ));
        }
        parts.push(line);
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every side runs once a round, and each takes each place in turn.
    #[test]
    fn the_order_rotates() {
        let mut first = Vec::new();
        for r in 0..SIDES.len() {
            let o = order(r);
            for s in SIDES {
                assert_eq!(o.iter().filter(|x| **x == s).count(), 1, "round {r}");
            }
            first.push(o[0]);
        }
        assert_eq!(first, SIDES);
        assert_eq!(order(SIDES.len()), order(0));
    }
}
