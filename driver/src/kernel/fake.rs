//! An in-memory kernel for unit tests of the driver, without root.
//!
//! In: the same link and address requests as [`super::Kernel`] (through
//! [`LinkKernel`]), plus test controls: foreign devices placed beforehand,
//! devices removed behind the driver's back, kinds this "kernel" lacks,
//! failures injected into the next request of a given type, routes placed
//! by hand, neighbours on a segment that answer probes for their
//! addresses, neighbour entries someone pinned, and the flags the kernel
//! reports on an address. Out: what a test asserts on — the links (index,
//! name, kind, parent, alias, up), addresses, neighbour entries and
//! sysctls as the driver left them, and the order of the creations.
//! It models what the driver relies on: names are unique (`EEXIST`), a gone
//! link answers `ENODEV`, deleting a veth takes its peer, deleting a lower
//! device takes the ipvlan/macvlan/VLAN links on it, an address brings its
//! connected route (as `proto kernel` does). Clones share one state,
//! so a test keeps a handle while the driver owns another.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use std::net::IpAddr;

use ipnet::IpNet;

use super::neigh_probe::Answer;
use super::netlink::NlError;
use super::{
    nud, Addr, DevRoute, KernelError, Link, LinkKernel, LinkKind, Neighbour, NewLink, Result,
    Route, Rule, Seeded,
};

/// A request type, for failure injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    SetAlias,
    Delete,
    SetUp,
    AddAddress,
    SeedNeighbour,
}

#[derive(Default)]
struct Inner {
    links: BTreeMap<u32, Link>,
    addrs: Vec<Addr>,
    next_index: u32,
    fail: VecDeque<(Op, i32)>,
    unsupported: BTreeSet<String>,
    /// Whether `IFLA_IFALIAS` in RTM_NEWLINK is kept (Linux ignores it).
    alias_on_create: bool,
    created: Vec<String>,
    /// Sysctls written, by path; unwritten ones read as "0".
    sysctls: BTreeMap<String, String>,
    /// Connected routes placed by hand (besides the addresses' own).
    routes: Vec<Route>,
    /// Someone on the segment behind a link (by name) holds this address.
    neighbours: Vec<(String, IpAddr, [u8; 6])>,
    /// This host's neighbour table: by link index and address.
    entries: BTreeMap<(u32, IpAddr), Neighbour>,
    /// Probes sent: the link's name and the addresses probed.
    probes: Vec<(String, Vec<IpAddr>)>,
    /// Policy routing rules.
    rules: Vec<Rule>,
    /// Routes without a gateway, any table (the connected ones aside).
    dev_routes: Vec<DevRoute>,
}

#[derive(Clone, Default)]
pub struct FakeKernel(Arc<Mutex<Inner>>);

fn errno(op: &str, errno: i32) -> KernelError {
    KernelError::Netlink {
        op: op.to_string(),
        source: NlError::Kernel(io::Error::from_raw_os_error(errno)),
    }
}

impl FakeKernel {
    /// A kernel with only `lo`.
    pub fn new() -> FakeKernel {
        let k = FakeKernel::default();
        k.inner().next_index = 1;
        k.add_device("lo", None, None, None);
        k
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Places a device that the driver did not make (a NIC, an InfiniBand
    /// port, someone's VLAN); returns its index.
    pub fn add_device(
        &self,
        name: &str,
        kind: Option<&str>,
        parent: Option<&str>,
        alias: Option<&str>,
    ) -> u32 {
        let mut g = self.inner();
        let parent = parent.and_then(|p| g.links.values().find(|l| l.name == p).map(|l| l.index));
        let index = g.next_index;
        g.next_index += 1;
        g.links.insert(
            index,
            Link {
                index,
                name: name.to_string(),
                kind: kind.map(str::to_string),
                parent,
                up: true,
                noarp: false,
                running: true,
                mtu: 1500,
                mac: vec![2, 0, 0, 0, 0, index as u8],
                alias: alias.map(str::to_string),
            },
        );
        index
    }

    /// Removes a device as if someone else deleted it (with what sits on it).
    pub fn remove_device(&self, name: &str) {
        let mut g = self.inner();
        if let Some(i) = g.links.values().find(|l| l.name == name).map(|l| l.index) {
            remove(&mut g, i);
        }
    }

    /// Sets a device's MTU (as `ip link set NAME mtu N` would).
    pub fn set_mtu(&self, name: &str, mtu: u32) {
        if let Some(l) = self.inner().links.values_mut().find(|l| l.name == name) {
            l.mtu = mtu;
        }
    }

    /// The next request of type `op` fails with `errno` (queued in order).
    pub fn fail_next(&self, op: Op, errno: i32) {
        self.inner().fail.push_back((op, errno));
    }

    /// Creating links of `kind` (`ipvlan`, `vlan`, ...) answers EOPNOTSUPP;
    /// `force_forwarding` makes that per-link IPv6 sysctl absent (Linux < 6.17).
    pub fn without(&self, kind: &str) {
        self.inner().unsupported.insert(kind.to_string());
    }

    /// Makes RTM_NEWLINK keep `IFLA_IFALIAS` (Linux does not).
    pub fn keep_alias_on_create(&self, keep: bool) {
        self.inner().alias_on_create = keep;
    }

    pub fn link_named(&self, name: &str) -> Option<Link> {
        self.inner()
            .links
            .values()
            .find(|l| l.name == name)
            .cloned()
    }

    pub fn all_links(&self) -> Vec<Link> {
        self.inner().links.values().cloned().collect()
    }

    pub fn all_addresses(&self) -> Vec<Addr> {
        self.inner().addrs.clone()
    }

    /// Sets the `IFA_F_*` flags of an address (temporary, deprecated,
    /// tentative, DAD failed: see [`super::ifa`]) as the kernel would report them.
    pub fn set_address_flags(&self, net: IpNet, flags: u32) {
        for a in self.inner().addrs.iter_mut().filter(|a| a.net == net) {
            a.flags = flags;
        }
    }

    /// Sets a link down behind the driver's back; like Linux (with
    /// keep_addr_on_down=0) it drops the link's IPv6 addresses.
    pub fn set_down(&self, name: &str) {
        let mut g = self.inner();
        let Some(index) = g.links.values().find(|l| l.name == name).map(|l| l.index) else {
            return;
        };
        if let Some(l) = g.links.get_mut(&index) {
            l.up = false;
        }
        g.addrs
            .retain(|a| !(a.index == index && a.net.addr().is_ipv6()));
    }

    /// Drops an address behind the driver's back (as the kernel does with
    /// IPv6 addresses of a link set down).
    pub fn remove_address(&self, link: &str, net: IpNet) {
        let mut g = self.inner();
        let Some(index) = g.links.values().find(|l| l.name == link).map(|l| l.index) else {
            return;
        };
        g.addrs.retain(|a| !(a.index == index && a.net == net));
    }

    /// A sysctl as the driver left it (`None`: never written).
    pub fn sysctl_value(&self, path: &str) -> Option<String> {
        self.inner().sysctls.get(path).cloned()
    }

    /// A connected route (no gateway) on link `dev`, as an operator's
    /// `ip route add PREFIX dev DEV` makes.
    pub fn add_route(&self, dst: IpNet, dev: &str) {
        let mut g = self.inner();
        let oif = g.links.values().find(|l| l.name == dev).map(|l| l.index);
        g.routes.push(Route {
            dst,
            via: None,
            oif,
            protocol: 4,
        });
    }

    /// Someone on the segment behind link `dev` holds `addr` and answers
    /// probes for it from `mac`.
    pub fn add_neighbour(&self, dev: &str, addr: IpAddr, mac: [u8; 6]) {
        self.inner().neighbours.push((dev.to_string(), addr, mac));
    }

    /// This host's neighbour entry for `addr` on link `dev`, if any.
    pub fn neighbour_entry(&self, dev: &str, addr: IpAddr) -> Option<Neighbour> {
        let g = self.inner();
        let index = g.links.values().find(|l| l.name == dev)?.index;
        g.entries.get(&(index, addr)).copied()
    }

    /// Every neighbour entry: link name, address, entry.
    pub fn neighbour_entries(&self) -> Vec<(String, IpAddr, Neighbour)> {
        let g = self.inner();
        g.entries
            .iter()
            .filter_map(|((i, a), n)| Some((g.links.get(i)?.name.clone(), *a, *n)))
            .collect()
    }

    /// Someone pinned `addr` to `mac` on link `dev` (`ip neigh replace
    /// ... nud permanent`).
    pub fn pin_neighbour(&self, dev: &str, addr: IpAddr, mac: [u8; 6]) {
        let mut g = self.inner();
        if let Some(index) = g.links.values().find(|l| l.name == dev).map(|l| l.index) {
            let n = Neighbour {
                mac: Some(mac),
                state: nud::PERMANENT,
                flags: 0,
                protocol: 0,
            };
            g.entries.insert((index, addr), n);
        }
    }

    /// The probes sent so far: the link and the addresses probed.
    pub fn probes(&self) -> Vec<(String, Vec<IpAddr>)> {
        self.inner().probes.clone()
    }

    /// Names of the links created through requests, in order (veth peers too).
    pub fn created(&self) -> Vec<String> {
        self.inner().created.clone()
    }
}

fn injected(g: &mut Inner, op: Op, what: &str) -> Result<()> {
    if let Some(pos) = g.fail.iter().position(|(o, _)| *o == op) {
        let (_, e) = g.fail.remove(pos).unwrap_or((op, libc::EIO));
        return Err(errno(what, e));
    }
    Ok(())
}

fn remove(g: &mut Inner, index: u32) {
    let Some(l) = g.links.remove(&index) else {
        return;
    };
    g.addrs.retain(|a| a.index != index);
    g.dev_routes.retain(|r| r.oif != index);
    g.entries.retain(|k, _| k.0 != index);
    let dependants: Vec<u32> = g
        .links
        .values()
        .filter(|o| {
            o.parent == Some(index)
                || (l.kind.as_deref() == Some("veth") && l.parent == Some(o.index))
        })
        .map(|o| o.index)
        .collect();
    for d in dependants {
        remove(g, d);
    }
}

impl LinkKernel for FakeKernel {
    fn links(&mut self) -> Result<Vec<Link>> {
        Ok(self.all_links())
    }

    fn link(&mut self, name: &str) -> Result<Option<Link>> {
        Ok(self.link_named(name))
    }

    fn create_link(&mut self, new: &NewLink) -> Result<Link> {
        let mut g = self.inner();
        let what = format!("create {} link {}", new.kind.name(), new.name);
        injected(&mut g, Op::Create, &what)?;
        if g.unsupported.contains(new.kind.name()) {
            return Err(errno(&what, libc::EOPNOTSUPP));
        }
        let mut names = vec![new.name.clone()];
        if new.kind == LinkKind::Veth {
            names.push(
                new.peer
                    .clone()
                    .ok_or_else(|| KernelError::Conflict("veth needs a peer".into()))?,
            );
        } else if new.parent.is_none_or(|p| !g.links.contains_key(&p)) {
            return Err(errno(&what, libc::ENODEV));
        }
        if names
            .iter()
            .any(|n| n.len() > 15 || g.links.values().any(|l| &l.name == n))
        {
            return Err(errno(&what, libc::EEXIST));
        }
        let alias = g.alias_on_create.then(|| new.alias.clone());
        let first = g.next_index;
        for (i, name) in names.iter().enumerate() {
            let index = first + i as u32;
            let parent = match new.kind {
                LinkKind::Veth => Some(if i == 0 { first + 1 } else { first }),
                _ => new.parent,
            };
            let mac = new
                .mac
                .map(|m| m.to_vec())
                .unwrap_or_else(|| vec![2, 0, 0, 0, 1, index as u8]);
            g.links.insert(
                index,
                Link {
                    index,
                    name: name.clone(),
                    kind: Some(new.kind.name().to_string()),
                    parent,
                    up: false,
                    noarp: false,
                    running: false,
                    mtu: new.mtu.unwrap_or(1500),
                    mac,
                    alias: alias.clone(),
                },
            );
            g.created.push(name.clone());
        }
        g.next_index += names.len() as u32;
        Ok(g.links[&first].clone())
    }

    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        let mut g = self.inner();
        let what = format!("set alias of link #{index}");
        injected(&mut g, Op::SetAlias, &what)?;
        let l = g
            .links
            .get_mut(&index)
            .ok_or_else(|| errno(&what, libc::ENODEV))?;
        l.alias = (!alias.is_empty()).then(|| alias.to_string());
        Ok(())
    }

    fn delete_link(&mut self, index: u32) -> Result<bool> {
        let mut g = self.inner();
        injected(&mut g, Op::Delete, &format!("delete link #{index}"))?;
        if !g.links.contains_key(&index) {
            return Ok(false);
        }
        remove(&mut g, index);
        Ok(true)
    }

    fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut g = self.inner();
        let what = format!("set link #{index} up={up}");
        injected(&mut g, Op::SetUp, &what)?;
        let l = g
            .links
            .get_mut(&index)
            .ok_or_else(|| errno(&what, libc::ENODEV))?;
        l.up = up;
        l.running = up;
        Ok(())
    }

    fn addresses(&mut self) -> Result<Vec<Addr>> {
        Ok(self.all_addresses())
    }

    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let mut g = self.inner();
        let what = format!("add address {net} to #{index}");
        injected(&mut g, Op::AddAddress, &what)?;
        if !g.links.contains_key(&index) {
            return Err(errno(&what, libc::ENODEV));
        }
        let a = Addr {
            index,
            net,
            flags: 0,
        };
        if !g.addrs.iter().any(|b| b.index == index && b.net == net) {
            g.addrs.push(a);
        }
        Ok(())
    }

    fn set_link(&mut self, index: u32, noarp: Option<bool>, mac: Option<[u8; 6]>) -> Result<()> {
        let mut g = self.inner();
        let l = g
            .links
            .get_mut(&index)
            .ok_or_else(|| errno(&format!("set link #{index}"), libc::ENODEV))?;
        if let Some(n) = noarp {
            l.noarp = n;
        }
        if let Some(m) = mac {
            l.mac = m.to_vec();
        }
        Ok(())
    }

    fn rules(&mut self) -> Result<Vec<Rule>> {
        Ok(self.inner().rules.clone())
    }

    fn add_rule(&mut self, rule: &Rule) -> Result<()> {
        let mut g = self.inner();
        if !g.rules.contains(rule) {
            g.rules.push(rule.clone());
        }
        Ok(())
    }

    fn del_rule(&mut self, rule: &Rule) -> Result<()> {
        self.inner().rules.retain(|r| r != rule);
        Ok(())
    }

    fn dev_routes(&mut self, table: u32) -> Result<Vec<DevRoute>> {
        Ok(self
            .inner()
            .dev_routes
            .iter()
            .filter(|r| r.table == table)
            .copied()
            .collect())
    }

    fn add_dev_route(&mut self, route: &DevRoute) -> Result<()> {
        let mut g = self.inner();
        if !g.links.contains_key(&route.oif) {
            return Err(errno(&format!("add route {}", route.dst), libc::ENODEV));
        }
        g.dev_routes
            .retain(|r| !(r.dst == route.dst && r.table == route.table));
        g.dev_routes.push(*route);
        Ok(())
    }

    fn del_dev_route(&mut self, route: &DevRoute) -> Result<()> {
        self.inner().dev_routes.retain(|r| r != route);
        Ok(())
    }

    fn del_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        self.inner()
            .addrs
            .retain(|a| !(a.index == index && a.net == net));
        Ok(())
    }

    /// Global settings read "0"; per-link ones exist for existing links,
    /// except `force_forwarding` where this kernel is `without` it (before Linux 6.17).
    fn sysctl(&mut self, path: &str) -> Result<Option<String>> {
        let g = self.inner();
        if let Some(v) = g.sysctls.get(path) {
            return Ok(Some(v.clone()));
        }
        let exists = match path.strip_prefix("net/ipv6/conf/") {
            Some(rest) => {
                let (link, key) = rest.split_once('/').unwrap_or((rest, ""));
                let link_ok =
                    matches!(link, "all" | "default") || g.links.values().any(|l| l.name == link);
                link_ok && !g.unsupported.contains(key)
            }
            None => true,
        };
        Ok(exists.then(|| "0".to_string()))
    }

    /// Links whose lower device is `index` (veth peers aside). The fake
    /// has one namespace: a container's link is a device placed with that
    /// parent.
    fn users(&mut self, index: u32) -> Result<Vec<String>> {
        Ok(self
            .inner()
            .links
            .values()
            .filter(|l| {
                l.parent == Some(index) && l.index != index && l.kind.as_deref() != Some("veth")
            })
            .map(|l| l.name.clone())
            .collect())
    }

    /// The hand-placed routes, and one per address (its prefix, on its
    /// link) as the kernel adds them; host addresses (/32, /128) have none.
    fn connected_routes(&mut self) -> Result<Vec<Route>> {
        let g = self.inner();
        let mut out = g.routes.clone();
        for a in &g.addrs {
            if a.net.prefix_len() < a.net.max_prefix_len() {
                out.push(Route {
                    dst: a.net.trunc(),
                    via: None,
                    oif: Some(a.index),
                    protocol: 2,
                });
            }
        }
        Ok(out)
    }

    /// Neighbours placed on the link's segment answer for their addresses.
    fn probe_segment(&mut self, link: &Link, addrs: &[IpAddr]) -> Result<Option<Answer>> {
        let mut g = self.inner();
        g.probes.push((link.name.clone(), addrs.to_vec()));
        Ok(g.neighbours.iter().find_map(|(dev, addr, mac)| {
            (dev == &link.name && addrs.contains(addr)).then_some(Answer {
                addr: *addr,
                mac: *mac,
                probing: false,
            })
        }))
    }

    fn seed_neighbour(
        &mut self,
        index: u32,
        addr: IpAddr,
        mac: [u8; 6],
        protocol: u8,
    ) -> Result<Seeded> {
        let mut g = self.inner();
        injected(&mut g, Op::SeedNeighbour, &format!("neighbour {addr}"))?;
        if !g.links.contains_key(&index) {
            return Err(errno("set a neighbour entry", libc::ENODEV));
        }
        if let Some(n) = g.entries.get(&(index, addr)).filter(|n| n.pinned()) {
            return Ok(match n.mac {
                Some(m) if m != mac => Seeded::Pinned { mac: m },
                _ => Seeded::Written,
            });
        }
        let n = Neighbour {
            mac: Some(mac),
            state: nud::STALE,
            flags: 0,
            protocol,
        };
        g.entries.insert((index, addr), n);
        Ok(Seeded::Written)
    }

    fn set_sysctl(&mut self, path: &str, value: &str) -> Result<()> {
        if self.sysctl(path)?.is_none() {
            return Err(KernelError::Sysctl {
                path: path.to_string(),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        self.inner()
            .sysctls
            .insert(path.to_string(), value.to_string());
        Ok(())
    }
}
