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
//! and the repairs. This file holds what both share: the [`Driver`], its
//! state's journal, and the View's publication.
//! IPv6 rides along IPv4 everywhere: a network's IPv6 subnet is a pool and
//! (with `announce=subnet`) an announcement, each endpoint's IPv6 address a
//! /128; the shim holds the IPv6 gateway too.

use std::collections::BTreeMap;
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
use crate::view::View;

pub mod lifecycle;
pub mod ops;
#[cfg(test)]
mod tests;

pub struct Driver<K: LinkKernel = Kernel> {
    state: State,
    store: Store,
    kernel: K,
    /// This instance's marks: the identity its links carry.
    marks: Marks,
    default_parent: Option<String>,
    /// Whether this kernel has ipvlan, once probed.
    ipvlan: Option<bool>,
    /// Networks whose parent, VLAN or shim could not be restored, with why;
    /// Docker's calls on them fail with that reason until [`Driver::repair`]
    /// (or the call itself) restores them.
    unavailable: BTreeMap<String, String>,
    /// Parents seen disappearing by the repair loop, counted.
    parents_lost: u64,
    view: watch::Sender<Arc<View>>,
    /// The view last published, kept up to date change by change.
    current: View,
}

type Result<T> = std::result::Result<T, DriverError>;

impl<K: LinkKernel> Driver<K> {
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

    /// The marks this instance's links carry.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// How many times a network's parent disappeared while the driver ran.
    pub fn parents_lost(&self) -> u64 {
        self.parents_lost
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
