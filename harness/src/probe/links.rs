//! What the harness sees of a host's links, and which of them are the
//! driver's.
//!
//! In: a namespace. Out: its links as `ip -d -j link show` reports them
//! (index, name, kind, parent, MAC, alias, flags). The driver marks every
//! link it creates with an `IFLA_IFALIAS` starting with `ipvlan-bgp:`; that
//! mark, not the name, is what says a link is the driver's (hosts really have
//! links named `ibp94s0f0` or `ibs1`: systemd's InfiniBand names).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::netns::Netns;

/// The start of the alias the driver leaves on each link it creates
/// (`ipvlan-bgp:<role>:<id>`).
pub use ipvlan_bgp::model::names::MARK_PREFIX;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Kind {
    info_kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    ifindex: u32,
    ifname: String,
    link: Option<String>,
    address: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    ifalias: Option<String>,
    linkinfo: Option<Kind>,
}

/// One link, with what identifies it and what a careless driver would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    /// The lower link's name (`link` in `ip -j`), for veth the peer.
    pub parent: Option<String>,
    pub address: Option<String>,
    pub alias: Option<String>,
    /// Administrative flags only (UP, NOARP...), not carrier state.
    pub flags: Vec<String>,
}

impl LinkInfo {
    pub fn marked(&self) -> bool {
        // The driver's own test, so the harness and the driver never disagree.
        ipvlan_bgp::model::names::is_marked(self.alias.as_deref())
    }

    /// What differs between a remembered state and now, or `None`.
    pub fn diff(&self, now: &LinkInfo) -> Option<String> {
        let mut d = Vec::new();
        if self.index != now.index {
            d.push(format!(
                "index {} -> {} (deleted and made again)",
                self.index, now.index
            ));
        }
        for (what, a, b) in [
            ("kind", &self.kind, &now.kind),
            ("parent", &self.parent, &now.parent),
            ("MAC", &self.address, &now.address),
            ("alias", &self.alias, &now.alias),
        ] {
            if a != b {
                d.push(format!("{what} {a:?} -> {b:?}"));
            }
        }
        if self.flags != now.flags {
            d.push(format!("flags {:?} -> {:?}", self.flags, now.flags));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

/// Every link of a namespace, by name.
pub fn list(ns: &Netns) -> Result<BTreeMap<String, LinkInfo>> {
    let out = ns
        .exec("ip", &["-d", "-j", "link", "show"], Duration::from_secs(10))
        .with_context(|| format!("ip -d -j link show in {}", ns.name))?;
    if !out.status.success() {
        anyhow::bail!(
            "ip -d -j link show in {}: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&out.stdout).with_context(|| format!("links of {}", ns.name))
}

fn parse(json: &[u8]) -> Result<BTreeMap<String, LinkInfo>> {
    let raw: Vec<Raw> = serde_json::from_slice(json)?;
    Ok(raw
        .into_iter()
        .map(|r| {
            // Carrier-dependent flags change by themselves (a peer going down).
            let flags = r
                .flags
                .into_iter()
                .filter(|f| !matches!(f.as_str(), "LOWER_UP" | "M-DOWN" | "NO-CARRIER"))
                .collect();
            let l = LinkInfo {
                index: r.ifindex,
                name: r.ifname.clone(),
                kind: r.linkinfo.and_then(|k| k.info_kind),
                parent: r.link,
                address: r.address,
                alias: r.ifalias,
                flags,
            };
            (r.ifname, l)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"address":"00:00:00:00:00:00"},
      {"ifindex":3,"link":"xs1","ifname":"ibs1","flags":["BROADCAST","MULTICAST","M-DOWN"],
       "address":"2e:61:c3:d3:62:01","linkinfo":{"info_kind":"veth"}},
      {"ifindex":5,"ifname":"ibp94s0f0","flags":["BROADCAST","UP"],"ifalias":"fabric A, rack 3"},
      {"ifindex":4,"link":"eth1","ifname":"ibe0123456789ab","flags":["BROADCAST","UP","LOWER_UP"],
       "address":"ea:b4:a3:9a:e5:21","ifalias":"ipvlan-bgp:endpoint:0123456789ab",
       "linkinfo":{"info_kind":"macvlan","info_data":{"mode":"bridge"}}}
    ]"#;

    #[test]
    fn marks_are_told_by_alias_not_name() {
        let l = parse(SAMPLE.as_bytes()).unwrap();
        assert!(!l["ibs1"].marked(), "a foreign ib* link is not ours");
        assert!(
            !l["ibp94s0f0"].marked(),
            "nor one with someone else's alias"
        );
        assert!(l["ibe0123456789ab"].marked());
        assert_eq!(l["ibe0123456789ab"].kind.as_deref(), Some("macvlan"));
        assert_eq!(l["ibe0123456789ab"].parent.as_deref(), Some("eth1"));
        assert!(!l["lo"].marked());
    }

    #[test]
    fn diff_sees_recreation_and_changes_but_not_carrier() {
        let l = parse(SAMPLE.as_bytes()).unwrap();
        let a = l["ibs1"].clone();
        // Carrier flags come and go by themselves: they are not kept.
        assert_eq!(a.flags, vec!["BROADCAST", "MULTICAST"]);
        let mut b = a.clone();
        assert_eq!(a.diff(&b), None);
        b.index = 9;
        assert!(a.diff(&b).unwrap().contains("index 3 -> 9"));
        let mut c = a.clone();
        c.alias = Some("x".into());
        c.flags.push("UP".into());
        let d = a.diff(&c).unwrap();
        assert!(d.contains("alias") && d.contains("flags"), "{d}");
    }
}
