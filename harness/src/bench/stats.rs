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

/// One benchmark's results as `harness bench … --json` writes them and
/// `harness bench render` reads them. `summary` is the human line printed at
/// the end of the run; every figure in it is also in `series` or `figures`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    /// The benchmark's subcommand name, e.g. "convergence".
    pub bench: String,
    /// How it was run (arguments, machine facts such as cores and kernel).
    pub setup: std::collections::BTreeMap<String, String>,
    pub summary: String,
    /// Repeated measurements, one series per side or per point on an x axis.
    pub series: Vec<Series>,
    /// Single figures (memory in KiB, file sizes in bytes, counts), by name.
    pub figures: std::collections::BTreeMap<String, f64>,
}

/// Repeated measurements of one thing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// What was measured, e.g. "ours", "ip -batch", "route on b2".
    pub name: String,
    /// Where on an x axis this series sits (endpoints on the host, hosts), if any.
    pub x: Option<f64>,
    /// The x axis' meaning, e.g. "endpoints on the host".
    pub x_label: Option<String>,
    /// The unit of `samples`, e.g. "ms".
    pub unit: String,
    /// Every sample, in the order taken.
    pub samples: Vec<f64>,
}

impl Series {
    /// n, min, median, p90, p99 and max of the samples (nearest rank).
    pub fn stats(&self) -> Option<SampleStats> {
        SampleStats::of(&self.samples)
    }
}

/// Summary of unit-free samples (see [`LatencyStats`] for durations).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleStats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl SampleStats {
    pub fn of(samples: &[f64]) -> Option<SampleStats> {
        if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(SampleStats {
            n: v.len(),
            min: v[0],
            median: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: v[v.len() - 1],
        })
    }

    /// Whether two sets of samples differ by more than their spread: the
    /// ranges between p10 and p90 do not overlap. Otherwise a difference of
    /// medians is "no measurable difference".
    pub fn separated(a: &[f64], b: &[f64]) -> bool {
        let band = |s: &[f64]| {
            let mut v = s.to_vec();
            v.sort_by(|a, b| a.total_cmp(b));
            let q = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
            (q(0.1), q(0.9))
        };
        if a.is_empty() || b.is_empty() {
            return false;
        }
        let ((a_lo, a_hi), (b_lo, b_hi)) = (band(a), band(b));
        a_hi < b_lo || b_hi < a_lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_figures() {
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        let st = SampleStats::of(&s).unwrap();
        assert_eq!(
            (st.n, st.min, st.median, st.p90, st.max),
            (10, 1.0, 5.0, 9.0, 10.0)
        );
        assert!(SampleStats::of(&[]).is_none());
    }

    #[test]
    fn overlapping_spreads_are_not_a_difference() {
        let a: Vec<f64> = (0..20).map(|i| 100.0 + f64::from(i)).collect();
        let b: Vec<f64> = (0..20).map(|i| 110.0 + f64::from(i)).collect();
        assert!(!SampleStats::separated(&a, &b));
        let c: Vec<f64> = (0..20).map(|i| 200.0 + f64::from(i)).collect();
        assert!(SampleStats::separated(&a, &c));
    }
}
