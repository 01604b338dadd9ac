//! Summary figures of repeated measurements: n, min, median, p90, p99, max.
//!
//! In: samples (durations, sizes). Out: [`SampleStats`], [`LatencyStats`],
//! the comparison of two sides (a difference only where p10..p90 do not
//! overlap), and [`BenchResult`]s read from and written to JSON. Pure,
//! apart from the JSON files.

use std::time::Duration;

/// A duration in milliseconds, as the figures are written.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

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

impl SampleStats {
    /// "n 20, min 1.0, median 2.0, p90 3.0, max 4.0 ms".
    pub fn line(&self, unit: &str) -> String {
        format!(
            "n {}, min {}, median {}, p90 {}, max {} {unit}",
            self.n,
            fig(self.min),
            fig(self.median),
            fig(self.p90),
            fig(self.max)
        )
    }
}

/// A figure with as many decimals as its size needs (3 significant digits
/// below 100, none above).
pub fn fig(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Series {
    /// A series of `samples` in `unit`, with no x position.
    pub fn new(name: impl Into<String>, unit: &str, samples: Vec<f64>) -> Series {
        Series {
            name: name.into(),
            x: None,
            x_label: None,
            unit: unit.to_string(),
            samples,
        }
    }

    /// Durations as milliseconds.
    pub fn ms(name: impl Into<String>, samples: &[Duration]) -> Series {
        Series::new(name, "ms", samples.iter().map(|d| ms(*d)).collect())
    }

    /// Places the series at `x` on an axis meaning `label`.
    pub fn at(mut self, x: f64, label: &str) -> Series {
        self.x = Some(x);
        self.x_label = Some(label.to_string());
        self
    }

    /// "name: n …, min …, median …, p90 …, max … unit".
    pub fn line(&self) -> String {
        match self.stats() {
            Some(s) => format!("{}: {}", self.name, s.line(&self.unit)),
            None => format!("{}: no samples", self.name),
        }
    }
}

/// Fewer samples a side than this, and no difference is claimed: with two
/// or three, p10..p90 is just min..max and one quiet run separates them.
pub const MIN_SAMPLES_TO_COMPARE: usize = 5;

/// How two series compare, worded by their spread: a difference of medians
/// is only called one when [`SampleStats::separated`] says the p10..p90
/// ranges do not overlap (and each side has at least
/// [`MIN_SAMPLES_TO_COMPARE`] samples); otherwise "no measurable difference".
pub fn compare(a: &Series, b: &Series) -> String {
    let (Some(sa), Some(sb)) = (a.stats(), b.stats()) else {
        return format!("{} vs {}: no samples", a.name, b.name);
    };
    if sa.n.min(sb.n) < MIN_SAMPLES_TO_COMPARE {
        return format!(
            "{} vs {}: too few samples to tell (n {} and {}; medians {} vs {} {})",
            a.name,
            b.name,
            sa.n,
            sb.n,
            fig(sa.median),
            fig(sb.median),
            a.unit
        );
    }
    let ratio = if sb.median != 0.0 {
        sa.median / sb.median
    } else {
        f64::NAN
    };
    if SampleStats::separated(&a.samples, &b.samples) {
        format!(
            "{} median {} vs {} median {} {}: {} takes {:.2}x the {} of {} (p10..p90 ranges do not overlap)",
            a.name,
            fig(sa.median),
            b.name,
            fig(sb.median),
            a.unit,
            a.name,
            ratio,
            if a.unit == "ms" || a.unit == "s" { "time" } else { "value" },
            b.name
        )
    } else {
        format!(
            "{} vs {}: no measurable difference (medians {} vs {} {}, ratio {:.3}; the p10..p90 ranges overlap)",
            a.name,
            b.name,
            fig(sa.median),
            fig(sb.median),
            a.unit,
            ratio
        )
    }
}

impl BenchResult {
    /// An empty result for `bench`, run as `command`, with the machine's facts.
    pub fn new(bench: &str, command: String) -> BenchResult {
        let mut setup = machine_facts();
        setup.insert("command".into(), command);
        BenchResult {
            bench: bench.to_string(),
            setup,
            summary: String::new(),
            series: Vec::new(),
            figures: Default::default(),
        }
    }

    pub fn series_named(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    /// What the bench prints: the summary, then one line per series.
    pub fn report(&self) -> String {
        let mut out = format!("{}: {}", self.bench, self.summary);
        for s in &self.series {
            out.push_str("\n  ");
            out.push_str(&s.line());
        }
        for (k, v) in &self.figures {
            out.push_str(&format!("\n  {k}: {}", fig(*v)));
        }
        out
    }
}

/// The machine's `/proc/loadavg` line (the 1, 5 and 15 minute load
/// averages, running/total tasks, the last pid), or "" where it is unreadable.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average now (0 where unreadable).
pub fn load1() -> f64 {
    loadavg()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl BenchResult {
    /// Records the machine's load over the run: `at_start` ([`loadavg`],
    /// read before the bench built anything) and the line now, at its end,
    /// so that a reader can judge the figures (other work on a shared
    /// machine moves every one of them).
    pub fn record_load(&mut self, at_start: &str) {
        if let Some(one) = at_start.split_whitespace().next() {
            self.setup
                .insert("load average at start".into(), one.to_string());
        }
        self.setup
            .insert("/proc/loadavg at start".into(), at_start.to_string());
        self.setup.insert("/proc/loadavg at end".into(), loadavg());
    }
}

/// Cores, kernel and the time of the run (UTC), for `BenchResult::setup`.
pub fn machine_facts() -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    m.insert("cores".into(), cores.to_string());
    if let Ok(u) = nix::sys::utsname::uname() {
        m.insert("kernel".into(), u.release().to_string_lossy().into_owned());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    m.insert("date".into(), utc_date(now));
    // Other work on the machine skews every figure: say how busy it was.
    if let Some(l) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
    {
        m.insert("load average at start".into(), l);
    }
    m.insert(
        "build".into(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
    );
    if let Some(cpu) = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    }) {
        m.insert("cpu".into(), cpu);
    }
    m
}

/// `YYYY-MM-DD HH:MM UTC` from seconds since the epoch (proleptic Gregorian).
pub fn utc_date(secs: u64) -> String {
    // The driver's `YYYY-MM-DD HH:MM:SS UTC`, to the minute.
    let full = ipvlan_bgp::api::status::format_utc(secs);
    format!("{} UTC", &full[..16])
}

/// Writes `results` as one JSON array.
pub fn write_json(path: &std::path::Path, results: &[BenchResult]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(path, text + "\n").map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))
}

/// Reads what [`write_json`] wrote: an array of results, or a single one.
pub fn read_json(path: &std::path::Path) -> anyhow::Result<Vec<BenchResult>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let parse = |v: serde_json::Value| {
        serde_json::from_value::<BenchResult>(v)
            .map_err(|e| anyhow::anyhow!("{}: not a bench result: {e}", path.display()))
    };
    match v {
        serde_json::Value::Array(a) => a.into_iter().map(parse).collect(),
        o => Ok(vec![parse(o)?]),
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

    #[test]
    fn comparisons_inside_the_spread_are_worded_as_none() {
        let a = Series::new(
            "ours",
            "ms",
            (0..20).map(|i| 100.0 + f64::from(i)).collect(),
        );
        let b = Series::new(
            "theirs",
            "ms",
            (0..20).map(|i| 105.0 + f64::from(i)).collect(),
        );
        assert!(compare(&a, &b).contains("no measurable difference"));
        let c = Series::new(
            "slow",
            "ms",
            (0..20).map(|i| 300.0 + f64::from(i)).collect(),
        );
        let w = compare(&a, &c);
        assert!(
            w.contains("do not overlap") && !w.contains("no measurable"),
            "{w}"
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
    }
}
