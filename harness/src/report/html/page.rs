//! One run's page: title and outcome, the topology drawing, every step
//! with its outcome and times (steps after a failure listed as not run),
//! the timeline, a grid for each reachability step, and for a failed run
//! the diagnostics split per host into folding sections.
//!
//! In: a [`Report`] and, when its file still loads, its [`Scenario`]. Out:
//! the page's HTML, self-contained (inline CSS and SVG, a few lines of
//! script for "expand all", no fetch of any kind). Every string from a
//! scenario file, a report or a log goes through [`esc`].

use std::fmt::Write as _;

use super::timeline::{ms, timeline};
use super::topology::{topology, topology_svg};
use crate::report::json::{ReachCell, Report};
use crate::report::markup::escape_markup as esc;
use crate::scenario::Scenario;

pub(super) const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
.badge{display:inline-block;padding:.1em .6em;border-radius:4px;color:#fff;font-weight:600}
.PASSED,.pass{background:#2e7d32}.FAILED,.fail{background:#c62828}.SKIPPED,.skip{background:#8d6e00}
.notrun{background:#9e9e9e}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.badge{white-space:nowrap}
tr.failed td{background:#fdecea}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em;margin:.3em 0}
.err{white-space:pre-wrap;background:#fdecea;border-left:4px solid #c62828}
svg text{font:12px system-ui,sans-serif}
.topo .seg{stroke:#555;stroke-width:4}.topo .seglabel{fill:#555}
.topo .link{stroke:#999;stroke-width:2}
.topo .uplink{stroke:#555;stroke-width:3}
.topo .host{fill:#e3f2fd;stroke:#1565c0}.topo .router{fill:#fff3e0;stroke:#e65100}
.topo .name{text-anchor:middle;font-weight:600}.topo .sub,.topo .ctrlabel,.topo .more{text-anchor:middle;font-size:11px}
.topo .ctrlabel{fill:#fff}
.topo .sess{fill:none;stroke-width:2;stroke-dasharray:6 3}.topo .sess.bfd{stroke-width:3.5;stroke-dasharray:none}
.ibgp{stroke:#1565c0;border-color:#1565c0}.ebgp{stroke:#e65100;border-color:#e65100}.rr{stroke:#6a1b9a;border-color:#6a1b9a}
.legend span{margin-right:1.2em}.legend i{display:inline-block;width:2em;border-top-width:3px;border-top-style:dashed;vertical-align:middle;margin-right:.3em}
.grid td{text-align:center;min-width:2.2em}.grid td.ok{background:#c8e6c9}.grid td.no{background:#ffcdd2}.grid td.self{background:#eee}
.tl .bar{fill:#b0bec5}.tl .bar.failed{fill:#e57373}.tl .conv{fill:#43a047}.tl .axis{stroke:#999}.tl rect.phase{fill:#f3f3f3}.tl text.phase{fill:#999;font-size:11px}
details{margin:.3em 0}summary{cursor:pointer}
"#;

/// Expands (or folds) every `<details>` of the page.
const SCRIPT: &str = r#"
function setAll(open){document.querySelectorAll('details').forEach(function(d){d.open=open;});}
"#;

/// One run's page.
pub fn page(r: &Report, s: Option<&Scenario>) -> String {
    let mut h = String::new();
    let title = format!("{} ({}) {}", r.scenario, r.run_label(), r.outcome());
    writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        esc(&title)
    )
    .ok();
    writeln!(
        h,
        "<h1>{} <span class=\"badge {}\">{}</span></h1>\n<p>{}<br><small>{} · engine {}{} · {:.1} s</small></p>",
        esc(&r.scenario),
        r.outcome(),
        r.outcome(),
        esc(&r.description),
        esc(&r.file),
        esc(&r.engine),
        r.gobgp
            .as_deref()
            .map(|l| format!(" · gobgpd {}", esc(l)))
            .unwrap_or_default(),
        r.elapsed_ms as f64 / 1000.0
    )
    .ok();
    if let Some(why) = &r.skipped {
        writeln!(h, "<p class=\"err\">Skipped: {}</p>", esc(why)).ok();
    }
    if let Some(e) = &r.error {
        writeln!(h, "<pre class=\"err\">{}</pre>", esc(e)).ok();
    }
    if let Some(s) = s {
        h.push_str("<h2>Topology</h2>\n");
        let t = topology(s);
        h.push_str(&topology_svg(&t));
        h.push_str("<p class=\"legend\"><span><i class=\"ibgp\"></i>iBGP</span><span><i class=\"ebgp\"></i>eBGP</span><span><i class=\"rr\"></i>route-reflector client</span><span><i class=\"ibgp\" style=\"border-top-style:solid\"></i>solid: with BFD</span></p>\n");
        if !t.sessions.is_empty() {
            let list: Vec<String> = t
                .sessions
                .iter()
                .map(|x| format!("{} – {}", esc(&x.a), esc(&x.b)))
                .collect();
            writeln!(h, "<p><small>BGP sessions: {}</small></p>", list.join(", ")).ok();
        }
    }
    steps_table(&mut h, r, s);
    timeline(&mut h, r);
    for (i, st) in r.steps.iter().enumerate() {
        if !st.reach.is_empty() {
            writeln!(
                h,
                "<h2>Reachability: step {} ({})</h2>",
                i + 1,
                esc(&st.name)
            )
            .ok();
            h.push_str(&reach_grid(&st.reach));
        }
    }
    if let Some(d) = &r.diagnostics {
        h.push_str("<h2>Diagnostics</h2>\n<p><button type=\"button\" onclick=\"setAll(true)\">expand all</button> <button type=\"button\" onclick=\"setAll(false)\">fold all</button></p>\n");
        for (head, body) in split_sections(d) {
            // Hosts open: their routes, BGP neighbours and logs are why one reads this.
            let open = if head.starts_with("host ") {
                " open"
            } else {
                ""
            };
            writeln!(h, "<details{open}><summary><b>{}</b></summary>", esc(&head)).ok();
            for (sub, text) in split_commands(&body) {
                writeln!(
                    h,
                    "<details open><summary><code>{}</code></summary><pre>{}</pre></details>",
                    esc(&sub),
                    esc(&text)
                )
                .ok();
            }
            h.push_str("</details>\n");
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn steps_table(h: &mut String, r: &Report, s: Option<&Scenario>) {
    h.push_str("<h2>Steps</h2>\n<table class=\"steps\"><tr><th>#</th><th>step</th><th>line</th><th>outcome</th><th>started</th><th>took</th><th>convergence</th><th>detail</th></tr>\n");
    for (i, st) in r.steps.iter().enumerate() {
        let (class, word) = if st.passed {
            ("pass", "ok")
        } else {
            ("fail", "failed")
        };
        let detail = st.detail.as_deref().unwrap_or("");
        let detail = if detail.len() > 160 || detail.contains('\n') {
            let first: String = detail
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            format!(
                "<details><summary>{}…</summary><pre>{}</pre></details>",
                esc(&first),
                esc(detail)
            )
        } else {
            esc(detail)
        };
        writeln!(
            h,
            "<tr{}><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td><span class=\"badge {class}\">{word}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{detail}</td></tr>",
            if st.passed { "" } else { " class=\"failed\"" },
            i + 1,
            esc(&st.name),
            st.line,
            ms(st.started_ms),
            ms(st.elapsed_ms),
            st.convergence_ms.map(ms).unwrap_or_default()
        )
        .ok();
    }
    // Steps after a failure did not run; list them so the page shows the whole plan.
    if let Some(s) = s.filter(|_| r.skipped.is_none()) {
        for (i, st) in s.steps.iter().enumerate().skip(r.steps.len()) {
            writeln!(
                h,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td><span class=\"badge notrun\">not run</span></td><td></td><td></td><td></td><td></td></tr>",
                i + 1,
                esc(&st.name),
                st.line
            )
            .ok();
        }
    }
    h.push_str("</table>\n");
}

/// A from × to table: ✓ reached, ✗ not, grey where nothing was probed.
fn reach_grid(cells: &[ReachCell]) -> String {
    // Rows and columns in one order (sources first, as probed), so the
    // diagonal of a matrix lines up.
    let mut names: Vec<&str> = Vec::new();
    for n in cells
        .iter()
        .map(|c| &c.from)
        .chain(cells.iter().map(|c| &c.to))
    {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let froms: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| cells.iter().any(|c| c.from == *n))
        .collect();
    let tos: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| cells.iter().any(|c| c.to == *n))
        .collect();
    let mut g = String::from("<table class=\"grid\"><tr><th>from \\ to</th>");
    for t in &tos {
        write!(g, "<th>{}</th>", esc(t)).ok();
    }
    g.push_str("</tr>\n");
    for f in &froms {
        write!(g, "<tr><th>{}</th>", esc(f)).ok();
        for t in &tos {
            match cells.iter().find(|c| c.from == *f && c.to == *t) {
                Some(c) if c.ok => g.push_str("<td class=\"ok\" title=\"reached\">✓</td>"),
                Some(_) => g.push_str("<td class=\"no\" title=\"not reached\">✗</td>"),
                None => g.push_str("<td class=\"self\"></td>"),
            }
        }
        g.push_str("</tr>\n");
    }
    g.push_str("</table>\n");
    g
}

/// Splits the diagnostics text at its `===== host h1 (...) =====` headers:
/// (header, body) for each section, in order; text before the first header
/// (if any) is a section of its own.
pub fn split_sections(d: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in d.lines() {
        let t = line.trim();
        if t.len() > 12 && t.starts_with("===== ") && t.ends_with(" =====") {
            out.push((t[6..t.len() - 6].to_string(), String::new()));
            continue;
        }
        if out.is_empty() {
            if t.is_empty() {
                continue;
            }
            out.push(("diagnostics".into(), String::new()));
        }
        let body = &mut out.last_mut().expect("pushed").1;
        body.push_str(line);
        body.push('\n');
    }
    out
}

/// Splits one section at its `$ command` and `--- log ---` lines.
fn split_commands(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if line.starts_with("$ ") || (line.starts_with("--- ") && line.ends_with(" ---")) {
            out.push((line.to_string(), String::new()));
            continue;
        }
        if out.is_empty() {
            out.push(("output".into(), String::new()));
        }
        let text = &mut out.last_mut().expect("pushed").1;
        text.push_str(line);
        text.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::fixtures::{failed_report, scenario, MESH};

    #[test]
    fn a_grid_has_one_row_per_source_and_one_column_per_target_in_one_order() {
        let c = |f: &str, t: &str| ReachCell {
            from: f.into(),
            to: t.into(),
            ok: true,
        };
        let g = reach_grid(&[c("a", "b"), c("a", "h1"), c("b", "a"), c("b", "h1")]);
        assert!(
            g.contains("<th>from \\ to</th><th>a</th><th>b</th><th>h1</th>"),
            "{g}"
        );
        assert_eq!(g.matches("<td class=\"self\"></td>").count(), 2, "{g}");
    }

    #[test]
    fn every_string_from_files_and_logs_is_escaped() {
        let h = page(&failed_report(), Some(&scenario(MESH)));
        assert!(!h.contains("<script>alert"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(h.contains("a &lt;b&gt;bold&lt;/b&gt; claim"));
        assert!(h.contains("&lt;ERROR&gt; boom"));
        assert!(h.contains("it &amp; broke"));
        // The only script element is the page's own.
        assert_eq!(h.matches("<script").count(), 1);
    }

    #[test]
    fn the_page_has_grid_timeline_topology_and_per_host_diagnostics() {
        let h = page(&failed_report(), Some(&scenario(MESH)));
        assert!(h.contains("<svg class=\"topo\""));
        assert!(h.contains("<svg class=\"tl\""));
        assert!(h.contains("<td class=\"ok\""));
        assert!(h.contains("<td class=\"no\""));
        assert!(h.contains("<summary><b>host h1 (192.0.2.1/24, namespace n)</b></summary>"));
        assert!(h.contains("<summary><code>--- driver log (tail) /x ---</code></summary>"));
        assert!(h.contains("FAILED"));
    }

    #[test]
    fn diagnostics_split_at_section_headers() {
        let d = failed_report().diagnostics.unwrap();
        let s = split_sections(&d);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].0, "container c1 (/proc/1/ns/net)");
        assert_eq!(split_commands(&s[0].1).len(), 2);
    }
}
