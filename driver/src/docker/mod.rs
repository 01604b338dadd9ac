//! The Docker side: networks and endpoints as Docker asks for them, their
//! links, their state, and the View they make.
//!
//! In: Docker operations as domain values ([`crate::model::network::NetworkSpec`],
//! [`crate::model::network::EndpointSpec`], IDs; the API layer parses and
//! converts the wire format, one request at a time). Out: link changes
//! through [`crate::provision`] on a [`LinkKernel`], the persisted
//! [`State`], domain answers ([`ops::Joined`]), and a [`View`] published on a
//! watch channel after every change (what to announce, which pools to
//! accept) for the health gate and the BGP side to follow.
//! [`ops`] holds the operations (validate, then provision, state, view; a
//! failed request leaves nothing half-made, a replay changes nothing);
//! [`lifecycle`] the start (restore, adopt, forget dead sandboxes, sweep)
//! and the repairs; [`restart_check`] asks Docker about the containers of
//! the endpoints still joined after a restart. This file holds what both share: the [`Driver`], its
//! state's journal, and the View's publication. A Join's endpoint is
//! announced once its address is live in the container: the driver asks
//! the watcher it was given ([`Driver::watch_addresses`]) to look, holds the
//! endpoint meanwhile ([`crate::view::build::Pending`]), and announces it
//! when told ([`Driver::address_live`]).
//! IPv6 rides along IPv4 everywhere: a network's IPv6 subnet is a pool and
//! (with `announce=subnet`) an announcement, each endpoint's IPv6 address a
//! /128; the shim holds the IPv6 gateway too.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::DriverError;
use crate::kernel::real::Kernel;
use crate::kernel::LinkKernel;
use crate::model::names::Marks;
use crate::model::network::{check_id, EndpointSpec, NetworkSpec};
use crate::model::state::{EndpointRecord, NetworkRecord, Record, State};
use crate::provision::network::{ensure_network, NewShim, Undo};
use crate::store::Store;
use crate::view::build::Pending;
use crate::view::View;

pub mod lifecycle;
pub mod ops;
pub mod restart_check;
#[cfg(test)]
mod tests;

/// Where networks created without `-o parent` go: `--parent`, or (dual-
/// uplink mode, `--uplink`) the container port, with the uplinks it routes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostParents {
    pub default_parent: Option<String>,
    pub uplinks: Vec<String>,
    /// The ipvlan L3 container port's table, rule preference and protocol.
    pub port: crate::provision::port::PortConfig,
}

pub struct Driver<K: LinkKernel = Kernel> {
    state: State,
    store: Store,
    kernel: K,
    /// This instance's marks: the identity its links carry.
    marks: Marks,
    default_parent: Option<String>,
    /// `--uplink`: dual-uplink mode's uplinks (none, or two or more).
    uplinks: Vec<String>,
    /// The ipvlan L3 container port's table, rule preference and protocol.
    port: crate::provision::port::PortConfig,
    /// Whether this kernel has ipvlan, once probed.
    ipvlan: Option<bool>,
    /// Networks whose parent, VLAN or shim could not be restored, with why;
    /// Docker's calls on them fail with that reason until [`Driver::repair`]
    /// (or the call itself) restores them.
    unavailable: BTreeMap<String, String>,
    /// Parents seen disappearing by the repair loop, counted.
    parents_lost: u64,
    /// Container ports found not as made (down, unmarked, a gateway
    /// missing) and repaired: drift.
    port_repairs: u64,
    /// When the container ports' rules and routes were last read back.
    port_deep_at: Option<std::time::Instant>,
    view: watch::Sender<Arc<View>>,
    /// The view last published, kept up to date change by change.
    current: View,
    /// Starts a watch for a joined endpoint's address (none: announced at
    /// Join, as in the unit tests with the in-memory kernel).
    watcher: Option<StartWatch>,
    /// Joined endpoints whose address is not live yet, with their watch's ticket.
    pending: Pending,
    /// The last ticket handed out.
    tickets: u64,
}

/// A request to watch a joined endpoint's address in its sandbox; the
/// watcher answers with [`Driver::address_live`] and the same ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRequest {
    pub network: String,
    pub endpoint: String,
    pub ticket: u64,
    /// Join's `SandboxKey`: the container's network namespace file.
    pub sandbox: String,
    pub addrs: Vec<IpAddr>,
    /// The routes the container answers through: its default route in
    /// each family it has an address of (Join gives one: via the gateway,
    /// or connected on L3 data planes).
    pub routes: Vec<ipnet::IpNet>,
    /// The data plane resolves neighbours (macvlan, ipvlan L2): tell them.
    pub tell_neighbours: bool,
}

/// Starts one watch; must not block (the driver's lock is held).
pub type StartWatch = Box<dyn Fn(LiveRequest) + Send>;

type Result<T> = std::result::Result<T, DriverError>;

impl<K: LinkKernel> Driver<K> {
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn default_parent(&self) -> Option<&str> {
        self.default_parent.as_deref()
    }

    /// Dual-uplink mode's uplinks (empty: not in that mode).
    pub fn uplinks(&self) -> &[String] {
        &self.uplinks
    }

    /// Networks that cannot serve now, with the reason.
    pub fn unavailable(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    /// The marks this instance's links carry.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// How many times a network's parent disappeared while the driver ran.
    pub fn parents_lost(&self) -> u64 {
        self.parents_lost
    }

    /// Container ports repaired since start ([`Driver::restore_ports`]).
    pub fn port_repairs(&self) -> u64 {
        self.port_repairs
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// From now on a Join's endpoint is announced only once `start`'s watch
    /// says its address is live (or gave up waiting).
    pub fn watch_addresses(&mut self, start: StartWatch) {
        self.watcher = Some(start);
    }

    /// Joined endpoints whose address is not live yet.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// The watch `ticket` of `endpoint` ended (live, or given up): it is
    /// announced, unless it left (or joined again: a newer ticket) since.
    /// When live, `mac` is the container's interface's: this host's
    /// neighbour entries for the endpoint's addresses on the shim say it
    /// before the announcement goes out ([`crate::provision::neighbour`];
    /// a failure is logged and costs only that head start). Says whether
    /// the ticket was still current.
    pub fn address_live(
        &mut self,
        network: &str,
        endpoint: &str,
        ticket: u64,
        mac: Option<[u8; 6]>,
    ) -> bool {
        if self.pending.get(endpoint) != Some(&ticket) {
            return false;
        }
        self.pending.remove(endpoint);
        if let Ok((net, ep)) = self.endpoint(network, endpoint) {
            let spec = ep.spec.clone();
            if let Some(mac) = mac {
                let (net, shim) = (net.spec.clone(), net.shim.clone());
                self.seed_neighbours(&net, shim.as_deref(), &spec, mac);
            }
            self.publish_endpoint(&spec);
        }
        true
    }

    /// See [`Driver::address_live`].
    fn seed_neighbours(
        &mut self,
        net: &NetworkSpec,
        shim: Option<&str>,
        spec: &EndpointSpec,
        mac: [u8; 6],
    ) {
        use crate::provision::neighbour::{seed, Seed};
        let mac_text = crate::kernel::neigh_probe::mac_text(&mac);
        let endpoint = crate::model::names::short_id(&spec.id);
        let protocol = self.port.protocol;
        match seed(
            &mut self.kernel,
            &self.marks,
            net,
            shim,
            spec,
            mac,
            protocol,
        ) {
            Ok(Seed::Written { shim, count }) => {
                tracing::debug!(endpoint = %endpoint, shim = %shim, mac = %mac_text, count, mono_us = crate::clock::mono_us(), "neighbour entries set")
            }
            Ok(Seed::NotNeeded) => {}
            Ok(Seed::NoShim) => {
                tracing::warn!(endpoint = %endpoint, network = %net.short_id(), "the network's shim is gone: no neighbour entry for the container (the repair puts the shim back)")
            }
            Ok(Seed::Pinned(pinned)) => {
                for (addr, theirs) in pinned {
                    tracing::warn!(endpoint = %endpoint, address = %addr, pinned = %crate::kernel::neigh_probe::mac_text(&theirs), container = %mac_text, "someone pinned the container's address to another MAC on the shim: left as it is (this host cannot reach the container at that address)");
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %endpoint, mac = %mac_text, error = %e, "could not set this host's neighbour entry for the container: the first packets to it wait for ARP / NDP")
            }
        }
    }

    /// Holds a just-joined endpoint until its address is live, when a
    /// watcher is set, Docker named a sandbox and the network announces
    /// endpoints (a subnet announcement is not the container's to hold).
    fn watch_address(&mut self, network: &NetworkSpec, spec: &EndpointSpec, sandbox: &str) {
        use crate::model::network::Announce;
        let Some(start) = &self.watcher else {
            return;
        };
        if sandbox.is_empty() || network.internal || network.announce != Announce::Endpoint {
            return;
        }
        self.tickets += 1;
        self.pending.insert(spec.id.clone(), self.tickets);
        start(LiveRequest {
            network: network.id.clone(),
            endpoint: spec.id.clone(),
            ticket: self.tickets,
            sandbox: sandbox.to_string(),
            addrs: spec.addrs().collect(),
            routes: spec
                .addrs()
                .map(|a| match a {
                    IpAddr::V4(_) => ipnet::IpNet::V4(Default::default()),
                    IpAddr::V6(_) => ipnet::IpNet::V6(Default::default()),
                })
                .collect(),
            tell_neighbours: network.dataplane.is_l2(),
        });
    }

    /// Rebuilds the view from the whole state and publishes it if it
    /// changed: after network changes, restores and repairs (O(n), rare).
    fn publish(&mut self) {
        let view = View::from_state(&self.state, &self.unavailable, &self.pending);
        if view != self.current {
            self.current = view;
            self.view.send_replace(Arc::new(self.current.clone()));
        }
    }

    /// Publishes the view after one endpoint was created, joined, left or
    /// deleted: only the entries for its addresses are decided again.
    fn publish_endpoint(&mut self, spec: &EndpointSpec) {
        let mut changed = false;
        for addr in spec.addrs() {
            changed |= self
                .current
                .update_for(&self.state, &self.unavailable, &self.pending, addr);
        }
        if changed {
            self.view.send_replace(Arc::new(self.current.clone()));
        }
    }

    /// Makes a network's kernel side exist ([`ensure_network`]) with this
    /// instance's marks; what it creates is pushed on `undo`.
    fn ensure_network(
        &mut self,
        spec: &NetworkSpec,
        new_shim: NewShim,
        undo: &mut Undo,
    ) -> Result<Option<String>> {
        ensure_network(
            &mut self.kernel,
            &mut self.ipvlan,
            &self.marks,
            (&self.uplinks, &self.port),
            spec,
            new_shim,
            undo,
        )
    }

    /// Writes the whole state as a fresh snapshot (start-up repairs).
    fn save(&mut self) -> Result<()> {
        self.store.save(&self.state)?;
        Ok(())
    }

    /// Makes one change durable (one journal record, now and then a
    /// compaction) and applies it to the in-memory state. On error neither
    /// changed: nothing of it is on disk, nor ever replayed.
    fn commit(&mut self, rec: &Record) -> Result<()> {
        self.store.commit(&mut self.state, rec)?;
        Ok(())
    }

    fn network(&self, id: &str) -> Result<&NetworkRecord> {
        self.state
            .networks
            .get(id)
            .ok_or_else(|| DriverError::UnknownNetwork(id.to_string()))
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
}
