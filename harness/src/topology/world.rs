//! The world a scenario runs in: an underlay switch, hosts, routers, and
//! their daemons; built by [`World::build`], the one topology builder.
//!
//! ```text
//!   ibh-<pid>-<n>-sw: bridge b-underlay ── p-h1 ═══ eth1 (ibh-<pid>-<n>-h1: gobgpd, ipvlan-bgp)
//!                                    └─ p-h2 ═══ eth1 (ibh-<pid>-<n>-h2: gobgpd, ipvlan-bgp)
//! ```
//! In: the scenario's segments, hosts, routers and BGP section. Out:
//! namespaces wired and addressed, sysctls set, FRR/BIRD, gobgpd and the
//! driver running with readiness awaited by polling, every creation
//! registered on the cleanup stack. Logs go to the run directory, one file
//! per host and daemon. Owns the [`World`] and its lookups; the daemons'
//! control is in `host_daemons`, what they report in `host_state`, the dump
//! for a failed scenario in `diagnostics`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use super::etcd::{self, EtcdRt};
use super::hosts::{self, HostRt};
use super::options::Options;
use super::routers::{self, RouterRt};
use super::uplinks;
use super::wire;
use crate::cleanup::Cleanup;
use crate::netns::{Netns, PREFIX};
use crate::scenario::{ContainerDef, GobgpLine, Scenario};

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct World {
    pub id: String,
    pub dir: PathBuf,
    pub switch: Netns,
    pub hosts: Vec<HostRt>,
    pub cleanup: Arc<Cleanup>,
    pub rt: tokio::runtime::Runtime,
    pub opts: Options,
    pub(super) scenario: Scenario,
    pub routers: Vec<RouterRt>,
    /// The GoBGP line the hosts run (`None`: no BGP in this scenario).
    pub line: Option<GobgpLine>,
    /// The etcd cluster of the cluster-wide IPAM (`[etcd]`).
    pub etcd: Option<EtcdRt>,
}

impl World {
    pub fn host(&self, name: &str) -> Result<&HostRt> {
        self.hosts
            .iter()
            .find(|h| h.def.name == name)
            .ok_or_else(|| anyhow!("unknown host {name}"))
    }

    pub fn host_index(&self, name: &str) -> Result<usize> {
        self.hosts
            .iter()
            .position(|h| h.def.name == name)
            .ok_or_else(|| anyhow!("unknown host {name}"))
    }

    /// The one topology builder: wires the underlay and every node, then
    /// starts the nodes' daemons, kind by kind.
    ///
    /// 1. the switch: one bridge per segment ([`wire::switch`]);
    /// 2. the nodes, each wired to its segments through [`wire::wire`]:
    ///    hosts (several at once, [`hosts::wire_all`]), routers
    ///    ([`routers::wire_router`]), then the hosts' point-to-point uplinks
    ///    to their routers ([`uplinks::wire_all`]); their BGP neighbours come
    ///    from the one planner, [`super::sessions`];
    /// 3. the daemons: routers, then gobgpd on every host, then the drivers
    ///    (every daemon of a kind started, then all awaited together).
    ///
    /// A new kind of node (a top-of-rack router with BFD, like the etcd
    /// cluster of `etcd.rs`) adds its file beside `hosts` and `routers` with
    /// its wiring and its daemons, and one line in steps 2 and 3; a node on several segments
    /// (a dual-homed host) calls [`wire::wire`] once per segment.
    pub fn build(s: &Scenario, opts: &Options, progress: &dyn Fn(&str)) -> Result<World> {
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = opts.run_root.join(format!("{}-{}", id, s.name));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let cleanup = Cleanup::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;

        // 1. The switch (with `isolate_l2`, dropping ARP and NDP about
        // container addresses between its ports).
        let switch = wire::switch(&cleanup, &id, &s.segments)?;
        if s.isolate_l2 {
            wire::isolate_l2(&switch, &s.networks)?;
        }
        // 2. The nodes.
        let hosts = hosts::wire_all(s, &cleanup, &id, &dir, &switch)?;
        progress(&format!("{} hosts wired", hosts.len()));
        let mut routers = s
            .routers
            .iter()
            .enumerate()
            .map(|(ri, def)| routers::wire_router(s, &cleanup, &id, &dir, &switch, ri, def))
            .collect::<Result<Vec<_>>>()?;
        uplinks::wire_all(&hosts, &mut routers)?;
        let etcd = etcd::wire_all(s, &cleanup, &id, &dir, &switch)?;
        let mut w = World {
            id,
            dir,
            switch,
            hosts,
            cleanup,
            rt,
            opts: opts.clone(),
            scenario: s.clone(),
            routers,
            line: opts.line_for(s),
            etcd,
        };
        // 3. The daemons.
        for r in &mut w.routers {
            r.start()?;
        }
        if !w.routers.is_empty() {
            progress("routers running");
        }
        if let Some(e) = &w.etcd {
            e.start(&w.cleanup, opts.scale(std::time::Duration::from_secs(30)))?;
            progress(&format!("etcd running ({} members)", e.members.len()));
        }
        w.start_host_daemons(progress)?;
        Ok(w)
    }

    /// A container's definition (after validation: templates expanded).
    pub fn container_def(&self, name: &str) -> Option<&ContainerDef> {
        self.scenario.container(name)
    }

    /// The GoBGP line of the hosts' gobgpd (3.x for a scenario without BGP,
    /// where nothing asks).
    pub fn gobgp_line(&self) -> GobgpLine {
        self.line.unwrap_or(GobgpLine::V3)
    }

    /// Whether the driver runs as a managed Docker plugin (`[driver] plugin`).
    pub fn driver_is_plugin(&self) -> bool {
        self.scenario.driver.plugin
    }

    /// The host whose namespace runs the run's Docker registry (`[driver] registry`).
    pub fn registry_host(&self) -> Option<&str> {
        self.scenario.driver.registry.as_deref()
    }

    /// Whether the driver runs as the README deploys it (`[driver] defaults`).
    pub fn driver_as_deployed(&self) -> bool {
        self.scenario.driver.defaults
    }
}
