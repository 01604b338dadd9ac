//! What the driver remembers across its own restarts, as domain values.
//!
//! In: each change as a [`Record`] (a network or an endpoint put or removed),
//! from the Docker operations or replayed from the journal. Out: the
//! [`State`] — networks, their endpoints, the links made for them, the
//! recently deleted IDs, and what it recorded about the host (boot, route
//! protocol, the sysctls it changed: [`HostRecord`]) — changed only by
//! [`State::apply`], after [`State::check`]. The serde names
//! are the state file's format; how it is written and read back is
//! [`crate::store`]'s business. No I/O here.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::network::{EndpointSpec, NetworkSpec};

/// 2: links carry our mark. A file of version 1 records links made before
/// marks existed; the driver adopts those once (see [`EndpointRecord::unmarked`]).
pub const VERSION: u32 = 2;
/// How many deleted IDs are remembered so that a replayed delete is harmless.
const TOMBSTONES: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Recently deleted network and endpoint IDs (replays of their deletion succeed).
    #[serde(default)]
    pub deleted: VecDeque<String>,
    /// Unix time `ipvlan-bgp drain` was asked for, while the host is
    /// drained (graceful shutdown of its announcements); written with a
    /// snapshot, never a journal record, so older drivers still read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<u64>,
    /// The identity this driver instance marks its links with
    /// ([`super::names::Marks`]): made at the first start and kept, so that
    /// another instance (another state directory) never takes its links.
    /// Absent in files of earlier versions, whose links carry marks
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What the driver recorded about the host itself.
    #[serde(default, skip_serializing_if = "HostRecord::is_empty")]
    pub host: HostRecord,
}

/// What the driver remembers about the host rather than about Docker's
/// networks: the evidence a restart needs, and what `cleanup` undoes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    /// `/proc/sys/kernel/random/boot_id` when the driver last started: a
    /// different one at the next start means the host rebooted, and every
    /// sandbox recorded before is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The protocol number the driver's kernel routes carry (`None`: BGP
    /// off, or not recorded yet). A start with another one (or with BGP
    /// off) flushes the routes carrying this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_protocol: Option<u8>,
    /// Each sysctl the driver changed (path under /proc/sys) and its value
    /// before the first change, recorded before that change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

impl HostRecord {
    pub fn is_empty(&self) -> bool {
        self == &HostRecord::default()
    }
}

/// What Docker said about an endpoint's container, as the health gate
/// classified it (see [`crate::health`]). Persisted, so a restarted driver
/// keeps deciding as before until Docker answers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Running, no health check: announced as without the gate.
    NoCheck,
    Healthy,
    Starting,
    Unhealthy,
}

impl Verdict {
    pub fn announces(self) -> bool {
        matches!(self, Verdict::NoCheck | Verdict::Healthy)
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::NoCheck => "no health check",
            Verdict::Healthy => "healthy",
            Verdict::Starting => "starting",
            Verdict::Unhealthy => "unhealthy",
        }
    }
}

/// The health gate's last verdict on an endpoint, with the container it
/// came from: only what Docker said, never a fail-open guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub container: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub spec: NetworkSpec,
    /// The host-side link holding the gateway (L2 shim, or the L3 host link).
    pub shim: Option<String>,
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub spec: EndpointSpec,
    /// The host-side name of the container's link.
    pub link: String,
    /// Joined to a sandbox: the link exists (in the container) and is announced.
    pub joined: bool,
    #[serde(default)]
    pub sandbox: String,
    /// Its link was made before links were marked and was inside the
    /// container when the driver upgraded the state: when Docker brings it
    /// back, it is recognised by this record's name, kind and parent, once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmarked: bool,
    /// The health gate's last verdict on its container (gate on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
}

impl State {
    pub fn remember_deleted(&mut self, id: &str) {
        self.deleted.retain(|d| d != id);
        self.deleted.push_back(id.to_string());
        while self.deleted.len() > TOMBSTONES {
            self.deleted.pop_front();
        }
    }

    pub fn was_deleted(&self, id: &str) -> bool {
        self.deleted.iter().any(|d| d == id)
    }

    pub fn endpoint_count(&self) -> usize {
        self.networks.values().map(|n| n.endpoints.len()).sum()
    }
}

/// One change of the state, as the journal records it. Applying a record
/// sets what it names as a whole (a network's spec and shim, one endpoint,
/// the removal of either), so the state after replaying the journal over
/// its snapshot is the state the driver had in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// A network was created (its endpoints, if it had any, stay).
    PutNetwork {
        spec: NetworkSpec,
        shim: Option<String>,
    },
    /// A network and all its endpoints were deleted.
    RemoveNetwork { id: String },
    /// An endpoint was created, joined or left: its record as it now is.
    PutEndpoint {
        network: String,
        endpoint: EndpointRecord,
    },
    /// An endpoint was deleted.
    RemoveEndpoint { network: String, id: String },
    /// What the driver records about the host (all of it, as it now is).
    Host(HostRecord),
}

impl State {
    /// Whether `rec` fits this state (what [`State::apply`] refuses, said
    /// before anything is written): the store checks a record before it
    /// journals it, so a record that could not be replayed is never written.
    pub fn check(&self, rec: &Record) -> Result<(), String> {
        match rec {
            Record::PutNetwork { .. } => Ok(()),
            Record::RemoveNetwork { id } => match self.networks.contains_key(id) {
                true => Ok(()),
                false => Err(format!("removes network {id}, which does not exist")),
            },
            Record::PutEndpoint { network, endpoint } => {
                match self.networks.contains_key(network) {
                    true => Ok(()),
                    false => Err(format!(
                        "puts endpoint {} on network {network}, which does not exist",
                        endpoint.spec.id
                    )),
                }
            }
            Record::RemoveEndpoint { network, id } => match self.networks.contains_key(network) {
                true => Ok(()),
                false => Err(format!(
                    "removes endpoint {id} from network {network}, which does not exist"
                )),
            },
            Record::Host(_) => Ok(()),
        }
    }

    /// Applies one change; the only way the driver changes its networks
    /// and endpoints, and the way the journal is replayed. Refuses (and
    /// changes nothing) what [`State::check`] refuses.
    pub fn apply(&mut self, rec: &Record) -> Result<(), String> {
        self.check(rec)?;
        match rec {
            Record::PutNetwork { spec, shim } => {
                let net = self
                    .networks
                    .entry(spec.id.clone())
                    .or_insert_with(|| NetworkRecord {
                        spec: spec.clone(),
                        shim: None,
                        endpoints: BTreeMap::new(),
                    });
                net.spec = spec.clone();
                net.shim = shim.clone();
            }
            Record::RemoveNetwork { id } => {
                if let Some(net) = self.networks.remove(id) {
                    self.remember_deleted(id);
                    for ep in net.endpoints.keys() {
                        self.remember_deleted(ep);
                    }
                }
            }
            Record::PutEndpoint { network, endpoint } => {
                if let Some(net) = self.networks.get_mut(network) {
                    net.endpoints
                        .insert(endpoint.spec.id.clone(), endpoint.clone());
                }
            }
            Record::RemoveEndpoint { network, id } => {
                if let Some(net) = self.networks.get_mut(network) {
                    net.endpoints.remove(id);
                    self.remember_deleted(id);
                }
            }
            Record::Host(host) => self.host = host.clone(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_bounded() {
        let mut st = State::default();
        for i in 0..(TOMBSTONES + 10) {
            st.remember_deleted(&i.to_string());
        }
        assert_eq!(st.deleted.len(), TOMBSTONES);
        assert!(!st.was_deleted("0"));
        assert!(st.was_deleted(&(TOMBSTONES + 9).to_string()));
    }
}
