//! Docker's IPAM as the emulator plays it: one network's IPv4 (and IPv6)
//! subnet on one host, the gateway the first address, containers the next
//! free ones, serially and wrapping like Docker's allocator.
//!
//! In: a subnet. Out: addresses to hand out, given back on stop. Owns the
//! allocation state of one network on one host; no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use ipnet::{Ipv4Net, Ipv6Net};

/// Docker's IPAM for one network on one host: the gateway takes the first
/// address, containers the next free ones.
#[derive(Debug, Clone)]
pub struct Ipam {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    used: std::collections::BTreeSet<Ipv4Addr>,
    next: u32,
}

impl Ipam {
    pub fn new(subnet: Ipv4Net) -> Ipam {
        let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
        Ipam {
            subnet,
            gateway,
            used: [gateway].into(),
            next: u32::from(subnet.network()) + 2,
        }
    }

    /// Like [`Ipam::new`], with another gateway (`--gateway`).
    pub fn with_gateway(subnet: Ipv4Net, gateway: Ipv4Addr) -> Ipam {
        let mut i = Ipam::new(subnet);
        i.used = [gateway].into();
        i.gateway = gateway;
        i
    }

    /// The next free address, scanning forward and wrapping like Docker's serial allocator.
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let first = u32::from(self.subnet.network()) + 1;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let span = last.saturating_sub(first) + 1;
        for _ in 0..span {
            if self.next > last {
                self.next = first;
            }
            let a = Ipv4Addr::from(self.next);
            self.next += 1;
            if self.used.insert(a) {
                return Ok(a);
            }
        }
        bail!("subnet {} has no free address", self.subnet)
    }

    pub fn release(&mut self, a: Ipv4Addr) {
        if a != self.gateway {
            self.used.remove(&a);
        }
    }
}

/// Docker's IPAM for a network's IPv6 subnet: the gateway takes the first
/// address (`::1`), containers the next free ones, serially as for IPv4.
#[derive(Debug, Clone)]
pub struct Ipam6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    used: std::collections::BTreeSet<Ipv6Addr>,
    next: u128,
}

impl Ipam6 {
    pub fn new(subnet: Ipv6Net) -> Ipam6 {
        let gateway = Ipv6Addr::from(u128::from(subnet.network()) + 1);
        Ipam6 {
            subnet,
            gateway,
            used: [gateway].into(),
            next: u128::from(subnet.network()) + 2,
        }
    }

    pub fn allocate(&mut self) -> Result<Ipv6Addr> {
        let first = u128::from(self.subnet.network()) + 1;
        let last = u128::from(self.subnet.broadcast());
        // Never scan more than a few thousand: a /64 is never full here.
        for _ in 0..last.saturating_sub(first).saturating_add(1).min(1 << 16) {
            if self.next > last {
                self.next = first;
            }
            let a = Ipv6Addr::from(self.next);
            self.next += 1;
            if self.used.insert(a) {
                return Ok(a);
            }
        }
        bail!("subnet {} has no free address", self.subnet)
    }

    pub fn release(&mut self, a: Ipv6Addr) {
        if a != self.gateway {
            self.used.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam6_allocates_like_docker() {
        let mut i = Ipam6::new("fd00:1::/64".parse().unwrap());
        assert_eq!(i.gateway, "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            i.allocate().unwrap(),
            "fd00:1::2".parse::<Ipv6Addr>().unwrap()
        );
        let b = i.allocate().unwrap();
        i.release(b);
        assert_eq!(
            i.allocate().unwrap(),
            "fd00:1::4".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn ipam_allocates_like_docker() {
        let mut i = Ipam::new("10.1.1.0/29".parse().unwrap());
        assert_eq!(i.gateway, Ipv4Addr::new(10, 1, 1, 1));
        let got: Vec<_> = (0..5).map(|_| i.allocate().unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 1, 1, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 1, 1, 6));
        assert!(i.allocate().is_err());
        i.release(Ipv4Addr::new(10, 1, 1, 3));
        assert_eq!(i.allocate().unwrap(), Ipv4Addr::new(10, 1, 1, 3));
    }
}
