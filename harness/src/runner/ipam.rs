//! The cluster-wide IPAM's steps: etcd members killed and started again
//! (`etcd-kill`, `etcd-start`), frozen and thawed (`etcd-freeze`, `etcd-thaw`), a dead host's blocks released through the
//! operator's command (`ipam-release-host`), and the cross-host audit of a
//! network (`expect-ipam`).
//!
//! In: one of those [`Action`]s, the [`World`](crate::topology::World)'s
//! etcd and hosts, the running containers. Out: `Ok` with what held (the
//! step's note), or what differs: the audit compares what the containers
//! hold (their addresses, from the engine) with what each host's IPAM says
//! it handed out and holds (`ipam show` on its socket) and with what etcd
//! says each host holds; [`audit`] is the pure comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use serde_json::Value;

use nix::sys::signal::Signal;

use super::{Runner, POLL};
use crate::scenario::Action;
use crate::topology::World;
use crate::util::eventually;

/// One host's IPAM as its driver reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIpam {
    pub name: String,
    /// Its id in etcd.
    pub id: String,
    /// `(pool, block, addresses in use)`.
    pub blocks: Vec<(IpNet, IpNet, Vec<IpAddr>)>,
    pub strays: Vec<IpAddr>,
}

/// What etcd holds, as one live host read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdView {
    /// `(pool, block, holder's id)`.
    pub blocks: Vec<(IpNet, IpNet, String)>,
    pub findings: Vec<String>,
}

/// What the audit compares.
#[derive(Debug, Clone, Default)]
pub struct AuditInput {
    /// The network's pools (one per family).
    pub pools: Vec<IpNet>,
    /// `(container, host name, addresses)` of every running container of the network.
    pub containers: Vec<(String, String, Vec<IpAddr>)>,
    /// The live hosts audited.
    pub hosts: Vec<HostIpam>,
    pub etcd: EtcdView,
    /// Ids of hosts whose blocks must all be gone.
    pub gone: Vec<String>,
    pub max_blocks: Option<usize>,
}

/// The comparison: `Ok(summary)` or every difference found.
pub fn audit(i: &AuditInput) -> std::result::Result<String, String> {
    let mut bad: Vec<String> = Vec::new();
    let in_pools = |a: &IpAddr| i.pools.iter().any(|p| p.contains(a));
    // 1. No address twice among the containers.
    let mut owner: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (c, _, addrs) in &i.containers {
        for a in addrs {
            if let Some(o) = owner.insert(*a, c) {
                bad.push(format!("{a} is held by both {o} and {c}"));
            }
        }
    }
    let mut blocks_total = 0;
    for h in &i.hosts {
        let mine: Vec<&(IpNet, IpNet, Vec<IpAddr>)> = h
            .blocks
            .iter()
            .filter(|(p, _, _)| i.pools.contains(p))
            .collect();
        blocks_total += mine.len();
        let used: BTreeSet<IpAddr> = mine
            .iter()
            .flat_map(|(_, _, a)| a.iter().copied())
            .chain(h.strays.iter().copied().filter(in_pools))
            .collect();
        // 2. Each container's address in use in its host's IPAM, in a block it holds.
        let theirs: BTreeSet<IpAddr> = i
            .containers
            .iter()
            .filter(|(_, host, _)| host == &h.name)
            .flat_map(|(_, _, a)| a.iter().copied())
            .collect();
        for a in &theirs {
            if !used.contains(a) {
                bad.push(format!(
                    "{}'s IPAM does not list {a}, which a container there holds",
                    h.name
                ));
            } else if !mine.iter().any(|(_, b, _)| b.contains(a)) {
                bad.push(format!(
                    "{a} on {} lies in no block {} holds (a stray)",
                    h.name, h.name
                ));
            }
        }
        // 3. It uses exactly those, plus one gateway per pool.
        let extra: Vec<&IpAddr> = used.difference(&theirs).collect();
        if extra.len() > i.pools.len() {
            bad.push(format!(
                "{}'s IPAM uses {} addresses no container of the network holds (one gateway per pool expected): {extra:?}",
                h.name,
                extra.len()
            ));
        }
        if !h.strays.is_empty() {
            bad.push(format!("{} has strays: {:?}", h.name, h.strays));
        }
        // 4. Its blocks are exactly the ones etcd gives it.
        let local: BTreeSet<IpNet> = mine.iter().map(|(_, b, _)| *b).collect();
        let etcd: BTreeSet<IpNet> = i
            .etcd
            .blocks
            .iter()
            .filter(|(p, _, holder)| holder == &h.id && i.pools.contains(p))
            .map(|(_, b, _)| *b)
            .collect();
        if local != etcd {
            bad.push(format!(
                "{} ({}) holds {local:?} by its own account, etcd says {etcd:?}",
                h.name, h.id
            ));
        }
        if let Some(m) = i.max_blocks {
            if local.len() > m {
                bad.push(format!(
                    "{} holds {} blocks (at most {m} expected)",
                    h.name,
                    local.len()
                ));
            }
        }
    }
    // 5. The audit of etcd's own records.
    for f in &i.etcd.findings {
        bad.push(format!("etcd audit: {f}"));
    }
    // 6. Hosts released hold nothing.
    for g in &i.gone {
        let left: Vec<String> = i
            .etcd
            .blocks
            .iter()
            .filter(|(_, _, holder)| holder == g)
            .map(|(_, b, _)| b.to_string())
            .collect();
        if !left.is_empty() {
            bad.push(format!(
                "host {g} should hold no block, etcd gives it {left:?}"
            ));
        }
    }
    if bad.is_empty() {
        Ok(format!(
            "{} containers, {} addresses, all unique, in {blocks_total} blocks on {} hosts; each host's blocks as etcd says; etcd's audit clean",
            i.containers.len(),
            owner.len(),
            i.hosts.len()
        ))
    } else {
        Err(bad.join("; "))
    }
}

fn net(v: &Value) -> std::result::Result<IpNet, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a prefix: {v}"))
}

fn addr(v: &Value) -> std::result::Result<IpAddr, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an address: {v}"))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A host's own view from its `ipam show` document.
pub fn host_view(name: &str, show: &Value) -> std::result::Result<HostIpam, String> {
    let local = &show["local"];
    Ok(HostIpam {
        name: name.to_string(),
        id: show["host"].as_str().unwrap_or_default().to_string(),
        blocks: list(&local["blocks"])
            .iter()
            .map(|b| {
                Ok((
                    net(&b[0])?,
                    net(&b[1])?,
                    list(&b[2]).iter().map(addr).collect::<Result<_, _>>()?,
                ))
            })
            .collect::<std::result::Result<_, String>>()?,
        strays: list(&local["strays"])
            .iter()
            .map(addr)
            .collect::<Result<_, _>>()?,
    })
}

/// etcd's side from an `ipam show` document (an error if etcd did not answer).
pub fn etcd_view(show: &Value) -> std::result::Result<EtcdView, String> {
    if let Some(e) = show["error"].as_str() {
        return Err(format!("etcd's side is missing: {e}"));
    }
    let mut blocks = Vec::new();
    for p in list(&show["pools"]) {
        let pool = net(&p["cidr"])?;
        for b in list(&p["blocks"]) {
            blocks.push((
                pool,
                net(&b["block"])?,
                b["host"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(EtcdView {
        blocks,
        findings: list(&show["findings"])
            .iter()
            .map(|f| f.as_str().unwrap_or_default().to_string())
            .collect(),
    })
}

/// Whether a driver started with `args` announces the cluster IPAM's blocks
/// (`--ipam-announce blocks`, the default) rather than each address.
pub fn announces_blocks(args: &[String]) -> bool {
    let mut last = "blocks";
    for (k, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--ipam-announce=") {
            last = v;
        } else if a == "--ipam-announce" {
            last = args.get(k + 1).map_or("blocks", String::as_str);
        }
    }
    last == "blocks"
}

/// With an etcd cluster: the blocks each host whose driver answers and
/// announces blocks holds (`ipam show`), for the route sets it must
/// announce. A host whose driver is down announces nothing of its own.
pub fn held_blocks(w: &World) -> Result<BTreeMap<usize, Vec<IpNet>>> {
    let mut out = BTreeMap::new();
    if w.etcd.is_none() {
        return Ok(out);
    }
    for i in 0..w.hosts.len() {
        if !w.hosts[i].runs_driver() || !announces_blocks(&w.driver_args(i)) {
            continue;
        }
        let Ok(show) = w.driver_ipam_show(i) else {
            continue;
        };
        let h = host_view(&w.hosts[i].def.name, &show).map_err(|e| anyhow!(e))?;
        out.insert(i, h.blocks.iter().map(|(_, b, _)| *b).collect());
    }
    Ok(out)
}

impl Runner<'_> {
    pub(super) fn held_blocks(&self) -> Result<BTreeMap<usize, Vec<IpNet>>> {
        held_blocks(&self.w)
    }

    /// Plays an IPAM step.
    pub(super) fn ipam_step(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::EtcdKill { members } => {
                let e = self.w.etcd.as_ref().ok_or_else(|| anyhow!("no [etcd]"))?;
                for m in members {
                    e.kill(m).with_context(|| format!("kill etcd member {m}"))?;
                }
                Ok(None)
            }
            Action::EtcdFreeze { members } | Action::EtcdThaw { members } => {
                let e = self.w.etcd.as_ref().ok_or_else(|| anyhow!("no [etcd]"))?;
                let sig = match a {
                    Action::EtcdFreeze { .. } => Signal::SIGSTOP,
                    _ => Signal::SIGCONT,
                };
                for m in members {
                    e.member(m)?
                        .daemon
                        .send(sig)
                        .with_context(|| format!("{sig} etcd member {m}"))?;
                }
                Ok(None)
            }
            Action::EtcdStart { members } => {
                let e = self.w.etcd.as_ref().ok_or_else(|| anyhow!("no [etcd]"))?;
                for m in members {
                    e.spawn(m, &self.w.cleanup)?;
                }
                Ok(None)
            }
            Action::IpamReleaseHost { host, release } => {
                let h = self.w.host(host)?;
                let id = self.w.host(release)?.addr.addr().to_string();
                let sock = h.socket().display().to_string();
                let bin = self.w.opts.driver_bin.display().to_string();
                let out = h.ns.exec(
                    &bin,
                    &["ipam", "--socket", &sock, "release-host", &id],
                    Duration::from_secs(60),
                )?;
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() {
                    bail!(
                        "ipvlan-bgp ipam release-host {id} on {host}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let n: usize = text
                    .strip_prefix("released ")
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| anyhow!("release-host said {text:?}"))?;
                if n == 0 {
                    bail!("release-host {id} released no block: {text}");
                }
                self.note = Some(text);
                Ok(None)
            }
            Action::ExpectIpam {
                network,
                hosts,
                gone,
                max_blocks,
                within,
            } => {
                let net = self.network_def(network)?;
                let names = match hosts {
                    Some(h) => self.s.expand_hosts(h).map_err(|e| anyhow!(e))?,
                    None => net.hosts_on(),
                };
                let idx: Vec<(String, usize)> = names
                    .iter()
                    .map(|n| Ok((n.clone(), self.w.host_index(n)?)))
                    .collect::<Result<_>>()?;
                let mut pools: Vec<IpNet> = Vec::new();
                pools.extend(net.subnets.values().next().map(|s| IpNet::V4(*s)));
                pools.extend(net.subnets6.values().next().map(|s| IpNet::V6(*s)));
                let gone_ids: Vec<String> = gone
                    .iter()
                    .map(|g| Ok(self.w.host(g)?.addr.addr().to_string()))
                    .collect::<Result<_>>()?;
                let containers: Vec<(String, String, Vec<IpAddr>)> = self
                    .running
                    .values()
                    .filter(|c| {
                        c.network == *network && names.contains(&self.w.hosts[c.host].def.name)
                    })
                    .map(|c| {
                        let mut a: Vec<IpAddr> = Vec::new();
                        a.extend(c.address.map(IpAddr::V4));
                        a.extend(c.address6.map(IpAddr::V6));
                        (c.name.clone(), self.w.hosts[c.host].def.name.clone(), a)
                    })
                    .collect();
                let (summary, took) = eventually(self.scale(*within), POLL, || {
                    let mut hs = Vec::new();
                    let mut etcd = None;
                    for (name, i) in &idx {
                        let show = self.w.driver_ipam_show(*i).map_err(|e| format!("{e:#}"))?;
                        hs.push(host_view(name, &show)?);
                        if etcd.is_none() {
                            etcd = Some(etcd_view(&show)?);
                        }
                    }
                    audit(&AuditInput {
                        pools: pools.clone(),
                        containers: containers.clone(),
                        hosts: hs,
                        etcd: etcd.unwrap_or_default(),
                        gone: gone_ids.clone(),
                        max_blocks: *max_blocks,
                    })
                })
                .map_err(|e| anyhow!("the IPAM audit of {network}: {e}"))?;
                self.note = Some(summary);
                Ok(Some(took))
            }
            other => bail!("internal: {other:?} is not an IPAM step"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn input() -> AuditInput {
        AuditInput {
            pools: vec![n("10.20.0.0/16")],
            containers: vec![
                ("c1".into(), "h1".into(), vec![a("10.20.0.2")]),
                ("c2".into(), "h2".into(), vec![a("10.20.0.66")]),
            ],
            hosts: vec![
                HostIpam {
                    name: "h1".into(),
                    id: "192.0.2.1".into(),
                    blocks: vec![(
                        n("10.20.0.0/16"),
                        n("10.20.0.0/26"),
                        vec![a("10.20.0.1"), a("10.20.0.2")],
                    )],
                    strays: vec![],
                },
                HostIpam {
                    name: "h2".into(),
                    id: "192.0.2.2".into(),
                    blocks: vec![(
                        n("10.20.0.0/16"),
                        n("10.20.0.64/26"),
                        vec![a("10.20.0.65"), a("10.20.0.66")],
                    )],
                    strays: vec![],
                },
            ],
            etcd: EtcdView {
                blocks: vec![
                    (n("10.20.0.0/16"), n("10.20.0.0/26"), "192.0.2.1".into()),
                    (n("10.20.0.0/16"), n("10.20.0.64/26"), "192.0.2.2".into()),
                ],
                findings: vec![],
            },
            gone: vec!["192.0.2.3".into()],
            max_blocks: Some(1),
        }
    }

    #[test]
    fn a_consistent_cluster_passes() {
        let s = audit(&input()).unwrap();
        assert!(
            s.contains("2 containers, 2 addresses, all unique, in 2 blocks on 2 hosts"),
            "{s}"
        );
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let mut dup = input();
        dup.containers[1].2 = vec![a("10.20.0.2")];
        assert!(audit(&dup).unwrap_err().contains("held by both c1 and c2"));
        let mut other = input();
        other.etcd.blocks[1].2 = "192.0.2.1".into();
        let e = audit(&other).unwrap_err();
        assert!(
            e.contains("h2 (192.0.2.2) holds") && e.contains("etcd says"),
            "{e}"
        );
        let mut unlisted = input();
        unlisted.hosts[0].blocks[0].2 = vec![a("10.20.0.1")];
        assert!(audit(&unlisted)
            .unwrap_err()
            .contains("does not list 10.20.0.2"));
        let mut leak = input();
        leak.hosts[0].blocks[0].2.push(a("10.20.0.3"));
        assert!(audit(&leak)
            .unwrap_err()
            .contains("no container of the network holds"));
        let mut gone = input();
        gone.etcd
            .blocks
            .push((n("10.20.0.0/16"), n("10.20.1.0/26"), "192.0.2.3".into()));
        assert!(audit(&gone)
            .unwrap_err()
            .contains("host 192.0.2.3 should hold no block"));
        let mut many = input();
        many.hosts[0]
            .blocks
            .push((n("10.20.0.0/16"), n("10.20.1.0/26"), vec![]));
        many.etcd
            .blocks
            .push((n("10.20.0.0/16"), n("10.20.1.0/26"), "192.0.2.1".into()));
        assert!(audit(&many).unwrap_err().contains("holds 2 blocks"));
        let mut stray = input();
        stray.hosts[0].strays = vec![a("10.20.0.2")];
        stray.hosts[0].blocks[0].2 = vec![a("10.20.0.1")];
        assert!(audit(&stray).unwrap_err().contains("has strays"));
        let mut finding = input();
        finding.etcd.findings = vec!["10.20.0.2 reported twice".into()];
        assert!(audit(&finding).unwrap_err().contains("etcd audit"));
    }

    #[test]
    fn blocks_are_announced_unless_the_driver_is_told_addresses() {
        let v = |a: &[&str]| announces_blocks(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(v(&[]));
        assert!(v(&["--ipam-announce", "blocks"]));
        assert!(!v(&["--x", "1", "--ipam-announce", "addresses"]));
        assert!(!v(&["--ipam-announce=addresses"]));
        assert!(v(&[
            "--ipam-announce=addresses",
            "--ipam-announce",
            "blocks"
        ]));
    }

    #[test]
    fn views_are_read_from_the_show_document() {
        let show = serde_json::json!({
            "host": "192.0.2.1", "error": null,
            "pools": [{"cidr": "10.20.0.0/16", "block_len": 26, "blocks": [{"block": "10.20.0.0/26", "host": "192.0.2.1", "addresses": null}]}],
            "findings": [],
            "local": {"blocks": [["10.20.0.0/16", "10.20.0.0/26", ["10.20.0.1"]]], "strays": []}
        });
        let h = host_view("h1", &show).unwrap();
        assert_eq!(h.id, "192.0.2.1");
        assert_eq!(h.blocks[0].2, vec![a("10.20.0.1")]);
        let e = etcd_view(&show).unwrap();
        assert_eq!(
            e.blocks,
            vec![(
                n("10.20.0.0/16"),
                n("10.20.0.0/26"),
                "192.0.2.1".to_string()
            )]
        );
        let down = serde_json::json!({"error": "reading the pools needs etcd"});
        assert!(etcd_view(&down).unwrap_err().contains("needs etcd"));
    }
}
