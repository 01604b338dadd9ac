//! `harness bench docker-run`: what our driver costs a `docker run`.
//!
//! Two hosts with real dockerds, BGP on: b1 runs the containers, b2 peers
//! with it and learns every announcement (the bench checks that a running
//! container's /32 reaches b2's kernel before it starts timing, and counts
//! the routes b2 learned during the runs). On b1, two networks on the same
//! parent: ours and Docker's built-in driver of the same kind — built-in
//! `macvlan` against ours with `dataplane=macvlan` where the kernel has no
//! ipvlan (this machine), built-in `ipvlan` (L3) against ours (ipvlan L3)
//! where it has (the VM). `docker run --rm --network X busybox true`
//! alternates between them, so machine noise hits both sides alike.
//!
//! In: the number of runs per network, run options. Out: a [`BenchResult`]
//! with both sides' samples and their comparison. Owns the two dockerds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::measure::{route_events, tagged_routes};
use super::stats::{compare, ms, BenchResult, Series};
use crate::engine::dockerd::{Dockerd, IMAGE};
use crate::engine::ContainerEngine;
use crate::scenario::Scenario;
use crate::topology::{Options, World};

const SCENARIO: &str = r#"
description = "docker run benchmark: b1 runs containers, b2 learns their routes"
[driver]
args = ["--accept-pool", "10.14.0.0/16"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
"#;

pub fn docker_run(runs: usize, opts: &Options) -> Result<BenchResult> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let s = Scenario::parse(SCENARIO, std::path::Path::new("bench-docker-run.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut d = Dockerd::default();
    d.setup(&w)?;
    let ipvlan = crate::machine::detect().ipvlan.is_ok();
    let (ours_opts, builtin_driver, builtin_opts, builtin_name): (&[&str], _, &[&str], _) =
        if ipvlan {
            (
                &["-o", "mode=l3"],
                "ipvlan",
                &["-o", "ipvlan_mode=l3"],
                "built-in ipvlan l3",
            )
        } else {
            (
                &["-o", "dataplane=macvlan"],
                "macvlan",
                &[],
                "built-in macvlan",
            )
        };
    let ours_name = if ipvlan {
        "ipvlan-bgp (ipvlan l3)"
    } else {
        "ipvlan-bgp (macvlan)"
    };
    for (host, subnet) in [(0, "10.14.1.0/24"), (1, "10.14.2.0/24")] {
        let mut create = vec![
            "network",
            "create",
            "-d",
            "ipvlan-bgp",
            "-o",
            "parent=eth1",
            "--subnet",
            subnet,
        ];
        create.extend_from_slice(ours_opts);
        create.push("ours");
        d.docker(host, &create)
            .with_context(|| format!("create our network on host #{host}"))?;
    }
    let mut create = vec![
        "network",
        "create",
        "-d",
        builtin_driver,
        "-o",
        "parent=eth1",
        "--subnet",
        "10.14.3.0/24",
    ];
    create.extend_from_slice(builtin_opts);
    create.push("builtin");
    d.docker(0, &create)?;

    // BGP is really on: a running container's route reaches b2's kernel.
    let mut events = route_events(&w, 1)?;
    let t = Instant::now();
    d.docker(
        0,
        &[
            "run",
            "-d",
            "--name",
            "witness",
            "--network",
            "ours",
            IMAGE,
            "sleep",
            "3600",
        ],
    )?;
    let ip = d.docker(
        0,
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "witness",
        ],
    )?;
    let addr: std::net::Ipv4Addr = ip
        .trim()
        .parse()
        .with_context(|| format!("witness container's address {ip:?}"))?;
    let dst = ipnet::IpNet::V4(ipnet::Ipv4Net::new(addr, 32)?);
    let witnessed = events
        .wait(dst, false, t, Duration::from_secs(30))
        .context("b2 never learned the witness container's route: BGP is not on")?;
    if !tagged_routes(&w, 1)?.iter().any(|r| r.dst == dst) {
        bail!("b2's kernel lost {dst} again");
    }
    eprintln!(
        "[bench] b2 learned {dst} {:.0} ms after docker run -d on b1",
        ms(witnessed - t)
    );

    // Warm up both paths once (image layers, plugin activation).
    for net in ["ours", "builtin"] {
        d.docker(0, &["run", "--rm", "--network", net, IMAGE, "true"])?;
    }
    let ours_pool: ipnet::IpNet = "10.14.1.0/24".parse()?;
    events.count_added(|_| true)?;
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
            "[bench] run {}/{runs}: ours {:.0} ms, {builtin_name} {:.0} ms",
            i + 1,
            ms(*ours.last().unwrap_or(&Duration::ZERO)),
            ms(*builtin.last().unwrap_or(&Duration::ZERO))
        );
    }
    // Let the last withdrawals and announcements land before counting.
    std::thread::sleep(Duration::from_millis(500));
    let learned = events.count_added(|d| ours_pool.contains(d))?;
    let _ = d.docker(0, &["rm", "-f", "witness"]);
    let _ = d.docker(0, &["network", "rm", "ours", "builtin"]);
    let _ = d.docker(1, &["network", "rm", "ours"]);
    drop(events);
    drop(w);

    let mut r = BenchResult::new(
        "docker-run",
        format!("sudo target/release/harness bench docker-run --runs {runs}"),
    );
    r.setup.insert("runs".into(), runs.to_string());
    r.setup.insert(
        "dockerd".into(),
        crate::machine::detect().dockerd.clone().unwrap_or_default(),
    );
    r.setup.insert(
        "bgp".into(),
        "on: b2 peers with b1 over iBGP and installs the announced /32s".into(),
    );
    r.series = vec![
        Series::ms(ours_name, &ours),
        Series::ms(builtin_name, &builtin),
    ];
    r.figures.insert(
        "b2 learned the witness route after (ms)".into(),
        ms(witnessed - t),
    );
    r.figures
        .insert("routes b2 installed during the runs".into(), learned as f64);
    r.summary = format!(
        "docker run --rm busybox true, {runs} runs each, alternating; BGP on (b2 installed {learned} of \
         our {runs} containers' routes while they ran): {}",
        compare(&r.series[0], &r.series[1])
    );
    Ok(r)
}
