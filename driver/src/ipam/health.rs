//! How etcd answers, as the IPAM saw it: every store call's outcome.
//!
//! In: the results of [`Store`] calls, through [`Observed`], a store that
//! wraps another and notes each outcome. Out: [`StoreHealth`] (up or down,
//! since when, the last error, when etcd last answered) for `status`,
//! `/metrics` and the upkeep loop's log lines. Owns nothing else: a call
//! succeeds or fails exactly as the wrapped store's does.

use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::store::{Range, Store, StoreError, Txn, TxnResult};

/// What the last store calls said about etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// None before the first call; then whether the last call succeeded.
    pub up: Option<bool>,
    /// Unix time of the last change of `up`.
    pub since: Option<u64>,
    /// Unix time of the last call etcd answered.
    pub last_ok: Option<u64>,
    /// The last failure, kept after etcd came back (see `since`).
    pub last_error: Option<String>,
    /// Calls that failed since start.
    pub failures: u64,
}

/// A store that notes the outcome of every call in a [`StoreHealth`].
pub struct Observed<S> {
    inner: S,
    health: Mutex<StoreHealth>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<S: Store> Observed<S> {
    pub fn new(inner: S) -> Self {
        Observed {
            inner,
            health: Mutex::new(StoreHealth::default()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, StoreHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn health(&self) -> StoreHealth {
        self.lock().clone()
    }

    fn note<T>(&self, r: &Result<T, StoreError>) {
        let t = now();
        let mut h = self.lock();
        let ok = r.is_ok();
        if h.up != Some(ok) {
            h.up = Some(ok);
            h.since = Some(t);
        }
        match r {
            Ok(_) => h.last_ok = Some(t),
            Err(e) => {
                h.failures += 1;
                h.last_error = Some(e.to_string());
            }
        }
    }
}

impl<S: Store> Store for Observed<S> {
    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let r = self.inner.range(prefix).await;
        self.note(&r);
        r
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let r = self.inner.txn(txn).await;
        self.note(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::store::fake::MemStore;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn every_outcome_is_noted() {
        let s = Observed::new(MemStore::default());
        assert_eq!(s.health().up, None, "nothing known before the first call");
        s.range("/x").await.unwrap();
        let h = s.health();
        assert_eq!(h.up, Some(true));
        assert!(h.last_ok.is_some() && h.last_error.is_none());
        s.inner().down.store(true, Ordering::SeqCst);
        assert!(s.range("/x").await.is_err());
        assert!(s.txn(Txn::default()).await.is_err());
        let h = s.health();
        assert_eq!(h.up, Some(false));
        assert_eq!(h.failures, 2);
        assert!(h.last_error.unwrap().contains("etcd"), "names etcd");
        s.inner().down.store(false, Ordering::SeqCst);
        s.range("/x").await.unwrap();
        assert_eq!(s.health().up, Some(true));
    }
}
