//! The HTML pages of a run (`harness run --html OUT`): one self-contained
//! page per run, and an index when there are several.
//!
//! In: [`Report`]s; each report's scenario file is read again for the
//! topology (a file that no longer loads: a page without it). Out: files,
//! named as the JSON reports are. Owns the file layout and the index.
//!
//! ```text
//! mod.rs (files, index) ─► page.rs (the page) ─┬─► topology.rs (the drawing)
//!                                              └─► timeline.rs (steps on a time axis)
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::report::json::Report;
use crate::report::markup::escape_markup as esc;
use crate::scenario::Scenario;

#[cfg(test)]
mod fixtures;
mod page;
mod timeline;
mod topology;

use page::STYLE;
pub use page::{page, split_sections};
pub use topology::{topology, topology_svg, Node, Session, SessionKind, Topology};

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
            esc(&r.run_label()),
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
    use fixtures::failed_report;

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
