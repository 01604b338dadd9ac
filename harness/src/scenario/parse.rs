//! Turns a scenario file into a checked [`Scenario`], stage by stage: the
//! TOML read into the raw file, the underlay and hosts (templates
//! expanded), reflectors, routers, who peers with whom, networks,
//! containers, engines, then each step parsed, named (from its fields when
//! the file gives no name), typed by the step table and checked.
//!
//! In: the TOML text and its path. Out: a [`Scenario`], or an error that
//! names the file, the line and what is wrong. Owns the order of the
//! stages; each stage's rules are in `expand.rs` and `check/`.
//!
//! ```text
//! parse ─► expand (templates) ─► check/hosts ─► check/uplinks ─► check/routers ─► check/networks ─► check/engines ─► steps (step_kinds, check/steps)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, Result};

use super::check;
use super::expand;
use super::locate::{line_of, Here};
use super::model::{RawScenario, Scenario, Step};
use super::schema::{Capability, RouterKind};
use super::step_kinds;
use super::steps::Action;

impl Scenario {
    pub fn parse(src: &str, path: &Path) -> Result<Scenario> {
        let file = path.display().to_string();
        let raw: RawScenario = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            anyhow!("{file}:{line}: {}", e.message())
        })?;
        let here = Here { file: &file, src };

        let (segments, explicit_segments) = check::hosts::segments(&raw, here)?;
        let (expanded, host_groups) = expand::host_templates(&raw.hosts, here)?;
        let mut hosts = check::hosts::hosts(&expanded, &segments, explicit_segments, here)?;
        let offsets: Vec<usize> = expanded.iter().map(|(_, off)| *off).collect();
        check::uplinks::uplinks(&raw, &mut hosts, &offsets, &segments, here)?;
        check::hosts::transport(&raw, &hosts, here)?;
        let host_names: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
        check::hosts::template_names(&host_groups, &host_names, here)?;
        let bgp = check::hosts::bgp(&raw, &host_groups, &host_names, &hosts, here)?;
        let routers = check::routers::routers(&raw, &segments, &host_names, here)?;
        let mut requires: BTreeSet<Capability> = raw.requires.iter().copied().collect();
        if raw.etcd.is_some() {
            requires.insert(Capability::Etcd);
        }
        if raw.driver.registry.is_some() {
            requires.insert(Capability::Registry);
        }
        for r in &routers {
            requires.insert(match r.kind {
                RouterKind::Frr => Capability::Frr,
                RouterKind::Bird => Capability::Bird,
            });
        }
        let mut s = Scenario {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
            file: file.clone(),
            description: raw.description.clone(),
            requires,
            engines: Vec::new(),
            gobgp: Vec::new(),
            underlay: raw.underlay,
            segments,
            bgp,
            driver: raw.driver.clone(),
            etcd: None,
            isolate_l2: raw.isolate_l2,
            alone: raw.alone,
            hosts,
            routers,
            networks: Vec::new(),
            containers: Vec::new(),
            groups: BTreeMap::new(),
            host_groups,
            steps: Vec::new(),
        };
        check::routers::neighbours(&s, &raw, here)?;
        check::routers::gateways_and_peers(&s, &expanded, here)?;
        s.etcd = check::ipam::etcd(&s, &raw, here)?;
        let networks = check::networks::networks(&s, &raw, &host_names, here)?;
        let flat = expand::per_host_containers(&s, &raw.containers, here)?;
        let (containers, groups) =
            check::networks::containers(&flat, &host_names, &networks, here)?;
        s.networks = networks;
        s.containers = containers;
        s.groups = groups;
        check::ipam::cluster(&s, here)?;
        check::engines::engines(&mut s, &raw, here)?;
        check::gobgp::lines_and_bfd(&mut s, &raw, here)?;
        s.steps = steps(&s, &raw, here)?;
        Ok(s)
    }
}

/// Each step: its `name` (or one made from its fields), its [`Action`],
/// its kind from the step table, checked against the scenario.
fn steps(s: &Scenario, raw: &RawScenario, here: Here) -> Result<Vec<Step>> {
    let (file, src) = (here.file, here.src);
    let mut out: Vec<Step> = Vec::new();
    for (i, t) in raw.steps.iter().enumerate() {
        let line = line_of(src, t.span().start);
        let mut table = t.get_ref().clone();
        let name = match table.remove("name") {
            Some(toml::Value::String(n)) => Some(n),
            Some(_) => return Err(anyhow!("{file}:{line}: step name must be a string")),
            None => None,
        };
        let action: Action =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow!("{file}:{line}: step {}: {}", i + 1, e.message())
                })?;
        let name = name.unwrap_or_else(|| {
            format!(
                "{} {}",
                table.get("do").and_then(|v| v.as_str()).unwrap_or("step"),
                summary(&table)
            )
            .trim()
            .to_string()
        });
        let kind = table
            .get("do")
            .and_then(|v| v.as_str())
            .and_then(step_kinds::kind)
            .ok_or_else(|| {
                anyhow!(
                    "{file}:{line}: step {}: internal: its kind is not in the step table",
                    i + 1
                )
            })?;
        s.check_action(&action)
            .map_err(|e| anyhow!("{file}:{line}: step {} ({name}): {e}", i + 1))?;
        out.push(Step {
            name,
            line,
            action,
            kind,
        });
    }
    Ok(out)
}

fn summary(t: &toml::Table) -> String {
    let mut parts = Vec::new();
    for key in [
        "host",
        "daemon",
        "network",
        "containers",
        "from",
        "to",
        "prefix",
        "name",
        "field",
        "contains",
        "links",
        "id",
    ] {
        if let Some(v) = t.get(key) {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            parts.push(if key == "from" || key == "to" {
                format!("{key} {s}")
            } else {
                s
            });
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, GOOD};
    use crate::scenario::steps::Action;
    use crate::util::Dur;

    #[test]
    fn parses_and_expands() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.hosts[0].address, Some("192.0.2.1/24".parse().unwrap()));
        assert_eq!(s.hosts[1].address, Some("192.0.2.2/24".parse().unwrap()));
        assert_eq!(s.containers.len(), 4);
        assert_eq!(
            s.expand(&["c".into(), "h1".into()]),
            vec!["c1", "c2", "c3", "h1"]
        );
        assert_eq!(s.steps[0].name, "start c,d");
        assert_eq!(s.steps[1].name, "all see all");
        assert_eq!(s.steps[1].line, 32);
        assert!(
            matches!(s.steps[1].action, Action::ExpectReachable { within: Dur(d), .. } if d.as_secs() == 5)
        );
    }

    #[test]
    fn unknown_step_field_names_the_line() {
        let bad = GOOD.replace("within = \"5s\"", "withn = \"5s\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:32: step 2"), "{e}");
        assert!(e.contains("withn"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let bad = GOOD.replace("name = \"h2\"", "name = h2");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:9:"), "{e}");
    }

    #[test]
    fn bad_durations_and_actions_are_refused() {
        let e = parse(&GOOD.replace("\"5s\"", "\"5 parsecs\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":32:") && e.contains("unit"), "{e}");
        let e = parse(&GOOD.replace("do = \"start\"", "do = \"launch\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":28:") && e.contains("launch"), "{e}");
    }
}
