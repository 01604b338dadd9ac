//! One test per scenario file and engine: each runs the real thing
//! (namespaces, gobgpd, the ipvlan-bgp binary, dockerd where listed).
//!
//! A custom test harness (libtest-mimic) so that a scenario this machine
//! cannot run shows as `ignored (reason)` in `cargo test`'s output and count,
//! never as passed. Which skips are allowed is [`harness::machine`]'s call:
//! under CI only kernel gaps may skip, `HARNESS_EXPECTED_SKIPS` narrows that
//! to a listed set, and `HARNESS_REQUIRE` forbids skips of what must work.
//! Each trial appends its outcome to `$HARNESS_TRIAL_LOG` when set (see
//! [`harness::skips`]).

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Runs one file on one engine: passed, ignored with the skip reason, or failed.
fn run(path: &Path, engine: harness::Engine) -> Result<Completion, Failed> {
    let report = harness::run_file(path, engine).map_err(|e| Failed::from(format!("{e:#}")))?;
    keep_page(path, engine, &report);
    // The suite's trial log (`ci/test.sh`): `harness skips check` compares
    // every skip of every run with ci/expected-skips, both ways.
    harness::skips::record(&harness::skips::Trial {
        test: report.scenario.clone(),
        place: engine.name().to_string(),
        skipped: report.skipped.clone(),
    })
    .map_err(|e| Failed::from(format!("{e:#}")))?;
    if let Some(reason) = report.skipped {
        // Also on stderr, so the reason shows in CI logs next to the run's progress.
        eprintln!("SKIPPED {} ({engine}): {reason}", report.scenario);
        return Ok(Completion::ignored_with(reason));
    }
    if report.passed {
        Ok(Completion::Completed)
    } else {
        Err(format!(
            "scenario {} ({engine}) failed: {}",
            report.scenario,
            report.error.as_deref().unwrap_or("(no error recorded)")
        )
        .into())
    }
}

/// Writes the run's HTML page to `target/scenario-reports/<file>-<engine>.html`
/// (CI keeps them); a page that cannot be written is only a warning.
fn keep_page(path: &Path, engine: harness::Engine, report: &harness::Report) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let out = target
        .join("scenario-reports")
        .join(format!("{stem}-{engine}.html"));
    if let Err(e) = harness::report::html::write_pages(&out, std::slice::from_ref(report)) {
        eprintln!("warning: {e:#}");
    }
}

/// Every file parses and starts with its picture in a comment.
fn every_file_parses(files: Vec<PathBuf>) -> Result<(), Failed> {
    if files.is_empty() {
        return Err("no scenario files in scenarios/".into());
    }
    for p in &files {
        harness::Scenario::load(p).map_err(|e| Failed::from(format!("{e:#}")))?;
        let text = std::fs::read_to_string(p).map_err(|e| Failed::from(e.to_string()))?;
        if !text.starts_with('#') {
            return Err(format!("{} must start with its picture in a comment", p.display()).into());
        }
    }
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // Scenario tests mostly wait on timers: honour RUST_TEST_THREADS like libtest does.
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|v| v.parse().ok());
    }
    let files = scenario_files();
    let mut trials = vec![Trial::test("every_scenario_file_parses", {
        let files = files.clone();
        move || every_file_parses(files)
    })];
    for path in files {
        // A file that does not parse fails its own trial (and the one above).
        let engines = match harness::Scenario::load(&path) {
            Ok(s) => s.engines,
            Err(e) => {
                let msg = format!("{e:#}");
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                trials.push(Trial::test(format!("scenario::{name}"), move || {
                    Err(msg.into())
                }));
                continue;
            }
        };
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for engine in engines {
            let p = path.clone();
            trials.push(Trial::ignorable_test(
                format!("scenario::{name}::{engine}"),
                move || run(&p, engine),
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
