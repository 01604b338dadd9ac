//! Docker's side: the wire types of the remote driver protocol, the HTTP
//! server on the plugin socket, a small client for the same socket (used
//! by `ipvlan-bgp status` and by the harness's container engine), and the
//! status document served there ([`status`]).
//! Requests become domain values in [`convert`] before the driver sees them,
//! and the driver's domain answers become wire responses here: the driver
//! core never sees the wire format. The IPAM's calls (`IpamDriver.*`)
//! have their own wire, conversion and service in [`ipam`].

pub mod client;
pub mod convert;
pub mod ipam;
pub mod server;
pub mod status;
pub mod wire;
