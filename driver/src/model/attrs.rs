//! BGP path attributes an operator sets per network (`docker network create
//! -o bgp_med=50`) and per container (`docker network connect --driver-opt
//! bgp_med=10`, `docker run --network name=N,driver-opt=bgp_med=10`).
//!
//! In: option maps as Docker passes them (network options under
//! `com.docker.network.generic`; a container's `--driver-opt` pairs as
//! top-level keys of CreateEndpoint's `Options`, see
//! `tests/fixtures/dockerd-endpoint-options.jsonl`). Out: a validated
//! [`RouteAttrs`], stored in the network's and the endpoint's state records
//! and carried by the [`crate::view::View`] to the announcer.
//!
//! How the two levels combine ([`RouteAttrs::merged`]): lists (communities,
//! large communities) add up; scalars (local preference, MED, prepend) set on
//! the container override the network's. The driver's global `--community`
//! adds to both. A subnet announcement (`announce=subnet`) carries the
//! network's attributes only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidRequest};

/// Most communities (and, separately, large communities) one option takes.
pub const MAX_COMMUNITIES: usize = 32;
/// Most times our own AS may be prepended: beyond a few, a longer path
/// changes nothing but the size of every update.
pub const MAX_PREPEND: u8 = 10;

/// The options this module reads, with what they take (for the error that
/// lists the known options and for the README's table).
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "bgp_communities",
        "communities ASN:VALUE (each 0..65535), or no-export | no-advertise | no-export-subconfed, separated by commas or spaces",
    ),
    (
        "bgp_large_communities",
        "large communities GA:LD1:LD2 (each 0..4294967295), separated by commas or spaces",
    ),
    ("bgp_local_pref", "LOCAL_PREF 0..4294967295 (iBGP peers only)"),
    ("bgp_med", "MULTI_EXIT_DISC 0..4294967295 (lower wins)"),
    (
        "bgp_as_path_prepend",
        "0..10: prepend our own AS this many times (a longer path is less preferred)",
    ),
];

/// Well-known communities (RFC 1997) accepted by name.
const WELL_KNOWN: &[(&str, u32)] = &[
    ("no-export", 0xFFFF_FF01),
    ("no-advertise", 0xFFFF_FF02),
    ("no-export-subconfed", 0xFFFF_FF03),
];

/// Attributes to put on an announced path. Lists are sorted and free of
/// duplicates, so equal sets compare equal. The serde names are part of the
/// state file's format; every field defaults, so records written before
/// they existed load unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAttrs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<[u32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// How many times our own AS is prepended; `Some(0)` on a container
    /// cancels its network's prepend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_prepend: Option<u8>,
}

impl RouteAttrs {
    pub fn is_empty(&self) -> bool {
        *self == RouteAttrs::default()
    }

    /// Reads the `bgp_*` options of `opts`; other keys are left to the caller.
    pub fn from_options(opts: &BTreeMap<String, String>) -> Result<RouteAttrs, InvalidRequest> {
        let mut a = RouteAttrs::default();
        if let Some(v) = opts.get("bgp_communities") {
            a.communities = list("bgp_communities", v, parse_community)?;
        }
        if let Some(v) = opts.get("bgp_large_communities") {
            a.large_communities = list("bgp_large_communities", v, parse_large)?;
        }
        a.local_pref = opts
            .get("bgp_local_pref")
            .map(|v| number("bgp_local_pref", v))
            .transpose()?;
        a.med = opts
            .get("bgp_med")
            .map(|v| number("bgp_med", v))
            .transpose()?;
        a.as_path_prepend = opts
            .get("bgp_as_path_prepend")
            .map(|v| match v.trim().parse::<u8>() {
                Ok(n) if n <= MAX_PREPEND => Ok(n),
                _ => Err(invalid(format!(
                    "bgp_as_path_prepend={v:?}: expected a count 0..{MAX_PREPEND} (how many times to prepend our own AS)"
                ))),
            })
            .transpose()?;
        Ok(a)
    }

    /// `self` (a network's) combined with `over` (a container's): lists add
    /// up, scalars from `over` win.
    pub fn merged(&self, over: &RouteAttrs) -> RouteAttrs {
        if over.is_empty() {
            return self.clone();
        }
        RouteAttrs {
            communities: union(&self.communities, &over.communities),
            large_communities: union(&self.large_communities, &over.large_communities),
            local_pref: over.local_pref.or(self.local_pref),
            med: over.med.or(self.med),
            as_path_prepend: over.as_path_prepend.or(self.as_path_prepend),
        }
    }

    /// What goes on the wire: plus the global `--community` values, with a
    /// prepend of 0 the same as none.
    pub fn effective(&self, global_communities: &[u32]) -> RouteAttrs {
        let mut a = self.clone();
        if !global_communities.is_empty() {
            a.communities = union(&a.communities, global_communities);
        }
        if a.as_path_prepend == Some(0) {
            a.as_path_prepend = None;
        }
        a
    }
}

fn union<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let mut v: Vec<T> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A list separated by commas or spaces (the CLI refuses a comma inside
/// `docker network connect --driver-opt`), sorted, without duplicates.
fn list<T: Ord>(
    key: &str,
    v: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, InvalidRequest> {
    let mut out = Vec::new();
    for item in v.split([',', ' ']).filter(|s| !s.is_empty()) {
        out.push(parse(item).map_err(|e| invalid(format!("{key}: {e}")))?);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(invalid(format!("{key} is empty; drop it or give values")));
    }
    if out.len() > MAX_COMMUNITIES {
        return Err(invalid(format!(
            "{key}: {} values, at most {MAX_COMMUNITIES} are accepted",
            out.len()
        )));
    }
    Ok(out)
}

fn number(key: &str, v: &str) -> Result<u32, InvalidRequest> {
    v.trim()
        .parse()
        .map_err(|_| invalid(format!("{key}={v:?}: expected a number 0..4294967295")))
}

/// `ASN:VALUE` (each 0..65535) or a well-known name.
fn parse_community(s: &str) -> Result<u32, String> {
    if let Some((_, c)) = WELL_KNOWN.iter().find(|(n, _)| s.eq_ignore_ascii_case(n)) {
        return Ok(*c);
    }
    let Some((a, v)) = s.split_once(':') else {
        return Err(format!(
            "{s:?} is not a community: expected ASN:VALUE, e.g. 65000:100, or no-export"
        ));
    };
    let half = |x: &str| {
        x.parse::<u16>()
            .map_err(|_| format!("community {s}: {x:?} is not 0..65535"))
    };
    Ok((u32::from(half(a)?) << 16) | u32::from(half(v)?))
}

/// `GA:LD1:LD2`, each a 32-bit number (RFC 8092).
fn parse_large(s: &str) -> Result<[u32; 3], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [g, l1, l2] = parts[..] else {
        return Err(format!(
            "{s:?} is not a large community: expected GA:LD1:LD2, e.g. 65000:1:2"
        ));
    };
    let n = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| format!("large community {s}: {x:?} is not 0..4294967295"))
    };
    Ok([n(g)?, n(l1)?, n(l2)?])
}

/// A community as operators write it: `65000:100`.
pub fn community_text(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_into_attributes() {
        let a = RouteAttrs::from_options(&opts(&[
            ("bgp_communities", "65000:200,65000:100 65000:100 no-export"),
            ("bgp_large_communities", "65000:1:2, 4200000000:0:7"),
            ("bgp_local_pref", "200"),
            ("bgp_med", "50"),
            ("bgp_as_path_prepend", "2"),
            ("parent", "eth1"),
        ]))
        .unwrap();
        assert_eq!(
            a.communities,
            [65000 << 16 | 100, 65000 << 16 | 200, 0xFFFF_FF01]
        );
        assert_eq!(a.large_communities, [[65000, 1, 2], [4_200_000_000, 0, 7]]);
        assert_eq!(
            (a.local_pref, a.med, a.as_path_prepend),
            (Some(200), Some(50), Some(2))
        );
        assert!(RouteAttrs::from_options(&opts(&[("parent", "eth1")]))
            .unwrap()
            .is_empty());
        assert_eq!(community_text(65000 << 16 | 100), "65000:100");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let err = |k: &str, v: &str| {
            RouteAttrs::from_options(&opts(&[(k, v)]))
                .unwrap_err()
                .to_string()
        };
        let e = err("bgp_communities", "65000:70000");
        assert!(e.contains("\"70000\" is not 0..65535"), "{e}");
        let e = err("bgp_communities", "65000");
        assert!(e.contains("expected ASN:VALUE"), "{e}");
        let e = err("bgp_communities", " , ");
        assert!(e.contains("is empty"), "{e}");
        let many: Vec<String> = (0..33).map(|i| format!("65000:{i}")).collect();
        let e = err("bgp_communities", &many.join(","));
        assert!(e.contains("33 values, at most 32"), "{e}");
        let e = err("bgp_large_communities", "65000:1");
        assert!(e.contains("expected GA:LD1:LD2"), "{e}");
        let e = err("bgp_large_communities", "1:2:4294967296");
        assert!(e.contains("is not 0..4294967295"), "{e}");
        let e = err("bgp_local_pref", "-1");
        assert!(
            e.contains("bgp_local_pref=\"-1\": expected a number"),
            "{e}"
        );
        let e = err("bgp_med", "high");
        assert!(e.contains("bgp_med"), "{e}");
        let e = err("bgp_as_path_prepend", "11");
        assert!(e.contains("0..10"), "{e}");
        assert!(RouteAttrs::from_options(&opts(&[("bgp_as_path_prepend", "10")])).is_ok());
    }

    /// Lists add up, the container's scalars win, the global communities add.
    #[test]
    fn container_attributes_merge_over_the_network_s() {
        let net = RouteAttrs {
            communities: vec![1, 3],
            large_communities: vec![[1, 1, 1]],
            local_pref: Some(100),
            med: Some(50),
            as_path_prepend: Some(3),
        };
        let ep = RouteAttrs {
            communities: vec![2, 3],
            med: Some(10),
            as_path_prepend: Some(0),
            ..RouteAttrs::default()
        };
        let m = net.merged(&ep);
        assert_eq!(m.communities, [1, 2, 3]);
        assert_eq!(m.large_communities, [[1, 1, 1]]);
        assert_eq!(
            (m.local_pref, m.med, m.as_path_prepend),
            (Some(100), Some(10), Some(0))
        );
        assert_eq!(net.merged(&RouteAttrs::default()), net);
        let e = m.effective(&[0, 2]);
        assert_eq!(e.communities, [0, 1, 2, 3]);
        assert_eq!(e.as_path_prepend, None);
    }

    /// State files written before the attributes existed still load, and
    /// empty attributes add nothing to new ones.
    #[test]
    fn serde_defaults_keep_old_records_loadable() {
        let a: RouteAttrs = serde_json::from_str("{}").unwrap();
        assert!(a.is_empty());
        assert_eq!(serde_json::to_string(&a).unwrap(), "{}");
        let b = RouteAttrs {
            med: Some(5),
            large_communities: vec![[1, 2, 3]],
            ..RouteAttrs::default()
        };
        let s = serde_json::to_string(&b).unwrap();
        assert_eq!(s, r#"{"large_communities":[[1,2,3]],"med":5}"#);
        assert_eq!(serde_json::from_str::<RouteAttrs>(&s).unwrap(), b);
    }
}
