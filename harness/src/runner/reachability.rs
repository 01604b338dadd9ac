//! The reachability expectations, probed every 2 ms: every `from` reaches
//! every `to` (`expect-reachable`), none does (`expect-unreachable`),
//! every pair of a set (`expect-matrix`); and the background loss probes
//! (`probe-start`, `probe-stop`).
//!
//! In: one such [`Action`]. Out: how long it took to hold, dated by the
//! probes: the arrival of the last pair's first reply, or the send time of
//! the first echo after which no pair answered; its resolution is the probe
//! interval (2 ms; coarser only for many waiting pairs at once, see
//! `probe::fast`). TCP probes connect once per poll (their resolution says
//! so). Or the error naming the pairs that differ. Owns nothing past the
//! step but the background probes.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::poll::poll;
use super::{Runner, PROBE_TIMEOUT};
use crate::probe::fast::{FastProbe, PairSeen};
use crate::probe::{Member, Prober};
use crate::scenario::{Action, Probe};

/// How often a step looks at what the background probes saw.
const LOOK: Duration = Duration::from_millis(2);

/// "a -> b (addr)" for each pair `pick` selects.
fn list(pairs: &[(Member, Member)], pick: impl Fn(usize) -> bool) -> Vec<String> {
    pairs
        .iter()
        .enumerate()
        .filter(|(i, _)| pick(*i))
        .map(|(_, (a, b))| format!("{} -> {} ({})", a.label, b.label, b.addr))
        .collect()
}

/// Waits until every pair answered once (at most `within`); answers what
/// each pair showed, or the pairs that never answered.
fn first_replies(
    pairs: &[(Member, Member)],
    within: Duration,
) -> Result<std::result::Result<Vec<PairSeen>, Vec<PairSeen>>> {
    let probe = FastProbe::start(pairs, true)?;
    let end = Instant::now() + within;
    loop {
        let seen = probe.seen();
        if seen.iter().all(|p| p.first_reply.is_some()) {
            return Ok(Ok(seen));
        }
        if Instant::now() >= end {
            return Ok(Err(probe.stop()));
        }
        std::thread::sleep(LOOK);
    }
}

/// When the last pair first answered, and the probe interval then.
fn last_first_reply(seen: &[PairSeen]) -> Option<(Instant, Duration)> {
    let at = seen
        .iter()
        .filter_map(|p| p.first_reply)
        .map(|r| r.0)
        .max()?;
    let res = seen
        .iter()
        .filter_map(|p| p.first_reply)
        .map(|r| r.1)
        .max()?;
    Some((at, res))
}

impl Runner<'_> {
    /// Plays a reachability expectation or a background probe.
    pub(super) fn expect_reach(&mut self, a: &Action) -> Result<Option<Duration>> {
        let t = Instant::now();
        match a {
            Action::ExpectReachable {
                from,
                to,
                within,
                probe: Probe::Icmp,
                family,
            } => {
                let pairs = self.pairs_of(from, to, *family)?;
                let seen = first_replies(&pairs, self.scale(*within))?;
                let ok: Vec<bool> = match &seen {
                    Ok(s) | Err(s) => s.iter().map(|p| p.first_reply.is_some()).collect(),
                };
                self.record_reach(&pairs, &ok);
                let seen = seen.map_err(|_| {
                    let missing = list(&pairs, |i| !ok[i]);
                    anyhow!(
                        "still not true after {:?}: {} of {} pairs unreachable: {}",
                        self.scale(*within),
                        missing.len(),
                        pairs.len(),
                        missing.join(", ")
                    )
                })?;
                let (at, res) = last_first_reply(&seen).unwrap_or((t, LOOK));
                self.held_at = Some(at);
                self.resolution = Some(res);
                self.note = Some(format!(
                    "{} pairs answered, the last {} ms after the last action ended (probed every {} ms)",
                    pairs.len(),
                    at.saturating_duration_since(self.action.end).as_millis(),
                    res.as_millis()
                ));
                Ok(Some(at.saturating_duration_since(t)))
            }
            Action::ExpectReachable {
                from,
                to,
                within,
                probe: Probe::Tcp,
                family,
            } => {
                let pairs = self.pairs_of(from, to, *family)?;
                let mut ok = vec![false; pairs.len()];
                let p = poll(self.scale(*within), || {
                    let todo: Vec<usize> = (0..pairs.len()).filter(|i| !ok[*i]).collect();
                    let sub: Vec<_> = todo.iter().map(|i| pairs[*i].clone()).collect();
                    for (i, r) in todo.iter().zip(self.probe(&sub, Probe::Tcp)?) {
                        ok[*i] = r;
                    }
                    self.record_reach(&pairs, &ok);
                    let missing = list(&pairs, |i| !ok[i]);
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} of {} pairs unreachable over TCP: {}",
                            missing.len(),
                            pairs.len(),
                            missing.join(", ")
                        ))
                    }
                })?;
                self.resolution = Some(p.resolution);
                Ok(Some(p.took))
            }
            Action::ExpectUnreachable {
                from,
                to,
                within,
                hold,
                family,
            } => {
                let pairs = self.pairs_of(from, to, *family)?;
                let probe = FastProbe::start(&pairs, false)?;
                let end = Instant::now() + self.scale(*within);
                // A pair is silent once no echo sent in the last
                // PROBE_TIMEOUT... was answered since its first silent one.
                let silent = |p: &PairSeen, now: Instant| {
                    p.silent_since
                        .is_some_and(|s| now.saturating_duration_since(s) >= PROBE_TIMEOUT)
                };
                let (seen, decided) = loop {
                    let seen = probe.seen();
                    let now = Instant::now();
                    if seen.iter().all(|p| silent(p, now)) {
                        break (seen, now);
                    }
                    if now >= end {
                        let reached = list(&pairs, |i| !silent(&seen[i], now));
                        bail!(
                            "still not true after {:?}: still reachable: {}",
                            self.scale(*within),
                            reached.join(", ")
                        );
                    }
                    std::thread::sleep(LOOK);
                };
                // Since when every pair has been silent.
                let since: Vec<Instant> = seen
                    .iter()
                    .map(|p| p.silent_since.unwrap_or(decided))
                    .collect();
                let at = since.iter().copied().max().unwrap_or(decided);
                let res = seen.iter().map(|p| p.interval).max().unwrap_or(LOOK);
                if let Some(h) = hold {
                    let until = decided + self.scale(*h);
                    while Instant::now() < until + PROBE_TIMEOUT {
                        std::thread::sleep(LOOK);
                    }
                    let later = probe.stop();
                    // An echo sent after a pair fell silent (and before the
                    // hold ended) that was answered: reachable again.
                    let back = list(&pairs, |i| {
                        later[i]
                            .last_answered
                            .is_some_and(|t| t >= since[i] && t <= until)
                    });
                    if !back.is_empty() {
                        bail!(
                            "became reachable during the {:?} hold: {}",
                            self.scale(*h),
                            back.join(", ")
                        );
                    }
                }
                self.held_at = Some(at);
                self.resolution = Some(res);
                self.note = Some(format!(
                    "{} pairs silent, the last since {} ms after the last action ended (probed every {} ms)",
                    pairs.len(),
                    at.saturating_duration_since(self.action.end).as_millis(),
                    res.as_millis()
                ));
                Ok(Some(at.saturating_duration_since(t)))
            }
            Action::ExpectMatrix {
                members,
                within,
                family,
            } => {
                let members: Vec<String> = match members {
                    Some(m) => self.s.expand(m),
                    None => self.running.keys().cloned().collect(),
                };
                if members.len() < 2 {
                    bail!("a matrix needs at least two running members");
                }
                let pairs = self.pairs_of(&members, &members, *family)?;
                let within = self.scale(*within);
                let end = t + within;
                // Every pair's first answer, probed every 2 ms...
                let seen = first_replies(&pairs, within)?;
                let once: Vec<bool> = match &seen {
                    Ok(s) | Err(s) => s.iter().map(|p| p.first_reply.is_some()).collect(),
                };
                self.record_reach(&pairs, &once);
                let seen = seen.map_err(|_| {
                    let missing = list(&pairs, |i| !once[i]);
                    anyhow!(
                        "still not true after {within:?}: {} of {} pairs unreachable: {}",
                        missing.len(),
                        pairs.len(),
                        missing.join(", ")
                    )
                })?;
                let (mut at, mut res) = last_first_reply(&seen).unwrap_or((t, LOOK));
                // ...then every pair again in one round: a pair that was
                // reachable once and broke since does not count.
                let mut last_round = Instant::now();
                let mut rounds = 0;
                loop {
                    let round = Instant::now();
                    let ok = self.probe(&pairs, Probe::Icmp).map_err(|e| anyhow!(e))?;
                    rounds += 1;
                    self.record_reach(&pairs, &ok);
                    if ok.iter().all(|o| *o) {
                        if rounds > 1 {
                            // Whole again only in a later round: dated by it.
                            at = Instant::now();
                            res = round - last_round;
                        }
                        break;
                    }
                    if Instant::now() >= end {
                        let lost = list(&pairs, |i| !ok[i]);
                        bail!(
                            "every pair was reachable once, but in the final round (all pairs at once) {} of {} were not (reachable earlier): {}",
                            lost.len(),
                            pairs.len(),
                            lost.join(", ")
                        );
                    }
                    last_round = round;
                    std::thread::sleep(super::POLL);
                }
                self.held_at = Some(at);
                self.resolution = Some(res);
                self.note = Some(format!(
                    "{} pairs answered, the last {} ms after the last action ended (probed every {} ms); then all at once in one round",
                    pairs.len(),
                    at.saturating_duration_since(self.action.end).as_millis(),
                    res.as_millis()
                ));
                Ok(Some(at.saturating_duration_since(t)))
            }
            Action::ProbeStart {
                id: name,
                from,
                to,
                interval,
                family,
            } => {
                if self.probers.contains_key(name) {
                    bail!("probe {name} is already running");
                }
                let pairs = self.pairs_of(from, to, *family)?;
                let p = Prober::start(pairs, interval.0)?;
                self.probers.insert(name.clone(), p);
                Ok(None)
            }
            Action::ProbeStop {
                id: name,
                max_loss,
                max_outage,
            } => {
                let p = self
                    .probers
                    .remove(name)
                    .ok_or_else(|| anyhow!("no probe named {name}"))?;
                let interval = p.interval;
                let stats = p.stop();
                let lost: u64 = stats.iter().map(|s| s.sent - s.received.min(s.sent)).sum();
                let sent: u64 = stats.iter().map(|s| s.sent).sum();
                let outage = |s: &crate::probe::PairStats| s.longest_outage;
                let longest = stats.iter().map(outage).max().unwrap_or_default();
                let last_event = self.action.end;
                let detail: Vec<String> = stats
                    .iter()
                    .map(|s| {
                        // Where the outage sits against the last event (a
                        // negative offset: it began before that event).
                        let began = s.outage_began.map(|b| {
                            if b >= last_event {
                                format!(", began {:?} after the last event", b - last_event)
                            } else {
                                format!(", began {:?} before the last event", last_event - b)
                            }
                        });
                        format!(
                            "{}->{}: {}/{} answered, longest outage {:?} ({} probes lost in a row, every {:?}){}",
                            s.from,
                            s.to,
                            s.received,
                            s.sent,
                            outage(s),
                            s.longest_gap,
                            interval,
                            began.unwrap_or_default()
                        )
                    })
                    .collect();
                eprintln!(
                    "[{}] probe {name}: {sent} sent, {lost} lost, longest outage {longest:?}; {}",
                    self.s.name,
                    detail.join("; ")
                );
                if sent == 0 {
                    bail!("probe {name} sent nothing");
                }
                if let Some(limit) = max_outage {
                    if longest > self.scale(*limit) {
                        bail!(
                            "probe {name}: longest outage {longest:?} exceeds {:?}: {}",
                            self.scale(*limit),
                            detail.join("; ")
                        );
                    }
                }
                // Without an outage limit, no loss is allowed unless said otherwise.
                let allowed = max_loss.unwrap_or(if max_outage.is_some() { u64::MAX } else { 0 });
                if lost > allowed {
                    bail!(
                        "probe {name} lost {lost} of {sent} probes (allowed {allowed}): {}",
                        detail.join("; ")
                    );
                }
                // The outage is the convergence this probe measured, from
                // the probes' send stamps: its resolution is the interval.
                self.resolution = Some(interval);
                Ok(Some(longest))
            }
            other => bail!("internal: {other:?} is not a reachability step"),
        }
    }
}
