//! `harness bench all --json OUT [--quick]`: the benchmark set in sequence,
//! collected into one JSON array of [`BenchResult`]s that `harness bench
//! render` turns into plots and the performance page's table (docs/performance.md).
//!
//! The set is a table ([`SET`]): a name and a function that runs the bench
//! at full or quick size. The file is rewritten after every bench, so a
//! failure late in the set keeps what came before; a bench that fails is
//! reported and the rest still run (the command then exits non-zero).
//!
//! In: `--quick`, `--vm`, `--only` and run options. Out: every result, in
//! one JSON array rewritten after each bench. Owns the set and its sizes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use super::stats::BenchResult;
use super::stats::{read_json, write_json};
use crate::topology::Options;

/// One benchmark of the set.
pub struct Entry {
    pub name: &'static str,
    /// Runs it; `quick` is a short smoke version of the same measurement.
    pub run: fn(quick: bool, opts: &Options) -> Result<Vec<BenchResult>>,
}

/// The set, in the order it runs.
pub const SET: &[Entry] = &[
    Entry {
        name: "docker-run",
        run: |quick, o| {
            Ok(vec![super::docker_run::docker_run(
                if quick { 6 } else { 20 },
                o,
            )?])
        },
    },
    Entry {
        name: "convergence",
        run: |quick, o| {
            Ok(vec![super::convergence::convergence(
                if quick { 40 } else { 200 },
                false,
                false,
                "macvlan",
                o,
            )?])
        },
    },
    Entry {
        name: "learned-routes",
        run: |quick, o| {
            // Full: the sizes issue 12 asks memory for (5,000 and 100,000 learned routes).
            let sizes: &[(usize, usize)] = if quick {
                &[(5_000, 5)]
            } else {
                &[(5_000, 7), (100_000, 3)]
            };
            sizes
                .iter()
                .map(|&(routes, rounds)| super::learned_routes::learned_routes(routes, rounds, o))
                .collect()
        },
    },
    Entry {
        name: "fill",
        run: |quick, o| Ok(vec![super::fill::fill(if quick { 100 } else { 1000 }, o)?]),
    },
    Entry {
        name: "scale",
        run: |quick, o| {
            let sizes: &[(usize, usize, usize)] = if quick {
                &[(10, 10, 2)]
            } else {
                &[(10, 40, 3), (30, 40, 3), (50, 40, 3)]
            };
            sizes
                .iter()
                .map(|&(h, c, r)| super::scale::scale(h, c, r, o))
                .collect()
        },
    },
    Entry {
        name: "flood",
        run: |quick, o| {
            Ok(vec![super::flood::flood(
                if quick { 5_000 } else { 100_000 },
                o,
            )?])
        },
    },
    Entry {
        name: "failover",
        run: |quick, o| {
            // Both settings need a driver that speaks gobgpd 4.x; without one
            // the hold time alone, on 3.x, said loudly and in the summary.
            let line = match crate::machine::DriverCaps::probe(&o.driver_bin) {
                Ok(d) if d.gobgp_v4 => crate::scenario::GobgpLine::V4,
                _ => {
                    eprintln!("[bench] failover: this driver binary does not speak gobgpd 4.x: the hold time alone, on gobgpd 3.x (no BFD case)");
                    crate::scenario::GobgpLine::V3
                }
            };
            Ok(vec![super::failover::failover(
                if quick { 3 } else { 10 },
                line,
                o,
            )?])
        },
    },
    Entry {
        name: "route-install",
        run: |quick, _| {
            let (routes, rounds) = if quick { (20_000, 5) } else { (100_000, 7) };
            cargo_bench("route_install", &[routes.to_string(), rounds.to_string()])
        },
    },
    Entry {
        name: "join-cost",
        run: |quick, _| {
            let n = if quick { "50" } else { "300" };
            cargo_bench("join_cost", &["--n".into(), n.into()])
        },
    },
];

/// Runs the set (or the entries named in `only`), writing `out` after each;
/// with `vm`, docker-run also inside a VM whose kernel has ipvlan.
pub fn all(
    quick: bool,
    vm: bool,
    only: &[String],
    out: &Path,
    opts: &Options,
) -> Result<Vec<BenchResult>> {
    for name in only {
        if !SET.iter().any(|e| e.name == name) {
            bail!(
                "no bench {name:?} in the set ({})",
                SET.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for e in SET
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|n| n == e.name))
    {
        eprintln!(
            "[bench all] {}{}",
            e.name,
            if quick { " (quick)" } else { "" }
        );
        let t = std::time::Instant::now();
        match (e.run)(quick, opts) {
            Ok(rs) => {
                for mut r in rs {
                    if quick {
                        r.setup.insert("quick".into(), "true".into());
                    }
                    let via = format!("harness bench all{}", if quick { " --quick" } else { "" });
                    r.setup.insert("via".into(), via);
                    println!("{}", r.report());
                    results.push(r);
                }
            }
            Err(err) => {
                eprintln!("[bench all] {} failed: {err:#}", e.name);
                failed.push(e.name);
            }
        }
        eprintln!(
            "[bench all] {} took {:.0} s",
            e.name,
            t.elapsed().as_secs_f64()
        );
        write_json(out, &results)?;
    }
    if vm {
        eprintln!("[bench all] docker-run in a VM with ipvlan");
        let runs = if quick { 6 } else { 20 };
        match super::in_vm::bench_in_vm(
            &["docker-run".into(), "--runs".into(), runs.to_string()],
            &crate::vm::VmOptions::default(),
        ) {
            Ok(rs) => {
                for mut r in rs {
                    r.setup.insert(
                        "via".into(),
                        format!(
                            "harness bench all --vm{}",
                            if quick { " --quick" } else { "" }
                        ),
                    );
                    println!("{}", r.report());
                    results.push(r);
                }
            }
            Err(err) => {
                eprintln!("[bench all] docker-run in the VM failed: {err:#}");
                failed.push("docker-run --vm");
            }
        }
        write_json(out, &results)?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of the set failed: {} (the others are in {})",
            failed.len(),
            failed.join(", "),
            out.display()
        );
    }
    Ok(results)
}

/// The source tree this harness was built from.
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `cargo bench -p ipvlan-bgp --bench BENCH -- ARGS… --json F` (a cargo
/// bench target of the driver crate: it drives the driver's code directly,
/// with no harness hosts), read back from F.
fn cargo_bench(bench: &str, args: &[String]) -> Result<Vec<BenchResult>> {
    let root = source_root();
    let out = std::env::temp_dir().join(format!("ibh-{bench}-{}.json", std::process::id()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(&cargo)
        .current_dir(&root)
        .args(["bench", "-q", "-p", "ipvlan-bgp", "--bench", bench, "--"])
        .args(args)
        .arg("--json")
        .arg(&out)
        .status()
        .with_context(|| {
            format!(
                "run {} bench in {} ({bench} is a cargo bench target)",
                Path::new(&cargo).display(),
                root.display()
            )
        })?;
    if !st.success() {
        bail!("cargo bench --bench {bench}: {st}");
    }
    let rs = read_json(&out).map_err(|e| anyhow!("{bench} wrote no results: {e:#}"))?;
    let _ = std::fs::remove_file(&out);
    Ok(rs)
}
