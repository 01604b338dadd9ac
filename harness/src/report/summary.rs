//! The Markdown table appended to `$GITHUB_STEP_SUMMARY` on GitHub
//! Actions: scenario, engine, kernel, outcome, time, and the skip reason or
//! the first error line.
//!
//! In: [`Report`]s and the kernel release. Out: the table's text. Pure.

use super::json::Report;

/// A Markdown table for `$GITHUB_STEP_SUMMARY`: scenario × engine × kernel,
/// outcome, time, and the skip reason or first error line.
pub fn markdown_summary(reports: &[Report], kernel: &str) -> String {
    let mut m = String::from(
        "| scenario | engine | kernel | outcome | time | note |\n|---|---|---|---|---:|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    for r in reports {
        let note = r
            .skipped
            .clone()
            .or_else(|| {
                r.error
                    .as_ref()
                    .map(|e| e.lines().next().unwrap_or("").to_string())
            })
            .unwrap_or_default();
        m.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} s | {} |\n",
            cell(&r.scenario),
            cell(&r.run_label()),
            cell(kernel),
            r.outcome(),
            r.elapsed_ms as f64 / 1000.0,
            cell(&note)
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::tests::three;

    #[test]
    fn markdown_summary_has_one_row_per_run() {
        let m = markdown_summary(&three(), "6.1.0");
        assert_eq!(m.lines().count(), 2 + 3);
        assert!(
            m.contains("| skip | emulator | 6.1.0 | SKIPPED | 0.0 s | kernel gap: no <ipvlan> |"),
            "{m}"
        );
        assert!(
            m.contains(
                "| bad | dockerd | 6.1.0 | FAILED | 0.0 s | step 3: c1 -> c2 \\| unreachable |"
            ),
            "{m}"
        );
    }
}
