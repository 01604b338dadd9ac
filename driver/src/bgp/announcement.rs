//! One prefix to announce, as the decision hands it to the announcer.
//!
//! In: what [`super::host`] decided for a prefix of the View (its next hop
//! and its BGP attributes). Out: the value [`super::announcer`] compares
//! with what gobgpd holds from us and turns into a path.

use std::net::IpAddr;

use crate::model::attrs::RouteAttrs;

/// One prefix to announce: its next hop and its attributes as the view has
/// them (without the global communities, which the announcer adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub next_hop: IpAddr,
    pub attrs: RouteAttrs,
}
