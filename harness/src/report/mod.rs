//! What a run leaves behind: the JSON report of each scenario run, a JUnit
//! file, a Markdown summary for GitHub, and the HTML pages.
//!
//! In: the runner's [`Report`]s (and for the pages, each report's scenario
//! file read again). Out: files. Owns the formats; runs nothing.
//!
//! ```text
//! json.rs (Report, StepReport, ReachCell; write_reports) ◄─ junit.rs, summary.rs, html/
//! markup.rs (escaping for XML, HTML, SVG)               ◄─ junit.rs, html/, bench/render.rs
//! html/ (mod.rs: files ─► page.rs ─► topology.rs (drawing; sessions from topology::sessions), timeline.rs)
//! ```

pub mod html;
pub mod json;
mod junit;
pub mod markup;
mod summary;

pub use json::{write_reports, ReachCell, Report, StepReport};
pub use junit::junit;
pub use markup::escape_markup;
pub use summary::markdown_summary;
