//! The `expect-router-received` step: the paths an FRR router holds from
//! one neighbour are exactly the prefixes the scenario names (a dual-homed
//! host sends its own paths, none it learned from its other router).
//!
//! In: the step (router, neighbour, prefixes, family, deadline, hold). Out:
//! how long until it held, or a failure that lists every path the router
//! has from that neighbour with its AS path. Reads FRR's `show bgp FAMILY
//! unicast neighbors ADDR routes json` (FRR 8.4: `routes` maps each
//! prefix to its paths, each with its AS path in `path`); the neighbour's
//! address is its end of the session (a dual-homed host's on the uplink to
//! that router). Uses nothing of the runner but its name resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use ipnet::IpNet;
use serde_json::Value;

use super::poll::poll_then_hold;
use super::Runner;
use crate::scenario::{Action, Family};

/// Each prefix FRR has from the neighbour, with the AS paths of its paths.
fn parse_received(json: &str) -> Result<BTreeMap<IpNet, Vec<String>>> {
    let v: Value = serde_json::from_str(json).map_err(|e| anyhow!("FRR JSON: {e}: {json}"))?;
    let mut out = BTreeMap::new();
    // No `routes` at all: FRR has nothing from that neighbour.
    let Some(routes) = v["routes"].as_object() else {
        return Ok(out);
    };
    for (prefix, paths) in routes {
        let p: IpNet = prefix
            .parse()
            .map_err(|e| anyhow!("FRR JSON: prefix {prefix:?}: {e}"))?;
        let as_paths = paths
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|x| x["path"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(p, as_paths);
    }
    Ok(out)
}

/// Whether `got` holds exactly `want`; the error names what is extra (with
/// its AS paths) and what is missing.
fn check(
    got: &BTreeMap<IpNet, Vec<String>>,
    want: &BTreeSet<IpNet>,
) -> std::result::Result<(), String> {
    let extra: Vec<String> = got
        .iter()
        .filter(|(p, _)| !want.contains(p))
        .map(|(p, a)| format!("{p} (as-path [{}])", a.join("], [")))
        .collect();
    let missing: Vec<String> = want
        .iter()
        .filter(|p| !got.contains_key(p))
        .map(|p| p.to_string())
        .collect();
    if extra.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let mut e = Vec::new();
    if !extra.is_empty() {
        e.push(format!("more than expected: {}", extra.join(", ")));
    }
    if !missing.is_empty() {
        e.push(format!("missing: {}", missing.join(", ")));
    }
    Err(e.join("; "))
}

impl Runner<'_> {
    /// Plays an `expect-router-received` step.
    pub(super) fn expect_router_received(&mut self, a: &Action) -> Result<Option<Duration>> {
        let Action::ExpectRouterReceived {
            router,
            from,
            prefixes,
            family,
            within,
            hold,
        } = a
        else {
            return Err(anyhow!("internal: {a:?} is not expect-router-received"));
        };
        let r = self.frr_router(router, "expect-router-received")?;
        let family = family.unwrap_or(Family::Ipv4);
        let want: BTreeSet<IpNet> = prefixes
            .iter()
            .map(|p| self.prefix_of_family(p, Some(family)))
            .collect::<Result<_>>()?;
        // The session's address: of the BGP transport's family.
        let peer = self.resolve_addr_of(router, from, self.s.bgp.transport)?;
        let af = match family {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        };
        let cmd = format!("show bgp {af} unicast neighbors {peer} routes json");
        let took = self.polled(poll_then_hold(
            self.scale(*within),
            hold.map(|h| self.scale(h)),
            || {
                let got = parse_received(&r.vtysh(&cmd).map_err(|e| format!("{e:#}"))?)
                    .map_err(|e| format!("{e:#}"))?;
                check(&got, &want).map_err(|e| format!("{router} from {from} ({peer}): {e}"))
            },
        ))?;
        Ok(Some(took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as FRR 8.4 answers `show bgp ipv4 unicast neighbors X routes json`.
    const FRR: &str = r#"{"vrfId":0,"vrfName":"default","localAS":65101,"routes":{
      "10.23.1.2/32":[{"valid":true,"bestpath":true,"path":"65001","network":"10.23.1.2/32"}],
      "10.23.2.2/32":[{"valid":true,"path":"65001 65102 65002","network":"10.23.2.2/32"}]},
      "totalRoutes":2,"totalPaths":2}"#;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn exactly_the_named_prefixes_and_nothing_passed_on() {
        let got = parse_received(FRR).unwrap();
        assert_eq!(got.len(), 2);
        let own = BTreeSet::from([n("10.23.1.2/32")]);
        let e = check(&got, &own).unwrap_err();
        assert!(
            e.contains("more than expected: 10.23.2.2/32 (as-path [65001 65102 65002])"),
            "{e}"
        );
        let both = BTreeSet::from([n("10.23.1.2/32"), n("10.23.2.2/32")]);
        assert_eq!(check(&got, &both), Ok(()));
        let more = BTreeSet::from([n("10.23.1.2/32"), n("10.23.2.2/32"), n("10.23.1.0/24")]);
        assert_eq!(check(&got, &more), Err("missing: 10.23.1.0/24".into()));
        // Nothing from that neighbour: FRR leaves `routes` out.
        assert!(parse_received(r#"{"vrfId":0}"#).unwrap().is_empty());
        assert_eq!(check(&BTreeMap::new(), &BTreeSet::new()), Ok(()));
    }
}
