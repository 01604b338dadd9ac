//! `ipvlan-bgp status`: what the running driver knows, in one JSON document.
//!
//! Collected inside the driver from its state and metrics, served on the
//! plugin socket at `/IpvlanBgp.Status`, printed by the `status` command.

use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::metrics::{BgpStatus, Metrics};

#[derive(Debug, Serialize, Deserialize)]
pub struct NetworkStatus {
    pub id: String,
    pub parent: String,
    pub dataplane: String,
    pub subnet: String,
    pub gateway: Option<String>,
    pub announce: String,
    pub shim: Option<String>,
    /// Why the network cannot serve Docker now (its parent is missing...);
    /// `None` when it can. Repaired by itself when the cause goes away.
    #[serde(default)]
    pub unavailable: Option<String>,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub id: String,
    pub address: String,
    pub link: String,
    pub joined: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub networks: Vec<NetworkStatus>,
    pub bgp: BgpStatus,
}

impl Status {
    pub fn collect(driver: &Driver, metrics: &Metrics) -> Status {
        let networks = driver
            .state()
            .networks
            .values()
            .map(|n| NetworkStatus {
                id: n.spec.short_id().to_string(),
                parent: n.spec.parent.name.clone(),
                dataplane: n.spec.dataplane.describe(),
                subnet: n.spec.subnets_text(),
                gateway: n.spec.gateways_text(),
                announce: format!("{:?}", n.spec.announce).to_lowercase(),
                shim: n.shim.clone(),
                unavailable: driver.unavailable().get(&n.spec.id).cloned(),
                endpoints: n
                    .endpoints
                    .values()
                    .map(|e| EndpointStatus {
                        id: e.spec.id[..12.min(e.spec.id.len())].to_string(),
                        address: e.spec.addresses_text(),
                        link: e.link.clone(),
                        joined: e.joined,
                    })
                    .collect(),
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            networks,
            bgp: metrics.bgp_snapshot(),
        }
    }
}

/// Renders the status JSON for a terminal.
pub fn render_text(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let _ = writeln!(out, "ipvlan-bgp {}", s(&v["version"]));
    let nets = v["networks"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "networks: {}", nets.len());
    for n in &nets {
        let eps = n["endpoints"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {} on {}  subnet {}  gateway {}  announce {}  endpoints {}",
            s(&n["id"]),
            s(&n["dataplane"]),
            s(&n["parent"]),
            s(&n["subnet"]),
            s(&n["gateway"]),
            s(&n["announce"]),
            eps.len()
        );
        if let Some(why) = n["unavailable"].as_str() {
            let _ = writeln!(out, "    UNAVAILABLE: {why}");
        }
        for e in eps {
            let _ = writeln!(
                out,
                "    {}  {}  link {}  {}",
                s(&e["id"]),
                s(&e["address"]),
                s(&e["link"]),
                if e["joined"].as_bool() == Some(true) {
                    "joined"
                } else {
                    "created"
                }
            );
        }
    }
    let b = &v["bgp"];
    if b["enabled"].as_bool() != Some(true) {
        let _ = writeln!(out, "bgp: disabled");
        return out;
    }
    let _ =
        writeln!(
        out,
        "bgp: gobgpd {} {}  announced {}  learned {}  installed {}  stale {}  install errors {}  route conflicts {}  kernel drift {}",
        s(&b["gobgp"]),
        if b["connected"].as_bool() == Some(true) { "connected" } else { "NOT CONNECTED" },
        b["announced"],
        b["learned"],
        b["installed"],
        b["stale"],
        b["install_errors"],
        b["route_conflicts"],
        b["kernel_drift"]
    );
    if let Some(e) = b["last_error"].as_str() {
        let _ = writeln!(out, "  last error: {e}");
    }
    for p in b["peers"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "  peer {} AS {}  {}",
            s(&p["address"]),
            p["asn"],
            s(&p["state"])
        );
    }
    if let Some(r) = b["rejected"].as_object() {
        for (reason, n) in r {
            let _ = writeln!(out, "  rejected {reason}: {n}");
        }
    }
    if let Some(c) = b["conflicted"].as_u64().filter(|c| *c > 0) {
        let _ = writeln!(
            out,
            "  {c} wanted routes held by another owner's route (retried)"
        );
    }
    out
}
