//! One test per file in `scenarios/`: each runs the real thing (namespaces,
//! gobgpd, the ipvlan-bgp binary) with the dockerd emulator. A scenario the
//! machine cannot run is reported as a visible skip with its reason; under
//! CI only kernel gaps may skip (see `harness::check`).

use std::path::PathBuf;

use rstest::rstest;

/// Runs the file on every engine it lists (`engines = [...]`, default the emulator).
#[rstest]
fn scenario(#[files("../scenarios/*.toml")] path: PathBuf) {
    let s = harness::Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut failures = Vec::new();
    for engine in &s.engines {
        let report = harness::run_file(&path, engine).unwrap_or_else(|e| panic!("{e:#}"));
        if let Some(reason) = &report.skipped {
            // Printed to both streams so it shows with and without --nocapture.
            println!("SKIPPED {} ({engine}): {reason}", report.scenario);
            eprintln!("SKIPPED {} ({engine}): {reason}", report.scenario);
            continue;
        }
        if !report.passed {
            failures.push(format!(
                "{} ({engine}): {}",
                report.scenario,
                report.error.as_deref().unwrap_or("(no error recorded)")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "scenario failed: {}",
        failures.join("\n")
    );
}

#[test]
fn every_scenario_file_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            harness::Scenario::load(&p).unwrap_or_else(|e| panic!("{e:#}"));
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.starts_with('#'),
                "{} must start with its picture in a comment",
                p.display()
            );
            n += 1;
        }
    }
    assert!(n > 0, "no scenario files in {}", dir.display());
}
