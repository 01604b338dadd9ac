//! Names and marks of the links this driver creates in the host namespace.
//!
//! Names fit Linux's 15 characters: `ibe` + 12 hex of the endpoint ID for a
//! container's link, `ibs` + 12 hex of the network ID for a network's shim,
//! `ibp` + hex for the short-lived ipvlan probe. A name proves nothing: real
//! hosts have InfiniBand ports called `ibs1` or `ibp94s0f0`. What proves a
//! link is ours is the mark every link we create carries in `IFLA_IFALIAS`
//! (`ip link` shows it as `alias ...`): `ipvlan-bgp:<role>:<id>`, with the
//! role and the ID of the record that owns it. Nothing else sets it, so the
//! driver changes, deletes or sweeps a link only when its mark says so.
//! Docker's IDs are shown (in logs, errors, status) by their first 12
//! characters: [`short_id`].

const ID_CHARS: usize = 12;
/// Every mark starts with this.
pub const MARK_PREFIX: &str = "ipvlan-bgp:";

pub fn endpoint(endpoint_id: &str) -> String {
    format!("ibe{}", short(endpoint_id))
}

pub fn shim(network_id: &str) -> String {
    format!("ibs{}", short(network_id))
}

/// What a marked link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A container's link; the ID is the endpoint's.
    Endpoint,
    /// A network's host-side link (L2 shim or L3 host link); the network's ID.
    Shim,
    /// An 802.1Q parent we made; the ID is the VLAN link's name, since
    /// several networks share it.
    Vlan,
    /// The ipvlan probe and its scratch veth; the ID is the driver's pid.
    Probe,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Endpoint => "endpoint",
            Role::Shim => "shim",
            Role::Vlan => "vlan",
            Role::Probe => "probe",
        }
    }
}

/// The mark a link with `role` owned by `id` carries.
pub fn mark(role: Role, id: &str) -> String {
    format!("{MARK_PREFIX}{}:{id}", role.as_str())
}

/// Whether a link's alias is one of our marks.
pub fn is_marked(alias: Option<&str>) -> bool {
    alias.is_some_and(|a| a.starts_with(MARK_PREFIX))
}

/// Whether a host-namespace link (its name and its alias) is one this driver
/// made. Decided by the mark alone; the name is accepted so callers that list
/// links (the tests' teardown checks) read naturally, but it never counts.
#[cfg(any(test, feature = "test-support"))]
pub fn is_ours(_name: &str, alias: Option<&str>) -> bool {
    is_marked(alias)
}

/// A Docker ID as people see it: its first 12 characters (the whole ID if
/// it is shorter).
pub fn short_id(id: &str) -> &str {
    id.get(..ID_CHARS).unwrap_or(id)
}

/// The ID part of a link name: short and lowercase.
fn short(id: &str) -> String {
    short_id(id).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit() {
        let id = "835c7162a10a5b9a8f6fd356ca22db0cfe70755ab53f9eb5ff33c3b3f75f16ee";
        assert_eq!(endpoint(id), "ibe835c7162a10a");
        assert_eq!(shim(id), "ibs835c7162a10a");
        assert!(endpoint(id).len() <= 15 && shim(id).len() <= 15);
    }

    #[test]
    fn only_the_mark_makes_a_link_ours() {
        assert_eq!(mark(Role::Shim, "abc"), "ipvlan-bgp:shim:abc");
        assert!(is_marked(Some(&mark(Role::Vlan, "eth1.10"))));
        // systemd's InfiniBand names look like ours and must never count.
        for name in ["ibs1", "ibp94s0f0", "ibe0123456789ab", "ibp94s0f0.8001"] {
            assert!(!is_ours(name, None), "{name}");
            assert!(!is_ours(name, Some("uplink to rack 3")), "{name}");
        }
        assert!(is_ours("anything", Some("ipvlan-bgp:endpoint:x")));
        assert!(!is_marked(Some("ipvlan-bgp")) && !is_marked(Some("")));
    }
}
