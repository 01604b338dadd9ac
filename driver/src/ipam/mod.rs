//! The cluster-wide IPAM: one address plan across hosts, with per-host
//! blocks claimed in etcd and addresses handed out locally.
//!
//! ```text
//! Docker's IpamDriver calls (phase 2: api/) ──► Ipam ──► alloc.rs  (addresses inside held blocks: no round trip)
//!                                                 ├──► blocks.rs (pools, hosts, block claims in etcd) ──► store.rs ──► etcd
//!                                                 ├──► local.rs  (held blocks and addresses, on disk)
//!                                                 ├──► health.rs (every etcd call's outcome: store health)
//!                                                 └──► error.rs  (IpamError: what failed, what to do)
//! upkeep.rs (the background loop: reconcile, usage mirror, idle blocks, health probe) ──► Ipam
//! Ipam::watch_blocks ──► view::blocks (one route per held block; a /32 or /128 only outside them) ──► announcer
//! ```
//! In: pools and address requests (any, a given one, the gateway) and
//! releases. Out: addresses, the blocks this host holds and its strays, and
//! one error type, [`IpamError`], whose text says what failed and what to
//! do. A request that needs etcd (a new pool on this host, a new block)
//! fails within [`IpamConfig::deadline`] with an error naming etcd; everything
//! else works without it (invariant 11). See docs/ipam.md.

pub mod alloc;
pub mod blocks;
pub mod error;
pub mod health;
pub mod local;
pub mod store;
pub mod upkeep;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

pub use alloc::{PoolState, Use};
pub use blocks::{all_pools, audit, release_host, Audit, BlockOwner, Keys, PoolRecord};
pub use error::IpamError;
pub use health::StoreHealth;
pub use local::LocalState;
pub use store::{EtcdStore, Store, StoreConfig, StoreError, TlsFiles};

use alloc::{block_of, usable, Refusal, DEFAULT_BLOCK_V4, DEFAULT_BLOCK_V6};
use health::Observed;
use local::LocalFile;

/// The default key prefix in etcd.
pub const DEFAULT_PREFIX: &str = "/ipvlan-bgp/v1/";
/// How long a block stays claimed after its last address was released: a
/// container restart loop does not make the host drop and re-claim (and
/// withdraw and re-announce) its block, and a block is not held for ever.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// Which address a request wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Any free address (`docker run` without `--ip`).
    Any,
    /// This address (`--ip`, `--ip6`, `--aux-address`).
    Exact(IpAddr),
    /// The pool's gateway on this host: the same address for every request
    /// until released (Docker asks once per network).
    Gateway,
}

/// How the IPAM runs on this host.
#[derive(Clone, Debug)]
pub struct IpamConfig {
    /// This host's identity in etcd (its router ID, for example).
    pub host: String,
    pub prefix: String,
    /// `ipam.json` in the driver's state directory.
    pub state_file: PathBuf,
    /// How long an empty block stays claimed.
    pub grace: Duration,
    /// How long a request that needs etcd may take in all (waiting for
    /// another claim included): past it, it fails with an error naming etcd.
    pub deadline: Duration,
    /// Block lengths of a pool this host creates without an explicit one
    /// (IPv4, IPv6); a pool that exists keeps the length it was made with.
    pub block_v4: u8,
    pub block_v6: u8,
}

impl IpamConfig {
    /// The defaults: [`DEFAULT_PREFIX`], [`DEFAULT_GRACE`], /26 and /122 blocks.
    pub fn new(host: impl Into<String>, state_file: impl Into<PathBuf>) -> IpamConfig {
        IpamConfig {
            host: host.into(),
            prefix: DEFAULT_PREFIX.into(),
            state_file: state_file.into(),
            grace: DEFAULT_GRACE,
            deadline: store::DEFAULT_TIMEOUT,
            block_v4: DEFAULT_BLOCK_V4,
            block_v6: DEFAULT_BLOCK_V6,
        }
    }
}

/// What [`Ipam::reconcile`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Blocks etcd says we hold that the local state did not know.
    pub adopted: Vec<IpNet>,
    /// Blocks the local state held that etcd no longer gives us: their
    /// addresses in use became strays.
    pub lost: Vec<IpNet>,
}

/// The IPAM of one host.
pub struct Ipam<S: Store> {
    store: Observed<S>,
    keys: Keys,
    grace: Duration,
    deadline: Duration,
    blocks: (u8, u8),
    file: LocalFile,
    local: Mutex<LocalState>,
    /// Serializes claims (the slow, etcd path); local allocations never wait
    /// for it.
    claims: tokio::sync::Mutex<()>,
    registered: AtomicBool,
    /// Blocks whose usage record is to be written.
    dirty: Mutex<BTreeSet<(IpNet, IpNet)>>,
    stats: Mutex<Stats>,
    /// The blocks this host holds, sent whenever they change (what it announces).
    held: tokio::sync::watch::Sender<BTreeSet<IpNet>>,
}

/// Counters since start (for status and /metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks claimed in etcd.
    pub claims: u64,
    /// Claims that lost a race for a block to another host and tried again.
    pub lost_races: u64,
    /// Requests refused or failed because etcd was needed and failed.
    pub etcd_failures: u64,
}

/// Every block `s` holds.
fn held_of(s: &LocalState) -> BTreeSet<IpNet> {
    s.pools
        .values()
        .flat_map(|p| p.blocks.keys().copied())
        .collect()
}

fn now_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<S: Store> Ipam<S> {
    /// Loads this host's state (or starts an empty one). Needs no etcd.
    pub fn open(store: S, cfg: IpamConfig) -> Result<Self, IpamError> {
        blocks::validate_host_id(&cfg.host)?;
        for (len, max) in [(cfg.block_v4, 32), (cfg.block_v6, 128)] {
            if len == 0 || len > max {
                return Err(IpamError::Invalid(format!(
                    "default block length /{len} is not a prefix length (at most /{max})"
                )));
            }
        }
        let file = LocalFile::new(&cfg.state_file);
        let state = match file.load().map_err(IpamError::Local)? {
            Some(s) if s.host != cfg.host => {
                return Err(IpamError::Invalid(format!(
                    "the IPAM state in {} belongs to host id {}, not {}: keep the host id, or release {} (ipvlan-bgp ipam release-host) and remove the file",
                    cfg.state_file.display(),
                    s.host,
                    cfg.host,
                    s.host
                )))
            }
            Some(s) => s,
            None => {
                let s = LocalState {
                    host: cfg.host.clone(),
                    instance: local::new_instance_id(),
                    pools: Default::default(),
                };
                file.save(&s).map_err(IpamError::Local)?;
                s
            }
        };
        // After a restart every held block's usage is written once more.
        let dirty = state
            .pools
            .values()
            .flat_map(|p| p.blocks.keys().map(|b| (p.pool, *b)))
            .collect();
        let held = tokio::sync::watch::Sender::new(held_of(&state));
        Ok(Ipam {
            held,
            store: Observed::new(store),
            keys: Keys::new(&cfg.prefix),
            grace: cfg.grace,
            deadline: cfg.deadline,
            blocks: (cfg.block_v4, cfg.block_v6),
            file,
            local: Mutex::new(state),
            claims: tokio::sync::Mutex::new(()),
            registered: AtomicBool::new(false),
            dirty: Mutex::new(dirty),
            stats: Mutex::new(Stats::default()),
        })
    }

    pub fn host(&self) -> String {
        self.lock().host.clone()
    }

    pub fn store(&self) -> &S {
        self.store.inner()
    }

    /// What the last etcd calls said: up or down, since when, the last error.
    pub fn health(&self) -> StoreHealth {
        self.store.health()
    }

    /// One linearizable read of this host's registration: whether etcd has
    /// a quorum now (noted in [`Ipam::health`]).
    pub async fn ping(&self) -> Result<(), IpamError> {
        let key = self.keys.host(&self.lock().host);
        self.store
            .range(&key)
            .await
            .map(|_| ())
            .map_err(IpamError::etcd("checking etcd"))
    }

    /// The block length of a new pool: the configured default of its
    /// family, never shorter than the pool itself.
    fn default_block_len(&self, pool: IpNet) -> u8 {
        match pool {
            IpNet::V4(_) => self.blocks.0,
            IpNet::V6(_) => self.blocks.1,
        }
        .max(pool.prefix_len())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn lock(&self) -> MutexGuard<'_, LocalState> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the held blocks if they changed (after a claim, a release, a reconcile).
    fn note_held(&self, s: &LocalState) {
        let now = held_of(s);
        self.held.send_if_modified(|h| {
            if *h == now {
                return false;
            }
            *h = now;
            true
        });
    }

    /// The blocks this host holds, now and whenever they change.
    pub fn watch_blocks(&self) -> tokio::sync::watch::Receiver<BTreeSet<IpNet>> {
        self.held.subscribe()
    }

    fn mark_dirty(&self, pool: IpNet, block: IpNet) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((pool, block));
    }

    /// Registers this host's id in etcd (once per process; again after an
    /// operator released it).
    pub async fn register(&self) -> Result<(), IpamError> {
        let (host, instance) = {
            let s = self.lock();
            (s.host.clone(), s.instance.clone())
        };
        blocks::register_host(&self.store, &self.keys, &host, &instance).await?;
        self.registered.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Makes `pool` known here. A pool this host already knows needs no
    /// etcd; a new one is created in etcd (or read from it, with the block
    /// length the first host chose).
    pub async fn request_pool(
        &self,
        pool: IpNet,
        block_len: Option<u8>,
    ) -> Result<PoolRecord, IpamError> {
        if let Some(p) = self.lock().pools.get(&pool) {
            if block_len.is_none_or(|l| l == p.block_len) {
                return Ok(PoolRecord {
                    cidr: pool,
                    block_len: p.block_len,
                });
            }
        }
        let made = blocks::ensure_pool(
            &self.store,
            &self.keys,
            pool,
            block_len,
            self.default_block_len(pool),
        );
        let rec = tokio::time::timeout(self.deadline, made)
            .await
            .map_err(|_| self.late("creating the pool"))??;
        let mut s = self.lock();
        if let std::collections::btree_map::Entry::Vacant(e) = s.pools.entry(pool) {
            e.insert(PoolState::new(pool, rec.block_len));
            self.file.save(&s).map_err(IpamError::Local)?;
        }
        Ok(rec)
    }

    /// An address of `pool` for `want`. From a block this host holds when
    /// possible (no etcd); otherwise a block is claimed first: any free one,
    /// or for a given address the block that contains it. A given address
    /// in a block another host holds is refused.
    /// Whatever etcd does, the request ends within the deadline (a claim
    /// waiting behind another one included); a claim cut off there changes
    /// nothing here, and a block etcd granted to it after all is adopted by
    /// the next [`Ipam::reconcile`] and released when idle.
    pub async fn request_address(&self, pool: IpNet, want: Want) -> Result<IpAddr, IpamError> {
        if let Some(a) = self.try_local(pool, want)? {
            return Ok(a);
        }
        match tokio::time::timeout(self.deadline, self.claim_for(pool, want)).await {
            Ok(r) => r,
            Err(_) => {
                self.stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .etcd_failures += 1;
                Err(self.late("claiming a block"))
            }
        }
    }

    /// A request cut off at the deadline.
    fn late(&self, op: &'static str) -> IpamError {
        IpamError::Etcd {
            op,
            source: StoreError::Timeout {
                after: self.deadline,
                last: None,
            },
        }
    }

    /// The slow path of [`Ipam::request_address`]: one claim at a time.
    async fn claim_for(&self, pool: IpNet, want: Want) -> Result<IpAddr, IpamError> {
        let _claiming = self.claims.lock().await;
        // A claim that finished while we waited may have made room.
        if let Some(a) = self.try_local(pool, want)? {
            return Ok(a);
        }
        if !self.registered.load(Ordering::SeqCst) {
            if let Err(e) = self.register().await {
                if matches!(e, IpamError::Etcd { .. }) {
                    self.stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .etcd_failures += 1;
                }
                return Err(e);
            }
        }
        let (rec, host) = {
            let s = self.lock();
            let p = &s.pools[&pool];
            (
                PoolRecord {
                    cidr: pool,
                    block_len: p.block_len,
                },
                s.host.clone(),
            )
        };
        let want_block = match want {
            Want::Exact(a) => Some(block_of(a, rec.block_len)),
            _ => None,
        };
        let claimed = blocks::claim_block(&self.store, &self.keys, &rec, &host, want_block).await;
        {
            let mut st = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            match &claimed {
                Ok(c) => {
                    st.claims += 1;
                    st.lost_races += u64::from(c.lost_races);
                }
                Err(IpamError::Etcd { .. }) => st.etcd_failures += 1,
                Err(_) => {}
            }
        }
        let claim = claimed.map_err(|e| match (e, want) {
            (IpamError::BlockHeld { block, host, .. }, Want::Exact(a)) => IpamError::BlockHeld {
                block,
                host,
                addr: Some(a),
            },
            (e, _) => e,
        })?;
        {
            let mut s = self.lock();
            let p = s.pools.get_mut(&pool).expect("pool known");
            p.add_block(claim.block, claim.rev, now_secs(SystemTime::now()));
            self.file.save(&s).map_err(IpamError::Local)?;
            self.note_held(&s);
        }
        self.mark_dirty(pool, claim.block);
        self.try_local(pool, want)?.ok_or_else(|| {
            IpamError::Contention(format!(
                "block {} was claimed but has no free address for this request",
                claim.block
            ))
        })
    }

    /// Serves `want` from held blocks: Some(address), None if a block must
    /// be claimed first, or an error that no block would cure.
    fn try_local(&self, pool: IpNet, want: Want) -> Result<Option<IpAddr>, IpamError> {
        let mut s = self.lock();
        let p = s
            .pools
            .get_mut(&pool)
            .ok_or(IpamError::UnknownPool { pool })?;
        let (addr, what) = match want {
            Want::Gateway => {
                if let Some(g) = p.gateway() {
                    return Ok(Some(g));
                }
                match p.pick() {
                    Some(a) => (a, Use::Gateway),
                    None => return Ok(None),
                }
            }
            Want::Any => match p.pick() {
                Some(a) => (a, Use::Container),
                None => return Ok(None),
            },
            Want::Exact(a) => {
                if !p.pool.contains(&a) {
                    return Err(IpamError::OutsidePool { addr: a, pool });
                }
                if !usable(p.pool, a) {
                    return Err(IpamError::Reserved { addr: a, pool });
                }
                if p.in_use(a).is_some() {
                    return Err(IpamError::AddressInUse { addr: a });
                }
                if p.held_block_of(a).is_none() {
                    return Ok(None);
                }
                (a, Use::Container)
            }
        };
        match p.take(addr, what) {
            Ok(()) => {}
            Err(Refusal::InUse) => return Err(IpamError::AddressInUse { addr }),
            Err(r) => {
                return Err(IpamError::Invalid(format!(
                    "{addr} cannot be taken from pool {pool}: {r:?}"
                )))
            }
        }
        let block = block_of(addr, p.block_len);
        if let Err(e) = self.file.save(&s) {
            // Answer nothing we could not persist.
            let p = s.pools.get_mut(&pool).expect("pool known");
            p.release(addr, now_secs(SystemTime::now()));
            return Err(IpamError::Local(e));
        }
        drop(s);
        self.mark_dirty(pool, block);
        Ok(Some(addr))
    }

    /// Frees an address (no etcd). True if it was in use here.
    pub fn release_address(&self, pool: IpNet, addr: IpAddr) -> Result<bool, IpamError> {
        let mut s = self.lock();
        let Some(p) = s.pools.get_mut(&pool) else {
            return Ok(false);
        };
        let block = p.held_block_of(addr);
        if !p.release(addr, now_secs(SystemTime::now())) {
            return Ok(false);
        }
        self.file.save(&s).map_err(IpamError::Local)?;
        drop(s);
        if let Some(b) = block {
            self.mark_dirty(pool, b);
        }
        Ok(true)
    }

    /// Releases, in etcd, the blocks that have been empty for the grace
    /// period at `now`. They leave the local state first (so no request
    /// takes an address from them meanwhile) and come back if etcd fails.
    pub async fn release_idle_blocks(&self, now: SystemTime) -> Result<Vec<IpNet>, IpamError> {
        let _claiming = self.claims.lock().await;
        let idle: Vec<(IpNet, IpNet, alloc::HeldBlock)> = {
            let mut s = self.lock();
            let mut out = Vec::new();
            for p in s.pools.values_mut() {
                for b in p.idle(now_secs(now), self.grace.as_secs()) {
                    let held = p.blocks.remove(&b).expect("idle block is held");
                    out.push((p.pool, b, held));
                }
            }
            if !out.is_empty() {
                self.file.save(&s).map_err(IpamError::Local)?;
                // Withdrawn before etcd frees the block for another host.
                self.note_held(&s);
            }
            out
        };
        let mut released = Vec::new();
        let mut failed = None;
        for (pool, block, held) in idle {
            match blocks::release_block(&self.store, &self.keys, pool, block, held.claim_rev).await
            {
                // Released, or no longer ours anyway: gone from here too.
                Ok(_) => released.push(block),
                Err(e) => {
                    let mut s = self.lock();
                    if let Some(p) = s.pools.get_mut(&pool) {
                        p.blocks.entry(block).or_insert(held);
                    }
                    let _ = self.file.save(&s);
                    self.note_held(&s);
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    /// Writes the usage records of blocks that changed since the last
    /// sync (the after-the-fact mirror for operators and the audit). A
    /// block whose record is no longer our claim is left to
    /// [`Ipam::reconcile`]. Returns how many records were written.
    pub async fn sync_usage(&self) -> Result<usize, IpamError> {
        let todo: Vec<(IpNet, IpNet)> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        let mut written = 0;
        for (i, (pool, block)) in todo.iter().enumerate() {
            let owner_and_addrs = {
                let s = self.lock();
                s.pools.get(pool).and_then(|p| {
                    p.blocks.get(block).map(|b| {
                        (
                            BlockOwner {
                                pool: *pool,
                                block: *block,
                                host: s.host.clone(),
                                rev: b.claim_rev,
                            },
                            b.used.keys().copied().collect::<Vec<_>>(),
                        )
                    })
                })
            };
            let Some((owner, addrs)) = owner_and_addrs else {
                continue;
            };
            match blocks::write_usage(&self.store, &self.keys, &owner, addrs).await {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
                    d.extend(todo[i..].iter().copied());
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    /// Compares the blocks held here with etcd's affinities: blocks etcd
    /// no longer gives this host are dropped (their addresses in use become
    /// strays, announced one by one); blocks etcd gives this host in pools
    /// it knows but the local state lacks are adopted.
    pub async fn reconcile(&self) -> Result<Reconciled, IpamError> {
        let _claiming = self.claims.lock().await;
        let owners = blocks::all_blocks(&self.store, &self.keys).await?;
        let mut out = Reconciled::default();
        let mut s = self.lock();
        let host = s.host.clone();
        let now = now_secs(SystemTime::now());
        for p in s.pools.values_mut() {
            let mine: Vec<&BlockOwner> = owners
                .iter()
                .filter(|o| o.pool == p.pool && o.host == host)
                .collect();
            let lost: Vec<IpNet> = p
                .blocks
                .iter()
                .filter(|(b, h)| !mine.iter().any(|o| o.block == **b && o.rev == h.claim_rev))
                .map(|(b, _)| *b)
                .collect();
            for b in lost {
                p.drop_block(b);
                out.lost.push(b);
            }
            for o in mine {
                if !p.blocks.contains_key(&o.block) {
                    p.add_block(o.block, o.rev, now);
                    out.adopted.push(o.block);
                }
            }
        }
        if out != Reconciled::default() {
            self.file.save(&s).map_err(IpamError::Local)?;
            self.note_held(&s);
        }
        Ok(out)
    }

    /// The pool as this host knows it (no etcd), if it does.
    pub fn pool(&self, pool: IpNet) -> Option<PoolRecord> {
        self.lock().pools.get(&pool).map(|p| PoolRecord {
            cidr: pool,
            block_len: p.block_len,
        })
    }

    /// What `addr` of `pool` is used for on this host, if it is in use.
    pub fn in_use(&self, pool: IpNet, addr: IpAddr) -> Option<Use> {
        self.lock().pools.get(&pool).and_then(|p| p.in_use(addr))
    }

    /// `(pool, block)` for every block this host holds: what it announces.
    pub fn held_blocks(&self) -> Vec<(IpNet, IpNet)> {
        let s = self.lock();
        s.pools
            .values()
            .flat_map(|p| p.blocks.keys().map(|b| (p.pool, *b)))
            .collect()
    }

    /// Addresses in use here outside the blocks this host holds: each is
    /// announced as a /32 or /128.
    pub fn strays(&self) -> Vec<IpAddr> {
        let s = self.lock();
        s.pools
            .values()
            .flat_map(|p| p.strays.keys().copied())
            .collect()
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of this host's state (for `ipam show`, status, metrics).
    pub fn snapshot(&self) -> LocalState {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::store::fake::MemStore;
    use std::sync::Arc;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(dir: &std::path::Path, host: &str) -> IpamConfig {
        IpamConfig {
            prefix: "/t/v1/".into(),
            ..IpamConfig::new(host, dir.join(format!("{host}.json")))
        }
    }

    /// A state folder, a shared in-memory store and host h1 on it, with
    /// `pool` requested.
    async fn h1_on(pool: IpNet) -> (tempfile::TempDir, Arc<MemStore>, Ipam<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let h1 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h1")).unwrap();
        h1.request_pool(pool, None).await.unwrap();
        (dir, m, h1)
    }

    /// Two hosts sharing one in-memory store.
    struct Shared(Arc<MemStore>);
    impl Store for Shared {
        async fn range(&self, p: &str) -> Result<store::Range, StoreError> {
            self.0.range(p).await
        }
        async fn txn(&self, t: store::Txn) -> Result<store::TxnResult, StoreError> {
            self.0.txn(t).await
        }
    }

    #[tokio::test]
    async fn fixed_addresses_claim_free_blocks_and_are_refused_in_others() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let h1 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h1")).unwrap();
        let h2 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h2")).unwrap();
        let pool = n("10.20.0.0/16");
        h1.request_pool(pool, None).await.unwrap();
        h2.request_pool(pool, None).await.unwrap();
        assert_eq!(
            h1.request_address(pool, Want::Exact(a("10.20.5.5")))
                .await
                .unwrap(),
            a("10.20.5.5")
        );
        assert_eq!(h1.held_blocks(), vec![(pool, n("10.20.5.0/26"))]);
        let e = h2
            .request_address(pool, Want::Exact(a("10.20.5.6")))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("10.20.5.6") && msg.contains("h1"), "{msg}");
        let e = h1
            .request_address(pool, Want::Exact(a("10.20.5.5")))
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::AddressInUse { .. }), "{e}");
        let e = h1
            .request_address(pool, Want::Exact(a("10.21.0.1")))
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::OutsidePool { .. }), "{e}");
        let e = h1
            .request_address(pool, Want::Exact(a("10.20.0.0")))
            .await
            .unwrap_err();
        assert!(matches!(e, IpamError::Reserved { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_frozen_etcd_fails_every_waiting_claim_at_one_deadline_and_changes_nothing() {
        let pool = n("10.20.0.0/24");
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let h1 = Arc::new(
            Ipam::open(
                Shared(m.clone()),
                IpamConfig {
                    deadline: Duration::from_millis(400),
                    ..cfg(dir.path(), "h1")
                },
            )
            .unwrap(),
        );
        h1.request_pool(pool, Some(28)).await.unwrap();
        let held = h1.request_address(pool, Want::Any).await.unwrap();
        let before = (h1.held_blocks(), m.keys());
        m.hang.store(true, Ordering::SeqCst);
        let t0 = tokio::time::Instant::now();
        // Three starts that each need a new block, at once: each fails at
        // the one deadline, not one deadline after the other.
        // Three addresses in three blocks h1 does not hold (its first block
        // is picked from a process-wide counter: any /28 of the pool).
        let held_nets: Vec<IpNet> = h1.held_blocks().into_iter().map(|(_, b)| b).collect();
        let wanted: Vec<String> = (1..16u32)
            .map(|k| format!("10.20.0.{}", k * 16 + 4))
            .filter(|x| !held_nets.iter().any(|b| b.contains(&a(x))))
            .take(3)
            .collect();
        assert_eq!(wanted.len(), 3, "{held_nets:?}");
        let claims: Vec<_> = wanted
            .into_iter()
            .map(|x| {
                let h = h1.clone();
                tokio::spawn(async move {
                    let r = h.request_address(pool, Want::Exact(a(&x))).await;
                    (r, t0.elapsed())
                })
            })
            .collect();
        // Meanwhile the held block serves at once.
        let local = h1.request_address(pool, Want::Any).await.unwrap();
        assert!(t0.elapsed() < Duration::from_millis(100), "waited for etcd");
        for c in claims {
            let (r, took) = c.await.unwrap();
            let e = r.unwrap_err();
            assert!(matches!(e, IpamError::Etcd { .. }), "{e}");
            assert!(
                e.to_string().contains("etcd did not answer within 400ms"),
                "{e}"
            );
            // One deadline each (queued one after the other: 1.2 s).
            assert!(took < Duration::from_millis(700), "{took:?}");
        }
        let e = h1.request_pool(n("10.21.0.0/24"), None).await.unwrap_err();
        assert!(
            e.to_string().starts_with("creating the pool needs etcd"),
            "{e}"
        );
        assert_eq!((h1.held_blocks(), m.keys()), before, "nothing half-made");
        let used: BTreeSet<IpAddr> = h1.snapshot().pools[&pool]
            .addresses()
            .map(|(x, _)| x)
            .collect();
        assert_eq!(used, BTreeSet::from([held, local]));
        assert_eq!(h1.stats().etcd_failures, 3);
        // Thawed: the same request succeeds.
        m.hang.store(false, Ordering::SeqCst);
        h1.request_address(pool, Want::Exact(a("10.20.0.100")))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_gateway_is_one_address_per_pool_and_host() {
        let pool = n("10.20.0.0/16");
        let (_dir, _m, h1) = h1_on(pool).await;
        let g = h1.request_address(pool, Want::Gateway).await.unwrap();
        assert_eq!(h1.request_address(pool, Want::Gateway).await.unwrap(), g);
        let c = h1.request_address(pool, Want::Any).await.unwrap();
        assert_ne!(c, g);
        assert_eq!(h1.held_blocks().len(), 1, "one block serves both");
    }

    #[tokio::test]
    async fn without_etcd_held_blocks_still_serve_and_new_blocks_fail_naming_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let pool = n("10.20.0.0/24");
        {
            let h1 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h1")).unwrap();
            h1.request_pool(pool, Some(28)).await.unwrap();
            h1.request_address(pool, Want::Any).await.unwrap();
        }
        m.down.store(true, Ordering::SeqCst);
        // A restarted driver, etcd down: its block still serves.
        let h1 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h1")).unwrap();
        h1.request_pool(pool, None).await.unwrap();
        let (_, block) = h1.held_blocks()[0];
        let room = (0..16u32)
            .filter(|i| {
                alloc::usable(
                    pool,
                    alloc::nth_block(block, 32, (*i).into()).unwrap().addr(),
                )
            })
            .count()
            - 1;
        let mut got = BTreeSet::new();
        let e = loop {
            match h1.request_address(pool, Want::Any).await {
                Ok(x) => assert!(got.insert(x), "{x} twice"),
                Err(e) => break e,
            }
        };
        assert_eq!(got.len(), room, "every free address of the held block");
        assert!(e.to_string().contains("etcd"), "{e}");
        assert!(h1
            .release_address(pool, *got.iter().next().unwrap())
            .unwrap());
        h1.request_address(pool, Want::Any).await.unwrap();
        let e = h1.request_pool(n("10.30.0.0/24"), None).await.unwrap_err();
        assert!(e.to_string().contains("etcd"), "{e}");
    }

    #[tokio::test]
    async fn idle_blocks_are_released_after_the_grace_period_only() {
        let pool = n("10.20.0.0/16");
        let (_dir, m, h1) = h1_on(pool).await;
        let mut announced = h1.watch_blocks();
        assert!(announced.borrow_and_update().is_empty());
        let x = h1.request_address(pool, Want::Any).await.unwrap();
        let block = h1.held_blocks()[0].1;
        assert!(announced.has_changed().unwrap(), "a claim is announced");
        assert_eq!(*announced.borrow_and_update(), [block].into());
        h1.release_address(pool, x).unwrap();
        let now = SystemTime::now();
        assert_eq!(h1.release_idle_blocks(now).await.unwrap(), vec![]);
        m.down.store(true, Ordering::SeqCst);
        let later = now + Duration::from_secs(601);
        assert!(h1.release_idle_blocks(later).await.is_err());
        assert_eq!(h1.held_blocks().len(), 1, "kept while etcd is away");
        assert_eq!(
            *announced.borrow_and_update(),
            [block].into(),
            "and announced"
        );
        m.down.store(false, Ordering::SeqCst);
        assert_eq!(h1.release_idle_blocks(later).await.unwrap().len(), 1);
        assert!(h1.held_blocks().is_empty());
        assert!(announced.borrow_and_update().is_empty(), "withdrawn");
        assert!(blocks::all_blocks(&Shared(m.clone()), h1.keys())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_released_host_keeps_its_addresses_as_strays() {
        let pool = n("10.20.0.0/16");
        let (_dir, m, h1) = h1_on(pool).await;
        let x = h1.request_address(pool, Want::Any).await.unwrap();
        assert_eq!(h1.sync_usage().await.unwrap(), 1);
        let released = release_host(&Shared(m.clone()), h1.keys(), "h1")
            .await
            .unwrap();
        assert_eq!(released.len(), 1);
        let r = h1.reconcile().await.unwrap();
        assert_eq!(r.lost, vec![released[0].block]);
        assert_eq!(h1.strays(), vec![x]);
        assert!(h1.held_blocks().is_empty());
        // h1 registers again and claims a new block for new containers.
        h1.registered.store(false, Ordering::SeqCst);
        let y = h1.request_address(pool, Want::Any).await.unwrap();
        assert_ne!(x, y);
    }

    #[tokio::test]
    async fn a_second_instance_with_the_same_host_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let h1 = Ipam::open(Shared(m.clone()), cfg(dir.path(), "h1")).unwrap();
        let twin = Ipam::open(Shared(m.clone()), cfg(other.path(), "h1")).unwrap();
        h1.register().await.unwrap();
        let e = twin.register().await.unwrap_err();
        assert!(matches!(e, IpamError::HostIdTaken { .. }), "{e}");
        let e = Ipam::open(
            Shared(m.clone()),
            IpamConfig {
                host: "h2".into(),
                ..cfg(dir.path(), "h1")
            },
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("belongs to host id h1"), "{e}");
    }
}
