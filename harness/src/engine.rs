//! Container engines: who creates networks and containers on a host.
//!
//! [`Engine`] is what a scenario needs (create/delete a network, start/stop a
//! container); [`Emulator`] implements it the way dockerd 20.10 does, request
//! for request (payloads as in `driver/tests/fixtures/`): CreateEndpoint with
//! an address from a Docker-like IPAM, Join, then it creates the sandbox
//! namespace, moves the interface in, renames it `eth0`, sets the address and
//! the gateway or static routes, and calls ProgramExternalConnectivity and
//! EndpointOperInfo; on stop Revoke, Leave, moves the interface back and
//! DeleteEndpoint. A real dockerd engine slots in beside it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::kernel::{Kernel, Route};
use serde_json::{json, Value};

use crate::netns::Netns;
use crate::scenario::NetworkDef;
use crate::util::docker_id;
use crate::world::{World, UNDERLAY_IF};

/// A running container as the probes see it.
#[derive(Debug, Clone)]
pub struct ContainerRt {
    pub name: String,
    pub host: usize,
    pub network: String,
    pub address: Ipv4Addr,
    /// The container's network namespace (a path to open).
    pub netns: PathBuf,
    /// Engine-private handle (the emulator's endpoint ID, dockerd's container ID).
    pub handle: String,
    /// The interface's host-side name (the driver's `SrcName`).
    pub src_name: String,
}

/// What a scenario can do to an engine's own daemon (dockerd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Kill,
    Stop,
    Start,
    Restart,
}

pub trait Engine {
    fn name(&self) -> &'static str;
    /// Starts whatever the engine needs on every host (after the drivers).
    fn setup(&mut self, _w: &World) -> Result<()> {
        Ok(())
    }
    /// Re-reads a container's namespace (its process may have restarted).
    fn refresh(&mut self, _w: &World, _c: &mut ContainerRt) -> Result<()> {
        Ok(())
    }
    /// Kills, stops, starts or restarts the engine's daemon on a host.
    fn control(&mut self, _w: &World, _host: usize, _action: Control) -> Result<()> {
        bail!("the {} engine has no daemon to control", self.name())
    }
    /// The engine's own view, for a failed scenario.
    fn diagnostics(&self, _w: &World) -> String {
        String::new()
    }
    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnet: Ipv4Net,
    ) -> Result<()>;
    fn delete_network(&mut self, w: &World, host: usize, net: &NetworkDef) -> Result<()>;
    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt>;
    fn stop(&mut self, w: &World, c: &ContainerRt) -> Result<()>;
    /// The container's sandbox dies and nobody tells the driver now.
    fn kill(&mut self, _w: &World, _c: &ContainerRt) -> Result<()> {
        bail!("the {} engine cannot kill a container", self.name())
    }
    /// After a kill: what the engine does later for the dead container
    /// (dockerd's forced Leave and DeleteEndpoint); driver errors are only
    /// reported, as dockerd only logs them.
    fn reap(&mut self, _w: &World, _c: &ContainerRt) -> Result<()> {
        Ok(())
    }
}

/// Docker's IPAM for one network on one host: the gateway takes the first
/// address, containers the next free ones.
#[derive(Debug, Clone)]
pub struct Ipam {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    used: std::collections::BTreeSet<Ipv4Addr>,
    next: u32,
}

impl Ipam {
    pub fn new(subnet: Ipv4Net) -> Ipam {
        let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
        Ipam {
            subnet,
            gateway,
            used: [gateway].into(),
            next: u32::from(subnet.network()) + 2,
        }
    }

    /// The next free address, scanning forward and wrapping like Docker's serial allocator.
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let first = u32::from(self.subnet.network()) + 1;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let span = last.saturating_sub(first) + 1;
        for _ in 0..span {
            if self.next > last {
                self.next = first;
            }
            let a = Ipv4Addr::from(self.next);
            self.next += 1;
            if self.used.insert(a) {
                return Ok(a);
            }
        }
        bail!("subnet {} has no free address", self.subnet)
    }

    pub fn release(&mut self, a: Ipv4Addr) {
        if a != self.gateway {
            self.used.remove(&a);
        }
    }
}

struct NetRt {
    id: String,
    ipam: Ipam,
}

#[derive(Default)]
pub struct Emulator {
    networks: BTreeMap<(usize, String), NetRt>,
    counter: u64,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Emulator {
    fn call(&self, w: &World, host: usize, method: &str, body: Value) -> Result<Value> {
        let sock = w.hosts[host].socket();
        let mut bytes = serde_json::to_vec(&body)?;
        bytes.push(b'\n');
        let reply =
            w.rt.block_on(ipvlan_bgp::api::client::post(
                &sock,
                &format!("/NetworkDriver.{method}"),
                bytes,
                CALL_TIMEOUT,
            ))
            .with_context(|| format!("{method} on {}", w.hosts[host].def.name))?;
        if let Some(e) = reply.err() {
            bail!("{method} on {}: {e}", w.hosts[host].def.name);
        }
        if reply.status != 200 {
            bail!(
                "{method} on {}: HTTP {}",
                w.hosts[host].def.name,
                reply.status
            );
        }
        reply.json()
    }

    fn net(&mut self, host: usize, name: &str) -> Result<&mut NetRt> {
        self.networks
            .get_mut(&(host, name.to_string()))
            .ok_or_else(|| anyhow!("network {name} does not exist on host #{host}"))
    }
}

fn endpoint_options() -> Value {
    json!({"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": []})
}

impl Engine for Emulator {
    fn name(&self) -> &'static str {
        "emulator"
    }

    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnet: Ipv4Net,
    ) -> Result<()> {
        let id = docker_id(&[&w.id, &w.hosts[host].def.name, "network", &net.name]);
        let ipam = Ipam::new(subnet);
        let mut generic: BTreeMap<String, String> = net.options.clone();
        generic
            .entry("parent".into())
            .or_insert_with(|| UNDERLAY_IF.into());
        self.call(
            w,
            host,
            "CreateNetwork",
            json!({
                "NetworkID": id,
                "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": generic},
                "IPv4Data": [{"AddressSpace": "LocalDefault", "Gateway": format!("{}/{}", ipam.gateway, subnet.prefix_len()), "Pool": subnet.to_string()}],
                "IPv6Data": []
            }),
        )?;
        self.networks
            .insert((host, net.name.clone()), NetRt { id, ipam });
        Ok(())
    }

    fn delete_network(&mut self, w: &World, host: usize, net: &NetworkDef) -> Result<()> {
        let id = self.net(host, &net.name)?.id.clone();
        self.call(w, host, "DeleteNetwork", json!({"NetworkID": id}))?;
        self.networks.remove(&(host, net.name.clone()));
        Ok(())
    }

    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt> {
        self.counter += 1;
        let counter = self.counter.to_string();
        let (net_id, address, prefix_len) = {
            let n = self.net(host, &net.name)?;
            (n.id.clone(), n.ipam.allocate()?, n.ipam.subnet.prefix_len())
        };
        let ep = docker_id(&[&w.id, name, "endpoint", &counter]);
        let ns_name = format!("{}-c-{name}", w.id);
        let sandbox = format!("/run/netns/{ns_name}");
        let result = (|| -> Result<ContainerRt> {
            let created = self.call(
                w,
                host,
                "CreateEndpoint",
                json!({"NetworkID": net_id, "EndpointID": ep,
                       "Interface": {"Address": format!("{address}/{prefix_len}"), "AddressIPv6": "", "MacAddress": ""},
                       "Options": endpoint_options()}),
            )?;
            let mac = created
                .pointer("/Interface/MacAddress")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_string);
            let join = match self.call(
                w,
                host,
                "Join",
                json!({"NetworkID": net_id, "EndpointID": ep, "SandboxKey": sandbox, "Options": endpoint_options()}),
            ) {
                Ok(j) => j,
                Err(e) => {
                    // What dockerd does after a failed Join.
                    let _ = self.call(w, host, "DeleteEndpoint", json!({"NetworkID": net_id, "EndpointID": ep}));
                    return Err(e);
                }
            };
            let ns = Netns::create(&ns_name)?;
            let ns_name2 = ns_name.clone();
            w.cleanup
                .push(format!("delete container namespace {ns_name}"), move || {
                    Netns::delete(&ns_name2)
                });
            let src_name = plumb(w, host, &ns, &join, address, prefix_len, mac.as_deref())
                .with_context(|| format!("set up the sandbox of {name} as libnetwork does"))?;
            self.call(
                w,
                host,
                "ProgramExternalConnectivity",
                json!({"NetworkID": net_id, "EndpointID": ep, "Options": endpoint_options()}),
            )?;
            for _ in 0..2 {
                self.call(
                    w,
                    host,
                    "EndpointOperInfo",
                    json!({"NetworkID": net_id, "EndpointID": ep}),
                )?;
            }
            Ok(ContainerRt {
                name: name.to_string(),
                host,
                network: net.name.clone(),
                address,
                netns: ns.path(),
                handle: ep.clone(),
                src_name,
            })
        })();
        if result.is_err() {
            if let Ok(n) = self.net(host, &net.name) {
                n.ipam.release(address);
            }
            let _ = Netns::delete(&ns_name);
        }
        result
    }

    fn stop(&mut self, w: &World, c: &ContainerRt) -> Result<()> {
        let net_id = self.net(c.host, &c.network)?.id.clone();
        let ep = c.handle.clone();
        let ids = json!({"NetworkID": net_id, "EndpointID": ep});
        self.call(w, c.host, "RevokeExternalConnectivity", ids.clone())?;
        self.call(w, c.host, "Leave", ids.clone())?;
        unplumb(w, c).with_context(|| format!("move {}'s interface back", c.name))?;
        self.call(w, c.host, "DeleteEndpoint", ids)?;
        let ns_name = c
            .netns
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Netns::delete(&ns_name)?;
        self.net(c.host, &c.network)?.ipam.release(c.address);
        Ok(())
    }

    /// The sandbox namespace goes, and with it the container's link (the
    /// kernel deletes virtual links of a dying namespace); no request is sent.
    fn kill(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        let ns_name = c
            .netns
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{} has no namespace name", c.name))?;
        Netns::delete(&ns_name)
    }

    /// dockerd's sandbox cleanup for a dead container: Leave and
    /// DeleteEndpoint, forced (errors are logged, not fatal).
    fn reap(&mut self, w: &World, c: &ContainerRt) -> Result<()> {
        let net_id = self.net(c.host, &c.network)?.id.clone();
        let ids = json!({"NetworkID": net_id, "EndpointID": c.handle});
        for method in ["Leave", "DeleteEndpoint"] {
            if let Err(e) = self.call(w, c.host, method, ids.clone()) {
                eprintln!(
                    "[emulator] {method} for the dead {}: {e:#} (ignored, as dockerd does)",
                    c.name
                );
            }
        }
        self.net(c.host, &c.network)?.ipam.release(c.address);
        Ok(())
    }
}

/// libnetwork's sandbox work after Join: move, rename, address, up, routes.
fn plumb(
    w: &World,
    host: usize,
    ns: &Netns,
    join: &Value,
    address: Ipv4Addr,
    prefix_len: u8,
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
        bail!("the driver returned MAC address {m} for an endpoint that did not ask for one");
    }
    ck.add_address(moved.index, IpNet::V4(Ipv4Net::new(address, prefix_len)?))?;
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
    if let Some(gw) = join
        .get("Gateway")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
    {
        routes.push(Route {
            dst: "0.0.0.0/0".parse()?,
            via: Some(gw.parse()?),
            oif: Some(moved.index),
            protocol: 3,
        });
    }
    for (r, res) in routes.iter().zip(ck.replace_routes(&routes)) {
        res.with_context(|| format!("route {} in the sandbox", r.dst))?;
    }
    Ok(src.to_string())
}

/// What dockerd does before DeleteEndpoint: the interface goes back to the
/// host namespace, down, under its original name.
fn unplumb(w: &World, c: &ContainerRt) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_allocates_like_docker() {
        let mut i = Ipam::new("10.1.1.0/29".parse().unwrap());
        assert_eq!(i.gateway, Ipv4Addr::new(10, 1, 1, 1));
        let got: Vec<_> = (0..5).map(|_| i.allocate().unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 1, 1, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 1, 1, 6));
        assert!(i.allocate().is_err());
        i.release(Ipv4Addr::new(10, 1, 1, 3));
        assert_eq!(i.allocate().unwrap(), Ipv4Addr::new(10, 1, 1, 3));
    }
}
