//! The installer's thread: where batches and kernel events meet the timers.
//!
//! In: batches of [`Change`]s sent through an [`InstallerHandle`] (the BGP
//! side), [`KernelEvent`]s from the watch socket's own thread, and flush
//! requests. Out: calls into the [`Installer`] on one thread — events first,
//! then the batch, then whatever timer is due — so churn can starve neither
//! the kernel's notifications nor the retries and reconciles. The thread
//! ends once every handle is gone, after applying what they sent.
//! [`Installer::start`] reads the tagged routes a previous run left, starts
//! the watch and this thread.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::warn;

use super::installer::{Change, Installer};
use super::table::RouteTable;
use super::watch::{KernelEvent, RouteWatch};
use crate::kernel::real::Kernel;
use crate::kernel::{KernelError, MultiRoute};
use crate::metrics::Metrics;

/// Sends batches to the installer thread; dropping every handle stops it.
#[derive(Clone)]
pub struct InstallerHandle {
    tx: mpsc::Sender<Msg>,
    /// The thread stops when no handle holds this any more (the watch
    /// thread's sender alone must not keep it running).
    _alive: Arc<()>,
}

enum Msg {
    Batch(Vec<Change>),
    Scope(Vec<IpNet>),
    Wanted(mpsc::Sender<Vec<MultiRoute>>),
    Flush(mpsc::Sender<()>),
    Kernel(KernelEvent),
}

impl Installer<Kernel> {
    /// Reads the routes tagged `protocol`, subscribes to kernel changes in the
    /// current namespace and starts the installer thread. Returns the handle,
    /// the thread, and the routes found (to be adopted).
    pub fn start(
        kernel: Kernel,
        protocol: u8,
        scope: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Result<(InstallerHandle, JoinHandle<()>, Vec<MultiRoute>), KernelError> {
        let watch = match RouteWatch::open() {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch links and routes; relying on the periodic reconcile only");
                None
            }
        };
        Installer::start_with(kernel, watch, protocol, scope, metrics)
    }
}

impl<T: RouteTable> Installer<T> {
    /// Like [`Installer::start`] over any route table and watch socket.
    pub fn start_with(
        table: T,
        watch: Option<RouteWatch>,
        protocol: u8,
        scope: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Result<(InstallerHandle, JoinHandle<()>, Vec<MultiRoute>), KernelError> {
        let (inst, existing) = Installer::new(table, protocol, scope, metrics, Instant::now())?;
        let (tx, rx) = mpsc::channel();
        let alive = Arc::new(());
        let handles = Arc::downgrade(&alive);
        if let Some(w) = watch {
            let tx = tx.clone();
            if let Err(e) = w.spawn(move |ev| match ev {
                Some(ev) => tx.send(Msg::Kernel(ev)).is_ok(),
                // Idle heartbeat: stop once the installer is gone.
                None => tx.send(Msg::Batch(Vec::new())).is_ok(),
            }) {
                warn!(error = %e, "cannot start the route watch thread");
            }
        }
        let thread = std::thread::Builder::new()
            .name("route-installer".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                inst.run(rx, handles)
            })
            .map_err(|e| KernelError::Conflict(format!("spawn installer thread: {e}")))?;
        Ok((InstallerHandle { tx, _alive: alive }, thread, existing))
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>, handles: std::sync::Weak<()>) {
        loop {
            if handles.strong_count() == 0 {
                // Every handle is gone; what they sent has been applied.
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Batch(b) = m {
                        self.apply(b, Instant::now());
                    }
                }
                return;
            }
            let now = Instant::now();
            let wait = self
                .next_deadline()
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let mut batch = Vec::new();
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            let mut scope = None;
            let mut asks = Vec::new();
            let mut take = |m: Msg| match m {
                Msg::Batch(b) => batch.extend(b),
                Msg::Scope(s) => scope = Some(s),
                Msg::Wanted(reply) => asks.push(reply),
                Msg::Flush(done) => flushes.push(done),
                Msg::Kernel(ev) => events.push(ev),
            };
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    take(m);
                    // Coalesce whatever else is queued into the same kernel round trip.
                    while let Ok(m) = rx.try_recv() {
                        take(m);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if !batch.is_empty() {
                tracing::debug!(
                    changes = batch.len(),
                    mono_us = crate::clock::mono_us(),
                    "installer: batch received"
                );
            }
            // Events first: a route another owner just added must be known
            // before the batch writes to that prefix.
            for ev in events {
                self.on_event(ev, now);
            }
            // The scope before the batch: a batch for a widened pool finds
            // the other owners' routes there known.
            if let Some(s) = scope {
                self.set_scope(s, now);
            }
            self.apply(batch, now);
            // Timers run whatever the channel does: churn cannot starve them.
            self.tick(Instant::now());
            for f in flushes {
                let _ = f.send(());
            }
            for reply in asks {
                let _ = reply.send(self.wanted_routes());
            }
        }
    }
}

impl InstallerHandle {
    pub fn send(&self, batch: Vec<Change>) {
        if !batch.is_empty() {
            let _ = self.tx.send(Msg::Batch(batch));
        }
    }

    /// Where the learner may ask for routes from now on (its accepted pools):
    /// see [`Installer::set_scope`]. Send it before the batches it allows.
    pub fn set_scope(&self, scope: Vec<IpNet>) {
        let _ = self.tx.send(Msg::Scope(scope));
    }

    /// The routes decided so far (after what was sent before): what a new
    /// BGP side adopts. Blocks until the installer thread answers; empty
    /// if it is gone.
    pub fn wanted_blocking(&self) -> Vec<MultiRoute> {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Wanted(tx)).is_ok() {
            return rx.recv().unwrap_or_default();
        }
        Vec::new()
    }

    /// Waits until everything sent before has reached the kernel.
    pub fn flush_blocking(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}
