//! Test data for the HTML page's tests: a small scenario and a failed
//! report with everything a page can show (test builds only).
//!
//! In: nothing. Out: a scenario text and a report. Owns no state.

use std::path::Path;

use crate::report::json::{ReachCell, Report, StepReport};
use crate::scenario::Scenario;

pub(super) fn scenario(src: &str) -> Scenario {
    Scenario::parse(src, Path::new("t.toml")).expect("parses")
}

pub(super) const MESH: &str = r#"
description = "d"
[[hosts]]
name = "h1"
[[hosts]]
name = "h2"
[[hosts]]
name = "h3"
[[networks]]
name = "blue"
subnets = { h1 = "10.1.1.0/24", h2 = "10.1.2.0/24" }
[[containers]]
name = "c1"
host = "h1"
network = "blue"
"#;

pub(super) fn failed_report() -> Report {
    Report {
        scenario: "x".into(),
        engine: "emulator".into(),
        description: "a <b>bold</b> claim".into(),
        steps: vec![
            StepReport {
                name: "<script>alert(1)</script>".into(),
                passed: true,
                elapsed_ms: 30,
                convergence_ms: Some(20),
                reach: vec![
                    ReachCell {
                        from: "c1".into(),
                        to: "c2".into(),
                        ok: true,
                    },
                    ReachCell {
                        from: "c2".into(),
                        to: "<c1>".into(),
                        ok: false,
                    },
                ],
                ..Default::default()
            },
            StepReport {
                name: "then".into(),
                started_ms: 30,
                elapsed_ms: 50,
                detail: Some("it & broke".into()),
                ..Default::default()
            },
        ],
        error: Some("step 2 failed".into()),
        diagnostics: Some(
            "\n===== host h1 (192.0.2.1/24, namespace n) =====\n$ ip route show table main\n10.1.2.2 via 192.0.2.2\n--- driver log (tail) /x ---\n<ERROR> boom\n\n===== container c1 (/proc/1/ns/net) =====\nlo UP\n"
                .into(),
        ),
        ..Default::default()
    }
}
