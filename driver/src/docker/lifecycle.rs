//! The driver's life: start, restore after its own downtime, repair.
//!
//! In: the state directory ([`Store`]), a [`LinkKernel`], and time: a
//! repair round every `REPAIR_EVERY` (2 s). Out: a [`Driver`] whose kernel side
//! matches its state, and the first View. At start it re-checks the world:
//! a state file from before link marks has its links adopted by record;
//! endpoints whose sandbox is gone are no longer announced (the evidence goes
//! to [`crate::view::decide`]; what Docker says of their containers is added
//! by [`Driver::forget_stopped`] before the first view goes out); missing VLAN parents and shims are made
//! again; marked links no record owns are swept. Networks whose parent is
//! missing answer Docker with an error and are repaired by
//! [`Driver::repair`] once the parent is back; shims someone set down are
//! put back. Logs, never fails: a driver that cannot fix one network must
//! still serve the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::{Driver, HostParents, Result};
use crate::error::DriverError;
use crate::kernel::{LinkKernel, LinkKind};
use crate::model::names::{self, short_id, Marks, Role};
use crate::model::network::{EndpointSpec, NetworkSpec};
use crate::model::state;
use crate::provision::links::{self, Expect};
use crate::provision::network::{owned_marks, NewShim, Undo};
use crate::provision::port;
use crate::provision::sysctl;
use crate::rib::flush::flush;
use crate::rib::table::RouteTable;
use crate::store::Store;
use crate::view::decide::{
    decide, judge_by_docker, judge_restart, Address, Boot, Decision, DockerSays, Evidence, Health,
    Looker, Sandbox,
};
use crate::view::View;

impl<K: LinkKernel> Driver<K> {
    /// Loads the state and restores what the host needs for it (parents,
    /// shims), without touching links that running containers use.
    pub fn start(
        store: Store,
        kernel: K,
        default_parent: Option<String>,
    ) -> Result<(Driver<K>, watch::Receiver<Arc<View>>)> {
        Driver::start_on(store, kernel, default_parent, read_boot_id())
    }

    /// [`Driver::start`] on the boot `boot_id` (`None`: unknown).
    pub fn start_on(
        store: Store,
        kernel: K,
        default_parent: Option<String>,
        boot_id: Option<String>,
    ) -> Result<(Driver<K>, watch::Receiver<Arc<View>>)> {
        let parents = HostParents {
            default_parent,
            ..HostParents::default()
        };
        Driver::start_with(store, kernel, parents, boot_id)
    }

    /// [`Driver::start_on`] with the host's parents: `--parent`, or the
    /// uplinks of dual-uplink mode (`--uplink`).
    pub fn start_with(
        store: Store,
        kernel: K,
        parents: HostParents,
        boot_id: Option<String>,
    ) -> Result<(Driver<K>, watch::Receiver<Arc<View>>)> {
        let HostParents {
            default_parent,
            uplinks,
            port,
        } = parents;
        let mut store = store;
        let (mut state, replayed) = store.load_replayed()?;
        let (marks, fresh) = identity(&mut state)?;
        let (tx, rx) = watch::channel(Arc::new(View::default()));
        let mut driver = Driver {
            state,
            store,
            kernel,
            marks,
            default_parent,
            uplinks,
            port,
            ipvlan: None,
            unavailable: BTreeMap::new(),
            parents_lost: 0,
            port_repairs: 0,
            port_deep_at: None,
            view: tx,
            current: View::default(),
            watcher: None,
            pending: Default::default(),
            tickets: 0,
        };
        info!(instance = %driver.marks.instance(), new = fresh, "this instance's identity (its links' marks carry it)");
        if fresh {
            // Before any link carries it: an identity lost in a crash would
            // leave links that no instance may ever touch again.
            driver.save()?;
        }
        if driver.state.version < state::VERSION {
            driver.adopt_unmarked();
        } else if replayed.records > 0 || replayed.torn_bytes > 0 || replayed.stale {
            // Start from a fresh snapshot: one O(n) write per start, and a
            // state directory that an earlier version can read.
            if let Err(e) = driver.save() {
                warn!(error = %e, "could not compact the state journal at start; appending to it");
            }
        }
        driver.forget_dead_sandboxes(boot_id.as_deref());
        driver.record_boot(boot_id)?;
        driver.restore();
        Ok((driver, rx))
    }

    /// Records this boot's id, before anything else is journaled: a state
    /// whose recorded boot is not this one says every sandbox in it is gone,
    /// so a start that cannot record it refuses to run.
    fn record_boot(&mut self, boot_id: Option<String>) -> Result<()> {
        if boot_id.is_none() || self.state.host.boot_id == boot_id {
            return Ok(());
        }
        let host = state::HostRecord {
            boot_id,
            ..self.state.host.clone()
        };
        self.commit(&state::Record::Host(host)).map_err(|e| {
            DriverError::Internal(format!(
                "cannot record this boot in the state ({e}); without it a later start would take \
                 every container for dead: fix the state directory and start again"
            ))
        })
    }

    /// The health gate's verdicts persisted in the endpoints' records, for
    /// a restarted gate to start from (see [`crate::health`]).
    pub fn remembered_health(&self) -> Vec<(String, state::HealthRecord)> {
        self.state
            .networks
            .values()
            .flat_map(|n| n.endpoints.iter())
            .filter_map(|(id, e)| Some((id.clone(), e.health.clone()?)))
            .collect()
    }

    /// Persists the health gate's changed verdicts in the endpoints' records
    /// (one journal record each; endpoints gone since are skipped). Logs,
    /// never fails: a verdict not persisted costs only a slower restart.
    pub fn remember_health(&mut self, changes: Vec<(String, Option<state::HealthRecord>)>) {
        for (endpoint, health) in changes {
            let found = self.state.networks.iter().find_map(|(net, n)| {
                let e = n.endpoints.get(&endpoint)?;
                Some((net.clone(), e))
            });
            let Some((network, e)) = found else { continue };
            if e.health == health {
                continue;
            }
            let rec = state::Record::PutEndpoint {
                network,
                endpoint: state::EndpointRecord {
                    health,
                    ..e.clone()
                },
            };
            if let Err(err) = self.commit(&rec) {
                warn!(endpoint = %short_id(&endpoint), error = %err, "could not persist the health verdict; a restart waits for Docker for this endpoint");
            }
        }
    }

    /// Records the value of each host sysctl that provisioning `spec` may
    /// change (see [`sysctl::planned`]) and that no earlier change recorded,
    /// before it changes: `cleanup` puts these values back.
    pub(super) fn remember_sysctls(&mut self, spec: &NetworkSpec) -> Result<()> {
        let mut host = self.state.host.clone();
        // A container port's forwarding is switched on the uplinks.
        let parents = match spec.parent.port {
            true => self.uplinks.clone(),
            false => vec![spec.parent.name.clone()],
        };
        let planned = parents.iter().flat_map(|p| sysctl::planned(spec, p));
        for path in planned.collect::<Vec<_>>() {
            if host.sysctls.contains_key(&path) {
                continue;
            }
            // Absent (an older kernel, a parent not there yet): nothing to change.
            if let Ok(Some(value)) = self.kernel.sysctl(&path) {
                host.sysctls.insert(path, value);
            }
        }
        if host == self.state.host {
            return Ok(());
        }
        self.commit(&state::Record::Host(host))
    }

    /// Records the protocol tag this run's routes carry (`None`: BGP off).
    pub fn record_route_protocol(&mut self, protocol: Option<u8>) -> Result<()> {
        if self.state.host.route_protocol == protocol {
            return Ok(());
        }
        let host = state::HostRecord {
            route_protocol: protocol,
            ..self.state.host.clone()
        };
        self.commit(&state::Record::Host(host))
    }

    /// Routes of an earlier run that this one will not own go at start: with
    /// BGP off (`protocol` `None`, `--gobgp none`), or when the protocol
    /// number differs from the one the state recorded, every route carrying
    /// the recorded one is deleted from `table`. A plain restart (the same
    /// protocol) keeps them: that is what makes restarts hitless. This run's
    /// protocol is recorded once its predecessor's routes are gone (a failed
    /// flush keeps the old record, so the next start tries again). Logs,
    /// never fails.
    pub fn flush_earlier_routes<T: RouteTable>(&mut self, table: &mut T, protocol: Option<u8>) {
        let record = |d: &mut Self| {
            if let Err(e) = d.record_route_protocol(protocol) {
                warn!(error = %e, "could not record the route protocol in the state");
            }
        };
        let Some(old) = self
            .state
            .host
            .route_protocol
            .filter(|p| Some(*p) != protocol)
        else {
            return record(self);
        };
        let why = match protocol {
            None => "BGP is off (--gobgp none)".to_string(),
            Some(p) => format!("the route protocol changed from {old} to {p}"),
        };
        match flush(table, old, false) {
            Ok(f) if f.failed.is_empty() => {
                info!(
                    protocol = old,
                    routes = f.routes.len(),
                    "{why}: removed the routes an earlier run installed"
                );
                record(self);
            }
            Ok(f) => {
                for (r, e) in &f.failed {
                    warn!(route = %r.dst, error = %e, "could not remove a route of an earlier run");
                }
                warn!(
                    protocol = old,
                    removed = f.routes.len(),
                    failed = f.failed.len(),
                    "{why}: some routes of an earlier run stay; the next start tries again"
                );
            }
            Err(e) => {
                warn!(protocol = old, error = %e, "{why}: could not list the routes of an earlier run; the next start tries again")
            }
        }
    }

    /// Re-checks the world after the driver's own downtime: recreates
    /// missing VLAN parents and shims, deletes marked links that no record
    /// owns. Logs, never fails: a driver that cannot fix one network must
    /// still serve the others.
    fn restore(&mut self) {
        let ids: Vec<String> = self.state.networks.keys().cloned().collect();
        for id in &ids {
            let spec = self.state.networks[id].spec.clone();
            if let Err(e) = self.remember_sysctls(&spec) {
                warn!(network = %spec.short_id(), error = %e, "could not record the host settings before changing them; `cleanup` cannot put them back");
            }
            let mut undo = Undo::default();
            match self.ensure_network(&spec, NewShim::Trust, &mut undo) {
                Ok(shim) => {
                    info!(network = %spec.short_id(), shim = ?shim, "network restored");
                    let joined: Vec<EndpointSpec> = self.state.networks[id]
                        .endpoints
                        .values()
                        .filter(|e| e.joined)
                        .map(|e| e.spec.clone())
                        .collect();
                    for e in &joined {
                        if let Err(err) =
                            port::add_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, e)
                        {
                            warn!(network = %spec.short_id(), error = %err, "could not restore an endpoint's route on the container port (retried by the repair loop)");
                        }
                    }
                }
                Err(e) => {
                    undo.run(&mut self.kernel);
                    warn!(network = %spec.short_id(), error = %e, "could not restore the network; Docker's calls on it fail until it is repaired (retried every few seconds)");
                    self.unavailable.insert(id.clone(), e.to_string());
                }
            }
        }
        let owned = owned_marks(&self.state, &self.marks);
        match links::sweep(&mut self.kernel, &self.marks, &owned) {
            Ok(swept) => {
                for l in swept.deleted {
                    info!(link = %l, "deleted a link of ours that no record owns");
                }
                for l in swept.adopted {
                    info!(link = %l, "a link of an earlier version that our state names: re-marked with this instance's identity");
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
                try_adopt(&mut self.kernel, shim, &self.marks.mark(Role::Shim, &id));
            }
            for (ep_id, ep) in &rec.endpoints {
                let mark = self.marks.mark(Role::Endpoint, ep_id);
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
    /// must not be announced. Gone only on evidence ([`judge_restart`]): a
    /// reboot since the recorded boot, or the namespace file absent from a
    /// readable directory that holds others while some sandbox is alive. A
    /// look that proves nothing keeps the endpoint announced, and is never
    /// written to the state. The record stays for Docker's Leave and
    /// DeleteEndpoint, which then succeed.
    fn forget_dead_sandboxes(&mut self, boot_id: Option<&str>) {
        let boot = match (self.state.host.boot_id.as_deref(), boot_id) {
            (Some(was), Some(now)) if was != now => Boot::Rebooted,
            (Some(_), Some(_)) => Boot::Same,
            _ => Boot::Unknown,
        };
        let mut looker = Looker::default();
        let mut joined: Vec<(String, String, Sandbox)> = Vec::new();
        for (net_id, net) in &self.state.networks {
            for (ep_id, ep) in net.endpoints.iter().filter(|(_, e)| e.joined) {
                joined.push((net_id.clone(), ep_id.clone(), looker.look(&ep.sandbox)));
            }
        }
        let mut looks: Vec<Sandbox> = joined.iter().map(|j| j.2).collect();
        if judge_restart(&mut looks, boot) {
            error!(
                endpoints = looks.len(),
                "EVERY joined endpoint's sandbox seems gone at once: the driver is probably looking in the wrong place \
                 (Docker's exec root not mounted here, or another --exec-root) rather than every container having died; \
                 NOT believed: all of them stay announced. If they really died, Docker's Leave/DeleteEndpoint (or a \
                 reboot) removes them"
            );
        }
        if boot == Boot::Rebooted {
            warn!(endpoints = looks.len(), "the host rebooted since the driver last ran: every sandbox recorded before is gone; none of them is announced");
        }
        let mut changed = false;
        for ((net_id, ep_id, _), look) in joined.iter().zip(looks) {
            let Some(ep) = self
                .state
                .networks
                .get_mut(net_id)
                .and_then(|n| n.endpoints.get_mut(ep_id))
            else {
                continue;
            };
            match (after_downtime(look), look) {
                (Decision::Hold(why), _) => {
                    warn!(endpoint = %short_id(ep_id), address = %ep.spec.addresses_text(), sandbox = %ep.sandbox, why, "the endpoint's container died while the driver was down: no longer announced");
                    ep.joined = false;
                    changed = true;
                }
                (Decision::Announce, Sandbox::Unknown(why)) => {
                    warn!(endpoint = %short_id(ep_id), address = %ep.spec.addresses_text(), sandbox = %ep.sandbox, why, "cannot tell whether the endpoint's sandbox is alive: announced as before");
                }
                (Decision::Announce, _) => {}
            }
        }
        if changed {
            if let Err(e) = self.save() {
                warn!(error = %e, "could not save the state after forgetting dead sandboxes");
            }
        }
    }

    /// The endpoints still joined after the start's own look (network ID,
    /// endpoint ID), to ask Docker about ([`super::restart_check`]): those
    /// with a recorded sandbox.
    pub fn joined_at_start(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (net_id, net) in &self.state.networks {
            for (ep_id, _) in net
                .endpoints
                .iter()
                .filter(|(_, e)| e.joined && !e.sandbox.is_empty())
            {
                out.push((net_id.clone(), ep_id.clone()));
            }
        }
        out
    }

    /// Adds Docker's word (`says`, one per endpoint of `asked`) to the
    /// start's look at each sandbox: an endpoint whose container Docker
    /// says stopped, or that no container holds, is no longer announced
    /// (its record stays for Docker's Leave and DeleteEndpoint); Docker
    /// unreachable or unsure changes nothing. Publishes the view when
    /// something changed. Returns how many endpoints it forgot.
    pub fn forget_stopped(&mut self, asked: &[(String, String)], says: &[DockerSays]) -> usize {
        let mut looker = Looker::default();
        let mut forgot = 0;
        for ((net_id, ep_id), said) in asked.iter().zip(says) {
            let Some(ep) = self
                .state
                .networks
                .get_mut(net_id)
                .and_then(|n| n.endpoints.get_mut(ep_id))
                .filter(|e| e.joined)
            else {
                continue;
            };
            let look = judge_by_docker(looker.look(&ep.sandbox), said);
            match (after_downtime(look), said) {
                (Decision::Hold(why), _) => {
                    warn!(endpoint = %short_id(ep_id), address = %ep.spec.addresses_text(), sandbox = %ep.sandbox, why, docker = ?said, "Docker says the endpoint's container stopped, or no container holds it, since the driver went down: no longer announced");
                    ep.joined = false;
                    forgot += 1;
                }
                (Decision::Announce, DockerSays::Unknown(why)) => {
                    warn!(endpoint = %short_id(ep_id), address = %ep.spec.addresses_text(), why, "cannot ask Docker whether the endpoint's container still runs: announced as before");
                }
                (Decision::Announce, _) => {}
            }
        }
        if forgot > 0 {
            if let Err(e) = self.save() {
                warn!(error = %e, "could not save the state after forgetting stopped containers");
            }
            self.publish();
        }
        forgot
    }

    /// Notices parents that disappeared while the driver ran (see
    /// [`Driver::notice_lost_parents`]), retries the networks that cannot
    /// serve (their parent is missing) and publishes the view when one comes
    /// back; puts back the shims of available networks that lost their state
    /// (see [`Driver::restore_shims`]). Cheap when all is well (one link
    /// dump); meant to run every few seconds. Returns how many networks
    /// came back.
    pub fn repair(&mut self) -> usize {
        let lost = self.notice_lost_parents();
        self.restore_shims();
        self.restore_ports();
        // Those just lost are tried from the next round on.
        let ids: Vec<String> = self
            .unavailable
            .keys()
            .filter(|id| !lost.contains(*id))
            .cloned()
            .collect();
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

    /// A network whose parent interface is gone (deleted, renamed away)
    /// while the driver runs cannot serve: it is marked unavailable (its
    /// announcements withdrawn, Docker's calls on it answered with the
    /// reason), logged and counted ([`Driver::parents_lost`]), and repaired
    /// by the next rounds once the parent is back. Without this, only the
    /// next Join on it would notice. Returns the networks it marked.
    pub fn notice_lost_parents(&mut self) -> Vec<String> {
        let watched: Vec<(String, String)> = self
            .state
            .networks
            .values()
            .filter(|n| !self.unavailable.contains_key(&n.spec.id))
            .map(|n| (n.spec.id.clone(), n.spec.parent.name.clone()))
            .collect();
        let mut lost = Vec::new();
        if watched.is_empty() {
            return lost;
        }
        let present: std::collections::BTreeSet<String> = match self.kernel.links() {
            Ok(links) => links.into_iter().map(|l| l.name).collect(),
            Err(e) => {
                debug!(error = %e, "could not list links to check the parents");
                return lost;
            }
        };
        for (id, parent) in watched {
            if present.contains(&parent) {
                continue;
            }
            let endpoints = self.state.networks[&id]
                .endpoints
                .values()
                .filter(|e| e.joined)
                .count();
            warn!(network = %short_id(&id), parent = %parent, joined_endpoints = endpoints, "the network's parent interface disappeared while the driver ran: the network is unavailable and announces nothing until the parent is back (containers on it lost their links if it was deleted; restart them)");
            self.unavailable.insert(
                id.clone(),
                format!("its parent interface {parent} disappeared while the driver ran; bring it back (or recreate it)"),
            );
            self.parents_lost += 1;
            lost.push(id);
        }
        if !lost.is_empty() {
            self.publish();
        }
        lost
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
            match self.ensure_network(&spec, NewShim::Trust, &mut undo) {
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

    /// Container ports (dual-uplink mode) of available networks that are
    /// down, lost their mark or lack a gateway address are made whole
    /// again, and counted ([`Driver::port_repairs`]). A port that is gone
    /// took its containers' links with it: [`Driver::notice_lost_parents`]
    /// handles that. Returns how many networks' ports were fixed.
    pub fn restore_ports(&mut self) -> usize {
        let specs: Vec<(NetworkSpec, Vec<EndpointSpec>)> = self
            .state
            .networks
            .values()
            .filter(|n| n.spec.parent.port && !self.unavailable.contains_key(&n.spec.id))
            .map(|n| {
                let joined = n.endpoints.values().filter(|e| e.joined);
                (n.spec.clone(), joined.map(|e| e.spec.clone()).collect())
            })
            .collect();
        if specs.is_empty() {
            return 0;
        }
        let addrs = match self.kernel.addresses() {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "could not list addresses to check the container ports");
                return 0;
            }
        };
        let mut fixed = 0;
        // The rules and routes (dumps of every table) every PORT_DEEP_EVERY.
        let now = std::time::Instant::now();
        let deep = self
            .port_deep_at
            .is_none_or(|t| now.duration_since(t) >= PORT_DEEP_EVERY);
        if deep {
            self.port_deep_at = Some(now);
        }
        for (spec, joined) in specs {
            let k = &mut self.kernel;
            if port::whole(k, &self.marks, &self.port, &spec, (&joined, deep), &addrs) {
                continue;
            }
            let mut undo = Undo::default();
            let ensured = self
                .ensure_network(&spec, NewShim::Trust, &mut undo)
                .and_then(|_| {
                    for e in &joined {
                        port::add_endpoint(&mut self.kernel, &self.marks, &self.port, &spec, e)?;
                    }
                    Ok(())
                });
            match ensured {
                Ok(()) => {
                    fixed += 1;
                    self.port_repairs += 1;
                    warn!(network = %spec.short_id(), port = %spec.parent.name, "the container port was down, unmarked or missing a gateway address: repaired");
                }
                Err(e) => {
                    undo.run(&mut self.kernel);
                    warn!(network = %spec.short_id(), port = %spec.parent.name, error = %e, "could not repair the container port");
                }
            }
        }
        fixed
    }

    fn try_repair(&mut self, spec: &NetworkSpec) -> Result<()> {
        let mut undo = Undo::default();
        match self.ensure_network(spec, NewShim::Trust, &mut undo) {
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
    pub(super) fn require_available(&mut self, network: &str) -> Result<()> {
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
}

/// This instance's marks from the state's identity; a state without one
/// (new, or from an earlier version) gets a fresh one (`true`: to be saved
/// before any link carries it).
fn identity(state: &mut state::State) -> Result<(Marks, bool)> {
    if let Some(id) = &state.instance {
        return Marks::new(id).map(|m| (m, false)).ok_or_else(|| {
            DriverError::Internal(format!(
                "the state names the instance identity {id:?}, which is not one ({} lowercase hex digits): restore the state file from a backup",
                names::INSTANCE_CHARS
            ))
        });
    }
    let id = crate::instance::new_id()
        .map_err(|e| DriverError::Internal(format!("cannot make an instance identity: {e}")))?;
    let marks = Marks::new(&id).ok_or_else(|| {
        DriverError::Internal(format!("made an invalid instance identity {id:?}"))
    })?;
    state.instance = Some(id);
    Ok((marks, true))
}

/// The decision on an endpoint joined before this start, given what is
/// known of its sandbox: its address is long live, and the health gate
/// (when on) decides later, on its own.
fn after_downtime(look: Sandbox) -> Decision {
    decide(&Evidence {
        joined: true,
        sandbox: look,
        address: Address::Ready,
        health: Health::Ungated,
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), if it can be read.
pub fn read_boot_id() -> Option<String> {
    match std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Err(e) => {
            warn!(error = %e, "cannot read the boot id: a reboot cannot be told from the state");
            None
        }
    }
}

/// How often the container ports' rules and routes are read back (the
/// links, MACs and flags: every repair round).
const PORT_DEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How often networks that could not be restored (their parent was missing)
/// are retried.
const REPAIR_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Retries unavailable networks until `stop` turns true. The driver does
/// synchronous netlink, so each round runs on a blocking thread.
pub async fn repair_loop(driver: Arc<Mutex<Driver>>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REPAIR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let d = driver.clone();
        let round = tokio::task::spawn_blocking(move || {
            let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
            d.repair()
        });
        if let Err(e) = round.await {
            warn!(error = %e, "repair round failed");
        }
    }
}
