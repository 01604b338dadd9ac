//! Addresses from the blocks this host holds: pure, no I/O, no clock.
//!
//! In: a pool (its CIDR and block length), the blocks this host holds in it
//! (each with the etcd revision of its claim), requests for any address, a
//! given address or the gateway, releases, and the time as a number. Out:
//! addresses, the block an address belongs to, blocks that have been empty
//! longer than a grace period, and the addresses this host still uses
//! outside its blocks (strays: left after an operator released its blocks).
//! What the host holds is decided in etcd (`blocks.rs`); this file only
//! hands out what is inside, so it never needs a round trip.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Default block lengths: 64 addresses per block in both families.
pub const DEFAULT_BLOCK_V4: u8 = 26;
pub const DEFAULT_BLOCK_V6: u8 = 122;
/// A block holds at most 2^16 addresses (they are scanned one by one).
pub const MAX_BLOCK_HOST_BITS: u8 = 16;

/// What an address is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Container,
    Gateway,
}

/// A block this host holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBlock {
    /// The etcd `mod_revision` of our affinity record: a release or usage
    /// write is guarded by it, so it never touches a later owner's record.
    pub claim_rev: i64,
    pub used: BTreeMap<IpAddr, Use>,
    /// Seconds since the epoch at which the block became empty.
    pub empty_since: Option<u64>,
}

/// One pool as this host sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    pub pool: IpNet,
    pub block_len: u8,
    pub blocks: BTreeMap<IpNet, HeldBlock>,
    /// Addresses in use in blocks this host no longer holds.
    #[serde(default)]
    pub strays: BTreeMap<IpAddr, Use>,
}

/// Why an address could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    OutsidePool,
    Reserved,
    NotHeld(IpNet),
    InUse,
}

/// Checks a pool and its block length: the pool is a network address, the
/// block lies inside it, and a block has at most 2^16 addresses.
pub fn validate_pool(pool: IpNet, block_len: u8) -> Result<(), String> {
    if pool != pool.trunc() {
        return Err(format!(
            "pool {pool} is not a network address (did you mean {}?)",
            pool.trunc()
        ));
    }
    if block_len < pool.prefix_len() || block_len > pool.max_prefix_len() {
        return Err(format!(
            "block length /{block_len} does not fit pool {pool} (between /{} and /{})",
            pool.prefix_len(),
            pool.max_prefix_len()
        ));
    }
    if pool.max_prefix_len() - block_len > MAX_BLOCK_HOST_BITS {
        return Err(format!(
            "block length /{block_len} is too big: at most 2^{MAX_BLOCK_HOST_BITS} addresses per block (/{} or longer)",
            pool.max_prefix_len() - MAX_BLOCK_HOST_BITS
        ));
    }
    Ok(())
}

/// The default block length of a pool's family.
pub fn default_block_len(pool: IpNet) -> u8 {
    match pool {
        IpNet::V4(_) => DEFAULT_BLOCK_V4,
        IpNet::V6(_) => DEFAULT_BLOCK_V6,
    }
    .max(pool.prefix_len())
}

/// The block of length `block_len` that holds `addr`.
pub fn block_of(addr: IpAddr, block_len: u8) -> IpNet {
    IpNet::new(addr, block_len)
        .expect("block length checked by validate_pool")
        .trunc()
}

/// Whether an address of `pool` may be handed out: not the pool's network
/// address (IPv4 and IPv6: the subnet-router anycast) nor its IPv4
/// broadcast address. Every other address is usable, block boundaries
/// included: addresses are routed, not bridged.
pub fn usable(pool: IpNet, addr: IpAddr) -> bool {
    pool.contains(&addr)
        && addr != pool.network()
        && !(matches!(pool, IpNet::V4(p) if p.prefix_len() < 31) && addr == pool.broadcast())
}

pub(crate) fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The `i`-th block of length `block_len` in `pool` (None past the end).
pub fn nth_block(pool: IpNet, block_len: u8, i: u128) -> Option<IpNet> {
    let bits = block_len - pool.prefix_len();
    if bits < 128 && i >> bits != 0 {
        return None;
    }
    let size_bits = pool.max_prefix_len() - block_len;
    let start = to_u128(pool.network()) + (i << size_bits);
    IpNet::new(from_u128(pool.addr().is_ipv4(), start), block_len).ok()
}

impl PoolState {
    pub fn new(pool: IpNet, block_len: u8) -> Self {
        PoolState {
            pool,
            block_len,
            blocks: BTreeMap::new(),
            strays: BTreeMap::new(),
        }
    }

    /// The held block that contains `addr`.
    pub fn held_block_of(&self, addr: IpAddr) -> Option<IpNet> {
        let b = block_of(addr, self.block_len);
        self.blocks.contains_key(&b).then_some(b)
    }

    /// Adds a block just claimed (empty since `now`). A block already held
    /// keeps its addresses and takes the newer revision.
    pub fn add_block(&mut self, block: IpNet, claim_rev: i64, now: u64) {
        let b = self.blocks.entry(block).or_insert(HeldBlock {
            claim_rev,
            used: BTreeMap::new(),
            empty_since: Some(now),
        });
        b.claim_rev = claim_rev;
        // Strays inside a block we hold again are ours again.
        let back: Vec<IpAddr> = self
            .strays
            .keys()
            .filter(|a| block.contains(*a))
            .copied()
            .collect();
        for a in back {
            if let Some(u) = self.strays.remove(&a) {
                b.used.insert(a, u);
                b.empty_since = None;
            }
        }
    }

    /// The lowest free usable address in the held blocks.
    pub fn pick(&self) -> Option<IpAddr> {
        let v4 = self.pool.addr().is_ipv4();
        self.blocks.iter().find_map(|(net, b)| {
            let lo = to_u128(net.network());
            let hi = to_u128(net.broadcast());
            (lo..=hi)
                .map(|n| from_u128(v4, n))
                .find(|a| usable(self.pool, *a) && !b.used.contains_key(a))
        })
    }

    /// Takes `addr` for `what`. It must be usable, free and in a held block.
    pub fn take(&mut self, addr: IpAddr, what: Use) -> Result<(), Refusal> {
        if !self.pool.contains(&addr) {
            return Err(Refusal::OutsidePool);
        }
        if !usable(self.pool, addr) {
            return Err(Refusal::Reserved);
        }
        let net = block_of(addr, self.block_len);
        let b = self.blocks.get_mut(&net).ok_or(Refusal::NotHeld(net))?;
        if b.used.contains_key(&addr) {
            return Err(Refusal::InUse);
        }
        b.used.insert(addr, what);
        b.empty_since = None;
        Ok(())
    }

    /// Whether `addr` is in use here (in a held block or as a stray).
    pub fn in_use(&self, addr: IpAddr) -> Option<Use> {
        self.held_block_of(addr)
            .and_then(|b| self.blocks[&b].used.get(&addr).copied())
            .or_else(|| self.strays.get(&addr).copied())
    }

    /// The address this host gave out as the pool's gateway, if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.blocks
            .values()
            .flat_map(|b| b.used.iter())
            .chain(self.strays.iter())
            .find(|(_, u)| **u == Use::Gateway)
            .map(|(a, _)| *a)
    }

    /// Frees `addr`; true if it was in use. A block left empty remembers
    /// since when (`now`).
    pub fn release(&mut self, addr: IpAddr, now: u64) -> bool {
        if self.strays.remove(&addr).is_some() {
            return true;
        }
        let Some(net) = self.held_block_of(addr) else {
            return false;
        };
        let b = self.blocks.get_mut(&net).expect("held");
        let was = b.used.remove(&addr).is_some();
        if b.used.is_empty() && b.empty_since.is_none() {
            b.empty_since = Some(now);
        }
        was
    }

    /// Held blocks empty for at least `grace` seconds at `now`.
    pub fn idle(&self, now: u64, grace: u64) -> Vec<IpNet> {
        self.blocks
            .iter()
            .filter(|(_, b)| {
                b.used.is_empty()
                    && b.empty_since
                        .is_some_and(|t| now.saturating_sub(t) >= grace)
            })
            .map(|(n, _)| *n)
            .collect()
    }

    /// Forgets a block this host no longer holds (released in etcd, by us
    /// or by an operator); addresses still in use in it become strays.
    pub fn drop_block(&mut self, block: IpNet) -> Option<HeldBlock> {
        let b = self.blocks.remove(&block)?;
        for (a, u) in &b.used {
            self.strays.insert(*a, *u);
        }
        Some(b)
    }

    /// Every address in use, in held blocks and strays.
    pub fn addresses(&self) -> impl Iterator<Item = (IpAddr, Use)> + '_ {
        self.blocks
            .values()
            .flat_map(|b| b.used.iter())
            .chain(self.strays.iter())
            .map(|(a, u)| (*a, *u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_and_blocks_are_validated() {
        assert!(validate_pool(n("10.20.0.0/16"), 26).is_ok());
        assert!(validate_pool(n("fd00:20::/64"), 122).is_ok());
        assert!(validate_pool(n("10.20.0.1/16"), 26)
            .unwrap_err()
            .contains("10.20.0.0/16"));
        assert!(validate_pool(n("10.20.0.0/16"), 15).is_err());
        assert!(validate_pool(n("10.20.0.0/16"), 33).is_err());
        assert!(validate_pool(n("fd00::/64"), 64)
            .unwrap_err()
            .contains("too big"));
        assert_eq!(default_block_len(n("10.0.0.0/8")), 26);
        assert_eq!(default_block_len(n("10.0.0.0/28")), 28);
        assert_eq!(default_block_len(n("fd00::/48")), 122);
    }

    #[test]
    fn blocks_are_numbered_inside_the_pool() {
        let p = n("10.20.0.0/16");
        assert_eq!(nth_block(p, 26, 0), Some(n("10.20.0.0/26")));
        assert_eq!(nth_block(p, 26, 5), Some(n("10.20.1.64/26")));
        assert_eq!(nth_block(p, 26, 1023), Some(n("10.20.255.192/26")));
        assert_eq!(nth_block(p, 26, 1024), None);
        assert_eq!(nth_block(p, 16, 0), Some(p));
        assert_eq!(nth_block(p, 16, 1), None);
        let p6 = n("fd00:20::/64");
        assert_eq!(nth_block(p6, 122, 2), Some(n("fd00:20::80/122")));
        assert_eq!(block_of(a("10.20.1.77"), 26), n("10.20.1.64/26"));
        assert_eq!(block_of(a("fd00:20::85"), 122), n("fd00:20::80/122"));
    }

    #[test]
    fn network_and_broadcast_of_the_pool_are_never_handed_out() {
        let p = n("10.20.0.0/16");
        assert!(!usable(p, a("10.20.0.0")));
        assert!(!usable(p, a("10.20.255.255")));
        assert!(usable(p, a("10.20.0.63")));
        assert!(usable(p, a("10.20.0.64")));
        assert!(!usable(p, a("10.21.0.1")));
        let p6 = n("fd00:20::/64");
        assert!(!usable(p6, a("fd00:20::")));
        assert!(usable(p6, a("fd00:20::ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn picks_the_lowest_free_address_of_held_blocks_only() {
        let mut s = PoolState::new(n("10.20.0.0/16"), 30);
        assert_eq!(s.pick(), None, "no block held, nothing to give");
        s.add_block(n("10.20.0.0/30"), 7, 100);
        // .0 is the pool's network address.
        assert_eq!(s.pick(), Some(a("10.20.0.1")));
        for want in ["10.20.0.1", "10.20.0.2", "10.20.0.3"] {
            let got = s.pick().unwrap();
            assert_eq!(got, a(want));
            s.take(got, Use::Container).unwrap();
        }
        assert_eq!(s.pick(), None, "block full");
        s.add_block(n("10.20.0.8/30"), 9, 100);
        assert_eq!(s.pick(), Some(a("10.20.0.8")), "a block boundary is usable");
        s.release(a("10.20.0.2"), 200);
        assert_eq!(s.pick(), Some(a("10.20.0.2")), "freed addresses come back");
    }

    #[test]
    fn take_refuses_what_is_not_ours_to_give() {
        let mut s = PoolState::new(n("10.20.0.0/16"), 26);
        s.add_block(n("10.20.0.64/26"), 3, 0);
        assert_eq!(
            s.take(a("10.20.0.5"), Use::Container),
            Err(Refusal::NotHeld(n("10.20.0.0/26")))
        );
        assert_eq!(
            s.take(a("10.21.0.5"), Use::Container),
            Err(Refusal::OutsidePool)
        );
        assert_eq!(
            s.take(a("10.20.0.0"), Use::Container),
            Err(Refusal::Reserved)
        );
        assert_eq!(s.take(a("10.20.0.70"), Use::Container), Ok(()));
        assert_eq!(s.take(a("10.20.0.70"), Use::Container), Err(Refusal::InUse));
        assert_eq!(s.in_use(a("10.20.0.70")), Some(Use::Container));
    }

    #[test]
    fn empty_blocks_become_idle_after_the_grace_period() {
        let mut s = PoolState::new(n("10.20.0.0/16"), 26);
        s.add_block(n("10.20.0.0/26"), 3, 1000);
        assert_eq!(s.idle(1599, 600), vec![], "claimed at 1000, grace 600");
        assert_eq!(s.idle(1600, 600), vec![n("10.20.0.0/26")]);
        s.take(a("10.20.0.9"), Use::Container).unwrap();
        assert_eq!(s.idle(9999, 600), vec![], "a used block is never idle");
        assert!(s.release(a("10.20.0.9"), 5000));
        assert!(!s.release(a("10.20.0.9"), 5000), "released twice");
        assert_eq!(s.idle(5599, 600), vec![]);
        assert_eq!(s.idle(5600, 600), vec![n("10.20.0.0/26")]);
    }

    #[test]
    fn a_lost_block_leaves_strays_that_come_back_with_the_block() {
        let mut s = PoolState::new(n("10.20.0.0/16"), 26);
        s.add_block(n("10.20.0.0/26"), 3, 0);
        s.take(a("10.20.0.9"), Use::Container).unwrap();
        s.take(a("10.20.0.10"), Use::Gateway).unwrap();
        s.drop_block(n("10.20.0.0/26"));
        assert_eq!(s.pick(), None);
        assert_eq!(s.in_use(a("10.20.0.9")), Some(Use::Container));
        assert_eq!(s.gateway(), Some(a("10.20.0.10")));
        assert_eq!(s.strays.len(), 2);
        assert!(s.release(a("10.20.0.9"), 1));
        s.add_block(n("10.20.0.0/26"), 11, 2);
        assert!(s.strays.is_empty());
        assert_eq!(s.blocks[&n("10.20.0.0/26")].used.len(), 1);
        assert_eq!(s.blocks[&n("10.20.0.0/26")].claim_rev, 11);
    }

    #[test]
    fn ipv6_blocks_hand_out_addresses_too() {
        let mut s = PoolState::new(n("fd00:20::/64"), 122);
        s.add_block(n("fd00:20::/122"), 1, 0);
        assert_eq!(s.pick(), Some(a("fd00:20::1")));
        s.take(a("fd00:20::3f"), Use::Container).unwrap();
        assert_eq!(s.held_block_of(a("fd00:20::3f")), Some(n("fd00:20::/122")));
        assert_eq!(s.held_block_of(a("fd00:20::40")), None);
    }
}
