//! Docker's operations on networks and endpoints.
//!
//! In: CreateNetwork, DeleteNetwork, CreateEndpoint, Join, Leave,
//! DeleteEndpoint, EndpointOperInfo and the connectivity calls, as domain
//! values and IDs. Out: what Docker is answered ([`Joined`],
//! [`EndpointInfo`], or a [`DriverError`] that says what to do), with the
//! kernel side provisioned ([`crate::provision`]), the change journaled and
//! the View published. Every operation validates first, then acts, and
//! rolls back what it made if a later step fails, so a failed request
//! leaves nothing half-made. Replays of a request that already took effect
//! answer the same and change nothing; a Join replayed with another sandbox
//! or after its link vanished is checked against the kernel first (see
//! [`Driver::join`]). A new network is refused, before any kernel change,
//! if its subnets overlap what the host already has, and once its parent
//! exists if the segment answers for its gateways
//! ([`crate::provision::segment`]). A network that could not be restored
//! gets one repair attempt ([`super::lifecycle`]) before it refuses.

use std::net::{Ipv4Addr, Ipv6Addr};

use tracing::{debug, info, warn};

use super::{Driver, Result};
use crate::error::DriverError;
use crate::kernel::{KernelError, LinkKernel, LinkKind};
use crate::model::names::{self, short_id, Role};
use crate::model::network::{check_id, EndpointSpec, NetworkSpec};
use crate::model::state::{EndpointRecord, Record};
use crate::provision::links::{self, Expect};
use crate::provision::network::{delete_network_links, owned_marks, parent_index, NewShim, Undo};
use crate::provision::{port, segment};
use crate::view::decide::Sandbox;

/// What Docker needs after a Join: the link to move into the container and
/// how the container reaches the world, per address family it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Host-side name of the container's link.
    pub link: String,
    /// IPv4, if the network has an IPv4 subnet.
    pub v4: Option<Reach<Ipv4Addr>>,
    /// IPv6, if the network has an IPv6 subnet.
    pub v6: Option<Reach<Ipv6Addr>>,
}

/// How a container reaches beyond its subnet in one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<A> {
    /// Through the gateway on the shim (L2 data planes).
    Gateway(A),
    /// A connected default route: the parent answers (ipvlan L3/L3S).
    Connected,
}

impl Joined {
    fn of(link: &str, spec: &NetworkSpec) -> Joined {
        let l2 = spec.dataplane.is_l2();
        Joined {
            link: link.to_string(),
            v4: spec.subnet.map(|_| match spec.gateway.filter(|_| l2) {
                Some(g) => Reach::Gateway(g.addr()),
                None => Reach::Connected,
            }),
            v6: spec.subnet6.map(|_| match spec.gateway6.filter(|_| l2) {
                Some(g) => Reach::Gateway(g.addr()),
                None => Reach::Connected,
            }),
        }
    }
}

/// What EndpointOperInfo reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub link: String,
    pub address: String,
    pub parent: String,
    pub dataplane: String,
    pub joined: bool,
}

impl<K: LinkKernel> Driver<K> {
    /// The spec of a known network (the API layer validates endpoints against it).
    pub fn network_spec(&self, id: &str) -> Result<&NetworkSpec> {
        check_id("network", id)?;
        Ok(&self.network(id)?.spec)
    }

    pub fn create_network(&mut self, spec: NetworkSpec) -> Result<()> {
        check_id("network", &spec.id)?;
        spec.check_subnet()?;
        if let Some(existing) = self.state.networks.get(&spec.id) {
            if existing.spec != spec {
                return Err(DriverError::Conflict(format!(
                    "network {} already exists with different options",
                    spec.short_id()
                )));
            }
            // A replay: make sure the kernel side is still there.
            let mut undo = Undo::default();
            if let Err(e) = self.ensure_network(&spec, NewShim::Trust, &mut undo) {
                undo.run(&mut self.kernel);
                return Err(e);
            }
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
            if let Some((mine, theirs)) = spec.overlap(o) {
                return Err(DriverError::Conflict(format!(
                    "subnet {mine} overlaps subnet {theirs} of network {}; give each network its own subnet",
                    o.short_id()
                )));
            }
        }
        // What belongs to the segment (the host's addresses and connected
        // routes, but for our own shims) is not ours to hand out.
        let own = owned_marks(&self.state, &self.marks);
        segment::check_overlap(&mut self.kernel, &spec, &own)?;
        self.remember_sysctls(&spec)?;
        let mut undo = Undo::default();
        let shim = match self.ensure_network(&spec, NewShim::Probe, &mut undo) {
            Ok(v) => v,
            Err(e) => {
                undo.run(&mut self.kernel);
                return Err(e);
            }
        };
        let rec = Record::PutNetwork {
            spec: spec.clone(),
            shim,
        };
        if let Err(e) = self.commit(&rec) {
            undo.run(&mut self.kernel);
            return Err(e);
        }
        info!(network = %spec.short_id(), parent = %spec.parent.name, dataplane = %spec.dataplane.describe(), subnet = %spec.subnets_text(), "network created");
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
        let change = Record::RemoveNetwork { id: id.to_string() };
        self.commit(&change)?;
        self.unavailable.remove(id);
        self.publish();
        let spec = &rec.spec;
        // The 802.1Q parent goes with the last network on it.
        let still_used = self
            .state
            .networks
            .values()
            .any(|n| n.spec.parent.name == spec.parent.name);
        let failed =
            delete_network_links(&mut self.kernel, &self.marks, &self.port, &rec, still_used);
        info!(network = %spec.short_id(), "network deleted");
        if !failed.is_empty() {
            return Err(DriverError::Internal(format!(
                "network removed, but these links could not be deleted (the next driver start removes those that are ours): {}",
                failed.join("; ")
            )));
        }
        Ok(())
    }

    pub fn create_endpoint(&mut self, network_id: &str, spec: EndpointSpec) -> Result<()> {
        check_id("network", network_id)?;
        check_id("endpoint", &spec.id)?;
        let net = self.network(network_id)?;
        if let Some(existing) = net.endpoints.get(&spec.id) {
            if existing.spec != spec {
                return Err(DriverError::Conflict(format!(
                    "endpoint {} already exists with another address or other options",
                    short_id(&spec.id)
                )));
            }
            return Ok(());
        }
        self.require_available(network_id)?;
        let net = self.network(network_id)?;
        if let Some(other) = net
            .endpoints
            .values()
            .find(|e| e.spec.addrs().any(|a| spec.has_addr(a)))
        {
            // Docker's IPAM owns addresses: it hands one out again only after it
            // released it. A record still holding it is stale (Docker gave up on
            // Leave/DeleteEndpoint while the driver was down) unless its
            // container is demonstrably alive.
            let alive = other.joined && Sandbox::at(&other.sandbox) == Sandbox::Alive;
            if alive {
                return Err(DriverError::Conflict(format!(
                    "address {} is already used by endpoint {} (joined to {})",
                    other.spec.addresses_text(),
                    short_id(&other.spec.id),
                    other.sandbox
                )));
            }
            let stale = other.spec.id.clone();
            warn!(endpoint = %short_id(&stale), address = %spec.addresses_text(), "removing a stale endpoint whose address Docker handed out again");
            self.delete_endpoint(network_id, &stale)?;
        }
        let link = names::endpoint(&spec.id);
        if self.state.networks.values().any(|n| {
            n.endpoints.values().any(|e| e.link == link) || n.shim.as_deref() == Some(&link)
        }) {
            return Err(DriverError::Conflict(format!(
                "endpoint {} collides with another endpoint's link name {link}",
                short_id(&spec.id)
            )));
        }
        let rec = Record::PutEndpoint {
            network: network_id.to_string(),
            endpoint: EndpointRecord {
                spec: spec.clone(),
                link,
                joined: false,
                sandbox: String::new(),
                unmarked: false,
                health: None,
            },
        };
        self.commit(&rec)?;
        self.publish_endpoint(&spec);
        Ok(())
    }

    /// Join: the container's link exists on the parent, marked, and is
    /// handed to Docker. A Join for an endpoint already joined is answered
    /// the same only when nothing changed (the same sandbox, its link still
    /// in the host namespace, not yet moved). Otherwise the kernel decides:
    /// the link still in the host namespace is no container's, so the
    /// endpoint joins the new sandbox; a link gone with a sandbox that is
    /// gone (its namespace file absent: the link died with it) is made
    /// again; a link gone while its sandbox is still there (it is inside
    /// that container) is refused, since a second link would put the same
    /// address on two containers. Docker retries a Join only when the
    /// driver did not answer, and follows a refused Join with
    /// DeleteEndpoint.
    pub fn join(&mut self, network: &str, endpoint: &str, sandbox: &str) -> Result<Joined> {
        let (net, ep) = self.endpoint(network, endpoint)?;
        let spec = net.spec.clone();
        let ep = ep.clone();
        let joined = Joined::of(&ep.link, &spec);
        self.require_available(network)?;
        let parent = parent_index(&mut self.kernel, &spec)?;
        let mark = self.marks.mark(Role::Endpoint, &ep.spec.id);
        let want = Expect {
            name: &ep.link,
            kind: LinkKind::from(spec.dataplane),
            parent: Some(parent),
            mark: &mark,
        };
        if ep.joined {
            // In the host namespace: ours (or refused as someone else's).
            let here = match self.kernel.link(&ep.link)? {
                Some(_) => links::ensure(&mut self.kernel, &want, ep.spec.mac).map(|_| true)?,
                None => false,
            };
            match (here, ep.sandbox == sandbox) {
                // A replay: the link was made and Docker has not moved it yet.
                (true, true) => return Ok(joined),
                // The link is back in the host namespace: no container holds
                // it, and the endpoint joins the sandbox Docker names now.
                (true, false) => {
                    port::add_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, &ep.spec)?;
                    self.set_joined(network, endpoint, Some(sandbox))?;
                    warn!(endpoint = %short_id(&ep.spec.id), from = %ep.sandbox, to = %sandbox, "a joined endpoint joined again with another sandbox (its Leave was lost); its link is in the host namespace and goes to the new one");
                    self.watch_address(&spec, &ep.spec, sandbox);
                    self.publish_endpoint(&ep.spec);
                    return Ok(joined);
                }
                (false, _) if Sandbox::at(&ep.sandbox) != Sandbox::Gone => {
                    return Err(DriverError::Conflict(format!(
                        "endpoint {} is already joined to sandbox {} and its link {} is not in the host namespace (it is inside that container); a second link would give its address to two containers: Docker must Leave it first (docker network disconnect, or stop that container)",
                        short_id(&ep.spec.id),
                        if ep.sandbox.is_empty() { "(unknown)" } else { &ep.sandbox },
                        ep.link
                    )));
                }
                // Its sandbox is gone, and the link died with it: made again below.
                (false, _) => {
                    warn!(endpoint = %short_id(&ep.spec.id), sandbox = %ep.sandbox, link = %ep.link, "a joined endpoint's link died with its sandbox; made again for this Join");
                }
            }
        }
        let ensured = links::ensure(&mut self.kernel, &want, ep.spec.mac)?;
        // The container port (ipvlan L3): its routes before any announcement.
        let routed = port::add_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, &ep.spec)
            .map_err(DriverError::from);
        if let Err(e) = routed.and_then(|_| self.set_joined(network, endpoint, Some(sandbox))) {
            let _ =
                port::remove_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, &ep.spec);
            if ensured.created {
                let mut undo = Undo::default();
                undo.push(&want);
                undo.run(&mut self.kernel);
            }
            return Err(e);
        }
        info!(network = %spec.short_id(), endpoint = %short_id(&ep.spec.id), link = %ep.link, address = %ep.spec.addresses_text(), "joined");
        self.watch_address(&spec, &ep.spec, sandbox);
        self.publish_endpoint(&ep.spec);
        Ok(joined)
    }

    pub fn leave(&mut self, network: &str, endpoint: &str) -> Result<()> {
        check_id("network", network)?;
        check_id("endpoint", endpoint)?;
        if self.state.was_deleted(endpoint) {
            return Ok(());
        }
        let (_, ep) = self.endpoint(network, endpoint)?;
        if !ep.joined {
            return Ok(());
        }
        let spec = ep.spec.clone();
        let net = self.network(network)?.spec.clone();
        debug!(mono_us = crate::clock::mono_us(), "leave: to commit");
        self.set_joined(network, endpoint, None)?;
        self.pending.remove(endpoint);
        self.publish_endpoint(&spec);
        debug!(mono_us = crate::clock::mono_us(), "leave: view published");
        // Withdrawn first, then the container port's routes (ipvlan L3).
        if let Err(e) =
            port::remove_endpoint(&mut self.kernel, &self.marks, &self.port, &net, &spec)
        {
            warn!(endpoint = %short_id(endpoint), error = %e, "could not remove the endpoint's route on the container port");
        }
        Ok(())
    }

    /// Marks an endpoint joined to `sandbox` (`None`: left) and saves; on a
    /// failed save the record is as before.
    fn set_joined(&mut self, network: &str, endpoint: &str, sandbox: Option<&str>) -> Result<()> {
        let mut e = self
            .state
            .networks
            .get(network)
            .and_then(|n| n.endpoints.get(endpoint))
            .ok_or_else(|| DriverError::UnknownEndpoint {
                network: network.into(),
                endpoint: endpoint.into(),
            })?
            .clone();
        e.joined = sandbox.is_some();
        e.sandbox = sandbox.unwrap_or_default().to_string();
        let rec = Record::PutEndpoint {
            network: network.to_string(),
            endpoint: e,
        };
        self.commit(&rec)
    }

    pub fn delete_endpoint(&mut self, network: &str, endpoint: &str) -> Result<()> {
        check_id("network", network)?;
        check_id("endpoint", endpoint)?;
        if self.state.was_deleted(endpoint) {
            return Ok(());
        }
        let (net, ep) = self.endpoint(network, endpoint)?;
        let ep = ep.clone();
        let link = ep.link.clone();
        let spec = net.spec.clone();
        // Docker has moved the link back into the host namespace by now.
        let parent = self.kernel.link(&spec.parent.name)?.map(|l| l.index);
        let mark = self.marks.mark(Role::Endpoint, endpoint);
        let want = Expect {
            name: &link,
            kind: LinkKind::from(spec.dataplane),
            parent,
            mark: &mark,
        };
        if ep.unmarked {
            if let Err(e) = links::adopt_unmarked(&mut self.kernel, &want) {
                warn!(link = %link, error = %e, "could not mark a link of an earlier version");
            }
        }
        if let Err(e) =
            port::remove_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, &ep.spec)
        {
            warn!(endpoint = %short_id(endpoint), error = %e, "could not remove the endpoint's route on the container port");
        }
        match links::delete(&mut self.kernel, &want) {
            Ok(_) => {}
            // Someone else's link under our name: it stays, our record goes.
            Err(e @ KernelError::Conflict(_)) => {
                warn!(link = %link, error = %e, "left a link that is not ours in place")
            }
            Err(e) => return Err(e.into()),
        }
        let spec = ep.spec.clone();
        let rec = Record::RemoveEndpoint {
            network: network.to_string(),
            id: endpoint.to_string(),
        };
        self.commit(&rec)?;
        self.pending.remove(endpoint);
        self.publish_endpoint(&spec);
        Ok(())
    }

    pub fn oper_info(&self, network: &str, endpoint: &str) -> Result<EndpointInfo> {
        let (net, ep) = self.endpoint(network, endpoint)?;
        Ok(EndpointInfo {
            link: ep.link.clone(),
            address: ep
                .spec
                .address
                .map(|a| a.to_string())
                .into_iter()
                .chain(ep.spec.address6.map(|a| a.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            parent: net.spec.parent.name.clone(),
            dataplane: net.spec.dataplane.describe(),
            joined: ep.joined,
        })
    }

    /// Program/RevokeExternalConnectivity: nothing to do (no NAT, no port
    /// mapping: containers are routed), but the IDs must be ours.
    /// Drains this host (`since`: unix time) or undrains it (`None`): the
    /// state is saved as a snapshot first, then the view published. Returns
    /// the drain in force afterwards (an earlier drain keeps its time).
    pub fn set_drained(&mut self, since: Option<u64>) -> Result<Option<u64>> {
        let before = self.state.drained;
        let after = match (before, since) {
            (Some(t), Some(_)) => Some(t),
            (_, s) => s,
        };
        if after == before {
            return Ok(after);
        }
        self.state.drained = after;
        if let Err(e) = self.save() {
            self.state.drained = before;
            return Err(e);
        }
        self.publish();
        Ok(after)
    }

    pub fn external_connectivity(&self, network: &str, endpoint: &str) -> Result<()> {
        if self.state.was_deleted(endpoint) {
            return Ok(());
        }
        self.endpoint(network, endpoint).map(|_| ())
    }
}
