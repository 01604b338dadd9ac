//! `harness bench docker-run`: what our driver costs a `docker run`.
//!
//! One host, a real dockerd, two networks on the same parent: ours
//! (`-d ipvlan-bgp -o dataplane=macvlan`, or ipvlan where the kernel has it)
//! and Docker's built-in `macvlan`. `docker run --rm --network X busybox true`
//! alternates between them; medians and their ratio are printed, so machine
//! noise hits both sides alike.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::dockerd::{Dockerd, IMAGE};
use crate::engine::Engine;
use crate::scenario::Scenario;
use crate::util::{eventually, scaled};
use crate::world::{Options, World};

const SCENARIO: &str = r#"
description = "docker run benchmark host"
[bgp]
mode = "none"
[[hosts]]
name = "b1"
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn docker_run(runs: usize, opts: &Options) -> Result<String> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let s = Scenario::parse(SCENARIO, std::path::Path::new("bench-docker-run.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut d = Dockerd::default();
    d.setup(&w)?;
    let ipvlan = crate::check::detect().ipvlan.is_ok();
    let ours_opts: &[&str] = if ipvlan {
        &[]
    } else {
        &["-o", "dataplane=macvlan"]
    };
    let mut create = vec![
        "network",
        "create",
        "-d",
        "ipvlan-bgp",
        "-o",
        "parent=eth1",
        "--subnet",
        "10.14.1.0/24",
        "ours",
    ];
    create.extend_from_slice(ours_opts);
    d.docker(0, &create)?;
    d.docker(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=eth1",
            "--subnet",
            "10.14.2.0/24",
            "builtin",
        ],
    )?;
    // Warm up both paths once (image layers, plugin activation).
    for net in ["ours", "builtin"] {
        d.docker(0, &["run", "--rm", "--network", net, IMAGE, "true"])?;
    }
    let mut ours = Vec::new();
    let mut builtin = Vec::new();
    for i in 0..runs {
        // Alternate which goes first, so drift favours neither.
        let order = if i % 2 == 0 {
            ["ours", "builtin"]
        } else {
            ["builtin", "ours"]
        };
        for net in order {
            let t = Instant::now();
            d.docker(0, &["run", "--rm", "--network", net, IMAGE, "true"])?;
            let e = t.elapsed();
            if net == "ours" {
                ours.push(e)
            } else {
                builtin.push(e)
            }
        }
        eprintln!(
            "[bench] run {}/{runs}: ours {:.0} ms, built-in macvlan {:.0} ms",
            i + 1,
            ms(*ours.last().unwrap_or(&Duration::ZERO)),
            ms(*builtin.last().unwrap_or(&Duration::ZERO))
        );
    }
    let _ = d.docker(0, &["network", "rm", "ours", "builtin"]);
    let (mo, mb) = (median(ours), median(builtin));
    drop(w);
    Ok(format!(
        "docker run --rm ({runs} runs each, alternating, dockerd {}): ipvlan-bgp ({}) median {:.0} ms, built-in macvlan median {:.0} ms, ratio {:.3} ({:+.1}%)",
        crate::check::detect().dockerd.clone().unwrap_or_default(),
        if ipvlan { "ipvlan l3" } else { "macvlan" },
        ms(mo),
        ms(mb),
        mo.as_secs_f64() / mb.as_secs_f64(),
        (mo.as_secs_f64() / mb.as_secs_f64() - 1.0) * 100.0
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const TWO_HOSTS: &str = r#"
description = "convergence benchmark"
[driver]
args = ["--accept-pool", "10.30.0.0/16"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
"#;

/// Two hosts over iBGP with the network created on `on`, sessions up.
fn two_hosts(
    opts: &Options,
    on: &[&str],
) -> Result<(World, crate::engine::Emulator, crate::scenario::NetworkDef)> {
    let s = Scenario::parse(TWO_HOSTS, std::path::Path::new("bench-two-hosts.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut e = crate::engine::Emulator::default();
    let net = s.networks[0].clone();
    for h in on {
        e.create_network(&w, w.host_index(h)?, &net, net.subnets[*h])?;
    }
    poll_until(Duration::from_secs(60), || {
        Ok((0..2).all(|i| {
            w.bgp_sessions(i)
                .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                .unwrap_or(false)
        }))
    })?;
    Ok((w, e, net))
}

/// Resident memory of a process we started, in KiB.
fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn tagged_routes(w: &World, host: usize) -> Result<Vec<ipvlan_bgp::kernel::Route>> {
    let mut k = ipvlan_bgp::kernel::Kernel::open_in_netns(&w.hosts[host].ns.path())?;
    Ok(k.routes(
        ipvlan_bgp::kernel::Family::V4,
        Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
    )?)
}

/// Polls `f` every 0.5 ms (the bench measures latency) until it says
/// true, for at most `deadline` scaled; an error from `f` ends the wait.
fn poll_until(deadline: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let (reached, took) = eventually(scaled(deadline), Duration::from_micros(500), || match f() {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Err("not reached".to_string()),
        Err(e) => Ok(Err(e)),
    })
    .map_err(|e| anyhow!(e))?;
    reached.map(|()| took)
}

/// Two hosts over iBGP: a container joins on b1, how long until b2 has its
/// route and until b2's container reaches it; and how long the withdrawal
/// takes after it leaves. Also the drivers' memory.
pub fn convergence(runs: usize, opts: &Options) -> Result<String> {
    use crate::probe::{ping_pairs, Member};
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (w, mut e, net) = two_hosts(opts, &["b1", "b2"])?;
    let rss_idle = rss_kib(w.hosts[1].driver.pid());
    let c2 = e.start(&w, 1, &net, "c2")?;
    let from = Member {
        label: "c2".into(),
        netns: c2.netns.clone(),
        addr: c2.address,
    };
    let (mut route, mut reach, mut withdraw, mut join) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t0 = Instant::now();
        let c1 = e.start(&w, 0, &net, &format!("c1r{i}"))?;
        join.push(t0.elapsed());
        let dst = ipnet::IpNet::V4(ipnet::Ipv4Net::new(c1.address, 32)?);
        poll_until(Duration::from_secs(10), || {
            Ok(tagged_routes(&w, 1)?.iter().any(|r| r.dst == dst))
        })?;
        route.push(t0.elapsed());
        let to = Member {
            label: "c1".into(),
            netns: c1.netns.clone(),
            addr: c1.address,
        };
        poll_until(Duration::from_secs(10), || {
            Ok(ping_pairs(&[(from.clone(), to.clone())], Duration::from_millis(50))?[0])
        })?;
        reach.push(t0.elapsed());
        let t1 = Instant::now();
        e.stop(&w, &c1)?;
        poll_until(Duration::from_secs(10), || {
            Ok(!tagged_routes(&w, 1)?.iter().any(|r| r.dst == dst))
        })?;
        withdraw.push(t1.elapsed());
    }
    let rss_busy = rss_kib(w.hosts[1].driver.pid());
    e.stop(&w, &c2)?;
    let out = format!(
        "convergence ({runs} runs, emulated docker run on b1, iBGP to b2; times from the start of the run): \
         container started (CreateEndpoint..OperInfo, sandbox set up) median {:.1} ms; route on b2 median {:.1} ms; \
         b2's container reaches it median {:.1} ms; route gone from b2, counted from the start of the stop (Revoke, Leave, ...), median {:.1} ms; \
         driver RSS {} KiB idle, {} KiB after the runs",
        ms(median(join)),
        ms(median(route)),
        ms(median(reach)),
        ms(median(withdraw)),
        rss_idle,
        rss_busy
    );
    drop(w);
    Ok(out)
}

/// b1's gobgpd originates `routes` /32s (AddPathStream); how fast do they
/// land in b2's kernel through gobgpd and our driver, and go again.
pub fn learned_routes(routes: usize, opts: &Options) -> Result<String> {
    use ipvlan_bgp::bgp::gobgp::{apipb, connect, family_v4, local_path, GobgpAddr};
    if routes == 0 || routes > 60_000 {
        bail!("--routes must be between 1 and 60000 (inside 10.30.0.0/16)");
    }
    let (w, _e, _net) = two_hosts(opts, &["b2"])?;
    let rss_before = rss_kib(w.hosts[1].driver.pid());
    let nh = std::net::IpAddr::V4(w.hosts[0].addr.addr());
    let base = u32::from(std::net::Ipv4Addr::new(10, 30, 8, 0));
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
        let mut c = connect(&api, Duration::from_secs(5)).await?;
        let msgs: Vec<apipb::AddPathStreamRequest> = paths
            .chunks(1000)
            .map(|ch| apipb::AddPathStreamRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                paths: ch.to_vec(),
            })
            .collect();
        c.add_path_stream(tokio_stream::iter(msgs)).await?;
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
    drop(w);
    Ok(format!(
        "learned routes: {routes} /32s originated on b1 (AddPathStream took {:.0} ms), all in b2's kernel {:.0} ms after the first \
         was sent ({:.0} routes/s end to end, both gobgpds included); all gone from b2's kernel {:.0} ms after the delete; \
         b2 driver RSS {rss_before} KiB before, {rss_after} KiB with them (b2's gobgpd: {gobgpd_rss} KiB)",
        ms(sent),
        ms(installed),
        routes as f64 / installed.as_secs_f64(),
        ms(removed),
    ))
}

/// Latency figures of one kind of call, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyStats {
    pub n: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    pub fn of(mut v: Vec<Duration>) -> Option<LatencyStats> {
        if v.is_empty() {
            return None;
        }
        v.sort();
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let q = |q: f64| ms(v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
        Some(LatencyStats {
            n: v.len(),
            min_ms: ms(v[0]),
            median_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: ms(v[v.len() - 1]),
        })
    }

    fn line(&self) -> String {
        format!(
            "n {} min {:.1} median {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            self.n, self.min_ms, self.median_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// What `harness bench flood` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodReport {
    pub paths: u32,
    /// `bgp.rejected.outside-pools` on the receiving driver at the end.
    pub rejected: u64,
    /// From the first path sent until the receiving driver counted them all.
    pub seconds_to_reject_all: f64,
    pub seconds_to_send: f64,
    pub driver_rss_kib_before: u64,
    pub driver_rss_kib_after: u64,
    /// Peak resident memory of the receiving driver (VmHWM).
    pub driver_rss_kib_peak: u64,
    pub gobgpd_rss_kib_after: u64,
    /// Lines the receiving driver logged during the flood, and those naming the reason.
    pub log_lines: usize,
    pub log_lines_outside_pools: usize,
    /// GetCapabilities over the plugin socket, back to back, during the flood.
    pub get_capabilities: Option<LatencyStats>,
    /// Emulated `docker run` (CreateEndpoint, Join, sandbox set-up, ProgramExternalConnectivity, OperInfo).
    pub container_start: Option<LatencyStats>,
    /// Emulated `docker stop` (Revoke, Leave, move back, DeleteEndpoint).
    pub container_stop: Option<LatencyStats>,
}

fn status_u64(w: &World, host: usize, pointer: &str) -> Result<u64> {
    Ok(w.driver_status(host)?
        .pointer(pointer)
        .and_then(|v| v.as_u64())
        .unwrap_or(0))
}

fn kib_field(pid: Option<u32>, field: &str) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn lines_since(log: &std::path::Path, offset: u64) -> Result<(usize, usize)> {
    use std::io::{BufRead, Seek};
    let mut f = std::fs::File::open(log)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let (mut all, mut reason) = (0, 0);
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line?;
        all += 1;
        if line.windows(13).any(|w| w == b"outside-pools") {
            reason += 1;
        }
    }
    Ok((all, reason))
}

/// b1's gobgpd originates `paths` /32s from 100.64.0.0 (outside every pool);
/// b2's driver must refuse them all. Measures b2's driver memory, its log
/// lines, and Docker calls to it while the paths arrive.
pub fn flood(paths: u32, opts: &Options) -> Result<(String, FloodReport)> {
    if paths == 0 || paths > 1 << 22 {
        bail!("--paths must be between 1 and 4194304 (100.64.0.0/10)");
    }
    let (w, mut e, net) = two_hosts(opts, &["b2"])?;
    let driver_pid = w.hosts[1].driver.pid();
    let log = w.hosts[1].driver.log.clone();
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let rss_before = rss_kib(driver_pid);
    let base = status_u64(&w, 1, "/bgp/rejected/outside-pools")?;

    // Back-to-back GetCapabilities on its own thread and runtime.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sock = w.hosts[1].socket();
    let stop2 = stop.clone();
    let caps = std::thread::spawn(move || -> Result<Vec<Duration>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut v = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            let r = rt.block_on(ipvlan_bgp::api::client::post(
                &sock,
                "/NetworkDriver.GetCapabilities",
                Vec::new(),
                Duration::from_secs(30),
            ))?;
            if r.status != 200 {
                bail!("GetCapabilities answered {}", r.status);
            }
            v.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(v)
    });

    let api = w.hosts[0].gobgp_api();
    let nh = w.hosts[0].addr.addr();
    let t0 = Instant::now();
    let mut sender = Some(std::thread::spawn(move || {
        crate::runner::flood(&api, std::net::Ipv4Addr::new(100, 64, 0, 0), paths, nh)
    }));
    // Generous: gobgpd to gobgpd carries some 5-10k paths/s here.
    let deadline = Duration::from_secs(120) + Duration::from_millis(paths as u64);
    let (mut starts, mut stops) = (Vec::new(), Vec::new());
    let mut sent = None;
    let mut rejected = 0;
    let mut i = 0u64;
    // Each round also starts and stops one emulated container on the
    // receiving host: the flood must not starve Docker's requests.
    let mut round = || -> Result<Option<Duration>> {
        if let Some(done) = sender.take_if(|s| s.is_finished()) {
            let d = done
                .join()
                .map_err(|_| anyhow!("the flood thread panicked"))??;
            sent = Some(d);
            eprintln!(
                "[bench] b1's gobgpd accepted {paths} paths in {:.1} s",
                d.as_secs_f64()
            );
        }
        rejected = status_u64(&w, 1, "/bgp/rejected/outside-pools")?.saturating_sub(base);
        if rejected >= paths as u64 && sent.is_some() {
            return Ok(Some(t0.elapsed()));
        }
        i += 1;
        let t = Instant::now();
        let c = e.start(&w, 1, &net, &format!("f{i}"))?;
        starts.push(t.elapsed());
        let t = Instant::now();
        e.stop(&w, &c)?;
        stops.push(t.elapsed());
        Ok(None)
    };
    let outcome = match eventually(
        opts.scale(deadline),
        Duration::from_millis(50),
        || match round() {
            Ok(Some(took)) => Ok(Ok(took)),
            Ok(None) => Err(String::new()),
            Err(e) => Ok(Err(e)),
        },
    ) {
        Ok((done, _)) => done,
        Err(_) => Err(anyhow!(
            "after {:?}, b2's driver has counted {rejected} of {paths} rejections",
            t0.elapsed()
        )),
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let caps = caps
        .join()
        .map_err(|_| anyhow::anyhow!("the GetCapabilities thread panicked"))??;
    let took = outcome?;
    let (log_lines, log_reason) = lines_since(&log, log_start)?;
    let report = FloodReport {
        paths,
        rejected,
        seconds_to_reject_all: took.as_secs_f64(),
        seconds_to_send: sent.unwrap_or_default().as_secs_f64(),
        driver_rss_kib_before: rss_before,
        driver_rss_kib_after: rss_kib(driver_pid),
        driver_rss_kib_peak: kib_field(driver_pid, "VmHWM:"),
        gobgpd_rss_kib_after: rss_kib(w.hosts[1].gobgpd.pid()),
        log_lines,
        log_lines_outside_pools: log_reason,
        get_capabilities: LatencyStats::of(caps),
        container_start: LatencyStats::of(starts),
        container_stop: LatencyStats::of(stops),
    };
    drop(w);
    let fmt = |s: &Option<LatencyStats>| s.as_ref().map_or("no samples".into(), LatencyStats::line);
    let line = format!(
        "flood: {paths} /32s outside every pool from b1 (sent in {:.1} s); b2's driver counted {} outside-pools rejections \
         {:.1} s after the first was sent; b2 driver RSS {} KiB before, {} KiB after, peak {} KiB (b2's gobgpd {} KiB); \
         b2's driver logged {} lines during the flood, {} naming outside-pools; during the flood: GetCapabilities {}; \
         container start {}; container stop {}",
        report.seconds_to_send,
        report.rejected,
        report.seconds_to_reject_all,
        report.driver_rss_kib_before,
        report.driver_rss_kib_after,
        report.driver_rss_kib_peak,
        report.gobgpd_rss_kib_after,
        report.log_lines,
        report.log_lines_outside_pools,
        fmt(&report.get_capabilities),
        fmt(&report.container_start),
        fmt(&report.container_stop),
    );
    Ok((line, report))
}
