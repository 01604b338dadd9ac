//! The HTML report of a scenario run (`harness run --html OUT`): one
//! self-contained page per run, with no fetch of any kind (inline CSS and
//! SVG, a few lines of inline script for "expand all").
//!
//! In: a [`Report`] and, when its file still loads, its [`Scenario`]. Out:
//! a page with the topology drawn from the scenario ([`topology`], a pure
//! function), every step with its outcome and times, a grid for each
//! reachability step, a convergence timeline, and for a failed run the
//! diagnostics split per host. Every string that comes from a scenario file,
//! a report or a log goes through [`esc`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::report::{ReachCell, Report};
use crate::scenario::{BgpMode, RouterKind, Scenario};

/// HTML-escapes text for element content and quoted attribute values.
pub use crate::report::escape_markup as esc;

/// A host or router of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Second line of the box: address, AS, role or router kind.
    pub label: String,
    /// The segments it has a link on.
    pub segments: Vec<String>,
    /// (container, network) on this host, in declaration order.
    pub containers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionKind {
    Ibgp,
    Ebgp,
    /// iBGP from a route reflector to one of its clients.
    RrClient,
}

/// One BGP session, named once (`a` < `b` in declaration order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub a: String,
    pub b: String,
    pub kind: SessionKind,
}

/// What the page draws: segments, hosts, routers and the BGP sessions
/// between them, as the world configures them (see `World::neighbours`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub segments: Vec<String>,
    pub hosts: Vec<Node>,
    pub routers: Vec<Node>,
    pub sessions: Vec<Session>,
}

/// The drawing's data from a (validated) scenario. Sessions follow the
/// world's rules: a host's `peers` when given, else `[bgp] mode` (mesh: every
/// host with every other; route-reflector: every client with each
/// reflector); plus each router's `neighbors`. A session is drawn when
/// both ends configure it (one side alone never gets it established), once.
pub fn topology(s: &Scenario) -> Topology {
    let first_segment = s.segments.first().map(|g| g.name.clone());
    let hosts: Vec<Node> = s
        .hosts
        .iter()
        .map(|h| {
            let mut label = h.address.map(|a| a.addr().to_string()).unwrap_or_default();
            if let Some(a6) = h.address6 {
                write!(label, " {}", a6.addr()).ok();
            }
            write!(label, " AS{}", h.asn).ok();
            if s.bgp.reflectors.contains(&h.name) {
                label.push_str(" RR");
            }
            Node {
                name: h.name.clone(),
                label,
                segments: h
                    .segment
                    .clone()
                    .or(first_segment.clone())
                    .into_iter()
                    .collect(),
                containers: s
                    .containers
                    .iter()
                    .filter(|c| c.host == h.name)
                    .map(|c| (c.name.clone(), c.network.clone()))
                    .collect(),
            }
        })
        .collect();
    let routers: Vec<Node> = s
        .routers
        .iter()
        .map(|r| Node {
            name: r.name.clone(),
            label: match r.kind {
                RouterKind::Frr => format!("FRR AS{}", r.asn),
                RouterKind::Bird => format!("BIRD AS{}", r.asn),
            },
            segments: r.links.keys().cloned().collect(),
            containers: Vec::new(),
        })
        .collect();
    // Declaration order, so each session has one spelling.
    let order: Vec<&str> = s
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain(s.routers.iter().map(|r| r.name.as_str()))
        .collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap_or(usize::MAX);
    // (from, to) -> whether `from` treats `to` as a route-reflector client.
    let mut configured: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    let mut add = |a: &str, b: &str, rr: bool| {
        if a != b && pos(b) != usize::MAX {
            *configured.entry((pos(a), pos(b))).or_default() |= rr;
        }
    };
    let rrs = &s.bgp.reflectors;
    for h in &s.hosts {
        if let Some(peers) = &h.peers {
            for p in peers {
                // The world drops a peer it shares no segment with.
                if s.shared_address(&h.name, p).is_some() {
                    add(&h.name, p, false);
                }
            }
            continue;
        }
        match s.bgp.mode {
            BgpMode::None => {}
            BgpMode::Mesh => s.hosts.iter().for_each(|o| add(&h.name, &o.name, false)),
            // A reflector peers with every client, not with other reflectors.
            BgpMode::RouteReflector if rrs.contains(&h.name) => s
                .hosts
                .iter()
                .filter(|o| !rrs.contains(&o.name))
                .for_each(|o| add(&h.name, &o.name, true)),
            BgpMode::RouteReflector => rrs.iter().for_each(|r| add(&h.name, r, true)),
        }
    }
    for r in &s.routers {
        for n in &r.neighbors {
            add(&r.name, n, r.rr_clients.contains(n));
        }
    }
    let mut sessions = Vec::new();
    for (&(a, b), &rr) in &configured {
        let Some(&rr_back) = configured.get(&(b, a)) else {
            continue;
        };
        if a > b {
            continue; // counted from the other end
        }
        let kind = if s.asn_of(order[a]) != s.asn_of(order[b]) {
            SessionKind::Ebgp
        } else if rr || rr_back {
            SessionKind::RrClient
        } else {
            SessionKind::Ibgp
        };
        sessions.push(Session {
            a: order[a].to_string(),
            b: order[b].to_string(),
            kind,
        });
    }
    Topology {
        segments: s.segments.iter().map(|g| g.name.clone()).collect(),
        hosts,
        routers,
        sessions,
    }
}

const PALETTE: [&str; 8] = [
    "#2b8cbe", "#e6550d", "#31a354", "#756bb1", "#d6616b", "#8c6d31", "#17becf", "#636363",
];
const BOX_W: i64 = 150;
const GAP: i64 = 40;
const MAX_SHOWN: usize = 6;

/// The topology as an inline SVG: containers above their host, hosts on
/// top, one line per segment, routers below, BGP sessions as curves.
pub fn topology_svg(t: &Topology) -> String {
    let networks: BTreeSet<&str> = t
        .hosts
        .iter()
        .flat_map(|h| h.containers.iter().map(|(_, n)| n.as_str()))
        .collect();
    let colour = |net: &str| {
        let i = networks.iter().position(|n| *n == net).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let stack = t
        .hosts
        .iter()
        .map(|h| h.containers.len().min(MAX_SHOWN + 1))
        .max()
        .unwrap_or(0) as i64;
    let top = 10 + stack * 22;
    let host_y = top + 10;
    let host_h = 46;
    let seg_y0 = host_y + host_h + 70;
    let seg_y =
        |name: &str| seg_y0 + 18 * t.segments.iter().position(|s| s == name).unwrap_or(0) as i64;
    let seg_end = seg_y0 + 18 * t.segments.len().max(1) as i64;
    let router_y = seg_end + 60;
    let cols = t.hosts.len().max(t.routers.len()).max(1) as i64;
    // Room on the right for the segments' names.
    let width = 100 + cols * (BOX_W + GAP);
    let height = if t.routers.is_empty() {
        seg_end + 10
    } else {
        router_y + 60
    };
    let x_of = |i: usize, n: usize| {
        // Centre each row under the widest one.
        let row = n as i64 * (BOX_W + GAP) - GAP;
        (width - 80 - row) / 2 + i as i64 * (BOX_W + GAP)
    };
    let mut centre: BTreeMap<&str, (i64, i64, bool)> = BTreeMap::new();
    let mut svg = format!(
        "<svg class=\"topo\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"topology\">\n"
    );
    // Segments: a line spanning every node on it.
    let mut span: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let rows = [(&t.hosts, host_y + host_h), (&t.routers, router_y)];
    for (nodes, _) in rows {
        for (i, n) in nodes.iter().enumerate() {
            let cx = x_of(i, nodes.len()) + BOX_W / 2;
            for sname in &n.segments {
                let e = span.entry(sname.as_str()).or_insert((cx, cx));
                e.0 = e.0.min(cx);
                e.1 = e.1.max(cx);
            }
        }
    }
    for (sname, (x0, x1)) in &span {
        let y = seg_y(sname);
        writeln!(
            svg,
            "<line class=\"seg\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"seglabel\" x=\"{}\" y=\"{}\">{}</text>",
            x0 - 30,
            x1 + 30,
            x1 + 34,
            y + 4,
            esc(sname)
        )
        .ok();
    }
    for (row, (nodes, edge_y)) in rows.iter().enumerate() {
        let is_host = row == 0;
        for (i, n) in nodes.iter().enumerate() {
            let x = x_of(i, nodes.len());
            let y = if is_host { host_y } else { router_y };
            let cx = x + BOX_W / 2;
            for sname in &n.segments {
                writeln!(
                    svg,
                    "<line class=\"link\" x1=\"{cx}\" y1=\"{edge_y}\" x2=\"{cx}\" y2=\"{}\"/>",
                    seg_y(sname)
                )
                .ok();
            }
            let class = if is_host { "host" } else { "router" };
            writeln!(
                svg,
                "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{host_h}\" rx=\"6\"/>\
                 <text class=\"name\" x=\"{cx}\" y=\"{}\">{}</text><text class=\"sub\" x=\"{cx}\" y=\"{}\">{}</text>",
                y + 19,
                esc(&n.name),
                y + 36,
                esc(&n.label)
            )
            .ok();
            // Session ends: the bottom of a host, the top of a router.
            centre.insert(
                n.name.as_str(),
                (cx, if is_host { y + host_h } else { y }, is_host),
            );
            let shown = if n.containers.len() > MAX_SHOWN + 1 {
                MAX_SHOWN
            } else {
                n.containers.len()
            };
            for (k, (c, net)) in n.containers.iter().take(shown).enumerate() {
                let cy = y - 22 * (k as i64 + 1);
                writeln!(
                    svg,
                    "<rect class=\"ctr\" x=\"{}\" y=\"{cy}\" width=\"{}\" height=\"18\" rx=\"4\" style=\"fill:{}\"/><text class=\"ctrlabel\" x=\"{cx}\" y=\"{}\">{} · {}</text>",
                    x + 10,
                    BOX_W - 20,
                    colour(net),
                    cy + 13,
                    esc(c),
                    esc(net)
                )
                .ok();
            }
            if shown < n.containers.len() {
                let cy = y - 22 * (shown as i64 + 1);
                writeln!(
                    svg,
                    "<text class=\"more\" x=\"{cx}\" y=\"{}\">+{} more containers</text>",
                    cy + 13,
                    n.containers.len() - shown
                )
                .ok();
            }
        }
    }
    // Each node's session ends spread along its edge, ordered by where the
    // other end is, so that lines to one reflector fan out instead of meeting.
    let mut ends: BTreeMap<&str, Vec<(i64, usize)>> = BTreeMap::new();
    for (k, sess) in t.sessions.iter().enumerate() {
        if let (Some(a), Some(b)) = (centre.get(sess.a.as_str()), centre.get(sess.b.as_str())) {
            ends.entry(sess.a.as_str()).or_default().push((b.0, k));
            ends.entry(sess.b.as_str()).or_default().push((a.0, k));
        }
    }
    let end_x = |node: &str, k: usize| {
        let mut list = ends.get(node).cloned().unwrap_or_default();
        list.sort();
        let n = list.len() as i64;
        let i = list.iter().position(|e| e.1 == k).unwrap_or(0) as i64;
        let usable = BOX_W - 30;
        (i + 1) * usable / (n + 1) - usable / 2
    };
    for (k, sess) in t.sessions.iter().enumerate() {
        let (Some(&(x1, y1, h1)), Some(&(x2, y2, h2))) =
            (centre.get(sess.a.as_str()), centre.get(sess.b.as_str()))
        else {
            continue;
        };
        let (x1, x2) = (x1 + end_x(&sess.a, k), x2 + end_x(&sess.b, k));
        // Host to host: a curve dipping towards the segments, deeper for
        // hosts further apart; anything with a router: a gentle bow.
        let (mx, my) = if h1 && h2 {
            let depth = 12 + ((x2 - x1).abs() / (BOX_W + GAP)).min(5) * 10;
            ((x1 + x2) / 2, y1 + depth + (k as i64 % 3) * 4)
        } else if !h1 && !h2 {
            // Router to router: a bow above their row.
            ((x1 + x2) / 2, y1.min(y2) - 28)
        } else {
            ((x1 + x2) / 2 + 20, (y1 + y2) / 2)
        };
        let (class, title) = match sess.kind {
            SessionKind::Ibgp => ("ibgp", "iBGP"),
            SessionKind::Ebgp => ("ebgp", "eBGP"),
            SessionKind::RrClient => ("rr", "iBGP, route-reflector client"),
        };
        writeln!(
            svg,
            "<path class=\"sess {class}\" d=\"M{x1},{y1} Q{mx},{my} {x2},{y2}\"><title>{} – {}: {title}</title></path>",
            esc(&sess.a),
            esc(&sess.b)
        )
        .ok();
    }
    svg.push_str("</svg>\n");
    svg
}

const STYLE: &str = r#"
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
.topo .host{fill:#e3f2fd;stroke:#1565c0}.topo .router{fill:#fff3e0;stroke:#e65100}
.topo .name{text-anchor:middle;font-weight:600}.topo .sub,.topo .ctrlabel,.topo .more{text-anchor:middle;font-size:11px}
.topo .ctrlabel{fill:#fff}
.topo .sess{fill:none;stroke-width:2;stroke-dasharray:6 3}
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
    let title = format!("{} ({}) {}", r.scenario, r.engine, r.outcome());
    writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        esc(&title)
    )
    .ok();
    writeln!(
        h,
        "<h1>{} <span class=\"badge {}\">{}</span></h1>\n<p>{}<br><small>{} · engine {} · {:.1} s</small></p>",
        esc(&r.scenario),
        r.outcome(),
        r.outcome(),
        esc(&r.description),
        esc(&r.file),
        esc(&r.engine),
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
        h.push_str("<p class=\"legend\"><span><i class=\"ibgp\"></i>iBGP</span><span><i class=\"ebgp\"></i>eBGP</span><span><i class=\"rr\"></i>route-reflector client</span></p>\n");
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

fn ms(v: u64) -> String {
    if v < 10_000 {
        format!("{v} ms")
    } else {
        format!("{:.1} s", v as f64 / 1000.0)
    }
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

/// Steps on a time axis from the start of the run: a grey bar per step
/// (red if it failed) and, for a step that measured convergence, a green bar
/// of that length ending when it held.
fn timeline(h: &mut String, r: &Report) {
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

/// The index of several runs: one row each, linking to its page.
pub fn index(reports: &[Report], pages: &[String]) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>harness runs</title><style>{STYLE}</style></head><body>\n<h1>{} runs</h1>\n<table><tr><th>scenario</th><th>engine</th><th>outcome</th><th>time</th><th>note</th></tr>\n",
        reports.len()
    );
    for (r, p) in reports.iter().zip(pages) {
        let note = r
            .skipped
            .clone()
            .or_else(|| {
                r.error
                    .as_ref()
                    .map(|e| e.lines().next().unwrap_or("").into())
            })
            .unwrap_or_default();
        writeln!(
            h,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td class=\"num\">{:.1} s</td><td>{}</td></tr>",
            esc(p),
            esc(&r.scenario),
            esc(&r.engine),
            r.outcome(),
            r.outcome(),
            r.elapsed_ms as f64 / 1000.0,
            esc(&note)
        )
        .ok();
    }
    h.push_str("</table></body></html>\n");
    h
}

/// A run's page, with its scenario read again from `report.file` for the
/// topology (a file that no longer loads: a page without it).
pub fn render(r: &Report) -> String {
    let s = Scenario::load(Path::new(&r.file)).ok();
    page(r, s.as_ref())
}

fn write(p: &Path, text: &str) -> Result<()> {
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(p, text).with_context(|| format!("write {}", p.display()))
}

/// Writes pages as [`crate::report::write_reports`] writes JSON: one file
/// when `out` ends in `.html` and there is one report, else `out/index.html`
/// and `out/<scenario>.html` for each (`-2`, `-3`, ... for repeats).
/// Returns the files written.
pub fn write_pages(out: &Path, reports: &[Report]) -> Result<Vec<PathBuf>> {
    if reports.len() == 1 && out.extension().is_some_and(|e| e == "html") {
        write(out, &render(&reports[0]))?;
        return Ok(vec![out.to_path_buf()]);
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names = Vec::new();
    let mut written = Vec::new();
    for r in reports {
        let n = seen.entry(&r.scenario).or_default();
        *n += 1;
        let name = if *n == 1 {
            format!("{}.html", r.scenario)
        } else {
            format!("{}-{n}.html", r.scenario)
        };
        let p = out.join(&name);
        write(&p, &render(r))?;
        written.push(p);
        names.push(name);
    }
    let p = out.join("index.html");
    write(&p, &index(reports, &names))?;
    written.push(p);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StepReport;

    fn scenario(src: &str) -> Scenario {
        Scenario::parse(src, Path::new("t.toml")).expect("parses")
    }

    const MESH: &str = r#"
description = "d"
[[hosts]]
name = "h1"
[[hosts]]
name = "h2"
[[hosts]]
name = "h3"
[[networks]]
name = "blue"
subnets = { h1 = "10.1.1.0/24", h2 = "10.1.2.0/24" }
[[containers]]
name = "c1"
host = "h1"
network = "blue"
"#;

    fn pairs(t: &Topology) -> Vec<(String, String, SessionKind)> {
        t.sessions
            .iter()
            .map(|s| (s.a.clone(), s.b.clone(), s.kind))
            .collect()
    }

    #[test]
    fn a_mesh_has_one_session_per_pair_of_hosts() {
        let t = topology(&scenario(MESH));
        let p = pairs(&t);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().all(|x| x.2 == SessionKind::Ibgp));
        assert_eq!(t.hosts[0].containers, vec![("c1".into(), "blue".into())]);
        assert_eq!(t.segments, vec!["underlay".to_string()]);
    }

    #[test]
    fn reflector_clients_peer_with_each_reflector_only() {
        let src = MESH.replace(
            "description = \"d\"",
            "description = \"d\"\n[bgp]\nmode = \"route-reflector\"\nreflector = \"h1\"",
        );
        let t = topology(&scenario(&src));
        let p = pairs(&t);
        assert_eq!(
            p,
            vec![
                ("h1".into(), "h2".into(), SessionKind::RrClient),
                ("h1".into(), "h3".into(), SessionKind::RrClient)
            ]
        );
    }

    #[test]
    fn no_bgp_draws_no_session() {
        let src = MESH.replace(
            "description = \"d\"",
            "description = \"d\"\n[bgp]\nmode = \"none\"",
        );
        assert!(topology(&scenario(&src)).sessions.is_empty());
    }

    #[test]
    fn routers_and_ebgp_sessions_come_from_both_ends_configuration() {
        let t = topology(
            &Scenario::load(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scenarios/frr-ebgp-racks.toml"
            )))
            .expect("loads"),
        );
        let names: Vec<String> = t.routers.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["tor1", "tor2"]);
        let got: Vec<String> = t
            .sessions
            .iter()
            .map(|s| format!("{}-{} {:?}", s.a, s.b, s.kind))
            .collect();
        assert_eq!(
            got,
            [
                "h1-tor1 Ebgp",
                "h2-tor1 Ebgp",
                "h3-tor2 Ebgp",
                "tor1-tor2 Ebgp"
            ]
        );
    }

    #[test]
    fn a_session_only_one_end_configures_is_not_drawn() {
        // h3 peers with h1 only; h1 and h2 mesh (and so name h3 too).
        let src = MESH.replace("name = \"h3\"", "name = \"h3\"\npeers = [\"h1\"]");
        let got: Vec<(String, String, SessionKind)> = pairs(&topology(&scenario(&src)));
        assert_eq!(
            got,
            vec![
                ("h1".into(), "h2".into(), SessionKind::Ibgp),
                ("h1".into(), "h3".into(), SessionKind::Ibgp)
            ]
        );
    }

    #[test]
    fn every_scenario_file_draws_with_sessions_between_known_nodes() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"));
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let s = Scenario::load(&p).unwrap();
            let t = topology(&s);
            let known = |x: &str| t.hosts.iter().chain(&t.routers).any(|n| n.name == x);
            for x in &t.sessions {
                assert!(known(&x.a) && known(&x.b), "{}: {x:?}", p.display());
            }
            if s.bgp.mode != BgpMode::None && s.hosts.len() > 1 {
                assert!(!t.sessions.is_empty(), "{}: no session", p.display());
            }
            assert!(topology_svg(&t).ends_with("</svg>\n"));
            n += 1;
        }
        assert!(n > 10);
    }

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

    fn failed_report() -> Report {
        Report {
            scenario: "x".into(),
            engine: "emulator".into(),
            description: "a <b>bold</b> claim".into(),
            steps: vec![
                StepReport {
                    name: "<script>alert(1)</script>".into(),
                    passed: true,
                    elapsed_ms: 30,
                    convergence_ms: Some(20),
                    reach: vec![
                        ReachCell {
                            from: "c1".into(),
                            to: "c2".into(),
                            ok: true,
                        },
                        ReachCell {
                            from: "c2".into(),
                            to: "<c1>".into(),
                            ok: false,
                        },
                    ],
                    ..Default::default()
                },
                StepReport {
                    name: "then".into(),
                    started_ms: 30,
                    elapsed_ms: 50,
                    detail: Some("it & broke".into()),
                    ..Default::default()
                },
            ],
            error: Some("step 2 failed".into()),
            diagnostics: Some(
                "\n===== host h1 (192.0.2.1/24, namespace n) =====\n$ ip route show table main\n10.1.2.2 via 192.0.2.2\n--- driver log (tail) /x ---\n<ERROR> boom\n\n===== container c1 (/proc/1/ns/net) =====\nlo UP\n"
                    .into(),
            ),
            ..Default::default()
        }
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

    #[test]
    fn several_reports_make_a_folder_with_an_index() {
        let dir = std::env::temp_dir().join(format!("harness-html-{}", std::process::id()));
        let r = failed_report();
        let files = write_pages(&dir, &[r.clone(), r]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.html", "x-2.html", "index.html"]);
        let one = dir.join("one.html");
        assert_eq!(
            write_pages(&one, &[failed_report()]).unwrap(),
            vec![one.clone()]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
