//! `harness bench scale --ipam`: routes per host with the cluster IPAM's
//! blocks against a host route per container, side by side (issue 22).
//!
//! N Docker hosts through two gobgpd route reflectors, a 3-member etcd, one
//! network `--ipam-driver ipvlan-bgp` (10.40.0.0/16, /26 blocks) on every
//! host, K containers on each. Once with `--ipam-announce blocks` (the
//! default), once with `--ipam-announce addresses`, each in a world of its
//! own. Per wave (every container on every host started, then stopped):
//! from the first emulated `docker run` until every host holds exactly the
//! routes it must (each other host's blocks plus its strays, or each other
//! host's containers: whole sets read from every kernel and compared
//! strictly, so the route count is what the kernels held), that count
//! per host, and the destinations in each reflector's RIB then (what a
//! router of the fabric holds). In: hosts, containers per host, waves, run options. Out: a
//! [`BenchResult`] and its summary line.

use std::time::Instant;

use anyhow::{bail, Result};

use super::scale::wait_sessions;
use super::stats::{ms, BenchResult, Series};
use crate::engine::{ContainerEngine, ContainerRt, Emulator};
use crate::runner::converged::{wait_converged, Expected, Readers};
use crate::runner::ipam::held_blocks;
use crate::scenario::{Role, Scenario};
use crate::topology::{Options, World};
use crate::util::scaled;

const CONVERGE_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);
const MODES: [&str; 2] = ["blocks", "addresses"];

fn topology(hosts: usize, containers: usize, mode: &str) -> String {
    format!(
        r#"
description = "bench scale --ipam ({mode})"
[bgp]
mode = "route-reflector"
reflectors = ["rr"]
[driver]
args = ["--stale-routes-time", "60", "--ipam-announce", "{mode}"]
[etcd]
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
ipam = "ipvlan-bgp"
options = {{ dataplane = "macvlan" }}
subnet = "10.40.0.0/16"
[[containers]]
name = "c"
hosts = ["h"]
network = "net"
count = {containers}
"#
    )
}

/// What one mode measured.
struct Measured {
    /// Routes each host held when its set was whole, every host of every wave.
    routes: Vec<f64>,
    /// First docker run -> every host holds its whole set, per wave.
    converged: Vec<f64>,
    /// Last docker run of the wave -> every host holds its whole set.
    after_last: Vec<f64>,
    /// Destinations in each reflector's RIB when every host was whole, per wave.
    reflector: Vec<f64>,
}

fn measure(
    hosts: usize,
    containers: usize,
    waves: usize,
    mode: &str,
    opts: &Options,
) -> Result<Measured> {
    let say = |m: &str| eprintln!("[bench scale --ipam {mode}] {m}");
    let s = Scenario::parse(
        &topology(hosts, containers, mode),
        std::path::Path::new("bench-scale-ipam.toml"),
    )?;
    let w = World::build(&s, opts, &|m| say(m))?;
    let mut e = Emulator::default();
    let net = s.networks[0].clone();
    let docker: Vec<usize> = (0..w.hosts.len())
        .filter(|&i| w.hosts[i].runs_driver())
        .collect();
    for &i in &docker {
        let name = &w.hosts[i].def.name;
        e.create_network(&w, i, &net, net.subnets[name].into())?;
    }
    wait_sessions(&w)?;
    let jobs: Vec<(usize, crate::scenario::NetworkDef, String)> = s
        .containers
        .iter()
        .map(|c| Ok((w.host_index(&c.host)?, net.clone(), c.name.clone())))
        .collect::<Result<_>>()?;
    let mut m = Measured {
        routes: Vec::new(),
        converged: Vec::new(),
        after_last: Vec::new(),
        reflector: Vec::new(),
    };
    let reflectors: Vec<usize> = (0..w.hosts.len())
        .filter(|&i| w.hosts[i].def.role == Role::Reflector)
        .collect();
    for wave in 0..waves {
        let first = Instant::now();
        let running: Vec<ContainerRt> = e
            .start_many(&w, &jobs)
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let last = Instant::now();
        let exp = Expected::with_blocks(&w, &docker, &running, &held_blocks(&w)?)?;
        let mut readers = Readers::open(&w, &exp)?;
        let c = wait_converged(&mut readers, &exp, scaled(CONVERGE_WITHIN))?;
        m.converged.push(ms(c.at.duration_since(first)));
        m.after_last.push(ms(c.at.saturating_duration_since(last)));
        let per_host: Vec<f64> = exp.hosts.iter().map(|h| h.2.len() as f64).collect();
        let per_rr = reflectors
            .iter()
            .map(|&i| w.gobgp_rib_destinations(i, "ipv4").map(|n| n as f64))
            .collect::<Result<Vec<f64>>>()?;
        say(&format!(
            "wave {}/{waves}: {} containers started in {:.1}s; every host whole {:.0} ms after the first docker run, {:.0} ms after the last; routes per host {:?}; per reflector {per_rr:?}",
            wave + 1,
            running.len(),
            last.duration_since(first).as_secs_f64(),
            m.converged[wave],
            m.after_last[wave],
            per_host
        ));
        m.routes.extend(per_host);
        m.reflector.extend(per_rr);
        for r in e.stop_many(&w, &running) {
            r?;
        }
        // Blocks stay held for the grace period: the next wave reuses them.
        let none = Expected::with_blocks(&w, &docker, &[], &held_blocks(&w)?)?;
        wait_converged(&mut readers, &none, scaled(CONVERGE_WITHIN))?;
    }
    drop(w);
    Ok(m)
}

fn series(name: String, unit: &str, x: f64, samples: Vec<f64>) -> Series {
    Series {
        name,
        x: Some(x),
        x_label: Some("endpoints".into()),
        unit: unit.into(),
        samples,
    }
}

/// Runs both modes, `waves` start waves each.
pub fn ipam_scale(
    hosts: usize,
    containers: usize,
    waves: usize,
    opts: &Options,
) -> Result<BenchResult> {
    if hosts < 2 || containers == 0 || waves == 0 {
        bail!("--hosts must be at least 2, --containers and --repeats at least 1");
    }
    if hosts > 240 || containers > 1000 {
        bail!("at most 240 hosts (one segment, etcd and reflectors beside them) and 1000 containers per host");
    }
    let endpoints = (hosts * containers) as f64;
    let mut out = Vec::new();
    let mut summary = format!(
        "scale --ipam {hosts} hosts x {containers} containers ({endpoints} endpoints, one /16, /26 blocks, {waves} waves per mode):"
    );
    for mode in MODES {
        let m = measure(hosts, containers, waves, mode, opts)?;
        let r = series(
            format!("routes per host ({mode})"),
            "routes",
            endpoints,
            m.routes,
        );
        let rr = series(
            format!("routes per reflector ({mode})"),
            "routes",
            endpoints,
            m.reflector,
        );
        let c = series(
            format!("first docker run -> every host whole ({mode})"),
            "ms",
            endpoints,
            m.converged,
        );
        let l = series(
            format!("last docker run -> every host whole ({mode})"),
            "ms",
            endpoints,
            m.after_last,
        );
        let text = |s: &Series| match s.stats() {
            Some(st) => format!(
                "median {:.0} (min {:.0}, max {:.0}, n={})",
                st.median, st.min, st.max, st.n
            ),
            None => "no samples".into(),
        };
        summary.push_str(&format!(
            " {mode}: routes per host {}, per reflector {}, every host whole after the first docker run {} ms, after the last {} ms;",
            text(&r),
            text(&rr),
            text(&c),
            text(&l),
        ));
        out.extend([r, rr, c, l]);
    }
    let mut result = BenchResult::new(
        "scale-ipam",
        format!(
            "sudo target/release/harness bench scale --ipam --hosts {hosts} --containers {containers} --repeats {waves}"
        ),
    );
    result.setup.insert("hosts".into(), hosts.to_string());
    result
        .setup
        .insert("containers".into(), containers.to_string());
    result.setup.insert(
        "modes".into(),
        "--ipam-announce blocks, then addresses (a world each)".into(),
    );
    result.setup.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    );
    result.summary = summary;
    result.series = out;
    Ok(result)
}
