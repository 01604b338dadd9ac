//! `uplink-counters-start` and `uplink-counters-stop`: the packet counters
//! of each dual-homed host's uplinks (`probe/counters.rs`), before and after, and each uplink's share of the host's
//! packets in each direction.
//!
//! In: the two steps' actions. Out: the counters read, or the verdict with
//! every host's shares in the step's report.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::Runner;
use crate::probe::counters::{self, LinkCounters};
use crate::scenario::Action;

/// (rx_packets, tx_packets) per uplink, per host.
type Counters = BTreeMap<String, LinkCounters>;

impl Runner<'_> {
    pub(super) fn uplink_counters_step(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::UplinkCountersStart { id, hosts } => {
                if self.counters.contains_key(id) {
                    bail!("uplink counters {id} are already read");
                }
                let c = self.read_counters(hosts)?;
                self.counters.insert(id.clone(), c);
                Ok(None)
            }
            Action::UplinkCountersStop { id, min_share } => {
                let before = self
                    .counters
                    .remove(id)
                    .ok_or_else(|| anyhow!("no uplink counters named {id}"))?;
                let hosts: Vec<String> = before.keys().cloned().collect();
                let after = self.read_counters(&hosts)?;
                let (text, short) = shares(&before, &after, *min_share);
                eprintln!("[{}] uplink counters {id}: {text}", self.s.name);
                self.note = Some(text.clone());
                if !short.is_empty() {
                    bail!(
                        "below {min_share} %: {}; all shares: {text}",
                        short.join(", ")
                    );
                }
                Ok(None)
            }
            other => bail!("internal: {other:?} is not an uplink counters step"),
        }
    }

    fn read_counters(&self, hosts: &[String]) -> Result<Counters> {
        let mut out = Counters::new();
        for name in hosts {
            let h = self.w.host(name)?;
            let links: Vec<&str> = h
                .def
                .uplink_links
                .iter()
                .map(|u| u.iface.as_str())
                .collect();
            let c = counters::read(&h.ns, &links).with_context(|| format!("host {name}"))?;
            out.insert(name.clone(), c);
        }
        Ok(out)
    }
}

/// Each uplink's share of its host's packets between `before` and `after`,
/// received and sent: the report's text, and every share below `min` (a
/// host that moved no packet in a direction fails that direction).
fn shares(before: &Counters, after: &Counters, min: u8) -> (String, Vec<String>) {
    let mut text = Vec::new();
    let mut short = Vec::new();
    for (host, links) in after {
        let delta: Vec<(&String, u64, u64)> = links
            .iter()
            .map(|(l, &(rx, tx))| {
                let (rx0, tx0) = before
                    .get(host)
                    .and_then(|b| b.get(l))
                    .copied()
                    .unwrap_or_default();
                (l, rx.saturating_sub(rx0), tx.saturating_sub(tx0))
            })
            .collect();
        let total_rx: u64 = delta.iter().map(|d| d.1).sum();
        let total_tx: u64 = delta.iter().map(|d| d.2).sum();
        let pct = |n: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * n as f64 / total as f64
            }
        };
        let mut parts = Vec::new();
        for (l, rx, tx) in &delta {
            let (r, t) = (pct(*rx, total_rx), pct(*tx, total_tx));
            parts.push(format!("{l} in {r:.1} % ({rx}) out {t:.1} % ({tx})"));
            for (dir, share) in [("in", r), ("out", t)] {
                if share < f64::from(min) {
                    short.push(format!("{host} {l} {dir} {share:.1} %"));
                }
            }
        }
        text.push(format!(
            "{host}: {} (of {total_rx} in, {total_tx} out)",
            parts.join(", ")
        ));
    }
    (text.join("; "), short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &[(&str, u64, u64)]) -> Counters {
        let mut m = BTreeMap::new();
        for (l, rx, tx) in v {
            m.insert(l.to_string(), (*rx, *tx));
        }
        BTreeMap::from([("h1".to_string(), m)])
    }

    #[test]
    fn shares_are_per_direction_of_the_packets_since_the_start() {
        let before = c(&[("up1", 100, 100), ("up2", 1000, 50)]);
        let after = c(&[("up1", 400, 700), ("up2", 1300, 150)]);
        let (text, short) = shares(&before, &after, 25);
        assert_eq!(
            text,
            "h1: up1 in 50.0 % (300) out 85.7 % (600), up2 in 50.0 % (300) out 14.3 % (100) (of 600 in, 700 out)"
        );
        assert_eq!(short, ["h1 up2 out 14.3 %"]);
        assert!(shares(&before, &after, 14).1.is_empty());
    }

    #[test]
    fn a_host_that_moved_nothing_fails_every_uplink() {
        let same = c(&[("up1", 5, 5), ("up2", 5, 5)]);
        assert_eq!(shares(&same, &same, 25).1.len(), 4);
    }
}
