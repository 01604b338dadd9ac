//! The kernel facade: what the driver asks of the host's kernel, as plain
//! types and one trait.
//!
//! In: link, address, sysctl and route requests ("create this link", "add
//! this address", "these routes exist with our protocol tag"). Out: the
//! kernel's state, read back as plain structs ([`Link`] with its alias,
//! [`Addr`], [`Route`], [`TableRoute`]), and what the segment answers to a
//! probe for an address ([`neigh_probe`]). Link, address, sysctl and probe
//! operations are the [`LinkKernel`] trait: [`real::Kernel`] implements it over one
//! rtnetlink socket ([`netlink`]), `fake::FakeKernel` in memory for tests
//! (only with `cfg(test)` or the `test-support` feature). Which links may be
//! touched is decided above it, in [`crate::provision::links`]. Nothing here knows
//! about Docker or BGP.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::network::{Dataplane, IpvlanFlag, IpvlanMode, MacvlanMode};
use netlink::NlError;

pub mod address_watch;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod neigh_probe;
pub mod netlink;
pub mod real;
pub mod rules;

/// The shape of a link we create. The modes are the domain's own types
/// ([`crate::model::network`]); this facade only translates them to netlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Ipvlan {
        mode: IpvlanMode,
        flag: IpvlanFlag,
    },
    Macvlan {
        mode: MacvlanMode,
    },
    Vlan {
        id: u16,
    },
    /// A veth pair; the peer's name is given in [`NewLink::peer`].
    Veth,
}

/// A link to create: always with our mark (`IFLA_IFALIAS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub name: String,
    pub kind: LinkKind,
    /// The lower device's index; `None` only for a veth pair.
    pub parent: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub alias: String,
    /// The peer's name, for [`LinkKind::Veth`].
    pub peer: Option<String>,
    /// The MTU (for a veth pair: both ends); `None`: the kernel's default.
    pub mtu: Option<u32>,
}

/// Link and address operations the driver needs, as a trait so that the
/// driver runs against the real kernel ([`real::Kernel`]) or an in-memory one
/// (`fake::FakeKernel`) in unit tests. Each is one netlink request; the
/// rules about which links may be touched live above it, in [`crate::provision::links`].
pub trait LinkKernel: Send {
    fn links(&mut self) -> Result<Vec<Link>>;
    fn link(&mut self, name: &str) -> Result<Option<Link>>;
    /// Creates a link that must not exist yet (`NLM_F_EXCL`) and reads it
    /// back. The alias is sent with the request; whether the kernel kept it
    /// is for the caller to check (see [`crate::provision::links`]).
    fn create_link(&mut self, new: &NewLink) -> Result<Link>;
    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()>;
    /// Deletes a link by index; `Ok(false)` if it was already gone.
    fn delete_link(&mut self, index: u32) -> Result<bool>;
    fn set_up(&mut self, index: u32, up: bool) -> Result<()>;
    /// Every interface address of the namespace (one dump).
    fn addresses(&mut self) -> Result<Vec<Addr>>;
    /// Adds an address; present already is fine. IPv6 addresses skip
    /// duplicate address detection (`IFA_F_NODAD`): usable at once.
    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()>;
    /// Removes an address; gone already (or its link gone) is fine.
    fn del_address(&mut self, index: u32, net: IpNet) -> Result<()>;
    /// Sets a link's `IFF_NOARP` flag and/or its MAC address.
    fn set_link(&mut self, index: u32, noarp: Option<bool>, mac: Option<[u8; 6]>) -> Result<()>;
    /// Every policy routing rule, both families.
    fn rules(&mut self) -> Result<Vec<Rule>>;
    /// Adds a rule; one just like it already there is fine.
    fn add_rule(&mut self, rule: &Rule) -> Result<()>;
    /// Deletes a rule (matched by family, priority, oif, table and
    /// protocol); gone already is fine.
    fn del_rule(&mut self, rule: &Rule) -> Result<()>;
    /// The routes of table `table` without a gateway, both families.
    fn dev_routes(&mut self, table: u32) -> Result<Vec<DevRoute>>;
    /// Writes a route without a gateway (create or replace).
    fn add_dev_route(&mut self, route: &DevRoute) -> Result<()>;
    /// Deletes a route without a gateway (with its protocol); gone is fine.
    fn del_dev_route(&mut self, route: &DevRoute) -> Result<()>;
    /// Reads a sysctl of the caller's network namespace (`path` under
    /// `/proc/sys`, with `/`, so that link names with dots work);
    /// `Ok(None)` when this kernel has no such setting.
    fn sysctl(&mut self, path: &str) -> Result<Option<String>>;
    /// Writes a sysctl (see [`LinkKernel::sysctl`]); the same value is no write.
    fn set_sysctl(&mut self, path: &str, value: &str) -> Result<()>;
    /// The main table's unicast routes without a gateway (connected and
    /// on-link routes), both families: what the host's links reach directly.
    fn connected_routes(&mut self) -> Result<Vec<Route>>;
    /// The links stacked on link `index` (ipvlan, macvlan, VLAN links
    /// whose lower device it is), by name: in this namespace, and in every
    /// namespace that has an id here (Docker moves a container's link into
    /// the container's namespace, which gives that namespace one).
    fn users(&mut self, index: u32) -> Result<Vec<String>>;
    /// Asks the segment behind `link` whether anyone holds one of `addrs`
    /// (ARP probes, IPv6 DAD solicitations, [`neigh_probe::TIMING`]);
    /// `Ok(None)`: nobody answered within the wait.
    fn probe_segment(
        &mut self,
        link: &Link,
        addrs: &[IpAddr],
    ) -> Result<Option<neigh_probe::Answer>>;
    /// Sets this host's neighbour entry for `addr` on link `index` to
    /// `mac`, in state STALE and tagged with `protocol` (`NDA_PROTOCOL`):
    /// created, or replacing the kernel's own entry (a previous holder's
    /// MAC, a failed resolution). An entry someone pinned (permanent,
    /// noarp, or externally learned) is left as it is:
    /// [`Seeded::Pinned`]. The same request again changes nothing.
    fn seed_neighbour(
        &mut self,
        index: u32,
        addr: IpAddr,
        mac: [u8; 6],
        protocol: u8,
    ) -> Result<Seeded>;
}

/// What [`LinkKernel::seed_neighbour`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// The entry now says `mac`, STALE.
    Written,
    /// Someone pinned the address to another MAC: left as it was.
    Pinned { mac: [u8; 6] },
}

/// A neighbour entry as read back (`ip neigh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` (linux/neighbour.h): see [`nud`].
    pub state: u16,
    /// `NTF_*`.
    pub flags: u8,
    /// `NDA_PROTOCOL`; 0 when none.
    pub protocol: u8,
}

impl Neighbour {
    /// Set by someone on purpose, not the kernel's cache: permanent,
    /// noarp, or learned from an external control plane.
    pub fn pinned(&self) -> bool {
        self.state & (nud::PERMANENT | nud::NOARP) != 0 || self.flags & NTF_EXT_LEARNED != 0
    }
}

/// `NTF_EXT_LEARNED` (linux/neighbour.h).
pub const NTF_EXT_LEARNED: u8 = 0x10;

/// `NUD_*` (linux/neighbour.h).
pub mod nud {
    pub const INCOMPLETE: u16 = 0x01;
    pub const REACHABLE: u16 = 0x02;
    pub const STALE: u16 = 0x04;
    pub const FAILED: u16 = 0x20;
    pub const NOARP: u16 = 0x40;
    pub const PERMANENT: u16 = 0x80;
}

/// A link as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `ipvlan`, `macvlan`, `vlan`, `veth`, ... or `None` for plain devices.
    pub kind: Option<String>,
    /// The index of the lower device (`IFLA_LINK`), for stacked links.
    pub parent: Option<u32>,
    pub up: bool,
    /// `IFF_NOARP`.
    pub noarp: bool,
    /// `IFF_RUNNING`: up with carrier (what `ip link` shows as `LOWER_UP`
    /// beside `UP`, operational state up).
    pub running: bool,
    pub mtu: u32,
    pub mac: Vec<u8>,
    /// `IFLA_IFALIAS`: where the driver leaves its mark.
    pub alias: Option<String>,
}

/// An interface address as read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub net: IpNet,
    /// The `IFA_F_*` flags as the kernel reports them (`IFA_FLAGS`, else the
    /// header's): see [`ifa`] and [`Addr::is_stable`].
    pub flags: u32,
}

/// `IFA_F_*` (linux/if_addr.h).
pub mod ifa {
    /// IPv6: a temporary (privacy) address; IPv4: a secondary one (same bit).
    pub const TEMPORARY: u32 = 0x01;
    pub const OPTIMISTIC: u32 = 0x04;
    pub const DADFAILED: u32 = 0x08;
    pub const DEPRECATED: u32 = 0x20;
    pub const TENTATIVE: u32 = 0x40;
    pub const PERMANENT: u32 = 0x80;
}

impl Addr {
    /// Whether peers may be given this address to reach us for long: not
    /// an IPv6 temporary (privacy) address, nor deprecated, still under
    /// duplicate address detection (tentative, optimistic) or failed it.
    pub fn is_stable(&self) -> bool {
        let mut unstable = ifa::DEPRECATED | ifa::TENTATIVE | ifa::OPTIMISTIC | ifa::DADFAILED;
        if self.net.addr().is_ipv6() {
            unstable |= ifa::TEMPORARY;
        }
        self.flags & unstable == 0
    }
}

/// A policy routing rule as the container port needs it: `oif NAME lookup
/// TABLE pref PRIORITY proto PROTOCOL` (other rules are read with `oif`
/// `None` when they have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub oif: Option<String>,
    pub table: u32,
    pub protocol: u8,
}

/// A route without a gateway: `DST dev OIF table TABLE proto PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRoute {
    pub dst: IpNet,
    pub oif: u32,
    pub table: u32,
    pub protocol: u8,
}

/// The main table's number.
pub const MAIN_TABLE: u32 = 254;

/// A unicast route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub protocol: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: NlError,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
}

impl KernelError {
    pub(crate) fn nl(op: impl Into<String>) -> impl FnOnce(NlError) -> KernelError {
        let op = op.into();
        move |source| KernelError::Netlink { op, source }
    }
    /// The errno the kernel answered, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { source, .. } => source.errno(),
            KernelError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, KernelError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl LinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Ipvlan { .. } => "ipvlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Veth => "veth",
        }
    }
}

impl From<Dataplane> for LinkKind {
    fn from(d: Dataplane) -> LinkKind {
        match d {
            Dataplane::Ipvlan { mode, flag } => LinkKind::Ipvlan { mode, flag },
            Dataplane::Macvlan { mode } => LinkKind::Macvlan { mode },
        }
    }
}

/// A main-table unicast route as the kernel keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRoute {
    pub route: Route,
    pub tos: u8,
    pub priority: u32,
    /// The next hops of a multipath route (RTA_MULTIPATH, two or more), as
    /// read (the kernel's `dead`/`linkdown` flags are not kept: they change
    /// with link state, not with what was written); empty for a single-hop
    /// route, whose one hop is `route.via`/`oif`. When not empty,
    /// `route.via`/`oif` are `None` and, for IPv6, `route.protocol` is only
    /// the first next hop's.
    pub multipath: Vec<NextHop>,
}

impl TableRoute {
    /// Whether the route installer may take it for its own: tagged with
    /// `protocol` and with a gateway. A tagged route without one (`dev`
    /// only) is the container port's (an endpoint's /32 or /128 `dev pb`,
    /// dual-uplink mode): learned routes always have a gateway.
    pub fn tagged_by(&self, protocol: u8) -> bool {
        self.route.protocol == protocol && (self.is_multipath() || self.route.via.is_some())
    }

    /// Whether it has several next hops.
    pub fn is_multipath(&self) -> bool {
        !self.multipath.is_empty()
    }

    /// Every next hop, sorted (one for a single-hop route).
    pub fn hops(&self) -> Vec<NextHop> {
        if self.multipath.is_empty() {
            vec![NextHop::of(&self.route)]
        } else {
            let mut h = self.multipath.clone();
            h.sort();
            h
        }
    }

    /// The route as the installer writes routes: destination, protocol,
    /// every next hop.
    pub fn to_multi(&self) -> MultiRoute {
        MultiRoute {
            dst: self.route.dst,
            hops: self.hops(),
            protocol: self.route.protocol,
        }
    }
}

/// One next hop of a route: a gateway, an output link, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
}

impl NextHop {
    /// The one next hop of a single-hop route.
    pub fn of(r: &Route) -> NextHop {
        NextHop {
            via: r.via,
            oif: r.oif,
        }
    }
}

/// A unicast route of the main table with one or more next hops, as the
/// route installer writes it: one next hop is an ordinary route, several
/// are one route with RTA_MULTIPATH (equal weights). `hops` is sorted and
/// holds no duplicates (see [`MultiRoute::new`]), so two routes with the
/// same next hops compare equal whatever order they were learned in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultiRoute {
    pub dst: IpNet,
    pub hops: Vec<NextHop>,
    pub protocol: u8,
}

impl MultiRoute {
    /// A route over `hops` (sorted and deduplicated here).
    pub fn new(dst: IpNet, mut hops: Vec<NextHop>, protocol: u8) -> MultiRoute {
        hops.sort();
        hops.dedup();
        MultiRoute {
            dst,
            hops,
            protocol,
        }
    }

    /// The same route as a single-hop [`Route`], if it has one next hop.
    pub fn single(&self) -> Option<Route> {
        match self.hops[..] {
            [h] => Some(Route {
                dst: self.dst,
                via: h.via,
                oif: h.oif,
                protocol: self.protocol,
            }),
            _ => None,
        }
    }

    /// The gateways of its next hops.
    pub fn gateways(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.hops.iter().filter_map(|h| h.via)
    }
}

impl From<Route> for MultiRoute {
    fn from(r: Route) -> MultiRoute {
        MultiRoute {
            dst: r.dst,
            hops: vec![NextHop::of(&r)],
            protocol: r.protocol,
        }
    }
}
