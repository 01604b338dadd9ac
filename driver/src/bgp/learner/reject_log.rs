//! The refusal log's budget: one line for the first refusal per reason,
//! then at most one summary per reason every [`LOG_WINDOW`].
//!
//! In: each refusal (reason, prefix, next hop, peer, instant), from
//! [`super::report`]. Out: log lines within that budget, and the count of
//! lines written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::warn;

use crate::bgp::policy::Reject;

/// Refused prefixes kept as a sample for `status`.
pub const SAMPLE: usize = 1000;
/// After the first line per reason, at most one summary line per reason per window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Rate limit for rejection logs, per reason.
#[derive(Debug, Default)]
pub(super) struct RejectLog {
    reasons: HashMap<Reject, ReasonLog>,
    /// Lines emitted so far (the tests hold the budget with it).
    pub(super) lines: u64,
}

#[derive(Debug)]
struct ReasonLog {
    suppressed: u64,
    window_start: Instant,
}

impl RejectLog {
    pub(super) fn reject(
        &mut self,
        reason: Reject,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        peer: &str,
        now: Instant,
    ) {
        match self.reasons.get_mut(&reason) {
            None => {
                warn!(prefix = %prefix, next_hop = ?next_hop, peer = %peer, reason = reason.label(), "rejected a learned route: {} (further rejections for this reason are summarised every {} s)", reason.explain(), LOG_WINDOW.as_secs());
                self.lines += 1;
                self.reasons.insert(
                    reason,
                    ReasonLog {
                        suppressed: 0,
                        window_start: now,
                    },
                );
            }
            Some(r) => r.suppressed += 1,
        }
        self.flush(now);
    }

    /// Emits the summaries whose window is over.
    pub(super) fn flush(&mut self, now: Instant) {
        for (reason, r) in self.reasons.iter_mut() {
            if r.suppressed > 0 && now.duration_since(r.window_start) >= LOG_WINDOW {
                let secs = now.duration_since(r.window_start).as_secs();
                warn!(
                    reason = reason.label(),
                    count = r.suppressed,
                    "{} more paths rejected as {} in the last {} s",
                    r.suppressed,
                    reason.label(),
                    secs
                );
                self.lines += 1;
                r.suppressed = 0;
                r.window_start = now;
            }
        }
    }
}
