//! The JUnit XML of a run (`harness run --junit FILE`): one `<testcase>`
//! per report, skips as `<skipped>` with their reason, never passes.
//!
//! In: [`Report`]s. Out: the XML text. Pure.

use super::json::Report;
use super::markup::escape_markup;

/// A JUnit XML document (one `<testcase>` per report, classname = engine,
/// with `.gobgpd-vN` for the GoBGP line that ran):
/// skipped runs are `<skipped>` with their reason, never passes.
pub fn junit(reports: &[Report]) -> String {
    let failures = reports
        .iter()
        .filter(|r| r.skipped.is_none() && !r.passed)
        .count();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    let total: u64 = reports.iter().map(|r| r.elapsed_ms).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites><testsuite name=\"harness\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        reports.len(),
        total as f64 / 1000.0
    ));
    for r in reports {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
            escape_markup(&match &r.gobgp {
                Some(l) => format!("{}.gobgpd-{l}", r.engine),
                None => r.engine.clone(),
            }),
            escape_markup(&r.scenario),
            escape_markup(&r.file),
            r.elapsed_ms as f64 / 1000.0
        ));
        if let Some(why) = &r.skipped {
            x.push_str(&format!("<skipped message=\"{}\"/>", escape_markup(why)));
        } else if !r.passed {
            let msg = r.error.as_deref().unwrap_or("failed");
            let first = msg.lines().next().unwrap_or("failed");
            x.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                escape_markup(first),
                escape_markup(&format!(
                    "{msg}\n{}",
                    r.diagnostics.as_deref().unwrap_or("")
                ))
            ));
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::tests::three;

    #[test]
    fn junit_marks_skips_as_skipped_and_failures_as_failures() {
        let x = junit(&three());
        assert!(
            x.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{x}"
        );
        assert!(x.contains("name=\"skip\" file=\"\" time=\"0.000\"><skipped message=\"kernel gap: no &lt;ipvlan&gt;\"/>"), "{x}");
        assert!(
            x.contains("<failure message=\"step 3: c1 -&gt; c2 | unreachable\">"),
            "{x}"
        );
        assert!(
            x.contains("name=\"ok\" file=\"\" time=\"0.000\"></testcase>"),
            "{x}"
        );
    }
}
