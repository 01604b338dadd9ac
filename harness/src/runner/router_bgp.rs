//! The `expect-router-bgp` step: a router's BGP paths for one prefix carry
//! the attributes the scenario expects, and the one it expects is best.
//!
//! In: the step (router, prefix, optionally the peer the path came from and
//! the attributes to find). Out: how long until it held, or a failure that
//! lists every path the router holds with its attributes. Reads FRR's
//! `show bgp ipv4 unicast PREFIX json` (FRR 8.4: `paths[]` with
//! `aspath.string`, the MED as `metric`, `localpref`, `community.string`,
//! `largeCommunity.string`, `peer.peerId`, `nexthops[].ip`, `stale`,
//! `bestpath.overall`). Uses nothing of the runner but its name resolution.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::poll::poll;
use super::Runner;
use crate::scenario::{Action, RouterKind};
use crate::topology::routers::RouterRt;

/// One path as FRR shows it, reduced to what a step can check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenPath {
    peer: String,
    next_hop: String,
    best: bool,
    as_path: String,
    med: Option<u64>,
    local_pref: Option<u64>,
    communities: Vec<String>,
    large_communities: Vec<String>,
    stale: bool,
}

impl std::fmt::Display for SeenPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "from {} via {}{}{}: as-path [{}] med {} local-pref {} communities [{}] large [{}]",
            self.peer,
            self.next_hop,
            if self.best { " (best)" } else { "" },
            if self.stale { " (stale)" } else { "" },
            self.as_path,
            self.med.map_or("-".into(), |m| m.to_string()),
            self.local_pref.map_or("-".into(), |m| m.to_string()),
            self.communities.join(" "),
            self.large_communities.join(" "),
        )
    }
}

fn words(v: &Value) -> Vec<String> {
    v["string"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// FRR's `show bgp ipv4 unicast PREFIX json`; no paths when it has none.
fn parse_frr_paths(json: &str) -> Result<Vec<SeenPath>> {
    let v: Value = serde_json::from_str(json).map_err(|e| anyhow!("FRR JSON: {e}: {json}"))?;
    let paths = v["paths"].as_array().cloned().unwrap_or_default();
    Ok(paths
        .iter()
        .map(|p| SeenPath {
            peer: p["peer"]["peerId"].as_str().unwrap_or("?").to_string(),
            next_hop: p["nexthops"][0]["ip"].as_str().unwrap_or("?").to_string(),
            best: p["bestpath"]["overall"].as_bool().unwrap_or(false),
            as_path: p["aspath"]["string"].as_str().unwrap_or("").to_string(),
            // FRR 8.4 says `metric`; later versions may say `med`.
            med: p["metric"].as_u64().or_else(|| p["med"].as_u64()),
            local_pref: p["localpref"].as_u64().or_else(|| p["locPrf"].as_u64()),
            communities: words(&p["community"]),
            large_communities: words(&p["largeCommunity"]),
            stale: p["stale"].as_bool().unwrap_or(false),
        })
        .collect())
}

/// What one step wants of the path it picks.
struct Want<'a> {
    from: Option<IpAddr>,
    best: Option<bool>,
    as_path: Option<&'a str>,
    communities: Option<&'a [String]>,
    absent_communities: Option<&'a [String]>,
    large_communities: Option<&'a [String]>,
    local_pref: Option<u32>,
    med: Option<u32>,
    stale: Option<bool>,
}

/// The path `want` is about (from its peer, else the best one), checked;
/// the error says what differs.
fn check(paths: &[SeenPath], want: &Want<'_>) -> std::result::Result<(), String> {
    let picked = match want.from {
        Some(a) => paths
            .iter()
            .find(|p| p.peer == a.to_string() || p.next_hop == a.to_string()),
        None => paths.iter().find(|p| p.best),
    };
    let Some(p) = picked else {
        return Err(match want.from {
            Some(a) => format!("no path from {a}"),
            None => "no best path".into(),
        });
    };
    let mut wrong = Vec::new();
    if let Some(b) = want.best {
        if p.best != b {
            wrong.push(format!("best is {}, expected {b}", p.best));
        }
    }
    if let Some(s) = want.stale {
        if p.stale != s {
            wrong.push(format!("stale is {}, expected {s}", p.stale));
        }
    }
    if let Some(a) = want.as_path {
        if p.as_path != a {
            wrong.push(format!("as-path [{}], expected [{a}]", p.as_path));
        }
    }
    if let Some(m) = want.med {
        if p.med != Some(u64::from(m)) {
            wrong.push(format!("med {:?}, expected {m}", p.med));
        }
    }
    if let Some(l) = want.local_pref {
        if p.local_pref != Some(u64::from(l)) {
            wrong.push(format!("local-pref {:?}, expected {l}", p.local_pref));
        }
    }
    for (what, want, seen) in [
        ("community", want.communities, &p.communities),
        (
            "large community",
            want.large_communities,
            &p.large_communities,
        ),
    ] {
        for c in want.unwrap_or_default() {
            if !seen.contains(c) {
                wrong.push(format!("{what} {c} missing"));
            }
        }
    }
    for c in want.absent_communities.unwrap_or_default() {
        if p.communities.contains(c) {
            wrong.push(format!("community {c} present"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

impl Runner<'_> {
    /// The FRR router named `name`, for a `step` that reads FRR's tables.
    pub(super) fn frr_router(&self, name: &str, step: &str) -> Result<&RouterRt> {
        let r = self
            .w
            .routers
            .iter()
            .find(|r| r.def.name == name)
            .ok_or_else(|| anyhow!("unknown router {name}"))?;
        if r.def.kind != RouterKind::Frr {
            return Err(anyhow!("{step} reads FRR; {name} is not FRR"));
        }
        Ok(r)
    }

    /// Plays an `expect-router-bgp` step.
    pub(super) fn expect_router_bgp(&mut self, a: &Action) -> Result<Option<Duration>> {
        let Action::ExpectRouterBgp {
            router,
            prefix,
            from,
            best,
            as_path,
            communities,
            absent_communities,
            large_communities,
            local_pref,
            med,
            stale,
            within,
        } = a
        else {
            return Err(anyhow!("internal: {a:?} is not expect-router-bgp"));
        };
        let r = self.frr_router(router, "expect-router-bgp")?;
        let prefix = self.prefix_of(prefix)?;
        let want = Want {
            from: from
                .as_deref()
                .map(|f| self.resolve_addr(router, f))
                .transpose()?,
            best: *best,
            as_path: as_path.as_deref(),
            communities: communities.as_deref(),
            absent_communities: absent_communities.as_deref(),
            large_communities: large_communities.as_deref(),
            local_pref: *local_pref,
            med: *med,
            stale: *stale,
        };
        let cmd = format!("show bgp ipv4 unicast {prefix} json");
        let took = self.polled(poll(self.scale(*within), || {
            let paths = parse_frr_paths(&r.vtysh(&cmd).map_err(|e| format!("{e:#}"))?)
                .map_err(|e| format!("{e:#}"))?;
            check(&paths, &want).map_err(|e| {
                let all: Vec<String> = paths.iter().map(|p| format!("\n    {p}")).collect();
                format!("{router} {prefix}: {e}; its paths:{}", all.concat())
            })
        }))?;
        Ok(Some(took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as FRR 8.4 answers `show bgp ipv4 unicast 10.40.0.0/24 json`.
    const FRR: &str = r#"{"prefix":"10.40.0.0/24","paths":[
      {"aspath":{"string":"65000 65000 65000","length":3},"metric":20,
       "community":{"string":"65000:100 65000:200"},"largeCommunity":{"string":"65000:1:2"},
       "nexthops":[{"ip":"192.0.2.2"}],"peer":{"peerId":"192.0.2.2"},"stale":true},
      {"aspath":{"string":"65000","length":1},"med":10,"localpref":100,
       "bestpath":{"overall":true},"nexthops":[{"ip":"192.0.2.1"}],"peer":{"peerId":"192.0.2.1"}}]}"#;

    fn want() -> Want<'static> {
        Want {
            from: None,
            best: None,
            as_path: None,
            communities: None,
            absent_communities: None,
            large_communities: None,
            local_pref: None,
            med: None,
            stale: None,
        }
    }

    #[test]
    fn the_path_from_a_peer_or_the_best_is_checked() {
        let paths = parse_frr_paths(FRR).unwrap();
        assert_eq!(paths.len(), 2);
        let c = ["65000:200".to_string()];
        let l = ["65000:1:2".to_string()];
        let w = Want {
            from: Some("192.0.2.2".parse().unwrap()),
            best: Some(false),
            as_path: Some("65000 65000 65000"),
            communities: Some(&c),
            large_communities: Some(&l),
            med: Some(20),
            ..want()
        };
        assert_eq!(check(&paths, &w), Ok(()));
        let w = Want {
            from: Some("192.0.2.2".parse().unwrap()),
            absent_communities: Some(&c),
            stale: Some(false),
            ..want()
        };
        let e = check(&paths, &w).unwrap_err();
        assert!(
            e.contains("stale is true, expected false")
                && e.contains("community 65000:200 present"),
            "{e}"
        );
        let w = Want {
            med: Some(10),
            absent_communities: Some(&c),
            stale: Some(false),
            local_pref: Some(100),
            ..want()
        };
        assert_eq!(check(&paths, &w), Ok(()), "the best path");
        let w = Want {
            from: Some("192.0.2.2".parse().unwrap()),
            best: Some(true),
            med: Some(5),
            ..want()
        };
        let e = check(&paths, &w).unwrap_err();
        assert!(
            e.contains("best is false") && e.contains("med Some(20), expected 5"),
            "{e}"
        );
        let w = Want {
            from: Some("192.0.2.9".parse().unwrap()),
            ..want()
        };
        assert_eq!(check(&paths, &w), Err("no path from 192.0.2.9".into()));
        assert!(parse_frr_paths("{}").unwrap().is_empty());
    }
}
