//! The checks a scenario file goes through, one file per concern: the
//! underlay and its hosts, the routers (and who peers with whom), networks
//! and containers, engines (what needs dockerd), GoBGP lines and BFD, and the steps.
//!
//! In: the file's raw sections and the scenario built so far. Out: the
//! checked (and defaulted) definitions, or an error naming the file, the
//! line and what is wrong. Touches nothing on the machine.

pub(super) mod engines;
pub(super) mod gobgp;
pub(super) mod hosts;
pub(super) mod ipam;
pub(super) mod networks;
pub(super) mod routers;
pub(super) mod steps;
pub(super) mod uplinks;

/// A valid name for a host, router or segment: 1-8 letters, digits or '-'
/// (it ends up in interface and namespace names).
pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 8 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
