//! `flows-start` and `flows-stop`: UDP flows between two members in the
//! background (`probe/flows.rs`), their loss split into the way there and
//! the way back, and each flow's longest outage.
//!
//! In: the two steps' actions. Out: the flows started, or the verdict with
//! a per-flow summary in the step's report; its time is the longest outage
//! of all flows (resolution: the interval).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::Runner;
use crate::probe::flows::{FlowStats, Flows, LATE};
use crate::scenario::Action;

impl Runner<'_> {
    pub(super) fn flows_step(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::FlowsStart {
                id,
                from,
                to,
                flows,
                interval,
                family,
            } => {
                if self.flows.contains_key(id) {
                    bail!("flows {id} are already running");
                }
                let (f, t) = (self.member(from, *family)?, self.member(to, *family)?);
                let probe = Flows::start(&f, &t, *flows, interval.0)?;
                self.note = Some(format!(
                    "{flows} flows {} -> {} ({}), one datagram each every {:?}",
                    f.label, t.label, t.addr, interval.0
                ));
                self.flows.insert(id.clone(), probe);
                Ok(None)
            }
            Action::FlowsStop {
                id,
                max_loss,
                max_outage,
            } => {
                let probe = self
                    .flows
                    .remove(id)
                    .ok_or_else(|| anyhow!("no flows named {id}"))?;
                let interval = probe.interval;
                let stats = probe.stop()?;
                let summary = summary(&stats, interval, self.action.end);
                eprintln!("[{}] flows {id}: {summary}", self.s.name);
                self.note = Some(summary.clone());
                self.resolution = Some(interval);
                let sent: u64 = stats.iter().map(|f| f.sent).sum();
                if sent == 0 {
                    bail!("flows {id} sent nothing");
                }
                // An outage that runs to the stop has no end to measure:
                // whatever the limits, the flows did not recover.
                let out: Vec<String> = stats
                    .iter()
                    .filter(|f| f.still_out)
                    .map(|f| f.port.to_string())
                    .collect();
                if !out.is_empty() {
                    bail!(
                        "flows {id}: {} flows were still out when they stopped (ports {}): {summary}",
                        out.len(),
                        out.join(", ")
                    );
                }
                let longest = stats
                    .iter()
                    .map(|f| f.longest_outage)
                    .max()
                    .unwrap_or_default();
                if let Some(limit) = max_outage {
                    let limit = self.scale(*limit);
                    if longest > limit {
                        bail!(
                            "flows {id}: longest outage {longest:?} exceeds {limit:?}: {summary}"
                        );
                    }
                }
                let allowed = max_loss.unwrap_or(if max_outage.is_some() { u64::MAX } else { 0 });
                if let Some(f) = stats
                    .iter()
                    .find(|f| f.sent.saturating_sub(f.echoed) > allowed)
                {
                    bail!(
                        "flows {id}: the flow from port {} lost {} of {} (allowed {allowed} per flow): {summary}",
                        f.port,
                        f.sent - f.echoed,
                        f.sent
                    );
                }
                Ok(Some(longest))
            }
            other => bail!("internal: {other:?} is not a flows step"),
        }
    }
}

/// One line for the report: totals, then the flows that lost anything,
/// worst outage first (at most 8 of them named).
fn summary(stats: &[FlowStats], interval: Duration, last_event: std::time::Instant) -> String {
    let sum = |f: fn(&FlowStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (sent, there, back, late, unsent) = (
        sum(|f| f.sent),
        sum(FlowStats::lost_there),
        sum(FlowStats::lost_back),
        sum(|f| f.late),
        sum(|f| f.unsent),
    );
    let mut lossy: Vec<&FlowStats> = stats.iter().filter(|f| f.echoed < f.sent).collect();
    lossy.sort_by_key(|f| std::cmp::Reverse(f.longest_outage));
    let longest = lossy.first().map(|f| f.longest_outage).unwrap_or_default();
    let mut out = format!(
        "{} flows, {sent} datagrams sent every {interval:?} per flow, {} lost ({there} on the way there, of which {unsent} refused by the sender's namespace, {back} on the way back, of which {late} came back later than {LATE:?}); {} flows lost something, the longest outage {longest:?} (resolution {interval:?})",
        stats.len(),
        there + back,
        lossy.len(),
    );
    for f in lossy.iter().take(8) {
        let began = f.outage_began.map(|b| {
            if b >= last_event {
                format!(", began {:?} after the last event", b - last_event)
            } else {
                format!(", began {:?} before the last event", last_event - b)
            }
        });
        out.push_str(&format!(
            "; port {}: {}/{} back, {} lost there, {} back, outage {:?}{}{}",
            f.port,
            f.echoed,
            f.sent,
            f.lost_there(),
            f.lost_back(),
            f.longest_outage,
            began.unwrap_or_default(),
            if f.still_out {
                ", still out at the stop"
            } else {
                ""
            }
        ));
    }
    if lossy.len() > 8 {
        out.push_str(&format!("; and {} more", lossy.len() - 8));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_summary_splits_loss_by_direction_and_names_the_worst_flows() {
        let now = Instant::now();
        let ok = FlowStats {
            port: 40_000,
            sent: 100,
            arrived: 100,
            echoed: 100,
            ..FlowStats::default()
        };
        let bad = FlowStats {
            port: 40_001,
            sent: 100,
            arrived: 60,
            echoed: 50,
            late: 2,
            unsent: 3,
            longest_outage: Duration::from_millis(500),
            outage_began: Some(now + Duration::from_millis(20)),
            still_out: true,
        };
        let s = summary(&[ok, bad], Duration::from_millis(10), now);
        assert!(s.starts_with("2 flows, 200 datagrams sent every 10ms per flow, 50 lost (40 on the way there, of which 3 refused by the sender's namespace, 10 on the way back, of which 2 came back later than 1s); 1 flows lost something, the longest outage 500ms"), "{s}");
        assert!(s.contains("; port 40001: 50/100 back, 40 lost there, 10 back, outage 500ms, began 20ms after the last event, still out at the stop"), "{s}");
        assert!(!s.contains("port 40000"), "{s}");
    }
}
