//! The harness: Docker hosts made of network namespaces, real gobgpd and
//! ipvlan-bgp processes inside them, and scenario files that start and stop
//! containers, break things and assert who reaches whom and how fast.
//!
//! ```text
//! scenario.toml ─► scenario (parse, validate) ─► runner ─► world (namespaces, switch, daemons)
//!                                                   ├─► engine (emulated dockerd) ─► driver socket
//!                                                   ├─► probe (ICMP/TCP from inside namespaces)
//!                                                   └─► report (JSON; html: the page), diagnostics on failure
//! world ─► routers (FRR, BIRD) ─┬─► configs (gobgpd, FRR and BIRD files, side by side)
//!   │                           └─► daemon (start, stop, kill, freeze; logs, pids)
//!   └────────────────────────────► daemon, configs     (no two modules import each other)
//! util::eventually: the one deadline loop, every deadline scaled by HARNESS_TIME_SCALE
//! ```

pub mod bench;
pub mod cleanup;
pub mod engine;
pub mod machine;
pub mod netns;
pub mod probe;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod topology;
pub mod util;
pub mod vm;

use std::path::Path;

pub use report::Report;
pub use scenario::{Engine, Scenario};
pub use topology::Options;

/// Loads and runs one scenario file (the entry point of the `cargo test` per-file tests).
pub fn run_file(path: &Path, engine: Engine) -> anyhow::Result<Report> {
    let s = Scenario::load(path)?;
    let opts = Options::from_env()?;
    Ok(runner::run(&s, &opts, engine))
}
