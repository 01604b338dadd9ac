//! Summary figures of repeated measurements: n, min, median, p90, p99, max.

use std::time::Duration;

use super::ms;

/// Latency figures of one kind of call, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyStats {
    pub n: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    pub fn of(mut v: Vec<Duration>) -> Option<LatencyStats> {
        if v.is_empty() {
            return None;
        }
        v.sort();
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let q = |q: f64| ms(v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
        Some(LatencyStats {
            n: v.len(),
            min_ms: ms(v[0]),
            median_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: ms(v[v.len() - 1]),
        })
    }

    pub fn line(&self) -> String {
        format!(
            "n {} min {:.1} median {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            self.n, self.min_ms, self.median_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}
