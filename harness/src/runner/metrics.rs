//! `expect-metrics`: scrape a host driver's `/metrics` over TCP, as
//! Prometheus would, and check one series.
//!
//! In: the step (host, series as Prometheus writes it, e.g.
//! `ipvlan_bgp_rejected_routes_total{reason="default-route"}`, and bounds),
//! the address the driver serves with `--metrics-listen` (default
//! 127.0.0.1:9473, reached inside the host's namespace from a thread that
//! joined it). Out: the time until the figure held, or a failure naming the
//! figure seen, the one wanted, and the series of that name that exist.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::views::bounds;
use super::{Runner, POLL};
use crate::netns::Netns;
use crate::scenario::Action;
use crate::util::eventually;

/// A series: its name and its labels (order does not matter).
pub(crate) type Series = (String, BTreeMap<String, String>);

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the step scrapes unless told: the README's `--metrics-listen` example.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:9473";

/// Parses `name` or `name{k="v",...}`.
pub(crate) fn parse_series(s: &str) -> std::result::Result<Series, String> {
    let s = s.trim();
    let (name, labels) = match s.split_once('{') {
        None => (s, ""),
        Some((n, rest)) => (
            n,
            rest.strip_suffix('}')
                .ok_or_else(|| format!("{s:?}: labels must end with '}}'"))?,
        ),
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    if !name_ok(name) {
        return Err(format!("{s:?}: {name:?} is not a metric name"));
    }
    let mut out = BTreeMap::new();
    let mut rest = labels.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("{s:?}: write labels as key=\"value\""))?;
        let end = after
            .find('"')
            .ok_or_else(|| format!("{s:?}: unterminated label value"))?;
        let k = k.trim();
        if !name_ok(k) {
            return Err(format!("{s:?}: {k:?} is not a label name"));
        }
        out.insert(k.to_string(), after[..end].to_string());
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Ok((name.to_string(), out))
}

/// Every sample of a text exposition (comments skipped).
pub(crate) fn samples(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((parse_series(series).ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// Checks `want` in the exposition; an absent series counts as 0 (as a
/// counter that never moved), and the message says it was absent.
pub(crate) fn check(
    text: &str,
    want: &Series,
    equals: Option<f64>,
    at_least: Option<f64>,
    at_most: Option<f64>,
) -> std::result::Result<f64, String> {
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

/// `GET /metrics` on `addr` from inside `ns` (HTTP/1.0: the server closes).
pub(crate) fn scrape(ns: &Netns, addr: SocketAddr) -> Result<String> {
    let fd = ns.open()?;
    let raw = std::thread::spawn(move || -> Result<Vec<u8>> {
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
        s.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")?;
        let mut buf = Vec::new();
        s.take(16 << 20).read_to_end(&mut buf)?;
        Ok(buf)
    })
    .join()
    .map_err(|_| anyhow!("scrape thread panicked"))?
    .with_context(|| format!("scrape http://{addr}/metrics in namespace {}", ns.name))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("http://{addr}/metrics answered without an HTTP header"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(anyhow!("http://{addr}/metrics answered {status:?}"));
    }
    Ok(body.to_string())
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
        let (n, took) = eventually(self.scale(*within), POLL, || {
            let text = scrape(ns, addr).map_err(|e| format!("{e:#}"))?;
            check(&text, &want, *equals, *at_least, *at_most)
                .map_err(|e| format!("{host}'s metrics: {e}"))
        })
        .map_err(|e| anyhow!(e))?;
        self.note = Some(format!("{metric} = {n}"));
        Ok(Some(took))
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
    fn series_parse_with_labels_in_any_order() {
        let (n, l) = parse_series(r#"m{b="2", a="1"}"#).unwrap();
        assert_eq!(n, "m");
        assert_eq!(parse_series(r#"m{a="1",b="2"}"#).unwrap().1, l);
        assert!(parse_series("9bad").is_err());
        assert!(parse_series("m{a=1}").is_err());
        assert!(parse_series(r#"m{a="1""#).is_err());
    }

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
        let absent = parse_series("ipvlan_bgp_nope").unwrap();
        let e = check(TEXT, &absent, None, Some(1.0), None).unwrap_err();
        assert!(
            e.contains("absent (counted as 0): expected at least 1"),
            "{e}"
        );
    }
}
