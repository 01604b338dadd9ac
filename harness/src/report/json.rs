//! The JSON report of one scenario run (`harness run --json OUT`): what
//! ran, what passed, each step's times and details, the convergence
//! figures, and on failure the error and the diagnostics.
//!
//! In: what the runner records. Out: [`Report`]s, written one file each
//! (or one file for one report); read back from a VM's run. Owns the
//! report's field names (the README and CI rely on them).

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
    /// The finest interval the step's figure can resolve, in ms: 1 for a
    /// time stamped from events (route notifications, the clock around an
    /// action), the probe interval for reachability (2 ms, coarser only for
    /// many pairs at once; the background probes' own interval), and for a
    /// condition read by polling the longest gap between two reads. A
    /// figure is never given finer than this.
    #[serde(default)]
    pub resolution_ms: u64,
    /// When the step began, in ms from the start of the run (the world is
    /// built before the first step), for the HTML report's timeline.
    #[serde(default)]
    pub started_ms: u64,
    /// For an expectation: time from the end of the last action step before
    /// it (start, stop, kill, link change, restart, ...; the creation of the
    /// networks before the first step) until it first held; an upper bound
    /// when other expectations ran in between. For `probe-stop`:
    /// the longest outage; for `flood-wait`: how long gobgpd took to accept
    /// the flood from its start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergence_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a reachability step (`expect-reachable`, `expect-matrix`): each
    /// probed pair as its last probe round saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<ReachCell>,
}

/// One probed pair of a reachability step: did `from` reach `to`?
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReachCell {
    pub from: String,
    pub to: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    pub scenario: String,
    pub file: String,
    pub description: String,
    pub engine: String,
    /// The GoBGP line the hosts ran (`"v3"`, `"v4"`); absent without BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gobgp: Option<String>,
    pub passed: bool,
    /// `None` when the scenario ran; otherwise why it did not.
    pub skipped: Option<String>,
    pub elapsed_ms: u64,
    pub steps: Vec<StepReport>,
    /// `"NN step name"` (1-based step index, two digits, then the step's
    /// name, so keys are unique and sort in step order) -> the step's
    /// `convergence_ms`, for every step that measured one.
    pub convergence_ms: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

impl Report {
    /// What ran, for tables and titles: `emulator`, or `emulator, gobgpd v4`.
    pub fn run_label(&self) -> String {
        match &self.gobgp {
            Some(l) => format!("{}, gobgpd {l}", self.engine),
            None => self.engine.clone(),
        }
    }

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
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        // `<scenario>.json`; a second run of the same name (another engine
        // or GoBGP line, --repeat) gets `-2`, `-3`, ... so no report
        // overwrites another.
        let n = seen.entry(r.scenario.clone()).or_default();
        *n += 1;
        let p = if *n == 1 {
            out.join(format!("{}.json", r.scenario))
        } else {
            out.join(format!("{}-{n}.json", r.scenario))
        };
        std::fs::write(&p, serde_json::to_vec_pretty(r)?)
            .with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn three() -> Vec<Report> {
        vec![
            Report {
                scenario: "ok".into(),
                engine: "emulator".into(),
                passed: true,
                ..Default::default()
            },
            Report {
                scenario: "skip".into(),
                engine: "emulator".into(),
                skipped: Some("kernel gap: no <ipvlan>".into()),
                ..Default::default()
            },
            Report {
                scenario: "bad".into(),
                engine: "dockerd".into(),
                error: Some("step 3: c1 -> c2 | unreachable\nmore".into()),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn reach_cells_are_kept_and_left_out_when_empty() {
        let mut s = StepReport::default();
        assert!(serde_json::to_value(&s).unwrap().get("reach").is_none());
        s.reach.push(ReachCell {
            from: "c1".into(),
            to: "c2".into(),
            ok: false,
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["reach"][0]["to"], "c2");
        // A report written before these fields (a VM's, an old run's) still reads.
        let old: StepReport =
            serde_json::from_str(r#"{"name":"x","line":1,"passed":true,"elapsed_ms":3}"#).unwrap();
        assert_eq!((old.started_ms, old.reach.len()), (0, 0));
    }

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
