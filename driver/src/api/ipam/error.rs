//! The one error type at the IPAM's Docker boundary.
//!
//! In: a body that does not parse, a request this IPAM refuses as asked
//! (`--ip-range`, `--gateway`, no `--subnet`), the IPAM switched off, or an
//! [`IpamError`]. Out: [`RequestError`], answered once by the server as
//! `{"Err": ...}` with HTTP 500 (dockerd 20.10 drops the text of an IPAM
//! error answered with 200), and its class for the request counter.

use crate::ipam::IpamError;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the ipvlan-bgp IPAM is off on this host: start the driver with --etcd-endpoints (and the rest of its etcd settings; see docs/ipam.md), or create the network without --ipam-driver ipvlan-bgp")]
    Off,
    #[error("{0}")]
    Ipam(#[from] IpamError),
}

impl RequestError {
    /// Short class for logs and the request counter.
    pub fn class(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "malformed",
            RequestError::Invalid(_) => "invalid",
            RequestError::Off => "off",
            RequestError::Ipam(IpamError::Etcd { .. }) => "etcd",
            RequestError::Ipam(IpamError::Local(_)) => "state",
            RequestError::Ipam(_) => "refused",
        }
    }
}
