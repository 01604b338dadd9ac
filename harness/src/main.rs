//! `harness`: run scenario files, or check what this machine can do.
//!
//! In: the command line (`run`, `list`, `check`, `bench`). Out: progress on
//! stderr, reports where asked, the exit status (non-zero if anything
//! failed). Owns the flags; everything else is the library's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::scenario::GobgpLine;
use harness::{machine, report, runner, Engine, Options, Scenario};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Multi-host scenarios for ipvlan-bgp on one Linux machine (network namespaces, real gobgpd)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario files; exit non-zero if any fails.
    Run {
        /// Scenario files (scenarios/*.toml).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write a JSON report: a file for one scenario, else a directory with one file each.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page (topology, steps, reachability grids, timeline,
        /// diagnostics): a file for one scenario (OUT.html), else a directory with index.html.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// After a failure, keep the topology up and print how to enter each host.
        #[arg(long)]
        keep: bool,
        /// Container engine: emulator (requests exactly as dockerd sends them).
        #[arg(long, default_value_t = Engine::Emulator)]
        engine: Engine,
        /// GoBGP line for the hosts: v3 (Debian's gobgpd) or v4 (gobgpd-v4, ci/install.sh
        /// full); default: the first line the scenario names (its `gobgp`).
        #[arg(long, value_name = "v3|v4")]
        gobgp_version: Option<GobgpLine>,
        /// Run the files inside one QEMU VM booting a stock Debian kernel (has ipvlan) on this
        /// machine's root file system (ci/vm/run.sh); same reports.
        #[arg(long)]
        vm: bool,
        /// With --vm: boot this kernel (vmlinux or bzImage) instead of Debian's current one.
        #[arg(long, requires = "vm_modules", value_name = "PATH")]
        vm_kernel: Option<PathBuf>,
        /// With --vm-kernel: its modules (DIR/lib/modules/VERSION, or that folder itself).
        #[arg(long, requires = "vm_kernel", value_name = "DIR")]
        vm_modules: Option<PathBuf>,
        /// With --vm: kill the VM after this many seconds.
        #[arg(long, default_value_t = 1800, value_name = "SECS")]
        vm_timeout: u64,
        /// Run up to N scenario files at once (each in its own namespaces).
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Run every file N times (to measure flakiness); the summary counts each run.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
        repeat: u16,
        /// Write a JUnit XML file (skips are <skipped> with their reason).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// List the scenario files with what they need and the engines they run on.
    List {
        /// Only scenarios that need this capability (macvlan, ipvlan, no-ipvlan, gobgpd,
        /// dockerd, frr, bird).
        #[arg(long, value_name = "CAPABILITY")]
        requires: Option<String>,
        /// Only scenarios that run on this engine (emulator, dockerd).
        #[arg(long)]
        engine: Option<Engine>,
        /// Print JSON (one object per scenario) instead of file paths.
        #[arg(long)]
        json: bool,
        /// Scenario files or folders (default: scenarios/ of this source tree).
        files: Vec<PathBuf>,
    },
    /// Print what this machine can do and what that means for the scenarios.
    Check,
    /// The suite's skips: start a trial log, or check logs against ci/expected-skips.
    Skips {
        #[command(subcommand)]
        what: SkipsCmd,
    },
    /// Benchmarks that need the harness's hosts.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Print the example fabric's top-of-rack router configuration
    /// (docs/router-config.md): AS 65100 at 192.168.1.1 facing the Docker
    /// hosts 192.168.1.248 and 192.168.1.251 (AS 65000), written by the code
    /// that writes the scenarios' FRR and BIRD configurations.
    RouterConfig {
        /// frr (an integrated frr.conf) or bird (bird.conf).
        #[arg(long, value_parser = ["frr", "bird"])]
        kind: String,
        /// A container pool the router accepts (prefixes in it up to /32 or
        /// /128); repeatable; default 10.1.0.0/16.
        #[arg(long = "pool", value_name = "CIDR")]
        pools: Vec<ipnet::IpNet>,
        /// Routes accepted per host and family before the session is reset.
        #[arg(long, default_value_t = harness::topology::example_fabric::DEFAULT_MAX_PREFIX, value_name = "N")]
        max_prefix: u32,
        /// BFD (300 ms x 3) with every host.
        #[arg(long)]
        bfd: bool,
    },
}

#[derive(Subcommand)]
enum SkipsCmd {
    /// Start (or empty) a trial log with this kernel's facts; tests append to the log
    /// named by HARNESS_TRIAL_LOG.
    Start { log: PathBuf },
    /// Every skip in the logs must be listed (for its kernel), and every listed skip that
    /// applies to a kernel where its test ran must have happened.
    Check {
        /// The expected-skips file.
        #[arg(long, default_value = "ci/expected-skips")]
        expected: PathBuf,
        /// Trial logs (one per kernel the suite ran on).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// `docker run --rm` on an ipvlan-bgp network (BGP on: a second host learns the routes)
    /// against Docker's built-in macvlan, or built-in ipvlan where the kernel has it (real dockerd).
    DockerRun {
        /// Runs per network.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Also write the result as JSON (an array of one) to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run it inside a VM whose kernel has ipvlan (ci/vm/run.sh): ours (ipvlan L3)
        /// against Docker's built-in ipvlan L3.
        #[arg(long)]
        vm: bool,
    },
    /// Join on one host -> route and reachability on the other, withdrawal after stop; driver memory.
    Convergence {
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Probe reachability from the moment the route reaches the other host (before the
        /// container's address is up), not from when docker run returned.
        #[arg(long)]
        probe_from_route: bool,
        /// Every other join's stop holds its teardown (interface back, DeleteEndpoint, sandbox
        /// deleted) after Leave until the routes are gone from b2, whose kernel it shares here
        /// (two real hosts do not); the withdrawal is reported for both kinds of join.
        #[arg(long, conflicts_with = "load")]
        hold_teardown: bool,
        /// Instead: the same joins idle, with 1,000 endpoints and 5,000 learned routes on the
        /// serving host, and during a 50-container burst on a third host, one of each per
        /// round, the order rotated (--runs rounds); the p99 of each loaded side against idle.
        #[arg(long, conflicts_with = "probe_from_route")]
        load: bool,
        /// With --load: endpoints already on the serving host.
        #[arg(long, default_value_t = 1000, requires = "load")]
        endpoints: usize,
        /// With --load: routes a third host's gobgpd originates (the serving host learns them).
        #[arg(long, default_value_t = 5000, requires = "load")]
        learned: u32,
        /// With --load: containers of the burst on the third host.
        #[arg(long, default_value_t = 50, requires = "load")]
        burst: usize,
        /// The network's data plane: macvlan, or an ipvlan mode (l3, l2, l3s: a kernel with
        /// ipvlan, e.g. with --vm).
        #[arg(long, default_value = "macvlan", conflicts_with = "load")]
        dataplane: String,
        /// Run it inside a VM whose kernel has ipvlan (ci/vm/run.sh; under TCG its absolute
        /// times say little about real hosts).
        #[arg(long, conflicts_with = "load")]
        vm: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// N routes originated on one host's gobgpd -> in the other host's kernel (end to end); driver memory.
    LearnedRoutes {
        #[arg(long, default_value_t = 10000)]
        routes: usize,
        /// Rounds of originate, install, withdraw.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One host starts N containers one by one (emulated docker run): each run's time at 10,
    /// 100, 1000 and N endpoints, the state file's size, the driver's memory idle and full.
    Fill {
        #[arg(long, default_value_t = 1000)]
        containers: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// N hosts x K containers through two gobgpd route reflectors: first/last docker run ->
    /// every host has every route (whole sets), reflector failover losses, mass-stop
    /// withdrawal, reachability sample, driver RSS per host.
    Scale {
        #[arg(long, default_value_t = 50)]
        hosts: usize,
        #[arg(long, default_value_t = 40)]
        containers: usize,
        /// Start waves (all containers started, converged, stopped again between waves).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Instead: one network of the cluster IPAM (etcd) on every host, routes per host and
        /// convergence with --ipam-announce blocks and with addresses (/32s), side by side.
        #[arg(long)]
        ipam: bool,
        /// Also write the figures (BenchResult) as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One host's gobgpd originates N paths outside every pool (a leaked table): the other
    /// host's driver memory, log lines and Docker call latency while it refuses them.
    Flood {
        #[arg(long, default_value_t = 1_000_000)]
        paths: u32,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Failover with the hold time alone and with BFD 300 ms x 3, side by side (gobgpd 4.x):
    /// traffic lost when a top-of-rack router dies; time until a frozen host's route is gone
    /// from every other host. Each round plays both settings (on v3, which has no BFD, the
    /// hold time alone).
    Failover {
        /// Failovers per case and setting.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// GoBGP line of the hosts' gobgpd (v4: both settings; v3: the hold time alone).
        #[arg(long, value_name = "v3|v4", default_value = "v4")]
        gobgp_version: GobgpLine,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The whole set in sequence (docker-run, convergence, learned-routes, fill, scale, flood, failover,
    /// route-install through cargo bench), one JSON array; rewritten after each bench.
    All {
        #[arg(long)]
        json: PathBuf,
        /// Short smoke sizes.
        #[arg(long)]
        quick: bool,
        /// Only these benches of the set (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Also run docker-run inside a VM with ipvlan (ours vs Docker's built-in ipvlan).
        #[arg(long)]
        vm: bool,
    },
    /// SVG plots and the performance page's table (docs/performance.md) from bench JSON files.
    Render {
        /// JSON files written by `bench … --json` or `cargo bench --bench route_install -- --json`.
        #[arg(long, required = true, num_args = 1..)]
        json: Vec<PathBuf>,
        /// Where the SVG files go.
        #[arg(long, default_value = "docs/bench")]
        out_dir: PathBuf,
        /// Replace this Markdown file's region between `<!-- bench:begin -->` and
        /// `<!-- bench:end -->` (the committed figures: docs/performance.md).
        #[arg(long, alias = "readme", value_name = "FILE")]
        doc: Option<PathBuf>,
    },
}

/// Prints one bench's result and writes it to `json` if asked.
fn one_bench(r: harness::bench::BenchResult, json: Option<PathBuf>) -> anyhow::Result<String> {
    if let Some(out) = json {
        harness::bench::write_json(&out, std::slice::from_ref(&r))?;
    }
    Ok(r.report())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::RouterConfig {
            kind,
            mut pools,
            max_prefix,
            bfd,
        } => {
            use harness::topology::example_fabric;
            if pools.is_empty() {
                pools.push(example_fabric::DEFAULT_POOL.parse().expect("valid"));
            }
            let kind = if kind == "frr" {
                harness::scenario::RouterKind::Frr
            } else {
                harness::scenario::RouterKind::Bird
            };
            print!(
                "{}",
                example_fabric::router_config(kind, &pools, max_prefix, bfd)
            );
            ExitCode::SUCCESS
        }
        Cmd::Check => {
            print!("{}", machine::describe(machine::detect()));
            ExitCode::SUCCESS
        }
        Cmd::Skips { what } => {
            let r = match what {
                SkipsCmd::Start { log } => harness::skips::start_log(
                    &log,
                    &machine::kernel_release(),
                    &machine::facts(machine::detect()),
                )
                .map(|()| format!("{}: kernel {}", log.display(), machine::kernel_release())),
                SkipsCmd::Check { expected, logs } => harness::skips::check_files(&expected, &logs),
            };
            match r {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("harness skips: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::List {
            requires,
            engine,
            json,
            files,
        } => match list(requires.as_deref(), engine, json, &files) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harness: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Bench { what } => {
            install_signal_handler();
            if let BenchCmd::Render { json, out_dir, doc } = what {
                let result = json
                    .iter()
                    .map(|p| harness::bench::read_json(p))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .and_then(|rs| {
                        let rs: Vec<_> = rs.into_iter().flatten().collect();
                        harness::bench::render::render(&rs, &json, &out_dir, doc.as_deref())
                    });
                return match result {
                    Ok(files) => {
                        for f in files {
                            println!("wrote {}", f.display());
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("harness: {e:#}");
                        ExitCode::FAILURE
                    }
                };
            }
            let result = Options::from_env().and_then(|o| match what {
                BenchCmd::DockerRun { runs, json, vm } => {
                    if vm {
                        let rs = harness::bench::bench_in_vm(
                            &["docker-run".into(), "--runs".into(), runs.to_string()],
                            &harness::vm::VmOptions::default(),
                        )?;
                        if let Some(out) = json {
                            harness::bench::write_json(&out, &rs)?;
                        }
                        Ok(rs.iter().map(|r| r.report()).collect::<Vec<_>>().join("\n"))
                    } else {
                        one_bench(harness::bench::docker_run(runs, &o)?, json)
                    }
                }
                BenchCmd::Convergence {
                    runs,
                    load: true,
                    endpoints,
                    learned,
                    burst,
                    json,
                    ..
                } => one_bench(
                    harness::bench::convergence_load(
                        runs,
                        harness::bench::LoadSizes {
                            endpoints,
                            learned,
                            burst,
                        },
                        &o,
                    )?,
                    json,
                ),
                BenchCmd::Convergence {
                    runs,
                    probe_from_route,
                    hold_teardown,
                    load: false,
                    dataplane,
                    vm: true,
                    json,
                    ..
                } => {
                    let mut args = vec![
                        "convergence".to_string(),
                        "--runs".into(),
                        runs.to_string(),
                        "--dataplane".into(),
                        dataplane,
                    ];
                    if probe_from_route {
                        args.push("--probe-from-route".into());
                    }
                    if hold_teardown {
                        args.push("--hold-teardown".into());
                    }
                    let rs =
                        harness::bench::bench_in_vm(&args, &harness::vm::VmOptions::default())?;
                    if let Some(out) = json {
                        harness::bench::write_json(&out, &rs)?;
                    }
                    Ok(rs.iter().map(|r| r.report()).collect::<Vec<_>>().join("\n"))
                }
                BenchCmd::Convergence {
                    runs,
                    probe_from_route,
                    hold_teardown,
                    load: false,
                    dataplane,
                    json,
                    ..
                } => one_bench(
                    harness::bench::convergence(
                        runs,
                        probe_from_route,
                        hold_teardown,
                        &dataplane,
                        &o,
                    )?,
                    json,
                ),
                BenchCmd::LearnedRoutes {
                    routes,
                    rounds,
                    json,
                } => one_bench(harness::bench::learned_routes(routes, rounds, &o)?, json),
                BenchCmd::Scale {
                    hosts,
                    containers,
                    repeats,
                    ipam: true,
                    json,
                } => one_bench(
                    harness::bench::ipam_scale(hosts, containers, repeats, &o)?,
                    json,
                ),
                BenchCmd::Scale {
                    hosts,
                    containers,
                    repeats,
                    ipam: false,
                    json,
                } => one_bench(harness::bench::scale(hosts, containers, repeats, &o)?, json),
                BenchCmd::Fill { containers, json } => {
                    one_bench(harness::bench::fill(containers, &o)?, json)
                }
                BenchCmd::Flood { paths, json } => {
                    one_bench(harness::bench::flood(paths, &o)?, json)
                }
                BenchCmd::Failover {
                    runs,
                    gobgp_version,
                    json,
                } => one_bench(harness::bench::failover(runs, gobgp_version, &o)?, json),
                BenchCmd::All {
                    json,
                    quick,
                    only,
                    vm,
                } => harness::bench::all(quick, vm, &only, &json, &o)
                    .map(|rs| format!("{} results in {}", rs.len(), json.display())),
                BenchCmd::Render { .. } => unreachable!("handled above"),
            });
            match result {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("harness: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run {
            files,
            json,
            html,
            keep,
            engine,
            gobgp_version,
            vm,
            vm_kernel,
            vm_modules,
            vm_timeout,
            jobs,
            repeat,
            junit,
        } => {
            let outputs = Outputs {
                json: json.as_deref(),
                html: html.as_deref(),
                junit: junit.as_deref(),
            };
            install_signal_handler();
            if vm || vm_kernel.is_some() {
                if keep {
                    eprintln!("harness: --keep cannot be used with --vm (the VM powers off after the run)");
                    return ExitCode::FAILURE;
                }
                if gobgp_version.is_some() {
                    eprintln!("harness: --gobgp-version is not passed into the VM yet; there each scenario runs on its first line");
                    return ExitCode::FAILURE;
                }
                let vm_opts = harness::vm::VmOptions {
                    kernel: vm_kernel,
                    modules: vm_modules,
                    timeout: std::time::Duration::from_secs(vm_timeout),
                    jobs,
                };
                let (loaded, bad_files) = load_all(&files);
                let reports = harness::vm::run(&loaded, engine, &vm_opts);
                return finish(&reports, bad_files, &outputs);
            }
            let mut opts = match Options::from_env() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("harness: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            opts.keep = keep;
            opts.gobgp = gobgp_version;
            if keep && jobs > 1 {
                eprintln!(
                    "harness: --keep needs --jobs 1 (it waits at the terminal after a failure)"
                );
                return ExitCode::FAILURE;
            }
            let (loaded, bad_files) = load_all(&files);
            // Every (file, round) is one job; reports keep the files' order.
            let work: Vec<&Scenario> = (0..repeat).flat_map(|_| loaded.iter()).collect();
            let reports = run_parallel(&work, usize::from(jobs), |s| runner::run(s, &opts, engine));
            // The suite's trial log, when set (`harness skips`).
            for r in &reports {
                let t = harness::skips::Trial {
                    test: r.scenario.clone(),
                    place: engine.name().to_string(),
                    skipped: r.skipped.clone(),
                };
                if let Err(e) = harness::skips::record(&t) {
                    eprintln!("harness: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            finish(&reports, bad_files, &outputs)
        }
    }
}

/// Runs `f` over `items` on up to `jobs` threads; results in the items' order.
/// Loads every file, printing the errors of those that do not load: the
/// others still run, and the bad ones count as failures in the summary.
fn load_all(files: &[PathBuf]) -> (Vec<Scenario>, usize) {
    let mut loaded = Vec::new();
    let mut bad_files = 0;
    for f in files {
        match Scenario::load(f) {
            Ok(s) => loaded.push(s),
            Err(e) => {
                eprintln!("harness: {e:#}");
                bad_files += 1;
            }
        }
    }
    (loaded, bad_files)
}

fn run_parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Where `harness run` writes its reports.
struct Outputs<'a> {
    json: Option<&'a std::path::Path>,
    html: Option<&'a std::path::Path>,
    junit: Option<&'a std::path::Path>,
}

/// `harness list`: the scenario files, filtered by capability and engine.
fn list(
    requires: Option<&str>,
    engine: Option<Engine>,
    json: bool,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    use anyhow::Context;
    let requires = requires
        .map(machine::parse_capability)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut paths = Vec::new();
    let roots = if files.is_empty() && std::path::Path::new("scenarios").is_dir() {
        vec![PathBuf::from("scenarios")]
    } else if files.is_empty() {
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")]
    } else {
        files.to_vec()
    };
    for root in roots {
        if root.is_dir() {
            for e in std::fs::read_dir(&root).with_context(|| format!("read {}", root.display()))? {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    paths.push(p);
                }
            }
        } else {
            paths.push(root);
        }
    }
    paths.sort();
    for p in paths {
        let s = Scenario::load(&p)?;
        if requires.is_some_and(|c| !s.requires.contains(&c)) {
            continue;
        }
        if engine.is_some_and(|e| !s.engines.contains(&e)) {
            continue;
        }
        if json {
            let v = serde_json::json!({
                "scenario": s.name,
                "file": p.display().to_string(),
                "description": s.description,
                "requires": s.requires.iter().map(|c| machine::capability_name(*c)).collect::<Vec<_>>(),
                "engines": s.engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
                "gobgp": s.gobgp.iter().map(|l| l.name()).collect::<Vec<_>>(),
            });
            println!("{v}");
        } else {
            println!("{}", p.display());
        }
    }
    Ok(())
}

/// Prints the summary, writes the reports, and gives the exit code.
fn finish(reports: &[report::Report], bad_files: usize, out: &Outputs) -> ExitCode {
    eprintln!("\nsummary:");
    for r in reports {
        let why = r.skipped.clone().or_else(|| {
            r.error
                .clone()
                .map(|e| e.lines().next().unwrap_or("").to_string())
        });
        eprintln!(
            "  {:<8} {:<28} {:<9} {:>7.1}s  {}",
            r.outcome(),
            r.scenario,
            r.gobgp
                .as_deref()
                .map(|l| format!("gobgpd {l}"))
                .unwrap_or_default(),
            r.elapsed_ms as f64 / 1000.0,
            why.unwrap_or_default()
        );
    }
    if let Some(p) = out.json {
        if let Err(e) = report::write_reports(p, reports) {
            eprintln!("harness: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(p) = out.html {
        match harness::report::html::write_pages(p, reports) {
            Ok(files) if files.len() == 1 => eprintln!("harness: wrote {}", p.display()),
            Ok(files) => eprintln!("harness: wrote {} pages in {}", files.len(), p.display()),
            Err(e) => {
                eprintln!("harness: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(p) = out.junit {
        if let Err(e) = std::fs::write(p, report::junit(reports)) {
            eprintln!("harness: write {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    // On GitHub Actions: a table on the run's summary page.
    if let Some(p) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let table = report::markdown_summary(reports, &machine::kernel_release());
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, table.as_bytes()));
        if let Err(e) = appended {
            eprintln!("harness: GITHUB_STEP_SUMMARY: {e}");
        }
    }
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    let passed = reports
        .iter()
        .filter(|r| r.skipped.is_none() && r.passed)
        .count();
    let failed = reports.len() - skipped - passed + bad_files;
    eprintln!("harness: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Ctrl-C / SIGTERM: unwind every run's cleanup stack, then exit.
fn install_signal_handler() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("harness: {sig}: cleaning up");
            harness::cleanup::run_all_registered();
            std::process::exit(130);
        }
    });
}
