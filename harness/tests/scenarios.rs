//! One test per scenario file, engine and GoBGP line (`scenario::NAME::ENGINE::v4`;
//! a scenario without BGP has no line: `scenario::NAME::ENGINE`): each runs
//! the real thing (namespaces, gobgpd of that line, the ipvlan-bgp binary,
//! dockerd where listed). A file's `gobgp` names its lines.
//!
//! A custom test harness (libtest-mimic) so that a scenario this machine
//! cannot run shows as `ignored (reason)` in `cargo test`'s output and count,
//! never as passed. Which skips are allowed is [`harness::machine`]'s call:
//! under CI only kernel gaps may skip, `HARNESS_EXPECTED_SKIPS` narrows that
//! to a listed set, and `HARNESS_REQUIRE` forbids skips of what must work.
//! Each trial appends its outcome to `$HARNESS_TRIAL_LOG` when set (see
//! [`harness::skips`]).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use harness::scenario::GobgpLine;
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

/// Scenarios run beside each other (RUST_TEST_THREADS at a time) under
/// this lock's read side; a file with `alone = true` takes its write side
/// and runs with none beside it (a waiting writer holds new readers back).
static BESIDE: RwLock<()> = RwLock::new(());

/// Runs one file on one engine and line: passed, ignored with the skip
/// reason, or failed.
fn run(
    path: &Path,
    engine: harness::Engine,
    line: Option<GobgpLine>,
) -> Result<Completion, Failed> {
    let report =
        harness::run_file(path, engine, line).map_err(|e| Failed::from(format!("{e:#}")))?;
    keep_page(path, engine, line, &report);
    let what = report.run_label();
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
        eprintln!("SKIPPED {} ({what}): {reason}", report.scenario);
        return Ok(Completion::ignored_with(reason));
    }
    if report.passed {
        Ok(Completion::Completed)
    } else {
        Err(format!(
            "scenario {} ({what}) failed: {}",
            report.scenario,
            report.error.as_deref().unwrap_or("(no error recorded)")
        )
        .into())
    }
}

/// Writes the run's HTML page to
/// `target/scenario-reports/<file>-<engine>[-<line>].html` (CI keeps them);
/// a page that cannot be written is only a warning.
fn keep_page(
    path: &Path,
    engine: harness::Engine,
    line: Option<GobgpLine>,
    report: &harness::Report,
) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let line = line.map(|l| format!("-{l}")).unwrap_or_default();
    let out = target
        .join("scenario-reports")
        .join(format!("{stem}-{engine}{line}.html"));
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
        let (engines, lines, alone) = match harness::Scenario::load(&path) {
            Ok(s) => (s.engines, s.gobgp, s.alone),
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
        // No BGP: one trial per engine, without a line.
        let lines: Vec<Option<GobgpLine>> = if lines.is_empty() {
            vec![None]
        } else {
            lines.into_iter().map(Some).collect()
        };
        for engine in engines {
            for &line in &lines {
                let p = path.clone();
                let suffix = line.map(|l| format!("::{l}")).unwrap_or_default();
                trials.push(Trial::ignorable_test(
                    format!("scenario::{name}::{engine}{suffix}"),
                    move || {
                        // The lock guards no data: a panicked trial poisons nothing.
                        let _alone =
                            alone.then(|| BESIDE.write().unwrap_or_else(|e| e.into_inner()));
                        let _beside =
                            (!alone).then(|| BESIDE.read().unwrap_or_else(|e| e.into_inner()));
                        run(&p, engine, line)
                    },
                ));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
