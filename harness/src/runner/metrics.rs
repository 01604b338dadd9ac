//! `expect-metrics`: scrape a host driver's `/metrics` over TCP, as
//! Prometheus would, and check one series.
//!
//! In: the step (host, series as Prometheus writes it, e.g.
//! `ipvlan_bgp_rejected_routes_total{reason="default-route"}`, and bounds),
//! the address the driver serves with `--metrics-listen` (default
//! 127.0.0.1:9473, reached inside the host's namespace from a thread that
//! joined it; the scrape and the parsing are `probe::metrics`). Out: the
//! time until the figure held, or a failure naming the figure seen, the one
//! wanted, and the series of that name that exist.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::poll::poll;
use super::views::bounds;
use super::Runner;
use crate::probe::metrics::{has_family, parse_series, samples, scrape, Series, DEFAULT_ADDRESS};
use crate::scenario::Action;

/// Checks `want` in the exposition; an absent series of a family the
/// exposition has counts as 0 (a labelled counter that never moved), and
/// the message says it was absent; a name of no family there is an error
/// (a misspelt or removed metric would otherwise read as a passing 0).
fn check(
    text: &str,
    want: &Series,
    equals: Option<f64>,
    at_least: Option<f64>,
    at_most: Option<f64>,
) -> std::result::Result<f64, String> {
    if !has_family(text, &want.0) {
        return Err(format!(
            "{} is no metric of this driver (no family of that name in its exposition)",
            want.0
        ));
    }
    let all = samples(text);
    let seen = all.iter().find(|(s, _)| s == want).map(|(_, v)| *v);
    let n = seen.unwrap_or(0.0);
    let fail = |why: String| {
        let same_name: Vec<String> = all
            .iter()
            .filter(|((name, _), _)| *name == want.0)
            .map(|((name, labels), v)| format!("{}{} {v}", name, show_labels(labels)))
            .collect();
        format!(
            "{}{} is {}: {why}; series named {} now: {}",
            want.0,
            show_labels(&want.1),
            seen.map_or_else(|| "absent (counted as 0)".to_string(), |v| v.to_string()),
            want.0,
            if same_name.is_empty() {
                "none".to_string()
            } else {
                same_name.join(", ")
            }
        )
    };
    if let Some(e) = equals {
        if n != e {
            return Err(fail(format!("expected {e}")));
        }
    }
    bounds(n, at_least, at_most).map_err(fail)?;
    Ok(n)
}

fn show_labels(l: &BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

impl Runner<'_> {
    /// Plays an `expect-metrics` step.
    pub(super) fn expect_metrics(&mut self, a: &Action) -> Result<Option<Duration>> {
        let Action::ExpectMetrics {
            host,
            address,
            metric,
            equals,
            at_least,
            at_most,
            within,
        } = a
        else {
            return Err(anyhow!("internal: {a:?} is not expect-metrics"));
        };
        let want = parse_series(metric).map_err(|e| anyhow!(e))?;
        let addr: SocketAddr = match address {
            Some(a) => *a,
            None => DEFAULT_ADDRESS.parse().context("default metrics address")?,
        };
        let ns = &self.w.host(host)?.ns;
        let p = poll(self.scale(*within), || {
            let text = scrape(ns, addr).map_err(|e| format!("{e:#}"))?;
            check(&text, &want, *equals, *at_least, *at_most)
                .map_err(|e| format!("{host}'s metrics: {e}"))
        })?;
        self.note = Some(format!("{metric} = {}", p.value));
        self.resolution = Some(p.resolution);
        Ok(Some(p.took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total X.\n# TYPE x_total counter\n\
        ipvlan_bgp_rejected_routes_total{reason=\"default-route\"} 1\n\
        ipvlan_bgp_rejected_routes_total{reason=\"outside-pools\"} 4\n\
        ipvlan_bgp_join_to_announce_seconds_bucket{le=\"+Inf\"} 2\n\
        ipvlan_bgp_announced_prefixes 2\n";

    #[test]
    fn checks_equals_and_bounds() {
        let s = |t: &str| parse_series(t).unwrap();
        assert_eq!(
            check(
                TEXT,
                &s("ipvlan_bgp_announced_prefixes"),
                Some(2.0),
                None,
                None
            ),
            Ok(2.0)
        );
        assert!(check(
            TEXT,
            &s(r#"ipvlan_bgp_join_to_announce_seconds_bucket{le="+Inf"}"#),
            None,
            Some(2.0),
            None
        )
        .is_ok());
        assert!(check(
            TEXT,
            &s(r#"ipvlan_bgp_rejected_routes_total{reason="reserved"}"#),
            Some(0.0),
            None,
            None
        )
        .is_ok());
    }

    #[test]
    fn failure_names_the_figure_and_its_siblings() {
        let want =
            parse_series(r#"ipvlan_bgp_rejected_routes_total{reason="default-route"}"#).unwrap();
        let e = check(TEXT, &want, Some(2.0), None, None).unwrap_err();
        assert!(
            e.contains(r#"{reason="default-route"} is 1: expected 2"#),
            "{e}"
        );
        assert!(e.contains(r#"{reason="outside-pools"} 4"#), "{e}");
        let absent =
            parse_series(r#"ipvlan_bgp_rejected_routes_total{reason="reserved"}"#).unwrap();
        let e = check(TEXT, &absent, None, Some(1.0), None).unwrap_err();
        assert!(
            e.contains("absent (counted as 0): expected at least 1"),
            "{e}"
        );
        // A name of no family is never a passing 0.
        let nope = parse_series("ipvlan_bgp_health_fail_opens_total").unwrap();
        let e = check(TEXT, &nope, Some(0.0), None, None).unwrap_err();
        assert!(e.contains("no metric of this driver"), "{e}");
        let declared = "# TYPE ipvlan_bgp_kernel_drift counter\nipvlan_bgp_kernel_drift_total 0\n";
        let drift = parse_series("ipvlan_bgp_kernel_drift_total").unwrap();
        assert_eq!(check(declared, &drift, Some(0.0), None, None), Ok(0.0));
    }
}
