//! `ipvlan-bgp ipam show`: pools, blocks per host and usage across the
//! cluster, as etcd holds them, beside this host's own view, in one JSON
//! document and its rendering for a terminal.
//!
//! In: the [`Ipam`] (its local state, its store health) and etcd (pools,
//! block affinities, the usage mirror and the audit's findings, read at
//! request time). Out: [`Show`], served at `/IpvlanBgp.IpamShow` on the
//! plugin socket, and [`render_text`]. When etcd does not answer, the
//! document still holds this host's view and says why the rest is missing.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ipam::{all_pools, audit, Ipam, Store, StoreHealth};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockShow {
    pub block: IpNet,
    pub host: String,
    /// The addresses its holder last reported (the usage mirror is written
    /// after the fact: None until the first report).
    pub addresses: Option<Vec<IpAddr>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolShow {
    pub cidr: IpNet,
    pub block_len: u8,
    pub blocks: Vec<BlockShow>,
}

/// This host's own view (its state file; no etcd needed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LocalShow {
    /// `(pool, block, addresses in use)`.
    pub blocks: Vec<(IpNet, IpNet, Vec<IpAddr>)>,
    /// Addresses in use outside the blocks this host holds.
    pub strays: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Show {
    pub host: String,
    pub store: StoreHealth,
    /// Why etcd's side is missing, when it is.
    pub error: Option<String>,
    pub pools: Vec<PoolShow>,
    /// What the cross-host audit found wrong (none when consistent).
    pub findings: Vec<String>,
    pub local: LocalShow,
}

/// This host's view of its blocks and strays.
pub fn local_view<S: Store>(ipam: &Ipam<S>) -> LocalShow {
    let s = ipam.snapshot();
    let mut out = LocalShow::default();
    for p in s.pools.values() {
        for (b, h) in &p.blocks {
            out.blocks
                .push((p.pool, *b, h.used.keys().copied().collect()));
        }
        out.strays.extend(p.strays.keys().copied());
    }
    out
}

/// Reads etcd's side (pools, blocks, usage, the audit) and this host's.
pub async fn collect<S: Store>(ipam: &Ipam<S>) -> Show {
    let local = local_view(ipam);
    let cluster = async {
        let pools = all_pools(ipam.store(), ipam.keys()).await?;
        let a = audit(ipam.store(), ipam.keys()).await?;
        Ok::<_, crate::ipam::IpamError>((pools, a))
    }
    .await;
    let (pools, findings, error) = match cluster {
        Ok((pools, a)) => {
            let mut by_pool: BTreeMap<IpNet, Vec<BlockShow>> = BTreeMap::new();
            for b in &a.blocks {
                by_pool.entry(b.pool).or_default().push(BlockShow {
                    block: b.block,
                    host: b.host.clone(),
                    addresses: a.usage.get(&(b.pool, b.block)).map(|(_, v)| v.clone()),
                });
            }
            let pools = pools
                .into_iter()
                .map(|p| PoolShow {
                    cidr: p.cidr,
                    block_len: p.block_len,
                    blocks: by_pool.remove(&p.cidr).unwrap_or_default(),
                })
                .collect();
            (pools, a.findings, None)
        }
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    Show {
        host: ipam.host(),
        store: ipam.health(),
        error,
        pools,
        findings,
        local,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// The document for a terminal: etcd's state, each pool with its blocks
/// per host and their usage, this host's blocks and strays, the findings.
pub fn render_text(v: &Value) -> String {
    let mut out = String::new();
    let _ = write_text(&mut out, v);
    out
}

fn write_text(out: &mut String, v: &Value) -> std::fmt::Result {
    let store = &v["store"];
    let state = match store["up"].as_bool() {
        Some(true) => "answers",
        Some(false) => "does NOT answer",
        None => "not asked yet",
    };
    writeln!(out, "IPAM on host {}: etcd {state}", s(&v["host"]))?;
    if store["up"] == Value::Bool(false) {
        writeln!(out, "  last error: {}", s(&store["last_error"]))?;
    }
    if let Some(e) = v["error"].as_str() {
        writeln!(out, "cluster view unavailable: {e}")?;
    }
    for p in list(&v["pools"]) {
        let blocks = list(&p["blocks"]);
        let mut hosts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for b in blocks {
            let e = hosts.entry(s(&b["host"])).or_default();
            e.0 += 1;
            e.1 += list(&b["addresses"]).len();
        }
        let used: usize = hosts.values().map(|h| h.1).sum();
        writeln!(
            out,
            "pool {} (blocks /{}): {} blocks on {} hosts, {used} addresses in use",
            s(&p["cidr"]),
            s(&p["block_len"]),
            blocks.len(),
            hosts.len()
        )?;
        for (h, (n, a)) in &hosts {
            let names: Vec<String> = blocks
                .iter()
                .filter(|b| s(&b["host"]) == *h)
                .map(|b| s(&b["block"]))
                .collect();
            writeln!(out, "  {h:<18} {n} blocks, {a} in use: {}", names.join(" "))?;
        }
    }
    let local = &v["local"];
    writeln!(
        out,
        "this host holds {} blocks; strays: {}",
        list(&local["blocks"]).len(),
        match list(&local["strays"]) {
            [] => "none".to_string(),
            st => st.iter().map(s).collect::<Vec<_>>().join(" "),
        }
    )?;
    match list(&v["findings"]) {
        [] => writeln!(out, "audit: consistent")?,
        f => {
            writeln!(out, "audit found {} problems:", f.len())?;
            for x in f {
                writeln!(out, "  {}", s(x))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_names_pools_hosts_blocks_and_findings() {
        let v = json!({
            "host": "192.0.2.1",
            "store": {"up": true, "since": 1, "last_ok": 2, "last_error": null, "failures": 0},
            "error": null,
            "pools": [{"cidr": "10.20.0.0/16", "block_len": 26, "blocks": [
                {"block": "10.20.0.0/26", "host": "192.0.2.1", "addresses": ["10.20.0.1", "10.20.0.2"]},
                {"block": "10.20.0.64/26", "host": "192.0.2.2", "addresses": null}
            ]}],
            "findings": ["10.20.0.2 reported twice"],
            "local": {"blocks": [["10.20.0.0/16", "10.20.0.0/26", ["10.20.0.1", "10.20.0.2"]]], "strays": ["10.20.9.9"]}
        });
        let t = render_text(&v);
        for want in [
            "host 192.0.2.1: etcd answers",
            "pool 10.20.0.0/16 (blocks /26): 2 blocks on 2 hosts, 2 addresses in use",
            "192.0.2.2",
            "10.20.0.64/26",
            "holds 1 blocks; strays: 10.20.9.9",
            "audit found 1 problems",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
        let down = render_text(
            &json!({"host": "h", "store": {"up": false, "last_error": "etcd did not answer"}, "error": "reading the pools needs etcd"}),
        );
        assert!(
            down.contains("does NOT answer") && down.contains("cluster view unavailable"),
            "{down}"
        );
    }
}
