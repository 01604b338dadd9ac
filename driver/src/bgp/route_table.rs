//! The installer's view of the kernel's main routing table, as a trait.
//!
//! In: route intents from the installer (create only where free, replace
//! ours, delete ours). Out: the main table's unicast routes as
//! [`TableRoute`]s (with the fields the kernel uses to tell routes apart:
//! destination, TOS, priority, table) or one result per write.
//! [`Kernel`] implements it over netlink; [`FakeTable`] implements it in
//! memory with the kernel's matching rules, so the installer's ownership and
//! reconcile rules have unit tests that need no root.
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
use std::net::IpAddr;

use ipnet::IpNet;

use crate::kernel::netlink::NlError;
use crate::kernel::real::Kernel;
use crate::kernel::{KernelError, Route, TableRoute};

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
    fn create_exclusive(&mut self, routes: &[Route]) -> Vec<WriteResult>;

    /// Replaces the route with the same key (creates it if none).
    fn replace(&mut self, routes: &[Route]) -> Vec<WriteResult>;

    /// Deletes routes matching destination, protocol, next hop; gone is success.
    fn delete(&mut self, routes: &[Route]) -> Vec<WriteResult>;
}

fn kernel_error(op: String, errno: i32) -> KernelError {
    KernelError::Netlink {
        op,
        source: NlError::Kernel(std::io::Error::from_raw_os_error(errno)),
    }
}

impl RouteTable for Kernel {
    fn dump(&mut self) -> Result<Vec<TableRoute>, KernelError> {
        self.table_routes()
    }

    fn create_exclusive(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        self.create_routes(routes)
    }

    fn replace(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        self.replace_routes(routes)
    }

    fn delete(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        self.delete_routes(routes)
    }
}

/// An in-memory main table with the kernel's matching rules (see the module
/// header). Routes written by the installer get the family's default metric
/// like ours do in the kernel (0, IPv6 1024). Tests add foreign routes with
/// [`FakeTable::add_foreign`], append a next hop the IPv6 way with
/// [`FakeTable::append_foreign_v6`], and simulate the kernel's flush on link
/// down with [`FakeTable::flush_oif`].
#[derive(Debug, Default)]
pub struct FakeTable {
    pub routes: Vec<TableRoute>,
    /// Next hops appended to a route of `routes` with the same destination
    /// and metric (IPv6): the dump shows them merged into it.
    pub siblings: Vec<TableRoute>,
    /// Next hops the fake answers ENETUNREACH for (a link just came up).
    pub unreachable: HashSet<IpAddr>,
    /// Number of dumps served (tests check the cost of reconciling).
    pub dumps: usize,
    /// Number of route writes served.
    pub writes: usize,
}

impl FakeTable {
    pub fn add_foreign(&mut self, route: Route, priority: u32) {
        self.routes.push(TableRoute {
            route,
            tos: 0,
            priority,
            multipath: false,
        });
    }

    /// What CREATE without EXCL does for IPv6 (`ip -6 route prepend`): with a
    /// route at the same key it appends a next hop to it, whatever its
    /// protocol; without one it adds the route.
    pub fn append_foreign_v6(&mut self, route: Route) {
        let tr = TableRoute {
            route,
            tos: 0,
            priority: default_priority(&route.dst),
            multipath: false,
        };
        match self.key_pos(&route) {
            Some(_) => self.siblings.push(tr),
            None => self.routes.push(tr),
        }
    }

    /// What `ip link set DEV down` does: every route through `oif` is gone
    /// (IPv4 silently).
    pub fn flush_oif(&mut self, oif: u32) {
        self.routes.retain(|r| r.route.oif != Some(oif));
        self.siblings.retain(|r| r.route.oif != Some(oif));
        self.promote_orphans();
    }

    /// Every route and next hop at `dst`, each with its own protocol.
    pub fn at(&self, dst: &IpNet) -> Vec<Route> {
        self.routes
            .iter()
            .chain(&self.siblings)
            .filter(|r| r.route.dst == *dst)
            .map(|r| r.route)
            .collect()
    }

    fn has_siblings(&self, r: &TableRoute) -> bool {
        self.siblings
            .iter()
            .any(|s| s.route.dst == r.route.dst && s.priority == r.priority)
    }

    /// Next hops whose route went become a route of their own.
    fn promote_orphans(&mut self) {
        let mut i = 0;
        while i < self.siblings.len() {
            let s = self.siblings[i];
            let parent = self
                .routes
                .iter()
                .any(|r| r.route.dst == s.route.dst && r.priority == s.priority);
            if parent {
                i += 1;
            } else {
                self.routes.push(self.siblings.remove(i));
            }
        }
    }

    fn check(&self, r: &Route) -> Option<WriteResult> {
        match r.via {
            Some(v) if self.unreachable.contains(&v) => Some(Err(kernel_error(
                format!("route {}", r.dst),
                libc::ENETUNREACH,
            ))),
            _ => None,
        }
    }

    fn key_pos(&self, r: &Route) -> Option<usize> {
        let prio = default_priority(&r.dst);
        self.routes
            .iter()
            .position(|t| t.route.dst == r.dst && t.tos == 0 && t.priority == prio)
    }

    fn ours_at_key(&self, r: &Route) -> TableRoute {
        TableRoute {
            route: *r,
            tos: 0,
            priority: default_priority(&r.dst),
            multipath: false,
        }
    }
}

impl RouteTable for FakeTable {
    fn dump(&mut self) -> Result<Vec<TableRoute>, KernelError> {
        self.dumps += 1;
        Ok(self
            .routes
            .iter()
            .map(|r| {
                if self.has_siblings(r) {
                    // One route, the first one's protocol, no gateway.
                    TableRoute {
                        route: Route {
                            via: None,
                            oif: None,
                            ..r.route
                        },
                        multipath: true,
                        ..*r
                    }
                } else {
                    *r
                }
            })
            .collect())
    }

    fn create_exclusive(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        routes
            .iter()
            .map(|r| {
                self.writes += 1;
                if let Some(e) = self.check(r) {
                    return e;
                }
                if self.key_pos(r).is_some() {
                    return Err(kernel_error(
                        format!("create route {}", r.dst),
                        libc::EEXIST,
                    ));
                }
                let tr = self.ours_at_key(r);
                self.routes.push(tr);
                Ok(())
            })
            .collect()
    }

    fn replace(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        routes
            .iter()
            .map(|r| {
                self.writes += 1;
                if let Some(e) = self.check(r) {
                    return e;
                }
                // Like the kernel: the first route with the same key goes,
                // whoever owns it, with every next hop appended to it.
                let tr = self.ours_at_key(r);
                match self.key_pos(r) {
                    Some(i) => {
                        self.routes[i] = tr;
                        self.siblings
                            .retain(|s| !(s.route.dst == r.dst && s.priority == tr.priority));
                    }
                    None => self.routes.push(tr),
                }
                Ok(())
            })
            .collect()
    }

    fn delete(&mut self, routes: &[Route]) -> Vec<WriteResult> {
        for r in routes {
            self.writes += 1;
            let matches = |t: &TableRoute| {
                t.route.dst == r.dst
                    && t.route.protocol == r.protocol
                    && (r.via.is_none() || t.route.via == r.via)
                    && (r.oif.is_none() || t.route.oif == r.oif)
            };
            if let Some(i) = self.routes.iter().position(matches) {
                let gone = self.routes.remove(i);
                if r.via.is_none() {
                    // Without a gateway the kernel takes every next hop.
                    self.siblings.retain(|s| {
                        !(s.route.dst == gone.route.dst && s.priority == gone.priority)
                    });
                }
                self.promote_orphans();
            } else if let Some(i) = self.siblings.iter().position(matches) {
                self.siblings.remove(i);
            }
        }
        routes.iter().map(|_| Ok(())).collect()
    }
}
