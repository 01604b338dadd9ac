//! `harness bench fill`: does a `docker run` cost more as the host fills up?
//!
//! Two hosts over iBGP; b1 starts containers one by one (the emulated
//! `docker run`: CreateEndpoint, Join, the sandbox set up as libnetwork
//! does, ProgramExternalConnectivity), up to N, none stopped, while b2
//! learns every announcement. Each run is timed. Out: one series per point
//! on the x axis (10, 100, 1,000 and N endpoints: the 20 runs around it),
//! the state directory's size at each point, the driver's resident memory
//! idle and with N endpoints, and how long b2 took to hold all N routes.
//! At each point it also times the driver alone, without the sandbox work
//! around it (a namespace and a moved link per run, whose cost grows with
//! the number of namespaces on the machine): [`PROBES`] endpoints of its own,
//! each CreateEndpoint+Join then Leave+DeleteEndpoint straight on the
//! plugin socket, so the host keeps its size.
//! `--json OUT` writes the figures as a [`BenchResult`].
//!
//! In: the number of containers, run options. Owns the filled host.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::hosts::sessions_up;
use super::measure::{poll_until, rss_kib, tagged_routes};
use super::stats::{ms, BenchResult, SampleStats, Series};
use crate::engine::{ContainerEngine, Emulator, Engine};
use crate::scenario::Scenario;
use crate::topology::{Options, World};

/// b1's subnet holds 4,094 containers.
const SCENARIO: &str = r#"
description = "fill benchmark: one host fills up, its peer learns"
[driver]
args = ["--accept-pool", "10.32.0.0/16"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.32.0.0/20", b2 = "10.32.16.0/24" }
"#;

/// Runs on each side of a point that count towards it.
const AROUND: usize = 10;
/// Driver-only probes at each point.
const PROBES: usize = 20;

/// Driver-only timings at one point: CreateEndpoint+Join, Leave+DeleteEndpoint.
#[derive(Default)]
struct Probe {
    join: Vec<Duration>,
    leave: Vec<Duration>,
    /// CPU time of every driver thread over the probes, per probe (all four
    /// calls and what the BGP side does with them), in ms: apart from the
    /// wait for a core on a busy machine.
    cpu_ms: f64,
}

/// CPU time of all threads of `pid` so far (`/proc/PID/task/*/schedstat`), in ns.
fn cpu_ns(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// [`PROBES`] endpoints created, joined, left and deleted on b1's network
/// straight through the plugin socket, as dockerd sends them; addresses
/// from the top of the /20, which the emulator's IPAM (from the bottom)
/// never reaches.
fn probe(w: &World, point: usize) -> Result<Probe> {
    use crate::engine::emulator::wire;
    let state_dir = w.hosts[0].dir.join("state");
    // Read-only: loading never writes the driver's files.
    let state = ipvlan_bgp::store::Store::new(&state_dir)
        .load()
        .context("read b1's driver state")?;
    let net = state
        .networks
        .keys()
        .next()
        .cloned()
        .context("b1's driver has no network")?;
    let sock = w.hosts[0].socket();
    let call = |method: &str, body: serde_json::Value| -> Result<()> {
        let mut bytes = serde_json::to_vec(&body)?;
        bytes.push(b'\n');
        let path = format!("/NetworkDriver.{method}");
        let reply = w.rt.block_on(ipvlan_bgp::api::client::post(
            &sock,
            &path,
            bytes,
            Duration::from_secs(30),
        ))?;
        if let Some(e) = reply.err() {
            bail!("{method} on b1: {e}");
        }
        Ok(())
    };
    let x = wire::EndpointExtras::default();
    let mut out = Probe::default();
    let pid = w.hosts[0].driver.pid();
    // Let the BGP side finish what the last container started.
    std::thread::sleep(Duration::from_millis(200));
    let cpu0 = cpu_ns(pid);
    for i in 0..PROBES {
        let ep = crate::util::docker_id(&[&w.id, "fill-probe", &point.to_string(), &i.to_string()]);
        let addr = format!("10.32.15.{}/20", 200 + i);
        let t = Instant::now();
        call(
            "CreateEndpoint",
            wire::create_endpoint(&net, &ep, &addr, &x),
        )?;
        call("Join", wire::join(&net, &ep, "/nonexistent", &x))?;
        out.join.push(t.elapsed());
        let t = Instant::now();
        call("Leave", wire::ids(&net, &ep))?;
        call("DeleteEndpoint", wire::ids(&net, &ep))?;
        out.leave.push(t.elapsed());
    }
    std::thread::sleep(Duration::from_millis(200));
    out.cpu_ms = (cpu_ns(pid).saturating_sub(cpu0)) as f64 / 1e6 / PROBES as f64;
    Ok(out)
}

/// The x axis: endpoints on the host when the run started.
fn points(n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = [10, 100, 1000].into_iter().filter(|x| *x <= n).collect();
    if !p.contains(&n) {
        p.push(n);
    }
    p
}

/// The runs around point `x`: run `i` (from 0) started with `i` endpoints on
/// the host; 2 × [`AROUND`] of them, moved inwards at the ends.
fn window(x: usize, n: usize) -> std::ops::Range<usize> {
    let end = (x + AROUND).min(n);
    let start = end.saturating_sub(2 * AROUND);
    start..end
}

/// Bytes of the state snapshot and of its journal.
fn state_bytes(dir: &Path) -> (u64, u64) {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    (
        len(ipvlan_bgp::store::STATE_FILE),
        len(ipvlan_bgp::store::JOURNAL_FILE),
    )
}

pub fn fill(containers: usize, opts: &Options) -> Result<BenchResult> {
    if !(10..=4000).contains(&containers) {
        bail!("--containers must be between 10 and 4000 (b1's subnet is a /20)");
    }
    let s = Scenario::parse(SCENARIO, Path::new("bench-fill.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut e = Emulator::default();
    let net = s.networks[0].clone();
    for h in ["b1", "b2"] {
        e.create_network(&w, w.host_index(h)?, &net, net.subnets[h].into())?;
    }
    sessions_up(&w)?;
    let state_dir = w.hosts[0].dir.join("state");
    let pid = w.hosts[0].driver.pid();
    let rss_idle = rss_kib(pid);
    let points = points(containers);
    let mut runs: Vec<Duration> = Vec::with_capacity(containers);
    let mut sizes: Vec<(usize, u64, u64)> = Vec::new();
    let mut probes: Vec<(usize, Probe)> = Vec::new();
    let mut started = Vec::with_capacity(containers);
    let t_all = Instant::now();
    for i in 0..containers {
        let t = Instant::now();
        let c = e
            .start(&w, 0, &net, &format!("f{i}"))
            .with_context(|| format!("start container {} of {containers}", i + 1))?;
        runs.push(t.elapsed());
        started.push(c);
        let have = i + 1;
        if points.contains(&have) {
            let (snap, journal) = state_bytes(&state_dir);
            sizes.push((have, snap, journal));
            probes.push((have, probe(&w, have)?));
        }
        if have % 100 == 0 {
            eprintln!(
                "[bench] {have}/{containers} containers, last run {:.1} ms",
                ms(runs[i])
            );
        }
    }
    let filled = t_all.elapsed();
    // b2 learns every announcement (all of b1's containers are joined).
    let t = Instant::now();
    poll_until(Duration::from_secs(120), || {
        Ok(tagged_routes(&w, 1)?.len() >= containers)
    })
    .context("b2 never learned all of b1's containers")?;
    let learned_after = t.elapsed();
    let rss_full = rss_kib(pid);
    let gobgpd_rss = rss_kib(w.hosts[0].gobgpd.pid());

    let mut series = Vec::new();
    let mut lines = Vec::new();
    let mut figures = std::collections::BTreeMap::new();
    for x in &points {
        let r = window(*x, containers);
        let samples: Vec<f64> = runs[r.clone()].iter().map(|d| ms(*d)).collect();
        let st = SampleStats::of(&samples).context("no samples")?;
        let (snap, journal) = sizes
            .iter()
            .find(|s| s.0 == *x)
            .map(|s| (s.1, s.2))
            .unwrap_or_default();
        lines.push(format!(
            "at {x} endpoints (runs {}..{}): n {} min {:.1} median {:.1} p90 {:.1} max {:.1} ms; state.json {snap} B + journal {journal} B",
            r.start + 1,
            r.end,
            st.n,
            st.min,
            st.median,
            st.p90,
            st.max
        ));
        if let Some((_, p)) = probes.iter().find(|p| p.0 == *x) {
            lines.push(format!(
                "driver CPU per probe (4 calls) at {x} endpoints: {:.2} ms",
                p.cpu_ms
            ));
            figures.insert(format!("driver_cpu_ms_per_probe_at_{x}"), p.cpu_ms);
            for (what, v) in [
                ("CreateEndpoint+Join", &p.join),
                ("Leave+DeleteEndpoint", &p.leave),
            ] {
                let samples: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
                if let Some(st) = SampleStats::of(&samples) {
                    lines.push(format!(
                        "driver alone at {x} endpoints, {what}: n {} min {:.2} median {:.2} p90 {:.2} max {:.2} ms",
                        st.n, st.min, st.median, st.p90, st.max
                    ));
                }
                series.push(Series {
                    name: format!("driver alone: {what}"),
                    x: Some(*x as f64),
                    x_label: Some("endpoints on the host".into()),
                    unit: "ms".into(),
                    samples,
                });
            }
        }
        figures.insert(format!("state_json_bytes_at_{x}"), snap as f64);
        figures.insert(format!("state_journal_bytes_at_{x}"), journal as f64);
        series.push(Series {
            name: "docker run (emulated)".into(),
            x: Some(*x as f64),
            x_label: Some("endpoints on the host".into()),
            unit: "ms".into(),
            samples,
        });
    }
    series.push(Series {
        name: "every docker run (emulated), in order".into(),
        x: None,
        x_label: None,
        unit: "ms".into(),
        samples: runs.iter().map(|d| ms(*d)).collect(),
    });
    figures.insert("driver_rss_idle_kib".into(), rss_idle as f64);
    figures.insert(format!("driver_rss_at_{containers}_kib"), rss_full as f64);
    figures.insert("gobgpd_rss_b1_kib".into(), gobgpd_rss as f64);
    figures.insert("fill_total_ms".into(), ms(filled));
    figures.insert("peer_learned_all_after_ms".into(), ms(learned_after));
    let summary = format!(
        "fill: {containers} containers started one by one on b1 (emulated docker run, iBGP to b2) in {:.1} s; {}; \
         b1 driver RSS {rss_idle} KiB idle, {rss_full} KiB with {containers} endpoints (b1's gobgpd {gobgpd_rss} KiB); \
         b2 held all {containers} routes {:.0} ms after the last run",
        filled.as_secs_f64(),
        lines.join("; "),
        ms(learned_after)
    );
    let mut setup = std::collections::BTreeMap::new();
    setup.insert("containers".into(), containers.to_string());
    setup.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    setup.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    );
    setup.insert("engine".into(), Engine::Emulator.name().into());
    setup.insert(
        "window".into(),
        format!("{} runs around each point", 2 * AROUND),
    );
    let mut result = BenchResult::new(
        "fill",
        format!("sudo target/release/harness bench fill --containers {containers}"),
    );
    result.setup.extend(setup);
    result.summary = summary;
    result.series = series;
    result.figures = figures;
    // The world's cleanup removes the containers' namespaces with the hosts.
    drop(started);
    drop(w);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_windows() {
        assert_eq!(points(1000), vec![10, 100, 1000]);
        assert_eq!(points(500), vec![10, 100, 500]);
        assert_eq!(window(10, 1000), 0..20);
        assert_eq!(window(100, 1000), 90..110);
        assert_eq!(window(1000, 1000), 980..1000);
        assert_eq!(window(10, 12), 0..12);
    }
}
