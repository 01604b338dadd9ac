//! What the container port of ipvlan L3 needs from the real kernel beyond
//! links and addresses: a link's `IFF_NOARP` and MAC, policy routing rules,
//! and routes without a gateway in any table.
//!
//! In: the facade's [`Rule`] and [`DevRoute`] and a [`Netlink`] socket.
//! Out: RTM_SETLINK, RTM_{NEW,DEL,GET}RULE and RTM_{NEW,DEL,GET}ROUTE
//! messages, the answers parsed back. Adding what is there and deleting
//! what is gone succeed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::Netlink;
use super::{DevRoute, KernelError, Result, Rule};

pub fn set_link(
    nl: &mut Netlink,
    index: u32,
    noarp: Option<bool>,
    mac: Option<[u8; 6]>,
) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(n) = noarp {
        msg.header.change_mask = LinkFlags::Noarp;
        if n {
            msg.header.flags = LinkFlags::Noarp;
        }
    }
    if let Some(m) = mac {
        msg.attributes.push(LinkAttribute::Address(m.to_vec()));
    }
    nl.request(RouteNetlinkMessage::SetLink(msg), 0)
        .map_err(KernelError::nl(format!("set NOARP/MAC of link #{index}")))
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn rule_msg(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family(r.v6);
    m.header.action = RuleAction::ToTable;
    m.header.table = u8::try_from(r.table).unwrap_or(0);
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(oif) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(oif.clone()));
    }
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(r.protocol)));
    m
}

pub fn rules(nl: &mut Netlink) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let mut m = RuleMessage::default();
        m.header.family = family(v6);
        let msgs = nl
            .dump(RouteNetlinkMessage::GetRule(m))
            .map_err(KernelError::nl("list rules"))?;
        for msg in msgs {
            let RouteNetlinkMessage::NewRule(r) = msg else {
                continue;
            };
            let mut rule = Rule {
                v6,
                priority: 0,
                oif: None,
                table: u32::from(r.header.table),
                protocol: 0,
            };
            for a in &r.attributes {
                match a {
                    RuleAttribute::Priority(p) => rule.priority = *p,
                    RuleAttribute::Oifname(o) => rule.oif = Some(o.clone()),
                    RuleAttribute::Table(t) => rule.table = *t,
                    RuleAttribute::Protocol(p) => rule.protocol = u8::from(*p),
                    _ => {}
                }
            }
            out.push(rule);
        }
    }
    Ok(out)
}

pub fn add_rule(nl: &mut Netlink, r: &Rule) -> Result<()> {
    match nl.request(
        RouteNetlinkMessage::NewRule(rule_msg(r)),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e.is(libc::EEXIST) => Ok(()),
        Err(e) => Err(KernelError::nl(format!(
            "add rule oif {} lookup {} pref {}",
            r.oif.as_deref().unwrap_or("-"),
            r.table,
            r.priority
        ))(e)),
    }
}

pub fn del_rule(nl: &mut Netlink, r: &Rule) -> Result<()> {
    match nl.request(RouteNetlinkMessage::DelRule(rule_msg(r)), 0) {
        Ok(()) => Ok(()),
        Err(e) if e.is(libc::ENOENT) || e.is(libc::ESRCH) => Ok(()),
        Err(e) => Err(KernelError::nl(format!("delete rule pref {}", r.priority))(
            e,
        )),
    }
}

fn route_msg(r: &DevRoute) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match r.dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = r.dst.prefix_len();
    m.header.table = u8::try_from(r.table).unwrap_or(252);
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.kind = RouteType::Unicast;
    m.header.scope = RouteScope::Link;
    if r.dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                r.dst.network(),
            )));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    m.attributes.push(RouteAttribute::Oif(r.oif));
    m
}

pub fn dev_routes(nl: &mut Netlink, table: u32) -> Result<Vec<DevRoute>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let mut m = RouteMessage::default();
        m.header.address_family = family(v6);
        let msgs = nl
            .dump(RouteNetlinkMessage::GetRoute(m))
            .map_err(KernelError::nl("list routes"))?;
        for msg in msgs {
            let RouteNetlinkMessage::NewRoute(r) = msg else {
                continue;
            };
            let mut t = u32::from(r.header.table);
            let (mut dst, mut oif, mut gateway) = (None, None, false);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(x) => t = *x,
                    RouteAttribute::Oif(o) => oif = Some(*o),
                    RouteAttribute::Gateway(_) | RouteAttribute::MultiPath(_) => gateway = true,
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                        dst = Some(IpAddr::V4(*a))
                    }
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                        dst = Some(IpAddr::V6(*a))
                    }
                    _ => {}
                }
            }
            if t != table || gateway || r.header.kind != RouteType::Unicast {
                continue;
            }
            let addr = dst.unwrap_or(if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            });
            let (Some(oif), Ok(dst)) = (oif, IpNet::new(addr, r.header.destination_prefix_length))
            else {
                continue;
            };
            out.push(DevRoute {
                dst,
                oif,
                table,
                protocol: u8::from(r.header.protocol),
            });
        }
    }
    Ok(out)
}

pub fn add_dev_route(nl: &mut Netlink, r: &DevRoute) -> Result<()> {
    nl.request(
        RouteNetlinkMessage::NewRoute(route_msg(r)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map_err(KernelError::nl(format!(
        "add route {} dev #{} table {}",
        r.dst, r.oif, r.table
    )))
}

pub fn del_dev_route(nl: &mut Netlink, r: &DevRoute) -> Result<()> {
    match nl.request(RouteNetlinkMessage::DelRoute(route_msg(r)), 0) {
        Ok(()) => Ok(()),
        Err(e) if e.is(libc::ESRCH) || e.is(libc::ENOENT) || e.is(libc::ENODEV) => Ok(()),
        Err(e) => Err(KernelError::nl(format!(
            "delete route {} table {}",
            r.dst, r.table
        ))(e)),
    }
}
