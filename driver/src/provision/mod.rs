//! Provisioning: the driver's links in the host namespace and the host
//! settings they need.
//!
//! In: intents from the Docker side ("this network's shim and VLAN parent
//! exist", "this container link exists on that parent", "delete what this
//! record owned", "sweep what no record owns") and a
//! [`crate::kernel::LinkKernel`]. Out: kernel changes that touch only what
//! carries our mark ([`links`]), a network's parent, shim and gateway
//! addresses ([`network`]), dual-uplink mode's container port ([`port`]),
//! forwarding ([`sysctl`]), this host's neighbour entries for its live
//! containers on their shim ([`neighbour`]), and the checks that
//! keep a new network off what belongs to the segment ([`segment`]), the
//! uplinks of dual-uplink mode checked and the host's settings read for
//! them ([`uplinks`]); or an
//! error that names the link or address and says why it was left alone.

pub mod links;
pub mod neighbour;
pub mod network;
pub mod port;
pub mod segment;
pub mod sysctl;
pub mod uplinks;
