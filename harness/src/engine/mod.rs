//! Container engines: who creates networks and containers on a host.
//!
//! In: the [`World`] (hosts, their driver sockets) and the scenario's
//! networks and containers. Out: networks created on a host, running
//! containers as the probes see them ([`ContainerRt`]). Owns the
//! [`ContainerEngine`] trait, which speaks of containers and networks, not
//! of libnetwork calls (an engine such as Podman speaks no libnetwork API),
//! and the factory that makes an engine from its [`Engine`] name.
//!
//! ```text
//! mod.rs (the factory) ─┬─► emulator/ (requests as dockerd 20.10 sends them: wire, client, sandbox, ipam, per_host)
//!                       └─► dockerd/  (a real dockerd per host: host, image, sweep, plugin)
//!        both ─► container.rs (the ContainerEngine trait, ContainerRt, Subnets, Control)
//! ```
//! Adding an engine: a variant of [`Engine`] (its name in scenario files),
//! a folder here with its [`ContainerEngine`], and an arm in [`make`] and
//! [`sweep`]; nothing else names engines.

use std::path::Path;

mod container;
pub mod dockerd;
pub mod emulator;

pub use crate::scenario::Engine;
pub use container::{ContainerEngine, ContainerRt, Control, Subnets};
pub use dockerd::Dockerd;
pub use emulator::Emulator;

/// Makes the engine of this name.
pub fn make(kind: Engine) -> Box<dyn ContainerEngine> {
    match kind {
        Engine::Emulator => Box::new(Emulator::default()),
        Engine::Dockerd => Box::new(Dockerd::default()),
    }
}

/// Removes what engines of killed harness runs left behind under
/// `run_root` (processes, cgroup folders); how many were removed.
pub fn sweep(run_root: &Path) -> usize {
    Engine::ALL
        .iter()
        .map(|e| match e {
            Engine::Emulator => 0,
            Engine::Dockerd => dockerd::sweep(run_root),
        })
        .sum()
}
