//! The poll loop of expectations that no event can date (a daemon's
//! status, its metrics, a log, a BGP table read through a CLI): read every
//! [`POLL`] until it holds, then optionally keep reading for a hold, and
//! measure how fine that was.
//!
//! In: a deadline, an optional hold and the check. Out: [`Polled`]: how
//! long it took to hold and the resolution of that figure (the longest gap
//! between the starts of two successive reads; one read alone: the
//! interval plus its own duration). Owns nothing.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::POLL;
use crate::util::eventually;

/// How long a polled condition took to hold, and how finely that is known.
#[derive(Debug, Clone, Copy)]
pub struct Polled<T> {
    pub value: T,
    pub took: Duration,
    pub resolution: Duration,
}

/// Reads `check` every [`POLL`] until it holds, for at most `within`.
pub fn poll<T>(
    within: Duration,
    check: impl FnMut() -> std::result::Result<T, String>,
) -> Result<Polled<T>> {
    poll_every(within, POLL, check)
}

/// [`poll`] with another interval.
pub fn poll_every<T>(
    within: Duration,
    interval: Duration,
    mut check: impl FnMut() -> std::result::Result<T, String>,
) -> Result<Polled<T>> {
    let mut last: Option<Instant> = None;
    let mut gap = Duration::ZERO;
    let mut longest_read = Duration::ZERO;
    let (value, took) = eventually(within, interval, || {
        let now = Instant::now();
        if let Some(prev) = last {
            gap = gap.max(now - prev);
        }
        last = Some(now);
        let r = check();
        longest_read = longest_read.max(now.elapsed());
        r
    })
    .map_err(|e| anyhow!(e))?;
    let resolution = if gap.is_zero() {
        interval + longest_read
    } else {
        gap
    };
    Ok(Polled {
        value,
        took,
        resolution,
    })
}

/// [`poll`], then, with a `hold`, keeps reading that it still holds for so
/// long; answers how long it took to hold first.
pub fn poll_then_hold(
    within: Duration,
    hold: Option<Duration>,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> Result<Polled<()>> {
    let p = poll(within, &mut check)?;
    if let Some(h) = hold {
        let until = Instant::now() + h;
        while Instant::now() < until {
            check().map_err(|e| {
                anyhow!(
                    "held for {:?}, then changed within the {h:?} hold: {e}",
                    p.took
                )
            })?;
            std::thread::sleep(POLL);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolution_is_the_longest_gap_between_reads() {
        let mut n = 0;
        let p = poll(Duration::from_secs(5), || {
            n += 1;
            if n < 3 {
                Err("not yet".to_string())
            } else {
                Ok(n)
            }
        })
        .unwrap();
        assert_eq!(p.value, 3);
        assert!(p.resolution >= POLL, "{:?}", p.resolution);
        assert!(p.took >= POLL * 2);
        let once = poll(Duration::ZERO, || Ok::<_, String>(())).unwrap();
        assert!(once.resolution >= POLL);
        assert!(poll(Duration::ZERO, || Err::<(), _>("no".to_string())).is_err());
    }
}
