//! `harness bench scale --hosts N --containers K`: N Docker hosts peering
//! through two redundant gobgpd route reflectors, K containers on each.
//!
//! Measured, with every host's whole route set read (not one sample):
//! from the first and from the last emulated `docker run` of a wave (every
//! container on every host, hosts started several at once as separate
//! dockerds would) until every host holds exactly the other hosts'
//! routes, per repeat; a reachability sample across hosts; a reflector
//! killed while a background watch reads every host's set round after
//! round (routes lost, and how long until every set was whole); every
//! container of one host stopped (until withdrawn everywhere); the drivers'
//! resident memory. Out: a [`BenchResult`] and its summary line.
//!
//! In: hosts, containers per host, repeats, run options.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nix::sys::signal::Signal;

use super::measure::rss_kib;
use super::stats::{ms, BenchResult, SampleStats, Series};
use crate::engine::{ContainerEngine, ContainerRt, Emulator};
use crate::probe::{ping_pairs, Member};
use crate::runner::converged::{wait_converged, Expected, Readers, Watch};
use crate::scenario::{DaemonKind, Scenario};
use crate::topology::{Options, World};
use crate::util::scaled;

/// How long a wave may take to converge before the bench gives up.
const CONVERGE_WITHIN: Duration = Duration::from_secs(300);
/// How long the watch keeps reading after the reflector died.
const FAILOVER_WATCH: Duration = Duration::from_secs(10);

/// The bench's topology as a scenario file (the same expansion the
/// scenarios use). The drivers keep their default stale time (60 s), not
/// the scenarios' 10 s: at thousands of endpoints on two cores a gobgpd
/// busy with a reflector's loss can miss the driver's 5 s call deadline,
/// and what then keeps the routes is the stale time a deployment has.
fn topology(hosts: usize, containers: usize) -> String {
    format!(
        r#"
description = "bench scale"
[bgp]
mode = "route-reflector"
reflectors = ["rr"]
[driver]
args = ["--accept-pool", "10.40.0.0/16", "--stale-routes-time", "60"]
[[hosts]]
name = "h"
count = {hosts}
[[hosts]]
name = "rr"
count = 2
role = "reflector"
address = "192.0.2.250/24"
[[networks]]
name = "net"
options = {{ dataplane = "macvlan" }}
subnet = "10.40.{{n}}.0/24"
[[containers]]
name = "c"
hosts = ["h"]
network = "net"
count = {containers}
"#
    )
}

fn series(name: &str, unit: &str, x: f64, samples: Vec<f64>) -> Series {
    Series {
        name: name.into(),
        x: Some(x),
        x_label: Some("endpoints".into()),
        unit: unit.into(),
        samples,
    }
}

fn line(s: &Series) -> String {
    match s.stats() {
        Some(st) if st.n == 1 => format!("{:.0} {} (n=1)", st.median, s.unit),
        Some(st) => format!(
            "n={} min {:.0} median {:.0} max {:.0} {}",
            st.n, st.min, st.median, st.max, s.unit
        ),
        None => "no samples".into(),
    }
}

/// Runs the scale benchmark: `repeats` start waves (every container on
/// every host; all stopped again between waves), then, with the last wave
/// running, the reachability sample, the reflector failover and the mass
/// stop of one host's containers.
pub fn scale(
    hosts: usize,
    containers: usize,
    repeats: usize,
    opts: &Options,
) -> Result<BenchResult> {
    if hosts < 2 || containers == 0 || repeats == 0 {
        bail!("--hosts must be at least 2, --containers and --repeats at least 1");
    }
    if hosts > 250 || containers > 250 {
        bail!("at most 250 hosts and 250 containers per host (one /24 per host)");
    }
    let endpoints = (hosts * containers) as f64;
    let s = Scenario::parse(
        &topology(hosts, containers),
        std::path::Path::new("bench-scale.toml"),
    )?;
    let say = |m: &str| eprintln!("[bench scale] {m}");
    let t = Instant::now();
    let w = World::build(&s, opts, &|m| say(m))?;
    let build = t.elapsed();
    say(&format!(
        "{} hosts built in {:.1}s",
        s.hosts.len(),
        build.as_secs_f64()
    ));
    let mut e = Emulator::default();
    let net = s.networks[0].clone();
    let docker: Vec<usize> = (0..w.hosts.len())
        .filter(|&i| w.hosts[i].runs_driver())
        .collect();
    for &i in &docker {
        let name = &w.hosts[i].def.name;
        e.create_network(&w, i, &net, net.subnets[name].into())?;
    }
    let t = Instant::now();
    wait_sessions(&w)?;
    say(&format!("BGP up in {:.1}s", t.elapsed().as_secs_f64()));

    let jobs: Vec<(usize, crate::scenario::NetworkDef, String)> = s
        .containers
        .iter()
        .map(|c| Ok((w.host_index(&c.host)?, net.clone(), c.name.clone())))
        .collect::<Result<_>>()?;
    let (mut from_first, mut from_last, mut wave) = (Vec::new(), Vec::new(), Vec::new());
    let mut running: Vec<ContainerRt> = Vec::new();
    for rep in 0..repeats {
        let first = Instant::now();
        running = e
            .start_many(&w, &jobs)
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let last = Instant::now();
        let exp = Expected::new(&w, &docker, &running)?;
        let mut readers = Readers::open(&w, &exp)?;
        let c = wait_converged(&mut readers, &exp, scaled(CONVERGE_WITHIN))?;
        from_first.push(ms(c.at.duration_since(first)));
        from_last.push(ms(c.at.saturating_duration_since(last)));
        wave.push(ms(last.duration_since(first)));
        say(&format!(
            "wave {}/{repeats}: {} containers started in {:.1}s; all {} routes on every host {:.0} ms after the first docker run, {:.0} ms after the last",
            rep + 1,
            running.len(),
            last.duration_since(first).as_secs_f64(),
            exp.total(),
            from_first[rep],
            from_last[rep]
        ));
        if rep + 1 < repeats {
            for r in e.stop_many(&w, &running) {
                r?;
            }
            let none = Expected::new(&w, &docker, &[])?;
            wait_converged(&mut readers, &none, scaled(CONVERGE_WITHIN))?;
        }
    }

    let rss: Vec<f64> = docker
        .iter()
        .map(|&i| rss_kib(w.hosts[i].driver.pid()) as f64)
        .collect();
    let gobgpd_rss: Vec<f64> = docker
        .iter()
        .map(|&i| rss_kib(w.hosts[i].gobgpd.pid()) as f64)
        .collect();

    // Reachability: a container on each of a few hosts spread over the
    // whole range, to one on another such host.
    let member = |c: &ContainerRt| Member {
        label: c.name.clone(),
        netns: c.netns.clone(),
        addr: c.any_addr(),
    };
    let spread: Vec<&ContainerRt> = (0..5)
        .map(|k| &running[(k * (running.len() - 1)) / 4])
        .collect();
    let mut pairs = Vec::new();
    for a in &spread {
        for b in &spread {
            if a.host != b.host {
                pairs.push((member(a), member(b)));
            }
        }
    }
    let reached = ping_pairs(&pairs, Duration::from_millis(500))?;
    let unreached: Vec<String> = pairs
        .iter()
        .zip(&reached)
        .filter(|(_, ok)| !**ok)
        .map(|((a, b), _)| format!("{} -> {}", a.label, b.label))
        .collect();
    say(&format!(
        "reachability sample: {} of {} pairs across hosts reach each other",
        pairs.len() - unreached.len(),
        pairs.len()
    ));

    // Failover: rr1 dies while every host's whole set is read round after round.
    let exp = Expected::new(&w, &docker, &running)?;
    let watch = Watch::start(Readers::open(&w, &exp)?, exp);
    std::thread::sleep(Duration::from_millis(500));
    let rr1 = w.host_index("rr1")?;
    let killed = Instant::now();
    w.signal_daemon(rr1, DaemonKind::Gobgpd, Signal::SIGKILL)?;
    let exp = Expected::new(&w, &docker, &running)?;
    let mut readers = Readers::open(&w, &exp)?;
    let c = wait_converged(&mut readers, &exp, scaled(CONVERGE_WITHIN))?;
    let failover_whole = c.at.saturating_duration_since(killed);
    std::thread::sleep(FAILOVER_WATCH);
    let (losses, lost_text) = watch.stop()?;
    // A loss under load is most often a driver that gave up on its gobgpd
    // (a call over --gobgp-timeout) and whose stale routes expired before
    // it reconnected: count the drivers that said so.
    let lost_gobgpd: Vec<String> = docker
        .iter()
        .filter(|&&i| {
            std::fs::read_to_string(&w.hosts[i].driver.log).is_ok_and(|t| t.contains("lost gobgpd"))
        })
        .map(|&i| w.hosts[i].def.name.clone())
        .collect();
    if !lost_gobgpd.is_empty() {
        say(&format!(
            "{} drivers logged \"lost gobgpd\" (a gobgpd call over its deadline), e.g. {}",
            lost_gobgpd.len(),
            lost_gobgpd[..lost_gobgpd.len().min(5)].join(", ")
        ));
    }
    say(&format!(
        "rr1 killed: {} host-route pairs lost ({} rounds over every host read them){}",
        losses.count(),
        losses.rounds,
        if losses.count() > 0 {
            format!(":\n  {lost_text}")
        } else {
            String::new()
        }
    ));

    // Mass stop: every container on the first host.
    let (gone, stay): (Vec<ContainerRt>, Vec<ContainerRt>) =
        running.into_iter().partition(|c| c.host == docker[0]);
    let first = Instant::now();
    for r in e.stop_many(&w, &gone) {
        r?;
    }
    let last = Instant::now();
    let exp = Expected::new(&w, &docker, &stay)?;
    let c = wait_converged(&mut readers, &exp, scaled(CONVERGE_WITHIN))?;
    let withdraw_first = c.at.duration_since(first);
    let withdraw_last = c.at.saturating_duration_since(last);
    say(&format!(
        "{} containers on {} stopped in {:.1}s: withdrawn everywhere {:.0} ms after the first stop, {:.0} ms after the last",
        gone.len(),
        w.hosts[docker[0]].def.name,
        last.duration_since(first).as_secs_f64(),
        ms(withdraw_first),
        ms(withdraw_last)
    ));

    let x = endpoints;
    let s_first = series(
        "first docker run -> every host has every route",
        "ms",
        x,
        from_first,
    );
    let s_last = series(
        "last docker run -> every host has every route",
        "ms",
        x,
        from_last,
    );
    let s_wave = series("first -> last docker run (the start wave)", "ms", x, wave);
    let s_rss = series("driver RSS per host (containers running)", "KiB", x, rss);
    let s_gobgpd = series("gobgpd RSS per host", "KiB", x, gobgpd_rss);
    let rss_stats = s_rss.stats().ok_or_else(|| anyhow!("no driver RSS"))?;
    let mut figures = std::collections::BTreeMap::new();
    figures.insert("hosts".into(), hosts as f64);
    figures.insert("containers_per_host".into(), containers as f64);
    figures.insert("endpoints".into(), endpoints);
    figures.insert("build_ms".into(), ms(build));
    figures.insert("failover_routes_lost".into(), losses.count() as f64);
    figures.insert("failover_watch_rounds".into(), losses.rounds as f64);
    figures.insert("drivers_that_lost_gobgpd".into(), lost_gobgpd.len() as f64);
    figures.insert("failover_sets_whole_ms".into(), ms(failover_whole));
    figures.insert("mass_stop_containers".into(), gone.len() as f64);
    figures.insert(
        "mass_stop_withdrawn_from_first_ms".into(),
        ms(withdraw_first),
    );
    figures.insert("mass_stop_withdrawn_from_last_ms".into(), ms(withdraw_last));
    figures.insert("reachability_pairs".into(), pairs.len() as f64);
    figures.insert("reachability_failed".into(), unreached.len() as f64);
    let mut setup = std::collections::BTreeMap::new();
    setup.insert("hosts".into(), hosts.to_string());
    setup.insert("containers".into(), containers.to_string());
    setup.insert("repeats".into(), repeats.to_string());
    setup.insert(
        "reflectors".into(),
        "2 (gobgpd, distinct cluster IDs)".into(),
    );
    setup.insert("data plane".into(), "macvlan, emulated docker run".into());
    setup.insert(
        "driver stale time".into(),
        "60 s (the driver's default)".into(),
    );
    setup.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    );
    let summary = format!(
        "scale {hosts} hosts x {containers} containers ({endpoints} endpoints, 2 reflectors): \
         every host has every route after the first docker run: {}; after the last: {}; \
         the wave itself: {}; rr1 killed: {} routes lost ({} watch rounds; {} drivers lost their gobgpd), sets whole {:.0} ms after the kill; \
         {} containers of one host stopped: withdrawn everywhere {:.0} ms after the first stop, {:.0} ms after the last; \
         reachability sample {}/{} pairs; driver RSS per host: min {:.0} median {:.0} max {:.0} KiB (gobgpd median {:.0} KiB)",
        line(&s_first),
        line(&s_last),
        line(&s_wave),
        losses.count(),
        losses.rounds,
        lost_gobgpd.len(),
        ms(failover_whole),
        gone.len(),
        ms(withdraw_first),
        ms(withdraw_last),
        pairs.len() - unreached.len(),
        pairs.len(),
        rss_stats.min,
        rss_stats.median,
        rss_stats.max,
        s_gobgpd.stats().map(|s: SampleStats| s.median).unwrap_or(0.0),
    );
    let mut result = BenchResult::new(
        "scale",
        format!(
            "sudo target/release/harness bench scale --hosts {hosts} --containers {containers} --repeats {repeats}"
        ),
    );
    result.setup.extend(setup);
    result.summary = summary.clone();
    result.series = vec![s_first, s_last, s_wave, s_rss, s_gobgpd];
    result.figures = figures;
    if !unreached.is_empty() {
        bail!("{summary}\nunreachable: {}", unreached.join(", "));
    }
    drop(w);
    Ok(result)
}

/// Every session of every host established (read every 200 ms: each
/// read is a gRPC call to every gobgpd).
pub(super) fn wait_sessions(w: &World) -> Result<()> {
    crate::util::eventually(
        scaled(Duration::from_secs(120)),
        Duration::from_millis(200),
        || {
            let down: Vec<String> = (0..w.hosts.len())
                .filter(|&i| {
                    !w.bgp_sessions(i)
                        .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                        .unwrap_or(false)
                })
                .map(|i| w.hosts[i].def.name.clone())
                .collect();
            if down.is_empty() {
                Ok(())
            } else {
                Err(format!("sessions not all up on {}", down.join(", ")))
            }
        },
    )
    .map(|_| ())
    .map_err(|e| anyhow!(e))
}
