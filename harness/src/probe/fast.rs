//! Reachability stamped to the probe interval: every pair pinged every
//! 2 ms (slower only when so many pairs wait that the rate would pass
//! [`MAX_RATE`]), each echo's send time and each reply's arrival recorded.
//!
//! In: pairs of [`Member`]s and whether pairs that answered go on being
//! probed (an unreachability check watches them; a reachability check
//! stops at the first answer). Out: per pair, when it first answered, when
//! the newest answered echo was sent and the first echo sent after it, and
//! the interval in effect then (the figure's resolution). Owns one raw
//! socket and one thread per source namespace and family, until
//! [`FastProbe::stop`] or the drop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use socket2::Socket;

use super::reach::{icmp_socket, next_id, recv_one, send_echo, unwrap_seq, Member};

/// The probe interval when few pairs wait.
pub const INTERVAL: Duration = Duration::from_millis(2);
/// At most this many echo requests a second over all sources: a matrix of
/// a thousand unanswered pairs is probed every 50 ms, not every 2.
pub const MAX_RATE: u32 = 20_000;

/// What one pair has shown so far.
#[derive(Debug, Clone, Default)]
pub struct PairSeen {
    /// When its first reply arrived, and the interval in effect then.
    pub first_reply: Option<(Instant, Duration)>,
    /// When the newest echo that was answered was sent.
    pub last_answered: Option<Instant>,
    /// When the first echo after that one (or the first echo at all) was
    /// sent: since then it has not answered.
    pub silent_since: Option<Instant>,
    /// Rounds sent to it.
    pub sent: u64,
    /// The probe interval in effect at its latest round.
    pub interval: Duration,
}

struct Source {
    pairs: Vec<usize>,
    /// The send time of each round.
    rounds: Vec<Instant>,
    /// Per pair of this source: the round of the newest answered echo.
    answered: Vec<Option<u64>>,
    /// Per pair: the rounds that included it (a pair that answered stops
    /// being probed when the probe stops at first answers).
    included: Vec<Vec<u64>>,
}

/// Probes running in the background.
pub struct FastProbe {
    seen: Arc<Mutex<Vec<PairSeen>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl FastProbe {
    /// Starts probing every pair; with `until_answered`, a pair is no
    /// longer probed once it answered.
    pub fn start(pairs: &[(Member, Member)], until_answered: bool) -> Result<FastProbe> {
        let mut by_source: BTreeMap<(PathBuf, bool), Vec<usize>> = BTreeMap::new();
        for (i, (from, to)) in pairs.iter().enumerate() {
            by_source
                .entry((from.netns.clone(), to.addr.is_ipv6()))
                .or_default()
                .push(i);
        }
        let seen = Arc::new(Mutex::new(vec![PairSeen::default(); pairs.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let n_sources = by_source.len().max(1) as u32;
        let mut handles = Vec::new();
        for ((src, v6), idx) in by_source {
            let sock = icmp_socket(&src, v6)?;
            let targets: Vec<IpAddr> = idx.iter().map(|i| pairs[*i].1.addr).collect();
            let (seen, stop) = (seen.clone(), stop.clone());
            let rate = MAX_RATE / n_sources;
            handles.push(std::thread::spawn(move || {
                run(sock, idx, targets, rate, until_answered, &seen, &stop)
            }));
        }
        Ok(FastProbe {
            seen,
            stop,
            handles,
        })
    }

    /// What every pair has shown so far.
    pub fn seen(&self) -> Vec<PairSeen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops probing (late replies are not waited for).
    pub fn stop(mut self) -> Vec<PairSeen> {
        self.halt();
        self.seen()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for FastProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The interval for `waiting` pairs of one source allowed `rate` echoes a second.
fn interval_for(waiting: usize, rate: u32) -> Duration {
    let spread = Duration::from_secs(1) * waiting as u32 / rate.max(1);
    spread.max(INTERVAL)
}

fn run(
    sock: Socket,
    pairs: Vec<usize>,
    targets: Vec<IpAddr>,
    rate: u32,
    until_answered: bool,
    seen: &Mutex<Vec<PairSeen>>,
    stop: &AtomicBool,
) {
    let id = next_id();
    let mut s = Source {
        answered: vec![None; pairs.len()],
        included: vec![Vec::new(); pairs.len()],
        pairs,
        rounds: Vec::new(),
    };
    let mut next = Instant::now();
    let mut interval = INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            let round = s.rounds.len() as u64;
            let waiting: Vec<usize> = (0..s.pairs.len())
                .filter(|k| !until_answered || s.answered[*k].is_none())
                .collect();
            interval = interval_for(waiting.len(), rate);
            let at = Instant::now();
            s.rounds.push(at);
            for &k in &waiting {
                send_echo(&sock, targets[k], id, round as u16);
                s.included[k].push(round);
            }
            {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                for &k in &waiting {
                    let p = &mut seen[s.pairs[k]];
                    p.sent += 1;
                    p.interval = interval;
                    if p.silent_since.is_none() {
                        p.silent_since = Some(at);
                    }
                }
            }
            next = at + interval;
        }
        let wait = next.saturating_duration_since(Instant::now());
        let Some((from, rid, seq)) = recv_one(&sock, wait) else {
            continue;
        };
        let arrived = Instant::now();
        if rid != id {
            continue;
        }
        let round = unwrap_seq(seq, s.rounds.len() as u64);
        let Some(k) = targets.iter().position(|t| *t == from) else {
            continue;
        };
        if s.answered[k].is_some_and(|r| r >= round) {
            continue;
        }
        s.answered[k] = Some(round);
        // The first round after the answered one that included this pair.
        let after = s.included[k].iter().find(|r| **r > round).copied();
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let p = &mut seen[s.pairs[k]];
        if p.first_reply.is_none() {
            p.first_reply = Some((arrived, interval));
        }
        p.last_answered = s.rounds.get(round as usize).copied();
        p.silent_since = after.and_then(|r| s.rounds.get(r as usize).copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_stays_at_2_ms_until_the_rate_would_pass_the_cap() {
        assert_eq!(interval_for(1, MAX_RATE), INTERVAL);
        assert_eq!(interval_for(40, MAX_RATE), INTERVAL);
        assert_eq!(interval_for(1000, MAX_RATE), Duration::from_millis(50));
        // 32 sources share the rate.
        assert_eq!(
            interval_for(31, MAX_RATE / 32),
            Duration::from_micros(49_600)
        );
    }
}
