//! The routing table: what the learner decided, made true in the kernel and
//! kept true.
//!
//! ```text
//! bgp (learner) ──Change──► installer ──table──► kernel main table (our protocol tag)
//!                              ▲
//!   kernel ──link and route events──► watch
//! ```
//! In: batches of [`installer::Change`] from the BGP side (which only feeds
//! it) and the kernel's own notifications. Out: tagged routes in the main
//! table, never over anyone else's, reconciled against the kernel itself,
//! and the counters in [`crate::metrics`]; and, at start or for `cleanup`,
//! every route of a tag the driver no longer uses gone ([`flush`]).
//! Nothing here knows about BGP.

#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod flush;
pub mod installer;
pub mod table;
pub mod watch;
pub mod worker;
