//! The topology a scenario runs in: namespaces as hosts and routers, wires
//! into one bridge per segment, and the daemons in them (gobgpd, the
//! driver, FRR, BIRD).
//!
//! In: a validated scenario and run [`Options`]. Out: a [`World`] whose
//! hosts and routers are wired, addressed and running their daemons, every
//! creation on the cleanup stack. Owns every namespace, link and process
//! of the run except the container engines' own.
//!
//! ```text
//! world.rs (World::build: the one builder) ─► wire.rs (switch, veths into a segment's bridge)
//!   ├─► hosts.rs (HostRt: namespace, addresses, sockets) ─► host_daemons.rs (gobgpd, driver) ─┐
//!   ├─► uplinks.rs (a dual-homed host's point-to-point links to its routers)
//!   ├─► routers.rs (FRR, BIRD) ─────────────────────────────────────────────────────────────────┤
//!   ├─► etcd.rs (the cluster-wide IPAM's etcd: members, TLS, users) ───────────────────────────┤
//!   │                                              sessions.rs (the one BGP session planner) ◄─┤
//!   │                                              configs.rs (gobgpd, FRR, BIRD files)      ◄─┤
//!   │                                              daemon.rs (a process: start, signal, logs) ◄─┘
//!   ├─► host_state.rs (what the daemons report)
//!   └─► diagnostics.rs (the dump of a failed scenario)
//! options.rs: where binaries and logs are
//! example_fabric.rs: the documented fabric's router (`harness router-config`) ─► configs.rs
//! ```
//! No file here imports one that imports it back; `sessions` is also what
//! the HTML page draws.

pub mod configs;
pub mod daemon;
mod diagnostics;
pub mod etcd;
pub mod example_fabric;
mod host_daemons;
mod host_state;
mod hosts;
mod options;
pub mod routers;
pub mod sessions;
mod uplinks;
mod wire;
mod world;

pub use hosts::{per_link_ipv6_forwarding, HostRt, UNDERLAY_IF};
pub use options::{find_driver_bin, Options};
pub use routers::RouterRt;
pub use uplinks::{blackhole, blackhole_end};
pub use world::World;
