//! A driver's Prometheus metrics, as Prometheus reads them: `GET /metrics`
//! over TCP from inside a host's namespace, the text exposition parsed into
//! series and values.
//!
//! In: a namespace and an address (the driver's `--metrics-listen`), or a
//! series as Prometheus writes it (`name{k="v",...}`). Out: the exposition's
//! text, its samples, a parsed series; or an error naming what is wrong.
//! Owns the scrape's timeout; the scenario checks use [`parse_series`] on
//! `expect-metrics` steps, the runner the rest.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::netns::Netns;

/// A series: its name and its labels (order does not matter).
pub type Series = (String, BTreeMap<String, String>);

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the step scrapes unless told: the README's `--metrics-listen` example.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9473";

/// Parses `name` or `name{k="v",...}`.
pub fn parse_series(s: &str) -> std::result::Result<Series, String> {
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
pub fn samples(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((parse_series(series).ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// Whether the exposition has a family that `name` belongs to: a `# TYPE`
/// line for it (a counter's `_total`, a histogram's `_bucket`, `_sum` and
/// `_count` belong to their family), or a sample of that name.
pub fn has_family(text: &str, name: &str) -> bool {
    let declared = text.lines().filter_map(|l| {
        let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
        w.next()
    });
    let mut declared = declared;
    declared.any(|fam| {
        name == fam
            || name.strip_prefix(fam).is_some_and(|rest| {
                matches!(rest, "_total" | "_bucket" | "_sum" | "_count" | "_created")
            })
    }) || samples(text).iter().any(|((n, _), _)| n == name)
}

/// `GET /metrics` on `addr` from inside `ns` (HTTP/1.0: the server closes).
pub fn scrape(ns: &Netns, addr: SocketAddr) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_with_labels_in_any_order() {
        let (n, l) = parse_series(r#"m{b="2", a="1"}"#).unwrap();
        assert_eq!(n, "m");
        assert_eq!(parse_series(r#"m{a="1",b="2"}"#).unwrap().1, l);
        assert!(parse_series("9bad").is_err());
        assert!(parse_series("m{a=1}").is_err());
        assert!(parse_series(r#"m{a="1""#).is_err());
    }
}
