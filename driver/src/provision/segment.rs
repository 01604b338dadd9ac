//! What belongs to the segment is not the driver's to take (invariant 8).
//!
//! In: a network about to be created ([`NetworkSpec`]), the marks of the
//! links this driver already holds, and a [`LinkKernel`] to read the host's
//! addresses and connected routes and to probe the segment. Out: nothing, or
//! a refusal that names what is in the way and what to do. Two checks, both
//! before the network's shim exists:
//! - [`check_overlap`]: neither subnet may overlap an address of this host
//!   or a connected route, on any link (the driver's own shims excepted).
//!   Docker's macvlan recipe, `--subnet 192.168.1.0/24 --gateway
//!   192.168.1.1 -o parent=eth0` on a host whose eth0 is on that LAN, is
//!   refused here: its containers would take the LAN's addresses and the
//!   shim its router's;
//! - [`probe_gateways`]: before a new shim (L2 data planes, the L3 host
//!   link) takes the gateway addresses, the segment behind the parent is
//!   asked for them ([`crate::kernel::neigh_probe`]: ARP probes, IPv6 DAD
//!   solicitations; 3 probes 70 ms apart, 210 ms of listening in all), and
//!   an answer refuses the network. Only at creation: restoring or
//!   repairing a network's own shim never probes again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::warn;

use crate::error::DriverError;
use crate::kernel::{Link, LinkKernel};
use crate::model::network::NetworkSpec;

type Result<T> = std::result::Result<T, DriverError>;

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuses `spec` if one of its subnets overlaps an address of this host
/// or a connected route (any link but those whose alias is in `own`: the
/// shims of networks this driver already holds). Reads the kernel only.
pub fn check_overlap<K: LinkKernel>(
    k: &mut K,
    spec: &NetworkSpec,
    own: &BTreeSet<String>,
) -> Result<()> {
    let links: BTreeMap<u32, Link> = k.links()?.into_iter().map(|l| (l.index, l)).collect();
    let mine = |index: Option<u32>| {
        index
            .and_then(|i| links.get(&i))
            .is_some_and(|l| l.alias.as_ref().is_some_and(|a| own.contains(a)))
    };
    let name = |index: Option<u32>| {
        index
            .and_then(|i| links.get(&i))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("#{}", index.unwrap_or(0)))
    };
    let addrs = k.addresses()?;
    let routes = k.connected_routes()?;
    for subnet in spec.subnets() {
        if let Some(a) = addrs
            .iter()
            .find(|a| !mine(Some(a.index)) && overlaps(&subnet, &a.net))
        {
            return Err(refusal(
                spec,
                subnet,
                format!(
                    "{}, an address of this host on {}",
                    a.net,
                    name(Some(a.index))
                ),
            ));
        }
        if let Some(r) = routes
            .iter()
            .find(|r| r.dst.prefix_len() > 0 && !mine(r.oif) && overlaps(&subnet, &r.dst))
        {
            return Err(refusal(
                spec,
                subnet,
                format!("{}, a route of this host on {}", r.dst, name(r.oif)),
            ));
        }
    }
    Ok(())
}

fn refusal(spec: &NetworkSpec, subnet: IpNet, what: String) -> DriverError {
    DriverError::Conflict(format!(
        "subnet {subnet} of network {} overlaps {what}: those addresses belong to the segment, not to containers \
         (this host would answer for its neighbours, e.g. the LAN's router as gateway); \
         give the network a subnet of its own that the segment does not use, and route it to this host (BGP announces it)",
        spec.short_id()
    ))
}

/// Asks the segment behind `parent` whether anyone already holds one of the
/// network's gateway addresses; refuses the network if so. A parent that is
/// down cannot be asked (nothing answers on it either): a warning, and the
/// network is made.
pub fn probe_gateways<K: LinkKernel>(k: &mut K, parent: &Link, spec: &NetworkSpec) -> Result<()> {
    let gateways: Vec<IpAddr> = spec.gateways().map(|g| g.addr()).collect();
    match k.probe_segment(parent, &gateways) {
        Ok(None) => Ok(()),
        Ok(Some(a)) => {
            let how = if a.probing {
                "is being claimed right now"
            } else {
                "is answered"
            };
            Err(DriverError::Conflict(format!(
                "{} {how} on {} by {}: the segment already has this address; pick another --gateway{} for network {}",
                a.addr,
                parent.name,
                a.mac_text(),
                if a.addr.is_ipv6() { " (IPv6)" } else { "" },
                spec.short_id()
            )))
        }
        Err(e) if e.errno() == Some(libc::ENETDOWN) => {
            warn!(parent = %parent.name, network = %spec.short_id(), "the parent is down: its segment cannot be probed for the gateway addresses; made the network without asking");
            Ok(())
        }
        Err(e) => Err(DriverError::Conflict(format!(
            "could not ask the segment on {} whether {} is free ({e}); the network was not made",
            parent.name,
            spec.gateways_text().unwrap_or_default()
        ))),
    }
}
