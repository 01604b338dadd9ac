//! The installer's view of the kernel's main routing table, as a trait.
//!
//! In: route intents from the installer (create only where free, replace
//! ours, delete ours). Out: the main table's unicast routes as
//! [`TableRoute`]s (with the fields the kernel uses to tell routes apart:
//! destination, TOS, priority, table) or one result per write.
//! [`Kernel`] implements it over netlink; `FakeTable` (`rib/fake.rs`, tests
//! only) implements it in memory with the kernel's matching rules, so the
//! installer's ownership and reconcile rules have unit tests that need no root.
//!
//! Kernel facts the installer relies on (IPv4 `fib_table_insert`/`delete`,
//! IPv6 `fib6_add_rt2node`/`ip6_route_del`):
//! - two routes are "the same" for create/replace when they share table,
//!   destination/length, TOS and priority; the protocol plays no part, so a
//!   REPLACE can overwrite another daemon's route. We only replace where a dump
//!   showed our tag and no other owner at that destination.
//! - CREATE|EXCL fails with EEXIST when such a route exists: the prefix is
//!   someone else's (or ours, found by the next dump).
//! - DELETE with a protocol only matches routes of that protocol, so our
//!   deletes can never remove someone else's route.
//!
//! IPv6 differs (measured on kernel 6.18 in a namespace, `ip -6 route`):
//! - A route written without a metric gets 1024 (IPv4: 0).
//! - CREATE without EXCL (`ip route prepend`) for an existing key with a
//!   *different gateway* does not fail: it appends a next hop to the existing
//!   route, whatever its protocol. A dump then shows ONE multipath route
//!   (RTA_MULTIPATH, no RTA_GATEWAY/RTA_OIF) carrying the protocol of the
//!   first route: another daemon's next hop can hide under our tag. The
//!   notification of the append carries the appender's protocol.
//! - CREATE|EXCL still fails with EEXIST; REPLACE replaces the whole
//!   multipath route, the other owner's next hop included.
//! - REPLACE with RTA_MULTIPATH replaces the whole next-hop set in place
//!   (both families): the prefix is never without a route, so a next hop
//!   coming or going is one write (`docs/dual-uplink.md`, e6).
//! - DELETE with a gateway and a protocol removes only that next hop (the
//!   other owner's stays, now shown with its own protocol); DELETE without
//!   a gateway removes every next hop of the route. So a multipath route
//!   with our tag is never replaced nor deleted without our gateway (see
//!   the installer).
//! - `ip link set DEV down` removes IPv6 routes through DEV too, but *with*
//!   an RTM_DELROUTE for each (IPv4: silently), and flushes the link's
//!   global IPv6 addresses (`keep_addr_on_down=0`, the default): after `up`,
//!   a gateway on that subnet is unreachable (EHOSTUNREACH) until the
//!   address is back.

use std::collections::HashSet;

use ipnet::IpNet;

use crate::kernel::real::Kernel;
use crate::kernel::{KernelError, MultiRoute, Route, TableRoute};

/// The metric the kernel gives a route written without one.
pub fn default_priority(dst: &IpNet) -> u32 {
    match dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

pub type WriteResult = Result<(), KernelError>;

/// What the installer needs from a routing table. Writes are batched: one
/// result per route, in order.
pub trait RouteTable: Send + 'static {
    /// Every unicast route of the main table, both families, any protocol.
    fn dump(&mut self) -> Result<Vec<TableRoute>, KernelError>;

    /// Routes of the main table carrying `protocol`.
    fn dump_protocol(&mut self, protocol: u8) -> Result<Vec<Route>, KernelError> {
        Ok(self
            .dump()?
            .into_iter()
            .filter(|r| r.route.protocol == protocol)
            .map(|r| r.route)
            .collect())
    }

    /// Routes of the main table whose destination is one of `prefixes`.
    fn dump_prefixes(&mut self, prefixes: &HashSet<IpNet>) -> Result<Vec<TableRoute>, KernelError> {
        Ok(self
            .dump()?
            .into_iter()
            .filter(|r| prefixes.contains(&r.route.dst))
            .collect())
    }

    /// Adds routes only where no route with the same key exists (EEXIST otherwise).
    fn create_exclusive(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult>;

    /// Replaces the route with the same key (creates it if none), with its
    /// whole next-hop set: in place, no moment without a route.
    fn replace(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult>;

    /// Deletes routes matching destination, protocol, next hops; gone is
    /// success. IPv6 removes each named next hop by its gateway (another
    /// owner's hop on the same route stays); IPv4 the route with these hops.
    fn delete(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult>;
}

impl RouteTable for Kernel {
    fn dump(&mut self) -> Result<Vec<TableRoute>, KernelError> {
        self.table_routes()
    }

    fn create_exclusive(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        self.create_routes(routes)
    }

    fn replace(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        self.replace_routes(routes)
    }

    fn delete(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        self.delete_routes(routes)
    }
}
