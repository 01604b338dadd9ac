//! Several hosts served at once: work grouped by host, each host's items
//! one after the other (as one dockerd serves them), up to
//! [`PARALLEL_HOSTS`] hosts in parallel, each thread with its own runtime.
//!
//! In: items, the host of each, the work. Out: the results in the items'
//! order. Owns the threads; knows nothing of containers.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

/// How many hosts the emulator serves at once in `start_many` and
/// `stop_many` (each host's own requests stay one after the other).
const PARALLEL_HOSTS: usize = 8;

/// Runs `work` over `items` grouped by host: up to [`PARALLEL_HOSTS`]
/// threads, each taking a whole host's items in order, each with its own
/// runtime. Answers in the order of `items`.
pub(super) fn per_host<T: Sync, R: Send>(
    items: &[T],
    host_of: impl Fn(&T) -> usize,
    work: impl Fn(&tokio::runtime::Runtime, &T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let mut by_host: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, it) in items.iter().enumerate() {
        by_host.entry(host_of(it)).or_default().push(k);
    }
    let groups: Vec<Vec<usize>> = by_host.into_values().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<R>>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    let threads = groups.len().clamp(1, PARALLEL_HOSTS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                        for g in &groups {
                            for &k in g {
                                r[k].get_or_insert_with(|| Err(anyhow!("tokio runtime: {e}")));
                            }
                        }
                        return;
                    }
                };
                loop {
                    let g = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(group) = groups.get(g) else { break };
                    for &k in group {
                        let r = work(&rt, &items[k]);
                        results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("internal: no result"))))
        .collect()
}
