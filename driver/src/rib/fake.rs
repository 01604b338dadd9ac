//! An in-memory main routing table for the installer's unit tests.
//!
//! In: the installer's writes through [`RouteTable`], and test controls:
//! foreign routes placed beforehand ([`FakeTable::add_foreign`]), a next hop
//! appended the IPv6 way ([`FakeTable::append_foreign_v6`]), the kernel's
//! flush on link down ([`FakeTable::flush_oif`]), next hops that answer
//! ENETUNREACH. Out: what a test asserts on — the routes and next hops held,
//! and how many dumps and writes the installer cost. It follows the kernel's
//! matching rules described in [`super::table`]. Only with `cfg(test)` or
//! the `test-support` feature.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use super::table::{default_priority, RouteTable, WriteResult};
use crate::kernel::netlink::NlError;
use crate::kernel::{KernelError, MultiRoute, NextHop, Route, TableRoute};

fn kernel_error(op: String, errno: i32) -> KernelError {
    KernelError::Netlink {
        op,
        source: NlError::Kernel(std::io::Error::from_raw_os_error(errno)),
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
    /// Number of writes that replaced a route in place (no delete first).
    pub replaced_in_place: usize,
}

impl FakeTable {
    pub fn add_foreign(&mut self, route: Route, priority: u32) {
        self.routes.push(TableRoute {
            route,
            tos: 0,
            priority,
            multipath: Vec::new(),
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
            multipath: Vec::new(),
        };
        match self.key_pos(&route.dst) {
            Some(_) => self.siblings.push(tr),
            None => self.routes.push(tr),
        }
    }

    /// What `ip link set DEV down` does: every route through `oif` is gone
    /// (IPv4 silently); a multipath route keeps its other hops.
    pub fn flush_oif(&mut self, oif: u32) {
        for r in &mut self.routes {
            r.multipath.retain(|h| h.oif != Some(oif));
            if let [h] = r.multipath[..] {
                r.multipath.clear();
                r.route.via = h.via;
                r.route.oif = h.oif;
            }
        }
        self.routes
            .retain(|r| r.is_multipath() || r.route.oif != Some(oif));
        self.siblings.retain(|r| r.route.oif != Some(oif));
        self.promote_orphans();
    }

    /// Every route and next hop at `dst`, each with its own protocol (a
    /// multipath route of ours without gateway: see [`FakeTable::multi_at`]).
    pub fn at(&self, dst: &IpNet) -> Vec<Route> {
        self.routes
            .iter()
            .chain(&self.siblings)
            .filter(|r| r.route.dst == *dst)
            .map(|r| r.route)
            .collect()
    }

    /// The routes at `dst` as a dump shows them, with every next hop.
    pub fn multi_at(&mut self, dst: &IpNet) -> Vec<MultiRoute> {
        let dumps = self.dumps;
        let out = self
            .dump()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.route.dst == *dst)
            .map(TableRoute::to_multi)
            .collect();
        self.dumps = dumps;
        out
    }

    fn siblings_of(&self, r: &TableRoute) -> Vec<NextHop> {
        self.siblings
            .iter()
            .filter(|s| s.route.dst == r.route.dst && s.priority == r.priority)
            .map(|s| NextHop::of(&s.route))
            .collect()
    }

    /// Next hops whose route went become a route of their own.
    fn promote_orphans(&mut self) {
        let mut i = 0;
        while i < self.siblings.len() {
            let s = &self.siblings[i];
            let parent = self
                .routes
                .iter()
                .any(|r| r.route.dst == s.route.dst && r.priority == s.priority);
            if parent {
                i += 1;
            } else {
                let s = self.siblings.remove(i);
                self.routes.push(s);
            }
        }
    }

    fn check(&self, r: &MultiRoute) -> Option<WriteResult> {
        r.gateways()
            .any(|v| self.unreachable.contains(&v))
            .then(|| Err(kernel_error(format!("route {}", r.dst), libc::ENETUNREACH)))
    }

    fn key_pos(&self, dst: &IpNet) -> Option<usize> {
        let prio = default_priority(dst);
        self.routes
            .iter()
            .position(|t| t.route.dst == *dst && t.tos == 0 && t.priority == prio)
    }

    fn ours_at_key(&self, r: &MultiRoute) -> TableRoute {
        let (route, multipath) = match r.single() {
            Some(one) => (one, Vec::new()),
            None => (
                Route {
                    dst: r.dst,
                    via: None,
                    oif: None,
                    protocol: r.protocol,
                },
                r.hops.clone(),
            ),
        };
        TableRoute {
            route,
            tos: 0,
            priority: default_priority(&r.dst),
            multipath,
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
                let appended = self.siblings_of(r);
                if appended.is_empty() {
                    r.clone()
                } else {
                    // One route, the first one's protocol, no gateway.
                    let mut hops = r.hops();
                    hops.extend(appended);
                    TableRoute {
                        route: Route {
                            via: None,
                            oif: None,
                            ..r.route
                        },
                        multipath: hops,
                        ..r.clone()
                    }
                }
            })
            .collect())
    }

    fn create_exclusive(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        routes
            .iter()
            .map(|r| {
                self.writes += 1;
                if let Some(e) = self.check(r) {
                    return e;
                }
                if self.key_pos(&r.dst).is_some() {
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

    fn replace(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        routes
            .iter()
            .map(|r| {
                self.writes += 1;
                if let Some(e) = self.check(r) {
                    return e;
                }
                // Like the kernel: the first route with the same key goes,
                // whoever owns it, with every next hop appended to it; in
                // place (a test that watches the table never sees it empty).
                let tr = self.ours_at_key(r);
                match self.key_pos(&r.dst) {
                    Some(i) => {
                        let prio = tr.priority;
                        self.routes[i] = tr;
                        self.replaced_in_place += 1;
                        self.siblings
                            .retain(|s| !(s.route.dst == r.dst && s.priority == prio));
                    }
                    None => self.routes.push(tr),
                }
                Ok(())
            })
            .collect()
    }

    fn delete(&mut self, routes: &[MultiRoute]) -> Vec<WriteResult> {
        for r in routes {
            self.writes += 1;
            if r.dst.addr().is_ipv6() && r.gateways().next().is_some() {
                // IPv6: each named next hop by its gateway.
                for h in &r.hops {
                    self.delete_v6_hop(r, h);
                }
                continue;
            }
            let want = r.hops.clone();
            let any_hop = r.gateways().next().is_none();
            let matches = |t: &TableRoute| {
                t.route.dst == r.dst
                    && t.route.protocol == r.protocol
                    && (any_hop || t.hops() == want)
            };
            if let Some(i) = self.routes.iter().position(matches) {
                let gone = self.routes.remove(i);
                if any_hop {
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

impl FakeTable {
    /// IPv6 DELETE with a gateway and a protocol: that next hop only.
    fn delete_v6_hop(&mut self, r: &MultiRoute, h: &NextHop) {
        let hop_matches = |x: &NextHop| x.via == h.via && (h.oif.is_none() || x.oif == h.oif);
        if let Some(i) = self.siblings.iter().position(|s| {
            s.route.dst == r.dst
                && s.route.protocol == r.protocol
                && hop_matches(&NextHop::of(&s.route))
        }) {
            self.siblings.remove(i);
            return;
        }
        let Some(i) = self.routes.iter().position(|t| {
            t.route.dst == r.dst
                && t.route.protocol == r.protocol
                && t.hops().iter().any(hop_matches)
        }) else {
            return;
        };
        let t = &mut self.routes[i];
        if t.is_multipath() {
            t.multipath.retain(|x| !hop_matches(x));
            if let [one] = t.multipath[..] {
                t.multipath.clear();
                t.route.via = one.via;
                t.route.oif = one.oif;
            }
        } else {
            self.routes.remove(i);
            self.promote_orphans();
        }
    }
}

/// A [`FakeTable`] shared between the installer's thread and a test.
#[derive(Debug, Clone)]
pub struct SharedTable(pub Arc<Mutex<FakeTable>>);

impl SharedTable {
    pub fn new(t: FakeTable) -> SharedTable {
        SharedTable(Arc::new(Mutex::new(t)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeTable> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RouteTable for SharedTable {
    fn dump(&mut self) -> Result<Vec<TableRoute>, KernelError> {
        self.lock().dump()
    }
    fn create_exclusive(&mut self, r: &[MultiRoute]) -> Vec<WriteResult> {
        self.lock().create_exclusive(r)
    }
    fn replace(&mut self, r: &[MultiRoute]) -> Vec<WriteResult> {
        self.lock().replace(r)
    }
    fn delete(&mut self, r: &[MultiRoute]) -> Vec<WriteResult> {
        self.lock().delete(r)
    }
}
