//! The driver's route installer and BGP side inside a lab namespace, wired
//! as `lib.rs` wires them (protocol tag 73, every prefix in scope).
//!
//! In: the namespace's name, the BGP settings and the first view. Out: the
//! installer's handle and the routes it adopted, or a running BGP side with
//! its metrics, its view sender and a stop that waits for it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipvlan_bgp::bgp::config::BgpConfig;
use ipvlan_bgp::bgp::session::{Bgp, RunError};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::MultiRoute;
use ipvlan_bgp::metrics::Metrics;
use ipvlan_bgp::rib::installer::{everywhere, Installer};
use ipvlan_bgp::rib::watch::RouteWatch;
use ipvlan_bgp::rib::worker::InstallerHandle;
use ipvlan_bgp::view::View;

/// The installer thread in namespace `ns` (with its watch socket if
/// `watch`), and the tagged routes it found there.
pub fn installer_in(
    ns: &str,
    watch: bool,
    metrics: Arc<Metrics>,
) -> (InstallerHandle, JoinHandle<()>, Vec<MultiRoute>) {
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    Installer::start_with(
        Kernel::open_in_netns(&path).expect("netlink"),
        watch.then(|| RouteWatch::open_in_netns(&path).expect("watch")),
        73,
        everywhere(),
        metrics,
    )
    .expect("installer")
}

/// The driver's BGP side in namespace `ns`, running.
pub struct Driver {
    pub metrics: Arc<Metrics>,
    pub view: tokio::sync::watch::Sender<Arc<View>>,
    stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Driver {
    pub fn start(ns: &str, cfg: BgpConfig, view: View) -> Driver {
        Driver::start_with_state(ns, cfg, view, None)
    }

    /// [`Driver::start`] with a state directory (`None`: in memory only):
    /// what a driver restarted on the same directory finds there.
    pub fn start_with_state(
        ns: &str,
        cfg: BgpConfig,
        view: View,
        state_dir: Option<PathBuf>,
    ) -> Driver {
        let path = PathBuf::from(format!("/run/netns/{ns}"));
        let metrics = Arc::new(Metrics::default());
        let (installer, _thread, adopted) = installer_in(ns, true, metrics.clone());
        let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(view));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let bgp = Bgp::new(
            cfg,
            metrics.clone(),
            view_rx,
            installer,
            Kernel::open_in_netns(&path).expect("netlink"),
            adopted,
            ipvlan_bgp::bgp::ledger::Ledger::open(state_dir),
        )
        .expect("bgp");
        Driver {
            metrics,
            view: view_tx,
            stop,
            task: tokio::spawn(async move {
                bgp.run(stop_rx).await.map_err(|e| match e {
                    RunError::Refused(e) | RunError::Failed(e) => e,
                })
            }),
        }
    }

    /// Stops the BGP side and waits for it (10 s at most).
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the BGP side stops within 10 s")
            .expect("task")
    }
}
