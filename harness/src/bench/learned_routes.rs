//! `harness bench learned-routes`: one host's gobgpd originates N routes;
//! how fast they land in the other host's kernel through gobgpd and our
//! driver, and go again; and how long Docker waits meanwhile for
//! CreateEndpoint+Join on the receiving host (sent straight to its plugin
//! socket, back to back, while the routes are learned).
//!
//! In: the number of routes and rounds, run options. Out: a
//! [`BenchResult`] (install and withdrawal times, CreateEndpoint+Join
//! during the learn, driver memory).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::hosts::two_hosts;
use super::measure::{route_events, rss_kib, tagged_routes};
use super::stats::{ms, BenchResult, LatencyStats, Series};
use crate::topology::{Options, World};

/// How long CreateEndpoint+Join is probed before each learn, without one.
const IDLE_PROBE: Duration = Duration::from_secs(3);

/// /32s in 10.28.0.0/15.
const MAX_ROUTES: usize = 1 << 17;

/// b1's gobgpd originates `routes` /32s (AddPathStream); how fast do they
/// land in b2's kernel through gobgpd and our driver, and go again; `rounds`
/// times. The arrival of the last route is stamped by a netlink route
/// subscription in b2's namespace, not by dumping the table in a loop.
pub fn learned_routes(routes: usize, rounds: usize, opts: &Options) -> Result<BenchResult> {
    use ipvlan_bgp::bgp::gobgp::{Family, Gobgp, GobgpAddr, GobgpApi};
    if routes == 0 || routes > MAX_ROUTES {
        bail!("--routes must be between 1 and {MAX_ROUTES} (inside 10.28.0.0/15)");
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let load_at_start = super::stats::loadavg();
    let (w, _e, _net) = two_hosts(opts, &["b2"])?;
    let rss_before = rss_kib(w.hosts[1].driver.pid());
    let nh = w.hosts[0].addr.addr();
    let first = std::net::Ipv4Addr::new(10, 28, 0, 0);
    let pool: ipnet::IpNet = "10.28.0.0/15".parse()?;
    let api = GobgpAddr::Unix(w.hosts[0].gobgp_api());
    let mut events = route_events(&w, 1)?;
    let net_id = network_id(&w, 1)?;
    let (mut during, mut idle): (Vec<Call>, Vec<Call>) = (Vec::new(), Vec::new());
    let pids = Pids {
        b1_gobgpd: w.hosts[0].gobgpd.pid(),
        b2_gobgpd: w.hosts[1].gobgpd.pid(),
        b2_driver: w.hosts[1].driver.pid(),
    };
    let mut cpu = Cpu::default();
    let (mut sent, mut installed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_after, mut gobgpd_rss, mut rss_gone) = (0, 0, 0);
    for round in 0..rounds {
        // The same calls for a few seconds with no learn: what the machine
        // and the driver give them without one (disk, other load).
        let stop = Arc::new(AtomicBool::new(false));
        let probe = docker_probe(&w, 1, net_id.clone(), 2 * round, stop.clone());
        std::thread::sleep(IDLE_PROBE);
        stop.store(true, Ordering::Relaxed);
        idle.extend(
            probe
                .join()
                .map_err(|_| anyhow!("the idle CreateEndpoint+Join probe panicked"))??,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let probe = docker_probe(&w, 1, net_id.clone(), 2 * round + 1, stop.clone());
        let before = pids.sample();
        let t0 = Instant::now();
        // The runner's flood keeps gobgpd writing during the long stream, so
        // its "too many pings" rule does not cut it (100,000 paths take longer
        // than the ~8 s that rule allows a silent server).
        crate::runner::flood(&w.hosts[0].gobgp_api(), first, routes as u32, nh)?;
        sent.push(t0.elapsed());
        let last = events.wait_many(pool, false, routes, t0, Duration::from_secs(120));
        stop.store(true, Ordering::Relaxed);
        cpu.add(&before, &pids.sample());
        let probed = probe
            .join()
            .map_err(|_| anyhow!("the CreateEndpoint+Join probe panicked"))??;
        let last = last?;
        during.extend(probed);
        installed.push(last - t0);
        let have = tagged_routes(&w, 1)?.len();
        if have < routes {
            bail!("round {round}: the events said {routes} routes, b2's table has {have}");
        }
        rss_after = rss_after.max(rss_kib(w.hosts[1].driver.pid()));
        gobgpd_rss = gobgpd_rss.max(rss_kib(w.hosts[1].gobgpd.pid()));
        let t1 = Instant::now();
        w.rt.block_on(async {
            let mut c = Gobgp::connect(&api, delete_limit(routes)).await?;
            c.delete_family(Family::Ipv4).await?;
            Ok::<_, anyhow::Error>(())
        })?;
        let gone = events.wait_many(pool, true, routes, t1, Duration::from_secs(120))?;
        removed.push(gone - t1);
        rss_gone = rss_kib(w.hosts[1].driver.pid());
        let left = tagged_routes(&w, 1)?.len();
        if left != 0 {
            bail!("round {round}: {left} routes still in b2's table after the withdrawal");
        }
        eprintln!(
            "[bench] learned routes round {}/{rounds}: installed {:.0} ms, removed {:.0} ms",
            round + 1,
            ms(last - t0),
            ms(gone - t1)
        );
    }
    drop(events);
    let phases = answered_phases(&w.hosts[1].driver.log);
    let parts = call_parts(&w.hosts[1].driver.log);
    let took = |v: &[Call]| v.iter().map(|c| c.1).collect::<Vec<Duration>>();
    let (during_calls, idle_calls) = (during, idle);
    let (during, idle) = (took(&during_calls), took(&idle_calls));
    drop(w);
    let mut r = BenchResult::new(
        "learned-routes",
        format!(
            "sudo target/release/harness bench learned-routes --routes {routes} --rounds {rounds}"
        ),
    );
    r.record_load(&load_at_start);
    r.setup.insert(
        "driver binary".into(),
        opts.driver_bin.display().to_string(),
    );
    r.setup.insert("routes".into(), routes.to_string());
    r.setup.insert("rounds".into(), rounds.to_string());
    r.series = vec![
        Series::ms("AddPathStream on b1", &sent),
        Series::ms(format!("all {routes} in b2's kernel"), &installed),
        Series::ms(format!("all {routes} gone from b2's kernel"), &removed),
        Series::ms(
            format!("CreateEndpoint+Join on b2 while it learns {routes} routes"),
            &during,
        ),
        Series::ms(
            "CreateEndpoint+Join on b2, no learn (3 s before each)",
            &idle,
        ),
        Series::new(
            "end-to-end rate",
            "routes/s",
            installed
                .iter()
                .map(|d| routes as f64 / d.as_secs_f64())
                .collect(),
        ),
    ];
    slow_calls(&mut r, &during_calls, &parts);
    for (calls, when) in [
        (&during_calls, "during the learns"),
        (&idle_calls, "no learn"),
    ] {
        let commit: Vec<f64> = calls
            .iter()
            .filter_map(|(ep, _)| parts.get(ep.get(..12)?).map(|p| p.commit))
            .collect();
        r.series.push(Series::new(
            format!("CreateEndpoint+Join on b2, {when}: of it, committing the state (the driver's line)"),
            "ms",
            commit,
        ));
    }
    for (name, samples) in phases {
        r.series.push(Series::new(
            format!("b2 driver, CreateEndpoint and Join each, {name} (its debug line)"),
            "ms",
            samples,
        ));
    }
    cpu.figures(&mut r);
    r.figures
        .insert("b2 driver RSS before (KiB)".into(), rss_before as f64);
    r.figures.insert(
        format!("b2 driver RSS holding {routes} routes (KiB)"),
        rss_after as f64,
    );
    r.figures.insert(
        "b2 driver RSS after they were withdrawn (KiB)".into(),
        rss_gone as f64,
    );
    r.figures.insert(
        format!("b2 gobgpd RSS holding {routes} routes (KiB)"),
        gobgpd_rss as f64,
    );
    let med = |k: usize| r.series[k].stats().map_or(0.0, |s| s.median);
    r.summary = format!(
        "{routes} /32s originated on b1, {rounds} rounds: all in b2's kernel after median {:.0} ms \
         ({:.0} routes/s end to end, both gobgpds included), all gone {:.0} ms after the delete; \
         b2 driver RSS {rss_before} KiB before, {rss_after} KiB holding them, {rss_gone} KiB after they went (b2's gobgpd {gobgpd_rss} KiB); \
         CreateEndpoint+Join on b2 (its plugin socket) while it learned them: {}; \
         the same without a learn (3 s before each round): {}",
        med(1),
        routes as f64 / (med(1) / 1000.0),
        med(2),
        LatencyStats::of(during).map_or("no samples".into(), |s| s.line()),
        LatencyStats::of(idle).map_or("no samples".into(), |s| s.line()),
    );
    r.summary.push_str(&format!("; {}", cpu.line()));
    Ok(r)
}

/// How long gobgpd may take to connect and to delete `routes` paths at
/// once (one DeletePath for the family): 5 s per 10,000 paths, at least 5 s,
/// times `HARNESS_TIME_SCALE`. A deadline, not a figure: a fixed 5 s failed
/// every 100,000-path round on a loaded machine.
fn delete_limit(routes: usize) -> Duration {
    let per = u32::try_from(routes.div_ceil(10_000).max(1)).unwrap_or(u32::MAX);
    crate::util::scaled(Duration::from_secs(5).saturating_mul(per))
}

/// The ID of the network on host `i`, from its driver's state (read only).
fn network_id(w: &World, i: usize) -> Result<String> {
    let state = ipvlan_bgp::store::Store::new(w.hosts[i].dir.join("state"))
        .load()
        .context("read the driver's state")?;
    state
        .networks
        .keys()
        .next()
        .cloned()
        .context("the driver has no network")
}

/// CreateEndpoint+Join, then Leave+DeleteEndpoint, on host `i`'s plugin
/// socket as dockerd sends them, 10 ms apart until `stop`; answers the
/// CreateEndpoint+Join times. Addresses from .200 of the network's /24,
/// which nothing else here takes.
fn docker_probe(
    w: &World,
    i: usize,
    net: String,
    round: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<Vec<Call>>> {
    use crate::engine::emulator::wire;
    let sock: PathBuf = w.hosts[i].socket();
    let run = w.id.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let call = |method: &str, body: serde_json::Value| -> Result<()> {
            let mut bytes = serde_json::to_vec(&body)?;
            bytes.push(b'\n');
            let reply = rt.block_on(ipvlan_bgp::api::client::post(
                &sock,
                &format!("/NetworkDriver.{method}"),
                bytes,
                Duration::from_secs(30),
            ))?;
            match reply.err() {
                Some(e) => bail!("{method}: {e}"),
                None => Ok(()),
            }
        };
        let x = wire::EndpointExtras::default();
        let mut v = Vec::new();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let ep =
                crate::util::docker_id(&[&run, "learn-probe", &round.to_string(), &n.to_string()]);
            let addr = format!("10.30.2.{}/24", 200 + n % 50);
            let t = Instant::now();
            call(
                "CreateEndpoint",
                wire::create_endpoint(&net, &ep, &addr, &x),
            )?;
            call("Join", wire::join(&net, &ep, "/nonexistent", &x))?;
            v.push((ep.clone(), t.elapsed()));
            call("Leave", wire::ids(&net, &ep))?;
            call("DeleteEndpoint", wire::ids(&net, &ep))?;
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(v)
    })
}

/// One probe's CreateEndpoint+Join: the endpoint's ID, the time both took
/// as the caller saw it.
type Call = (String, Duration);

/// The Docker goal of issue 19: CreateEndpoint+Join under 50 ms at p99.
const GOAL_MS: f64 = 50.0;

/// The driver's own account of one endpoint's CreateEndpoint and Join
/// together, from its "answered" lines, in ms.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Parts {
    queued: f64,
    lock_wait: f64,
    run: f64,
    /// Of `run`: committing the state (the journal's write and
    /// `fdatasync`); 0 from a driver that does not log it.
    commit: f64,
    /// Of lock wait and run: runnable with no CPU (the thread's
    /// schedstat); 0 from a driver that does not log it.
    cpu_wait: f64,
}

/// Where the calls during the learns that took over [`GOAL_MS`] spent
/// their time: each call matched by its endpoint ID to the driver's two
/// "answered" lines (the request span names the endpoint's first 12
/// characters); "outside the handler" is the rest of what the caller waited
/// (the socket, HTTP, the Docker thread's runtime before the request
/// reached a blocking thread, and the probe's own thread).
fn slow_calls(r: &mut BenchResult, calls: &[Call], parts: &BTreeMap<String, Parts>) {
    let slow: Vec<(f64, Parts)> = calls
        .iter()
        .filter(|c| ms(c.1) > GOAL_MS)
        .filter_map(|(ep, d)| parts.get(ep.get(..12)?).map(|p| (ms(*d), *p)))
        .collect();
    let over = calls.iter().filter(|c| ms(c.1) > GOAL_MS).count();
    r.figures.insert(
        format!("CreateEndpoint+Join over {GOAL_MS} ms during the learns"),
        over as f64,
    );
    r.figures.insert(
        format!("CreateEndpoint+Join over {GOAL_MS} ms matched to the driver's lines"),
        slow.len() as f64,
    );
    let col = |f: &dyn Fn(&(f64, Parts)) -> f64| slow.iter().map(f).collect::<Vec<f64>>();
    let outside = |c: &(f64, Parts)| (c.0 - c.1.queued - c.1.lock_wait - c.1.run).max(0.0);
    let name = |what: &str| format!("calls over {GOAL_MS} ms during the learns: {what}");
    r.series.extend([
        Series::new(
            name("queued (arrival to a blocking thread)"),
            "ms",
            col(&|c| c.1.queued),
        ),
        Series::new(
            name("waiting for the driver's lock"),
            "ms",
            col(&|c| c.1.lock_wait),
        ),
        Series::new(name("run (the driver's work)"), "ms", col(&|c| c.1.run)),
        Series::new(
            name("of run, committing the state (write + fdatasync)"),
            "ms",
            col(&|c| c.1.commit),
        ),
        Series::new(
            name("of lock wait and run, runnable with no CPU"),
            "ms",
            col(&|c| c.1.cpu_wait),
        ),
        Series::new(name("outside the handler"), "ms", col(&outside)),
    ]);
    r.figures.insert(
        format!("calls over {GOAL_MS} ms where committing the state took over half"),
        slow.iter().filter(|c| c.1.commit > c.0 / 2.0).count() as f64,
    );
    r.figures.insert(
        format!("calls over {GOAL_MS} ms where waiting for a CPU took over half"),
        slow.iter().filter(|c| c.1.cpu_wait > c.0 / 2.0).count() as f64,
    );
    // Which part is the largest, call by call.
    let mut largest = [0usize; 4];
    for c in &slow {
        let v = [c.1.queued, c.1.lock_wait, c.1.run, outside(c)];
        let k = (0..4).fold(0, |k, i| if v[i] > v[k] { i } else { k });
        largest[k] += 1;
    }
    for (k, what) in ["queued", "lock wait", "run", "outside the handler"]
        .iter()
        .enumerate()
    {
        r.figures.insert(
            format!("calls over {GOAL_MS} ms whose largest part is {what}"),
            largest[k] as f64,
        );
    }
}

/// The driver's "answered" lines for CreateEndpoint and Join, summed per
/// endpoint (its first 12 characters, as the request span names it).
fn call_parts(log: &std::path::Path) -> BTreeMap<String, Parts> {
    parse_parts(&std::fs::read_to_string(log).unwrap_or_default())
}

fn parse_parts(text: &str) -> BTreeMap<String, Parts> {
    let mut out: BTreeMap<String, Parts> = BTreeMap::new();
    let field = |line: &str, key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split(|c: char| c.is_whitespace() || c == '}').next())
            // A string field of a span is written quoted.
            .map(|v| v.trim_matches('"').to_string())
    };
    for line in text.lines().filter(|l| {
        l.contains(" answered")
            && (l.contains("NetworkDriver.CreateEndpoint") || l.contains("NetworkDriver.Join"))
    }) {
        let Some(ep) = field(line, "endpoint=") else {
            continue;
        };
        let num = |key: &str| {
            field(line, key)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let p = out.entry(ep).or_default();
        p.queued += num("queued_ms=");
        p.lock_wait += num("lock_wait_ms=");
        p.run += num("run_ms=");
        p.commit += num("commit_ms=");
        p.cpu_wait += num("cpu_wait_ms=").max(0.0);
    }
    out
}

/// The processes whose CPU time the learns cost.
struct Pids {
    b1_gobgpd: Option<u32>,
    b2_gobgpd: Option<u32>,
    b2_driver: Option<u32>,
}

/// CPU ticks (user + system) at one moment: the machine's busy and total
/// ticks (`/proc/stat`), each process's, the b2 driver's by thread name,
/// and this harness's own (the flood, the route events, the probe).
struct Ticks {
    busy: u64,
    total: u64,
    procs: [u64; 4],
    threads: std::collections::BTreeMap<String, u64>,
}

impl Pids {
    fn sample(&self) -> Ticks {
        let own = std::process::id();
        let proc_ticks = |pid: Option<u32>| pid.map_or(0, |p| threads_of(p).values().sum());
        let (busy, total) = machine_ticks();
        Ticks {
            busy,
            total,
            procs: [
                proc_ticks(self.b1_gobgpd),
                proc_ticks(self.b2_gobgpd),
                proc_ticks(self.b2_driver),
                proc_ticks(Some(own)),
            ],
            threads: self.b2_driver.map(threads_of).unwrap_or_default(),
        }
    }
}

/// CPU seconds spent during the learns (from the stream's start to the last
/// route's arrival), summed over the rounds.
#[derive(Default)]
struct Cpu {
    busy: u64,
    total: u64,
    procs: [u64; 4],
    threads: std::collections::BTreeMap<String, u64>,
}

const PROCS: [&str; 4] = ["b1 gobgpd", "b2 gobgpd", "b2 driver", "harness"];

impl Cpu {
    fn add(&mut self, a: &Ticks, b: &Ticks) {
        self.busy += b.busy.saturating_sub(a.busy);
        self.total += b.total.saturating_sub(a.total);
        for i in 0..4 {
            self.procs[i] += b.procs[i].saturating_sub(a.procs[i]);
        }
        for (name, t) in &b.threads {
            let was = a.threads.get(name).copied().unwrap_or(0);
            *self.threads.entry(name.clone()).or_default() += t.saturating_sub(was);
        }
    }

    fn secs(ticks: u64) -> f64 {
        ticks as f64 / clock_ticks()
    }

    fn figures(&self, r: &mut BenchResult) {
        r.figures.insert(
            "machine CPU busy during the learns (%)".into(),
            100.0 * self.busy as f64 / self.total.max(1) as f64,
        );
        for (name, t) in PROCS.iter().zip(self.procs) {
            r.figures
                .insert(format!("{name} CPU during the learns (s)"), Cpu::secs(t));
        }
        for (name, t) in &self.threads {
            r.figures.insert(
                format!("b2 driver thread {name} CPU during the learns (s)"),
                Cpu::secs(*t),
            );
        }
    }

    fn line(&self) -> String {
        let procs: Vec<String> = PROCS
            .iter()
            .zip(self.procs)
            .map(|(n, t)| format!("{n} {:.1} s", Cpu::secs(t)))
            .collect();
        format!(
            "CPU during the learns: machine {:.0}% busy, {}",
            100.0 * self.busy as f64 / self.total.max(1) as f64,
            procs.join(", ")
        )
    }
}

/// The kernel's clock ticks per second.
fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// All CPUs' busy and total ticks (the first line of `/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// User + system ticks of each thread of `pid`, summed by thread name.
fn threads_of(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ... utime stime ...": the name may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        *by_name.entry(name).or_default() += t(11) + t(12);
    }
    by_name
}

/// Where the b2 driver's CreateEndpoint and Join calls spent their time,
/// from its "answered" debug lines (`api/server.rs`): queued (arrival to a
/// blocking thread), waiting for the driver's lock, and the rest; in ms.
fn answered_phases(log: &std::path::Path) -> Vec<(&'static str, Vec<f64>)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let keys = [
        ("queued", "queued_ms="),
        ("lock wait", "lock_wait_ms="),
        ("run", "run_ms="),
    ];
    let mut out: Vec<(&'static str, Vec<f64>)> =
        keys.iter().map(|(n, _)| (*n, Vec::new())).collect();
    for line in text.lines().filter(|l| {
        l.contains("answered")
            && (l.contains("NetworkDriver.CreateEndpoint") || l.contains("NetworkDriver.Join"))
    }) {
        for (i, (_, key)) in keys.iter().enumerate() {
            if let Some(v) = line
                .split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
            {
                out[i].1.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver's "answered" lines as tracing writes them (the span's
    /// endpoint quoted or not): CreateEndpoint and Join of one endpoint add
    /// up; other methods and lines do not count.
    #[test]
    fn a_calls_parts_come_from_the_drivers_lines() {
        let log = "\
2026-12-07T07:00:00.000001Z DEBUG request{method=NetworkDriver.CreateEndpoint network=aaaaaaaaaaaa endpoint=\"0123456789ab\"}: ipvlan_bgp::api::server: answered queued_ms=1.5 lock_wait_ms=0 run_ms=2.25 commit_ms=2 cpu_wait_ms=-1
2026-12-07T07:00:00.000002Z DEBUG request{method=NetworkDriver.Join network=aaaaaaaaaaaa endpoint=0123456789ab}: ipvlan_bgp::api::server: answered queued_ms=0.5 lock_wait_ms=40 run_ms=1.75 commit_ms=1.5 cpu_wait_ms=0.5
2026-12-07T07:00:00.000003Z DEBUG request{method=NetworkDriver.Leave network=aaaaaaaaaaaa endpoint=0123456789ab}: ipvlan_bgp::api::server: answered queued_ms=100 lock_wait_ms=100 run_ms=100
2026-12-07T07:00:00.000004Z DEBUG request{method=NetworkDriver.Join network=aaaaaaaaaaaa endpoint=ffffffffffff}: ipvlan_bgp::api::server: answered queued_ms=7 lock_wait_ms=0 run_ms=1
";
        let p = parse_parts(log);
        assert_eq!(
            p["0123456789ab"],
            Parts {
                queued: 2.0,
                lock_wait: 40.0,
                run: 4.0,
                commit: 3.5,
                cpu_wait: 0.5
            }
        );
        assert_eq!(p.len(), 2);
        let mut r = BenchResult::new("t", String::new());
        let calls = vec![
            ("0123456789abcdef".to_string(), Duration::from_millis(60)),
            ("ffffffffffffffff".to_string(), Duration::from_millis(9)),
        ];
        slow_calls(&mut r, &calls, &p);
        let s = |n: &str| {
            r.series_named(&format!("calls over 50 ms during the learns: {n}"))
                .unwrap()
                .samples
                .clone()
        };
        assert_eq!(s("waiting for the driver's lock"), [40.0]);
        assert_eq!(s("outside the handler"), [14.0]);
        assert_eq!(
            r.figures["calls over 50 ms whose largest part is lock wait"],
            1.0
        );
    }
}
