//! What the learner refused, told: counts per reason, a sample of the
//! latest refusals, and logs within a budget; the learned and stale figures.
//!
//! In: each refusal (reason, prefix, next hop, peer, instant). Out: one log
//! line for the first refusal per reason, then at most one summary per
//! reason every [`LOG_WINDOW`] (kept by [`super::reject_log`]); and, at [`Learner::publish`], the counts,
//! the new samples and the RIB's sizes pushed to [`crate::metrics`].

use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::reject_log::SAMPLE;
use super::Learner;
use crate::bgp::policy::Reject;
use crate::metrics::RejectedSample;

impl Learner {
    pub(super) fn note_reject(
        &mut self,
        reason: Reject,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        peer: &str,
        now: Instant,
    ) {
        *self.pending_counts.entry(reason.label()).or_default() += 1;
        if self.sample.len() == SAMPLE {
            self.sample.pop_front();
        }
        self.sample.push_back((*prefix, reason));
        self.sample_new += 1;
        self.log.reject(reason, prefix, next_hop, peer, now);
    }

    pub(super) fn publish(&mut self) {
        let learned = self.rib.len();
        let stale = self.stale.len();
        let counts: Vec<(&'static str, u64)> = self.pending_counts.drain().collect();
        let new: Vec<RejectedSample> = self
            .sample
            .iter()
            .skip(self.sample.len() - self.sample_new.min(self.sample.len()))
            .map(|(p, r)| RejectedSample {
                prefix: p.to_string(),
                reason: r.label(),
            })
            .collect();
        self.sample_new = 0;
        self.metrics.bgp(|b| {
            b.learned = learned;
            b.stale = stale;
            for (label, n) in counts {
                *b.rejected.entry(label.to_string()).or_default() += n;
            }
            for s in new {
                if b.recent_rejected.len() == SAMPLE {
                    b.recent_rejected.pop_front();
                }
                b.recent_rejected.push_back(s);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn the_log_budget_is_one_line_then_one_summary_per_reason_per_window() {
        let mut l = learner();
        let t0 = Instant::now();
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            l.learn_at(
                vec![
                    path("172.16.0.1/32", "192.0.2.2", false),
                    path("0.0.0.0/0", "192.0.2.2", false),
                    path("127.0.0.1/32", "192.0.2.2", false),
                ],
                now,
            );
            l.expire(now);
        }
        // 3 reasons: a first line each, then a summary every 10 s over 59 s.
        let lines = l.reject_log_lines();
        assert!(lines <= 3 + 3 * 6, "{lines} log lines");
        assert!(lines >= 3 + 3 * 5, "{lines} log lines");
    }
}
