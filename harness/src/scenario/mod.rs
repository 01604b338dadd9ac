//! Scenario files: topology as data, then steps and expectations.
//!
//! In: a TOML file (see `scenarios/*.toml`; each starts with its picture).
//! Out: a validated [`Scenario`] in which every host, network and container
//! a step names exists, or an error that names the file, the line and what
//! is wrong. Parsing never touches the machine.
//!
//! ```text
//! mod.rs (load) ─► parse.rs (the stages) ─┬─► expand.rs (templates: host counts, subnet patterns, per-host containers)
//!                                         ├─► check/ (hosts, routers, networks, engines, steps: one file per concern)
//!                                         └─► step_kinds.rs (the one table of step kinds; docs/scenario-steps.md)
//! model.rs (RawScenario, Scenario, Step) ─► schema.rs (sections: hosts, routers, networks, ...) ◄─ steps.rs (Action)
//! lookup.rs (names to definitions and addresses)    locate.rs (file:line of a mistake)
//! ```
//! `crate::scenario::X` paths keep working through the re-exports below;
//! no file here imports one that imports it back.

use std::path::Path;

use anyhow::{anyhow, Result};

mod check;
mod expand;
#[cfg(test)]
pub(crate) mod fixtures;
mod locate;
mod lookup;
mod model;
mod parse;
mod schema;
pub mod step_kinds;
mod steps;

pub use check::steps::{placeholders, route_protocol};
pub use model::{Scenario, Step};
pub use schema::*;
pub use step_kinds::{Measure, Play, StepKind, STEP_KINDS};
pub use steps::*;

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        Scenario::parse(&src, path)
    }
}
