//! `harness bench …`: measurements that need the harness's hosts. Each
//! benchmark repeats its measurement, alternates the sides it compares, and
//! reports n and spread ([`stats::LatencyStats`]), not a lone figure.
//!
//! In: run [`Options`](crate::topology::Options) and each bench's sizes.
//! Out: [`BenchResult`]s (JSON), plots and the performance page's table (`render`: docs/performance.md).
//!
//! ```text
//! all.rs (the set, in sequence) ─► docker_run.rs convergence.rs (convergence_load.rs: --load) learned_routes.rs fill.rs scale.rs (ipam_scale.rs: --ipam) flood.rs failover.rs
//!                               └─► in_vm.rs (a bench inside the VM, through crate::vm)
//! each bench ─► hosts.rs (two or three hosts over iBGP) ─► measure.rs (route events, tagged routes, RSS, fast poll)
//!            └─► stats.rs (samples, spread, comparison, JSON) ◄─ render.rs (SVG plots, docs/performance.md's table)
//! ```

mod all;
mod convergence;
mod convergence_load;
mod docker_run;
mod failover;
mod fill;
mod flood;
mod hosts;
mod in_vm;
mod ipam_scale;
mod join_trace;
mod learned_routes;
mod measure;
pub mod render;
mod route_burst;
mod scale;
pub mod stats;

pub use all::{all, Entry, SET};
pub use convergence::convergence;
pub use convergence_load::{convergence_load, LoadSizes};
pub use docker_run::docker_run;
pub use failover::failover;
pub use fill::fill;
pub use flood::{flood, FloodReport};
pub use in_vm::bench_in_vm;
pub use ipam_scale::ipam_scale;
pub use learned_routes::learned_routes;
pub use scale::scale;
pub use stats::{compare, read_json, write_json, BenchResult, LatencyStats, SampleStats, Series};
