//! The point-to-point uplinks of dual-homed hosts (`[[hosts]] uplinks`,
//! issue 23): one veth pair per uplink, the host's end (`up1`, `up2`, ...)
//! in the host's namespace and the router's end in the router's, each
//! addressed on the link's own subnet (as `check/uplinks` assigned), and
//! the host's sysctls for two uplinks (`docs/dual-uplink.md`): multipath
//! hashing on ports, routes over a dead link ignored, IPv6 addresses kept
//! over an admin down, strict reverse-path filtering.
//!
//! In: the scenario, the wired hosts and routers (no daemon yet). Out: the
//! links made and up; each router's [`RouterRt::ifaces`] gets its ends, so
//! `router-down` takes them down too (carrier loss at the host). Also a
//! router's end blackholed and restored (nftables in its namespace), for
//! the `blackhole` steps.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::hosts::HostRt;
use super::routers::RouterRt;
use crate::netns::Netns;
use crate::scenario::Uplink;
use crate::util::run_cmd;

/// The sysctls of a host with uplinks, namespace-wide. rp_filter is loose
/// (2), as docs/dual-uplink.md recommends: a ToR whose session to the host
/// broke while the link stayed up keeps the host's routes as its
/// graceful-restart helper and goes on sending to the host, while the host
/// has already dropped that ToR's hop (the ToR is no restarting speaker);
/// strict rp_filter then dropped the other host's traffic through that ToR
/// until the session came back (6.4 s in one `dual-uplink` run).
const HOST_SYSCTLS: [(&str, &str); 6] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.fib_multipath_hash_policy", "1"),
    ("net.ipv6.fib_multipath_hash_policy", "1"),
    ("net.ipv4.conf.all.rp_filter", "2"),
    ("net.ipv4.conf.default.rp_filter", "2"),
    ("net.ipv6.conf.all.keep_addr_on_down", "1"),
];

/// Every host's uplinks wired to their routers.
pub fn wire_all(hosts: &[HostRt], routers: &mut [RouterRt]) -> Result<()> {
    for h in hosts.iter().filter(|h| !h.def.uplink_links.is_empty()) {
        for (k, v) in HOST_SYSCTLS {
            h.ns.sysctl(k, v)?;
        }
        for u in &h.def.uplink_links {
            let r = routers
                .iter_mut()
                .find(|r| r.def.name == u.router)
                .ok_or_else(|| anyhow!("host {}: no router {}", h.def.name, u.router))?;
            wire_uplink(h, r, u).with_context(|| {
                format!("uplink {} of host {} to {}", u.iface, h.def.name, u.router)
            })?;
        }
    }
    Ok(())
}

/// One uplink: the pair, its addresses, its sysctls, both ends up.
fn wire_uplink(h: &HostRt, r: &mut RouterRt, u: &Uplink) -> Result<()> {
    let riface = u.router_iface(&h.def.name);
    run_cmd(
        "ip",
        &[
            "link", "add", "name", &u.iface, "netns", &h.ns.name, "type", "veth", "peer", "name",
            &riface, "netns", &r.ns.name,
        ],
        Duration::from_secs(20),
    )?;
    for fam in ["ipv4", "ipv6"] {
        h.ns.sysctl(
            &format!("net.{fam}.conf.{}.ignore_routes_with_linkdown", u.iface),
            "1",
        )?;
    }
    h.ns.sysctl(&format!("net.ipv4.conf.{}.rp_filter", u.iface), "2")?;
    h.ns.sysctl(&format!("net.ipv6.conf.{}.keep_addr_on_down", u.iface), "1")?;
    let mut host = vec![format!("addr add {} dev {}", u.host_addr, u.iface)];
    let mut router = vec![format!("addr add {} dev {riface}", u.router_addr)];
    // `nodad`: usable at once, as elsewhere in the underlay.
    if let (Some(a), Some(b)) = (u.host_addr6, u.router_addr6) {
        host.push(format!("addr add {a} dev {} nodad", u.iface));
        router.push(format!("addr add {b} dev {riface} nodad"));
    }
    host.push(format!("link set {} up", u.iface));
    router.push(format!("link set {riface} up"));
    h.ns.ip_batch(&host)?;
    r.ns.ip_batch(&router)?;
    r.ifaces.insert(u.segment.clone(), riface);
    Ok(())
}

/// The nftables table that blackholes `port` (a name nft takes).
fn blackhole_table(port: &str) -> String {
    format!("harness_bh_{}", port.replace('-', "_"))
}

/// Drops every packet in, out and through `port` in `ns` (both families);
/// the link stays up.
pub fn blackhole(ns: &Netns, port: &str) -> Result<()> {
    let t = blackhole_table(port);
    let rules = format!(
        "table inet {t} {{\n  chain i {{ type filter hook input priority -10; iifname \"{port}\" drop; }}\n  chain o {{ type filter hook output priority -10; oifname \"{port}\" drop; }}\n  chain f {{ type filter hook forward priority -10; iifname \"{port}\" drop; oifname \"{port}\" drop; }}\n}}\n"
    );
    nft(ns, &rules).with_context(|| format!("blackhole {port} in {}", ns.name))
}

/// Removes [`blackhole`]'s table.
pub fn blackhole_end(ns: &Netns, port: &str) -> Result<()> {
    nft(
        ns,
        &format!("delete table inet {}\n", blackhole_table(port)),
    )
    .with_context(|| format!("end the blackhole of {port} in {}", ns.name))
}

/// `nft -f` of `rules` inside `ns`.
fn nft(ns: &Netns, rules: &str) -> Result<()> {
    let path = std::env::temp_dir().join(format!("{}-{}.nft", ns.name, std::process::id()));
    std::fs::write(&path, rules)?;
    let nft = crate::util::require("nft")?.display().to_string();
    let p = path.display().to_string();
    let out = ns.exec(&nft, &["-f", &p], Duration::from_secs(20));
    let _ = std::fs::remove_file(&path);
    let out = out?;
    if !out.status.success() {
        anyhow::bail!("nft -f: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
