//! The driver core: networks and endpoints, their links, and their state.
//!
//! In: parsed Docker requests (one at a time; the API layer serialises them).
//! Out: kernel changes through [`Kernel`], the persisted [`State`], the answer
//! for Docker, and a [`View`] published on a watch channel after every change
//! (what to announce, which pools to accept) for the BGP side to follow.
//! Every operation validates first, then acts, and rolls back what it made if
//! a later step fails, so a failed request leaves nothing half-made. Replays
//! of a request that already took effect answer the same and change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::wire::{
    CreateEndpointRequest, CreateEndpointResponse, CreateNetworkRequest, EndpointRequest,
    InterfaceName, JoinRequest, JoinResponse, StaticRoute,
};
use crate::error::DriverError;
use crate::kernel::{Kernel, LinkKind};
use crate::names;
use crate::network::{check_id, host_route, Announce, EndpointSpec, NetworkSpec};
use crate::state::{EndpointRecord, NetworkRecord, State, Store};

/// What the BGP side needs to know about this host's networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Prefixes to announce, each with the parent interface it lives behind.
    pub announcements: BTreeMap<IpNet, String>,
    /// The subnets of this host's networks: learned prefixes inside them are accepted.
    pub pools: BTreeSet<IpNet>,
    /// This host's own endpoint addresses: never installed from a peer.
    pub local_endpoints: BTreeSet<IpAddr>,
    /// The parent interfaces in use: learned next hops must be on-link on one of them.
    pub parents: BTreeSet<String>,
}

impl View {
    pub fn from_state(state: &State) -> View {
        let mut v = View::default();
        for net in state.networks.values() {
            let spec = &net.spec;
            v.pools.insert(IpNet::V4(spec.subnet));
            v.parents.insert(spec.parent.name.clone());
            for ep in net.endpoints.values() {
                v.local_endpoints.insert(IpAddr::V4(ep.spec.address.addr()));
            }
            if spec.internal {
                continue;
            }
            match spec.announce {
                Announce::Subnet => {
                    v.announcements
                        .insert(IpNet::V4(spec.subnet), spec.parent.name.clone());
                }
                Announce::Endpoint => {
                    for ep in net.endpoints.values().filter(|e| e.joined) {
                        v.announcements
                            .insert(host_route(ep.spec.address.addr()), spec.parent.name.clone());
                    }
                }
            }
        }
        v
    }
}

pub struct Driver {
    state: State,
    store: Store,
    kernel: Kernel,
    default_parent: Option<String>,
    /// Whether this kernel has ipvlan, once probed.
    ipvlan: Option<bool>,
    /// Networks whose parent, VLAN or shim could not be restored at start;
    /// the next Join on them tries again.
    broken: BTreeSet<String>,
    view: watch::Sender<Arc<View>>,
}

type Result<T> = std::result::Result<T, DriverError>;

/// Undo steps collected while an operation makes kernel objects; run in
/// reverse if the operation fails before it commits.
#[derive(Default)]
struct Undo {
    links: Vec<String>,
}

impl Undo {
    fn run(self, kernel: &mut Kernel) {
        for name in self.links.into_iter().rev() {
            if let Err(e) = kernel.delete_link(&name) {
                warn!(link = %name, error = %e, "rollback: could not delete link");
            }
        }
    }
}

impl Driver {
    /// Loads the state and restores what the host needs for it (parents,
    /// shims), without touching links that running containers use.
    pub fn start(
        store: Store,
        kernel: Kernel,
        default_parent: Option<String>,
    ) -> Result<(Driver, watch::Receiver<Arc<View>>)> {
        let state = store.load()?;
        let (tx, rx) = watch::channel(Arc::new(View::from_state(&state)));
        let mut driver = Driver {
            state,
            store,
            kernel,
            default_parent,
            ipvlan: None,
            broken: BTreeSet::new(),
            view: tx,
        };
        driver.restore();
        Ok((driver, rx))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    fn publish(&self) {
        let view = View::from_state(&self.state);
        self.view.send_if_modified(|old| {
            if **old == view {
                false
            } else {
                *old = Arc::new(view);
                true
            }
        });
    }

    fn save(&self) -> Result<()> {
        self.store.save(&self.state)?;
        Ok(())
    }

    /// Recreates missing parents and shims for known networks and deletes
    /// our links that nothing owns any more. Logs, never fails: a driver that
    /// cannot fix one network must still serve the others.
    fn restore(&mut self) {
        let ids: Vec<String> = self.state.networks.keys().cloned().collect();
        for id in &ids {
            let rec = self.state.networks[id].clone();
            match self.ensure_network_links(&rec.spec, &mut Undo::default()) {
                Ok((shim, _)) => {
                    info!(network = %rec.spec.short_id(), shim = ?shim, "network restored");
                }
                Err(e) => {
                    warn!(network = %rec.spec.short_id(), error = %e, "could not restore network links")
                }
            }
        }
        let owned: BTreeSet<String> = self
            .state
            .networks
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .map(|e| e.link.clone())
                    .chain(n.shim.clone())
            })
            .collect();
        match self.kernel.links() {
            Ok(links) => {
                for l in links {
                    if names::is_ours(&l.name) && !owned.contains(&l.name) {
                        match self.kernel.delete_link(&l.name) {
                            Ok(_) => {
                                info!(link = %l.name, "deleted a link of ours that no endpoint owns")
                            }
                            Err(e) => {
                                warn!(link = %l.name, error = %e, "could not delete an orphan link")
                            }
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not list links to sweep orphans"),
        }
        self.publish();
    }

    fn parent_index(&mut self, spec: &NetworkSpec) -> Result<u32> {
        match self.kernel.link(&spec.parent.name)? {
            Some(l) => Ok(l.index),
            None => Err(DriverError::Invalid(crate::network::InvalidRequest(
                format!(
                    "parent interface {} does not exist on this host; check -o parent",
                    spec.parent.name
                ),
            ))),
        }
    }

    /// Makes the network's kernel objects exist: the 802.1Q parent when asked
    /// for, the shim with the gateway address for L2 data planes. Returns the
    /// shim's name and whether we created the VLAN parent now.
    fn ensure_network_links(
        &mut self,
        spec: &NetworkSpec,
        undo: &mut Undo,
    ) -> Result<(Option<String>, bool)> {
        let mut created_vlan = false;
        let parent = match self.kernel.link(&spec.parent.name)? {
            Some(l) => l,
            None => match &spec.parent.vlan {
                Some((lower, id)) => {
                    let lower_link = self.kernel.link(lower)?.ok_or_else(|| {
                        DriverError::Invalid(crate::network::InvalidRequest(format!(
                            "parent {}: the interface {lower} under VLAN {id} does not exist on this host",
                            spec.parent.name
                        )))
                    })?;
                    let l = self
                        .kernel
                        .ensure_link(&spec.parent.name, lower_link.index, LinkKind::Vlan { id: *id }, None)
                        .map_err(|e| match e.errno() {
                            Some(libc::EOPNOTSUPP) => DriverError::Unsupported(format!(
                                "this kernel has no 802.1Q VLAN support (cannot create {}); load the 8021q module, or create the VLAN interface yourself and give it as parent",
                                spec.parent.name
                            )),
                            _ => DriverError::Kernel(e),
                        })?
                        .link;
                    undo.links.push(spec.parent.name.clone());
                    self.kernel.set_up(l.index, true)?;
                    created_vlan = true;
                    l
                }
                None => {
                    return Err(DriverError::Invalid(crate::network::InvalidRequest(
                        format!(
                            "parent interface {} does not exist on this host; check -o parent",
                            spec.parent.name
                        ),
                    )))
                }
            },
        };
        if spec.dataplane.is_ipvlan() {
            self.check_ipvlan()?;
        }
        if !spec.has_shim() {
            return Ok((None, created_vlan));
        }
        let gateway = spec.gateway.ok_or_else(|| {
            DriverError::Internal("a network with a shim but no gateway passed validation".into())
        })?;
        let shim = names::shim(&spec.id);
        let ensured =
            self.kernel
                .ensure_link(&shim, parent.index, spec.dataplane.link_kind(), None)?;
        if ensured.created {
            undo.links.push(shim.clone());
        }
        let link = ensured.link;
        self.kernel.add_address(link.index, IpNet::V4(gateway))?;
        self.kernel.set_up(link.index, true)?;
        // An L2 shim routes for the containers: the host must forward.
        if spec.dataplane.is_l2() {
            if let Err(e) = crate::kernel::write_sysctl("net.ipv4.ip_forward", "1") {
                warn!(error = %e, "could not enable net.ipv4.ip_forward; containers will not reach other hosts");
            }
        }
        Ok((Some(shim), created_vlan))
    }

    fn check_ipvlan(&mut self) -> Result<()> {
        let supported = match self.ipvlan {
            Some(s) => s,
            None => {
                let s = self.kernel.probe_ipvlan()?;
                info!(supported = s, "probed the kernel for ipvlan");
                self.ipvlan = Some(s);
                s
            }
        };
        if supported {
            Ok(())
        } else {
            Err(DriverError::Unsupported(
                "this kernel has no ipvlan support (creating an ipvlan link failed with 'operation not supported'); \
                 use -o dataplane=macvlan, or load the ipvlan module (modprobe ipvlan) and restart the driver"
                    .into(),
            ))
        }
    }

    fn network(&self, id: &str) -> Result<&NetworkRecord> {
        self.state
            .networks
            .get(id)
            .ok_or_else(|| DriverError::UnknownNetwork(id.to_string()))
    }

    // ----- Docker operations -----

    pub fn create_network(&mut self, req: &CreateNetworkRequest) -> Result<()> {
        let spec = NetworkSpec::from_request(req, self.default_parent.as_deref())?;
        if let Some(existing) = self.state.networks.get(&spec.id) {
            if existing.spec != spec {
                return Err(DriverError::Conflict(format!(
                    "network {} already exists with different options",
                    spec.short_id()
                )));
            }
            // A replay: make sure the kernel side is still there.
            self.ensure_network_links(&spec, &mut Undo::default())?;
            return Ok(());
        }
        for other in self.state.networks.values() {
            let o = &other.spec;
            if o.parent.name == spec.parent.name && o.dataplane != spec.dataplane {
                return Err(DriverError::Conflict(format!(
                    "parent {} is already used by network {} in {} mode; a parent carries one mode: use the same mode, or another parent (e.g. a VLAN sub-interface {}.N)",
                    spec.parent.name,
                    o.short_id(),
                    o.dataplane.describe(),
                    spec.parent.vlan.as_ref().map(|v| v.0.as_str()).unwrap_or(&spec.parent.name)
                )));
            }
            if o.subnet.contains(&spec.subnet.network())
                || spec.subnet.contains(&o.subnet.network())
            {
                return Err(DriverError::Conflict(format!(
                    "subnet {} overlaps subnet {} of network {}; give each network its own subnet",
                    spec.subnet,
                    o.subnet,
                    o.short_id()
                )));
            }
        }
        let mut undo = Undo::default();
        let (shim, created_vlan) = match self.ensure_network_links(&spec, &mut undo) {
            Ok(v) => v,
            Err(e) => {
                undo.run(&mut self.kernel);
                return Err(e);
            }
        };
        self.state.networks.insert(
            spec.id.clone(),
            NetworkRecord {
                spec: spec.clone(),
                shim,
                created_vlan,
                endpoints: BTreeMap::new(),
            },
        );
        if let Err(e) = self.save() {
            self.state.networks.remove(&spec.id);
            undo.run(&mut self.kernel);
            return Err(e);
        }
        info!(network = %spec.short_id(), parent = %spec.parent.name, dataplane = %spec.dataplane.describe(), subnet = %spec.subnet, "network created");
        self.publish();
        Ok(())
    }

    pub fn delete_network(&mut self, id: &str) -> Result<()> {
        check_id("network", id)?;
        let Some(rec) = self.state.networks.get(id).cloned() else {
            if self.state.was_deleted(id) {
                return Ok(());
            }
            return Err(DriverError::UnknownNetwork(id.to_string()));
        };
        // The state goes first: if the kernel then refuses a deletion, the
        // link is an orphan that the next start sweeps, never a network that
        // Docker believes gone but the driver still holds.
        self.state.networks.remove(id);
        self.state.remember_deleted(id);
        for ep in rec.endpoints.keys() {
            self.state.remember_deleted(ep);
        }
        if let Err(e) = self.save() {
            self.state.networks.insert(id.to_string(), rec.clone());
            self.state
                .deleted
                .retain(|d| d != id && !rec.endpoints.contains_key(d));
            return Err(e);
        }
        self.broken.remove(id);
        self.publish();
        // Docker deletes endpoints first; anything left over goes too.
        let vlan_still_used = self
            .state
            .networks
            .values()
            .any(|n| n.spec.parent.name == rec.spec.parent.name);
        let mut links: Vec<&str> = rec.endpoints.values().map(|e| e.link.as_str()).collect();
        links.extend(rec.shim.as_deref());
        if rec.created_vlan && !vlan_still_used {
            links.push(&rec.spec.parent.name);
        }
        let failed: Vec<String> = links
            .into_iter()
            .filter_map(|l| {
                self.kernel
                    .delete_link(l)
                    .err()
                    .map(|e| format!("{l}: {e}"))
            })
            .collect();
        info!(network = %rec.spec.short_id(), "network deleted");
        if !failed.is_empty() {
            return Err(DriverError::Internal(format!(
                "network removed, but these links could not be deleted (the next driver start removes them): {}",
                failed.join("; ")
            )));
        }
        Ok(())
    }

    pub fn create_endpoint(
        &mut self,
        req: &CreateEndpointRequest,
    ) -> Result<CreateEndpointResponse> {
        check_id("network", &req.network_id)?;
        let net = self.network(&req.network_id)?;
        let spec = EndpointSpec::from_request(req, &net.spec)?;
        if let Some(existing) = net.endpoints.get(&spec.id) {
            if existing.spec != spec {
                return Err(DriverError::Conflict(format!(
                    "endpoint {} already exists with another address",
                    &spec.id[..12]
                )));
            }
            return Ok(CreateEndpointResponse::default());
        }
        if let Some(other) = net
            .endpoints
            .values()
            .find(|e| e.spec.address.addr() == spec.address.addr())
        {
            // Docker's IPAM owns addresses: it hands one out again only after it
            // released it. A record still holding it is stale (Docker gave up on
            // Leave/DeleteEndpoint while the driver was down) unless its
            // container is demonstrably alive.
            let alive =
                other.joined && !other.sandbox.is_empty() && Path::new(&other.sandbox).exists();
            if alive {
                return Err(DriverError::Conflict(format!(
                    "address {} is already used by endpoint {} (joined to {})",
                    spec.address.addr(),
                    &other.spec.id[..12],
                    other.sandbox
                )));
            }
            let stale = other.spec.id.clone();
            warn!(endpoint = %&stale[..12], address = %spec.address.addr(), "removing a stale endpoint whose address Docker handed out again");
            self.delete_endpoint(&EndpointRequest {
                network_id: req.network_id.clone(),
                endpoint_id: stale,
                options: None,
            })?;
        }
        let link = names::endpoint(&spec.id);
        if self.state.networks.values().any(|n| {
            n.endpoints.values().any(|e| e.link == link) || n.shim.as_deref() == Some(&link)
        }) {
            return Err(DriverError::Conflict(format!(
                "endpoint {} collides with another endpoint's link name {link}",
                &spec.id[..12]
            )));
        }
        let net_id = req.network_id.clone();
        let ep_id = spec.id.clone();
        let net = self
            .state
            .networks
            .get_mut(&net_id)
            .ok_or_else(|| DriverError::UnknownNetwork(net_id.clone()))?;
        net.endpoints.insert(
            ep_id.clone(),
            EndpointRecord {
                spec,
                link,
                joined: false,
                sandbox: String::new(),
            },
        );
        if let Err(e) = self.save() {
            if let Some(n) = self.state.networks.get_mut(&net_id) {
                n.endpoints.remove(&ep_id);
            }
            return Err(e);
        }
        self.publish();
        Ok(CreateEndpointResponse::default())
    }

    fn endpoint(&self, network: &str, endpoint: &str) -> Result<(&NetworkRecord, &EndpointRecord)> {
        check_id("network", network)?;
        check_id("endpoint", endpoint)?;
        let net = self.network(network)?;
        let ep = net
            .endpoints
            .get(endpoint)
            .ok_or_else(|| DriverError::UnknownEndpoint {
                network: network.to_string(),
                endpoint: endpoint.to_string(),
            })?;
        Ok((net, ep))
    }

    pub fn join(&mut self, req: &JoinRequest) -> Result<JoinResponse> {
        let (net, ep) = self.endpoint(&req.network_id, &req.endpoint_id)?;
        let spec = net.spec.clone();
        let ep = ep.clone();
        let response = join_response(&spec, &ep.link);
        if ep.joined {
            // A replay: the link was made and may already be inside the container.
            return Ok(response);
        }
        if self.broken.contains(&spec.id) {
            self.ensure_network_links(&spec, &mut Undo::default())?;
            self.broken.remove(&spec.id);
            info!(network = %spec.short_id(), "network links repaired");
        }
        let parent = self.parent_index(&spec)?;
        let ensured =
            self.kernel
                .ensure_link(&ep.link, parent, spec.dataplane.link_kind(), ep.spec.mac)?;
        if let Err(e) = self.set_joined(&req.network_id, &req.endpoint_id, Some(&req.sandbox_key)) {
            if ensured.created {
                Undo {
                    links: vec![ep.link.clone()],
                }
                .run(&mut self.kernel);
            }
            return Err(e);
        }
        info!(network = %spec.short_id(), endpoint = %&ep.spec.id[..12], link = %ep.link, address = %ep.spec.address, "joined");
        self.publish();
        Ok(response)
    }

    pub fn leave(&mut self, req: &EndpointRequest) -> Result<()> {
        check_id("network", &req.network_id)?;
        check_id("endpoint", &req.endpoint_id)?;
        if self.state.was_deleted(&req.endpoint_id) {
            return Ok(());
        }
        let (_, ep) = self.endpoint(&req.network_id, &req.endpoint_id)?;
        if !ep.joined {
            return Ok(());
        }
        self.set_joined(&req.network_id, &req.endpoint_id, None)?;
        self.publish();
        Ok(())
    }

    /// Marks an endpoint joined to `sandbox` (`None`: left) and saves; on a
    /// failed save the record is as before.
    fn set_joined(&mut self, network: &str, endpoint: &str, sandbox: Option<&str>) -> Result<()> {
        let e = self
            .state
            .networks
            .get_mut(network)
            .and_then(|n| n.endpoints.get_mut(endpoint))
            .ok_or_else(|| DriverError::UnknownEndpoint {
                network: network.into(),
                endpoint: endpoint.into(),
            })?;
        let before = (e.joined, std::mem::take(&mut e.sandbox));
        e.joined = sandbox.is_some();
        e.sandbox = sandbox.unwrap_or_default().to_string();
        if let Err(err) = self.save() {
            if let Some(e) = self
                .state
                .networks
                .get_mut(network)
                .and_then(|n| n.endpoints.get_mut(endpoint))
            {
                e.joined = before.0;
                e.sandbox = before.1;
            }
            return Err(err);
        }
        Ok(())
    }

    pub fn delete_endpoint(&mut self, req: &EndpointRequest) -> Result<()> {
        check_id("network", &req.network_id)?;
        check_id("endpoint", &req.endpoint_id)?;
        if self.state.was_deleted(&req.endpoint_id) {
            return Ok(());
        }
        let (_, ep) = self.endpoint(&req.network_id, &req.endpoint_id)?;
        let link = ep.link.clone();
        // Docker has moved the link back into the host namespace by now.
        self.kernel.delete_link(&link)?;
        let removed = self
            .state
            .networks
            .get_mut(&req.network_id)
            .and_then(|n| n.endpoints.remove(&req.endpoint_id));
        self.state.remember_deleted(&req.endpoint_id);
        if let Err(e) = self.save() {
            self.state.deleted.retain(|d| d != &req.endpoint_id);
            if let (Some(n), Some(r)) = (self.state.networks.get_mut(&req.network_id), removed) {
                n.endpoints.insert(req.endpoint_id.clone(), r);
            }
            return Err(e);
        }
        self.publish();
        Ok(())
    }

    pub fn oper_info(&self, req: &EndpointRequest) -> Result<BTreeMap<String, serde_json::Value>> {
        let (net, ep) = self.endpoint(&req.network_id, &req.endpoint_id)?;
        let mut v = BTreeMap::new();
        v.insert("link".into(), ep.link.clone().into());
        v.insert("address".into(), ep.spec.address.to_string().into());
        v.insert("parent".into(), net.spec.parent.name.clone().into());
        v.insert("dataplane".into(), net.spec.dataplane.describe().into());
        v.insert("joined".into(), ep.joined.into());
        Ok(v)
    }

    /// Program/RevokeExternalConnectivity: nothing to do (no NAT, no port
    /// mapping: containers are routed), but the IDs must be ours.
    pub fn external_connectivity(&self, req: &EndpointRequest) -> Result<()> {
        if self.state.was_deleted(&req.endpoint_id) {
            return Ok(());
        }
        self.endpoint(&req.network_id, &req.endpoint_id).map(|_| ())
    }
}

fn join_response(spec: &NetworkSpec, link: &str) -> JoinResponse {
    let interface_name = InterfaceName {
        src_name: link.to_string(),
        dst_prefix: "eth".into(),
    };
    if spec.dataplane.is_l2() {
        JoinResponse {
            interface_name,
            gateway: spec
                .gateway
                .map(|g| g.addr().to_string())
                .unwrap_or_default(),
            gateway_ipv6: String::new(),
            static_routes: Vec::new(),
            disable_gateway_service: true,
        }
    } else {
        JoinResponse {
            interface_name,
            gateway: String::new(),
            gateway_ipv6: String::new(),
            static_routes: vec![StaticRoute {
                destination: "0.0.0.0/0".into(),
                route_type: 1,
                next_hop: String::new(),
            }],
            disable_gateway_service: true,
        }
    }
}
