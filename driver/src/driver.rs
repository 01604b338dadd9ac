//! The driver core: networks and endpoints, their links, and their state.
//!
//! In: Docker operations as domain values ([`NetworkSpec`], [`EndpointSpec`],
//! IDs; the API layer parses and converts the wire format, one request at a
//! time). Out: link changes through [`crate::links`] on a [`LinkKernel`], the
//! persisted [`State`], domain answers ([`Joined`]), and a [`View`] published
//! on a watch channel after every change (what to announce, which pools to
//! accept) for the BGP side to follow.
//! Every operation validates first, then acts, and rolls back what it made if
//! a later step fails, so a failed request leaves nothing half-made. Replays
//! of a request that already took effect answer the same and change nothing.
//! At start it re-checks the world: endpoints whose sandbox is gone are no
//! longer announced, networks whose parent is missing answer Docker with an
//! error and are repaired by [`Driver::repair`] once the parent is back.
//! IPv6 rides along IPv4 everywhere: a network's IPv6 subnet is a pool and
//! (with `announce=subnet`) an announcement, each endpoint's IPv6 address a
//! /128; the shim holds the IPv6 gateway too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::DriverError;
use crate::kernel::real::Kernel;
use crate::kernel::{KernelError, LinkKernel, LinkKind};
use crate::links::{self, Expect};
use crate::model::invalid::InvalidRequest;
use crate::model::names::{self, Role};
use crate::model::network::{check_id, EndpointSpec, NetworkSpec};
use crate::model::state::{self, EndpointRecord, NetworkRecord, Record, State};
use crate::store::Store;
use crate::view::decide::{decide, Evidence, Health, Sandbox};
use crate::view::View;

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

pub struct Driver<K: LinkKernel = Kernel> {
    state: State,
    store: Store,
    kernel: K,
    default_parent: Option<String>,
    /// Whether this kernel has ipvlan, once probed.
    ipvlan: Option<bool>,
    /// Networks whose parent, VLAN or shim could not be restored, with why;
    /// Docker's calls on them fail with that reason until [`Driver::repair`]
    /// (or the call itself) restores them.
    unavailable: BTreeMap<String, String>,
    view: watch::Sender<Arc<View>>,
    /// The view last published, kept up to date change by change.
    current: View,
}

type Result<T> = std::result::Result<T, DriverError>;

/// Links an operation created, deleted in reverse if it fails before it
/// commits. Each is deleted only if it still carries the mark it got.
#[derive(Default)]
struct Undo {
    links: Vec<(String, LinkKind, Option<u32>, String)>,
}

impl Undo {
    fn push(&mut self, e: &Expect<'_>) {
        self.links
            .push((e.name.to_string(), e.kind, e.parent, e.mark.to_string()));
    }

    fn run<K: LinkKernel>(self, kernel: &mut K) {
        for (name, kind, parent, mark) in self.links.into_iter().rev() {
            let want = Expect {
                name: &name,
                kind,
                parent,
                mark: &mark,
            };
            if let Err(e) = links::delete(kernel, &want) {
                warn!(link = %name, error = %e, "rollback: could not delete link");
            }
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn vlan_kind(spec: &NetworkSpec) -> Option<(&str, LinkKind)> {
    spec.parent
        .vlan
        .as_ref()
        .map(|(lower, id)| (lower.as_str(), LinkKind::Vlan { id: *id }))
}

impl<K: LinkKernel> Driver<K> {
    /// Loads the state and restores what the host needs for it (parents,
    /// shims), without touching links that running containers use.
    pub fn start(
        store: Store,
        kernel: K,
        default_parent: Option<String>,
    ) -> Result<(Driver<K>, watch::Receiver<Arc<View>>)> {
        let mut store = store;
        let (state, replayed) = store.load_replayed()?;
        let (tx, rx) = watch::channel(Arc::new(View::default()));
        let mut driver = Driver {
            state,
            store,
            kernel,
            default_parent,
            ipvlan: None,
            unavailable: BTreeMap::new(),
            view: tx,
            current: View::default(),
        };
        if driver.state.version < state::VERSION {
            driver.adopt_unmarked();
        } else if replayed.records > 0 || replayed.torn_bytes > 0 || replayed.stale {
            // Start from a fresh snapshot: one O(n) write per start, and a
            // state directory that an earlier version can read.
            if let Err(e) = driver.save() {
                warn!(error = %e, "could not compact the state journal at start; appending to it");
            }
        }
        driver.restore();
        Ok((driver, rx))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn default_parent(&self) -> Option<&str> {
        self.default_parent.as_deref()
    }

    /// Networks that cannot serve now, with the reason.
    pub fn unavailable(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// Rebuilds the view from the whole state and publishes it if it
    /// changed: after network changes, restores and repairs (O(n), rare).
    fn publish(&mut self) {
        let view = View::from_state(&self.state, &self.unavailable);
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
                .update_for(&self.state, &self.unavailable, addr);
        }
        if changed {
            self.view.send_replace(Arc::new(self.current.clone()));
        }
    }

    /// Writes the whole state as a fresh snapshot (start-up repairs).
    fn save(&mut self) -> Result<()> {
        self.store.save(&self.state)?;
        Ok(())
    }

    /// Applies one change to the in-memory state. The caller then makes it
    /// durable with [`Driver::persist`] and undoes it if that fails.
    fn apply(&mut self, rec: &Record) -> Result<()> {
        self.state.apply(rec).map_err(DriverError::Internal)
    }

    /// Makes an applied change durable: one journal record (or, now and
    /// then, a compaction). On error nothing of it is on disk.
    fn persist(&mut self, rec: &Record) -> Result<()> {
        self.store.append(&self.state, rec)?;
        Ok(())
    }

    /// Re-checks the world after the driver's own downtime: forgets joins
    /// whose sandbox is gone, recreates missing VLAN parents and shims,
    /// deletes marked links that no record owns. Logs, never fails: a driver
    /// that cannot fix one network must still serve the others.
    fn restore(&mut self) {
        self.forget_dead_sandboxes();
        let ids: Vec<String> = self.state.networks.keys().cloned().collect();
        for id in &ids {
            let spec = self.state.networks[id].spec.clone();
            let mut undo = Undo::default();
            match self.ensure_network_links(&spec, &mut undo) {
                Ok(shim) => {
                    info!(network = %spec.short_id(), shim = ?shim, "network restored");
                }
                Err(e) => {
                    undo.run(&mut self.kernel);
                    warn!(network = %spec.short_id(), error = %e, "could not restore the network; Docker's calls on it fail until it is repaired (retried every few seconds)");
                    self.unavailable.insert(id.clone(), e.to_string());
                }
            }
        }
        let owned = self.owned_marks();
        match links::sweep(&mut self.kernel, &owned) {
            Ok(deleted) => {
                for l in deleted {
                    info!(link = %l, "deleted a link of ours that no record owns");
                }
            }
            Err(e) => warn!(error = %e, "could not list links to sweep orphans"),
        }
        self.publish();
    }

    /// A state file from before links were marked: the links its records
    /// name (shims, and container links back in the host namespace) are
    /// marked now if their kind and parent match; container links still in
    /// their container are flagged for adoption when Docker brings them back.
    /// Nothing else is adopted, whatever its name.
    fn adopt_unmarked(&mut self) {
        let mut adopted = 0;
        let ids: Vec<String> = self.state.networks.keys().cloned().collect();
        for id in ids {
            let rec = self.state.networks[&id].clone();
            let spec = &rec.spec;
            let parent = self.kernel.link(&spec.parent.name).ok().flatten();
            let parent = parent.map(|p| p.index);
            let kind = LinkKind::from(spec.dataplane);
            let mut try_adopt = |k: &mut K, name: &str, mark: &str| {
                let want = Expect {
                    name,
                    kind,
                    parent,
                    mark,
                };
                match links::adopt_unmarked(k, &want) {
                    Ok(true) => {
                        adopted += 1;
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        warn!(link = %name, error = %e, "could not mark a link of an earlier version");
                        false
                    }
                }
            };
            if let Some(shim) = &rec.shim {
                try_adopt(&mut self.kernel, shim, &names::mark(Role::Shim, &id));
            }
            for (ep_id, ep) in &rec.endpoints {
                let mark = names::mark(Role::Endpoint, ep_id);
                if !try_adopt(&mut self.kernel, &ep.link, &mark) {
                    if let Some(e) = self
                        .state
                        .networks
                        .get_mut(&id)
                        .and_then(|n| n.endpoints.get_mut(ep_id))
                    {
                        e.unmarked = true;
                    }
                }
            }
        }
        info!(
            adopted,
            "state from before link marks: marked the links its records name"
        );
        self.state.version = state::VERSION;
        if let Err(e) = self.save() {
            warn!(error = %e, "could not save the upgraded state");
        }
    }

    /// A container that died while the driver was down left its endpoint
    /// joined in the state; its sandbox (network namespace) is gone, so it
    /// must not be announced. The record stays for Docker's Leave and
    /// DeleteEndpoint, which then succeed.
    fn forget_dead_sandboxes(&mut self) {
        let mut changed = false;
        for net in self.state.networks.values_mut() {
            for ep in net.endpoints.values_mut() {
                let evidence = Evidence {
                    joined: true,
                    sandbox: Sandbox::at(&ep.sandbox),
                    health: Health::Ungated,
                };
                if ep.joined && !decide(&evidence).announces() {
                    warn!(endpoint = %short(&ep.spec.id), address = %ep.spec.addresses_text(), sandbox = %ep.sandbox, "the endpoint's sandbox is gone (its container died while the driver was down): no longer announced");
                    ep.joined = false;
                    changed = true;
                }
            }
        }
        if changed {
            if let Err(e) = self.save() {
                warn!(error = %e, "could not save the state after forgetting dead sandboxes");
            }
        }
    }

    /// The marks of every link a record owns.
    fn owned_marks(&self) -> BTreeSet<String> {
        let mut owned = BTreeSet::new();
        for n in self.state.networks.values() {
            if n.spec.has_shim() {
                owned.insert(names::mark(Role::Shim, &n.spec.id));
            }
            if n.spec.parent.vlan.is_some() {
                owned.insert(names::mark(Role::Vlan, &n.spec.parent.name));
            }
            for e in n.endpoints.keys() {
                owned.insert(names::mark(Role::Endpoint, e));
            }
        }
        owned
    }

    /// Retries the networks that could not be restored (their parent was
    /// missing) and publishes the view when one comes back; puts back the
    /// shims of available networks that lost their state (see
    /// [`Driver::restore_shims`]). Cheap when all is well; meant to run every
    /// few seconds. Returns how many networks came back.
    pub fn repair(&mut self) -> usize {
        self.restore_shims();
        let ids: Vec<String> = self.unavailable.keys().cloned().collect();
        let mut repaired = 0;
        for id in ids {
            let Some(spec) = self.state.networks.get(&id).map(|n| n.spec.clone()) else {
                self.unavailable.remove(&id);
                continue;
            };
            match self.try_repair(&spec) {
                Ok(()) => repaired += 1,
                Err(e) => {
                    debug!(network = %spec.short_id(), error = %e, "network still unavailable")
                }
            }
        }
        if repaired > 0 {
            self.publish();
        }
        repaired
    }

    /// Shims of available networks that are gone, down, or lack a gateway
    /// address are made whole again. The kernel drops them on its own: a
    /// shim set down (by hand, or by a network manager) loses its IPv6
    /// addresses (Linux keeps IPv4 ones, keep_addr_on_down=0 drops IPv6),
    /// and the containers behind it their IPv6 gateway. A carrier loss of
    /// the parent keeps both (measured on Linux 6.18). One address dump and
    /// one link lookup per shim; returns how many shims were fixed.
    pub fn restore_shims(&mut self) -> usize {
        let shims: Vec<(NetworkSpec, String)> = self
            .state
            .networks
            .values()
            .filter(|n| !self.unavailable.contains_key(&n.spec.id))
            .filter_map(|n| Some((n.spec.clone(), n.shim.clone()?)))
            .collect();
        if shims.is_empty() {
            return 0;
        }
        let addrs = match self.kernel.addresses() {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "could not list addresses to check the shims");
                return 0;
            }
        };
        let mut fixed = 0;
        for (spec, shim) in shims {
            let whole = match self.kernel.link(&shim) {
                Ok(Some(l)) => {
                    l.up && spec
                        .gateways()
                        .all(|g| addrs.iter().any(|a| a.index == l.index && a.net == g))
                }
                Ok(None) => false,
                Err(_) => continue,
            };
            if whole {
                continue;
            }
            let mut undo = Undo::default();
            match self.ensure_network_links(&spec, &mut undo) {
                Ok(_) => {
                    fixed += 1;
                    warn!(network = %spec.short_id(), shim = %shim, "the shim was gone, down or missing a gateway address (set down by hand?): restored");
                }
                Err(e) => {
                    undo.run(&mut self.kernel);
                    warn!(network = %spec.short_id(), shim = %shim, error = %e, "could not restore the shim");
                }
            }
        }
        fixed
    }

    fn try_repair(&mut self, spec: &NetworkSpec) -> Result<()> {
        let mut undo = Undo::default();
        match self.ensure_network_links(spec, &mut undo) {
            Ok(_) => {
                self.unavailable.remove(&spec.id);
                info!(network = %spec.short_id(), parent = %spec.parent.name, "network repaired: its parent is back");
                Ok(())
            }
            Err(e) => {
                undo.run(&mut self.kernel);
                self.unavailable.insert(spec.id.clone(), e.to_string());
                Err(e)
            }
        }
    }

    /// For Docker's calls on a network: an unavailable one gets one repair
    /// attempt, then the reason.
    fn require_available(&mut self, network: &str) -> Result<()> {
        if !self.unavailable.contains_key(network) {
            return Ok(());
        }
        let spec = self.network(network)?.spec.clone();
        if self.try_repair(&spec).is_ok() {
            self.publish();
            return Ok(());
        }
        Err(DriverError::Unavailable {
            network: spec.short_id().to_string(),
            reason: self.unavailable.get(network).cloned().unwrap_or_default(),
        })
    }

    fn missing_parent(name: &str) -> DriverError {
        DriverError::Invalid(InvalidRequest(format!(
            "parent interface {name} does not exist on this host; check -o parent"
        )))
    }

    fn parent_index(&mut self, spec: &NetworkSpec) -> Result<u32> {
        match self.kernel.link(&spec.parent.name)? {
            Some(l) => Ok(l.index),
            None => Err(Self::missing_parent(&spec.parent.name)),
        }
    }

    /// Makes the network's kernel objects exist: the 802.1Q parent when the
    /// parent is `lower.N` and missing (marked, shared by every network on
    /// it), the shim with the gateway address for L2 data planes and host
    /// links. Returns the shim's name. What it creates is pushed on `undo`.
    fn ensure_network_links(
        &mut self,
        spec: &NetworkSpec,
        undo: &mut Undo,
    ) -> Result<Option<String>> {
        let parent = match self.kernel.link(&spec.parent.name)? {
            // An existing parent is used as it is, whoever made it.
            Some(l) => l,
            None => match vlan_kind(spec) {
                Some((lower, kind)) => {
                    let lower_link = self.kernel.link(lower)?.ok_or_else(|| {
                        DriverError::Invalid(InvalidRequest(format!(
                            "parent {}: the interface {lower} under the VLAN does not exist on this host",
                            spec.parent.name
                        )))
                    })?;
                    let mark = names::mark(Role::Vlan, &spec.parent.name);
                    let want = Expect {
                        name: &spec.parent.name,
                        kind,
                        parent: Some(lower_link.index),
                        mark: &mark,
                    };
                    let ensured = links::ensure(&mut self.kernel, &want, None).map_err(|e| {
                        match e.errno() {
                            Some(libc::EOPNOTSUPP) => DriverError::Unsupported(format!(
                                "this kernel has no 802.1Q VLAN support (cannot create {}); load the 8021q module, or create the VLAN interface yourself and give it as parent",
                                spec.parent.name
                            )),
                            _ => DriverError::Kernel(e),
                        }
                    })?;
                    if ensured.created {
                        undo.push(&want);
                    }
                    self.kernel.set_up(ensured.link.index, true)?;
                    ensured.link
                }
                None => return Err(Self::missing_parent(&spec.parent.name)),
            },
        };
        if spec.dataplane.is_ipvlan() {
            self.check_ipvlan()?;
        }
        if !spec.has_shim() {
            return Ok(None);
        }
        if spec.gateways().next().is_none() {
            return Err(DriverError::Internal(
                "a network with a shim but no gateway passed validation".into(),
            ));
        }
        let shim = names::shim(&spec.id);
        let mark = names::mark(Role::Shim, &spec.id);
        let want = Expect {
            name: &shim,
            kind: LinkKind::from(spec.dataplane),
            parent: Some(parent.index),
            mark: &mark,
        };
        let ensured = links::ensure(&mut self.kernel, &want, None)?;
        if ensured.created {
            undo.push(&want);
        }
        let link = ensured.link;
        // IPv6 gateways skip DAD (see `add_address`), so they answer at once.
        for gateway in spec.gateways() {
            self.kernel.add_address(link.index, gateway)?;
        }
        self.kernel.set_up(link.index, true)?;
        if spec.dataplane.is_l2() {
            self.enable_forwarding(spec, &parent.name, &shim);
        }
        Ok(Some(shim))
    }

    /// An L2 shim routes for its containers: the host must forward between
    /// the shim and the parent. IPv4: `ip_forward`, host-wide and harmless.
    /// IPv6: the host-wide switch, `conf/all/forwarding`, also makes every
    /// interface a router that ignores router advertisements (accept_ra=1),
    /// so a host that configures itself by SLAAC would lose its default
    /// route: it is never flipped here. Linux 6.17+ forwards per ingress
    /// interface (`force_forwarding`): set on the shim (from the containers)
    /// and the parent (towards them). Older kernels: a warning says what
    /// the operator must decide. Logs, never fails: the network still
    /// serves its own host.
    fn enable_forwarding(&mut self, spec: &NetworkSpec, parent: &str, shim: &str) {
        if spec.subnet.is_some() {
            if let Err(e) = self.kernel.set_sysctl("net/ipv4/ip_forward", "1") {
                warn!(error = %e, "could not enable net.ipv4.ip_forward; containers will not reach other hosts");
            }
        }
        if spec.subnet6.is_none() {
            return;
        }
        if self
            .kernel
            .sysctl("net/ipv6/conf/all/forwarding")
            .ok()
            .flatten()
            .as_deref()
            == Some("1")
        {
            return;
        }
        for link in [shim, parent] {
            let path = format!("net/ipv6/conf/{link}/force_forwarding");
            match self.kernel.sysctl(&path) {
                Ok(Some(v)) if v == "1" => {}
                Ok(Some(_)) => match self.kernel.set_sysctl(&path, "1") {
                    Ok(()) => info!(
                        link,
                        "enabled IPv6 forwarding on this link only (force_forwarding)"
                    ),
                    Err(e) => {
                        warn!(link, error = %e, "could not enable IPv6 forwarding on this link; containers will not reach other hosts over IPv6")
                    }
                },
                Ok(None) | Err(_) => {
                    warn!(
                        network = %spec.short_id(),
                        "IPv6 FORWARDING IS OFF and this kernel cannot enable it per interface (force_forwarding needs Linux 6.17): \
                         containers of this network will not reach other hosts over IPv6 until the operator runs \
                         `sysctl -w net.ipv6.conf.all.forwarding=1` (first set accept_ra=2 on interfaces that use SLAAC, \
                         or they lose their default route). The driver does not flip this host-wide setting itself."
                    );
                    return;
                }
            }
        }
    }

    fn check_ipvlan(&mut self) -> Result<()> {
        let supported = match self.ipvlan {
            Some(s) => s,
            None => {
                let s = links::probe_ipvlan(&mut self.kernel)?;
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

    /// The spec of a known network (the API layer validates endpoints against it).
    pub fn network_spec(&self, id: &str) -> Result<&NetworkSpec> {
        check_id("network", id)?;
        Ok(&self.network(id)?.spec)
    }

    // ----- Docker operations -----

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
            if let Err(e) = self.ensure_network_links(&spec, &mut undo) {
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
        let mut undo = Undo::default();
        let shim = match self.ensure_network_links(&spec, &mut undo) {
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
        let applied = self.apply(&rec);
        if let Err(e) = applied.and_then(|_| self.persist(&rec)) {
            self.state.networks.remove(&spec.id);
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
        let applied = self.apply(&change);
        if let Err(e) = applied.and_then(|_| self.persist(&change)) {
            self.state.networks.insert(id.to_string(), rec.clone());
            self.state
                .deleted
                .retain(|d| d != id && !rec.endpoints.contains_key(d));
            return Err(e);
        }
        self.unavailable.remove(id);
        self.publish();
        let spec = &rec.spec;
        let parent = self.kernel.link(&spec.parent.name).ok().flatten();
        let kind = LinkKind::from(spec.dataplane);
        let mut failed = Vec::new();
        // Docker deletes endpoints first; anything left over goes too.
        let mut ours: Vec<(String, String)> = rec
            .endpoints
            .values()
            .map(|e| (e.link.clone(), names::mark(Role::Endpoint, &e.spec.id)))
            .collect();
        if let Some(shim) = &rec.shim {
            ours.push((shim.clone(), names::mark(Role::Shim, &spec.id)));
        }
        for (name, mark) in &ours {
            let want = Expect {
                name,
                kind,
                parent: parent.as_ref().map(|p| p.index),
                mark,
            };
            match links::delete(&mut self.kernel, &want) {
                Ok(_) => {}
                // Someone else's link under our name (the reason a Join was
                // refused): it stays, and is no failure of this deletion.
                Err(e @ KernelError::Conflict(_)) => {
                    warn!(link = %name, error = %e, "left a link that is not ours in place")
                }
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        // The 802.1Q parent goes with the last network on it, and only if we
        // made it (it carries our mark); one the operator made stays.
        let still_used = self
            .state
            .networks
            .values()
            .any(|n| n.spec.parent.name == spec.parent.name);
        if let (Some((_, kind)), Some(vlan), false) = (vlan_kind(spec), &parent, still_used) {
            let mark = names::mark(Role::Vlan, &spec.parent.name);
            if vlan.alias.as_deref() == Some(mark.as_str()) {
                let want = Expect {
                    name: &spec.parent.name,
                    kind,
                    parent: None,
                    mark: &mark,
                };
                match links::delete(&mut self.kernel, &want) {
                    Ok(_) => {
                        info!(link = %spec.parent.name, "deleted the VLAN parent with its last network")
                    }
                    Err(e) => failed.push(format!("{}: {e}", spec.parent.name)),
                }
            }
        }
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
                    short(&spec.id)
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
                    short(&other.spec.id),
                    other.sandbox
                )));
            }
            let stale = other.spec.id.clone();
            warn!(endpoint = %short(&stale), address = %spec.addresses_text(), "removing a stale endpoint whose address Docker handed out again");
            self.delete_endpoint(network_id, &stale)?;
        }
        let link = names::endpoint(&spec.id);
        if self.state.networks.values().any(|n| {
            n.endpoints.values().any(|e| e.link == link) || n.shim.as_deref() == Some(&link)
        }) {
            return Err(DriverError::Conflict(format!(
                "endpoint {} collides with another endpoint's link name {link}",
                short(&spec.id)
            )));
        }
        let ep_id = spec.id.clone();
        let rec = Record::PutEndpoint {
            network: network_id.to_string(),
            endpoint: EndpointRecord {
                spec: spec.clone(),
                link,
                joined: false,
                sandbox: String::new(),
                unmarked: false,
            },
        };
        self.apply(&rec)?;
        if let Err(e) = self.persist(&rec) {
            if let Some(n) = self.state.networks.get_mut(network_id) {
                n.endpoints.remove(&ep_id);
            }
            return Err(e);
        }
        self.publish_endpoint(&spec);
        Ok(())
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

    pub fn join(&mut self, network: &str, endpoint: &str, sandbox: &str) -> Result<Joined> {
        let (net, ep) = self.endpoint(network, endpoint)?;
        let spec = net.spec.clone();
        let ep = ep.clone();
        let joined = Joined::of(&ep.link, &spec);
        if ep.joined {
            // A replay: the link was made and may already be inside the container.
            return Ok(joined);
        }
        self.require_available(network)?;
        let parent = self.parent_index(&spec)?;
        let mark = names::mark(Role::Endpoint, &ep.spec.id);
        let want = Expect {
            name: &ep.link,
            kind: LinkKind::from(spec.dataplane),
            parent: Some(parent),
            mark: &mark,
        };
        let ensured = links::ensure(&mut self.kernel, &want, ep.spec.mac)?;
        if let Err(e) = self.set_joined(network, endpoint, Some(sandbox)) {
            if ensured.created {
                let mut undo = Undo::default();
                undo.push(&want);
                undo.run(&mut self.kernel);
            }
            return Err(e);
        }
        info!(network = %spec.short_id(), endpoint = %short(&ep.spec.id), link = %ep.link, address = %ep.spec.addresses_text(), "joined");
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
        self.set_joined(network, endpoint, None)?;
        self.publish_endpoint(&spec);
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
        let before = (e.joined, std::mem::take(&mut e.sandbox));
        e.joined = sandbox.is_some();
        e.sandbox = sandbox.unwrap_or_default().to_string();
        let rec = Record::PutEndpoint {
            network: network.to_string(),
            endpoint: e,
        };
        self.apply(&rec)?;
        if let Err(err) = self.persist(&rec) {
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
        let mark = names::mark(Role::Endpoint, endpoint);
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
        self.apply(&rec)?;
        if let Err(e) = self.persist(&rec) {
            self.state.deleted.retain(|d| d != endpoint);
            if let Some(n) = self.state.networks.get_mut(network) {
                n.endpoints.insert(endpoint.to_string(), ep);
            }
            return Err(e);
        }
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
    pub fn external_connectivity(&self, network: &str, endpoint: &str) -> Result<()> {
        if self.state.was_deleted(endpoint) {
            return Ok(());
        }
        self.endpoint(network, endpoint).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use ipnet::IpNet;

    use crate::kernel::fake::{FakeKernel, Op};
    use crate::model::attrs::RouteAttrs;
    use crate::model::network::Announce;
    use crate::model::network::{Dataplane, IpvlanFlag, IpvlanMode, MacvlanMode, Parent};

    const NET_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const NET_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const EP_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const EP_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const FOREIGN: [&str; 3] = ["ibs1", "ibp94s0f0", "ibe0123456789ab"];
    const MACVLAN: Dataplane = Dataplane::Macvlan {
        mode: MacvlanMode::Bridge,
    };

    /// A network on `subnets`: IPv4, IPv6, or both separated by a comma;
    /// the first address of each is its gateway.
    fn net(id: &str, parent: &str, subnets: &str, dataplane: Dataplane) -> NetworkSpec {
        let mut spec = NetworkSpec {
            id: id.into(),
            parent: Parent::parse(parent).unwrap(),
            dataplane,
            subnet: None,
            gateway: None,
            subnet6: None,
            gateway6: None,
            announce: Announce::Endpoint,
            internal: false,
            host_link: false,
            attrs: Default::default(),
        };
        for s in subnets.split(',') {
            match s.parse().unwrap() {
                IpNet::V4(s) => {
                    spec.subnet = Some(s);
                    spec.gateway =
                        ipnet::Ipv4Net::new(s.hosts().next().unwrap(), s.prefix_len()).ok();
                }
                IpNet::V6(s) => {
                    spec.subnet6 = Some(s);
                    let first = Ipv6Addr::from(u128::from(s.network()) + 1);
                    spec.gateway6 = ipnet::Ipv6Net::new(first, s.prefix_len()).ok();
                }
            }
        }
        spec
    }

    /// An endpoint on `addrs`: IPv4, IPv6, or both separated by a comma.
    fn ep(id: &str, addrs: &str) -> EndpointSpec {
        let mut spec = EndpointSpec {
            id: id.into(),
            address: None,
            address6: None,
            mac: None,
            attrs: Default::default(),
        };
        for a in addrs.split(',') {
            match a.parse().unwrap() {
                IpNet::V4(a) => spec.address = Some(a),
                IpNet::V6(a) => spec.address6 = Some(a),
            }
        }
        spec
    }

    /// A host with eth0, eth1 and foreign links named like ours: an
    /// InfiniBand-like device, a veth, and a macvlan on eth0 (our kind and
    /// parent), none of them marked.
    fn host() -> FakeKernel {
        let fk = FakeKernel::new();
        fk.add_device("eth0", None, None, None);
        fk.add_device("eth1", None, None, None);
        fk.add_device("ibs1", None, None, None);
        fk.add_device("ibp94s0f0", Some("veth"), None, None);
        fk.add_device("ibe0123456789ab", Some("macvlan"), Some("eth0"), None);
        fk
    }

    fn start(dir: &Path, fk: &FakeKernel) -> (Driver<FakeKernel>, watch::Receiver<Arc<View>>) {
        Driver::start(Store::new(dir), fk.clone(), None).unwrap()
    }

    fn foreign_intact(fk: &FakeKernel, when: &str) {
        for f in FOREIGN {
            let l = fk.link_named(f);
            assert!(l.is_some_and(|l| l.alias.is_none()), "{f} after {when}");
        }
    }

    fn names_of(fk: &FakeKernel) -> Vec<String> {
        fk.all_links().into_iter().map(|l| l.name).collect()
    }

    #[test]
    fn foreign_links_survive_start_restore_sweep_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        foreign_intact(&fk, "start");
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        d.join(NET_A, EP_1, "/nonexistent").unwrap();
        drop(d);
        // Restore and sweep with a network and an endpoint in the state.
        let (mut d, _) = start(dir.path(), &fk);
        foreign_intact(&fk, "restore");
        assert!(fk.link_named(&names::shim(NET_A)).is_some());
        d.leave(NET_A, EP_1).unwrap();
        d.delete_endpoint(NET_A, EP_1).unwrap();
        d.delete_network(NET_A).unwrap();
        foreign_intact(&fk, "network deletion");
        drop(d);
        let _ = start(dir.path(), &fk);
        foreign_intact(&fk, "a start with an empty state");
        assert_eq!(
            names_of(&fk),
            ["lo", "eth0", "eth1", "ibs1", "ibp94s0f0", "ibe0123456789ab"]
        );
    }

    #[test]
    fn marked_orphans_are_swept_owned_links_kept() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        drop(d);
        fk.add_device(
            "ibe999999999999",
            Some("macvlan"),
            Some("eth0"),
            Some(&names::mark(Role::Endpoint, EP_2)),
        );
        fk.add_device("ibpx", Some("veth"), None, Some("ipvlan-bgp:probe:1"));
        let _ = start(dir.path(), &fk);
        assert!(fk.link_named("ibe999999999999").is_none());
        assert!(fk.link_named("ibpx").is_none());
        assert!(fk.link_named(&names::shim(NET_A)).is_some());
        foreign_intact(&fk, "sweep");
    }

    #[test]
    fn our_name_without_our_mark_is_refused_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let link = names::endpoint(EP_1);
        fk.add_device(&link, Some("macvlan"), Some("eth0"), None);
        fk.add_device(&names::shim(NET_B), Some("macvlan"), Some("eth0"), None);
        let (mut d, view) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        let e = d.join(NET_A, EP_1, "/x").unwrap_err().to_string();
        assert!(e.contains(&link) && e.contains("not ours"), "{e}");
        assert!(fk.link_named(&link).unwrap().alias.is_none());
        assert!(!d.state().networks[NET_A].endpoints[EP_1].joined);
        assert!(view.borrow().announcements.is_empty());
        // DeleteEndpoint drops our record and leaves their link.
        d.delete_endpoint(NET_A, EP_1).unwrap();
        assert!(fk.link_named(&link).is_some());
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        d.delete_network(NET_A).unwrap();
        assert!(fk.link_named(&link).unwrap().alias.is_none());
        let e = d
            .create_network(net(NET_B, "eth0", "10.1.2.0/24", MACVLAN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not ours"), "{e}");
        assert!(!d.state().networks.contains_key(NET_B));
        assert!(fk.link_named(&names::shim(NET_B)).unwrap().alias.is_none());
    }

    #[test]
    fn a_shared_vlan_is_created_once_and_goes_with_the_last_network() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_network(net(NET_B, "eth1.10", "10.1.2.0/24", MACVLAN))
            .unwrap();
        let vlans: Vec<String> = fk
            .created()
            .into_iter()
            .filter(|n| n == "eth1.10")
            .collect();
        assert_eq!(vlans.len(), 1);
        let vlan = fk.link_named("eth1.10").unwrap();
        assert_eq!(vlan.kind.as_deref(), Some("vlan"));
        assert_eq!(vlan.alias, Some(names::mark(Role::Vlan, "eth1.10")));
        // The network that created it goes first: the VLAN stays.
        d.delete_network(NET_A).unwrap();
        assert!(fk.link_named("eth1.10").is_some());
        assert!(fk.link_named(&names::shim(NET_B)).is_some());
        d.delete_network(NET_B).unwrap();
        assert!(fk.link_named("eth1.10").is_none());
        // A VLAN the operator made stays with its last network gone.
        fk.add_device("eth1.20", Some("vlan"), Some("eth1"), None);
        d.create_network(net(NET_A, "eth1.20", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.delete_network(NET_A).unwrap();
        assert!(fk.link_named("eth1.20").is_some());
        foreign_intact(&fk, "VLAN networks");
    }

    #[test]
    fn no_vlan_support_is_said_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        fk.without("vlan");
        let (mut d, _) = start(dir.path(), &fk);
        let e = d
            .create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("802.1Q"), "{e}");
        assert!(fk.link_named("eth1.10").is_none());
    }

    #[test]
    fn reserved_subnets_are_refused_before_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        for s in [
            "0.0.0.0/8",
            "127.0.0.0/24",
            "169.254.0.0/16",
            "224.1.0.0/16",
            "240.0.0.0/24",
            "0.0.0.0/1",
        ] {
            let e = d
                .create_network(net(NET_A, "eth0", s, MACVLAN))
                .unwrap_err()
                .to_string();
            assert!(e.contains("reserved"), "{s}: {e}");
        }
        assert!(fk.created().is_empty());
        assert!(d.state().networks.is_empty());
        d.create_network(net(NET_A, "eth0", "198.51.100.0/24", MACVLAN))
            .unwrap();
    }

    #[test]
    fn failures_mid_create_network_leave_nothing() {
        // With a VLAN parent: SetAlias and SetUp hit the new VLAN, AddAddress
        // the shim made after it.
        for (op, vlan) in [
            (Op::Create, false),
            (Op::AddAddress, false),
            (Op::SetAlias, false),
            (Op::SetUp, false),
            (Op::Create, true),
            (Op::SetAlias, true),
            (Op::SetUp, true),
            (Op::AddAddress, true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let fk = host();
            let (mut d, _) = start(dir.path(), &fk);
            let before = names_of(&fk);
            let parent = if vlan { "eth1.10" } else { "eth0" };
            fk.fail_next(op, libc::ENOBUFS);
            assert!(
                d.create_network(net(NET_A, parent, "10.1.1.0/24", MACVLAN))
                    .is_err(),
                "{op:?}"
            );
            assert_eq!(names_of(&fk), before, "{op:?} vlan={vlan}");
            assert!(d.state().networks.is_empty());
            assert!(Store::new(dir.path()).load().unwrap().networks.is_empty());
        }
    }

    #[test]
    fn failures_mid_join_leave_nothing() {
        for op in [Op::Create, Op::SetAlias] {
            let dir = tempfile::tempdir().unwrap();
            let fk = host();
            let (mut d, view) = start(dir.path(), &fk);
            d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
                .unwrap();
            d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
            let before = names_of(&fk);
            fk.fail_next(op, libc::ENOMEM);
            assert!(d.join(NET_A, EP_1, "/x").is_err());
            assert_eq!(names_of(&fk), before, "{op:?}");
            assert!(!d.state().networks[NET_A].endpoints[EP_1].joined);
            assert!(view.borrow().announcements.is_empty());
            // And it works once the kernel does.
            d.join(NET_A, EP_1, "/x").unwrap();
            assert_eq!(view.borrow().announcements.len(), 1);
        }
    }

    #[test]
    fn a_dead_sandbox_is_not_announced_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sandboxes = tempfile::tempdir().unwrap();
        let alive = sandboxes.path().join("alive");
        let dead = sandboxes.path().join("dead");
        std::fs::write(&alive, "").unwrap();
        std::fs::write(&dead, "").unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
        d.join(NET_A, EP_1, alive.to_str().unwrap()).unwrap();
        d.join(NET_A, EP_2, dead.to_str().unwrap()).unwrap();
        assert_eq!(view.borrow().announcements.len(), 2);
        drop(d);
        std::fs::remove_file(&dead).unwrap();
        let (mut d, view) = start(dir.path(), &fk);
        let announced: Vec<IpNet> = view.borrow().announcements.keys().copied().collect();
        assert_eq!(announced, vec!["10.1.1.2/32".parse::<IpNet>().unwrap()]);
        assert!(!d.state().networks[NET_A].endpoints[EP_2].joined);
        // Docker's later calls for the dead container still succeed.
        d.leave(NET_A, EP_2).unwrap();
        d.delete_endpoint(NET_A, EP_2).unwrap();
        assert_eq!(view.borrow().announcements.len(), 1);
    }

    #[test]
    fn a_missing_parent_is_an_error_until_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        fk.add_device("eth5", None, None, None);
        let (mut d, _) = start(dir.path(), &fk);
        let mut spec = net(NET_A, "eth5", "10.1.1.0/24", MACVLAN);
        spec.announce = Announce::Subnet;
        d.create_network(spec).unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        drop(d);
        fk.remove_device("eth5");
        let (mut d, view) = start(dir.path(), &fk);
        assert!(d.unavailable().contains_key(NET_A));
        assert!(view.borrow().announcements.is_empty());
        let e = d.join(NET_A, EP_1, "/x").unwrap_err().to_string();
        assert!(e.contains("eth5") && e.contains("does not exist"), "{e}");
        let e = d
            .create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("eth5"), "{e}");
        assert_eq!(d.repair(), 0);
        // The parent comes back: the next repair round restores the shim.
        fk.add_device("eth5", None, None, None);
        assert_eq!(d.repair(), 1);
        assert!(d.unavailable().is_empty());
        let shim = fk.link_named(&names::shim(NET_A)).unwrap();
        assert_eq!(shim.alias, Some(names::mark(Role::Shim, NET_A)));
        assert!(shim.up);
        assert!(fk
            .all_addresses()
            .iter()
            .any(|a| a.index == shim.index && a.net == "10.1.1.1/24".parse::<IpNet>().unwrap()));
        assert_eq!(view.borrow().announcements.len(), 1);
        d.join(NET_A, EP_1, "/x").unwrap();
    }

    /// A state file of the version before marks: the links it records are
    /// adopted by record (name, kind, parent), nothing else is.
    #[test]
    fn links_of_a_state_before_marks_are_adopted_by_record() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
        d.join(NET_A, EP_1, "/nonexistent").unwrap();
        d.join(NET_A, EP_2, "/nonexistent").unwrap();
        drop(d);
        // As the earlier version left things: no marks, version 1; EP_2's
        // link is inside its container.
        let mut k = fk.clone();
        let shim = fk.link_named(&names::shim(NET_A)).unwrap();
        let l1 = fk.link_named(&names::endpoint(EP_1)).unwrap();
        k.set_alias(shim.index, "").unwrap();
        k.set_alias(l1.index, "").unwrap();
        fk.remove_device(&names::endpoint(EP_2));
        let mut store = Store::new(dir.path());
        let mut st = store.load().unwrap();
        st.version = 1;
        store.save(&st).unwrap();
        let (mut d, _) = start(dir.path(), &fk);
        assert!(d.unavailable().is_empty(), "{:?}", d.unavailable());
        assert_eq!(
            fk.link_named(&shim.name).unwrap().alias,
            Some(names::mark(Role::Shim, NET_A))
        );
        assert!(fk.link_named(&l1.name).unwrap().alias.is_some());
        assert_eq!(store.load().unwrap().version, state::VERSION);
        foreign_intact(&fk, "the upgrade");
        // Docker brings EP_2's link back, unmarked: it goes.
        fk.add_device(&names::endpoint(EP_2), Some("macvlan"), Some("eth0"), None);
        d.delete_endpoint(NET_A, EP_2).unwrap();
        assert!(fk.link_named(&names::endpoint(EP_2)).is_none());
        d.delete_endpoint(NET_A, EP_1).unwrap();
        assert!(fk.link_named(&l1.name).is_none());
    }

    #[test]
    fn ipvlan_is_refused_where_the_kernel_lacks_it() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        fk.without("ipvlan");
        let (mut d, _) = start(dir.path(), &fk);
        let l3 = Dataplane::Ipvlan {
            mode: IpvlanMode::L3,
            flag: IpvlanFlag::Bridge,
        };
        let e = d
            .create_network(net(NET_A, "eth0", "10.1.1.0/24", l3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dataplane=macvlan"), "{e}");
        foreign_intact(&fk, "the probe");
        assert_eq!(fk.all_links().len(), 6);
    }
    #[test]
    fn the_state_on_disk_follows_every_operation() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        let on_disk = |d: &Driver<FakeKernel>, when: &str| {
            assert_eq!(&Store::new(dir.path()).load().unwrap(), d.state(), "{when}");
        };
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        on_disk(&d, "create network");
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
        on_disk(&d, "create endpoints");
        d.join(NET_A, EP_1, "/x").unwrap();
        on_disk(&d, "join");
        d.leave(NET_A, EP_1).unwrap();
        on_disk(&d, "leave");
        d.delete_endpoint(NET_A, EP_1).unwrap();
        on_disk(&d, "delete endpoint");
        // Only the journal grew: no snapshot was written after the start.
        assert!(!dir.path().join(crate::store::STATE_FILE).exists());
        d.delete_network(NET_A).unwrap();
        on_disk(&d, "delete network");
        assert!(d.state().was_deleted(EP_2));
        // A restart replays the journal, then starts from a fresh snapshot.
        drop(d);
        let (d, _) = start(dir.path(), &fk);
        assert!(d.state().networks.is_empty() && d.state().was_deleted(EP_1));
        assert!(!dir.path().join(crate::store::JOURNAL_FILE).exists());
        on_disk(&d, "restart");
    }

    #[test]
    fn a_failed_append_rolls_back_each_operation() {
        type Step = fn(&mut Driver<FakeKernel>) -> Result<()>;
        let steps: [(&str, Step); 6] = [
            ("create network", |d| {
                d.create_network(net(NET_B, "eth1", "10.2.0.0/24", MACVLAN))
            }),
            ("create endpoint", |d| {
                d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24"))
            }),
            ("join", |d| d.join(NET_A, EP_1, "/x").map(|_| ())),
            ("leave", |d| d.leave(NET_A, EP_1)),
            ("delete endpoint", |d| d.delete_endpoint(NET_A, EP_1)),
            ("delete network", |d| d.delete_network(NET_A)),
        ];
        for (i, (what, step)) in steps.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let fk = host();
            let (mut d, view) = start(dir.path(), &fk);
            d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
                .unwrap();
            d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
            if i == 3 {
                d.join(NET_A, EP_1, "/x").unwrap();
            }
            let before = d.state().clone();
            let seen = view.borrow().clone();
            d.store.fail_next_append = Some(20);
            let err = step(&mut d).unwrap_err();
            assert_eq!(err.class(), "state", "{what}: {err}");
            assert_eq!(d.state(), &before, "{what}");
            assert_eq!(*view.borrow(), seen, "{what}");
            assert_eq!(Store::new(dir.path()).load().unwrap(), before, "{what}");
            // The same request succeeds once the disk does.
            step(&mut d).unwrap();
            assert_eq!(&Store::new(dir.path()).load().unwrap(), d.state(), "{what}");
        }
    }

    /// The view the driver keeps up to date endpoint by endpoint equals the
    /// view rebuilt from the whole state, after every operation: networks
    /// announcing endpoints, a subnet, an internal one, and one whose parent
    /// is gone.
    #[test]
    fn the_view_kept_change_by_change_equals_a_rebuild() {
        const NET_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
        let ids: Vec<String> = (0..8).map(|i| format!("{i:x}").repeat(64)).collect();
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        let same = |d: &Driver<FakeKernel>, what: &str| {
            assert_eq!(
                **view.borrow(),
                View::from_state(d.state(), d.unavailable()),
                "{what}"
            );
        };
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        let mut b = net(NET_B, "eth1", "10.2.0.0/24", MACVLAN);
        b.announce = Announce::Subnet;
        d.create_network(b).unwrap();
        let mut c = net(NET_C, "eth1", "10.3.0.0/24", MACVLAN);
        c.internal = true;
        d.create_network(c).unwrap();
        same(&d, "networks");
        let place = [
            (NET_A, "10.1.1.2/24"),
            (NET_A, "10.1.1.3/24"),
            (NET_A, "10.1.1.4/24"),
            (NET_B, "10.2.0.2/24"),
            (NET_B, "10.2.0.3/24"),
            (NET_C, "10.3.0.2/24"),
        ];
        for (i, (n, a)) in place.iter().enumerate() {
            d.create_endpoint(n, ep(&ids[i], a)).unwrap();
            same(&d, &format!("create {a}"));
            d.join(n, &ids[i], "/x").unwrap();
            same(&d, &format!("join {a}"));
        }
        assert_eq!(view.borrow().announcements.len(), 4);
        d.leave(NET_A, &ids[0]).unwrap();
        same(&d, "leave");
        d.delete_endpoint(NET_A, &ids[0]).unwrap();
        same(&d, "delete after leave");
        // Docker gave up on Leave: the endpoint goes while joined.
        d.delete_endpoint(NET_A, &ids[1]).unwrap();
        same(&d, "delete while joined");
        d.delete_endpoint(NET_B, &ids[3]).unwrap();
        same(&d, "delete in a subnet network");
        d.leave(NET_C, &ids[5]).unwrap();
        same(&d, "leave an internal network");
        d.delete_network(NET_B).unwrap();
        same(&d, "delete a network with an endpoint");
        // A restart whose parent is gone: Leave and DeleteEndpoint still work.
        drop(d);
        fk.remove_device("eth0");
        let (mut d, view2) = start(dir.path(), &fk);
        assert!(d.unavailable().contains_key(NET_A));
        assert_eq!(
            **view2.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
        d.leave(NET_A, &ids[2]).unwrap();
        d.delete_endpoint(NET_A, &ids[2]).unwrap();
        assert_eq!(
            **view2.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
        assert!(view2.borrow().local_endpoints.len() == 1);
    }

    /// BGP attributes reach the view: an endpoint's merged over its
    /// network's, a subnet announcement with the network's; kept change by
    /// change as a rebuild would, and the same after a restart (they are in
    /// the state records).
    #[test]
    fn route_attributes_reach_the_view_and_survive_a_restart() {
        let attrs = |c: &[u32], med: Option<u32>| RouteAttrs {
            communities: c.to_vec(),
            med,
            ..RouteAttrs::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        let mut a = net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN);
        a.attrs = attrs(&[1], Some(50));
        d.create_network(a).unwrap();
        let mut b = net(NET_B, "eth1", "10.2.0.0/24", MACVLAN);
        b.announce = Announce::Subnet;
        b.attrs = attrs(&[2], None);
        d.create_network(b).unwrap();
        let mut e1 = ep(EP_1, "10.1.1.2/24,fd00:1::2/64");
        e1.attrs = attrs(&[3], Some(10));
        d.create_endpoint(NET_A, e1).unwrap();
        d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
        assert_eq!(
            view.borrow().attrs.len(),
            1,
            "nothing joined: the subnet only"
        );
        // Sandboxes that exist, so the restart keeps announcing them.
        let sandbox = dir.path().to_str().unwrap();
        d.join(NET_A, EP_1, sandbox).unwrap();
        d.join(NET_A, EP_2, sandbox).unwrap();
        let want: BTreeMap<IpNet, RouteAttrs> = [
            ("10.1.1.2/32", attrs(&[1, 3], Some(10))),
            ("fd00:1::2/128", attrs(&[1, 3], Some(10))),
            ("10.1.1.3/32", attrs(&[1], Some(50))),
            ("10.2.0.0/24", attrs(&[2], None)),
        ]
        .into_iter()
        .map(|(p, a)| (p.parse().unwrap(), a))
        .collect();
        assert_eq!(view.borrow().attrs, want);
        assert_eq!(
            **view.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
        drop(d);
        let (d, view2) = start(dir.path(), &fk);
        assert_eq!(view2.borrow().attrs, want, "after a restart");
        let mut d = d;
        d.leave(NET_A, EP_1).unwrap();
        assert_eq!(view2.borrow().attrs.len(), 2, "left: no attributes");
        assert_eq!(
            **view2.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
    }

    fn addrs_on(fk: &FakeKernel, link: &str) -> Vec<String> {
        let index = fk.link_named(link).unwrap().index;
        let mut v: Vec<String> = fk
            .all_addresses()
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.net.to_string())
            .collect();
        v.sort();
        v
    }

    fn nets(v: &[&str]) -> BTreeSet<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Dual stack on macvlan: the shim holds both gateways, Join answers
    /// both, the view carries both host routes, pools and local addresses;
    /// IPv6 forwarding is switched on for the shim and the parent only.
    #[test]
    fn a_dual_stack_l2_network_serves_both_families() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
            .unwrap();
        let shim = names::shim(NET_A);
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
        assert_eq!(
            fk.sysctl_value(&format!("net/ipv6/conf/{shim}/force_forwarding"))
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            fk.sysctl_value("net/ipv6/conf/eth0/force_forwarding")
                .as_deref(),
            Some("1")
        );
        assert_eq!(fk.sysctl_value("net/ipv6/conf/all/forwarding"), None);
        assert_eq!(fk.sysctl_value("net/ipv4/ip_forward").as_deref(), Some("1"));
        assert_eq!(view.borrow().pools, nets(&["10.1.1.0/24", "fd00:1::/64"]));
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24,fd00:1::2/64"))
            .unwrap();
        let j = d.join(NET_A, EP_1, "/x").unwrap();
        assert_eq!(j.v4, Some(Reach::Gateway("10.1.1.1".parse().unwrap())));
        assert_eq!(j.v6, Some(Reach::Gateway("fd00:1::1".parse().unwrap())));
        let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
        assert_eq!(announced, nets(&["10.1.1.2/32", "fd00:1::2/128"]));
        let local: Vec<String> = view
            .borrow()
            .local_endpoints
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(local, ["10.1.1.2", "fd00:1::2"]);
        assert_eq!(
            **view.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
        d.leave(NET_A, EP_1).unwrap();
        assert!(view.borrow().announcements.is_empty());
        d.delete_endpoint(NET_A, EP_1).unwrap();
        assert!(view.borrow().local_endpoints.is_empty());
        // A replayed Join answers the same.
        d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24,fd00:1::3/64"))
            .unwrap();
        let j1 = d.join(NET_A, EP_2, "/x").unwrap();
        assert_eq!(d.join(NET_A, EP_2, "/x").unwrap(), j1);
    }

    /// IPv6-only on ipvlan L3: no shim, a connected IPv6 default route, no
    /// IPv4 at all, nothing forwarded; `announce=subnet` announces the prefix.
    #[test]
    fn an_ipv6_only_l3_network_gets_a_connected_default() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        let l3 = Dataplane::Ipvlan {
            mode: IpvlanMode::L3,
            flag: IpvlanFlag::Bridge,
        };
        let mut spec = net(NET_A, "eth0", "fd00:1::/64", l3);
        spec.gateway6 = None;
        d.create_network(spec).unwrap();
        assert!(fk.link_named(&names::shim(NET_A)).is_none());
        d.create_endpoint(NET_A, ep(EP_1, "fd00:1::2/64")).unwrap();
        let j = d.join(NET_A, EP_1, "/x").unwrap();
        assert_eq!((j.v4, j.v6), (None, Some(Reach::Connected)));
        let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
        assert_eq!(announced, nets(&["fd00:1::2/128"]));
        assert_eq!(view.borrow().pools, nets(&["fd00:1::/64"]));
        assert!(fk.sysctl_value("net/ipv4/ip_forward").is_none());
        let mut b = net(NET_B, "eth1", "10.2.0.0/24,fd00:2::/64", l3);
        b.announce = Announce::Subnet;
        d.create_network(b).unwrap();
        let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
        assert_eq!(
            announced,
            nets(&["fd00:1::2/128", "10.2.0.0/24", "fd00:2::/64"])
        );
        assert_eq!(
            **view.borrow(),
            View::from_state(d.state(), d.unavailable())
        );
        // The status and OperInfo show both families.
        let spec = d.network_spec(NET_B).unwrap();
        assert_eq!(spec.subnets_text(), "10.2.0.0/24, fd00:2::/64");
        assert_eq!(d.oper_info(NET_A, EP_1).unwrap().address, "fd00:1::2/64");
    }

    /// Before Linux 6.17 (no force_forwarding) the host-wide IPv6 switch is
    /// left alone: the network works on its host, the log says what to do.
    #[test]
    fn the_host_wide_ipv6_forwarding_switch_is_never_flipped() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        fk.without("force_forwarding");
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "fd00:1::/64", MACVLAN))
            .unwrap();
        assert_eq!(addrs_on(&fk, &names::shim(NET_A)), ["fd00:1::1/64"]);
        assert_eq!(fk.sysctl_value("net/ipv6/conf/all/forwarding"), None);
        assert_eq!(fk.sysctl_value("net/ipv6/conf/eth0/force_forwarding"), None);
        // IPv6-only: IPv4 forwarding is none of its business either.
        assert_eq!(fk.sysctl_value("net/ipv4/ip_forward"), None);
    }

    #[test]
    fn ipv6_subnets_of_two_networks_must_not_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
            .unwrap();
        let before = names_of(&fk);
        let e = d
            .create_network(net(NET_B, "eth0", "10.2.0.0/24,fd00:1::/48", MACVLAN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fd00:1::/48 overlaps subnet fd00:1::/64"), "{e}");
        assert_eq!(names_of(&fk), before);
        assert_eq!(d.state().networks.len(), 1);
        // Reserved IPv6 ranges are refused by the driver itself too.
        let e = d
            .create_network(net(NET_B, "eth0", "fe80::/64", MACVLAN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("link-local"), "{e}");
        d.create_network(net(NET_B, "eth0", "10.2.0.0/24,fd00:2::/64", MACVLAN))
            .unwrap();
    }

    /// The repair round puts back what a shim set down by hand lost (its
    /// IPv6 gateway), and leaves whole shims alone.
    #[test]
    fn repair_restores_a_shim_set_down_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
            .unwrap();
        let shim = names::shim(NET_A);
        assert_eq!(d.restore_shims(), 0, "a whole shim is left alone");
        fk.set_down(&shim);
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24"]);
        d.repair();
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
        assert!(fk.link_named(&shim).unwrap().up);
        assert_eq!(d.restore_shims(), 0);
        // Gone altogether: made again.
        fk.remove_device(&shim);
        assert_eq!(d.restore_shims(), 1);
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
        foreign_intact(&fk, "the repair");
    }

    /// A restart recreates a missing shim with both gateways, and puts back
    /// an IPv6 gateway the kernel dropped (a shim set down by hand loses
    /// its IPv6 addresses; measured on Linux 6.18).
    #[test]
    fn a_restart_restores_the_ipv6_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
            .unwrap();
        drop(d);
        let shim = names::shim(NET_A);
        fk.remove_device(&shim);
        let (d, _) = start(dir.path(), &fk);
        assert!(d.unavailable().is_empty());
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
        drop(d);
        fk.remove_address(&shim, "fd00:1::1/64".parse().unwrap());
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24"]);
        let (_d, _) = start(dir.path(), &fk);
        assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    }
}
