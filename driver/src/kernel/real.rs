//! The real kernel: the facade's requests over one rtnetlink socket.
//!
//! In: the requests of [`super::LinkKernel`] and the route requests of the
//! route table (dump, create where free, replace, delete), as the facade's
//! plain types. Out: netlink messages on a [`Netlink`] socket, and the
//! kernel's answers parsed back into [`Link`], [`Addr`], [`Route`] and
//! [`TableRoute`]. IPv6 addresses are added without duplicate address
//! detection. Deleting a link that is gone and adding an address that is
//! there succeed; routes are written with replace (or create-exclusive) and
//! deleted tolerating "no such route". Sysctls are read and written under
//! `/proc/sys`.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, InfoVlan, IpVlanFlags, IpVlanMode,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::neigh_probe::{self, Answer};
use super::netlink::Netlink;
use super::{
    Addr, DevRoute, Family, KernelError, Link, LinkKernel, LinkKind, MultiRoute, Neighbour,
    NewLink, NextHop, Result, Route, Rule, Seeded, TableRoute,
};
use crate::model::network::{IpvlanFlag, IpvlanMode, MacvlanMode};

pub struct Kernel {
    nl: Netlink,
}

impl Kernel {
    pub fn open() -> Result<Self> {
        Ok(Kernel {
            nl: Netlink::open().map_err(KernelError::nl("open netlink socket"))?,
        })
    }

    /// A facade bound to another network namespace (a `/run/netns/NAME` or
    /// `/proc/PID/ns/net` path); the harness's and the benchmarks' view into
    /// the hosts it makes.
    #[cfg(any(test, feature = "test-support"))]
    pub fn open_in_netns(path: &Path) -> Result<Self> {
        let nl = super::netlink::in_netns(path, super::netlink::NlError::Socket, Netlink::open);
        Ok(Kernel {
            nl: nl.map_err(KernelError::nl(format!(
                "open netlink in {}",
                path.display()
            )))?,
        })
    }

    // ----- links -----

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self
            .nl
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(KernelError::nl("list links"))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.nl.get(RouteNetlinkMessage::GetLink(msg)) {
            Ok(Some(RouteNetlinkMessage::NewLink(l))) => Ok(Some(parse_link(&l))),
            Ok(_) => Ok(None),
            Err(e) if e.is(libc::ENODEV) => Ok(None),
            Err(e) => Err(KernelError::nl(format!("get link {name}"))(e)),
        }
    }

    /// See [`LinkKernel::create_link`].
    pub fn create_link(&mut self, new: &NewLink) -> Result<Link> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(new.name.clone()));
        if let Some(parent) = new.parent {
            msg.attributes.push(LinkAttribute::Link(parent));
        }
        msg.attributes
            .push(LinkAttribute::IfAlias(new.alias.clone()));
        let info = match (new.kind, &new.peer) {
            (LinkKind::Veth, Some(peer)) => {
                let mut peer_msg = LinkMessage::default();
                peer_msg
                    .attributes
                    .push(LinkAttribute::IfName(peer.clone()));
                peer_msg
                    .attributes
                    .push(LinkAttribute::IfAlias(new.alias.clone()));
                if let Some(mtu) = new.mtu {
                    peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
                }
                if let Some(mac) = new.mac {
                    peer_msg
                        .attributes
                        .push(LinkAttribute::Address(mac.to_vec()));
                }
                vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
                ]
            }
            (LinkKind::Veth, None) => {
                return Err(KernelError::Conflict(format!(
                    "veth {} needs a peer name",
                    new.name
                )))
            }
            (kind, _) => kind.info(),
        };
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        if let Some(mac) = new.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = new.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.nl
            .request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(KernelError::nl(format!(
                "create {} link {}",
                new.kind.name(),
                new.name
            )))?;
        self.link(&new.name)?.ok_or_else(|| {
            KernelError::NotFound(format!("link {} vanished after creation", new.name))
        })
    }

    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.nl
            .request(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(KernelError::nl(format!("set alias of link #{index}")))
    }

    /// Deletes a link by index; `Ok(false)` if it was already gone.
    pub fn delete_link(&mut self, index: u32) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.nl.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.is(libc::ENODEV) => Ok(false),
            Err(e) => Err(KernelError::nl(format!("delete link #{index}"))(e)),
        }
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        self.nl
            .request(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(KernelError::nl(format!("set link #{index} up={up}")))
    }

    /// Renames a link and/or moves it into the network namespace open at
    /// `netns_fd` (what Docker does with a container's link; the harness's
    /// container engine does it the same way).
    #[cfg(any(test, feature = "test-support"))]
    pub fn set_name_and_netns(
        &mut self,
        index: u32,
        name: Option<&str>,
        netns_fd: Option<std::os::fd::RawFd>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(n) = name {
            msg.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        if let Some(fd) = netns_fd {
            msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        self.nl
            .request(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(KernelError::nl(format!("move/rename link #{index}")))
    }

    /// See [`LinkKernel::users`]. Links in other namespaces are read with
    /// `IFLA_TARGET_NETNSID` dumps, one per namespace id; theirs sits on
    /// ours when its lower device's namespace is this one (our own id, read
    /// after those dumps, which assign it when needed) and its lower
    /// index is `index`. A namespace that cannot be read is skipped.
    pub fn users(&mut self, index: u32) -> Result<Vec<String>> {
        let lower = |l: &LinkMessage| {
            let mut link = None;
            let mut link_ns = None;
            let mut name = String::new();
            let mut veth = false;
            for a in &l.attributes {
                match a {
                    LinkAttribute::Link(p) => link = Some(*p),
                    LinkAttribute::LinkNetNsId(n) => link_ns = Some(*n),
                    LinkAttribute::IfName(n) => name = n.clone(),
                    LinkAttribute::LinkInfo(infos) => {
                        veth |= infos.contains(&LinkInfo::Kind(InfoKind::Veth))
                    }
                    _ => {}
                }
            }
            (name, link, link_ns, veth)
        };
        let mut out = Vec::new();
        for m in self
            .nl
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(KernelError::nl("list links"))?
        {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let (name, link, link_ns, veth) = lower(&l);
                if link == Some(index) && link_ns.is_none() && !veth && l.header.index != index {
                    out.push(name);
                }
            }
        }
        let mut elsewhere = Vec::new();
        for id in self.netns_ids()? {
            let mut req = LinkMessage::default();
            req.attributes.push(LinkAttribute::IfNetnsId(id));
            let Ok(msgs) = self.nl.dump(RouteNetlinkMessage::GetLink(req)) else {
                continue;
            };
            for m in msgs {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    let (name, link, link_ns, veth) = lower(&l);
                    if link == Some(index) && !veth {
                        if let Some(ns) = link_ns {
                            elsewhere.push((format!("{name} (in namespace id {id})"), ns));
                        }
                    }
                }
            }
        }
        if !elsewhere.is_empty() {
            let me = self.own_netns_id()?;
            out.extend(
                elsewhere
                    .into_iter()
                    .filter(|(_, ns)| Some(*ns) == me)
                    .map(|(n, _)| n),
            );
        }
        Ok(out)
    }

    /// The ids this namespace gave other namespaces (`ip netns list-id`).
    fn netns_ids(&mut self) -> Result<Vec<i32>> {
        let msgs = self
            .nl
            .dump(RouteNetlinkMessage::GetNsId(NsidMessage::default()))
            .map_err(KernelError::nl("list namespace ids"))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// This namespace's id for itself, if it has one.
    fn own_netns_id(&mut self) -> Result<Option<i32>> {
        use std::os::fd::AsRawFd;
        let fd = self.nl.netns().map_err(|source| KernelError::Io {
            op: "open our own network namespace".into(),
            source,
        })?;
        let mut req = NsidMessage::default();
        req.attributes
            .push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
        match self.nl.get(RouteNetlinkMessage::GetNsId(req)) {
            Ok(Some(RouteNetlinkMessage::NewNsId(n))) => {
                Ok(n.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(KernelError::nl("read our own namespace id")(e)),
        }
    }

    // ----- addresses -----

    pub fn addresses(&mut self) -> Result<Vec<Addr>> {
        let msgs = self
            .nl
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .map_err(KernelError::nl("list addresses"))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_addr(&a),
                _ => None,
            })
            .collect())
    }

    /// Adds `net` (address and prefix length) to link `index`; present already is fine.
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let msg = addr_msg(index, net);
        match self.nl.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.is(libc::EEXIST) => Ok(()),
            Err(e) => Err(KernelError::nl(format!("add address {net} to #{index}"))(e)),
        }
    }

    /// See [`LinkKernel::del_address`].
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let msg = addr_msg(index, net);
        match self.nl.request(RouteNetlinkMessage::DelAddress(msg), 0) {
            Ok(()) => Ok(()),
            Err(e) if e.is(libc::EADDRNOTAVAIL) || e.is(libc::ENODEV) => Ok(()),
            Err(e) => Err(KernelError::nl(format!(
                "delete address {net} from #{index}"
            ))(e)),
        }
    }

    // ----- neighbours -----

    /// The neighbour entry for `addr` on link `index`, if there is one
    /// (one `RTM_GETNEIGH`; a kernel older than 5.0 answers only dumps:
    /// then one dump of the family).
    pub fn neighbour(&mut self, index: u32, addr: IpAddr) -> Result<Option<Neighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(addr);
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                addr,
            )));
        let op = || format!("read the neighbour entry for {addr} on #{index}");
        match self.nl.get(RouteNetlinkMessage::GetNeighbour(msg)) {
            Ok(Some(RouteNetlinkMessage::NewNeighbour(n))) => Ok(parse_neighbour(&n).map(|n| n.1)),
            Ok(_) => Ok(None),
            Err(e) if e.is(libc::ENOENT) => Ok(None),
            Err(e) if e.is(libc::EOPNOTSUPP) || e.is(libc::EINVAL) => {
                let mut all = NeighbourMessage::default();
                all.header.family = family_of(addr);
                let msgs = self
                    .nl
                    .dump(RouteNetlinkMessage::GetNeighbour(all))
                    .map_err(KernelError::nl(op()))?;
                Ok(msgs.iter().find_map(|m| match m {
                    RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => {
                        parse_neighbour(n).and_then(|(a, n)| (a == addr).then_some(n))
                    }
                    _ => None,
                }))
            }
            Err(e) => Err(KernelError::nl(op())(e)),
        }
    }

    /// See [`LinkKernel::seed_neighbour`]: one read, then (unless pinned)
    /// one `RTM_NEWNEIGH` with create and replace.
    pub fn seed_neighbour(
        &mut self,
        index: u32,
        addr: IpAddr,
        mac: [u8; 6],
        protocol: u8,
    ) -> Result<Seeded> {
        if let Some(n) = self.neighbour(index, addr)? {
            if n.pinned() {
                return Ok(match n.mac {
                    Some(m) if m != mac => Seeded::Pinned { mac: m },
                    _ => Seeded::Written,
                });
            }
        }
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(addr);
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Stale;
        msg.attributes.extend([
            NeighbourAttribute::Destination(NeighbourAddress::from(addr)),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
            NeighbourAttribute::Protocol(RouteProtocol::from(protocol)),
        ]);
        self.nl
            .request(
                RouteNetlinkMessage::NewNeighbour(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map_err(KernelError::nl(format!(
                "set the neighbour entry {addr} -> {} on #{index}",
                neigh_probe::mac_text(&mac)
            )))?;
        Ok(Seeded::Written)
    }

    // ----- routes -----

    /// Routes of the main table, optionally only those with protocol `proto`.
    pub fn routes(&mut self, family: Family, proto: Option<u8>) -> Result<Vec<Route>> {
        Ok(self
            .dump_routes(family)?
            .into_iter()
            .map(|t| t.route)
            .filter(|r| proto.is_none_or(|p| r.protocol == p))
            .collect())
    }

    /// Every unicast route of the main table, both families, any protocol,
    /// with the fields the kernel keys them by.
    pub fn table_routes(&mut self) -> Result<Vec<TableRoute>> {
        let mut out = self.dump_routes(Family::V4)?;
        out.extend(self.dump_routes(Family::V6)?);
        Ok(out)
    }

    fn dump_routes(&mut self, family: Family) -> Result<Vec<TableRoute>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.af();
        let msgs = self
            .nl
            .dump(RouteNetlinkMessage::GetRoute(msg))
            .map_err(KernelError::nl("list routes"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(r),
                _ => None,
            })
            .collect())
    }

    /// Writes routes with replace semantics, pipelined; one result per
    /// route. A route with several next hops is one RTA_MULTIPATH route,
    /// replaced in place with its whole next-hop set.
    pub fn replace_routes(&mut self, routes: &[MultiRoute]) -> Vec<Result<()>> {
        self.write_routes(routes, NLM_F_CREATE | NLM_F_REPLACE, "replace")
    }

    /// Adds routes only where no route with the same key exists (`EEXIST`
    /// otherwise), pipelined; one result per route.
    pub fn create_routes(&mut self, routes: &[MultiRoute]) -> Vec<Result<()>> {
        self.write_routes(routes, NLM_F_CREATE | NLM_F_EXCL, "create")
    }

    fn write_routes(&mut self, routes: &[MultiRoute], flags: u16, op: &str) -> Vec<Result<()>> {
        let msgs = routes
            .iter()
            .map(|r| (RouteNetlinkMessage::NewRoute(route_msg(r)), flags))
            .collect();
        self.nl
            .batch(msgs)
            .into_iter()
            .zip(routes)
            .map(|(res, r)| res.map_err(KernelError::nl(format!("{op} route {}", r.dst))))
            .collect()
    }

    /// Deletes routes, pipelined; a route already gone counts as deleted.
    /// The next hops are part of the match (IPv6 removes only the hops
    /// named, each by its gateway; IPv4 removes the route whose hops are
    /// these).
    pub fn delete_routes(&mut self, routes: &[MultiRoute]) -> Vec<Result<()>> {
        let msgs = routes
            .iter()
            .map(|r| (RouteNetlinkMessage::DelRoute(route_msg(r)), 0))
            .collect();
        self.nl
            .batch(msgs)
            .into_iter()
            .zip(routes)
            .map(|(res, r)| match res {
                Err(e) if e.is(libc::ESRCH) || e.is(libc::ENOENT) => Ok(()),
                other => other.map_err(KernelError::nl(format!("delete route {}", r.dst))),
            })
            .collect()
    }
}

impl LinkKernel for Kernel {
    fn links(&mut self) -> Result<Vec<Link>> {
        Kernel::links(self)
    }
    fn link(&mut self, name: &str) -> Result<Option<Link>> {
        Kernel::link(self, name)
    }
    fn create_link(&mut self, new: &NewLink) -> Result<Link> {
        Kernel::create_link(self, new)
    }
    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        Kernel::set_alias(self, index, alias)
    }
    fn delete_link(&mut self, index: u32) -> Result<bool> {
        Kernel::delete_link(self, index)
    }
    fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        Kernel::set_up(self, index, up)
    }
    fn addresses(&mut self) -> Result<Vec<Addr>> {
        Kernel::addresses(self)
    }
    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        Kernel::add_address(self, index, net)
    }
    fn del_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        Kernel::del_address(self, index, net)
    }
    fn set_link(&mut self, index: u32, noarp: Option<bool>, mac: Option<[u8; 6]>) -> Result<()> {
        super::rules::set_link(&mut self.nl, index, noarp, mac)
    }
    fn rules(&mut self) -> Result<Vec<Rule>> {
        super::rules::rules(&mut self.nl)
    }
    fn add_rule(&mut self, rule: &Rule) -> Result<()> {
        super::rules::add_rule(&mut self.nl, rule)
    }
    fn del_rule(&mut self, rule: &Rule) -> Result<()> {
        super::rules::del_rule(&mut self.nl, rule)
    }
    fn dev_routes(&mut self, table: u32) -> Result<Vec<DevRoute>> {
        super::rules::dev_routes(&mut self.nl, table)
    }
    fn add_dev_route(&mut self, route: &DevRoute) -> Result<()> {
        super::rules::add_dev_route(&mut self.nl, route)
    }
    fn del_dev_route(&mut self, route: &DevRoute) -> Result<()> {
        super::rules::del_dev_route(&mut self.nl, route)
    }
    fn sysctl(&mut self, path: &str) -> Result<Option<String>> {
        read_sysctl(path).map_err(|source| KernelError::Sysctl {
            path: path.to_string(),
            source,
        })
    }
    fn set_sysctl(&mut self, path: &str, value: &str) -> Result<()> {
        write_sysctl(path, value).map_err(|source| KernelError::Sysctl {
            path: path.to_string(),
            source,
        })
    }
    fn users(&mut self, index: u32) -> Result<Vec<String>> {
        Kernel::users(self, index)
    }
    fn connected_routes(&mut self) -> Result<Vec<Route>> {
        Ok(self
            .table_routes()?
            .into_iter()
            .filter(|t| !t.is_multipath() && t.route.via.is_none())
            .map(|t| t.route)
            .collect())
    }
    fn seed_neighbour(
        &mut self,
        index: u32,
        addr: IpAddr,
        mac: [u8; 6],
        protocol: u8,
    ) -> Result<Seeded> {
        Kernel::seed_neighbour(self, index, addr, mac, protocol)
    }
    /// Runs in the caller's network namespace (a raw socket is opened
    /// there), like the sysctls.
    fn probe_segment(&mut self, link: &Link, addrs: &[IpAddr]) -> Result<Option<Answer>> {
        let mac: [u8; 6] = link.mac.as_slice().try_into().map_err(|_| {
            KernelError::Conflict(format!(
                "{} has no Ethernet address ({} bytes): the segment cannot be probed with ARP",
                link.name,
                link.mac.len()
            ))
        })?;
        neigh_probe::probe(link.index, mac, addrs, &neigh_probe::TIMING).map_err(|source| {
            KernelError::Io {
                op: format!("probe the segment on {}", link.name),
                source,
            }
        })
    }
}

impl Family {
    fn af(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

impl LinkKind {
    fn info(&self) -> Vec<LinkInfo> {
        match *self {
            LinkKind::Ipvlan { mode, flag } => {
                let mode = match mode {
                    IpvlanMode::L2 => IpVlanMode::L2,
                    IpvlanMode::L3 => IpVlanMode::L3,
                    IpvlanMode::L3s => IpVlanMode::L3S,
                };
                let flags = match flag {
                    IpvlanFlag::Bridge => IpVlanFlags::empty(),
                    IpvlanFlag::Private => IpVlanFlags::Private,
                    IpvlanFlag::Vepa => IpVlanFlags::Vepa,
                };
                vec![
                    LinkInfo::Kind(InfoKind::IpVlan),
                    LinkInfo::Data(InfoData::IpVlan(vec![
                        InfoIpVlan::Mode(mode),
                        InfoIpVlan::Flags(flags),
                    ])),
                ]
            }
            LinkKind::Macvlan { mode } => {
                let mode = match mode {
                    MacvlanMode::Bridge => MacVlanMode::Bridge,
                    MacvlanMode::Private => MacVlanMode::Private,
                    MacvlanMode::Vepa => MacVlanMode::Vepa,
                };
                vec![
                    LinkInfo::Kind(InfoKind::MacVlan),
                    LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)])),
                ]
            }
            LinkKind::Vlan { id } => vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)])),
            ],
            LinkKind::Veth => vec![LinkInfo::Kind(InfoKind::Veth)],
        }
    }
}

pub(crate) fn parse_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        parent: None,
        up: m.header.flags.contains(LinkFlags::Up),
        noarp: m.header.flags.contains(LinkFlags::Noarp),
        running: m.header.flags.contains(LinkFlags::Running),
        mtu: 0,
        mac: Vec::new(),
        alias: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Link(p) => link.parent = Some(*p),
            LinkAttribute::Address(mac) => link.mac = mac.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

pub(crate) fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.bits()),
            _ => None,
        })
        .unwrap_or_else(|| u32::from(m.header.flags.bits()));
    IpNet::new(ip, m.header.prefix_len).ok().map(|net| Addr {
        index: m.header.index,
        net,
        flags,
    })
}

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A neighbour entry's address and what it says.
fn parse_neighbour(m: &NeighbourMessage) -> Option<(IpAddr, Neighbour)> {
    let mut addr = None;
    let mut n = Neighbour {
        mac: None,
        state: u16::from(m.header.state),
        flags: m.header.flags.bits(),
        protocol: 0,
    };
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(l) => n.mac = l.as_slice().try_into().ok(),
            NeighbourAttribute::Protocol(p) => n.protocol = u8::from(*p),
            _ => {}
        }
    }
    addr.map(|a| (a, n))
}

fn addr_msg(index: u32, net: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = net.prefix_len();
    msg.header.family = match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    if net.addr().is_ipv6() {
        // A gateway (or, in the harness, a container address) must answer
        // at once, as Docker's own IPv6 addresses do; a duplicate is the
        // IPAM's business, not a reason to wait ~1-2 s.
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    if let IpNet::V4(v4) = net {
        if v4.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
    }
    msg
}

/// A main-table unicast route from a netlink message; `None` for other
/// tables and types (local, broadcast, multicast, ...).
pub(crate) fn parse_route(m: &RouteMessage) -> Option<TableRoute> {
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let mut via = None;
    let mut oif = None;
    let mut priority = 0;
    let mut multipath = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(*ip)),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(IpAddr::V6(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => via = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::MultiPath(hops) if hops.len() > 1 => {
                multipath = hops.iter().map(parse_hop).collect();
            }
            RouteAttribute::MultiPath(hops) => {
                // One hop written as RTA_MULTIPATH: an ordinary route.
                if let Some(h) = hops.first().map(parse_hop) {
                    via = via.or(h.via);
                    oif = oif.or(h.oif);
                }
            }
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || m.header.kind != RouteType::Unicast {
        return None;
    }
    let dst = match (dst, m.header.address_family) {
        (Some(ip), _) => IpNet::new(ip, m.header.destination_prefix_length).ok()?,
        (None, AddressFamily::Inet) => "0.0.0.0/0".parse().ok()?,
        (None, AddressFamily::Inet6) => "::/0".parse().ok()?,
        _ => return None,
    };
    Some(TableRoute {
        route: Route {
            dst,
            via,
            oif,
            protocol: u8::from(m.header.protocol),
        },
        tos: m.header.tos,
        priority,
        multipath,
    })
}

fn parse_hop(h: &RouteNextHop) -> NextHop {
    let via = h.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    });
    NextHop {
        via,
        oif: (h.interface_index != 0).then_some(h.interface_index),
    }
}

/// The message for a route: one next hop as RTA_GATEWAY/RTA_OIF, several
/// as RTA_MULTIPATH (weight 1 each).
pub(crate) fn route_msg(r: &MultiRoute) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match r.dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = r.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(r.protocol);
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if r.hops.iter().any(|h| h.via.is_some()) {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            r.dst.network(),
        )));
    match &r.hops[..] {
        [] => {}
        [h] => {
            if let Some(via) = h.via {
                msg.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(via)));
            }
            if let Some(oif) = h.oif {
                msg.attributes.push(RouteAttribute::Oif(oif));
            }
        }
        hops => {
            let hops = hops
                .iter()
                .map(|h| {
                    let mut nh = RouteNextHop::default();
                    nh.interface_index = h.oif.unwrap_or(0);
                    if let Some(via) = h.via {
                        nh.attributes
                            .push(RouteAttribute::Gateway(RouteAddress::from(via)));
                    }
                    nh
                })
                .collect();
            msg.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    msg
}

/// Reads a sysctl of the caller's network namespace: `path` under
/// `/proc/sys` with `/` separators (`net/ipv6/conf/eth1.10/forwarding`);
/// `None` when the kernel has no such setting.
pub fn read_sysctl(path: &str) -> io::Result<Option<String>> {
    match std::fs::read_to_string(Path::new("/proc/sys").join(path)) {
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a sysctl of the caller's network namespace (see [`read_sysctl`]);
/// a value already in place is not written again.
pub fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    if read_sysctl(path)?.as_deref() == Some(value) {
        return Ok(());
    }
    std::fs::write(Path::new("/proc/sys").join(path), value)
}
