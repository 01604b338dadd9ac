//! The learner's own thread: learned paths, policy inputs and the stale
//! timer meet the [`Learner`] there, off the two async workers that answer
//! Docker (a full policy pass over 100,000 paths takes a while).
//!
//! In: [`LearnerHandle`] calls from the session (batches of paths, the RIB
//! read at connect or again, new policy inputs, gobgpd lost, the routes a
//! previous run left, the peers' End-of-RIB and hard failures) through a
//! bounded channel, so a flood waits in gobgpd's stream rather than here.
//! Out: route changes to the installer (the accepted pools first, as its
//! scope), the learn→install timer started in [`Metrics`], answers to the
//! session's questions (a peer's prefixes, how many routes a dropped peer
//! lost), flags asking the session to read gobgpd's RIB again
//! ([`LearnerHandle::relist_wanted`]) and saying whether routes are stale
//! ([`LearnerHandle::has_stale`]), and the next stale deadline, which a
//! small timer task turns into a wake-up. The thread ends when the handle
//! goes; if it dies, the handle's calls fail and the session ends (its
//! supervisor restarts the BGP side).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch};

use super::gobgp::{Family, LearnedPath};
use super::learner::Learner;
use super::policy::PolicyInputs;
use super::timers::{AbortOnDrop, TICK};
use crate::kernel::MultiRoute;
use crate::metrics::Metrics;
use crate::rib::installer::Change;
use crate::rib::worker::InstallerHandle;

/// Batches in flight towards the thread at most.
const QUEUE: usize = 4;

enum Msg {
    Inputs(PolicyInputs),
    Learn(Vec<LearnedPath>, Instant),
    Snapshot(Vec<LearnedPath>, Instant),
    Relisted(Vec<LearnedPath>, Instant),
    Disconnected(Instant),
    Adopt(Vec<MultiRoute>, Instant),
    /// A peer's End-of-RIB ([`Learner::end_of_rib`]).
    EndOfRib(String, Family, Instant),
    /// Every peer's End-of-RIB for a family ([`Learner::rib_complete`]).
    RibComplete(Family, Instant),
    /// The prefixes learned from a peer ([`Learner::prefixes_from`]).
    PrefixesFrom(String, oneshot::Sender<Vec<IpNet>>),
    /// A peer failed hard ([`Learner::drop_peer`]): answers how many routes left.
    DropPeer(String, Instant, oneshot::Sender<u64>),
    /// A stale deadline may be due.
    Tick,
    #[cfg(test)]
    Panic,
}

/// The learner's thread is gone (it panicked): the session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerGone;

impl std::fmt::Display for LearnerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the learner's thread ended")
    }
}

/// Talks to the learner's thread; dropping it stops the thread (after what
/// was sent) and its timer task.
pub struct LearnerHandle {
    tx: mpsc::Sender<Msg>,
    relist: watch::Receiver<bool>,
    stale: watch::Receiver<bool>,
    _timer: AbortOnDrop,
    _thread: JoinHandle<()>,
}

impl LearnerHandle {
    /// Starts the thread with `learner`; its changes go to `installer`.
    /// Needs a tokio runtime (for the timer task).
    pub fn start(
        learner: Learner,
        installer: InstallerHandle,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<LearnerHandle> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (relist_tx, relist) = watch::channel(false);
        let (stale_tx, stale) = watch::channel(learner.has_stale());
        let (expiry_tx, expiry) = watch::channel(None);
        let flags = Flags {
            relist: relist_tx,
            stale: stale_tx,
            expiry: expiry_tx,
        };
        let thread = std::thread::Builder::new()
            .name("bgp-learner".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                run(learner, rx, installer, metrics, flags)
            })?;
        let timer = AbortOnDrop(tokio::spawn(wake_for_expiry(tx.clone(), expiry)));
        Ok(LearnerHandle {
            tx,
            relist,
            stale,
            _timer: timer,
            _thread: thread,
        })
    }

    async fn send(&self, m: Msg) -> Result<(), LearnerGone> {
        self.tx.send(m).await.map_err(|_| LearnerGone)
    }

    /// New policy inputs (the full pass, or the incremental one, runs there).
    pub async fn set_inputs(&self, inputs: PolicyInputs) -> Result<(), LearnerGone> {
        self.send(Msg::Inputs(inputs)).await
    }

    /// Paths from the event stream, which arrived at `arrived`.
    pub async fn learn(
        &self,
        paths: Vec<LearnedPath>,
        arrived: Instant,
    ) -> Result<(), LearnerGone> {
        self.send(Msg::Learn(paths, arrived)).await
    }

    /// The first batch of gobgpd's RIB read at connect ([`Learner::snapshot`]).
    pub async fn snapshot(&self, paths: Vec<LearnedPath>, at: Instant) -> Result<(), LearnerGone> {
        self.send(Msg::Snapshot(paths, at)).await
    }

    /// Any later batch of a RIB read ([`Learner::relisted`]).
    pub async fn relisted(&self, paths: Vec<LearnedPath>, at: Instant) -> Result<(), LearnerGone> {
        self.send(Msg::Relisted(paths, at)).await
    }

    pub async fn disconnected(&self, at: Instant) -> Result<(), LearnerGone> {
        self.send(Msg::Disconnected(at)).await
    }

    pub async fn adopt(&self, routes: Vec<MultiRoute>, at: Instant) -> Result<(), LearnerGone> {
        self.send(Msg::Adopt(routes, at)).await
    }

    /// `peer` sent its End-of-RIB for `family`.
    pub async fn end_of_rib(
        &self,
        peer: String,
        family: Family,
        at: Instant,
    ) -> Result<(), LearnerGone> {
        self.send(Msg::EndOfRib(peer, family, at)).await
    }

    /// Every peer sent its End-of-RIB for `family`.
    pub async fn rib_complete(&self, family: Family, at: Instant) -> Result<(), LearnerGone> {
        self.send(Msg::RibComplete(family, at)).await
    }

    /// The prefixes whose route was learned from `peer` (after everything
    /// sent before).
    pub async fn prefixes_from(&self, peer: String) -> Result<Vec<IpNet>, LearnerGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::PrefixesFrom(peer, tx)).await?;
        rx.await.map_err(|_| LearnerGone)
    }

    /// `peer` failed hard: its routes go now. Answers how many left the kernel.
    pub async fn drop_peer(&self, peer: String, at: Instant) -> Result<u64, LearnerGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::DropPeer(peer, at, tx)).await?;
        rx.await.map_err(|_| LearnerGone)
    }

    /// Whether any route is stale, as of the last message the thread handled.
    pub fn has_stale(&self) -> bool {
        *self.stale.borrow()
    }

    /// True while the learner wants gobgpd's RIB read again
    /// ([`Learner::needs_relist`]); changes wake [`LearnerHandle::relist_changed`].
    pub fn relist_wanted(&self) -> bool {
        *self.relist.borrow()
    }

    /// Resolves when the relist wish changes (never, once the thread is gone).
    pub async fn relist_changed(&mut self) {
        if self.relist.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Makes the thread panic (the supervisor's test).
    #[cfg(test)]
    pub async fn panic_for_test(&self) {
        let _ = self.send(Msg::Panic).await;
    }
}

/// Wakes the thread at the earliest stale deadline it published, and at
/// least every [`TICK`].
async fn wake_for_expiry(tx: mpsc::Sender<Msg>, mut expiry: watch::Receiver<Option<Instant>>) {
    loop {
        let cap = Instant::now() + TICK;
        let next = expiry.borrow().map_or(cap, |t| t.min(cap));
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Msg::Tick) {
                    return;
                }
            }
            r = expiry.changed() => if r.is_err() { return; },
        }
    }
}

/// What the thread publishes after every message.
struct Flags {
    relist: watch::Sender<bool>,
    stale: watch::Sender<bool>,
    expiry: watch::Sender<Option<Instant>>,
}

fn run(
    mut learner: Learner,
    mut rx: mpsc::Receiver<Msg>,
    installer: InstallerHandle,
    metrics: Arc<Metrics>,
    flags: Flags,
) {
    while let Some(m) = rx.blocking_recv() {
        match m {
            Msg::Inputs(inputs) => {
                // The scope first: the installer then knows other owners'
                // routes in a widened pool before our routes there arrive.
                installer.set_scope(scope(&inputs));
                installer.send(learner.set_inputs(inputs));
            }
            Msg::Learn(paths, arrived) => {
                let changes = learner.learn(paths);
                tracing::debug!(
                    changes = changes.len(),
                    mono_us = crate::clock::mono_us(),
                    "learner: batch decided"
                );
                let set = changes.iter().filter_map(|c| match c {
                    Change::Set(r) => Some(r.dst),
                    Change::Remove(_) => None,
                });
                metrics.learned(set, arrived);
                installer.send(changes);
            }
            Msg::Snapshot(paths, at) => installer.send(learner.snapshot(paths, at)),
            Msg::Relisted(paths, at) => installer.send(learner.relisted(paths, at)),
            Msg::Disconnected(at) => learner.disconnected(at),
            Msg::Adopt(routes, at) => installer.send(learner.adopt(&routes, at)),
            Msg::EndOfRib(peer, family, at) => {
                installer.send(learner.end_of_rib(&peer, family, at))
            }
            Msg::RibComplete(family, at) => installer.send(learner.rib_complete(family, at)),
            Msg::PrefixesFrom(peer, reply) => {
                let _ = reply.send(learner.prefixes_from(&peer));
            }
            Msg::DropPeer(peer, at, reply) => {
                let changes = learner.drop_peer(&peer, at);
                let removed = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Remove(_)))
                    .count() as u64;
                installer.send(changes);
                let _ = reply.send(removed);
            }
            Msg::Tick => {}
            #[cfg(test)]
            Msg::Panic => panic!("learner thread: panic asked by a test"),
        }
        let now = Instant::now();
        if learner.next_expiry().is_some_and(|t| t <= now) {
            installer.send(learner.expire(now));
        }
        let wanted = learner.needs_relist();
        flags
            .relist
            .send_if_modified(|v| std::mem::replace(v, wanted) != wanted);
        let stale = learner.has_stale();
        flags
            .stale
            .send_if_modified(|v| std::mem::replace(v, stale) != stale);
        let next = learner.next_expiry();
        flags
            .expiry
            .send_if_modified(|v| std::mem::replace(v, next) != next);
    }
}

/// The installer's scope: where the learner may ask for routes.
fn scope(inputs: &PolicyInputs) -> Vec<IpNet> {
    inputs.pools.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::learner::Limits;
    use crate::bgp::policy::ParentInfo;
    use crate::kernel::{Route, TableRoute};
    use crate::rib::fake::{FakeTable, SharedTable};
    use crate::rib::installer::{everywhere, Installer};
    use std::time::Duration;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The expiry needs nothing from the session: a route adopted with a
    /// 300 ms stale time leaves the kernel right after its deadline.
    #[tokio::test]
    async fn stale_routes_expire_on_their_own_timer() {
        let route = Route {
            dst: n("10.1.2.0/24"),
            via: "192.0.2.2".parse().ok(),
            oif: Some(7),
            protocol: 73,
        };
        let mut fake = FakeTable::default();
        fake.routes.push(TableRoute {
            route,
            tos: 0,
            priority: 0,
            multipath: Vec::new(),
        });
        let table = SharedTable::new(fake);
        let metrics = Arc::new(Metrics::default());
        let (installer, _thread, adopted) =
            Installer::start_with(table.clone(), None, 73, everywhere(), metrics.clone()).unwrap();
        assert_eq!(adopted, vec![MultiRoute::from(route)]);
        let stale = Duration::from_millis(300);
        let learner = Learner::new(73, Limits::installing(100), stale, metrics.clone());
        let h = LearnerHandle::start(learner, installer, metrics).unwrap();
        h.set_inputs(PolicyInputs {
            pools: vec![n("10.1.0.0/16")],
            parents: vec![ParentInfo {
                name: "eth1".into(),
                index: 7,
                nets: vec![n("192.0.2.0/24")],
            }],
            ..PolicyInputs::default()
        })
        .await
        .unwrap();
        let start = Instant::now();
        h.adopt(adopted, start).await.unwrap();
        let gone = loop {
            if table.0.lock().unwrap().routes.is_empty() {
                break start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(3), "not removed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(
            gone >= stale && gone < stale + Duration::from_millis(500),
            "removed after {gone:?}, stale time {stale:?}"
        );
    }

    /// The thread dying (a panic) makes the handle's calls fail, so the
    /// session ends instead of feeding a learner that is gone.
    #[tokio::test]
    async fn a_dead_learner_thread_fails_the_calls() {
        let metrics = Arc::new(Metrics::default());
        let (installer, _thread, _) = Installer::start_with(
            SharedTable::new(FakeTable::default()),
            None,
            73,
            everywhere(),
            metrics.clone(),
        )
        .unwrap();
        let learner = Learner::new(
            73,
            Limits::installing(100),
            Duration::from_secs(1),
            metrics.clone(),
        );
        let h = LearnerHandle::start(learner, installer, metrics).unwrap();
        h.panic_for_test().await;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if h.disconnected(Instant::now()).await == Err(LearnerGone) {
                break;
            }
            assert!(Instant::now() < deadline, "calls still accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
