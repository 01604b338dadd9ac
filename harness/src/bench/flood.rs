//! `harness bench flood`: a peer leaks a full table outside every pool; the
//! receiving driver's memory, log lines and Docker call latency meanwhile.
//!
//! In: the number of paths, run options. Out: a [`BenchResult`] (RSS,
//! log lines, CreateEndpoint/Join latency during the flood).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::hosts::two_hosts;
use super::measure::rss_kib;
use super::stats::{BenchResult, LatencyStats, Series};
use crate::engine::ContainerEngine;
use crate::topology::{Options, World};
use crate::util::eventually;

/// What `harness bench flood` measured (its figures go into the
/// [`BenchResult`]; kept as one struct for the summary line).
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
pub fn flood(paths: u32, opts: &Options) -> Result<BenchResult> {
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
        get_capabilities: LatencyStats::of(caps.clone()),
        container_start: LatencyStats::of(starts.clone()),
        container_stop: LatencyStats::of(stops.clone()),
    };
    drop(w);
    let fmt = |s: &Option<LatencyStats>| s.as_ref().map_or("no samples".into(), LatencyStats::line);
    let mut r = BenchResult::new(
        "flood",
        format!("sudo target/release/harness bench flood --paths {paths}"),
    );
    r.setup.insert("paths".into(), paths.to_string());
    r.series = vec![
        Series::ms("GetCapabilities during the flood", &caps),
        Series::ms("container start during the flood", &starts),
        Series::ms("container stop during the flood", &stops),
    ];
    for (k, v) in [
        ("outside-pools rejections counted", report.rejected as f64),
        (
            "seconds until all were rejected",
            report.seconds_to_reject_all,
        ),
        ("seconds to send", report.seconds_to_send),
        (
            "driver RSS before (KiB)",
            report.driver_rss_kib_before as f64,
        ),
        ("driver RSS after (KiB)", report.driver_rss_kib_after as f64),
        ("driver RSS peak (KiB)", report.driver_rss_kib_peak as f64),
        ("gobgpd RSS after (KiB)", report.gobgpd_rss_kib_after as f64),
        ("driver log lines during the flood", report.log_lines as f64),
        (
            "driver log lines naming outside-pools",
            report.log_lines_outside_pools as f64,
        ),
    ] {
        r.figures.insert(k.into(), v);
    }
    r.summary = format!(
        "{paths} /32s outside every pool from b1 (sent in {:.1} s); b2's driver counted {} outside-pools rejections \
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
    Ok(r)
}
