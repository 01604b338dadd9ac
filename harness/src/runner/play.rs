//! The play loop: the networks created, then each step in order, played
//! by the part of the runner its row in the step table names, timed, and
//! reported; the first failure stops the run.
//!
//! In: the [`Runner`] with its world and engine built. Out: the report's
//! steps and `convergence_ms` (what a step's time means is its kind's
//! [`Measure`]). Owns the clock between events and expectations.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{convergence_key, Runner, Span, ABSENT_HOLD, ABSENT_HOLD_MAX_SCALE};
use crate::report::{Report, StepReport};
use crate::scenario::{Action, Measure, Play, Step};
use crate::util::Dur;

impl Runner<'_> {
    pub(super) fn play(&mut self, report: &mut Report, say: &dyn Fn(&str)) -> Result<()> {
        let t0 = Instant::now();
        self.mark_route_tables(t0);
        for net in self.s.networks.iter().filter(|n| n.create) {
            for host in net.hosts_on() {
                self.create_network(&net.name, &host)?;
            }
        }
        let total = self.s.steps.len();
        // Convergence counts from the end of the last event (the networks
        // being created, before the first step).
        self.action = Span {
            start: t0,
            end: Instant::now(),
        };
        for (i, step) in self.s.steps.iter().enumerate() {
            say(&format!("step {}/{total}: {} ...", i + 1, step.name));
            let t = Instant::now();
            if step.kind.measure == Measure::Event {
                // No step looks further back than the start of the last
                // action (or of a route watch or recording still running).
                self.mark_route_tables(t);
            }
            let outcome = self.step(step).map(|took| match step.kind.measure {
                Measure::Event => {
                    self.action = Span {
                        start: t,
                        end: Instant::now(),
                    };
                    if !matches!(step.action, Action::Start { .. } | Action::Stop { .. }) {
                        // Convergence now counts from this event, not the containers.
                        self.wave = None;
                    }
                    None
                }
                // Dated by events: from the action's end to the event
                // (zero when it held before the action ended).
                Measure::Expectation => match self.held_at.take() {
                    Some(at) => took.map(|_| at.saturating_duration_since(self.action.end)),
                    None => took.map(|d| t.duration_since(self.action.end) + d),
                },
                Measure::Own => took,
                Measure::Neither => None,
            });
            let elapsed = t.elapsed();
            let resolution = self.resolution.take().unwrap_or(CLOCK);
            let mut sr = StepReport {
                name: step.name.clone(),
                line: step.line,
                elapsed_ms: elapsed.as_millis() as u64,
                resolution_ms: ms_ceil(resolution),
                started_ms: t.duration_since(self.started).as_millis() as u64,
                reach: std::mem::take(&mut self.reach),
                ..StepReport::default()
            };
            match outcome {
                Ok(conv) => {
                    sr.passed = true;
                    sr.detail = self.note.take();
                    if let Some(d) = &sr.detail {
                        say(&format!("step {}/{total}: {d}", i + 1));
                    }
                    if let Some(c) = conv {
                        sr.convergence_ms = Some(c.as_millis() as u64);
                        report
                            .convergence_ms
                            .insert(convergence_key(i, &step.name), c.as_millis() as u64);
                        let what = match step.kind.measure {
                            Measure::Own => "measured",
                            _ => "held after the last event in",
                        };
                        say(&format!(
                            "step {}/{total}: ok, {what} {} ms (resolution {} ms)",
                            i + 1,
                            c.as_millis(),
                            ms_ceil(resolution)
                        ));
                    } else {
                        say(&format!(
                            "step {}/{total}: ok ({:.3}s)",
                            i + 1,
                            elapsed.as_secs_f64()
                        ));
                    }
                    report.steps.push(sr);
                }
                Err(e) => {
                    sr.detail = Some(format!("{e:#}"));
                    report.steps.push(sr);
                    return Err(e.context(format!(
                        "{}:{}: step {} ({})",
                        self.s.file,
                        step.line,
                        i + 1,
                        step.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs one step; `Some(duration)` for expectations that measured convergence.
    /// Who plays it is its row in the step table (`scenario::step_kinds`):
    /// expectations (and the snapshots, probes and watches they compare
    /// against) in `expect.rs`, `routes.rs` (routes, dated by route events),
    /// `reachability.rs` (probed every 2 ms), `flows.rs`, `uplink_counters.rs`,
    /// `metrics.rs`, `router_bgp.rs`,
    /// `withdrawn.rs` and `route_events.rs`; everything else that does
    /// something in `actions.rs`; the cluster IPAM's steps in `ipam.rs`.
    pub(super) fn step(&mut self, step: &Step) -> Result<Option<Duration>> {
        let a = &step.action;
        match (step.kind.play, a) {
            (
                _,
                Action::EtcdKill { .. }
                | Action::EtcdStart { .. }
                | Action::EtcdFreeze { .. }
                | Action::EtcdThaw { .. }
                | Action::IpamReleaseHost { .. }
                | Action::ExpectIpam { .. },
            ) => self.ipam_step(a),
            (Play::Expect, Action::ExpectMetrics { .. }) => self.expect_metrics(a),
            (
                Play::Expect,
                Action::ExpectRoute { .. }
                | Action::ExpectRouterRoute { .. }
                | Action::ExpectRoutes { .. }
                | Action::ExpectConverged { .. }
                | Action::RouteWatchStart { .. }
                | Action::RouteWatchStop { .. },
            ) => self.expect_route(a),
            (
                Play::Expect,
                Action::ExpectReachable { .. }
                | Action::ExpectUnreachable { .. }
                | Action::ExpectMatrix { .. }
                | Action::ProbeStart { .. }
                | Action::ProbeStop { .. },
            ) => self.expect_reach(a),
            (Play::Expect, Action::FlowsStart { .. } | Action::FlowsStop { .. }) => {
                self.flows_step(a)
            }
            (
                Play::Expect,
                Action::UplinkCountersStart { .. } | Action::UplinkCountersStop { .. },
            ) => self.uplink_counters_step(a),
            (Play::Expect, Action::ExpectRouterBgp { .. }) => self.expect_router_bgp(a),
            (Play::Expect, Action::ExpectRouterReceived { .. }) => self.expect_router_received(a),
            (Play::Expect, Action::ExpectWithdrawn { .. }) => self.expect_withdrawn(a),
            (Play::Expect, Action::RouteEventsStart { .. } | Action::RouteEventsStop { .. }) => {
                self.route_events(a)
            }
            (Play::Expect, _) => self.expect(a),
            (Play::Act, _) => self.act(a),
        }
    }

    pub(super) fn scale(&self, d: Dur) -> Duration {
        self.w.opts.scale(d.0)
    }

    /// The scaled hold of an expectation: as written, or [`ABSENT_HOLD`]
    /// (scaled by at most [`ABSENT_HOLD_MAX_SCALE`]) when it expects
    /// something to be absent and names no hold.
    pub(super) fn hold_for(&self, present: bool, hold: Option<Dur>) -> Option<Duration> {
        match (hold, present) {
            (Some(h), _) => Some(self.scale(h)),
            (None, false) => {
                Some(ABSENT_HOLD.mul_f64(self.w.opts.time_scale.min(ABSENT_HOLD_MAX_SCALE)))
            }
            (None, true) => None,
        }
    }
}

/// The resolution of a figure read from the clock around an action or from
/// an event's stamp: the report's unit.
const CLOCK: Duration = Duration::from_millis(1);

/// Whole milliseconds, rounded up (a resolution is never reported finer
/// than it was), at least 1.
fn ms_ceil(d: Duration) -> u64 {
    (d.as_micros().div_ceil(1000) as u64).max(1)
}
