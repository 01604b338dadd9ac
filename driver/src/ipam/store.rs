//! The IPAM's only door to etcd: a two-call trait ([`Store`]: read a key
//! prefix, run one transaction) and its real implementation on the
//! `etcd-client` crate ([`EtcdStore`]).
//!
//! In: key prefixes and [`Txn`]s built by `blocks.rs` (compares on
//! `create_revision`/`mod_revision`, puts, deletes). Out: key-value records
//! with their revisions, or a [`StoreError`] that names etcd. Every call runs
//! under one deadline ([`StoreConfig::timeout`], connecting included). etcd
//! is asked to refuse at once when its member has no leader
//! (`require_leader`); such refusals and unreachable members are retried
//! with a short back-off inside the deadline, so an election after the
//! leader died costs no failed call, and a lost quorum is an error at the
//! deadline, never a hang. The connection is made lazily and again
//! after a failure: a driver starts while etcd is down. TLS (CA, client
//! certificate) and a user/password per host come from [`StoreConfig`].
//! A fake in-memory store for unit tests lives under `cfg(test)` only.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions,
    TxnOp,
};

/// One key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_rev: i64,
    pub mod_rev: i64,
}

/// The keys under a prefix, and the store's revision when they were read.
#[derive(Clone, Debug, Default)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// The key does not exist (`create_revision == 0`).
    Absent(String),
    /// The key was last written at this revision (`mod_revision == rev`):
    /// it is still the record we read.
    Unchanged(String, i64),
    /// No key under the prefix was written after `rev` (`mod_revision <
    /// rev + 1` over the whole range).
    PrefixUnchangedSince(String, i64),
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// All of `then` happens if every condition of `when` holds, atomically;
/// otherwise nothing is written and `else_get` (if any) is read in the same
/// transaction.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub when: Vec<Cond>,
    pub then: Vec<Op>,
    pub else_get: Option<String>,
}

/// What a transaction did.
#[derive(Clone, Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store's revision after the transaction: the `mod_revision` of
    /// every key it wrote.
    pub revision: i64,
    /// `else_get`'s key, when the conditions failed and it exists.
    pub got: Option<Kv>,
}

/// Why a store call failed. The text names etcd: it reaches the operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd did not answer within {after:?} (no quorum, or no member reachable{})", last.as_ref().map_or_else(String::new, |l| format!("; last error: {l}")))]
    Timeout {
        after: Duration,
        last: Option<String>,
    },
    #[error("etcd refused or failed the request: {0}")]
    Failed(String),
    #[error("etcd client configuration: {0}")]
    Config(String),
}

/// The store the IPAM needs: prefix reads and transactions. Implemented by
/// [`EtcdStore`]; a fake for unit tests lives under `cfg(test)`.
pub trait Store: Send + Sync {
    fn range(&self, prefix: &str) -> impl Future<Output = Result<Range, StoreError>> + Send;
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResult, StoreError>> + Send;
}

/// TLS files for etcd's client port: the CA that signed etcd's server
/// certificate, and this host's client certificate and key (when etcd runs
/// with `--client-cert-auth`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach etcd. The password is a value here, never a flag: the
/// binary reads it from a file or the environment (invariant 10).
#[derive(Clone)]
pub struct StoreConfig {
    /// `http://host:2379` or, with `tls`, `https://host:2379`.
    pub endpoints: Vec<String>,
    pub user: Option<(String, String)>,
    pub tls: Option<TlsFiles>,
    /// The deadline of every call (and of connecting).
    pub timeout: Duration,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The deadline of one etcd call unless configured otherwise: well under
/// the time a user waits for `docker run`, well over a healthy etcd's
/// answer (milliseconds) and its leader election (about 1 s by default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// etcd through `etcd-client` (gRPC, v3 API; etcd 3.4 and later).
pub struct EtcdStore {
    cfg: StoreConfig,
    tls: Option<TlsOptions>,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl EtcdStore {
    /// Checks the configuration and reads the TLS files; does not connect
    /// (the first call does), so a driver starts while etcd is away.
    pub fn new(cfg: StoreConfig) -> Result<Self, StoreError> {
        if cfg.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoint given".into()));
        }
        let scheme = if cfg.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        if let Some(bad) = cfg.endpoints.iter().find(|e| !e.starts_with(scheme)) {
            return Err(StoreError::Config(format!(
                "etcd endpoint {bad} must start with {scheme} ({})",
                if cfg.tls.is_some() {
                    "TLS is configured"
                } else {
                    "no TLS CA is configured; give one to use https"
                }
            )));
        }
        let tls = cfg.tls.as_ref().map(read_tls).transpose()?;
        Ok(EtcdStore {
            cfg,
            tls,
            client: tokio::sync::Mutex::new(None),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.cfg.endpoints
    }

    /// The connected client, connecting (and authenticating) first if
    /// needed.
    async fn client(&self) -> Result<Client, etcd_client::Error> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // No per-request gRPC timeout: `call`'s deadline governs (tonic's
        // own would end an attempt as "cancelled" at the same moment).
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.cfg.timeout)
            .with_keep_alive(Duration::from_secs(10), self.cfg.timeout)
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some((user, password)) = &self.cfg.user {
            opts = opts.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(tls.clone());
        }
        let client = Client::connect(self.cfg.endpoints.clone(), Some(opts)).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `f` on the client until it succeeds, fails for good, or the
    /// deadline passes. A member without a leader (an election after the
    /// leader died) or an unreachable member is retried with a short
    /// back-off, so one member down costs no failed call; with no quorum
    /// the call fails at the deadline with etcd's last answer.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let end = tokio::time::Instant::now() + self.cfg.timeout;
        let mut backoff = Duration::from_millis(50);
        let mut last = None;
        loop {
            let attempt = async { f(self.client().await?).await };
            let e = match tokio::time::timeout_at(end, attempt).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(StoreError::Timeout {
                        after: self.cfg.timeout,
                        last,
                    })
                }
            };
            if !transient(&e) {
                if stale_session(&e) {
                    *self.client.lock().await = None;
                }
                return Err(StoreError::Failed(e.to_string()));
            }
            last = Some(e.to_string());
            if tokio::time::Instant::now() + backoff >= end {
                return Err(StoreError::Timeout {
                    after: self.cfg.timeout,
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(400));
        }
    }
}

/// Failures that another try may cure: no leader (an election), a member
/// that is down or unreachable (a refused connection, a connection that
/// broke when the member was killed: tonic reports those as `Unknown`
/// "transport error"), a deadline of one attempt. A TLS handshake that
/// failed (a missing or untrusted certificate) is not one of them.
fn transient(e: &etcd_client::Error) -> bool {
    let tls = || {
        let d = format!("{e:?}");
        d.contains("Certificate") || d.contains("certificate") || d.contains("InvalidData")
    };
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => !tls(),
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted => true,
            tonic::Code::Unknown | tonic::Code::Cancelled => {
                (s.message().contains("transport error") || s.message().contains("Timeout"))
                    && !tls()
            }
            _ => false,
        },
        _ => false,
    }
}

/// Failures after which a new connection (a new token) may help next time.
fn stale_session(e: &etcd_client::Error) -> bool {
    let m = e.to_string().to_ascii_lowercase();
    m.contains("token") || m.contains("authentication")
}

fn read_tls(files: &TlsFiles) -> Result<TlsOptions, StoreError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| {
            StoreError::Config(format!("cannot read etcd TLS file {}: {e}", p.display()))
        })
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&files.ca)?));
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "an etcd client certificate needs its key and the key its certificate".into(),
            ))
        }
    }
    Ok(tls)
}

fn kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: k.value().to_vec(),
        create_rev: k.create_revision(),
        mod_rev: k.mod_revision(),
    }
}

fn compare(c: &Cond) -> Compare {
    match c {
        Cond::Absent(k) => Compare::create_revision(k.as_str(), CompareOp::Equal, 0),
        Cond::Unchanged(k, rev) => Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev),
        Cond::PrefixUnchangedSince(p, rev) => {
            Compare::mod_revision(p.as_str(), CompareOp::Less, rev + 1).with_prefix()
        }
    }
}

impl Store for EtcdStore {
    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let r = self
            .call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await })
            .await?;
        Ok(Range {
            kvs: r.kvs().iter().map(kv).collect(),
            revision: r.header().map_or(0, |h| h.revision()),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let when: Vec<Compare> = txn.when.iter().map(compare).collect();
        let then: Vec<TxnOp> = txn
            .then
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => TxnOp::put(k.as_str(), v.clone(), None),
                Op::Delete(k) => TxnOp::delete(k.as_str(), None),
            })
            .collect();
        let otherwise: Vec<TxnOp> = txn
            .else_get
            .iter()
            .map(|k| TxnOp::get(k.as_str(), None))
            .collect();
        let t = etcd_client::Txn::new()
            .when(when)
            .and_then(then)
            .or_else(otherwise);
        // A retried transaction is safe: a claim that landed before its
        // answer was lost fails its compare the second time and reads our
        // own record back (blocks.rs takes that as held).
        let r = self
            .call(|mut c| {
                let t = t.clone();
                async move { c.txn(t).await }
            })
            .await?;
        let got = if r.succeeded() {
            None
        } else {
            r.op_responses().iter().find_map(|o| match o {
                etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(kv),
                _ => None,
            })
        };
        Ok(TxnResult {
            succeeded: r.succeeded(),
            revision: r.header().map_or(0, |h| h.revision()),
            got,
        })
    }
}

/// An in-memory store with etcd's transaction semantics, for fast unit
/// tests of the claim logic (the real etcd is tested in
/// `tests/ipam_etcd.rs`).
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemStore {
        inner: Mutex<(i64, BTreeMap<String, Kv>)>,
        /// When set, every call fails as a lost quorum would.
        pub down: std::sync::atomic::AtomicBool,
        /// When set, every call hangs, as on a frozen etcd.
        pub hang: std::sync::atomic::AtomicBool,
    }

    impl MemStore {
        async fn check(&self) -> Result<(), StoreError> {
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Timeout {
                    after: Duration::from_millis(1),
                    last: None,
                });
            }
            Ok(())
        }
        pub fn keys(&self) -> Vec<(String, String)> {
            let g = self.inner.lock().unwrap();
            g.1.values()
                .map(|k| {
                    (
                        k.key.clone(),
                        String::from_utf8_lossy(&k.value).into_owned(),
                    )
                })
                .collect()
        }
    }

    impl Store for MemStore {
        async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
            self.check().await?;
            let g = self.inner.lock().unwrap();
            Ok(Range {
                kvs: g
                    .1
                    .range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                revision: g.0,
            })
        }

        async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
            self.check().await?;
            let mut g = self.inner.lock().unwrap();
            let (rev, map) = &mut *g;
            let ok = txn.when.iter().all(|c| match c {
                Cond::Absent(k) => !map.contains_key(k),
                Cond::Unchanged(k, r) => map.get(k).map_or(0, |kv| kv.mod_rev) == *r,
                Cond::PrefixUnchangedSince(p, r) => map
                    .iter()
                    .filter(|(k, _)| k.starts_with(p.as_str()))
                    .all(|(_, kv)| kv.mod_rev <= *r),
            });
            if !ok {
                return Ok(TxnResult {
                    succeeded: false,
                    revision: *rev,
                    got: txn.else_get.and_then(|k| map.get(&k).cloned()),
                });
            }
            if txn.then.is_empty() {
                return Ok(TxnResult {
                    succeeded: true,
                    revision: *rev,
                    got: None,
                });
            }
            *rev += 1;
            for op in txn.then {
                match op {
                    Op::Put(k, v) => {
                        let create_rev = map.get(&k).map_or(*rev, |kv| kv.create_rev);
                        map.insert(
                            k.clone(),
                            Kv {
                                key: k,
                                value: v,
                                create_rev,
                                mod_rev: *rev,
                            },
                        );
                    }
                    Op::Delete(k) => {
                        map.remove(&k);
                    }
                }
            }
            Ok(TxnResult {
                succeeded: true,
                revision: *rev,
                got: None,
            })
        }
    }
}
