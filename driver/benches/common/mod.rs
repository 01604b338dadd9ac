//! What the driver's benchmarks share: the JSON shape `harness bench …
//! --json` writes and `harness bench render` reads (harness/src/bench/
//! stats.rs: BenchResult, Series; this crate cannot depend on the harness,
//! so the field names are repeated here and the renderer's tests read a file
//! of this shape), nearest-rank figures, and the machine facts each result
//! records. Each bench compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

// The shape `harness bench … --json` writes and `harness bench render`
// reads (harness/src/bench/stats.rs: BenchResult, Series). This crate cannot
// depend on the harness, so the field names are repeated here; the
// harness's renderer tests read a file of this shape.
#[derive(serde::Serialize)]
pub struct BenchResult {
    pub bench: String,
    pub setup: BTreeMap<String, String>,
    pub summary: String,
    pub series: Vec<Series>,
    pub figures: BTreeMap<String, f64>,
}

#[derive(serde::Serialize)]
pub struct Series {
    pub name: String,
    pub x: Option<f64>,
    pub x_label: Option<String>,
    pub unit: String,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn ms(name: &str, v: &[Duration]) -> Series {
        Series {
            name: name.into(),
            x: None,
            x_label: None,
            unit: "ms".into(),
            samples: v.iter().map(|d| ms(*d)).collect(),
        }
    }

    /// Routes per second of each round.
    pub fn rate(name: &str, n: usize, v: &[Duration]) -> Series {
        Series {
            name: name.into(),
            x: None,
            x_label: None,
            unit: "routes/s".into(),
            samples: v.iter().map(|d| n as f64 / d.as_secs_f64()).collect(),
        }
    }

    pub fn line(&self) -> String {
        let mut v = self.samples.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        format!(
            "{}: n {}, min {:.1}, median {:.1}, p90 {:.1}, max {:.1} {}",
            self.name,
            v.len(),
            v[0],
            rank(&v, 0.5),
            rank(&v, 0.9),
            v[v.len() - 1],
            self.unit
        )
    }
}

/// Nearest rank of sorted `v` (as the harness's SampleStats).
pub fn rank(v: &[f64], q: f64) -> f64 {
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

pub fn median(s: &[f64]) -> f64 {
    let mut v = s.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    rank(&v, 0.5)
}

/// The machine and run facts every result records (as the harness's
/// `machine_facts`), with the command that reproduces it.
pub fn setup(command: String) -> BTreeMap<String, String> {
    let mut setup = BTreeMap::new();
    setup.insert(
        "kernel".to_string(),
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    setup.insert(
        "build".to_string(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
    );
    if let Some(l) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
    {
        setup.insert("load average at start".to_string(), l);
    }
    if let Ok(o) = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
    {
        setup.insert(
            "date".to_string(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        );
    }
    if let Some(cpu) = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    }) {
        setup.insert("cpu".to_string(), cpu);
    }
    setup.insert(
        "cores".to_string(),
        std::thread::available_parallelism()
            .map_or(0, |c| c.get())
            .to_string(),
    );
    setup.insert("command".to_string(), command);
    setup
}

/// Writes `r` as a one-element JSON array (the shape `bench render` reads).
pub fn write_json(out: &Path, r: &BenchResult) {
    let text = serde_json::to_string_pretty(std::slice::from_ref(r)).expect("json");
    std::fs::write(out, text + "\n").expect("write --json file");
    println!("wrote {}", out.display());
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
