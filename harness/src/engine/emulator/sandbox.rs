//! libnetwork's sandbox work, as the emulator does it: after Join the
//! driver's interface moves into the container's namespace, is renamed
//! `eth0`, gets its MAC, addresses (IPv6 with `IFA_F_NODAD` after IPv6 is
//! enabled on it) and routes (gateways, static routes); before
//! DeleteEndpoint it goes back to the host, down, under its first name.
//!
//! In: the Join answer and the addresses the IPAM chose. Out: the links
//! and routes in the sandbox namespace, the interface's host-side name.
//! Owns nothing; every change goes through the driver's netlink facade.

use anyhow::{anyhow, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::{MultiRoute, Route};
use serde_json::Value;

use crate::engine::container::ContainerRt;
use crate::netns::Netns;
use crate::topology::World;

/// libnetwork's sandbox work after Join: move, rename, address, up, routes.
pub(super) fn plumb(
    w: &World,
    host: usize,
    ns: &Netns,
    join: &Value,
    address: Option<Ipv4Net>,
    address6: Option<Ipv6Net>,
    mac: Option<&str>,
) -> Result<String> {
    let src = join
        .pointer("/InterfaceName/SrcName")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("Join answered no InterfaceName.SrcName: {join}"))?;
    let prefix = join
        .pointer("/InterfaceName/DstPrefix")
        .and_then(Value::as_str)
        .unwrap_or("eth");
    let mut hk = Kernel::open_in_netns(&w.hosts[host].ns.path())?;
    let link = hk
        .link(src)?
        .ok_or_else(|| anyhow!("Join returned {src}, but no such link exists on the host"))?;
    let fd = ns.open()?;
    hk.set_name_and_netns(link.index, None, Some(std::os::fd::AsRawFd::as_raw_fd(&fd)))?;
    let mut ck = Kernel::open_in_netns(&ns.path())?;
    let moved = ck
        .link(src)?
        .ok_or_else(|| anyhow!("{src} did not arrive in the sandbox"))?;
    let dst = format!("{prefix}0");
    ck.set_name_and_netns(moved.index, Some(&dst), None)?;
    if let Some(m) = mac {
        // dockerd sets a MAC the driver chose (the request carried none).
        ns.ip(&["link", "set", "dev", &dst, "address", m])
            .with_context(|| format!("set the MAC address {m} the driver chose"))?;
    }
    if let Some(a) = address {
        ck.add_address(moved.index, IpNet::V4(a))?;
    }
    if let Some(a) = address6 {
        // libnetwork's setInterfaceIPv6: IPv6 enabled on the interface,
        // then the address with IFA_F_NODAD (usable at once, no DAD).
        ns.sysctl(&format!("net.ipv6.conf.{dst}.disable_ipv6"), "0")?;
        ns.ip(&["-6", "addr", "add", &a.to_string(), "dev", &dst, "nodad"])
            .with_context(|| format!("add {a} (nodad) to {dst}"))?;
    }
    ck.set_up(moved.index, true)?;
    let mut routes = Vec::new();
    for r in join
        .get("StaticRoutes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let dst: IpNet = r
            .get("Destination")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("static route without Destination: {r}"))?
            .parse()?;
        let via = match r.get("RouteType").and_then(Value::as_u64) {
            Some(1) => None,
            _ => Some(
                r.get("NextHop")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("next-hop route without NextHop: {r}"))?
                    .parse()?,
            ),
        };
        routes.push(Route {
            dst,
            via,
            oif: Some(moved.index),
            protocol: 3,
        });
    }
    for (key, default) in [("Gateway", "0.0.0.0/0"), ("GatewayIPv6", "::/0")] {
        if let Some(gw) = join
            .get(key)
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
        {
            routes.push(Route {
                dst: default.parse()?,
                via: Some(gw.parse().with_context(|| format!("Join's {key} {gw:?}"))?),
                oif: Some(moved.index),
                protocol: 3,
            });
        }
    }
    let routes: Vec<MultiRoute> = routes.into_iter().map(MultiRoute::from).collect();
    for (r, res) in routes.iter().zip(ck.replace_routes(&routes)) {
        res.with_context(|| format!("route {} in the sandbox", r.dst))?;
    }
    Ok(src.to_string())
}

/// What dockerd does before DeleteEndpoint: the interface goes back to the
/// host namespace, down, under its original name.
pub(super) fn unplumb(w: &World, c: &ContainerRt) -> Result<()> {
    let mut ck = Kernel::open_in_netns(&c.netns)?;
    let Some(link) = ck.link("eth0")? else {
        return Ok(());
    };
    ck.set_up(link.index, false)?;
    ck.set_name_and_netns(link.index, Some(&c.src_name), None)?;
    let host_fd = w.hosts[c.host].ns.open()?;
    ck.set_name_and_netns(
        link.index,
        None,
        Some(std::os::fd::AsRawFd::as_raw_fd(&host_fd)),
    )?;
    Ok(())
}
