//! The container port of dual-uplink mode: one veth pair per data plane,
//! its containers' end ("pa") the parent of their links, the host's end
//! ("pb") routed to every uplink (docs/dual-uplink.md, "The decision").
//!
//! In: a network whose parent is a port ([`Parent::port`]), the uplinks'
//! names, this instance's [`Marks`] and a [`LinkKernel`]. Out: the pair
//! made (one RTM_NEWLINK, both ends marked `port:<key>`, MTU = the
//! smallest uplink MTU) or checked (present, marked, each the other's
//! peer), both ends up; for L2 data planes (ipvlan L2, macvlan) the
//! network's gateway addresses on `pb` (IPv6 without DAD) in place of a
//! shim, and forwarding on `pb` and the uplinks; [`whole`] says whether a
//! port still looks like that (the repair loop's check). [`release`] takes
//! a deleted network's gateways off `pb`, or the pair with the last
//! network on it.
//!
//! [`Parent::port`]: crate::model::network::Parent::port

use tracing::{info, warn};

use super::links::{self, Expect};
use super::network::Undo;
use super::sysctl::enable_forwarding;
use crate::kernel::{Addr, KernelError, Link, LinkKernel, LinkKind, Result};
use crate::model::names::{self, Marks, Role};
use crate::model::network::NetworkSpec;

/// The names and mark of `spec`'s port: (pa, pb, mark).
pub fn port_names(marks: &Marks, spec: &NetworkSpec) -> (String, String, String) {
    let key = names::port_key(&spec.dataplane);
    let (a, b) = names::port(&key);
    (a, b, marks.mark(Role::Port, &key))
}

/// Makes `spec`'s port exist and up, and (L2 data planes) its gateways sit
/// on `pb`. Returns `pa` (the containers' parent). A new pair is pushed on
/// `undo`, and so is every gateway address added to an existing `pb`.
pub fn ensure<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    uplinks: &[String],
    spec: &NetworkSpec,
    undo: &mut Undo,
) -> Result<Link> {
    let (a, b, mark) = port_names(marks, spec);
    let mut mtus = Vec::new();
    for u in uplinks {
        if let Some(l) = k.link(u)? {
            mtus.push(l);
        }
    }
    let mtu = super::uplinks::smallest_mtu(&mtus);
    let want = Expect {
        name: &a,
        kind: LinkKind::Veth,
        parent: None,
        mark: &mark,
    };
    let (pa, pb) = links::ensure_pair(k, &want, &b, mtu, None)?;
    if pa.created {
        undo.push(&want);
        info!(port = %a, host_end = %b, mtu = ?mtu, "created the container port");
    }
    let (pa, pb_index) = (pa.link, pb.index);
    for i in [pa.index, pb_index] {
        k.set_up(i, true)?;
    }
    if spec.dataplane.is_l2() {
        let have: Vec<Addr> = k.addresses()?;
        for gateway in spec.gateways() {
            if !have.iter().any(|x| x.index == pb_index && x.net == gateway) {
                k.add_address(pb_index, gateway)?;
                undo.push_address(pb_index, gateway);
            }
        }
        for u in uplinks {
            enable_forwarding(k, spec, u, &b);
        }
    }
    Ok(pa)
}

/// Whether `spec`'s port is as [`ensure`] leaves it: both ends present,
/// marked, up, and (L2) every gateway on `pb`. `addrs`: one address dump.
pub fn whole<K: LinkKernel>(k: &mut K, marks: &Marks, spec: &NetworkSpec, addrs: &[Addr]) -> bool {
    let (a, b, mark) = port_names(marks, spec);
    let ok = |l: &Option<Link>| {
        l.as_ref().is_some_and(|l| {
            l.up && names::same_record(l.alias.as_deref(), &mark)
                && l.kind.as_deref() == Some("veth")
        })
    };
    let (Ok(pa), Ok(pb)) = (k.link(&a), k.link(&b)) else {
        return true; // unreadable: nothing to conclude
    };
    if !ok(&pa) || !ok(&pb) {
        return false;
    }
    let pb = pb.map(|l| l.index);
    !spec.dataplane.is_l2()
        || spec
            .gateways()
            .all(|g| addrs.iter().any(|x| Some(x.index) == pb && x.net == g))
}

/// A network on a port is gone: with `still_used` (another network of
/// ours on the same port) its gateways leave `pb`; otherwise the pair goes
/// (only if it carries our mark; deleting one end takes the other).
/// Returns what could not be done.
pub fn release<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    spec: &NetworkSpec,
    still_used: bool,
) -> Vec<String> {
    let (a, b, mark) = port_names(marks, spec);
    let mut failed = Vec::new();
    if still_used {
        if let Ok(Some(pb)) = k.link(&b) {
            if names::same_record(pb.alias.as_deref(), &mark) {
                for g in spec.gateways() {
                    if let Err(e) = k.del_address(pb.index, g) {
                        failed.push(format!("{b}: {e}"));
                    }
                }
            }
        }
        return failed;
    }
    let want = Expect {
        name: &a,
        kind: LinkKind::Veth,
        parent: None,
        mark: &mark,
    };
    match links::delete(k, &want) {
        Ok(_) => info!(port = %a, "deleted the container port with its last network"),
        Err(e @ KernelError::Conflict(_)) => {
            warn!(link = %a, error = %e, "left a link that is not ours in place")
        }
        Err(e) => failed.push(format!("{a}: {e}")),
    }
    failed
}
