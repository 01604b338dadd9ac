//! `ipvlan-bgp status`: what the running driver knows, in one JSON document,
//! and its rendering for a terminal.
//!
//! Collected inside the driver from its state, its metrics and the kernel
//! (the routes carrying our protocol tag, read at request time), served on
//! the plugin socket at `/IpvlanBgp.Status`, printed by the `status` command
//! (once, or redrawn with `--watch`). What an operator reaches for in an
//! incident: each BGP peer with its state and for how long, each network's
//! endpoints with whether gobgpd holds their announcement, the learned routes
//! the kernel holds, refusals with reasons, conflicts and drift; and, with
//! the cluster-wide IPAM on, this host's blocks, addresses and etcd's health.

use std::fmt::Write;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::docker::Driver;
use crate::ipam::StoreHealth;
use crate::kernel::real::Kernel;
use crate::kernel::{Family, Route};
use crate::metrics::{now_unix, BgpStatus, Metrics};
use crate::model::network::Announce;

/// At most this many installed routes are listed per network (all are counted).
pub const ROUTES_LISTED: usize = 100;
/// At most this many recent refusals are printed as text (the JSON has all kept).
const REJECTED_PRINTED: usize = 10;

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
    /// gobgpd holds this endpoint's path (its /32, or the network's subnet
    /// for `announce=subnet`) from our last successful sync.
    #[serde(default)]
    pub announced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub prefix: String,
    pub via: Option<String>,
}

/// One block this host holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockStatus {
    pub pool: IpNet,
    pub block: IpNet,
    /// Addresses in use in it.
    pub used: usize,
}

/// The cluster-wide IPAM on this host (`--etcd-endpoints`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpamStatus {
    /// This host's id in etcd.
    pub host: String,
    pub store: StoreHealth,
    pub blocks: Vec<BlockStatus>,
    /// Addresses in use outside the blocks this host holds.
    pub strays: Vec<std::net::IpAddr>,
    pub claims: u64,
    pub lost_races: u64,
    pub etcd_failures: u64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// Unix time of this document.
    pub time: u64,
    pub networks: Vec<NetworkStatus>,
    pub bgp: BgpStatus,
    /// Learned routes the kernel holds with our tag, as read for this
    /// document (the first [`ROUTES_LISTED`] by prefix).
    pub routes: Vec<RouteStatus>,
    /// How many such routes the kernel holds.
    pub routes_installed: usize,
    /// Why the installed routes could not be read, if they could not.
    pub routes_error: Option<String>,
    /// The cluster-wide IPAM, when on.
    pub ipam: Option<IpamStatus>,
}

impl Status {
    pub fn collect(driver: &Driver, metrics: &Metrics) -> Status {
        let bgp = metrics.bgp_snapshot();
        let is_announced = |p: IpNet| bgp.connected && bgp.announced_prefixes.contains(&p);
        let networks = driver
            .state()
            .networks
            .values()
            .map(|n| {
                let subnet_announced = n.spec.subnets().all(is_announced);
                NetworkStatus {
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
                            announced: match n.spec.announce {
                                Announce::Endpoint => e
                                    .spec
                                    .addrs()
                                    .all(|a| is_announced(crate::model::network::host_route(a))),
                                Announce::Subnet => subnet_announced,
                            },
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            time: now_unix(),
            networks,
            bgp,
            routes: Vec::new(),
            routes_installed: 0,
            routes_error: None,
            ipam: None,
        }
    }

    /// Adds the routes the kernel holds with our protocol tag, IPv4 and
    /// IPv6 (without the driver's lock: a big table takes a while to read).
    pub fn read_routes(mut self) -> Status {
        let Some(proto) = self.bgp.route_protocol else {
            return self;
        };
        let both = Kernel::open().and_then(|mut k| {
            let mut routes = k.routes(Family::V4, Some(proto))?;
            routes.extend(k.routes(Family::V6, Some(proto))?);
            Ok(routes)
        });
        match both {
            Ok(routes) => self.add_routes(&routes),
            Err(e) => self.routes_error = Some(e.to_string()),
        }
        self
    }

    /// Keeps the count of `routes` and the first [`ROUTES_LISTED`] by prefix.
    pub fn add_routes(&mut self, routes: &[Route]) {
        let mut sorted: Vec<&Route> = routes.iter().collect();
        sorted.sort_by_key(|r| r.dst);
        self.routes_installed = routes.len();
        self.routes = sorted
            .into_iter()
            .take(ROUTES_LISTED)
            .map(|r| RouteStatus {
                prefix: r.dst.to_string(),
                via: r.via.map(|v| v.to_string()),
            })
            .collect();
    }
}

/// `5d3h`, `2h07m`, `4m12s`, `9s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// Unix time `t` as `YYYY-MM-DD HH:MM:SS UTC` (the --watch header).
pub fn format_utc(t: u64) -> String {
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Renders the status JSON for a terminal, with durations measured from the
/// document's own time.
pub fn render_text(v: &Value) -> String {
    let now = v["time"].as_u64().unwrap_or_else(now_unix);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(&mut out, v, now);
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn write_text(out: &mut String, v: &Value, now: u64) -> std::fmt::Result {
    writeln!(out, "ipvlan-bgp {}", s(&v["version"]))?;
    let b = &v["bgp"];
    if yes(&b["enabled"]) {
        write_bgp(out, b, now)?;
    } else {
        writeln!(out, "bgp: disabled")?;
    }
    write_health(out, &b["health"])?;
    write_uplinks(out, b)?;
    let nets = list(&v["networks"]);
    writeln!(out, "networks: {}", nets.len())?;
    for n in nets {
        write_network(out, n)?;
    }
    if let Some(e) = v["routes_error"].as_str() {
        writeln!(out, "installed routes could not be read: {e}")?;
    } else if yes(&b["enabled"]) {
        let routes = list(&v["routes"]);
        let total = v["routes_installed"].as_u64().unwrap_or(0);
        writeln!(out, "learned routes installed: {total}")?;
        for r in routes {
            writeln!(out, "  {:<20} via {}", s(&r["prefix"]), s(&r["via"]))?;
        }
        if total > routes.len() as u64 {
            writeln!(out, "  … and {} more", total - routes.len() as u64)?;
        }
    }
    if yes(&b["enabled"]) {
        write_refusals(out, b)?;
    }
    if !v["ipam"].is_null() {
        write_ipam(out, &v["ipam"], now)?;
    }
    Ok(())
}

/// The IPAM: etcd's health, this host's blocks and usage, strays.
fn write_ipam(out: &mut String, i: &Value, now: u64) -> std::fmt::Result {
    let st = &i["store"];
    let since = st["since"]
        .as_u64()
        .map(|t| format!(" for {}", human_duration(now.saturating_sub(t))))
        .unwrap_or_default();
    let state = match st["up"].as_bool() {
        Some(true) => format!("answers{since}"),
        Some(false) => format!("does NOT answer{since}"),
        None => "not asked yet".into(),
    };
    let blocks = list(&i["blocks"]);
    let used: u64 = blocks.iter().filter_map(|b| b["used"].as_u64()).sum();
    writeln!(
        out,
        "ipam: host {}  etcd {state}  blocks {}  addresses {used}  strays {}  claims {}  etcd failures {}",
        s(&i["host"]),
        blocks.len(),
        list(&i["strays"]).len(),
        i["claims"],
        i["etcd_failures"]
    )?;
    if st["up"] == Value::Bool(false) {
        writeln!(out, "  last error: {}", s(&st["last_error"]))?;
    }
    for b in blocks {
        writeln!(
            out,
            "  block {:<20} pool {:<18} {} in use",
            s(&b["block"]),
            s(&b["pool"]),
            b["used"]
        )?;
    }
    for a in list(&i["strays"]) {
        writeln!(out, "  stray {} (announced alone)", s(a))?;
    }
    Ok(())
}

/// Dual-uplink mode: each uplink's state and routes, the host checks'
/// warnings, the container ports' repairs.
fn write_uplinks(out: &mut String, b: &Value) -> std::fmt::Result {
    let ups = list(&b["uplinks"]);
    if ups.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = ups
        .iter()
        .map(|u| {
            format!(
                "{} {} ({} routes)",
                s(&u["name"]),
                s(&u["state"]),
                u["routes"]
            )
        })
        .collect();
    writeln!(
        out,
        "uplinks: {}  port repairs {}",
        each.join(", "),
        b["port_repairs"]
    )?;
    for w in list(&b["host_warnings"]) {
        writeln!(out, "  host check: {}", s(w))?;
    }
    Ok(())
}

/// The health gate, when on: Docker's reachability and the held endpoints.
fn write_health(out: &mut String, h: &Value) -> std::fmt::Result {
    if !yes(&h["enabled"]) {
        return Ok(());
    }
    writeln!(
        out,
        "health gate: docker {} {}  held {}  transitions {}  fail-open {}",
        s(&h["docker"]),
        if yes(&h["api_connected"]) {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        h["gated"],
        h["transitions"],
        h["fail_open"]
    )?;
    if let Some(held) = h["held"].as_object() {
        for (ep, why) in held {
            writeln!(out, "  endpoint {ep} held back: {}", s(why))?;
        }
    }
    Ok(())
}

fn write_bgp(out: &mut String, b: &Value, now: u64) -> std::fmt::Result {
    writeln!(
        out,
        "gobgpd {}  {}  api {}  (connects {})",
        s(&b["gobgp"]),
        if yes(&b["connected"]) {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        s(&b["api"]),
        b["connects"]
    )?;
    let d = &b["drain"];
    if yes(&d["drained"]) {
        let safe = match d["safe_since"].as_u64() {
            Some(t) => format!("SAFE TO STOP since {}", format_utc(t)),
            None => "not yet safe to stop".into(),
        };
        writeln!(
            out,
            "DRAINED ({}): {} of {} prefixes moved; {safe}: {}",
            s(&d["method"]),
            d["moved"],
            d["prefixes"],
            s(&d["detail"])
        )?;
    }
    if let Some(e) = b["last_error"].as_str() {
        writeln!(out, "  last error: {e}")?;
    }
    writeln!(
        out,
        "routes: announced {}  learned {}  installed {}  stale {}",
        b["announced"], b["learned"], b["installed"], b["stale"]
    )?;
    let peers = list(&b["peers"]);
    let up = peers.iter().filter(|p| p["state"] == "established").count();
    writeln!(out, "peers: {up}/{} established", peers.len())?;
    if !peers.is_empty() {
        writeln!(
            out,
            "  {:<24} {:>10}  {:<12} {:<10} {:<16} {:<8} FOR",
            "PEER", "AS", "STATE", "HOLD", "BFD", "GR"
        )?;
    }
    for p in peers {
        let addr = s(&p["address"]);
        let since = b["peer_since"][&addr]["since"]
            .as_u64()
            .map(|t| human_duration(now.saturating_sub(t)))
            .unwrap_or_else(|| "-".into());
        let hold = match (p["hold_time"].as_u64(), p["keepalive"].as_u64()) {
            (Some(h), Some(k)) => format!("{h}/{k}s"),
            _ => "-".into(),
        };
        let bfd = match p["bfd"].as_object() {
            Some(f) => format!(
                "{} {}ms x{}",
                s(&f["state"]),
                f["interval_ms"],
                f["multiplier"]
            ),
            None => "-".into(),
        };
        let gr = match p["graceful_restart"].as_u64() {
            Some(t) if !list(&p["end_of_rib"]).is_empty() => format!("{t}s eor"),
            Some(t) => format!("{t}s"),
            None => "-".into(),
        };
        writeln!(
            out,
            "  {:<24} {:>10}  {:<12} {hold:<10} {bfd:<16} {gr:<8} {since}",
            addr,
            s(&p["asn"]),
            s(&p["state"])
        )?;
        if let Some(why) = p["last_down"].as_str() {
            writeln!(out, "    last down: {why}")?;
        }
    }
    if b["peer_routes_dropped"].as_u64().unwrap_or(0) > 0 {
        writeln!(
            out,
            "  routes removed at once for peers that failed hard: {}",
            b["peer_routes_dropped"]
        )?;
    }
    Ok(())
}

fn write_network(out: &mut String, n: &Value) -> std::fmt::Result {
    let eps = list(&n["endpoints"]);
    writeln!(
        out,
        "  network {}  {} on {}  subnet {}  gateway {}  announce {}",
        s(&n["id"]),
        s(&n["dataplane"]),
        s(&n["parent"]),
        s(&n["subnet"]),
        s(&n["gateway"]),
        s(&n["announce"]),
    )?;
    if let Some(why) = n["unavailable"].as_str() {
        writeln!(out, "    UNAVAILABLE: {why}")?;
    }
    writeln!(out, "    endpoints: {}", eps.len())?;
    if !eps.is_empty() {
        writeln!(
            out,
            "      {:<12}  {:<15}  {:<15}  {:<7}  ANNOUNCED",
            "ENDPOINT", "ADDRESS", "LINK", "STATE"
        )?;
    }
    for e in eps {
        let joined = yes(&e["joined"]);
        let announced = match (joined, yes(&e["announced"])) {
            (_, true) => "yes",
            (true, false) => "NO",
            (false, false) => "-",
        };
        writeln!(
            out,
            "      {:<12}  {:<15}  {:<15}  {:<7}  {announced}",
            s(&e["id"]),
            s(&e["address"]),
            s(&e["link"]),
            if joined { "joined" } else { "created" },
        )?;
    }
    Ok(())
}

fn write_refusals(out: &mut String, b: &Value) -> std::fmt::Result {
    let by_reason: Vec<String> = b["rejected"]
        .as_object()
        .map(|m| m.iter().map(|(r, n)| format!("{r} {n}")).collect())
        .unwrap_or_default();
    if by_reason.is_empty() {
        writeln!(out, "rejected: none")?;
    } else {
        writeln!(out, "rejected: {}", by_reason.join(", "))?;
        let recent = list(&b["recent_rejected"]);
        writeln!(out, "  recent (newest last):")?;
        for r in &recent[recent.len().saturating_sub(REJECTED_PRINTED)..] {
            writeln!(out, "    {:<20} {}", s(&r["prefix"]), s(&r["reason"]))?;
        }
    }
    writeln!(
        out,
        "conflicts: {} held by another owner now, {} in total   kernel drift: {}   install errors: {}",
        b["conflicted"], b["route_conflicts"], b["kernel_drift"], b["install_errors"]
    )?;
    if b["conflicted"].as_u64().is_some_and(|c| c > 0) {
        writeln!(
            out,
            "  (routes held by another owner are retried; see the driver log for the prefixes)"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "version": "0.1.0",
            "time": 1_000_000,
            "networks": [{
                "id": "net1", "parent": "eth0", "dataplane": "macvlan bridge",
                "subnet": "10.1.0.0/24", "gateway": "10.1.0.1", "announce": "endpoint",
                "shim": null, "unavailable": null,
                "endpoints": [
                    {"id": "ep1", "address": "10.1.0.2", "link": "ib-ep1", "joined": true, "announced": true},
                    {"id": "ep2", "address": "10.1.0.3", "link": "ib-ep2", "joined": true, "announced": false},
                    {"id": "ep3", "address": "10.1.0.4", "link": "ib-ep3", "joined": false}
                ]
            }],
            "routes": [{"prefix": "10.1.0.9/32", "via": "10.0.0.2"}],
            "routes_installed": 3,
            "bgp": {
                "enabled": true, "gobgp": "unix:///run/gobgpd.sock", "connected": true,
                "connects": 1, "announced": 1, "learned": 3, "installed": 3, "stale": 0,
                "install_errors": 0, "route_conflicts": 2, "kernel_drift": 5, "conflicted": 1,
                "rejected": {"default-route": 1, "outside-pools": 4},
                "recent_rejected": [{"prefix": "0.0.0.0/0", "reason": "default-route"}],
                "peers": [
                    {"address": "10.0.0.2", "asn": 65000, "state": "established"},
                    {"address": "10.0.0.3", "asn": 65001, "state": "active"}
                ],
                "peer_since": {"10.0.0.2": {"state": "established", "since": 1_000_000 - 312}}
            }
        })
    }

    #[test]
    fn text_names_peers_endpoints_refusals_and_counts() {
        let t = render_text(&sample());
        let line = |needle: &str| {
            t.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?} in\n{t}"))
                .to_string()
        };
        assert!(line("10.0.0.2").contains("     65000  established "));
        assert!(line("10.0.0.2").ends_with("5m12s"));
        assert!(line("10.0.0.3").ends_with('-'));
        assert!(t.contains("peers: 1/2 established"));
        assert!(line("10.1.0.2").ends_with("yes"));
        assert!(line("10.1.0.3").ends_with("NO"), "joined but not announced");
        assert!(line("10.1.0.4").contains("created"));
        assert!(line("10.1.0.9/32").contains("via 10.0.0.2"));
        assert!(t.contains("… and 2 more"));
        assert!(t.contains("rejected: default-route 1, outside-pools 4"));
        assert!(line("0.0.0.0/0").contains("default-route"));
        assert!(line("conflicts:").contains("1 held by another owner now, 2 in total"));
        assert!(line("conflicts:").contains("kernel drift: 5"));
    }

    #[test]
    fn text_shows_the_api_line_bfd_graceful_restart_and_the_drain() {
        let mut v = sample();
        v["bgp"]["api"] = json!("v4");
        v["bgp"]["peers"][0] = json!({
            "address": "10.0.0.2", "asn": 65000, "state": "established",
            "hold_time": 9, "keepalive": 3,
            "bfd": {"state": "up", "interval_ms": 300, "multiplier": 3},
            "graceful_restart": 120, "end_of_rib": ["ipv4-unicast"]
        });
        v["bgp"]["peers"][1]["last_down"] = json!("hold timer expired");
        v["bgp"]["peer_routes_dropped"] = json!(4);
        let t = render_text(&v);
        let line = |needle: &str| {
            t.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?} in\n{t}"))
                .to_string()
        };
        assert!(line("gobgpd ").contains("api v4"), "{t}");
        let p = line("10.0.0.2");
        assert!(
            p.contains("9/3s") && p.contains("up 300ms x3") && p.contains("120s eor"),
            "{p}"
        );
        assert!(t.contains("last down: hold timer expired"), "{t}");
        assert!(t.contains("failed hard: 4"), "{t}");
        assert!(!t.contains("DRAINED"));
        v["bgp"]["drain"] = json!({
            "drained": true, "method": "gshut+prepend+med", "prefixes": 3, "moved": 1,
            "safe_since": null, "detail": "waiting"
        });
        let t = render_text(&v);
        assert!(
            t.contains("DRAINED (gshut+prepend+med): 1 of 3 prefixes moved; not yet safe to stop"),
            "{t}"
        );
        v["bgp"]["drain"]["safe_since"] = json!(1_000_000);
        assert!(render_text(&v).contains("SAFE TO STOP since"));
    }

    #[test]
    fn text_names_endpoints_the_health_gate_holds() {
        let mut v = sample();
        assert!(
            !render_text(&v).contains("health gate"),
            "off: not mentioned"
        );
        v["bgp"]["health"] = json!({
            "enabled": true, "docker": "unix:///var/run/docker.sock", "api_connected": true,
            "gated": 1, "transitions": 3, "fail_open": 0,
            "held": {"ep2": "unhealthy"}
        });
        let t = render_text(&v);
        assert!(
            t.contains("health gate: docker unix:///var/run/docker.sock connected  held 1"),
            "{t}"
        );
        assert!(t.contains("endpoint ep2 held back: unhealthy"), "{t}");
    }

    #[test]
    fn text_survives_a_partial_or_foreign_document() {
        assert!(render_text(&json!({})).contains("bgp: disabled"));
        let t = render_text(&json!({"bgp": {"enabled": true, "peers": "?"}, "networks": 3}));
        assert!(t.contains("peers: 0/0"));
        assert!(t.contains("networks: 0"));
    }

    #[test]
    fn text_shows_the_ipam_blocks_strays_and_etcd() {
        let t = render_text(&json!({
            "time": 1000,
            "ipam": {"host": "192.0.2.1", "store": {"up": false, "since": 940, "last_error": "etcd did not answer within 3s"},
                     "blocks": [{"pool": "10.20.0.0/16", "block": "10.20.0.0/26", "used": 5}],
                     "strays": ["10.20.9.9"], "claims": 1, "lost_races": 0, "etcd_failures": 2}
        }));
        for want in [
            "ipam: host 192.0.2.1  etcd does NOT answer for 1m00s  blocks 1  addresses 5  strays 1",
            "last error: etcd did not answer within 3s",
            "block 10.20.0.0/26",
            "stray 10.20.9.9",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
        assert!(!render_text(&json!({})).contains("ipam:"), "off: not shown");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_798_512_345), "2026-12-29 02:45:45 UTC");
    }

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(human_duration(9), "9s");
        assert_eq!(human_duration(252), "4m12s");
        assert_eq!(human_duration(7620), "2h07m");
        assert_eq!(human_duration(3 * 86_400 + 5 * 3600), "3d5h");
    }

    #[test]
    fn routes_are_counted_and_the_list_bounded() {
        let mut st = Status {
            version: "t",
            time: 0,
            networks: vec![NetworkStatus {
                id: "n".into(),
                parent: "eth0".into(),
                dataplane: "macvlan bridge".into(),
                subnet: "10.1.0.0/16".into(),
                gateway: None,
                announce: "endpoint".into(),
                shim: None,
                unavailable: None,
                endpoints: Vec::new(),
            }],
            bgp: BgpStatus::default(),
            routes: Vec::new(),
            routes_installed: 0,
            routes_error: None,
            ipam: None,
        };
        let routes: Vec<Route> = (0..300u32)
            .map(|i| Route {
                dst: format!("10.1.{}.{}/32", i / 250, i % 250).parse().unwrap(),
                via: Some("10.0.0.2".parse().unwrap()),
                oif: None,
                protocol: 73,
            })
            .chain(std::iter::once(Route {
                dst: "10.2.0.1/32".parse().unwrap(),
                via: None,
                oif: None,
                protocol: 73,
            }))
            .collect();
        st.add_routes(&routes);
        assert_eq!(st.routes_installed, 301);
        assert_eq!(st.routes.len(), ROUTES_LISTED);
        assert_eq!(st.routes[0].prefix, "10.1.0.0/32");
    }
}
