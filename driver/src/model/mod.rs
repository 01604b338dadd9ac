//! The domain: what a network, an endpoint and an announcement are, apart
//! from where they come from (Docker's wire format, [`crate::api`]) and
//! where they go (the kernel, BGP, the state file).
//!
//! In: values built and validated by the API's conversion or replayed from
//! the state file. Out: plain types every other module reads: modes and
//! data planes, [`network::NetworkSpec`] and [`network::EndpointSpec`],
//! BGP attributes ([`attrs::RouteAttrs`]), the names and marks of our
//! links ([`names`]), the remembered [`state::State`], the reserved ranges,
//! and the one validation error ([`invalid::InvalidRequest`]). Nothing here
//! does I/O, and nothing here imports another part of the driver.

pub mod attrs;
pub mod invalid;
pub mod names;
pub mod network;
pub mod reserved;
pub mod state;
