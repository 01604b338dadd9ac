//! Names of the links this driver creates in the host namespace.
//!
//! Every name starts with `ib` and a letter that says what it is, and fits in
//! Linux's 15 characters: `ibe` + 12 hex of the endpoint ID for a container's
//! link, `ibs` + 12 hex of the network ID for a network's shim, `ibp` + hex
//! for the short-lived ipvlan probe. A restarted driver recognises its own
//! links by these prefixes and deletes the ones no state record owns.

const ID_CHARS: usize = 12;

pub fn endpoint(endpoint_id: &str) -> String {
    format!("ibe{}", short(endpoint_id))
}

pub fn shim(network_id: &str) -> String {
    format!("ibs{}", short(network_id))
}

/// Whether a host-namespace link name is one this driver makes.
pub fn is_ours(name: &str) -> bool {
    name.len() > 3 && ["ibe", "ibs", "ibp"].iter().any(|p| name.starts_with(p))
}

fn short(id: &str) -> String {
    id.chars()
        .take(ID_CHARS)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_recognised() {
        let id = "835c7162a10a5b9a8f6fd356ca22db0cfe70755ab53f9eb5ff33c3b3f75f16ee";
        assert_eq!(endpoint(id), "ibe835c7162a10a");
        assert_eq!(shim(id), "ibs835c7162a10a");
        assert!(endpoint(id).len() <= 15 && shim(id).len() <= 15);
        assert!(is_ours(&endpoint(id)) && is_ours(&shim(id)));
        assert!(!is_ours("eth0") && !is_ours("ib") && !is_ours("ibm0"));
    }
}
