//! A network's kernel side: its 802.1Q parent, its shim, and the rules for
//! deleting them.
//!
//! In: a [`NetworkSpec`] (or the record of a network that is gone) and a
//! [`LinkKernel`]. Out: the VLAN parent created when the parent is `lower.N`
//! and missing (marked, shared by every network on it), the shim holding the
//! gateway addresses for L2 data planes and host links, forwarding switched
//! on for them ([`super::sysctl`]), and every link created pushed on an
//! [`Undo`] so that a failing caller leaves nothing half-made. A new shim's
//! gateways are probed for on the segment first when the caller asks
//! ([`NewShim::Probe`], CreateNetwork; [`super::segment`]). Also: whether
//! this kernel has ipvlan (probed once), and the marks the state owns (what
//! a sweep keeps). Links carry this instance's [`Marks`]; a VLAN parent
//! goes only when nothing sits on it any more. Errors are the Docker
//! boundary's [`DriverError`], with what to do about them.

use std::collections::BTreeSet;

use tracing::{info, warn};

use super::links::{self, Expect};
use super::segment::probe_gateways;
use super::sysctl::enable_forwarding;
use crate::error::DriverError;
use crate::kernel::{KernelError, LinkKernel, LinkKind};
use crate::model::invalid::InvalidRequest;
use crate::model::names::{self, Marks, Role};
use crate::model::network::NetworkSpec;
use crate::model::state::{NetworkRecord, State};

type Result<T> = std::result::Result<T, DriverError>;

pub use super::links::Undo;

pub fn vlan_kind(spec: &NetworkSpec) -> Option<(&str, LinkKind)> {
    spec.parent
        .vlan
        .as_ref()
        .map(|(lower, id)| (lower.as_str(), LinkKind::Vlan { id: *id }))
}

pub fn missing_parent(name: &str) -> DriverError {
    DriverError::Invalid(InvalidRequest(format!(
        "parent interface {name} does not exist on this host; check -o parent"
    )))
}

pub fn parent_index<K: LinkKernel>(k: &mut K, spec: &NetworkSpec) -> Result<u32> {
    match k.link(&spec.parent.name)? {
        Some(l) => Ok(l.index),
        None => Err(missing_parent(&spec.parent.name)),
    }
}

/// Whether a shim that does not exist yet may take its gateway addresses
/// without asking the segment first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewShim {
    /// CreateNetwork: probe the segment for the gateways, refuse if answered.
    Probe,
    /// Restore and repair of a network that already holds its gateways.
    Trust,
}

/// Makes the network's kernel objects exist: the 802.1Q parent when the
/// parent is `lower.N` and missing (marked, shared by every network on
/// it), the shim with the gateway address for L2 data planes and host
/// links. Returns the shim's name. What it creates is pushed on `undo`.
#[allow(clippy::too_many_arguments)]
pub fn ensure_network<K: LinkKernel>(
    k: &mut K,
    ipvlan: &mut Option<bool>,
    marks: &Marks,
    (uplinks, port): (&[String], &super::port::PortConfig),
    spec: &NetworkSpec,
    new_shim: NewShim,
    undo: &mut Undo,
) -> Result<Option<String>> {
    if spec.parent.port {
        if spec.dataplane.is_ipvlan() {
            check_ipvlan(k, ipvlan, marks)?;
        }
        super::port::ensure(k, marks, uplinks, port, spec, undo)?;
        return Ok(None);
    }
    let parent = match k.link(&spec.parent.name)? {
        // An existing parent is used as it is, whoever made it.
        Some(l) => l,
        None => match vlan_kind(spec) {
            Some((lower, kind)) => {
                let lower_link = k.link(lower)?.ok_or_else(|| {
                    DriverError::Invalid(InvalidRequest(format!(
                        "parent {}: the interface {lower} under the VLAN does not exist on this host",
                        spec.parent.name
                    )))
                })?;
                let mark = marks.mark(Role::Vlan, &spec.parent.name);
                let want = Expect {
                    name: &spec.parent.name,
                    kind,
                    parent: Some(lower_link.index),
                    mark: &mark,
                };
                let ensured = links::ensure(k, &want, None).map_err(|e| {
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
                k.set_up(ensured.link.index, true)?;
                ensured.link
            }
            None => return Err(missing_parent(&spec.parent.name)),
        },
    };
    if spec.dataplane.is_ipvlan() {
        check_ipvlan(k, ipvlan, marks)?;
    }
    if new_shim == NewShim::Probe
        && !spec.dataplane.is_l2()
        && parent.kind.as_deref() == Some("dummy")
    {
        return Err(DriverError::Invalid(InvalidRequest(format!(
            "parent {} is a dummy: ipvlan L3 routes its containers' packets through the parent and receives theirs on it; a dummy drops both: use the driver's container port (dual-uplink mode) or a real link",
            spec.parent.name
        ))));
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
    let mark = marks.mark(Role::Shim, &spec.id);
    if new_shim == NewShim::Probe && k.link(&shim)?.is_none() {
        probe_gateways(k, &parent, spec)?;
    }
    let want = Expect {
        name: &shim,
        kind: LinkKind::from(spec.dataplane),
        parent: Some(parent.index),
        mark: &mark,
    };
    let ensured = links::ensure(k, &want, None)?;
    if ensured.created {
        undo.push(&want);
    }
    let link = ensured.link;
    // IPv6 gateways skip DAD (see `add_address`), so they answer at once.
    for gateway in spec.gateways() {
        k.add_address(link.index, gateway)?;
    }
    k.set_up(link.index, true)?;
    if spec.dataplane.is_l2() {
        enable_forwarding(k, spec, &parent.name, &shim);
    }
    Ok(Some(shim))
}

pub fn check_ipvlan<K: LinkKernel>(
    k: &mut K,
    probed: &mut Option<bool>,
    marks: &Marks,
) -> Result<()> {
    let supported = match *probed {
        Some(s) => s,
        None => {
            let s = links::probe_ipvlan(k, marks)?;
            info!(supported = s, "probed the kernel for ipvlan");
            *probed = Some(s);
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

/// Deletes the links of a network that is gone from the state: what is
/// left of its endpoints' links, its shim, and the 802.1Q parent we made
/// for it when no other network of ours (`parent_still_used`) is on it and
/// no link at all sits on it any more (another instance's, the operator's).
/// Only links that carry our mark; someone else's link under our name
/// stays. Returns the links that could not be deleted, with why.
pub fn delete_network_links<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    port: &super::port::PortConfig,
    rec: &NetworkRecord,
    parent_still_used: bool,
) -> Vec<String> {
    let spec = &rec.spec;
    let mut failed = Vec::new();
    if spec.parent.port {
        // Endpoints' leftovers first, then the port's share of this network.
        let pa = k.link(&spec.parent.name).ok().flatten();
        for e in rec.endpoints.values() {
            if let Err(err) = super::port::remove_endpoint(k, marks, port, spec, &e.spec) {
                failed.push(format!("routes of {}: {err}", e.link));
            }
            let mark = marks.mark(Role::Endpoint, &e.spec.id);
            let want = Expect {
                name: &e.link,
                kind: LinkKind::from(spec.dataplane),
                parent: pa.as_ref().map(|p| p.index),
                mark: &mark,
            };
            match links::delete(k, &want) {
                Ok(_) | Err(KernelError::Conflict(_)) => {}
                Err(e) => failed.push(format!("{}: {e}", want.name)),
            }
        }
        failed.extend(super::port::release(
            k,
            marks,
            port,
            spec,
            parent_still_used,
        ));
        return failed;
    }
    let parent = k.link(&spec.parent.name).ok().flatten();
    let kind = LinkKind::from(spec.dataplane);
    // Docker deletes endpoints first; anything left over goes too.
    let mut ours: Vec<(String, String)> = rec
        .endpoints
        .values()
        .map(|e| (e.link.clone(), marks.mark(Role::Endpoint, &e.spec.id)))
        .collect();
    if let Some(shim) = &rec.shim {
        ours.push((shim.clone(), marks.mark(Role::Shim, &spec.id)));
    }
    for (name, mark) in &ours {
        let want = Expect {
            name,
            kind,
            parent: parent.as_ref().map(|p| p.index),
            mark,
        };
        match links::delete(k, &want) {
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
    // made it (it carries our mark) and nothing else sits on it; one the
    // operator made stays, and so does one another instance still uses.
    if let (Some((_, kind)), Some(vlan), false) = (vlan_kind(spec), &parent, parent_still_used) {
        let mark = marks.mark(Role::Vlan, &spec.parent.name);
        let users = match k.users(vlan.index) {
            Ok(u) => u,
            Err(e) => {
                failed.push(format!("{}: {e}", spec.parent.name));
                return failed;
            }
        };
        if !users.is_empty() {
            info!(link = %spec.parent.name, users = %users.join(","), "left the VLAN parent in place: other links still sit on it");
        } else if names::same_record(vlan.alias.as_deref(), &mark) {
            let want = Expect {
                name: &spec.parent.name,
                kind,
                parent: None,
                mark: &mark,
            };
            match links::delete(k, &want) {
                Ok(_) => {
                    info!(link = %spec.parent.name, "deleted the VLAN parent with its last network")
                }
                Err(e) => failed.push(format!("{}: {e}", spec.parent.name)),
            }
        }
    }
    failed
}

/// The marks of every link a record owns.
pub fn owned_marks(state: &State, marks: &Marks) -> BTreeSet<String> {
    let mut owned = BTreeSet::new();
    for n in state.networks.values() {
        if n.spec.has_shim() {
            owned.insert(marks.mark(Role::Shim, &n.spec.id));
        }
        if n.spec.parent.vlan.is_some() {
            owned.insert(marks.mark(Role::Vlan, &n.spec.parent.name));
        }
        if n.spec.parent.port {
            owned.insert(super::port::port_names(marks, &n.spec).2);
        }
        for e in n.endpoints.keys() {
            owned.insert(marks.mark(Role::Endpoint, e));
        }
    }
    owned
}
