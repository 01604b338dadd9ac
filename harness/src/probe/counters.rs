//! The packet counters of links in a namespace (`ip -s -j link show`):
//! what the per-uplink counters step compares before and after.
//!
//! In: a namespace and link names. Out: (rx_packets, tx_packets) per link.
//! Changes nothing.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};

use crate::netns::Netns;

/// (rx_packets, tx_packets) per link, by name.
pub type LinkCounters = BTreeMap<String, (u64, u64)>;

/// The counters of `links` in `ns`; a link that is missing is an error.
pub fn read(ns: &Netns, links: &[&str]) -> Result<LinkCounters> {
    let json = ns.ip(&["-s", "-j", "link", "show"])?;
    let all: serde_json::Value = serde_json::from_str(&json).context("ip -s -j link show")?;
    let mut out = LinkCounters::new();
    for name in links {
        let l = all
            .as_array()
            .and_then(|a| a.iter().find(|l| l["ifname"] == *name))
            .ok_or_else(|| anyhow!("no link {name} in namespace {}", ns.name))?;
        let n = |dir: &str| {
            l["stats64"][dir]["packets"]
                .as_u64()
                .ok_or_else(|| anyhow!("no {dir} packet count for {name}"))
        };
        out.insert(name.to_string(), (n("rx")?, n("tx")?));
    }
    Ok(out)
}
