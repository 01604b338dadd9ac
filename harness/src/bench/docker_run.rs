//! `harness bench docker-run`: what our driver costs a `docker run`.
//!
//! One host, a real dockerd, two networks on the same parent: ours
//! (`-d ipvlan-bgp -o dataplane=macvlan`, or ipvlan where the kernel has it)
//! and Docker's built-in `macvlan`. `docker run --rm --network X busybox true`
//! alternates between them; medians and their ratio are printed, so machine
//! noise hits both sides alike.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{median, ms};
use crate::dockerd::{Dockerd, IMAGE};
use crate::engine::Engine;
use crate::scenario::Scenario;
use crate::world::{Options, World};

const SCENARIO: &str = r#"
description = "docker run benchmark host"
[bgp]
mode = "none"
[[hosts]]
name = "b1"
"#;

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
