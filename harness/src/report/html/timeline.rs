//! The timeline of the HTML page: each step on a time axis from the start
//! of the run, its convergence as a green bar ending when it held, the
//! world's build and teardown shaded.
//!
//! In: a [`Report`]'s steps and times. Out: an inline SVG appended to the
//! page, and the page's one way of writing a duration ([`ms`]). Pure.

use std::fmt::Write as _;

use crate::report::json::Report;
use crate::report::markup::escape_markup as esc;

/// A duration as the page writes it: ms below 10 s, else seconds.
pub(super) fn ms(v: u64) -> String {
    if v < 10_000 {
        format!("{v} ms")
    } else {
        format!("{:.1} s", v as f64 / 1000.0)
    }
}

/// Steps on a time axis from the start of the run: a grey bar per step
/// (red if it failed) and, for a step that measured convergence, a green bar
/// of that length ending when it held.
pub(super) fn timeline(h: &mut String, r: &Report) {
    if r.steps.is_empty() {
        return;
    }
    let end = r
        .steps
        .iter()
        .map(|s| s.started_ms + s.elapsed_ms)
        .max()
        .unwrap_or(0)
        .max(r.elapsed_ms)
        .max(1);
    let (label_w, plot_w, row) = (260i64, 640i64, 18i64);
    let width = label_w + plot_w + 90;
    let height = 30 + row * r.steps.len() as i64;
    let x = |t: u64| label_w + (t as f64 / end as f64 * plot_w as f64) as i64;
    writeln!(
        h,
        "<h2>Timeline</h2>\n<svg class=\"tl\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n<line class=\"axis\" x1=\"{label_w}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><text x=\"{label_w}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        height - 14,
        label_w + plot_w,
        height - 14,
        height - 2,
        label_w + plot_w,
        height - 2,
        ms(end)
    )
    .ok();
    // Before the first step: the world being built (namespaces, daemons,
    // networks); after the last: teardown (and diagnostics, on failure).
    let first = r.steps[0].started_ms;
    let last = r
        .steps
        .iter()
        .map(|s| s.started_ms + s.elapsed_ms)
        .max()
        .unwrap_or(end);
    for (from, to, what) in [(0, first, "build"), (last, end, "teardown")] {
        if x(to) - x(from) >= 30 {
            writeln!(
                h,
                "<rect class=\"phase\" x=\"{}\" y=\"0\" width=\"{}\" height=\"{}\"/><text class=\"phase\" x=\"{}\" y=\"{}\">{what}</text>",
                x(from),
                x(to) - x(from),
                height - 14,
                x(from) + 3,
                height - 18
            )
            .ok();
        }
    }
    for (i, st) in r.steps.iter().enumerate() {
        let y = 4 + row * i as i64;
        let name: String = st.name.chars().take(38).collect();
        let (x0, x1) = (x(st.started_ms), x(st.started_ms + st.elapsed_ms));
        writeln!(
            h,
            "<text x=\"0\" y=\"{}\">{:02} {}</text><rect class=\"bar{}\" x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"{}\"><title>{}: {} from {}</title></rect>",
            y + 12,
            i + 1,
            esc(&name),
            if st.passed { "" } else { " failed" },
            (x1 - x0).max(2),
            row - 4,
            esc(&st.name),
            ms(st.elapsed_ms),
            ms(st.started_ms)
        )
        .ok();
        if let Some(c) = st.convergence_ms {
            let held = st.started_ms + st.elapsed_ms;
            let c0 = x(held.saturating_sub(c));
            writeln!(
                h,
                "<rect class=\"conv\" x=\"{c0}\" y=\"{}\" width=\"{}\" height=\"6\"><title>converged in {}</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
                y + 5,
                (x(held) - c0).max(2),
                ms(c),
                x(held) + 4,
                y + 12,
                ms(c)
            )
            .ok();
        }
    }
    h.push_str("</svg>\n<p><small>grey: the step (red: failed); green: its convergence (from the last event until it held); shaded: building the world, tearing it down.</small></p>\n");
}
