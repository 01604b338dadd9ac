//! The harness: Docker hosts made of network namespaces, real gobgpd and
//! ipvlan-bgp processes inside them, and scenario files that start and stop
//! containers, break things and assert who reaches whom and how fast.
//!
//! ```text
//! main.rs (CLI) ─┬─► runner/ (play a scenario: build, steps, diagnostics, teardown) ─► report/ (json, junit, summary, html/)
//!                ├─► vm.rs (the same files inside a VM with a stock kernel)
//!                └─► bench/ (measurements on the harness's hosts; in_vm through vm.rs)
//! runner/ ─┬─► engine/   (mod.rs: the factory; container.rs: the ContainerEngine trait; emulator/, dockerd/)
//!          ├─► topology/ (World::build, the one builder: wire, hosts, routers, sessions, daemons, configs)
//!          ├─► machine.rs (what this machine can do; skip or fail)
//!          └─► probe/    (reach: ICMP/TCP from inside namespaces; fast: echo every 2 ms; routes: route events per namespace; links; metrics)
//! engine/ ─► topology/ ─► scenario/ (parse, expand, check/, schema, steps, step_kinds) ─► probe/metrics
//! machine.rs ─► skips.rs (ci/expected-skips, the trial log, `harness skips check`)
//! everything ─► netns.rs (namespaces, child processes), cleanup.rs (the undo stack), util.rs
//! util::eventually: the one deadline loop, every deadline scaled by HARNESS_TIME_SCALE
//! ```
//! No file imports one that imports it back, and no top-level module
//! another that imports it back: `tests/module_circles.rs` checks it.

pub mod bench;
pub mod cleanup;
pub mod engine;
pub mod machine;
pub mod netns;
pub mod probe;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod skips;
pub mod topology;
pub mod util;
pub mod vm;

use std::path::Path;

pub use report::Report;
pub use scenario::{Engine, Scenario};
pub use topology::Options;

/// Loads and runs one scenario file (the entry point of the `cargo test`
/// per-file tests) on one engine and GoBGP line (`None`: the scenario's first).
pub fn run_file(
    path: &Path,
    engine: Engine,
    line: Option<scenario::GobgpLine>,
) -> anyhow::Result<Report> {
    let s = Scenario::load(path)?;
    let mut opts = Options::from_env()?;
    opts.gobgp = line;
    Ok(runner::run(&s, &opts, engine))
}
