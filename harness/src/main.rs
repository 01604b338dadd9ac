//! `harness`: run scenario files, or check what this machine can do.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::{check, report, runner, Options, Scenario};

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
        /// After a failure, keep the topology up and print how to enter each host.
        #[arg(long)]
        keep: bool,
        /// Container engine: emulator (requests exactly as dockerd sends them).
        #[arg(long, default_value = "emulator")]
        engine: String,
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
    },
    /// Print what this machine can do and what that means for the scenarios.
    Check,
    /// Benchmarks that need the harness's hosts.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// `docker run --rm` on an ipvlan-bgp network against Docker's built-in macvlan (real dockerd).
    DockerRun {
        /// Runs per network.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Join on one host -> route and reachability on the other, withdrawal after stop; driver memory.
    Convergence {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// N routes originated on one host's gobgpd -> in the other host's kernel (end to end); driver memory.
    LearnedRoutes {
        #[arg(long, default_value_t = 10000)]
        routes: usize,
    },
    /// One host's gobgpd originates N paths outside every pool (a leaked table): the other
    /// host's driver memory, log lines and Docker call latency while it refuses them.
    Flood {
        #[arg(long, default_value_t = 1_000_000)]
        paths: u32,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check => {
            print!("{}", check::describe(check::detect()));
            ExitCode::SUCCESS
        }
        Cmd::Bench { what } => {
            install_signal_handler();
            let result = Options::from_env().and_then(|o| match what {
                BenchCmd::DockerRun { runs } => harness::bench::docker_run(runs, &o),
                BenchCmd::Convergence { runs } => harness::bench::convergence(runs, &o),
                BenchCmd::LearnedRoutes { routes } => harness::bench::learned_routes(routes, &o),
                BenchCmd::Flood { paths, json } => {
                    harness::bench::flood(paths, &o).and_then(|(line, report)| {
                        if let Some(out) = json {
                            let text = serde_json::to_string_pretty(&report)?;
                            std::fs::write(&out, text + "\n")
                                .map_err(|e| anyhow::anyhow!("write {}: {e}", out.display()))?;
                        }
                        Ok(line)
                    })
                }
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
            keep,
            engine,
            vm,
            vm_kernel,
            vm_modules,
            vm_timeout,
        } => {
            install_signal_handler();
            if vm || vm_kernel.is_some() {
                if keep {
                    eprintln!("harness: --keep cannot be used with --vm (the VM powers off after the run)");
                    return ExitCode::FAILURE;
                }
                let vm_opts = harness::vm::VmOptions {
                    kernel: vm_kernel,
                    modules: vm_modules,
                    timeout: std::time::Duration::from_secs(vm_timeout),
                };
                let mut loaded = Vec::new();
                let mut bad_files = 0;
                for f in &files {
                    match Scenario::load(f) {
                        Ok(s) => loaded.push(s),
                        Err(e) => {
                            eprintln!("harness: {e:#}");
                            bad_files += 1;
                        }
                    }
                }
                let reports = harness::vm::run(&loaded, &engine, &vm_opts);
                return finish(&reports, bad_files, json.as_deref());
            }
            let mut opts = match Options::from_env() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("harness: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            opts.keep = keep;
            let mut reports = Vec::new();
            let mut bad_files = 0;
            for f in &files {
                match Scenario::load(f) {
                    Ok(s) => reports.push(runner::run(&s, &opts, &engine)),
                    Err(e) => {
                        eprintln!("harness: {e:#}");
                        bad_files += 1;
                    }
                }
            }
            finish(&reports, bad_files, json.as_deref())
        }
    }
}

/// Prints the summary, writes the JSON reports, and gives the exit code.
fn finish(
    reports: &[report::Report],
    bad_files: usize,
    json: Option<&std::path::Path>,
) -> ExitCode {
    eprintln!("\nsummary:");
    for r in reports {
        let why = r.skipped.clone().or_else(|| {
            r.error
                .clone()
                .map(|e| e.lines().next().unwrap_or("").to_string())
        });
        eprintln!(
            "  {:<8} {:<28} {:>7.1}s  {}",
            r.outcome(),
            r.scenario,
            r.elapsed_ms as f64 / 1000.0,
            why.unwrap_or_default()
        );
    }
    if let Some(out) = json {
        if let Err(e) = report::write_reports(out, reports) {
            eprintln!("harness: {e:#}");
            return ExitCode::FAILURE;
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
