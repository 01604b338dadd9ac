//! The IPAM's side of the plugin socket: Docker's remote IPAM protocol
//! (`IpamDriver.*`), and our own `IpvlanBgp.IpamShow` and
//! `IpvlanBgp.IpamReleaseHost` behind `ipvlan-bgp ipam show` and
//! `ipvlan-bgp ipam release-host`.
//!
//! ```text
//! api::server ─► server.rs (IpamService: one call at a time per request, no driver lock)
//!                  ├─► wire.rs (serde mirror of the protocol) ─► convert.rs (pools, wanted addresses, answers)
//!                  ├─► show.rs (the `ipam show` document and its text)
//!                  └─► crate::ipam (held blocks, claims in etcd)
//! error.rs: RequestError, answered with HTTP 500
//! ```

pub mod convert;
pub mod error;
pub mod server;
pub mod show;
pub mod wire;
