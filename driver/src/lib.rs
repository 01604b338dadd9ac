//! ipvlan-bgp: a Docker network driver that puts containers straight on the
//! host's NIC (ipvlan L3 by default; ipvlan L2/L3S, or macvlan) and makes them
//! reachable across hosts with BGP through a local gobgpd.
//!
//! ```text
//! dockerd ─HTTP/unix─► api ─► docker (networks, endpoints, store) ─► provision ─► kernel
//!                               └─ view ─► health (gate) ─► view::blocks ─► bgp: announcer ─gRPC─► gobgpd ─► peers
//!                      gobgpd ─WatchEvent─► bgp: learner ─► policy ─► rib: installer ─► kernel (routes)
//! dockerd ─IpamDriver─► api::ipam ─► ipam (blocks claimed in etcd, addresses from held blocks)
//!                                      └─ held blocks ─► view::blocks (one route per block, /32s for strays)
//! ```
//! Every folder reads the domain types of [`model`]; none imports one above
//! it. The binary is thin: [`run`] wires the pieces and serves until shutdown;
//! [`supervise`] watches the BGP side and the health gate while it does.

pub mod api;
pub mod background;
pub mod bgp;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod docker;
pub mod error;
pub mod health;
pub mod instance;
pub mod ipam;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod provision;
pub mod rib;
pub mod store;
pub mod supervise;
pub mod unix_http;
pub mod view;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use crate::api::ipam::server::IpamService;
use crate::api::server::{self, App};
use crate::bgp::config::BgpConfig;
use crate::config::{IpamArgs, RunArgs};
use crate::docker::{lifecycle, Driver};
use crate::kernel::real::Kernel;
use crate::metrics::Metrics;
use crate::store::Store;

/// Runs the driver until `shutdown` resolves: restores state, starts the BGP
/// side (unless disabled), serves the plugin socket, then removes it.
pub async fn run(
    args: RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // One driver per state directory: before anything is read or changed.
    let lock = instance::StateLock::acquire(&args.state_dir)?;
    let bgp_cfg = args.bgp_config().map_err(anyhow::Error::msg)?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(server::bind_metrics(addr).await?),
        None => None,
    };
    let uplinks = args.checked_uplinks().map_err(anyhow::Error::msg)?;
    let mut kernel = Kernel::open().context("open netlink")?;
    let mut host_warnings = Vec::new();
    let port_cfg = provision::port::PortConfig {
        table: args.port_table,
        pref: args.port_rule_pref,
        protocol: args.route_protocol,
    };
    if !uplinks.is_empty() {
        let links = provision::uplinks::check(&mut kernel, &uplinks).map_err(anyhow::Error::msg)?;
        host_warnings = provision::uplinks::host_warnings(&mut kernel, &uplinks);
        for w in &host_warnings {
            tracing::warn!("{w}");
        }
        provision::port::check_free(&mut kernel, &port_cfg).map_err(anyhow::Error::msg)?;
        info!(uplinks = %uplinks.join(","), mtu = ?provision::uplinks::smallest_mtu(&links), "dual-uplink mode");
    }
    let ipam = open_ipam(&args, &mut kernel)?;
    let store = Store::new(&args.state_dir);
    let protocol = bgp_cfg.as_ref().map(|c| c.protocol);
    let (mut driver, view_rx) = tokio::task::spawn_blocking({
        let parents = docker::HostParents {
            default_parent: args.parent.clone(),
            uplinks: uplinks.clone(),
            port: port_cfg,
        };
        move || {
            let (mut driver, rx) =
                Driver::start_with(store, kernel, parents, lifecycle::read_boot_id())?;
            match Kernel::open() {
                Ok(mut table) => driver.flush_earlier_routes(&mut table, protocol),
                Err(e) => tracing::warn!(error = %e, "cannot open netlink to remove the routes of an earlier run"),
            }
            Ok::<_, error::DriverError>((driver, rx))
        }
    })
    .await
    .context("driver start task")?
    .context("load state")?;
    if let Some(socket) = &args.docker_socket.0 {
        // Before the first view goes out: a container that stopped while
        // the driver was down is never announced again, not even briefly.
        let joined = driver.joined_at_start();
        if !joined.is_empty() {
            let api =
                health::docker::DockerApi::new(socket.clone(), docker::restart_check::DEADLINE);
            let says = docker::restart_check::ask(&api, &joined).await;
            driver.forget_stopped(&joined, &says);
        }
    }
    let st = driver.state();
    info!(
        networks = st.networks.len(),
        endpoints = st.endpoint_count(),
        state = %args.state_dir.display(),
        "state loaded"
    );
    let metrics = Arc::new(Metrics::default());
    metrics.bgp(|b| {
        b.route_protocol = bgp_cfg.as_ref().map(|c| c.protocol);
        b.host_warnings = host_warnings;
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // A supervised task that cannot go on, or a configuration the detected
    // gobgpd cannot honour, sends why here: the driver exits.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    let driver = Arc::new(Mutex::new(driver));
    watch_addresses(&driver, &metrics);
    // The health gate stands between the driver's View and the BGP side.
    let (view_rx, health_task) = match args.health_gate.clone() {
        Some(cfg) => {
            let d = driver.clone();
            let read: health::ReadView = Arc::new(move |rx| {
                let d = d.lock().unwrap_or_else(|p| p.into_inner());
                let view = rx.borrow_and_update().clone();
                (view, view::build::endpoint_routes(d.state(), d.pending()))
            });
            let d = driver.clone();
            let persist: health::Persist = Arc::new(move |changes| {
                let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
                d.remember_health(changes);
            });
            let remembered = {
                let d = driver.lock().unwrap_or_else(|p| p.into_inner());
                d.remembered_health()
            };
            let memory = health::Memory {
                remembered,
                persist,
            };
            let (rx, task) =
                health::spawn(cfg, read, view_rx, memory, metrics.clone(), stop_rx.clone()).await;
            let watched = tokio::spawn(supervise::fatal_on_end(
                "health gate",
                task,
                stop_rx.clone(),
                fatal_tx.clone(),
            ));
            (rx, Some(watched))
        }
        None => (view_rx, None),
    };

    // The cluster IPAM's held blocks replace the host routes they cover.
    let (view_rx, blocks_task) = match &ipam {
        Some(i) if args.ipam.ipam_announce == config::IpamAnnounce::Blocks => {
            let (rx, task) = view::blocks::spawn(view_rx, i.watch_blocks(), stop_rx.clone());
            (rx, Some(task))
        }
        _ => (view_rx, None),
    };

    let mut bgp_task = None;
    let mut installer_thread = None;
    if let Some(cfg) = bgp_cfg {
        // The start-up dump of the routing table runs off the async workers.
        let scope = installer_scope(&view_rx.borrow(), &cfg);
        let (protocol, m) = (cfg.protocol, metrics.clone());
        let (installer, thread, _adopted) = tokio::task::spawn_blocking(move || {
            let kernel = Kernel::open().context("open netlink for routes")?;
            rib::installer::Installer::start(kernel, protocol, scope, m)
                .context("read installed routes")
        })
        .await
        .context("installer start task")??;
        installer_thread = Some((thread, installer.clone()));
        bgp_task = Some(tokio::spawn(supervise::restarting(
            "bgp",
            bgp_side(
                cfg,
                metrics.clone(),
                view_rx,
                installer,
                Some(args.state_dir.clone()),
                stop_rx.clone(),
                fatal_tx.clone(),
            ),
            supervise::Budget::default(),
            stop_rx.clone(),
            metrics.clone(),
            fatal_tx.clone(),
        )));
    } else {
        info!("BGP disabled (--gobgp none): containers are attached but not announced");
    }
    drop(fatal_tx);

    let ipam_task = ipam.as_ref().map(|i| {
        tokio::spawn(ipam::upkeep::run(
            i.clone(),
            ipam::upkeep::Intervals::for_grace(std::time::Duration::from_secs(
                args.ipam.ipam_grace,
            )),
            stop_rx.clone(),
        ))
    });
    let gateway_in_use = {
        let d = driver.clone();
        Arc::new(move |a: std::net::IpAddr| {
            let d = d.lock().unwrap_or_else(|p| p.into_inner());
            let in_use = d
                .state()
                .networks
                .values()
                .any(|n| n.spec.gateways().any(|g| g.addr() == a));
            in_use
        })
    };
    let listener = server::bind(&args.socket).await?;
    info!(socket = %args.socket.display(), "serving Docker");
    let repair_task = tokio::spawn(lifecycle::repair_loop(driver.clone(), stop_rx.clone()));
    let app = App {
        driver,
        metrics,
        ipam: IpamService::new(ipam, gateway_in_use),
    };
    let metrics_task = metrics_listener.map(|l| {
        info!(address = %args.metrics_listen.map(|a| a.to_string()).unwrap_or_default(), "serving /metrics over TCP");
        let mut stop = stop_rx.clone();
        tokio::spawn(server::serve_metrics(l, app.clone(), async move {
            let _ = stop.changed().await;
        }))
    });
    let fatal = Arc::new(Mutex::new(None));
    let until = {
        let fatal = fatal.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                Some(why) = fatal_rx.recv() => {
                    error!("{why}; stopping the driver (its service manager starts it again; containers and routes stay)");
                    *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                }
            }
        }
    };
    // Docker is answered on a thread and runtime of its own (issue 19
    // point 7): decoding a large RIB from gobgpd on the main workers no
    // longer delays a Join.
    let served = server::serve(listener, app, until).await;
    let _ = std::fs::remove_file(&args.socket);
    let _ = stop_tx.send(true);
    let _ = repair_task.await;
    if let Some(t) = blocks_task {
        let _ = t.await;
    }
    if let Some(t) = ipam_task {
        let _ = t.await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    if let Some(t) = bgp_task {
        let _ = t.await;
    }
    if let Some(t) = health_task {
        let _ = t.await;
    }
    if let Some((thread, handle)) = installer_thread {
        handle.flush_blocking();
        drop(handle);
        let _ = thread;
    }
    if let Some(why) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(anyhow::anyhow!("{why}"));
    }
    info!("stopped");
    drop(lock);
    served.context("serve")
}

/// The cluster-wide IPAM, when `--etcd-endpoints` is given: its store (no
/// connection yet: the driver starts while etcd is away) and its state
/// (`ipam.json` beside `state.json`). The host id is `--ipam-host-id`, else
/// `--router-id`, else the first IPv4 address of `--parent`.
fn open_ipam(
    args: &RunArgs,
    kernel: &mut Kernel,
) -> anyhow::Result<Option<Arc<ipam::Ipam<ipam::EtcdStore>>>> {
    let a: &IpamArgs = &args.ipam;
    if !a.enabled() {
        return Ok(None);
    }
    let password = std::env::var(config::ETCD_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let store_cfg = a.store_config(password).map_err(anyhow::Error::msg)?;
    let parent = args.parent.as_ref().or(args.uplinks.first());
    let host = match (&a.ipam_host_id, args.router_id, parent) {
        (Some(h), _, _) => h.clone(),
        (None, Some(r), _) => r.to_string(),
        (None, None, Some(parent)) => bgp::host::HostInfo::read(kernel)
            .context("read the parent's address for the IPAM host id")?
            .parent_v4(parent)
            .map(|a| a.to_string())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the IPAM needs a host id: --parent {parent} has no IPv4 address; give --ipam-host-id or --router-id"
                )
            })?,
        (None, None, None) => anyhow::bail!(
            "the IPAM needs a host id unique to this host: give --ipam-host-id (or --router-id, or --parent, or --uplink)"
        ),
    };
    let store = ipam::EtcdStore::new(store_cfg).context("etcd settings")?;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("create {}", args.state_dir.display()))?;
    let cfg = ipam::IpamConfig {
        prefix: a.ipam_prefix.clone(),
        grace: std::time::Duration::from_secs(a.ipam_grace),
        deadline: std::time::Duration::from_secs(a.etcd_timeout),
        block_v4: a.ipam_block_v4,
        block_v6: a.ipam_block_v6,
        ..ipam::IpamConfig::new(host.clone(), args.state_dir.join("ipam.json"))
    };
    let i = ipam::Ipam::open(store, cfg).context("open the IPAM's state")?;
    info!(host = %host, endpoints = ?a.etcd_endpoints, "cluster-wide IPAM on");
    Ok(Some(Arc::new(i)))
}

/// Where the learner may ask for routes: the View's pools and `--accept-pool`.
fn installer_scope(view: &view::View, cfg: &BgpConfig) -> Vec<ipnet::IpNet> {
    let mut scope: Vec<ipnet::IpNet> = view.pools.iter().copied().collect();
    scope.extend(cfg.accept_pools.iter().copied());
    scope
}

/// Makes the BGP side, once per (re)start: a restarted one adopts the
/// routes the installer holds, so nothing flaps while it reconnects, and
/// reopens the announcer's ledger from `state_dir` (what the last side
/// added to gobgpd, so its paths are recognised as ours). A
/// configuration the detected gobgpd cannot honour (BFD against 3.x) is not
/// restarted: the reason goes to `fatal` and the driver stops, loudly.
fn bgp_side(
    cfg: BgpConfig,
    metrics: Arc<Metrics>,
    view: watch::Receiver<Arc<view::View>>,
    installer: rib::worker::InstallerHandle,
    state_dir: Option<std::path::PathBuf>,
    stop: watch::Receiver<bool>,
    fatal: mpsc::Sender<String>,
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
{
    move || {
        let (cfg, metrics, view, installer, state_dir, mut stop, fatal) = (
            cfg.clone(),
            metrics.clone(),
            view.clone(),
            installer.clone(),
            state_dir.clone(),
            stop.clone(),
            fatal.clone(),
        );
        Box::pin(async move {
            let (adopted, kernel, ledger) = tokio::task::spawn_blocking({
                let installer = installer.clone();
                move || {
                    (
                        installer.wanted_blocking(),
                        Kernel::open(),
                        bgp::ledger::Ledger::open(state_dir),
                    )
                }
            })
            .await
            .map_err(|e| format!("start task: {e}"))?;
            let kernel = kernel.map_err(|e| format!("open netlink for host info: {e}"))?;
            let bgp =
                bgp::session::Bgp::new(cfg, metrics, view, installer, kernel, adopted, ledger)
                    .map_err(|e| format!("start the learner's thread: {e}"))?;
            match bgp.run(stop.clone()).await {
                Ok(()) => Ok(()),
                Err(bgp::session::RunError::Failed(e)) => Err(e),
                Err(bgp::session::RunError::Refused(e)) => {
                    error!(error = %e, "refusing to run");
                    let _ = fatal.send(e).await;
                    // Not restarted: the driver is stopping.
                    let _ = stop.wait_for(|s| *s).await;
                    Ok(())
                }
            }
        })
    }
}

/// A Join's endpoint is announced once its address is live in the
/// container: each Join registers a watch with the one watcher
/// ([`kernel::address_watch`]), which, when the watch ends, tells the driver
/// (a weak handle: the driver holds this closure) and counts a fallback.
fn watch_addresses(driver: &Arc<Mutex<docker::Driver>>, metrics: &Arc<Metrics>) {
    use kernel::address_watch::{self, Outcome, Told, Watch, Watcher};
    let weak = Arc::downgrade(driver);
    let told = {
        let metrics = metrics.clone();
        move |t: Told| match t {
            Told::Sent { took } => {
                metrics.neighbour_frames("sent", Some(took));
                tracing::debug!(
                    took_ms = took.as_secs_f64() * 1e3,
                    mono_us = crate::clock::mono_us(),
                    "gratuitous ARP / unsolicited NA sent"
                );
            }
            Told::Failed {
                interface,
                error,
                took,
            } => {
                metrics.neighbour_frames("failed", Some(took));
                tracing::warn!(interface = %interface, error = %error, took_ms = took.as_secs_f64() * 1e3, "could not send the gratuitous ARP / unsolicited NA from the container (the endpoint is announced and this host's own neighbour entry is set: only other neighbours on the segment learn it later)");
            }
            Told::Skipped => {
                metrics.neighbour_frames("skipped", None);
                tracing::debug!("the sandbox is not a namespace here (another mount namespace): no gratuitous ARP / unsolicited NA");
            }
        }
    };
    let metrics = metrics.clone();
    // Started here, in the host's namespace, before any Join.
    let watcher = match Watcher::start(told) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to containers' address changes: every endpoint is announced at Join");
            None
        }
    };
    let start = Box::new(move |req: docker::LiveRequest| {
        let (weak, metrics) = (weak.clone(), metrics.clone());
        let Some(watcher) = &watcher else {
            metrics.announce_fallback("subscription");
            if let Some(d) = weak.upgrade() {
                // The caller holds the driver's lock: tell it from a thread.
                std::thread::spawn(move || {
                    let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
                    d.address_live(&req.network, &req.endpoint, req.ticket, None);
                });
            }
            return;
        };
        let watch = Watch {
            sandbox: req.sandbox.clone().into(),
            addrs: req.addrs.clone(),
            routes: req.routes.clone(),
            bound: address_watch::BOUND,
            tell_neighbours: req.tell_neighbours,
        };
        watcher.register(watch, move |outcome| {
            let endpoint = model::names::short_id(&req.endpoint);
            let mac = match &outcome {
                Outcome::Live { mac, .. } => *mac,
                Outcome::Fallback { .. } => None,
            };
            match &outcome {
                Outcome::Live { after, .. } => {
                    metrics.address_live(*after);
                    tracing::debug!(endpoint = %endpoint, after_ms = after.as_secs_f64() * 1e3, "address live in the container: announced");
                }
                Outcome::Fallback {
                    reason,
                    detail,
                    after,
                } => {
                    metrics.announce_fallback(reason);
                    tracing::warn!(endpoint = %endpoint, sandbox = %req.sandbox, reason, detail = %detail, after_ms = after.as_secs_f64() * 1e3, "did not see the endpoint's address live in its container: announced anyway");
                }
            }
            if let Some(d) = weak.upgrade() {
                tracing::debug!(mono_us = crate::clock::mono_us(), "live: locking the driver");
                let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
                tracing::debug!(mono_us = crate::clock::mono_us(), "live: driver locked");
                d.address_live(&req.network, &req.endpoint, req.ticket, mac);
                tracing::debug!(mono_us = crate::clock::mono_us(), "live: view published");
            }
        });
    });
    driver
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .watch_addresses(start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp::GobgpAddr;
    use crate::bgp::learner::Limits;
    use crate::bgp::speaker::SpeakerConfig;
    use crate::rib::fake::{FakeTable, SharedTable};
    use std::time::Duration;

    /// The real BGP side, made to panic once by a test hook: the supervisor
    /// logs it, counts the restart, and the new BGP side runs (it tries to
    /// reach gobgpd again: its attempts show in the status).
    #[tokio::test]
    async fn a_panicking_bgp_task_is_restarted() {
        let metrics = Arc::new(Metrics::default());
        let table = SharedTable::new(FakeTable::default());
        let (installer, _thread, _) = rib::installer::Installer::start_with(
            table,
            None,
            73,
            rib::installer::everywhere(),
            metrics.clone(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = BgpConfig {
            gobgp: GobgpAddr::Unix(dir.path().join("no-gobgpd.sock")),
            call_timeout: Duration::from_secs(1),
            speaker: SpeakerConfig::default(),
            next_hops: Vec::new(),
            communities: Vec::new(),
            protocol: 73,
            accept_pools: Vec::new(),
            limits: Limits::installing(100),
            stale_time: Duration::from_secs(10),
            default_parent: None,
            uplinks: Vec::new(),
            stop_gobgpd_on_exit: false,
        };
        let (_view_tx, view_rx) = watch::channel(Arc::new(view::View::default()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (fatal_tx, mut fatal_rx) = mpsc::channel(1);
        bgp::session::PANIC_AT_START.store(true, std::sync::atomic::Ordering::SeqCst);
        let sup = tokio::spawn(supervise::restarting(
            "bgp",
            bgp_side(
                cfg,
                metrics.clone(),
                view_rx,
                installer,
                Some(dir.path().to_path_buf()),
                stop_rx.clone(),
                fatal_tx.clone(),
            ),
            supervise::Budget::default(),
            stop_rx,
            metrics.clone(),
            fatal_tx,
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let st = metrics.bgp_snapshot();
            let retrying = st
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("connect"));
            if st.task_restarts.get("bgp") == Some(&1) && retrying {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not restarted: {:?}, last error {:?}",
                st.task_restarts,
                st.last_error
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            fatal_rx.try_recv().is_err(),
            "one panic is no reason to exit"
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), sup)
            .await
            .expect("supervisor stops at shutdown")
            .unwrap();
    }
}
