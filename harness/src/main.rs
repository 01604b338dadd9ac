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
    },
    /// Print what this machine can do and what that means for the scenarios.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check => {
            print!("{}", check::describe(check::detect()));
            ExitCode::SUCCESS
        }
        Cmd::Run {
            files,
            json,
            keep,
            engine,
        } => {
            install_signal_handler();
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
            eprintln!("\nsummary:");
            for r in &reports {
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
                if let Err(e) = report::write_reports(&out, &reports) {
                    eprintln!("harness: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            let failed = reports
                .iter()
                .filter(|r| r.skipped.is_none() && !r.passed)
                .count()
                + bad_files;
            if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
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
