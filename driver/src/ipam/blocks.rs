//! Who holds what, decided in etcd: pools, host registrations, block
//! affinities and the per-block usage mirror, as keys and transactions.
//!
//! In: a [`Store`], the key prefix, pools, host ids. Out: pool records,
//! claimed blocks with the revision of their claim, released blocks, and an
//! [`Audit`] of the whole prefix. Key layout (values are JSON):
//! ```text
//! <prefix>pools/<pool>                 {"cidr","block_len"}   created once; the first host's block length wins
//! <prefix>hosts/<host>                 {"instance"}           one driver instance per host id
//! <prefix>blocks/<pool>/<block>        {"host"}               the affinity: who hands out this block's addresses
//! <prefix>usage/<pool>/<block>         {"host","addresses"}   written after the fact, for operators and the audit
//! ```
//! (`<pool>` and `<block>` are CIDRs with `/` written as `-`.) A block is
//! claimed by a transaction that succeeds only if its key does not exist
//! (`create_revision == 0`): two hosts racing for one block cannot both
//! win. Releases and usage writes are guarded by the claim's
//! `mod_revision`, so they never touch a record a later owner wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::alloc::{nth_block, validate_pool};
use super::error::IpamError;
use super::store::{Cond, Op, Store, Txn};

/// How often a claim is retried after losing a race for a block.
const CLAIM_ATTEMPTS: usize = 32;
/// A claim picks among this many free blocks (at random) so that hosts
/// racing for blocks of one pool rarely pick the same one.
const CLAIM_SPREAD: usize = 16;
/// How often pool creation is retried after a concurrent pool change.
const POOL_ATTEMPTS: usize = 8;

/// The key layout under one prefix (such as `/ipvlan-bgp/v1/`).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

fn esc(n: &IpNet) -> String {
    n.to_string().replace('/', "-")
}

fn unesc(s: &str) -> Option<IpNet> {
    let (a, l) = s.rsplit_once('-')?;
    format!("{a}/{l}").parse().ok()
}

impl Keys {
    /// `prefix` gets a trailing `/` if it has none.
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn pools(&self) -> String {
        format!("{}pools/", self.prefix)
    }
    pub fn pool(&self, pool: &IpNet) -> String {
        format!("{}{}", self.pools(), esc(pool))
    }
    pub fn hosts(&self) -> String {
        format!("{}hosts/", self.prefix)
    }
    pub fn host(&self, host: &str) -> String {
        format!("{}{host}", self.hosts())
    }
    pub fn all_blocks(&self) -> String {
        format!("{}blocks/", self.prefix)
    }
    pub fn blocks(&self, pool: &IpNet) -> String {
        format!("{}{}/", self.all_blocks(), esc(pool))
    }
    pub fn block(&self, pool: &IpNet, block: &IpNet) -> String {
        format!("{}{}", self.blocks(pool), esc(block))
    }
    pub fn all_usage(&self) -> String {
        format!("{}usage/", self.prefix)
    }
    pub fn usage(&self, pool: &IpNet, block: &IpNet) -> String {
        format!("{}{}/{}", self.all_usage(), esc(pool), esc(block))
    }
    /// `(pool, block)` of a `blocks/` or `usage/` key.
    fn parse_pair(&self, under: &str, key: &str) -> Option<(IpNet, IpNet)> {
        let rest = key.strip_prefix(under)?;
        let (p, b) = rest.split_once('/')?;
        Some((unesc(p)?, unesc(b)?))
    }
}

/// Checks a host id: it becomes part of a key and of error messages.
pub fn validate_host_id(host: &str) -> Result<(), IpamError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IpamError::Invalid(format!(
            "host id {host:?} must be 1 to 253 letters, digits, '.', '_', ':' or '-' (for example the host's router ID)"
        )))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub cidr: IpNet,
    pub block_len: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HostRecord {
    instance: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BlockRecord {
    host: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct UsageRecord {
    host: String,
    addresses: Vec<IpAddr>,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain records serialize")
}

fn parse<T: for<'a> Deserialize<'a>>(key: &str, value: &[u8]) -> Result<T, IpamError> {
    serde_json::from_slice(value).map_err(|e| IpamError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// A block held by a host, as etcd records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOwner {
    pub pool: IpNet,
    pub block: IpNet,
    pub host: String,
    /// The record's `mod_revision` (the claim).
    pub rev: i64,
}

/// A block just claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub block: IpNet,
    pub rev: i64,
    /// How many times another host won the block we tried first.
    pub lost_races: u32,
}

/// Creates the pool if no pool has its CIDR, or returns the existing one.
/// `block_len` None takes the existing length (or `default_len` for a new
/// pool); a different explicit length than the recorded one is refused, as
/// is a pool overlapping another. Creation is guarded by the revision of
/// the pool list read, so two hosts creating overlapping pools at once
/// cannot both succeed.
pub async fn ensure_pool<S: Store>(
    store: &S,
    keys: &Keys,
    pool: IpNet,
    block_len: Option<u8>,
    default_len: u8,
) -> Result<PoolRecord, IpamError> {
    let len = block_len.unwrap_or(default_len);
    validate_pool(pool, len).map_err(IpamError::Invalid)?;
    for _ in 0..POOL_ATTEMPTS {
        let r = store
            .range(&keys.pools())
            .await
            .map_err(IpamError::etcd("reading the pools"))?;
        for kv in &r.kvs {
            let rec: PoolRecord = parse(&kv.key, &kv.value)?;
            if rec.cidr == pool {
                if block_len.is_some_and(|l| l != rec.block_len) {
                    return Err(IpamError::PoolConflict {
                        pool,
                        existing: rec.block_len,
                        wanted: len,
                    });
                }
                return Ok(rec);
            }
            if rec.cidr.contains(&pool.network()) || pool.contains(&rec.cidr.network()) {
                return Err(IpamError::PoolOverlap {
                    pool,
                    other: rec.cidr,
                });
            }
        }
        let rec = PoolRecord {
            cidr: pool,
            block_len: len,
        };
        let t = store
            .txn(Txn {
                when: vec![
                    Cond::Absent(keys.pool(&pool)),
                    Cond::PrefixUnchangedSince(keys.pools(), r.revision),
                ],
                then: vec![Op::Put(keys.pool(&pool), json(&rec))],
                else_get: None,
            })
            .await
            .map_err(IpamError::etcd("creating the pool"))?;
        if t.succeeded {
            return Ok(rec);
        }
    }
    Err(IpamError::Contention(format!(
        "pool {pool}: the pool list kept changing while creating it"
    )))
}

/// Registers `host` as this driver instance. A host id registered by
/// another instance is refused: two hosts configured with one id would
/// hand out the same blocks' addresses.
pub async fn register_host<S: Store>(
    store: &S,
    keys: &Keys,
    host: &str,
    instance: &str,
) -> Result<(), IpamError> {
    validate_host_id(host)?;
    let key = keys.host(host);
    let t = store
        .txn(Txn {
            when: vec![Cond::Absent(key.clone())],
            then: vec![Op::Put(
                key.clone(),
                json(&HostRecord {
                    instance: instance.to_string(),
                }),
            )],
            else_get: Some(key.clone()),
        })
        .await
        .map_err(IpamError::etcd("registering this host"))?;
    if t.succeeded {
        return Ok(());
    }
    match t.got {
        Some(kv) => {
            let rec: HostRecord = parse(&kv.key, &kv.value)?;
            if rec.instance == instance {
                Ok(())
            } else {
                Err(IpamError::HostIdTaken {
                    host: host.to_string(),
                })
            }
        }
        // Deleted between compare and read: an operator released it; retry once.
        None => Box::pin(register_host(store, keys, host, instance)).await,
    }
}

/// A pseudo-random number (no extra dependency): std's per-process
/// randomly keyed hasher over a counter.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Claims a block of `pool` for `host`: the block `want` (a fixed address's
/// block), or any free block. A block `want` that `host` already holds in
/// etcd is returned as held (a driver that lost its local state adopts it);
/// one held by another host is refused with [`IpamError::BlockHeld`].
pub async fn claim_block<S: Store>(
    store: &S,
    keys: &Keys,
    pool: &PoolRecord,
    host: &str,
    want: Option<IpNet>,
) -> Result<Claim, IpamError> {
    let value = json(&BlockRecord {
        host: host.to_string(),
    });
    if let Some(block) = want {
        let key = keys.block(&pool.cidr, &block);
        let t = store
            .txn(Txn {
                when: vec![Cond::Absent(key.clone())],
                then: vec![Op::Put(key.clone(), value)],
                else_get: Some(key),
            })
            .await
            .map_err(IpamError::etcd("claiming a block"))?;
        if t.succeeded {
            return Ok(Claim {
                block,
                rev: t.revision,
                lost_races: 0,
            });
        }
        let Some(kv) = t.got else {
            return Err(IpamError::Contention(format!(
                "block {block} was released while claiming it; try again"
            )));
        };
        let rec: BlockRecord = parse(&kv.key, &kv.value)?;
        if rec.host == host {
            return Ok(Claim {
                block,
                rev: kv.mod_rev,
                lost_races: 0,
            });
        }
        return Err(IpamError::BlockHeld {
            block,
            host: rec.host,
            addr: None,
        });
    }
    for lost_races in 0..CLAIM_ATTEMPTS as u32 {
        let r = store
            .range(&keys.blocks(&pool.cidr))
            .await
            .map_err(IpamError::etcd("reading the pool's blocks"))?;
        let taken: BTreeSet<IpNet> = r
            .kvs
            .iter()
            .filter_map(|kv| keys.parse_pair(&keys.all_blocks(), &kv.key).map(|p| p.1))
            .collect();
        // The first free blocks in order, at most CLAIM_SPREAD of them: at
        // most taken.len() + CLAIM_SPREAD steps even in an IPv6 pool.
        let free: Vec<IpNet> = (0u128..)
            .map_while(|i| nth_block(pool.cidr, pool.block_len, i))
            .filter(|b| !taken.contains(b))
            .take(CLAIM_SPREAD)
            .collect();
        if free.is_empty() {
            return Err(IpamError::PoolExhausted { pool: pool.cidr });
        }
        let block = free[(random() % free.len() as u64) as usize];
        let key = keys.block(&pool.cidr, &block);
        let t = store
            .txn(Txn {
                when: vec![Cond::Absent(key.clone())],
                then: vec![Op::Put(key, value.clone())],
                else_get: None,
            })
            .await
            .map_err(IpamError::etcd("claiming a block"))?;
        if t.succeeded {
            return Ok(Claim {
                block,
                rev: t.revision,
                lost_races,
            });
        }
    }
    Err(IpamError::Contention(format!(
        "pool {}: lost the race for a free block {CLAIM_ATTEMPTS} times",
        pool.cidr
    )))
}

/// Releases a block this host claimed at `rev`, with its usage record.
/// False if the record is no longer the one we wrote (an operator released
/// it, perhaps another host holds it now): then nothing is deleted.
pub async fn release_block<S: Store>(
    store: &S,
    keys: &Keys,
    pool: IpNet,
    block: IpNet,
    rev: i64,
) -> Result<bool, IpamError> {
    let key = keys.block(&pool, &block);
    let t = store
        .txn(Txn {
            when: vec![Cond::Unchanged(key.clone(), rev)],
            then: vec![Op::Delete(key), Op::Delete(keys.usage(&pool, &block))],
            else_get: None,
        })
        .await
        .map_err(IpamError::etcd("releasing a block"))?;
    Ok(t.succeeded)
}

/// Every pool under the prefix, by CIDR.
pub async fn all_pools<S: Store>(store: &S, keys: &Keys) -> Result<Vec<PoolRecord>, IpamError> {
    let r = store
        .range(&keys.pools())
        .await
        .map_err(IpamError::etcd("reading the pools"))?;
    let mut pools = r
        .kvs
        .iter()
        .map(|kv| parse::<PoolRecord>(&kv.key, &kv.value))
        .collect::<Result<Vec<_>, _>>()?;
    pools.sort_by_key(|p| p.cidr);
    Ok(pools)
}

/// Every block affinity under the prefix.
pub async fn all_blocks<S: Store>(store: &S, keys: &Keys) -> Result<Vec<BlockOwner>, IpamError> {
    let r = store
        .range(&keys.all_blocks())
        .await
        .map_err(IpamError::etcd("reading the blocks"))?;
    r.kvs
        .iter()
        .map(|kv| {
            let (pool, block) = keys
                .parse_pair(&keys.all_blocks(), &kv.key)
                .ok_or_else(|| IpamError::Corrupt {
                    key: kv.key.clone(),
                    reason: "not a blocks/<pool>/<block> key".into(),
                })?;
            let rec: BlockRecord = parse(&kv.key, &kv.value)?;
            Ok(BlockOwner {
                pool,
                block,
                host: rec.host,
                rev: kv.mod_rev,
            })
        })
        .collect()
}

/// Releases every block `host` holds and its registration: for a host that
/// died (`ipvlan-bgp ipam release-host HOST`). Each block is deleted only
/// if its record is still the one read. Returns the released blocks.
pub async fn release_host<S: Store>(
    store: &S,
    keys: &Keys,
    host: &str,
) -> Result<Vec<BlockOwner>, IpamError> {
    validate_host_id(host)?;
    let mut released = Vec::new();
    for b in all_blocks(store, keys).await? {
        if b.host != host {
            continue;
        }
        if release_block(store, keys, b.pool, b.block, b.rev).await? {
            released.push(b);
        }
    }
    store
        .txn(Txn {
            when: vec![],
            then: vec![Op::Delete(keys.host(host))],
            else_get: None,
        })
        .await
        .map_err(IpamError::etcd("deleting the host's registration"))?;
    Ok(released)
}

/// Writes which addresses `host` uses in a block it holds, if the block's
/// record is still its claim at `rev`. False when it is not (nothing
/// written).
pub async fn write_usage<S: Store>(
    store: &S,
    keys: &Keys,
    owner: &BlockOwner,
    addresses: Vec<IpAddr>,
) -> Result<bool, IpamError> {
    let rec = UsageRecord {
        host: owner.host.clone(),
        addresses,
    };
    let t = store
        .txn(Txn {
            when: vec![Cond::Unchanged(
                keys.block(&owner.pool, &owner.block),
                owner.rev,
            )],
            then: vec![Op::Put(keys.usage(&owner.pool, &owner.block), json(&rec))],
            else_get: None,
        })
        .await
        .map_err(IpamError::etcd("recording a block's usage"))?;
    Ok(t.succeeded)
}

/// What the cross-host audit found: every block with its holder and the
/// addresses its holder reported, and every inconsistency.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    pub blocks: Vec<BlockOwner>,
    /// (pool, block) -> (reporting host, addresses).
    pub usage: BTreeMap<(IpNet, IpNet), (String, Vec<IpAddr>)>,
    pub findings: Vec<String>,
}

/// Reads blocks and usage records and checks them against each other:
/// blocks of one pool never overlap, a usage record comes from the block's
/// holder, its addresses lie in the block, no address is reported twice.
/// Usage records are written after the fact, so a block may lack one.
pub async fn audit<S: Store>(store: &S, keys: &Keys) -> Result<Audit, IpamError> {
    let blocks = all_blocks(store, keys).await?;
    let r = store
        .range(&keys.all_usage())
        .await
        .map_err(IpamError::etcd("reading the usage records"))?;
    let mut a = Audit::default();
    for kv in &r.kvs {
        let Some(pair) = keys.parse_pair(&keys.all_usage(), &kv.key) else {
            a.findings
                .push(format!("{}: not a usage/<pool>/<block> key", kv.key));
            continue;
        };
        let rec: UsageRecord = parse(&kv.key, &kv.value)?;
        a.usage.insert(pair, (rec.host, rec.addresses));
    }
    let mut seen_blocks: Vec<&BlockOwner> = Vec::new();
    for b in &blocks {
        if let Some(o) = seen_blocks
            .iter()
            .find(|o| o.block.contains(&b.block.network()) || b.block.contains(&o.block.network()))
        {
            a.findings.push(format!(
                "block {} ({}) overlaps block {} ({})",
                b.block, b.host, o.block, o.host
            ));
        }
        seen_blocks.push(b);
    }
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for ((pool, block), (host, addrs)) in &a.usage {
        match blocks.iter().find(|b| b.pool == *pool && b.block == *block) {
            None => a.findings.push(format!(
                "usage of {block} by {host}, but nobody holds the block"
            )),
            Some(b) if b.host != *host => a.findings.push(format!(
                "usage of {block} reported by {host}, but {} holds it",
                b.host
            )),
            Some(_) => {}
        }
        for addr in addrs {
            if !block.contains(addr) {
                a.findings.push(format!(
                    "{host} reports {addr} in block {block}, outside it"
                ));
            }
            if let Some(other) = seen.insert(*addr, host) {
                a.findings
                    .push(format!("{addr} is reported by both {other} and {host}"));
            }
        }
    }
    a.blocks = blocks;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::store::fake::MemStore;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn keys() -> Keys {
        Keys::new("/t/v1")
    }

    #[test]
    fn keys_escape_cidrs_and_parse_back() {
        let k = keys();
        assert_eq!(
            k.block(&n("10.20.0.0/16"), &n("10.20.0.64/26")),
            "/t/v1/blocks/10.20.0.0-16/10.20.0.64-26"
        );
        assert_eq!(
            k.parse_pair(
                &k.all_blocks(),
                &k.block(&n("fd00::/64"), &n("fd00::40/122"))
            ),
            Some((n("fd00::/64"), n("fd00::40/122")))
        );
        assert!(validate_host_id("192.0.2.1").is_ok());
        assert!(validate_host_id("a/b").is_err());
        assert!(validate_host_id("").is_err());
    }

    #[tokio::test]
    async fn pools_are_created_once_and_conflicts_refused() {
        let s = MemStore::default();
        let k = keys();
        let p = ensure_pool(&s, &k, n("10.20.0.0/16"), None, 26)
            .await
            .unwrap();
        assert_eq!(p.block_len, 26);
        // Another host asking without a length gets the recorded one.
        let again = ensure_pool(&s, &k, n("10.20.0.0/16"), None, 28)
            .await
            .unwrap();
        assert_eq!(again.block_len, 26);
        let e = ensure_pool(&s, &k, n("10.20.0.0/16"), Some(24), 26)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/26"), "{e}");
        let e = ensure_pool(&s, &k, n("10.20.5.0/24"), None, 26)
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::PoolOverlap { .. }), "{e}");
        let e = ensure_pool(&s, &k, n("10.20.0.1/16"), None, 26)
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::Invalid(_)), "{e}");
    }

    #[tokio::test]
    async fn a_block_has_one_holder_and_only_it_releases() {
        let s = MemStore::default();
        let k = keys();
        let p = ensure_pool(&s, &k, n("10.20.0.0/24"), Some(26), 26)
            .await
            .unwrap();
        let mut got = BTreeSet::new();
        for h in ["h1", "h2", "h3", "h4"] {
            let c = claim_block(&s, &k, &p, h, None).await.unwrap();
            assert!(got.insert(c.block), "{} claimed twice", c.block);
        }
        let e = claim_block(&s, &k, &p, "h5", None).await.unwrap_err();
        assert!(matches!(e, IpamError::PoolExhausted { .. }), "{e}");
        let owners = all_blocks(&s, &k).await.unwrap();
        assert_eq!(owners.len(), 4);
        let h1 = owners.iter().find(|b| b.host == "h1").unwrap().clone();
        // Another host cannot claim it, h1 gets it back as its own.
        let e = claim_block(&s, &k, &p, "h2", Some(h1.block))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("h1"), "{e}");
        let c = claim_block(&s, &k, &p, "h1", Some(h1.block)).await.unwrap();
        assert_eq!(c.rev, h1.rev);
        // A stale revision releases nothing.
        assert!(!release_block(&s, &k, p.cidr, h1.block, h1.rev - 1)
            .await
            .unwrap());
        assert!(release_block(&s, &k, p.cidr, h1.block, h1.rev)
            .await
            .unwrap());
        let c = claim_block(&s, &k, &p, "h5", None).await.unwrap();
        assert_eq!(c.block, h1.block, "the released block is free again");
    }

    #[tokio::test]
    async fn host_ids_are_exclusive_and_release_host_frees_its_blocks() {
        let s = MemStore::default();
        let k = keys();
        register_host(&s, &k, "192.0.2.1", "inst-a").await.unwrap();
        register_host(&s, &k, "192.0.2.1", "inst-a").await.unwrap();
        let e = register_host(&s, &k, "192.0.2.1", "inst-b")
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::HostIdTaken { .. }), "{e}");
        let p = ensure_pool(&s, &k, n("10.20.0.0/16"), None, 26)
            .await
            .unwrap();
        let c1 = claim_block(&s, &k, &p, "192.0.2.1", None).await.unwrap();
        let c2 = claim_block(&s, &k, &p, "192.0.2.1", None).await.unwrap();
        claim_block(&s, &k, &p, "192.0.2.2", None).await.unwrap();
        let owner = BlockOwner {
            pool: p.cidr,
            block: c1.block,
            host: "192.0.2.1".into(),
            rev: c1.rev,
        };
        assert!(write_usage(&s, &k, &owner, vec![c1.block.network()])
            .await
            .unwrap());
        let released = release_host(&s, &k, "192.0.2.1").await.unwrap();
        let mut r: Vec<IpNet> = released.iter().map(|b| b.block).collect();
        r.sort();
        let mut want = vec![c1.block, c2.block];
        want.sort();
        assert_eq!(r, want);
        let left = all_blocks(&s, &k).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].host, "192.0.2.2");
        assert!(s.keys().iter().all(|(k, _)| !k.contains("usage/")));
        // The id is free for a new instance now.
        register_host(&s, &k, "192.0.2.1", "inst-b").await.unwrap();
        // The old claim's usage write no longer lands.
        assert!(!write_usage(&s, &k, &owner, vec![]).await.unwrap());
    }

    #[tokio::test]
    async fn the_audit_finds_foreign_usage() {
        let s = MemStore::default();
        let k = keys();
        let p = ensure_pool(&s, &k, n("10.20.0.0/16"), None, 26)
            .await
            .unwrap();
        let c = claim_block(&s, &k, &p, "h1", None).await.unwrap();
        let mine = BlockOwner {
            pool: p.cidr,
            block: c.block,
            host: "h1".into(),
            rev: c.rev,
        };
        let a1 = nth_block(c.block, 32, 5).unwrap().addr();
        write_usage(&s, &k, &mine, vec![a1]).await.unwrap();
        assert_eq!(audit(&s, &k).await.unwrap().findings, Vec::<String>::new());
        // A usage record from a host that does not hold the block (written
        // behind the guard's back) is found.
        s.txn(Txn {
            when: vec![],
            then: vec![Op::Put(
                k.usage(&p.cidr, &c.block),
                json(&UsageRecord {
                    host: "h2".into(),
                    addresses: vec![a1, "10.99.0.1".parse().unwrap()],
                }),
            )],
            else_get: None,
        })
        .await
        .unwrap();
        let f = audit(&s, &k).await.unwrap().findings;
        assert_eq!(f.len(), 2, "{f:?}");
    }
}
