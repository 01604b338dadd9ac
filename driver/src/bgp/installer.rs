//! The route installer: one thread, one netlink socket, batched writes.
//!
//! In: batches of [`Change`]s (set this prefix's route / remove it) from the
//! learner. Out: kernel routes in the main table tagged with our route
//! protocol number, written with replace and deleted tolerating "already
//! gone", many requests per `sendmsg`. It remembers what it installed, so a
//! repeated change costs nothing. At start it reads the tagged routes a
//! previous run left, so the learner can adopt them instead of flapping them.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use ipnet::IpNet;
use tracing::{debug, warn};

use crate::kernel::{Family, Kernel, KernelError, Route};
use crate::metrics::{now_unix, Metrics};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(Route),
    Remove(IpNet),
}

/// Sends batches to the installer thread; dropping every handle stops it.
#[derive(Clone)]
pub struct InstallerHandle {
    tx: mpsc::Sender<Msg>,
}

enum Msg {
    Batch(Vec<Change>),
    Flush(mpsc::Sender<()>),
}

/// How often refused changes are tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Installer {
    kernel: Kernel,
    installed: HashMap<IpNet, Route>,
    /// Changes the kernel refused: prefix -> the route wanted (`None`: gone).
    failed: HashMap<IpNet, Option<Route>>,
    metrics: Arc<Metrics>,
}

impl Installer {
    /// Reads the routes tagged `protocol` and starts the installer thread.
    /// Returns the handle, the thread, and the routes found (to be adopted).
    pub fn start(
        mut kernel: Kernel,
        protocol: u8,
        metrics: Arc<Metrics>,
    ) -> Result<(InstallerHandle, JoinHandle<()>, Vec<Route>), KernelError> {
        let mut existing = kernel.routes(Family::V4, Some(protocol))?;
        existing.extend(kernel.routes(Family::V6, Some(protocol))?);
        let installed = existing.iter().map(|r| (r.dst, *r)).collect();
        let (tx, rx) = mpsc::channel();
        let inst = Installer {
            kernel,
            installed,
            failed: HashMap::new(),
            metrics,
        };
        inst.publish();
        let thread = std::thread::Builder::new()
            .name("route-installer".into())
            .spawn(move || inst.run(rx))
            .map_err(|e| KernelError::Conflict(format!("spawn installer thread: {e}")))?;
        Ok((InstallerHandle { tx }, thread, existing))
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = match rx.recv_timeout(RETRY) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.retry();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let mut take = |m: Msg| match m {
                Msg::Batch(b) => batch.extend(b),
                Msg::Flush(done) => flushes.push(done),
            };
            take(msg);
            // Coalesce whatever else is queued into the same kernel round trip.
            while let Ok(m) = rx.try_recv() {
                take(m);
            }
            self.apply(batch);
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Changes the kernel refused last time are tried again (a next hop
    /// briefly unreachable, a parent being re-addressed).
    fn retry(&mut self) {
        if self.failed.is_empty() {
            return;
        }
        let again: Vec<Change> = self
            .failed
            .drain()
            .map(|(p, r)| match r {
                Some(r) => Change::Set(r),
                None => Change::Remove(p),
            })
            .collect();
        debug!(count = again.len(), "retrying refused route changes");
        self.apply(again);
    }

    fn apply(&mut self, batch: Vec<Change>) {
        // Last change per prefix wins.
        let mut last: HashMap<IpNet, Option<Route>> = HashMap::with_capacity(batch.len());
        for c in batch {
            match c {
                Change::Set(r) => last.insert(r.dst, Some(r)),
                Change::Remove(p) => last.insert(p, None),
            };
        }
        let mut set = Vec::new();
        let mut del = Vec::new();
        for (prefix, want) in last {
            // The newest intent for a prefix replaces any refused older one.
            self.failed.remove(&prefix);
            match (want, self.installed.get(&prefix)) {
                (Some(r), Some(cur)) if *cur == r => {}
                (Some(r), _) => set.push(r),
                (None, Some(cur)) => del.push(*cur),
                (None, None) => {}
            }
        }
        if set.is_empty() && del.is_empty() {
            return;
        }
        let mut errors = 0u64;
        for (r, res) in del.iter().zip(self.kernel.delete_routes(&del)) {
            match res {
                Ok(()) => {
                    self.installed.remove(&r.dst);
                    self.failed.remove(&r.dst);
                }
                Err(e) => {
                    errors += 1;
                    self.failed.insert(r.dst, None);
                    warn!(prefix = %r.dst, error = %e, "could not delete route; will retry");
                }
            }
        }
        for (r, res) in set.iter().zip(self.kernel.replace_routes(&set)) {
            match res {
                Ok(()) => {
                    self.installed.insert(r.dst, *r);
                    self.failed.remove(&r.dst);
                }
                Err(e) => {
                    errors += 1;
                    self.failed.insert(r.dst, Some(*r));
                    warn!(prefix = %r.dst, via = ?r.via, error = %e, "could not install route; will retry");
                }
            }
        }
        debug!(
            set = set.len(),
            deleted = del.len(),
            errors,
            "routes applied"
        );
        self.metrics.bgp(|b| {
            b.install_errors += errors;
            b.last_route_change = Some(now_unix());
        });
        self.publish();
    }

    fn publish(&self) {
        let n = self.installed.len();
        self.metrics.bgp(|b| b.installed = n);
    }
}

impl InstallerHandle {
    pub fn send(&self, batch: Vec<Change>) {
        if !batch.is_empty() {
            let _ = self.tx.send(Msg::Batch(batch));
        }
    }

    /// Waits until everything sent before has reached the kernel.
    pub fn flush_blocking(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}
