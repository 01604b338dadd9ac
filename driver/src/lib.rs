//! ipvlan-bgp: a Docker network driver that puts containers straight on the
//! host's NIC (ipvlan L3 by default; ipvlan L2/L3S, or macvlan) and makes them
//! reachable across hosts with BGP through a local gobgpd.
//!
//! ```text
//! dockerd ─HTTP/unix─► api ─► docker (networks, endpoints, store) ─► provision ─► kernel
//!                               └─ view ─► health (gate) ─► bgp: announcer ─gRPC─► gobgpd ─► peers
//!                      gobgpd ─WatchEvent─► bgp: learner ─► policy ─► rib: installer ─► kernel (routes)
//! dockerd ─IpamDriver─► api::ipam ─► ipam (blocks claimed in etcd, addresses from held blocks)
//! ```
//! Every folder reads the domain types of [`model`]; none imports one above
//! it. The binary is thin: [`run`] wires the pieces and serves until shutdown.

pub mod api;
pub mod bgp;
pub mod cleanup;
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
pub mod unix_http;
pub mod view;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

use crate::api::ipam::server::IpamService;
use crate::api::server::{self, App};
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
    let mut kernel = Kernel::open().context("open netlink")?;
    let ipam = open_ipam(&args, &mut kernel)?;
    let store = Store::new(&args.state_dir);
    let protocol = bgp_cfg.as_ref().map(|c| c.protocol);
    let (driver, view_rx) = tokio::task::spawn_blocking({
        let parent = args.parent.clone();
        move || {
            let (mut driver, rx) = Driver::start(store, kernel, parent)?;
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
    let st = driver.state();
    info!(
        networks = st.networks.len(),
        endpoints = st.endpoint_count(),
        state = %args.state_dir.display(),
        "state loaded"
    );
    let metrics = Arc::new(Metrics::default());
    metrics.bgp(|b| b.route_protocol = bgp_cfg.as_ref().map(|c| c.protocol));
    let (stop_tx, stop_rx) = watch::channel(false);
    // The BGP side's reason to stop the driver (a configuration the
    // detected gobgpd cannot honour), if it has one.
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<String>>(None);
    let driver = Arc::new(Mutex::new(driver));
    // The health gate stands between the driver's View and the BGP side.
    let (view_rx, health_task) = match args.health_gate.clone() {
        Some(cfg) => {
            let d = driver.clone();
            let read: health::ReadView = Arc::new(move |rx| {
                let d = d.lock().unwrap_or_else(|p| p.into_inner());
                let view = rx.borrow_and_update().clone();
                (view, view::build::endpoint_routes(d.state()))
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
            (rx, Some(task))
        }
        None => (view_rx, None),
    };

    let mut bgp_task = None;
    let mut installer_thread = None;
    if let Some(cfg) = bgp_cfg {
        let (installer, thread, adopted) = rib::installer::Installer::start(
            Kernel::open().context("open netlink for routes")?,
            cfg.protocol,
            metrics.clone(),
        )
        .context("read installed routes")?;
        installer_thread = Some((thread, installer.clone()));
        let bgp = bgp::session::Bgp::new(
            cfg,
            metrics.clone(),
            view_rx,
            installer,
            Kernel::open().context("open netlink for host info")?,
            adopted,
            bgp::ledger::Ledger::open(Some(args.state_dir.clone())),
        );
        let fatal_tx = fatal_tx.clone();
        let stop = stop_rx.clone();
        bgp_task = Some(tokio::spawn(async move {
            if let Err(e) = bgp.run(stop).await {
                // A setting gobgpd cannot honour: stop the driver, loudly.
                tracing::error!(error = %e, "refusing to run");
                let _ = fatal_tx.send(Some(e));
            }
        }));
    } else {
        info!("BGP disabled (--gobgp none): containers are attached but not announced");
    }

    let ipam_task = ipam.as_ref().map(|i| {
        tokio::spawn(ipam::upkeep::run(
            i.clone(),
            ipam::upkeep::Intervals::default(),
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
    let mut fatal_wait = fatal_rx.clone();
    let stop_on = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = fatal_wait.wait_for(|f| f.is_some()) => {}
        }
    };
    let served = server::serve(listener, app, stop_on).await;
    let _ = std::fs::remove_file(&args.socket);
    let _ = stop_tx.send(true);
    let _ = repair_task.await;
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
    info!("stopped");
    if let Some(e) = fatal_rx.borrow_and_update().clone() {
        anyhow::bail!("{e}");
    }
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
    let host = match (&a.ipam_host_id, args.router_id, &args.parent) {
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
            "the IPAM needs a host id unique to this host: give --ipam-host-id (or --router-id, or --parent)"
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
