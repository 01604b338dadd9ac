//! Container engines: who creates networks and containers on a host.
//!
//! [`Engine`] is what a scenario needs (create/delete a network, start/stop a
//! container); [`Emulator`] implements it the way dockerd 20.10 does, request
//! for request (payloads as in `driver/tests/fixtures/`, checked by a golden
//! test): Activate and GetCapabilities once per host at the first use of the
//! plugin (not again after the driver restarts); CreateEndpoint with an
//! address from a Docker-like IPAM, Join, then it creates the sandbox
//! namespace, moves the interface in, renames it `eth0`, sets the address
//! and the gateway or static routes; ProgramExternalConnectivity only for an
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

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Route;
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
    /// Its IPv4 address (none on an IPv6-only network).
    pub address: Option<Ipv4Addr>,
    /// Its IPv6 address (on a network with an IPv6 subnet).
    pub address6: Option<Ipv6Addr>,
    /// The container's network namespace (a path to open).
    pub netns: PathBuf,
    /// Engine-private handle (the emulator's endpoint ID, dockerd's container ID).
    pub handle: String,
    /// The interface's host-side name (the driver's `SrcName`).
    pub src_name: String,
}

impl ContainerRt {
    /// Its address of one family, or an error that says it has none.
    pub fn addr_of(&self, family: crate::scenario::Family) -> Result<std::net::IpAddr> {
        use crate::scenario::Family;
        match family {
            Family::Ipv4 => self.address.map(Into::into),
            Family::Ipv6 => self.address6.map(Into::into),
        }
        .ok_or_else(|| anyhow!("container {} has no {family:?} address", self.name))
    }

    /// Its first address: IPv4 where it has one, else IPv6.
    pub fn any_addr(&self) -> std::net::IpAddr {
        self.address
            .map(Into::into)
            .or(self.address6.map(Into::into))
            .unwrap_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Its host routes: the /32 and the /128 it has.
    pub fn host_prefixes(&self) -> Vec<IpNet> {
        let mut v = Vec::new();
        if let Some(a) = self.address {
            v.push(IpNet::V4(Ipv4Net::from(a)));
        }
        if let Some(a) = self.address6 {
            v.push(IpNet::V6(Ipv6Net::from(a)));
        }
        v
    }
}

/// A network's subnets on one host: IPv4, IPv6 or both (dual stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subnets {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl From<Ipv4Net> for Subnets {
    fn from(v4: Ipv4Net) -> Subnets {
        Subnets {
            v4: Some(v4),
            v6: None,
        }
    }
}

impl Subnets {
    /// The subnets of network `net` on host `host` (as the scenario gives them).
    pub fn of(net: &NetworkDef, host: &str) -> Subnets {
        Subnets {
            v4: net.subnets.get(host).copied(),
            v6: net.subnets6.get(host).copied(),
        }
    }
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
    /// Controls the driver when the engine runs it (the managed plugin).
    fn control_driver(&mut self, _w: &World, _host: usize, _action: Control) -> Result<()> {
        bail!("the {} engine does not run the driver", self.name())
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
        subnets: Subnets,
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
    /// Starts many containers, `(host, network, name)` each, and answers in
    /// the same order. Each host's containers start one after the other, as
    /// one dockerd starts them; an engine may run different hosts at once
    /// (separate dockerds would). The default starts them one by one.
    fn start_many(
        &mut self,
        w: &World,
        jobs: &[(usize, NetworkDef, String)],
    ) -> Vec<Result<ContainerRt>> {
        jobs.iter()
            .map(|(host, net, name)| self.start(w, *host, net, name))
            .collect()
    }
    /// Stops many containers (answers in the same order); like
    /// [`Engine::start_many`], hosts may run at once.
    fn stop_many(&mut self, w: &World, cs: &[ContainerRt]) -> Vec<Result<()>> {
        cs.iter().map(|c| self.stop(w, c)).collect()
    }
    /// Runs `command` inside the container; its output.
    fn exec(&mut self, _w: &World, _c: &ContainerRt, _command: &[String]) -> Result<String> {
        bail!(
            "the {} engine cannot run commands in a container",
            self.name()
        )
    }
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

/// Docker's IPAM for a network's IPv6 subnet: the gateway takes the first
/// address (`::1`), containers the next free ones, serially as for IPv4.
#[derive(Debug, Clone)]
pub struct Ipam6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    used: std::collections::BTreeSet<Ipv6Addr>,
    next: u128,
}

impl Ipam6 {
    pub fn new(subnet: Ipv6Net) -> Ipam6 {
        let gateway = Ipv6Addr::from(u128::from(subnet.network()) + 1);
        Ipam6 {
            subnet,
            gateway,
            used: [gateway].into(),
            next: u128::from(subnet.network()) + 2,
        }
    }

    pub fn allocate(&mut self) -> Result<Ipv6Addr> {
        let first = u128::from(self.subnet.network()) + 1;
        let last = u128::from(self.subnet.broadcast());
        // Never scan more than a few thousand: a /64 is never full here.
        for _ in 0..last.saturating_sub(first).saturating_add(1).min(1 << 16) {
            if self.next > last {
                self.next = first;
            }
            let a = Ipv6Addr::from(self.next);
            self.next += 1;
            if self.used.insert(a) {
                return Ok(a);
            }
        }
        bail!("subnet {} has no free address", self.subnet)
    }

    pub fn release(&mut self, a: Ipv6Addr) {
        if a != self.gateway {
            self.used.remove(&a);
        }
    }
}

struct NetRt {
    id: String,
    ipam: Option<Ipam>,
    ipam6: Option<Ipam6>,
}

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
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Scenarios create no `--internal` networks (dockerd sends them no
/// ProgramExternalConnectivity and never attaches a gateway bridge).
const INTERNAL: bool = false;
/// dockerd's plugin client retries a socket that is not there (yet) for 30 s,
/// waiting 1, 2, 4, 8, ... s between tries.
const PLUGIN_RETRY_FOR: Duration = Duration::from_secs(30);

/// The requests whose failure dockerd only logs.
const IGNORED_FAILURES: &[&str] = &[
    "Leave",
    "DeleteEndpoint",
    "RevokeExternalConnectivity",
    "EndpointOperInfo",
];

/// Whether an error says the plugin socket is absent or refuses connections
/// (dockerd retries those), as opposed to an answer or a timeout.
fn socket_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        })
    })
}

/// Request bodies exactly as dockerd 20.10 builds them (see the fixtures).
pub mod wire {
    use serde_json::{json, Value};

    /// What `docker run` adds to an endpoint: `--mac-address`, `-p`/`--expose`.
    #[derive(Debug, Clone, Default)]
    pub struct EndpointExtras {
        pub mac: Option<[u8; 6]>,
        /// `com.docker.network.endpoint.exposedports`
        pub exposed: Vec<Value>,
        /// `com.docker.network.portmap`
        pub portmap: Vec<Value>,
        /// `--driver-opt k=v`: top-level keys of CreateEndpoint's Options only.
        pub driver_opts: std::collections::BTreeMap<String, String>,
    }

    fn mac_text(m: &[u8; 6]) -> String {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The endpoint options of Join and ProgramExternalConnectivity.
    pub fn join_options(x: &EndpointExtras) -> Value {
        json!({"com.docker.network.endpoint.exposedports": x.exposed,
               "com.docker.network.portmap": x.portmap})
    }

    pub fn create_endpoint(net: &str, ep: &str, address: &str, x: &EndpointExtras) -> Value {
        create_endpoint_dual(net, ep, address, "", x)
    }

    /// CreateEndpoint with both addresses (either may be empty: dockerd
    /// sends `""` for a family the network does not have).
    pub fn create_endpoint_dual(
        net: &str,
        ep: &str,
        address: &str,
        address6: &str,
        x: &EndpointExtras,
    ) -> Value {
        let mut options = join_options(x);
        if let Some(m) = &x.mac {
            // Go's JSON encoding of a []byte: base64.
            options["com.docker.network.endpoint.macaddress"] = json!(base64(m));
        }
        for (k, v) in &x.driver_opts {
            options[k] = json!(v);
        }
        json!({"NetworkID": net, "EndpointID": ep,
               "Interface": {"Address": address, "AddressIPv6": address6,
                             "MacAddress": x.mac.as_ref().map(mac_text).unwrap_or_default()},
               "Options": options})
    }

    pub fn join(net: &str, ep: &str, sandbox: &str, x: &EndpointExtras) -> Value {
        json!({"NetworkID": net, "EndpointID": ep, "SandboxKey": sandbox, "Options": join_options(x)})
    }

    pub fn program(net: &str, ep: &str, x: &EndpointExtras) -> Value {
        json!({"NetworkID": net, "EndpointID": ep, "Options": join_options(x)})
    }

    /// EndpointOperInfo, RevokeExternalConnectivity, Leave, DeleteEndpoint.
    pub fn ids(net: &str, ep: &str) -> Value {
        json!({"NetworkID": net, "EndpointID": ep})
    }

    /// The requests after a Join that succeeded and whose sandbox is set up:
    /// ProgramExternalConnectivity for the gateway endpoint (on a network that
    /// is not internal), then EndpointOperInfo twice.
    pub fn after_join(
        net: &str,
        ep: &str,
        x: &EndpointExtras,
        join: &Value,
        internal: bool,
    ) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if provides_gateway(join) && !internal {
            out.push(("ProgramExternalConnectivity", program(net, ep, x)));
        }
        out.push(("EndpointOperInfo", ids(net, ep)));
        out.push(("EndpointOperInfo", ids(net, ep)));
        out
    }

    /// `docker stop`: the requests before the interface goes back to the
    /// host (Revoke for a programmed endpoint, Leave), and after it
    /// (DeleteEndpoint).
    pub fn stop(net: &str, ep: &str, programmed: bool) -> [Vec<(&'static str, Value)>; 2] {
        let mut before = Vec::new();
        if programmed {
            before.push(("RevokeExternalConnectivity", ids(net, ep)));
        }
        before.push(("Leave", ids(net, ep)));
        [before, vec![("DeleteEndpoint", ids(net, ep))]]
    }

    /// CreateNetwork as dockerd 20.10 sends it: `IPv4Data` and `IPv6Data`
    /// each hold the family's pool with its gateway in CIDR form, or are
    /// empty; `enable_ipv6` is set when there is an IPv6 pool. Without an
    /// IPv4 pool (which 20.10 cannot make), Docker 28's shape.
    pub fn create_network(
        id: &str,
        generic: &std::collections::BTreeMap<String, String>,
        v4: Option<(ipnet::Ipv4Net, std::net::Ipv4Addr)>,
        v6: Option<(ipnet::Ipv6Net, std::net::Ipv6Addr)>,
    ) -> Value {
        let v4: Vec<Value> = v4
            .iter()
            .map(|(net, gw)| json!({"AddressSpace": "LocalDefault", "Gateway": format!("{gw}/{}", net.prefix_len()), "Pool": net.to_string()}))
            .collect();
        let v6: Vec<Value> = v6
            .iter()
            .map(|(net, gw)| json!({"AddressSpace": "LocalDefault", "Gateway": format!("{gw}/{}", net.prefix_len()), "Pool": net.to_string()}))
            .collect();
        let mut body = json!({
            "NetworkID": id,
            "Options": {"com.docker.network.enable_ipv6": !v6.is_empty(), "com.docker.network.generic": generic},
            "IPv4Data": v4,
            "IPv6Data": v6
        });
        if v4.is_empty() {
            // Docker 28's `--ipv4=false`: the option says so, and libnetwork's
            // getIPData still sends an empty list (`make(..., 0)`), not null.
            body["Options"]["com.docker.network.enable_ipv4"] = json!(false);
        }
        body
    }

    /// libnetwork's gateway endpoint: the one whose Join answer has a
    /// gateway (of either family). Only it gets Program/RevokeExternalConnectivity.
    pub fn provides_gateway(join: &Value) -> bool {
        ["Gateway", "GatewayIPv6"].iter().any(|k| {
            join.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty())
        })
    }

    /// What dockerd refuses in a CreateEndpoint answer: a MAC or an address
    /// when the request already carried one ("Cannot be modified").
    pub fn check_create_answer(request: &Value, answer: &Value) -> Result<(), String> {
        for (field, what) in [
            ("MacAddress", "MAC address"),
            ("Address", "IPv4 address"),
            ("AddressIPv6", "IPv6 address"),
        ] {
            let asked = request
                .pointer(&format!("/Interface/{field}"))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            let answered = answer
                .pointer(&format!("/Interface/{field}"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty());
            if let (true, Some(v)) = (asked, answered) {
                return Err(format!(
                    "CreateEndpoint answered {what} {v} for an endpoint that has one: dockerd fails the container (\"endpoint interface {what} present; cannot be modified\")"
                ));
            }
        }
        Ok(())
    }

    /// A Join answer with no gateway that does not disable the gateway
    /// service makes dockerd attach the container to `docker_gwbridge`
    /// (NAT through the host): never what a routed network wants.
    pub fn check_join_answer(join: &Value, internal: bool) -> Result<(), String> {
        let disabled = join
            .get("DisableGatewayService")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !internal && !provides_gateway(join) && !disabled {
            return Err(format!(
                "Join answered no Gateway and DisableGatewayService=false: dockerd would attach the container to docker_gwbridge: {join}"
            ));
        }
        Ok(())
    }
}

/// How many hosts the emulator serves at once in `start_many` and
/// `stop_many` (each host's own requests stay one after the other).
const PARALLEL_HOSTS: usize = 8;

/// One POST, retried like dockerd's plugin client while the socket is gone.
/// Free of the emulator's state, so that several hosts can be served from
/// several threads, each with its own runtime.
fn post(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    path: &str,
    body: Option<&Value>,
) -> Result<ipvlan_bgp::api::client::Reply> {
    let sock = w.hosts[host].socket();
    let bytes = match body {
        Some(b) => {
            let mut v = serde_json::to_vec(b)?;
            v.push(b'\n');
            v
        }
        None => Vec::new(),
    };
    let started = std::time::Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        match rt.block_on(ipvlan_bgp::api::client::post(
            &sock,
            path,
            bytes.clone(),
            CALL_TIMEOUT,
        )) {
            Err(e) if socket_gone(&e) && started.elapsed() + wait < PLUGIN_RETRY_FOR => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other.with_context(|| format!("{path} on {}", w.hosts[host].def.name)),
        }
    }
}

/// A `NetworkDriver.*` request to a host whose plugin is activated.
fn call_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) -> Result<Value> {
    let reply = post(
        rt,
        w,
        host,
        &format!("/NetworkDriver.{method}"),
        Some(&body),
    )?;
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

/// A call whose failure dockerd only logs: printed, then ignored.
fn call_lenient_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) {
    debug_assert!(IGNORED_FAILURES.contains(&method));
    if let Err(e) = call_on(rt, w, host, method, body) {
        eprintln!(
            "[emulator] {method} on {}: failed: {e:#} (ignored, as dockerd does)",
            w.hosts[host].def.name
        );
    }
}

/// A container start with the engine's shared state already consulted
/// (plugin activated, endpoint ID and address chosen).
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
}

/// CreateEndpoint, Join, the sandbox, then Program and OperInfo, as
/// dockerd does them; on failure the sandbox namespace is gone again.
/// Answers the container and whether it was programmed.
fn run_start(rt: &tokio::runtime::Runtime, w: &World, j: &StartJob) -> Result<(ContainerRt, bool)> {
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
        let ns = Netns::create_fast(&j.ns_name)?;
        let ns_name2 = j.ns_name.clone();
        w.cleanup.push(
            format!("delete container namespace {}", j.ns_name),
            move || Netns::delete_fast(&ns_name2),
        );
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
    if result.is_err() {
        let _ = Netns::delete_fast(&j.ns_name);
    }
    result
}

/// Revoke (if programmed) and Leave, the interface back to the host,
/// DeleteEndpoint, the sandbox gone: dockerd's stop.
fn run_stop(
    rt: &tokio::runtime::Runtime,
    w: &World,
    c: &ContainerRt,
    net_id: &str,
    programmed: bool,
) -> Result<()> {
    let [before, after] = wire::stop(net_id, &c.handle, programmed);
    for (method, body) in before {
        call_lenient_on(rt, w, c.host, method, body);
    }
    unplumb(w, c).with_context(|| format!("move {}'s interface back", c.name))?;
    for (method, body) in after {
        call_lenient_on(rt, w, c.host, method, body);
    }
    let ns_name = c
        .netns
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Netns::delete_fast(&ns_name)
}

/// Runs `work` over `items` grouped by host: up to [`PARALLEL_HOSTS`]
/// threads, each taking a whole host's items in order, each with its own
/// runtime. Answers in the order of `items`.
fn per_host<T: Sync, R: Send>(
    items: &[T],
    host_of: impl Fn(&T) -> usize,
    work: impl Fn(&tokio::runtime::Runtime, &T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let mut by_host: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, it) in items.iter().enumerate() {
        by_host.entry(host_of(it)).or_default().push(k);
    }
    let groups: Vec<Vec<usize>> = by_host.into_values().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<R>>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    let threads = groups.len().clamp(1, PARALLEL_HOSTS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                        for g in &groups {
                            for &k in g {
                                r[k].get_or_insert_with(|| Err(anyhow!("tokio runtime: {e}")));
                            }
                        }
                        return;
                    }
                };
                loop {
                    let g = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(group) = groups.get(g) else { break };
                    for &k in group {
                        let r = work(&rt, &items[k]);
                        results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("internal: no result"))))
        .collect()
}

impl Emulator {
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
        let (net_id, address, address6) = {
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
            (n.id.clone(), v4, v6)
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
        })
    }

    /// The shared half after a start: a failed one gives its address back.
    fn finish_start(
        &mut self,
        j: &StartJob,
        r: Result<(ContainerRt, bool)>,
    ) -> Result<ContainerRt> {
        match r {
            Ok((c, programmed)) => {
                if programmed {
                    self.programmed.insert(c.handle.clone());
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

impl Engine for Emulator {
    fn name(&self) -> &'static str {
        "emulator"
    }

    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
    ) -> Result<()> {
        let id = docker_id(&[&w.id, &w.hosts[host].def.name, "network", &net.name]);
        let ipam = subnets.v4.map(Ipam::new);
        let ipam6 = subnets.v6.map(Ipam6::new);
        let mut generic: BTreeMap<String, String> = net.options.clone();
        generic
            .entry("parent".into())
            .or_insert_with(|| UNDERLAY_IF.into());
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
        self.networks
            .insert((host, net.name.clone()), NetRt { id, ipam, ipam6 });
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
        let j = self.prepare_start(w, host, net, name)?;
        let r = run_start(&w.rt, w, &j);
        self.finish_start(&j, r)
    }

    fn stop(&mut self, w: &World, c: &ContainerRt) -> Result<()> {
        let net_id = self.net(c.host, &c.network)?.id.clone();
        let programmed = self.programmed.remove(&c.handle);
        run_stop(&w.rt, w, c, &net_id, programmed)?;
        self.net(c.host, &c.network)?.release(c.address, c.address6);
        Ok(())
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
        let prepared: Vec<Result<(&ContainerRt, String, bool)>> = cs
            .iter()
            .map(|c| {
                let net_id = self.net(c.host, &c.network)?.id.clone();
                Ok((c, net_id, self.programmed.remove(&c.handle)))
            })
            .collect();
        let ready: Vec<&(&ContainerRt, String, bool)> =
            prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut done = per_host(
            &ready,
            |x| x.0.host,
            |rt, (c, net_id, programmed)| run_stop(rt, w, c, net_id, *programmed),
        )
        .into_iter();
        let mut out = Vec::new();
        for p in prepared {
            out.push(match p {
                Ok((c, _, _)) => {
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
        self.net(c.host, &c.network)?.release(c.address, c.address6);
        Ok(())
    }
}

/// libnetwork's sandbox work after Join: move, rename, address, up, routes.
fn plumb(
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

    /// `--driver-opt`s (`docker run --network name=fx,driver-opt=...`,
    /// recorded from dockerd 20.10) and the emulator's CreateEndpoint for
    /// the same options: the same body.
    #[test]
    fn emulator_driver_opts_match_dockerd_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-endpoint-options.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let real: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        let b = &real["body"];
        let extras = wire::EndpointExtras {
            driver_opts: [("bgp_med", "30"), ("bgp_local_pref", "200")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..wire::EndpointExtras::default()
        };
        let ours = wire::create_endpoint(
            b["NetworkID"].as_str().unwrap(),
            b["EndpointID"].as_str().unwrap(),
            b["Interface"]["Address"].as_str().unwrap(),
            &extras,
        );
        assert_eq!(&ours, b);
    }

    /// `docker run --rm --network fx --mac-address 02:aa:bb:cc:dd:ee -p 8080:80`
    /// and its stop, as dockerd 20.10 sent them (driver/tests/fixtures/),
    /// against what the emulator sends for the same container, body for body.
    #[test]
    fn emulator_requests_match_dockerd_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-20.10-requests.jsonl"
        );
        let fixtures: Vec<Value> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ep = "835c7162a10a5b9a8f6fd356ca22db0cfe70755ab53f9eb5ff33c3b3f75f16ee";
        let real: Vec<(String, Value)> = fixtures
            .iter()
            .filter(|f| f.pointer("/body/EndpointID").and_then(Value::as_str) == Some(ep))
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                (
                    p.trim_start_matches("/NetworkDriver.").to_string(),
                    f["body"].clone(),
                )
            })
            .collect();
        let net = real[0].1["NetworkID"].as_str().unwrap().to_string();
        let sandbox = real[1].1["SandboxKey"].as_str().unwrap().to_string();
        let port = json!({"Proto": 6, "Port": 80});
        let extras = wire::EndpointExtras {
            mac: Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]),
            exposed: vec![port],
            portmap: vec![
                json!({"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}),
            ],
            ..wire::EndpointExtras::default()
        };
        // The driver that answered these requests gave a gateway (dockerd sent Program).
        let join_answer =
            json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}, "Gateway": "10.201.7.1"});
        let mut ours = vec![
            (
                "CreateEndpoint",
                wire::create_endpoint(&net, ep, "10.201.7.2/24", &extras),
            ),
            ("Join", wire::join(&net, ep, &sandbox, &extras)),
        ];
        ours.extend(wire::after_join(&net, ep, &extras, &join_answer, false));
        let [before, after] = wire::stop(&net, ep, true);
        ours.extend(before);
        ours.extend(after);
        let ours: Vec<(String, Value)> =
            ours.into_iter().map(|(m, b)| (m.to_string(), b)).collect();
        assert_eq!(ours.len(), real.len(), "ours: {ours:#?}\nreal: {real:#?}");
        for (o, r) in ours.iter().zip(&real) {
            assert_eq!(o, r);
        }
    }

    #[test]
    fn only_the_gateway_endpoint_is_programmed() {
        let x = wire::EndpointExtras::default();
        let l3 = json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}, "DisableGatewayService": true,
                        "StaticRoutes": [{"Destination": "0.0.0.0/0", "RouteType": 1, "NextHop": ""}]});
        let methods: Vec<_> = wire::after_join("n", "e", &x, &l3, false)
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(methods, ["EndpointOperInfo", "EndpointOperInfo"]);
        assert!(wire::check_join_answer(&l3, false).is_ok());
        let l2 = json!({"Gateway": "10.1.1.1", "DisableGatewayService": true});
        assert_eq!(
            wire::after_join("n", "e", &x, &l2, false)[0].0,
            "ProgramExternalConnectivity"
        );
        assert_eq!(wire::after_join("n", "e", &x, &l2, true).len(), 2);
        let [before, _] = wire::stop("n", "e", false);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].0, "Leave");
    }

    #[test]
    fn answers_dockerd_refuses_are_refused() {
        let gwbridge = json!({"InterfaceName": {"SrcName": "x", "DstPrefix": "eth"}});
        let e = wire::check_join_answer(&gwbridge, false).unwrap_err();
        assert!(e.contains("docker_gwbridge"), "{e}");
        assert!(wire::check_join_answer(&gwbridge, true).is_ok());
        let asked = wire::create_endpoint(
            "n",
            "e",
            "10.1.1.2/24",
            &wire::EndpointExtras {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..Default::default()
            },
        );
        let e = wire::check_create_answer(
            &asked,
            &json!({"Interface": {"MacAddress": "02:00:00:00:00:02"}}),
        )
        .unwrap_err();
        assert!(e.contains("MAC address"), "{e}");
        let e =
            wire::check_create_answer(&asked, &json!({"Interface": {"Address": "10.1.1.9/24"}}))
                .unwrap_err();
        assert!(e.contains("IPv4 address"), "{e}");
        let no_mac =
            wire::create_endpoint("n", "e", "10.1.1.2/24", &wire::EndpointExtras::default());
        assert!(wire::check_create_answer(
            &no_mac,
            &json!({"Interface": {"MacAddress": "02:00:00:00:00:02"}})
        )
        .is_ok());
        assert!(wire::check_create_answer(&no_mac, &json!({})).is_ok());
    }

    /// `docker network create --ipv6 --subnet V4 --subnet V6` as dockerd
    /// 20.10 sent it (the fixture), against what the emulator sends.
    #[test]
    fn dual_stack_create_network_matches_dockerd_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../driver/tests/fixtures/dockerd-20.10-requests.jsonl"
        );
        let real: Value = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|f| {
                f["body"]["IPv6Data"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            })
            .unwrap()["body"]
            .clone();
        let generic: BTreeMap<String, String> =
            serde_json::from_value(real["Options"]["com.docker.network.generic"].clone()).unwrap();
        let mut ours = wire::create_network(
            real["NetworkID"].as_str().unwrap(),
            &generic,
            None,
            Some((
                "fd00:db8::/64".parse().unwrap(),
                "fd00:db8::1".parse().unwrap(),
            )),
        );
        assert_eq!(ours["IPv6Data"], real["IPv6Data"]);
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv6"], true);
        // IPv6-only: no IPv4 pool at all, and Docker 28's option.
        assert_eq!(ours["IPv4Data"], json!([]));
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv4"], false);
        ours = wire::create_network(
            "n",
            &generic,
            Some(("10.1.1.0/24".parse().unwrap(), "10.1.1.1".parse().unwrap())),
            None,
        );
        assert_eq!(ours["Options"]["com.docker.network.enable_ipv6"], false);
        assert_eq!(ours["IPv6Data"], json!([]));
        assert!(ours["Options"]
            .get("com.docker.network.enable_ipv4")
            .is_none());
        let ep = wire::create_endpoint_dual(
            "n",
            "e",
            "",
            "fd00:1::2/64",
            &wire::EndpointExtras::default(),
        );
        assert_eq!(ep["Interface"]["Address"], "");
        assert_eq!(ep["Interface"]["AddressIPv6"], "fd00:1::2/64");
        let e =
            wire::check_create_answer(&ep, &json!({"Interface": {"AddressIPv6": "fd00:1::9/64"}}))
                .unwrap_err();
        assert!(e.contains("IPv6 address"), "{e}");
        // A v6 gateway alone makes the gateway endpoint.
        assert!(wire::provides_gateway(&json!({"GatewayIPv6": "fd00:1::1"})));
    }

    #[test]
    fn ipam6_allocates_like_docker() {
        let mut i = Ipam6::new("fd00:1::/64".parse().unwrap());
        assert_eq!(i.gateway, "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            i.allocate().unwrap(),
            "fd00:1::2".parse::<Ipv6Addr>().unwrap()
        );
        let b = i.allocate().unwrap();
        i.release(b);
        assert_eq!(
            i.allocate().unwrap(),
            "fd00:1::4".parse::<Ipv6Addr>().unwrap()
        );
    }

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
