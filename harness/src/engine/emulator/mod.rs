//! The emulator: a [`ContainerEngine`] that talks to the driver the way
//! dockerd 20.10 does, request
//! for request (payloads as in `driver/tests/fixtures/`, checked by a golden
//! test): Activate and GetCapabilities once per host at the first use of the
//! plugin (not again after the driver restarts); CreateEndpoint with an
//! address from a Docker-like IPAM, the sandbox namespace (it exists when
//! Join names it, as dockerd's does), Join, then it moves the interface
//! in, renames it `eth0`, sets the address, brings it up, and adds the
//! gateway or static routes; ProgramExternalConnectivity only for an
//! endpoint whose Join gave a gateway (libnetwork's gateway endpoint), then
//! EndpointOperInfo twice; on stop Revoke (only if programmed), Leave, moves
//! the interface back and DeleteEndpoint. Like dockerd it retries a plugin
//! socket that is briefly gone, ignores failures of Leave, DeleteEndpoint,
//! Revoke and EndpointOperInfo (printing them), refuses the MAC and address
//! answers dockerd refuses, and fails a Join answer that would make dockerd
//! attach the container to its `docker_gwbridge`. A real dockerd engine slots
//! in beside it.
//!
//! IPv6 as dockerd 20.10 does it: `--ipv6` networks get `IPv6Data` (and
//! `com.docker.network.enable_ipv6`), endpoints an `AddressIPv6` from the
//! same IPAM (the subnet's first address is the gateway); in the sandbox
//! the address is added with `IFA_F_NODAD` after IPv6 is enabled on the
//! interface (libnetwork's `osl.setInterfaceIPv6`), then `GatewayIPv6` and
//! IPv6 static routes. An IPv6-only network (Docker 28's `--ipv4=false`)
//! sends an empty `IPv4Data` with `com.docker.network.enable_ipv4: false`
//! and an endpoint with an empty `Address`.
//!
//! ```text
//! mod.rs (Emulator: networks, starts, stops) ─► client.rs (POSTs, retries) ─► wire.rs (bodies)
//!        ├─► sandbox.rs (move, rename, address, routes)   ├─► ipam.rs (addresses)
//!        └─► per_host.rs (several hosts at once)
//! ```
//! A network with `ipam = "ipvlan-bgp"` takes its addresses from the
//! driver's own IPAM, as dockerd does with `--ipam-driver ipvlan-bgp`
//! (`driver/tests/fixtures/dockerd-ipam-requests.jsonl`): IpamDriver's
//! GetCapabilities and GetDefaultAddressSpaces once per host, RequestPool
//! and the gateway's RequestAddress before CreateNetwork (released again if
//! it fails, and after DeleteNetwork); a RequestAddress per family before
//! CreateEndpoint (`--ip`: the address given), each released after
//! DeleteEndpoint or a failed start. Those addresses are host routes
//! (/32, /128), set in the sandbox as the IPAM answered them.
//!
//! In: the [`World`] and the scenario's networks and containers. Out:
//! requests on each host's plugin socket, sandboxes, [`ContainerRt`]s. Owns
//! the endpoint IDs, the IPAM state (Docker's, emulated; the driver's
//! PoolIDs and leases), which hosts were activated and which endpoints were
//! programmed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

use crate::engine::container::{ContainerEngine, ContainerRt, Subnets};
use crate::netns::Netns;
use crate::scenario::Engine;
use crate::scenario::{IpamKind, NetworkDef};
use crate::topology::{World, UNDERLAY_IF};
use crate::util::docker_id;

mod client;
mod ipam;
mod per_host;
mod sandbox;
pub mod wire;

use client::{call_lenient_on, call_on, ipam_lenient_on, ipam_on, post, IGNORED_FAILURES};
pub use ipam::{Ipam, Ipam6};
use per_host::per_host;
use sandbox::{plumb, unplumb};

/// Scenarios create no `--internal` networks (dockerd sends them no
/// ProgramExternalConnectivity and never attaches a gateway bridge).
const INTERNAL: bool = false;

struct NetRt {
    id: String,
    ipam: Option<Ipam>,
    ipam6: Option<Ipam6>,
    /// The driver's own IPAM (`ipam = "ipvlan-bgp"`): its PoolIDs.
    remote: Option<Remote>,
}

/// A network's pools in the driver's IPAM.
#[derive(Debug, Clone, Default)]
struct Remote {
    v4: Option<String>,
    v6: Option<String>,
    /// (PoolID, the gateway's address) per family, as dockerd releases them.
    gateways: Vec<(String, String)>,
}

/// Addresses a container holds in the driver's IPAM: (PoolID, address).
type Leases = Vec<(String, String)>;

impl NetRt {
    fn release(&mut self, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) {
        if let (Some(i), Some(a)) = (self.ipam.as_mut(), v4) {
            i.release(a);
        }
        if let (Some(i), Some(a)) = (self.ipam6.as_mut(), v6) {
            i.release(a);
        }
    }
}

#[derive(Default)]
pub struct Emulator {
    networks: BTreeMap<(usize, String), NetRt>,
    counter: u64,
    /// Hosts whose plugin got Activate and GetCapabilities (once per dockerd lifetime).
    activated: std::collections::BTreeSet<usize>,
    /// Endpoints that got ProgramExternalConnectivity (they get Revoke on stop).
    programmed: std::collections::BTreeSet<String>,
    /// Hosts whose IPAM side was activated, with the address space it answered.
    ipam_spaces: BTreeMap<usize, String>,
    /// Addresses of the driver's IPAM each endpoint holds.
    leases: BTreeMap<String, Leases>,
}

/// A container start with the engine's shared state already consulted
/// (plugin activated, endpoint ID and address chosen, or the driver's
/// PoolIDs to ask for one).
#[derive(Clone)]
struct StartJob {
    host: usize,
    network: String,
    net_id: String,
    /// The IPv4 address with its prefix length (none on an IPv6-only network).
    address: Option<Ipv4Net>,
    address6: Option<Ipv6Net>,
    ep: String,
    name: String,
    ns_name: String,
    driver_opts: BTreeMap<String, String>,
    /// The driver's IPAM hands out the addresses (`address`, `address6` are None).
    remote: Option<Remote>,
    /// `--ip`.
    fixed: Option<Ipv4Addr>,
}

/// The addresses of a container from the driver's IPAM, one RequestAddress
/// per family, as the IPAM answered them (host routes); each lease noted.
fn lease(
    rt: &tokio::runtime::Runtime,
    w: &World,
    j: &StartJob,
    r: &Remote,
    leases: &mut Leases,
) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>)> {
    let mut ask = |pool: &str, want: &str| -> Result<String> {
        let a = ipam_on(
            rt,
            w,
            j.host,
            "RequestAddress",
            wire::request_address(pool, want, false),
        )?;
        let text = a
            .get("Address")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("RequestAddress answered no Address: {a}"))?
            .to_string();
        leases.push((
            pool.to_string(),
            text.split('/').next().unwrap_or_default().to_string(),
        ));
        Ok(text)
    };
    let v4 = match &r.v4 {
        Some(p) => {
            let want = j.fixed.map(|a| a.to_string()).unwrap_or_default();
            Some(ask(p, &want)?.parse::<Ipv4Net>()?)
        }
        None => None,
    };
    let v6 = match &r.v6 {
        Some(p) => Some(ask(p, "")?.parse::<Ipv6Net>()?),
        None => None,
    };
    Ok((v4, v6))
}

/// Gives leases back (after DeleteEndpoint, or a failed start): dockerd
/// only logs a failure.
fn release_leases(rt: &tokio::runtime::Runtime, w: &World, host: usize, leases: &Leases) {
    for (pool, addr) in leases {
        ipam_lenient_on(
            rt,
            w,
            host,
            "ReleaseAddress",
            wire::release_address(pool, addr),
        );
    }
}

/// A network's gateways and pools back to the driver's IPAM, as dockerd
/// gives them back after DeleteNetwork or a refused CreateNetwork.
fn release_remote(rt: &tokio::runtime::Runtime, w: &World, host: usize, r: &Remote) {
    for (pool, gw) in &r.gateways {
        ipam_lenient_on(
            rt,
            w,
            host,
            "ReleaseAddress",
            wire::release_address(pool, gw),
        );
        ipam_lenient_on(rt, w, host, "ReleasePool", wire::release_pool(pool));
    }
}

/// CreateEndpoint, Join, the sandbox, then Program and OperInfo, as
/// dockerd does them; on failure the sandbox namespace is gone again.
/// Answers the container and whether it was programmed.
fn run_start(
    rt: &tokio::runtime::Runtime,
    w: &World,
    j: &StartJob,
) -> Result<(ContainerRt, bool, Leases)> {
    let mut leases = Leases::new();
    let j = &match &j.remote {
        None => j.clone(),
        Some(r) => match lease(rt, w, j, r, &mut leases) {
            Ok((address, address6)) => StartJob {
                address,
                address6,
                ..j.clone()
            },
            Err(e) => {
                release_leases(rt, w, j.host, &leases);
                return Err(e);
            }
        },
    };
    let (host, net_id, ep) = (j.host, &j.net_id, &j.ep);
    let sandbox = format!("/run/netns/{}", j.ns_name);
    let result = (|| -> Result<(ContainerRt, bool)> {
        let extras = wire::EndpointExtras {
            driver_opts: j.driver_opts.clone(),
            ..wire::EndpointExtras::default()
        };
        let request = wire::create_endpoint_dual(
            net_id,
            ep,
            &j.address.map(|a| a.to_string()).unwrap_or_default(),
            &j.address6.map(|a| a.to_string()).unwrap_or_default(),
            &extras,
        );
        let created = call_on(rt, w, host, "CreateEndpoint", request.clone())?;
        wire::check_create_answer(&request, &created).map_err(anyhow::Error::msg)?;
        let mac = created
            .pointer("/Interface/MacAddress")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        // As dockerd: the sandbox (its namespace) exists before Join names
        // it; the link is moved in and configured after the answer.
        let ns = Netns::create_fast(&j.ns_name)?;
        let ns_name2 = j.ns_name.clone();
        w.cleanup.push(
            format!("delete container namespace {}", j.ns_name),
            move || Netns::delete_fast(&ns_name2),
        );
        let join = match call_on(
            rt,
            w,
            host,
            "Join",
            wire::join(net_id, ep, &sandbox, &extras),
        )
        .and_then(|j| {
            wire::check_join_answer(&j, INTERNAL).map_err(anyhow::Error::msg)?;
            Ok(j)
        }) {
            Ok(j) => j,
            Err(e) => {
                // What dockerd does after a failed Join: DeleteEndpoint, no Leave.
                call_lenient_on(rt, w, host, "DeleteEndpoint", wire::ids(net_id, ep));
                return Err(e);
            }
        };
        let src_name = plumb(w, host, &ns, &join, j.address, j.address6, mac.as_deref())
            .with_context(|| format!("set up the sandbox of {} as libnetwork does", j.name))?;
        let mut programmed = false;
        for (method, body) in wire::after_join(net_id, ep, &extras, &join, INTERNAL) {
            if IGNORED_FAILURES.contains(&method) {
                call_lenient_on(rt, w, host, method, body);
            } else {
                call_on(rt, w, host, method, body)?;
                if method == "ProgramExternalConnectivity" {
                    programmed = true;
                }
            }
        }
        Ok((
            ContainerRt {
                name: j.name.clone(),
                host,
                network: j.network.clone(),
                address: j.address.map(|a| a.addr()),
                address6: j.address6.map(|a| a.addr()),
                netns: ns.path(),
                handle: ep.clone(),
                src_name,
            },
            programmed,
        ))
    })();
    match result {
        Ok((c, programmed)) => Ok((c, programmed, leases)),
        Err(e) => {
            let _ = Netns::delete_fast(&j.ns_name);
            release_leases(rt, w, host, &leases);
            Err(e)
        }
    }
}

/// Revoke (if programmed) and Leave, the interface back to the host,
/// DeleteEndpoint, the sandbox gone: dockerd's stop. `hold` runs between
/// Leave and that teardown, which runs even when `hold` fails (its error
/// is returned after).
fn run_stop(
    rt: &tokio::runtime::Runtime,
    w: &World,
    c: &ContainerRt,
    net_id: &str,
    programmed: bool,
    leases: &Leases,
    hold: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let [before, after] = wire::stop(net_id, &c.handle, programmed);
    for (method, body) in before {
        call_lenient_on(rt, w, c.host, method, body);
    }
    let held = hold();
    unplumb(w, c).with_context(|| format!("move {}'s interface back", c.name))?;
    for (method, body) in after {
        call_lenient_on(rt, w, c.host, method, body);
    }
    release_leases(rt, w, c.host, leases);
    let ns_name = c
        .netns
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Netns::delete_fast(&ns_name)?;
    held
}

impl Emulator {
    /// `docker stop` with `hold` run after Leave and before the teardown
    /// (the interface moved back, DeleteEndpoint, the sandbox deleted):
    /// lets a bench keep that teardown's kernel work, which two real hosts
    /// would not share, off another host's measured path. The teardown
    /// runs even when `hold` fails.
    pub fn stop_held(
        &mut self,
        w: &World,
        c: &ContainerRt,
        hold: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let net_id = self.net(c.host, &c.network)?.id.clone();
        let programmed = self.programmed.remove(&c.handle);
        let leases = self.leases.remove(&c.handle).unwrap_or_default();
        run_stop(&w.rt, w, c, &net_id, programmed, &leases, hold)?;
        self.net(c.host, &c.network)?.release(c.address, c.address6);
        Ok(())
    }

    /// Activate and GetCapabilities, once per host, before its first request.
    fn activate(&mut self, w: &World, host: usize) -> Result<()> {
        if self.activated.contains(&host) {
            return Ok(());
        }
        let name = &w.hosts[host].def.name;
        let a = post(&w.rt, w, host, "/Plugin.Activate", None)?.json()?;
        let implements = a.get("Implements").and_then(Value::as_array);
        if !implements.is_some_and(|i| i.iter().any(|v| v == "NetworkDriver")) {
            bail!("Plugin.Activate on {name} does not implement NetworkDriver: {a}");
        }
        let c = post(&w.rt, w, host, "/NetworkDriver.GetCapabilities", None)?.json()?;
        match c.get("Scope").and_then(Value::as_str) {
            Some("local") | Some("global") => {}
            _ => bail!("GetCapabilities on {name}: dockerd refuses this scope: {c}"),
        }
        self.activated.insert(host);
        Ok(())
    }

    /// The IPAM side of the plugin, once per host before its first IPAM
    /// request (dockerd: at the first network that names the IPAM driver):
    /// GetCapabilities and GetDefaultAddressSpaces. Answers the local space.
    fn activate_ipam(&mut self, w: &World, host: usize) -> Result<String> {
        self.activate(w, host)?;
        if let Some(s) = self.ipam_spaces.get(&host) {
            return Ok(s.clone());
        }
        let name = &w.hosts[host].def.name;
        let a = post(&w.rt, w, host, "/Plugin.Activate", None)?.json()?;
        let implements = a.get("Implements").and_then(Value::as_array);
        if !implements.is_some_and(|i| i.iter().any(|v| v == "IpamDriver")) {
            bail!("Plugin.Activate on {name} does not implement IpamDriver: {a}");
        }
        let c = post(&w.rt, w, host, "/IpamDriver.GetCapabilities", None)?.json()?;
        if c.get("RequiresRequestReplay") == Some(&Value::Bool(true)) {
            bail!("IpamDriver.GetCapabilities on {name} asks for request replay, which the emulator does not do: {c}");
        }
        let s = post(&w.rt, w, host, "/IpamDriver.GetDefaultAddressSpaces", None)?.json()?;
        let space = s
            .get("LocalDefaultAddressSpace")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("GetDefaultAddressSpaces on {name}: {s}"))?
            .to_string();
        self.ipam_spaces.insert(host, space.clone());
        Ok(space)
    }

    /// `docker network create --ipam-driver ipvlan-bgp`: the pools and
    /// gateways from the driver's IPAM, then CreateNetwork in its address
    /// space; what was taken is given back if CreateNetwork fails.
    fn create_cluster_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
        id: String,
        generic: &BTreeMap<String, String>,
    ) -> Result<()> {
        let space = self.activate_ipam(w, host)?;
        let mut opts = BTreeMap::new();
        if let Some(b) = net.block_size {
            opts.insert("block-size".to_string(), b.to_string());
        }
        let mut r = Remote::default();
        let mut data: [Option<(String, String)>; 2] = [None, None];
        let pools = [
            (false, subnets.v4.map(|s| s.to_string())),
            (true, subnets.v6.map(|s| s.to_string())),
        ];
        for (v6, pool) in pools {
            let Some(pool) = pool else { continue };
            let taken = (|| -> Result<(String, String)> {
                let p = ipam_on(
                    &w.rt,
                    w,
                    host,
                    "RequestPool",
                    wire::request_pool(&space, &pool, v6, &opts),
                )?;
                let pid = p
                    .get("PoolID")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("RequestPool answered no PoolID: {p}"))?
                    .to_string();
                let g = match ipam_on(
                    &w.rt,
                    w,
                    host,
                    "RequestAddress",
                    wire::request_address(&pid, "", true),
                ) {
                    Ok(g) => g,
                    Err(e) => {
                        ipam_lenient_on(&w.rt, w, host, "ReleasePool", wire::release_pool(&pid));
                        return Err(e);
                    }
                };
                let gw = g
                    .get("Address")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("RequestAddress answered no Address: {g}"))?
                    .to_string();
                Ok((pid, gw))
            })();
            let (pid, gw) = match taken {
                Ok(x) => x,
                Err(e) => {
                    release_remote(&w.rt, w, host, &r);
                    return Err(e);
                }
            };
            r.gateways.push((
                pid.clone(),
                gw.split('/').next().unwrap_or_default().to_string(),
            ));
            data[usize::from(v6)] = Some((pool, gw));
            if v6 {
                r.v6 = Some(pid);
            } else {
                r.v4 = Some(pid);
            }
        }
        let [v4, v6] = data;
        let body = wire::create_network_in(&id, generic, &space, v4, v6);
        if let Err(e) = self.call(w, host, "CreateNetwork", body) {
            release_remote(&w.rt, w, host, &r);
            return Err(e);
        }
        self.networks.insert(
            (host, net.name.clone()),
            NetRt {
                id,
                ipam: None,
                ipam6: None,
                remote: Some(r),
            },
        );
        Ok(())
    }

    fn call(&mut self, w: &World, host: usize, method: &str, body: Value) -> Result<Value> {
        self.activate(w, host)?;
        call_on(&w.rt, w, host, method, body)
    }

    fn net(&mut self, host: usize, name: &str) -> Result<&mut NetRt> {
        self.networks
            .get_mut(&(host, name.to_string()))
            .ok_or_else(|| anyhow!("network {name} does not exist on host #{host}"))
    }

    /// The shared half of a start: the plugin activated, an endpoint ID and
    /// an address chosen.
    fn prepare_start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<StartJob> {
        self.activate(w, host)?;
        self.counter += 1;
        let counter = self.counter.to_string();
        let (net_id, address, address6, remote) = {
            let n = self.net(host, &net.name)?;
            let v4 = match n.ipam.as_mut() {
                Some(i) => Some(Ipv4Net::new(i.allocate()?, i.subnet.prefix_len())?),
                None => None,
            };
            let v6 = match n.ipam6.as_mut() {
                Some(i) => match i.allocate() {
                    Ok(a) => Some(Ipv6Net::new(a, i.subnet.prefix_len())?),
                    Err(e) => {
                        n.release(v4.map(|a| a.addr()), None);
                        return Err(e);
                    }
                },
                None => None,
            };
            (n.id.clone(), v4, v6, n.remote.clone())
        };
        Ok(StartJob {
            host,
            network: net.name.clone(),
            net_id,
            address,
            address6,
            ep: docker_id(&[&w.id, name, "endpoint", &counter]),
            name: name.to_string(),
            ns_name: format!("{}-c-{name}", w.id),
            driver_opts: w
                .container_def(name)
                .map(|c| c.driver_opts.clone())
                .unwrap_or_default(),
            remote,
            fixed: w.container_def(name).and_then(|c| c.ip),
        })
    }

    /// The shared half after a start: a failed one gives its address back.
    fn finish_start(
        &mut self,
        j: &StartJob,
        r: Result<(ContainerRt, bool, Leases)>,
    ) -> Result<ContainerRt> {
        match r {
            Ok((c, programmed, leases)) => {
                if programmed {
                    self.programmed.insert(c.handle.clone());
                }
                if !leases.is_empty() {
                    self.leases.insert(c.handle.clone(), leases);
                }
                Ok(c)
            }
            Err(e) => {
                if let Ok(n) = self.net(j.host, &j.network) {
                    n.release(j.address.map(|a| a.addr()), j.address6.map(|a| a.addr()));
                }
                Err(e)
            }
        }
    }
}

impl ContainerEngine for Emulator {
    fn kind(&self) -> Engine {
        Engine::Emulator
    }

    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
    ) -> Result<()> {
        let id = docker_id(&[&w.id, &w.hosts[host].def.name, "network", &net.name]);
        if net.ipam == IpamKind::Cluster {
            let mut generic: BTreeMap<String, String> = net.options.clone();
            generic
                .entry("parent".into())
                .or_insert_with(|| UNDERLAY_IF.into());
            return self.create_cluster_network(w, host, net, subnets, id, &generic);
        }
        let ipam = subnets
            .v4
            .map(|s| match net.gateways.get(&w.hosts[host].def.name) {
                Some(g) => Ipam::with_gateway(s, *g),
                None => Ipam::new(s),
            });
        let ipam6 = subnets.v6.map(Ipam6::new);
        let mut generic: BTreeMap<String, String> = net.options.clone();
        // A dual-homed host's networks take no parent (the driver's container port).
        if w.hosts[host].def.uplink_links.is_empty() {
            generic
                .entry("parent".into())
                .or_insert_with(|| UNDERLAY_IF.into());
        }
        self.call(
            w,
            host,
            "CreateNetwork",
            wire::create_network(
                &id,
                &generic,
                ipam.as_ref().map(|i| (i.subnet, i.gateway)),
                ipam6.as_ref().map(|i| (i.subnet, i.gateway)),
            ),
        )?;
        self.networks.insert(
            (host, net.name.clone()),
            NetRt {
                id,
                ipam,
                ipam6,
                remote: None,
            },
        );
        Ok(())
    }

    fn delete_network(&mut self, w: &World, host: usize, net: &NetworkDef) -> Result<()> {
        let id = self.net(host, &net.name)?.id.clone();
        self.call(w, host, "DeleteNetwork", json!({"NetworkID": id}))?;
        if let Some(n) = self.networks.remove(&(host, net.name.clone())) {
            if let Some(r) = &n.remote {
                release_remote(&w.rt, w, host, r);
            }
        }
        Ok(())
    }

    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt> {
        let j = self.prepare_start(w, host, net, name)?;
        let r = run_start(&w.rt, w, &j);
        self.finish_start(&j, r)
    }

    fn stop(&mut self, w: &World, c: &ContainerRt) -> Result<()> {
        self.stop_held(w, c, &mut || Ok(()))
    }

    fn start_many(
        &mut self,
        w: &World,
        jobs: &[(usize, NetworkDef, String)],
    ) -> Vec<Result<ContainerRt>> {
        let prepared: Vec<Result<StartJob>> = jobs
            .iter()
            .map(|(host, net, name)| self.prepare_start(w, *host, net, name))
            .collect();
        let ready: Vec<&StartJob> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut done = per_host(&ready, |j| j.host, |rt, j| run_start(rt, w, j)).into_iter();
        let mut out = Vec::new();
        for p in prepared {
            out.push(match p {
                Ok(j) => {
                    let r = done
                        .next()
                        .unwrap_or_else(|| Err(anyhow!("internal: no result")));
                    self.finish_start(&j, r)
                }
                Err(e) => Err(e),
            });
        }
        out
    }

    fn stop_many(&mut self, w: &World, cs: &[ContainerRt]) -> Vec<Result<()>> {
        let prepared: Vec<Result<(&ContainerRt, String, bool, Leases)>> = cs
            .iter()
            .map(|c| {
                let net_id = self.net(c.host, &c.network)?.id.clone();
                let leases = self.leases.remove(&c.handle).unwrap_or_default();
                Ok((c, net_id, self.programmed.remove(&c.handle), leases))
            })
            .collect();
        let ready: Vec<&(&ContainerRt, String, bool, Leases)> =
            prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut done = per_host(
            &ready,
            |x| x.0.host,
            |rt, (c, net_id, programmed, leases)| {
                run_stop(rt, w, c, net_id, *programmed, leases, &mut || Ok(()))
            },
        )
        .into_iter();
        let mut out = Vec::new();
        for p in prepared {
            out.push(match p {
                Ok((c, _, _, _)) => {
                    let r = done
                        .next()
                        .unwrap_or_else(|| Err(anyhow!("internal: no result")));
                    if r.is_ok() {
                        if let Ok(n) = self.net(c.host, &c.network) {
                            n.release(c.address, c.address6);
                        }
                    }
                    r
                }
                Err(e) => Err(e),
            });
        }
        out
    }

    /// The sandbox namespace goes, and with it the container's link (the
    /// kernel deletes virtual links of a dying namespace); no request is sent.
    fn kill(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        let ns_name = c
            .netns
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{} has no namespace name", c.name))?;
        Netns::delete_fast(&ns_name)
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
        if let Some(leases) = self.leases.remove(&c.handle) {
            release_leases(&w.rt, w, c.host, &leases);
        }
        self.net(c.host, &c.network)?.release(c.address, c.address6);
        Ok(())
    }
}
