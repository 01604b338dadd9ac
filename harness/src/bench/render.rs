//! `harness bench render --json IN… --out-dir DIR [--doc docs/performance.md]`:
//! plots and the performance page's table, both made from the JSON that
//! `harness bench … --json` and `cargo bench --bench route_install -- --json`
//! write, so figures and text cannot drift apart.
//!
//! In: [`BenchResult`]s. Out: SVG files (one per chart) and a Markdown table
//! that replaces the page's region between [`BEGIN`] and [`END`] ([`DOC`]
//! holds the committed one; the README links to it). Charts
//! are chosen from the data, not from bench names, except one: the
//! convergence distributions (`convergence`, and `convergence-load`'s
//! "address live → route" per side) are drawn as CDFs. Any series with an `x` (fill:
//! endpoints on the host; scale: hosts or containers) is plotted against it,
//! one chart per bench and x axis; series without one are drawn as ranges
//! (every sample a dot, p10..p90 as a box, the median as a tick, min..max as
//! a line), one chart per bench and unit.
//!
//! The SVG is written by hand (some 300 lines): charts of this kind need
//! lines, dots, boxes and text, and plain markup with a class per element
//! kind lets the tests count data points by parsing the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::stats::{fig, BenchResult, SampleStats, Series};

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";
/// The page that holds the committed figures, from the repository's root.
pub const DOC: &str = "docs/performance.md";

/// One chart: its file name (inside the output folder), what it shows, its SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// Writes the charts into `out_dir` and, with `doc` (a Markdown page such as
/// [`DOC`]), replaces its bench region with the table; returns the files
/// written.
pub fn render(
    results: &[BenchResult],
    inputs: &[PathBuf],
    out_dir: &Path,
    doc: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    if results.is_empty() {
        bail!("no bench results in {inputs:?}");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let charts = charts(results);
    let mut written = Vec::new();
    for c in &charts {
        let p = out_dir.join(&c.file);
        std::fs::write(&p, &c.svg).with_context(|| format!("write {}", p.display()))?;
        written.push(p);
    }
    if let Some(doc) = doc {
        let text =
            std::fs::read_to_string(doc).with_context(|| format!("read {}", doc.display()))?;
        let images = image_prefix(doc, out_dir);
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        let region = table(results, &charts, &images, &names);
        let new =
            replace_region(&text, &region).with_context(|| format!("update {}", doc.display()))?;
        if new != text {
            std::fs::write(doc, new).with_context(|| format!("write {}", doc.display()))?;
        }
        written.push(doc.to_path_buf());
    }
    Ok(written)
}

/// How the page refers to the charts: `out_dir` relative to the page's
/// folder where it lies below it, else as given.
fn image_prefix(doc: &Path, out_dir: &Path) -> String {
    let base = doc
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (base.canonicalize(), out_dir.canonicalize()) {
        (Ok(b), Ok(o)) => match o.strip_prefix(&b) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => o.display().to_string(),
        },
        _ => out_dir.display().to_string(),
    }
}

/// The bench's name as charts and the table show it: a run inside a VM is
/// another machine, never drawn on one axis with a native run.
fn shown_name(r: &BenchResult) -> String {
    match r.setup.get("vm") {
        Some(vm) => format!("{} in a VM ({vm})", r.bench),
        None => r.bench.clone(),
    }
}

/// Results of the same bench, their series together, in first-seen order.
fn by_bench(results: &[BenchResult]) -> Vec<(String, Vec<&Series>)> {
    let mut out: Vec<(String, Vec<&Series>)> = Vec::new();
    for r in results {
        let name = shown_name(r);
        match out.iter_mut().find(|(b, _)| *b == name) {
            Some((_, v)) => v.extend(r.series.iter()),
            None => out.push((name, r.series.iter().collect())),
        }
    }
    out
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Every chart the results call for.
pub fn charts(results: &[BenchResult]) -> Vec<Chart> {
    let mut out = Vec::new();
    for (bench, series) in by_bench(results) {
        let plain: Vec<&Series> = series
            .iter()
            .copied()
            .filter(|s| s.x.is_none() && !s.samples.is_empty())
            .collect();
        let with_x: Vec<&Series> = series
            .iter()
            .copied()
            .filter(|s| s.x.is_some() && !s.samples.is_empty())
            .collect();
        if bench == "convergence" || bench == "convergence-load" {
            // Under load, the issue's figure (address live → route) per side.
            let ms: Vec<&Series> = plain
                .iter()
                .copied()
                .filter(|s| s.unit == "ms")
                .filter(|s| bench == "convergence" || s.name.contains("address live"))
                .collect();
            if !ms.is_empty() {
                let n = ms.iter().map(|s| s.samples.len()).max().unwrap_or(0);
                out.push(cdf(
                    &format!("{}-cdf.svg", slug(&bench)),
                    &format!("{bench}: distribution over {n} joins"),
                    &ms,
                ));
            }
        }
        let mut units: Vec<&str> = plain.iter().map(|s| s.unit.as_str()).collect();
        units.dedup();
        let units: Vec<&str> = units
            .iter()
            .enumerate()
            .filter(|(i, u)| !units[..*i].contains(u))
            .map(|(_, u)| *u)
            .collect();
        for unit in &units {
            let these: Vec<&Series> = plain.iter().copied().filter(|s| s.unit == *unit).collect();
            let file = if units.len() == 1 {
                format!("{}.svg", slug(&bench))
            } else {
                format!("{}-{}.svg", slug(&bench), slug(unit))
            };
            out.push(ranges(&file, &format!("{bench} ({unit})"), &these));
        }
        // One chart per x axis and unit: milliseconds and KiB never share a y axis.
        let mut axes: Vec<(String, String)> = Vec::new();
        for s in &with_x {
            let a = (
                s.x_label.clone().unwrap_or_else(|| "x".into()),
                s.unit.clone(),
            );
            if !axes.contains(&a) {
                axes.push(a);
            }
        }
        for (label, unit) in &axes {
            let these: Vec<&Series> = with_x
                .iter()
                .copied()
                .filter(|s| s.x_label.as_deref().unwrap_or("x") == label && s.unit == *unit)
                .collect();
            let units_here = axes.iter().filter(|(l, _)| l == label).count();
            let (file, title) = if units_here == 1 {
                (
                    format!("{}-vs-{}.svg", slug(&bench), slug(label)),
                    format!("{bench}: against {label}"),
                )
            } else {
                (
                    format!("{}-{}-vs-{}.svg", slug(&bench), slug(unit), slug(label)),
                    format!("{bench} ({unit}): against {label}"),
                )
            };
            out.push(against_x(&file, &title, label, &these));
        }
    }
    out
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

use crate::report::escape_markup as esc;

/// A linear axis: the data range widened to round ticks.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Axis {
    fn new(lo: f64, hi: f64, from_zero: bool) -> Axis {
        let lo = if from_zero { lo.min(0.0) } else { lo };
        let (lo, hi) = if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            (
                lo - 1.0_f64.max(lo.abs() * 0.1),
                hi + 1.0_f64.max(hi.abs() * 0.1),
            )
        } else {
            (lo, hi)
        };
        let raw = (hi - lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let lo = (lo / step).floor() * step;
        let hi = (hi / step).ceil() * step;
        let ticks = (0..=((hi - lo) / step).round() as usize)
            .map(|i| lo + i as f64 * step)
            .collect();
        Axis { lo, hi, ticks }
    }

    /// Position of `v` between `a` (at lo) and `b` (at hi).
    fn map(&self, v: f64, a: f64, b: f64) -> f64 {
        a + (v - self.lo) / (self.hi - self.lo) * (b - a)
    }
}

/// The frame every chart shares: size, plot area, title.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    body: String,
}

impl Frame {
    /// A chart `w` wide whose plot area is `plot_h` high, with room on the
    /// left for labels and below for `legend_rows` legend lines.
    fn new(w: f64, plot_h: f64, left: f64, legend_rows: usize, title: &str) -> Frame {
        let top = 40.0;
        let bottom = top + plot_h;
        let h = bottom + 50.0 + 18.0 * legend_rows as f64 + 8.0;
        let mut f = Frame {
            w,
            h,
            left,
            right: w - 30.0,
            top,
            bottom,
            body: String::new(),
        };
        let _ = write!(
            f.body,
            r#"<rect width="{w}" height="{h}" fill="white"/><text class="title" x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
            w / 2.0,
            esc(title)
        );
        f
    }

    fn x_axis(&mut self, ax: &Axis, label: &str) {
        let _ = write!(
            self.body,
            r##"<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/>"##,
            l = self.left,
            r = self.right,
            b = self.bottom
        );
        for t in &ax.ticks {
            let x = ax.map(*t, self.left, self.right);
            let _ = write!(
                self.body,
                r##"<line x1="{x:.1}" y1="{t0}" x2="{x:.1}" y2="{b}" stroke="#eee"/><text x="{x:.1}" y="{y}" text-anchor="middle" font-size="11">{}</text>"##,
                tick(*t),
                t0 = self.top,
                b = self.bottom,
                y = self.bottom + 16.0
            );
        }
        let _ = write!(
            self.body,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
            (self.left + self.right) / 2.0,
            self.bottom + 36.0,
            esc(label)
        );
    }

    fn y_axis(&mut self, ax: &Axis, label: &str) {
        let _ = write!(
            self.body,
            r##"<line x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="#333"/>"##,
            l = self.left,
            t = self.top,
            b = self.bottom
        );
        for t in &ax.ticks {
            let y = ax.map(*t, self.bottom, self.top);
            let _ = write!(
                self.body,
                r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#eee"/><text x="{x}" y="{ty:.1}" text-anchor="end" font-size="11">{}</text>"##,
                tick(*t),
                l = self.left,
                r = self.right,
                x = self.left - 6.0,
                ty = y + 4.0
            );
        }
        let _ = write!(
            self.body,
            r#"<text x="14" y="{y}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {y})">{}</text>"#,
            esc(label),
            y = (self.top + self.bottom) / 2.0
        );
    }

    fn legend(&mut self, i: usize, text: &str) {
        let y = self.bottom + 62.0 + i as f64 * 18.0;
        let x = self.left;
        let _ = write!(
            self.body,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text class="legend" x="{}" y="{}" font-size="11">{}</text>"#,
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 15.0,
            y,
            esc(text)
        );
    }

    fn finish(self) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">{}</svg>
"#,
            self.body,
            w = self.w,
            h = self.h
        )
    }
}

/// A tick label: at most 3 decimals, no trailing zeros.
fn tick(v: f64) -> String {
    let t = format!("{v:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

fn stats_of(s: &Series) -> SampleStats {
    SampleStats::of(&s.samples).expect("series with samples")
}

/// Nearest-rank quantile of `samples` (the rule of [`SampleStats`]).
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Cumulative distribution of each series: one polyline point per sample.
fn cdf(file: &str, title: &str, series: &[&Series]) -> Chart {
    let lo = series
        .iter()
        .map(|s| stats_of(s).min)
        .fold(f64::MAX, f64::min);
    let hi = series
        .iter()
        .map(|s| stats_of(s).max)
        .fold(f64::MIN, f64::max);
    let xa = Axis::new(lo, hi, true);
    let ya = Axis::new(0.0, 1.0, true);
    let mut f = Frame::new(900.0, 330.0, 70.0, series.len(), title);
    f.x_axis(
        &xa,
        &format!(
            "{}, from the start of the join (the withdrawal: of the stop)",
            series[0].unit
        ),
    );
    f.y_axis(&ya, "fraction of joins at or below");
    for (i, s) in series.iter().enumerate() {
        let mut v = s.samples.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len() as f64;
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(k, x)| {
                format!(
                    "{:.1},{:.1}",
                    xa.map(*x, f.left, f.right),
                    ya.map((k + 1) as f64 / n, f.bottom, f.top)
                )
            })
            .collect();
        let _ = write!(
            f.body,
            r#"<polyline class="series" data-name="{}" fill="none" stroke="{}" stroke-width="{:.1}"{} points="{}"/>"#,
            esc(&s.name),
            PALETTE[i % PALETTE.len()],
            // Earlier lines wider, later ones dashed: curves that coincide stay visible.
            (3.0 - 0.5 * i as f64).max(1.2),
            match i % 4 {
                1 => r#" stroke-dasharray="8 3""#,
                2 => r#" stroke-dasharray="3 3""#,
                3 => r#" stroke-dasharray="10 3 2 3""#,
                _ => "",
            },
            pts.join(" ")
        );
        let st = stats_of(s);
        f.legend(
            i,
            &format!(
                "{}: median {}, p90 {}, max {}",
                s.name,
                fig(st.median),
                fig(st.p90),
                fig(st.max)
            ),
        );
    }
    Chart {
        file: file.into(),
        title: title.into(),
        svg: f.finish(),
    }
}

/// One row per series: every sample a dot, min..max a line, p10..p90 a box,
/// the median a tick.
fn ranges(file: &str, title: &str, series: &[&Series]) -> Chart {
    let lo = series
        .iter()
        .map(|s| stats_of(s).min)
        .fold(f64::MAX, f64::min);
    let hi = series
        .iter()
        .map(|s| stats_of(s).max)
        .fold(f64::MIN, f64::max);
    let xa = Axis::new(lo, hi, true);
    let row = 34.0;
    let mut f = Frame::new(900.0, row * series.len() as f64 + 10.0, 290.0, 0, title);
    f.x_axis(
        &xa,
        &format!(
            "{}  (dots: samples; box: p10..p90; tick: median; line: min..max)",
            series[0].unit
        ),
    );
    for (i, s) in series.iter().enumerate() {
        let st = stats_of(s);
        let y = f.top + row * (i as f64 + 0.5) + 5.0;
        let c = PALETTE[i % PALETTE.len()];
        let x = |v: f64| xa.map(v, f.left, f.right);
        let (p10, p90) = (quantile(&s.samples, 0.1), quantile(&s.samples, 0.9));
        let mut g = String::new();
        let _ = write!(
            g,
            r##"<g class="series" data-name="{name}"><text x="{lx}" y="{ty:.1}" text-anchor="end" font-size="11">{name} (n {n})</text><line class="range" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{c}"/><rect class="band" x="{:.1}" y="{:.1}" width="{:.1}" height="12" fill="{c}" fill-opacity="0.25" stroke="{c}"/><line class="median" x1="{m:.1}" y1="{:.1}" x2="{m:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/>"##,
            x(st.min),
            x(st.max),
            x(p10),
            y - 6.0,
            (x(p90) - x(p10)).max(1.0),
            y - 9.0,
            y + 9.0,
            name = esc(&s.name),
            n = st.n,
            lx = f.left - 8.0,
            ty = y + 4.0,
            m = x(st.median),
        );
        for (k, v) in s.samples.iter().enumerate() {
            // A fixed spread over the row so equal values stay visible.
            let jitter = ((k * 7) % 11) as f64 - 5.0;
            let _ = write!(
                g,
                r#"<circle class="pt" cx="{:.1}" cy="{:.1}" r="2" fill="{c}" fill-opacity="0.6"/>"#,
                x(*v),
                y + jitter
            );
        }
        g.push_str("</g>");
        f.body.push_str(&g);
    }
    Chart {
        file: file.into(),
        title: title.into(),
        svg: f.finish(),
    }
}

/// Series placed on an x axis: the median as a dot joined by a line per
/// group of series of the same name, p10..p90 as a bar, min..max as a thin line.
fn against_x(file: &str, title: &str, x_label: &str, series: &[&Series]) -> Chart {
    let mut groups: Vec<(String, Vec<&Series>)> = Vec::new();
    for s in series {
        match groups.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, v)) => v.push(s),
            None => groups.push((s.name.clone(), vec![s])),
        }
    }
    // Every series named differently: one line through them all.
    if groups.iter().all(|(_, v)| v.len() == 1) && groups.len() > 1 {
        groups = vec![(x_label.to_string(), series.to_vec())];
    }
    let xs: Vec<f64> = series.iter().filter_map(|s| s.x).collect();
    let xa = Axis::new(
        xs.iter().copied().fold(f64::MAX, f64::min),
        xs.iter().copied().fold(f64::MIN, f64::max),
        true,
    );
    let lo = series
        .iter()
        .map(|s| stats_of(s).min)
        .fold(f64::MAX, f64::min);
    let hi = series
        .iter()
        .map(|s| stats_of(s).max)
        .fold(f64::MIN, f64::max);
    let ya = Axis::new(lo, hi, true);
    let mut f = Frame::new(900.0, 330.0, 70.0, groups.len(), title);
    f.x_axis(&xa, x_label);
    f.y_axis(
        &ya,
        &format!(
            "{} (dot: median; bar: p10..p90; line: min..max)",
            series[0].unit
        ),
    );
    for (i, (name, members)) in groups.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let mut members = members.clone();
        members.sort_by(|a, b| a.x.unwrap_or(0.0).total_cmp(&b.x.unwrap_or(0.0)));
        let mut line = Vec::new();
        let mut g = format!(r#"<g class="series" data-name="{}">"#, esc(name));
        for s in &members {
            let st = stats_of(s);
            let x = xa.map(s.x.unwrap_or(0.0), f.left, f.right);
            let y = |v: f64| ya.map(v, f.bottom, f.top);
            let (p10, p90) = (quantile(&s.samples, 0.1), quantile(&s.samples, 0.9));
            let _ = write!(
                g,
                r#"<line class="range" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{c}"/><rect class="band" x="{:.1}" y="{:.1}" width="6" height="{:.1}" fill="{c}" fill-opacity="0.3"/><circle class="pt" cx="{x:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                y(st.min),
                y(st.max),
                x - 3.0,
                y(p90),
                (y(p10) - y(p90)).max(1.0),
                y(st.median)
            );
            line.push(format!("{x:.1},{:.1}", y(st.median)));
        }
        let _ = write!(
            g,
            r#"<polyline class="medians" fill="none" stroke="{c}" stroke-width="1.5" points="{}"/></g>"#,
            line.join(" ")
        );
        f.body.push_str(&g);
        f.legend(i, name);
    }
    Chart {
        file: file.into(),
        title: title.into(),
        svg: f.finish(),
    }
}

/// The page's bench region: provenance, one row per series (n, min, median, p90,
/// max and the command), each bench's summary and single figures, the charts.
pub fn table(results: &[BenchResult], charts: &[Chart], images: &str, inputs: &[String]) -> String {
    let mut out = String::new();
    // Which machine and build ran them, and when (first to last).
    let mut runs: BTreeMap<String, (Vec<String>, usize, Vec<f64>)> = BTreeMap::new();
    for r in results {
        let g = |k: &str| r.setup.get(k).cloned().unwrap_or_else(|| "?".into());
        let mut run = format!("{} cores, kernel {}", g("cores"), g("kernel"));
        if let Some(cpu) = r.setup.get("cpu") {
            let _ = write!(run, ", {cpu}");
        }
        if let Some(b) = r.setup.get("build") {
            let _ = write!(run, ", {b} build");
        }
        if let Some(vm) = r.setup.get("vm") {
            let _ = write!(run, ", inside a VM ({vm})");
        }
        if r.setup.get("quick").is_some_and(|q| q == "true") {
            run.push_str(", **quick** (smoke sizes)");
        }
        let e = runs.entry(run).or_default();
        if let Some(d) = r.setup.get("date") {
            e.0.push(d.clone());
        }
        e.1 += 1;
        if let Some(l) = r
            .setup
            .get("load average at start")
            .and_then(|l| l.parse().ok())
        {
            e.2.push(l);
        }
    }
    let runs: Vec<String> = runs
        .into_iter()
        .map(|(machine, (mut dates, n, loads))| {
            dates.sort();
            let when = match (dates.first(), dates.last()) {
                (Some(a), Some(b)) if a != b => format!("{a} to {b}"),
                (Some(a), _) => a.clone(),
                _ => "date unknown".into(),
            };
            let load = match SampleStats::of(&loads) {
                Some(l) if l.min == l.max => format!(", load average {} at the start", fig(l.min)),
                Some(l) => format!(
                    ", load average {} to {} at the starts",
                    fig(l.min),
                    fig(l.max)
                ),
                None => String::new(),
            };
            format!(
                "{when} on {machine}{load} ({n} bench{})",
                if n == 1 { "" } else { "es" }
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "_Generated by `harness bench render` from {}; do not edit by hand, rerun the render. Runs: {}._\n",
        inputs
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", "),
        runs.join("; ")
    );
    out.push_str("| bench | what | n | min | median | p90 | max | unit | command |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let mut cmd = format!("`{}`", r.setup.get("command").map_or("", String::as_str));
        if let Some(via) = r.setup.get("via") {
            let _ = write!(cmd, " (run by `{via}`)");
        }
        for s in &r.series {
            let Some(st) = s.stats() else { continue };
            let what = match (s.x, &s.x_label) {
                (Some(x), Some(l)) => format!("{} at {} {l}", s.name, fig(x)),
                (Some(x), None) => format!("{} at x = {}", s.name, fig(x)),
                _ => s.name.clone(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                shown_name(r),
                md(&what),
                st.n,
                fig(st.min),
                fig(st.median),
                fig(st.p90),
                fig(st.max),
                s.unit,
                cmd
            );
        }
    }
    out.push('\n');
    for r in results {
        let _ = write!(
            out,
            "- **{}**: {}.",
            shown_name(r),
            md(r.summary.trim_end_matches('.'))
        );
        if !r.figures.is_empty() {
            let figs: Vec<String> = r
                .figures
                .iter()
                .map(|(k, v)| format!("{k} {}", fig(*v)))
                .collect();
            let _ = write!(out, " Figures: {}.", md(&figs.join("; ")));
        }
        out.push('\n');
    }
    out.push('\n');
    for c in charts {
        let _ = writeln!(out, "![{}]({}/{})", md(&c.title), images, c.file);
    }
    out
}

/// Text safe inside a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `text` with everything between [`BEGIN`] and [`END`] replaced by `region`.
pub fn replace_region(text: &str, region: &str) -> Result<String> {
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("no {BEGIN} … {END} region: add the two markers where the table goes");
    };
    if e < b {
        bail!("{END} comes before {BEGIN}");
    }
    let head = &text[..b + BEGIN.len()];
    let tail = &text[e..];
    Ok(format!("{head}\n{}\n{tail}", region.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<BenchResult> {
        let text = include_str!("../../tests/fixtures/bench-results.json");
        serde_json::from_str(text).expect("fixture parses")
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("well-formed XML")
    }

    #[test]
    fn every_chart_is_well_formed_svg_with_one_point_per_sample() {
        let results = fixture();
        let charts = charts(&results);
        let files: Vec<&str> = charts.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "convergence-cdf.svg",
                "convergence.svg",
                "route-install.svg",
                "fill-vs-endpoints-on-the-host.svg",
                "scale-vs-hosts.svg",
            ]
        );
        for c in &charts {
            let doc = parse(&c.svg);
            assert_eq!(doc.root_element().tag_name().name(), "svg", "{}", c.file);
        }
        // The CDF: one polyline per series, one point per sample.
        let doc = parse(&charts[0].svg);
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("series"))
            .collect();
        let conv = &results[0];
        assert_eq!(lines.len(), conv.series.len());
        for (l, s) in lines.iter().zip(&conv.series) {
            assert_eq!(l.attribute("data-name"), Some(s.name.as_str()));
            let pts = l.attribute("points").unwrap().split_whitespace().count();
            assert_eq!(pts, s.samples.len(), "{}", s.name);
        }
        // The ranges: one dot per sample, one median tick per series.
        let doc = parse(&charts[2].svg);
        let install = &results[1];
        let dots = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("pt"))
            .count();
        let samples: usize = install.series.iter().map(|s| s.samples.len()).sum();
        assert_eq!(dots, samples);
        let ticks = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("median"))
            .count();
        assert_eq!(ticks, install.series.len());
        // Against x: one median dot per series, one line per name.
        let doc = parse(&charts[3].svg);
        let dots = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("pt"))
            .count();
        assert_eq!(dots, results[2].series.len());
        let lines = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("medians"))
            .count();
        assert_eq!(lines, 1);
    }

    #[test]
    fn the_table_shows_the_fixture_figures() {
        let results = fixture();
        let charts = charts(&results);
        let t = table(&results, &charts, "docs/bench", &["f.json".into()]);
        let rows: Vec<Vec<String>> = t
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| bench"))
            .map(|l| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect();
        let all: Vec<(&BenchResult, &Series)> = results
            .iter()
            .flat_map(|r| r.series.iter().map(move |s| (r, s)))
            .collect();
        assert_eq!(rows.len(), all.len());
        for (row, (r, s)) in rows.iter().zip(&all) {
            let st = s.stats().unwrap();
            assert_eq!(row[0], r.bench);
            assert_eq!(
                row[2..8],
                [
                    st.n.to_string(),
                    fig(st.min),
                    fig(st.median),
                    fig(st.p90),
                    fig(st.max),
                    s.unit.clone()
                ]
            );
            assert_eq!(row[8], format!("`{}`", r.setup["command"]));
        }
        // By hand, for one row: convergence's route on b2 is 1..=10 ms.
        assert!(t.contains("| convergence | route on b2 | 10 | 1 | 5 | 9 | 10 | ms |"));
        assert!(t.contains(
            "![convergence: distribution over 10 joins](docs/bench/convergence-cdf.svg)"
        ));
    }

    #[test]
    fn the_page_region_is_replaced_idempotently() {
        let page = format!("# x\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n");
        let once = replace_region(&page, "new table\n").unwrap();
        assert_eq!(
            once,
            format!("# x\n\nbefore\n\n{BEGIN}\nnew table\n{END}\n\nafter\n")
        );
        assert_eq!(replace_region(&once, "new table\n").unwrap(), once);
        assert!(replace_region("no markers", "t").is_err());
        assert!(replace_region(&format!("{END}{BEGIN}"), "t").is_err());
    }

    #[test]
    fn charts_are_linked_relative_to_the_page() {
        let root = std::env::temp_dir().join(format!("render-prefix-{}", std::process::id()));
        let bench = root.join("docs/bench");
        std::fs::create_dir_all(&bench).unwrap();
        let page = root.join(DOC);
        std::fs::write(&page, "").unwrap();
        assert_eq!(image_prefix(&page, &bench), "bench");
        assert_eq!(image_prefix(&root.join("README.md"), &bench), "docs/bench");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn axes_cover_the_data_with_round_ticks() {
        let a = Axis::new(3.2, 97.0, true);
        assert_eq!((a.lo, a.hi), (0.0, 100.0));
        assert_eq!(a.ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let flat = Axis::new(5.0, 5.0, false);
        assert!(flat.lo < 5.0 && flat.hi > 5.0);
    }
}
