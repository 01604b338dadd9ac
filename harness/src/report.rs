//! The JSON report of one scenario run (`harness run --json OUT`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StepReport {
    pub name: String,
    pub line: usize,
    pub passed: bool,
    pub elapsed_ms: u64,
    /// Time from the previous action until the expectation held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergence_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    pub scenario: String,
    pub file: String,
    pub description: String,
    pub engine: String,
    pub passed: bool,
    /// `None` when the scenario ran; otherwise why it did not.
    pub skipped: Option<String>,
    pub elapsed_ms: u64,
    pub steps: Vec<StepReport>,
    /// Step name -> convergence time, for every expectation that measured one.
    pub convergence_ms: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

impl Report {
    pub fn outcome(&self) -> &'static str {
        match (&self.skipped, self.passed) {
            (Some(_), _) => "SKIPPED",
            (None, true) => "PASSED",
            (None, false) => "FAILED",
        }
    }
}

/// Writes reports: one file when `out` ends in `.json` and there is one
/// report, else `out/<scenario>.json` for each.
pub fn write_reports(out: &Path, reports: &[Report]) -> Result<()> {
    if reports.len() == 1 && out.extension().is_some_and(|e| e == "json") {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(&reports[0])?)
            .with_context(|| format!("write {}", out.display()))?;
        return Ok(());
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    for r in reports {
        let p = out.join(format!("{}.json", r.scenario));
        std::fs::write(&p, serde_json::to_vec_pretty(r)?)
            .with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_agreed_top_level_keys() {
        let r = Report {
            scenario: "two-hosts".into(),
            passed: true,
            steps: vec![StepReport {
                name: "start".into(),
                passed: true,
                elapsed_ms: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in ["scenario", "passed", "skipped", "steps", "convergence_ms"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v["skipped"].is_null());
        let s = &v["steps"][0];
        for k in ["name", "passed", "elapsed_ms"] {
            assert!(s.get(k).is_some(), "step missing {k}");
        }
    }
}
