//! The serving host's neighbour entries for its own containers.
//!
//! In: a joined endpoint whose address is live in its container, the MAC
//! its interface has there (heard by [`crate::kernel::address_watch`] from
//! the host's namespace), its network and shim, and a [`LinkKernel`]. Out:
//! on data planes with neighbour resolution (macvlan, ipvlan L2), this
//! host's neighbour entry for each of the endpoint's addresses on the
//! network's shim (the link this host routes to its containers through)
//! says that MAC, in state STALE and tagged with the driver's route
//! protocol: the first packet forwarded to the container after its route
//! reached other hosts goes straight to it, even where the table still
//! held a previous container's MAC for the address or a failed resolution.
//! STALE, not REACHABLE or PERMANENT: it is the entry the container's own
//! gratuitous ARP / unsolicited NA would leave, used at once and confirmed
//! by the kernel's own probing within seconds, and garbage collected like
//! any learned entry once unused, so nothing is removed at Leave. Only on a
//! shim that carries this instance's mark, only for the endpoint's own
//! addresses; an entry someone pinned (permanent, noarp, externally
//! learned) is left alone and reported. Errors are the kernel's, with what
//! was asked.

use crate::kernel::{KernelError, LinkKernel, LinkKind, Seeded};
use crate::model::names::{Marks, Role};
use crate::model::network::{EndpointSpec, NetworkSpec};

use super::links::{self, Expect};

/// What [`seed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// Entries written on the shim, one per address.
    Written { shim: String, count: usize },
    /// The data plane resolves no neighbours (ipvlan L3), or the network
    /// has no shim (dual-uplink mode's container port): nothing to do.
    NotNeeded,
    /// The shim is gone: nothing to write on.
    NoShim,
    /// Someone pinned these addresses to other MACs on the shim.
    Pinned(Vec<(std::net::IpAddr, [u8; 6])>),
}

/// Writes this host's neighbour entries for `endpoint`'s addresses on its
/// network's shim: `mac` (the container's interface), STALE, `protocol`.
pub fn seed<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    net: &NetworkSpec,
    shim: Option<&str>,
    endpoint: &EndpointSpec,
    mac: [u8; 6],
    protocol: u8,
) -> Result<Seed, KernelError> {
    let Some(shim) = shim else {
        return Ok(Seed::NotNeeded);
    };
    if !net.dataplane.is_l2() {
        return Ok(Seed::NotNeeded);
    }
    let mark = marks.mark(Role::Shim, &net.id);
    let want = Expect {
        name: shim,
        kind: LinkKind::from(net.dataplane),
        parent: None,
        mark: &mark,
    };
    let Some(link) = links::ours(k, &want)? else {
        return Ok(Seed::NoShim);
    };
    let mut pinned = Vec::new();
    let mut count = 0;
    for addr in endpoint.addrs() {
        match k.seed_neighbour(link.index, addr, mac, protocol)? {
            Seeded::Written => count += 1,
            Seeded::Pinned { mac } => pinned.push((addr, mac)),
        }
    }
    if !pinned.is_empty() {
        return Ok(Seed::Pinned(pinned));
    }
    Ok(Seed::Written {
        shim: shim.to_string(),
        count,
    })
}
