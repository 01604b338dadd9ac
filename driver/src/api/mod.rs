//! Docker's side: the wire types of the remote driver protocol, the HTTP
//! server on the plugin socket, and a small client for the same socket (used
//! by `ipvlan-bgp status` and by the harness's container engine).

pub mod client;
pub mod server;
pub mod wire;
