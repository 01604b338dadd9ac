//! The world a scenario runs in: an underlay switch, hosts, and their daemons.
//!
//! ```text
//!   ibh-<pid>-<n>-sw: bridge br0 ── p-h1 ═══ eth1 (ibh-<pid>-<n>-h1: gobgpd, ipvlan-bgp)
//!                              └─ p-h2 ═══ eth1 (ibh-<pid>-<n>-h2: gobgpd, ipvlan-bgp)
//! ```
//! In: the scenario's hosts and BGP section. Out: namespaces wired and
//! addressed, sysctls set, gobgpd and the driver running in every host with
//! readiness awaited by polling, every creation registered on the cleanup
//! stack. Logs go to the run directory, one file per host and daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use nix::sys::signal::Signal;

use crate::cleanup::Cleanup;
use crate::configs::{self, Neighbor, Timers};
use crate::daemon::{await_ready, Daemon};
use crate::netns::{Netns, PREFIX};
use crate::routers::{iface_name, RouterRt};
use crate::scenario::{BgpConfigBy, BgpMode, DaemonKind, Family, HostDef, Role, Scenario};
use crate::util::{require, run_cmd, tail};

/// The underlay interface in every host.
pub const UNDERLAY_IF: &str = "eth1";

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How a run finds its binaries and where it writes.
#[derive(Debug, Clone)]
pub struct Options {
    pub driver_bin: PathBuf,
    pub run_root: PathBuf,
    /// Multiplies every deadline (slow machines, emulated VMs): the
    /// process's `HARNESS_TIME_SCALE` ([`crate::util::time_scale`]), which
    /// loops without an `Options` at hand use through [`crate::util::scaled`].
    pub time_scale: f64,
    pub keep: bool,
}

impl Options {
    pub fn from_env() -> Result<Options> {
        Ok(Options {
            driver_bin: find_driver_bin()?,
            run_root: std::env::var_os("HARNESS_RUN_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("ipvlan-bgp-harness")),
            time_scale: crate::util::time_scale(),
            keep: false,
        })
    }

    pub fn scale(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }
}

/// `IPVLAN_BGP_BIN`, or `ipvlan-bgp` next to this executable (or one folder
/// up, for test binaries in `target/*/deps`).
pub fn find_driver_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("IPVLAN_BGP_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let cand = d.join("ipvlan-bgp");
        if cand.is_file() {
            return Ok(cand);
        }
        dir = d.parent().map(Path::to_path_buf);
        if dir.as_ref().is_some_and(|p| p.ends_with("target")) {
            break;
        }
    }
    bail!("cannot find the ipvlan-bgp binary next to {}; build it (cargo build --workspace) or set IPVLAN_BGP_BIN", exe.display())
}

pub struct HostRt {
    pub def: HostDef,
    pub index: usize,
    pub ns: Netns,
    pub addr: Ipv4Net,
    /// The IPv6 underlay address (dual-stack segments).
    pub addr6: Option<Ipv6Net>,
    pub dir: PathBuf,
    pub gobgpd: Daemon,
    pub driver: Daemon,
}

impl HostRt {
    /// Its underlay address of one family.
    pub fn addr_of(&self, family: Family) -> Result<std::net::IpAddr> {
        match family {
            Family::Ipv4 => Ok(self.addr.addr().into()),
            Family::Ipv6 => self.addr6.map(|a| a.addr().into()).ok_or_else(|| {
                anyhow!(
                    "host {} has no IPv6 underlay address (give underlay6)",
                    self.def.name
                )
            }),
        }
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }
    /// The driver's socket: `plugins/ipvlan-bgp.sock` for a driver the
    /// harness runs; for the managed plugin, `plugin.sock`, the link
    /// [`crate::plugin::await_ready`] makes to the socket dockerd gives it
    /// (`plugins/<64 hex>/ipvlan-bgp.sock`, too long a path for a socket
    /// address).
    pub fn socket(&self) -> PathBuf {
        let link = self.dir.join("plugin.sock");
        if link.exists() {
            link
        } else {
            self.plugin_dir().join("ipvlan-bgp.sock")
        }
    }
    /// gobgpd's API: a unix socket in the host's run folder and nothing
    /// else (no TCP port: any local user could announce through one). The
    /// driver, the harness's gRPC client and the `gobgp` CLI
    /// (`--target unix://...`, which 3.10 supports) all use it.
    pub fn gobgp_api(&self) -> PathBuf {
        self.dir.join("gobgpd.sock")
    }

    /// The `gobgp` CLI's arguments that reach this host's gobgpd.
    pub fn gobgp_target(&self) -> [String; 2] {
        [
            "--target".into(),
            format!("unix://{}", self.gobgp_api().display()),
        ]
    }
    pub fn runs_driver(&self) -> bool {
        self.def.role == Role::Docker
    }
}

pub struct World {
    pub id: String,
    pub dir: PathBuf,
    pub switch: Netns,
    pub hosts: Vec<HostRt>,
    pub cleanup: Arc<Cleanup>,
    pub rt: tokio::runtime::Runtime,
    pub opts: Options,
    scenario: Scenario,
    pub routers: Vec<RouterRt>,
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

    /// Builds the underlay and the hosts, and starts their daemons.
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

        let switch = make_ns(&cleanup, &format!("{id}-sw"))?;
        let mut lines = Vec::new();
        for seg in &s.segments {
            lines.push(format!("link add {} type bridge", bridge_name(&seg.name)));
            lines.push(format!("link set {} up", bridge_name(&seg.name)));
        }
        switch.ip_batch(&lines)?;
        // Hosts are independent until their daemons start: a few threads
        // build them at once (namespace, wire, addresses, sysctls). Daemons
        // are started below from this thread (they die with the thread that
        // started them).
        let next = AtomicUsize::new(0);
        let built: std::sync::Mutex<Vec<Option<Result<HostRt>>>> =
            std::sync::Mutex::new((0..s.hosts.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..s.hosts.len().clamp(1, BUILD_THREADS) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(def) = s.hosts.get(index) else { break };
                    let r = build_host(s, &cleanup, &id, &dir, &switch, index, def);
                    built.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(r);
                });
            }
        });
        let hosts = built
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("internal: host not built"))))
            .collect::<Result<Vec<HostRt>>>()?;
        progress(&format!("{} hosts wired", hosts.len()));
        let mut routers = Vec::new();
        for (ri, def) in s.routers.iter().enumerate() {
            let ns = make_ns(&cleanup, &format!("{id}-r-{}", def.name))?;
            let mut ifaces = BTreeMap::new();
            let mut lines = Vec::new();
            for (k, v) in [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv6.conf.all.forwarding", "1"),
                // The links made next get their link-local address without
                // DAD: FRR's bgpd sends it as the IPv6 next hop beside the
                // global one, and waits for it before a session starts.
                ("net.ipv6.conf.default.accept_dad", "0"),
            ] {
                ns.sysctl(k, v)?;
            }
            for (seg, addr) in &def.links {
                let iface = iface_name(seg);
                let port = format!("r{ri}-{seg}");
                wire(&ns, &iface, &switch, &port, seg)
                    .with_context(|| format!("wire router {} to segment {seg}", def.name))?;
                lines.push(format!("addr add {addr} dev {iface}"));
                if let Some(a6) = def.links6.get(seg) {
                    lines.push(format!("addr add {a6} dev {iface} nodad"));
                }
                lines.push(format!("link set {iface} up"));
                ifaces.insert(seg.clone(), iface);
            }
            ns.ip_batch(&lines)?;
            let rdir = dir.join(format!("r-{}", def.name));
            std::fs::create_dir_all(&rdir)?;
            let neighbors = def
                .neighbors
                .iter()
                .map(|n| {
                    let addr = s
                        .shared_address_of(&def.name, n, s.bgp.transport)
                        .ok_or_else(|| {
                            anyhow!(
                                "{} shares no segment with {n} (in {:?}, the BGP transport)",
                                def.name,
                                s.bgp.transport
                            )
                        })?;
                    Ok(Neighbor {
                        name: n.clone(),
                        addr: addr.addr(),
                        asn: s.asn_of(n).ok_or_else(|| anyhow!("no AS for {n}"))?,
                        rr_client: def.rr_clients.contains(n),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            routers.push(crate::routers::RouterRt {
                def: def.clone(),
                ns,
                dir: rdir,
                ifaces,
                neighbors,
                timers: Timers::from(&s.bgp),
                daemons: Vec::new(),
                cleanup: cleanup.clone(),
            });
        }
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
        };
        for r in &mut w.routers {
            r.start()?;
        }
        if !w.routers.is_empty() {
            progress("routers running");
        }
        // Every daemon of a kind is started, then all are awaited together.
        if s.bgp.mode != BgpMode::None {
            require("gobgpd")?;
            // An embedded gobgpd starts with its plugin (the engine's setup).
            let all: Vec<usize> = (0..w.hosts.len())
                .filter(|&i| !w.hosts[i].def.embedded_gobgpd)
                .collect();
            for &i in &all {
                w.write_gobgpd_config(i)?;
            }
            w.start_daemons(&all, DaemonKind::Gobgpd)?;
            progress("gobgpd running on every host");
        }
        // A managed plugin is started by its dockerd (the engine's setup).
        if !s.driver.plugin {
            let docker: Vec<usize> = (0..w.hosts.len())
                .filter(|&i| w.hosts[i].runs_driver())
                .collect();
            w.start_daemons(&docker, DaemonKind::Driver)?;
            progress("drivers ready");
        }
        Ok(w)
    }

    fn daemon(&self, i: usize, kind: DaemonKind) -> Result<&Daemon> {
        match kind {
            DaemonKind::Gobgpd => Ok(&self.hosts[i].gobgpd),
            DaemonKind::Driver => Ok(&self.hosts[i].driver),
            DaemonKind::Dockerd => bail!("dockerd belongs to the dockerd engine, not to the world"),
        }
    }

    /// gobgpd's neighbours of host `i`.
    pub fn neighbours(&self, i: usize) -> Vec<Neighbor> {
        let s = &self.scenario;
        let me = &self.hosts[i];
        let transport = s.bgp.transport;
        let host = |h: &HostRt, rr_client: bool| Neighbor {
            name: h.def.name.clone(),
            // Validation made sure every host has an address of the transport.
            addr: h.addr_of(transport).unwrap_or(h.addr.addr().into()),
            asn: h.def.asn,
            rr_client,
        };
        if let Some(peers) = &me.def.peers {
            return peers
                .iter()
                .filter_map(|p| {
                    Some(Neighbor {
                        name: p.clone(),
                        addr: s.shared_address_of(&me.def.name, p, transport)?.addr(),
                        asn: s.asn_of(p)?,
                        rr_client: false,
                    })
                })
                .collect();
        }
        match s.bgp.mode {
            BgpMode::None => vec![],
            BgpMode::Mesh => self
                .hosts
                .iter()
                .filter(|h| h.index != i)
                .map(|h| host(h, false))
                .collect(),
            // Every client peers with each reflector; reflectors do not peer
            // with each other. Each reflects with its own cluster ID (its
            // router ID, see `configs::gobgpd`), so a client holds one path
            // per reflector for every prefix, each learned independently:
            // when one reflector dies the other's paths are already there.
            BgpMode::RouteReflector => {
                let rrs = &s.bgp.reflectors;
                let is_rr = |h: &HostRt| rrs.contains(&h.def.name);
                if is_rr(me) {
                    self.hosts
                        .iter()
                        .filter(|h| h.index != i && !is_rr(h))
                        .map(|h| host(h, h.def.asn == me.def.asn))
                        .collect()
                } else {
                    self.hosts
                        .iter()
                        .filter(|h| is_rr(h))
                        .map(|h| host(h, false))
                        .collect()
                }
            }
        }
    }

    /// Whether host `i`'s gobgpd is configured by the driver (no TOML file).
    fn driver_configures(&self, i: usize) -> bool {
        (self.scenario.bgp.config == BgpConfigBy::Driver || self.hosts[i].def.embedded_gobgpd)
            && self.hosts[i].runs_driver()
    }

    fn write_gobgpd_config(&self, i: usize) -> Result<()> {
        if self.driver_configures(i) {
            return Ok(());
        }
        let h = &self.hosts[i];
        let text = configs::gobgpd(
            &h.def.name,
            h.def.asn,
            h.addr.addr(),
            h.addr6.map(|a| a.addr()),
            &self.neighbours(i),
            Timers::from(&self.scenario.bgp),
        );
        let path = h.dir.join("gobgpd.toml");
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }

    /// Whether the driver runs as a managed Docker plugin (`[driver] plugin`).
    /// A container's definition (after validation: templates expanded).
    pub fn container_def(&self, name: &str) -> Option<&crate::scenario::ContainerDef> {
        self.scenario.container(name)
    }

    pub fn driver_is_plugin(&self) -> bool {
        self.scenario.driver.plugin
    }

    /// The flags of host `i`'s driver.
    pub fn driver_args(&self, i: usize) -> Vec<String> {
        let h = &self.hosts[i];
        let s = &self.scenario;
        let mut a: Vec<String> = vec![
            "--socket".into(),
            h.socket().display().to_string(),
            "--state-dir".into(),
            h.dir.join("state").display().to_string(),
            "--parent".into(),
            UNDERLAY_IF.into(),
            "--log-level".into(),
            "debug,h2=info,tonic=info,hyper=info,tower=info".into(),
        ];
        let extra: Vec<&String> = s.driver.args.iter().chain(&h.def.driver_args).collect();
        // A scenario may set its own stale time; clap refuses a flag given twice.
        if !extra.iter().any(|x| x.starts_with("--stale-routes-time")) {
            a.extend(["--stale-routes-time".into(), "10".into()]);
        }
        // Always explicit: the driver's default address may change.
        if s.bgp.mode == BgpMode::None {
            a.extend(["--gobgp".into(), "none".into()]);
        } else {
            a.extend([
                "--gobgp".into(),
                format!("unix://{}", h.gobgp_api().display()),
            ]);
        }
        if self.driver_configures(i) {
            a.extend([
                "--asn".into(),
                h.def.asn.to_string(),
                "--router-id".into(),
                h.addr.addr().to_string(),
            ]);
            for n in self.neighbours(i) {
                // An IPv6 neighbour in brackets, as in a socket address.
                let addr = match n.addr {
                    std::net::IpAddr::V4(a) => a.to_string(),
                    std::net::IpAddr::V6(a) => format!("[{a}]"),
                };
                let mut p = format!(
                    "{addr}:{},hold={},keepalive={},connect-retry={}",
                    n.asn, s.bgp.hold_time, s.bgp.keepalive, s.bgp.connect_retry
                );
                if n.rr_client {
                    p.push_str(",rr-client");
                }
                a.extend(["--peer".into(), p]);
            }
        }
        // `{docker_sock}`: the host's dockerd API socket (dockerd engine).
        let sock = crate::dockerd::api_socket(h).display().to_string();
        a.extend(
            s.driver
                .args
                .iter()
                .chain(&h.def.driver_args)
                .map(|x| x.replace("{docker_sock}", &sock)),
        );
        a
    }

    /// Starts a daemon on host `i` and waits until it answers.
    pub fn start_daemon(&self, i: usize, kind: DaemonKind) -> Result<()> {
        self.start_daemons(&[i], kind)
    }

    /// Starts a daemon of one kind on each of `hosts` (those not running),
    /// then waits until every one answers: start-ups overlap, and the wait
    /// has one deadline for all.
    pub fn start_daemons(&self, hosts: &[usize], kind: DaemonKind) -> Result<()> {
        let mut started = Vec::new();
        for &i in hosts {
            if self.spawn_daemon(i, kind)? {
                started.push(i);
            }
        }
        let mut pending = started.clone();
        let daemons: Vec<&Daemon> = started
            .iter()
            .map(|&i| self.daemon(i, kind))
            .collect::<Result<_>>()?;
        let what = match started.as_slice() {
            [i] => format!("{kind:?} on {}", self.hosts[*i].def.name),
            _ => format!("{kind:?} on {} hosts", started.len()),
        };
        await_ready(
            &what,
            &daemons,
            self.opts
                .scale(Duration::from_secs(20 + started.len() as u64 / 2)),
            Duration::from_millis(20),
            || {
                let mut last = None;
                pending.retain(|&i| {
                    let r = match kind {
                        DaemonKind::Gobgpd => self.gobgpd_ready(i),
                        DaemonKind::Driver => self.driver_ready(i),
                        DaemonKind::Dockerd => Ok(()),
                    };
                    match r {
                        Ok(()) => false,
                        Err(e) => {
                            last = Some(format!("{}: {e:#}", self.hosts[i].def.name));
                            true
                        }
                    }
                });
                match last {
                    None => Ok(()),
                    Some(e) => Err(anyhow!("{} not ready yet, e.g. {e}", pending.len())),
                }
            },
        )?;
        Ok(())
    }

    /// Starts host `i`'s daemon without waiting; false if it already runs.
    fn spawn_daemon(&self, i: usize, kind: DaemonKind) -> Result<bool> {
        let h = &self.hosts[i];
        let d = self.daemon(i, kind)?;
        if d.running() {
            return Ok(false);
        }
        let (prog, args) = match kind {
            DaemonKind::Gobgpd => {
                // A killed gobgpd leaves its API socket behind; a new one could not bind it.
                let _ = std::fs::remove_file(h.gobgp_api());
                let mut args = vec![
                    "-p".to_string(),
                    "-l".into(),
                    "info".into(),
                    "--pprof-disable".into(),
                    "--api-hosts".into(),
                    format!("unix://{}", h.gobgp_api().display()),
                ];
                if !self.driver_configures(i) {
                    args.extend(["-f".into(), h.dir.join("gobgpd.toml").display().to_string()]);
                }
                (require("gobgpd")?, args)
            }
            DaemonKind::Driver => (self.opts.driver_bin.clone(), self.driver_args(i)),
            DaemonKind::Dockerd => bail!("dockerd belongs to the dockerd engine"),
        };
        d.spawn(Some(&h.ns.path()), &prog, &args)
            .with_context(|| format!("start {kind:?} on {}", h.def.name))?;
        d.stop_at_cleanup(&self.cleanup, format!("stop {kind:?} on {}", h.def.name));
        Ok(true)
    }

    pub fn gobgpd_ready(&self, i: usize) -> Result<()> {
        let api = self.hosts[i].gobgp_api();
        if !api.exists() {
            bail!("no API socket yet");
        }
        self.rt.block_on(async {
            let mut c = ipvlan_bgp::bgp::gobgp::connect(
                &ipvlan_bgp::bgp::gobgp::GobgpAddr::Unix(api),
                Duration::from_secs(1),
            )
            .await?;
            c.get_bgp(ipvlan_bgp::bgp::gobgp::apipb::GetBgpRequest {})
                .await?;
            Ok::<_, anyhow::Error>(())
        })
    }

    pub fn driver_ready(&self, i: usize) -> Result<()> {
        let sock = self.hosts[i].socket();
        let r = self.rt.block_on(ipvlan_bgp::api::client::post(
            &sock,
            "/Plugin.Activate",
            Vec::new(),
            Duration::from_secs(2),
        ))?;
        if r.status != 200 {
            bail!("activate answered {}", r.status);
        }
        Ok(())
    }

    pub fn signal_daemon(&self, i: usize, kind: DaemonKind, sig: Signal) -> Result<()> {
        self.daemon(i, kind)?.signal(sig)
    }

    /// SIGSTOP / SIGCONT host `i`'s daemon, which keeps running.
    pub fn send_daemon(&self, i: usize, kind: DaemonKind, sig: Signal) -> Result<()> {
        self.daemon(i, kind)?
            .send(sig)
            .with_context(|| format!("{kind:?} on {}", self.hosts[i].def.name))
    }

    /// `gobgp -j neighbor` on host `i`: each session as gobgpd reports it.
    pub fn gobgp_neighbors(&self, i: usize) -> Result<Vec<serde_json::Value>> {
        let h = &self.hosts[i];
        let target = h.gobgp_target();
        let mut args: Vec<&str> = target.iter().map(String::as_str).collect();
        args.extend(["-j", "neighbor"]);
        let out = h.ns.exec("gobgp", &args, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "gobgp neighbor on {}: {}",
                h.def.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("gobgp -j neighbor on {}", h.def.name))
    }

    /// The driver's status document for host `i`.
    pub fn driver_status(&self, i: usize) -> Result<serde_json::Value> {
        let r = self.rt.block_on(ipvlan_bgp::api::client::post(
            &self.hosts[i].socket(),
            "/IpvlanBgp.Status",
            Vec::new(),
            Duration::from_secs(5),
        ))?;
        r.json()
    }

    /// BGP session states on host `i` (address -> established).
    pub fn bgp_sessions(&self, i: usize) -> Result<Vec<(String, bool)>> {
        use ipvlan_bgp::bgp::gobgp::{apipb::ListPeerRequest, connect, GobgpAddr};
        let api = self.hosts[i].gobgp_api();
        self.rt.block_on(async {
            let mut c = connect(&GobgpAddr::Unix(api), Duration::from_secs(2)).await?;
            let mut s = c.list_peer(ListPeerRequest::default()).await?.into_inner();
            let mut out = Vec::new();
            while let Some(r) = s.message().await? {
                if let Some(p) = r.peer {
                    let addr = p.conf.map(|c| c.neighbor_address).unwrap_or_default();
                    let up = p.state.map(|s| s.session_state == 6).unwrap_or(false);
                    out.push((addr, up));
                }
            }
            Ok(out)
        })
    }

    /// A shell-ish dump of everything on every host, for failed scenarios.
    pub fn diagnostics(&self, containers: &[(String, PathBuf)]) -> String {
        let mut out = String::new();
        let short = Duration::from_secs(5);
        for h in &self.hosts {
            out.push_str(&format!(
                "\n===== host {} ({}, namespace {}) =====\n",
                h.def.name, h.addr, h.ns.name
            ));
            for args in [
                &["-d", "-br", "link"][..],
                &["-br", "addr"][..],
                &["route", "show", "table", "main"][..],
                &["-6", "route", "show", "table", "main"][..],
            ] {
                out.push_str(&format!("$ ip {}\n", args.join(" ")));
                match h.ns.ip(args) {
                    Ok(s) => out.push_str(&s),
                    Err(e) => out.push_str(&format!("({e:#})\n")),
                }
            }
            if h.gobgpd.pid().is_some() || h.gobgp_api().exists() {
                let mut small_rib = false;
                for args in [
                    &["neighbor"][..],
                    &["global", "rib", "summary"][..],
                    &["global", "rib"][..],
                    &["global", "rib", "-a", "ipv6"][..],
                ] {
                    // A flooded RIB is too long to print (and slow to list).
                    let full_rib = args.starts_with(&["global", "rib"]) && args[2..] != ["summary"];
                    if full_rib && !small_rib {
                        continue;
                    }
                    out.push_str(&format!("$ gobgp {}\n", args.join(" ")));
                    let target = h.gobgp_target();
                    let mut full: Vec<&str> = target.iter().map(String::as_str).collect();
                    full.extend_from_slice(args);
                    match h.ns.exec("gobgp", &full, short) {
                        Ok(o) => {
                            let text = String::from_utf8_lossy(&o.stdout);
                            if args == ["global", "rib", "summary"] {
                                small_rib = rib_destinations(&text).is_some_and(|n| n <= 200);
                            }
                            out.push_str(&text);
                            out.push_str(&String::from_utf8_lossy(&o.stderr));
                        }
                        Err(e) => out.push_str(&format!("({e:#})\n")),
                    }
                }
                out.push_str(&format!(
                    "--- gobgpd log (tail) {} ---\n{}\n",
                    h.gobgpd.log.display(),
                    tail(&h.gobgpd.log, 25)
                ));
            }
            if h.runs_driver() {
                if let Ok(st) = self.driver_status(h.index) {
                    out.push_str(&format!(
                        "$ ipvlan-bgp status\n{}",
                        ipvlan_bgp::api::status::render_text(&st)
                    ));
                }
                out.push_str(&format!(
                    "--- driver log (tail) {} ---\n{}\n",
                    h.driver.log.display(),
                    tail(&h.driver.log, 40)
                ));
            }
        }
        for r in &self.routers {
            out.push_str(&r.diagnostics());
        }
        for (name, path) in containers.iter().take(12) {
            out.push_str(&format!(
                "\n===== container {name} ({}) =====\n",
                path.display()
            ));
            let net = format!("--net={}", path.display());
            for args in [
                ["-br", "addr", ""],
                ["route", "show", ""],
                ["-6", "route", "show"],
            ] {
                let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
                let mut full = vec![net.as_str(), "ip"];
                full.extend(args);
                match crate::util::run_output("nsenter", &full, short) {
                    Ok(o) => out.push_str(&String::from_utf8_lossy(&o.stdout)),
                    Err(e) => out.push_str(&format!("({e:#})\n")),
                }
            }
        }
        out
    }

    /// How to enter each host, for `--keep`.
    pub fn enter_hints(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            s.push_str(&format!(
                "  {}: ip netns exec {} bash\n",
                h.def.name, h.ns.name
            ));
        }
        s.push_str(&format!(
            "  switch: ip netns exec {} bash\n  logs: {}\n",
            self.switch.name,
            self.dir.display()
        ));
        s
    }
}

/// How many hosts [`World::build`] wires at once.
const BUILD_THREADS: usize = 4;

/// One host: its namespace wired to its segment, addressed, its sysctls
/// set, its run folder made (no daemon yet).
fn build_host(
    s: &Scenario,
    cleanup: &Cleanup,
    id: &str,
    dir: &Path,
    switch: &Netns,
    index: usize,
    def: &HostDef,
) -> Result<HostRt> {
    let ns = make_ns(cleanup, &format!("{id}-{}", def.name))?;
    let addr = def
        .address
        .ok_or_else(|| anyhow!("host {} has no address", def.name))?;
    let port = format!("p-{}", def.name);
    let seg = def
        .segment
        .clone()
        .unwrap_or_else(|| s.segments[0].name.clone());
    wire(&ns, UNDERLAY_IF, switch, &port, &seg)
        .with_context(|| format!("wire host {} to segment {seg}", def.name))?;
    // IPv6 forwarding stays off, as on a host that configures itself by
    // SLAAC: the driver enables it where it needs it (force_forwarding on
    // the shim and the parent). A kernel older than 6.17 has no per-link
    // force_forwarding: there, for a network whose IPv6 goes through a
    // shim (macvlan, ipvlan L2), the harness takes the operator's step the
    // README prescribes (net.ipv6.conf.all.forwarding=1), so that these
    // scenarios run on such kernels too (the VM's, GitHub's runners).
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.eth1.rp_filter", "0"),
    ] {
        ns.sysctl(k, v)?;
    }
    if s.ipv6_through_shims() && !per_link_ipv6_forwarding() {
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    }
    let mut lines = vec![
        format!("addr add {addr} dev {UNDERLAY_IF}"),
        format!("link set {UNDERLAY_IF} up"),
    ];
    // `nodad`: usable at once, as a real host's configured address is
    // after its DAD; BGP over IPv6 starts without waiting a second.
    if let Some(a6) = def.address6 {
        lines.push(format!("addr add {a6} dev {UNDERLAY_IF} nodad"));
    }
    if let Some(gw) = def
        .gateway
        .as_deref()
        .and_then(|g| s.shared_address(&def.name, g))
    {
        lines.push(format!("route add default via {}", gw.addr()));
    }
    if let Some(gw) = def
        .gateway
        .as_deref()
        .and_then(|g| s.shared_address_of(&def.name, g, Family::Ipv6))
    {
        lines.push(format!("route add default via {}", gw.addr()));
    }
    ns.ip_batch(&lines)?;
    let hdir = dir.join(&def.name);
    std::fs::create_dir_all(hdir.join("plugins"))?;
    std::fs::create_dir_all(hdir.join("state"))?;
    Ok(HostRt {
        def: def.clone(),
        index,
        ns,
        addr,
        addr6: def.address6,
        gobgpd: Daemon::new(hdir.join("gobgpd.log")),
        driver: Daemon::new(hdir.join("driver.log")),
        dir: hdir,
    })
}

/// Whether this kernel forwards IPv6 per link (`force_forwarding`, Linux 6.17+).
pub fn per_link_ipv6_forwarding() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists()
}

/// The destination count in `gobgp global rib summary` ("Destination: N, Path: M").
fn rib_destinations(summary: &str) -> Option<usize> {
    let rest = &summary[summary.find("Destination:")? + "Destination:".len()..];
    rest.split(',').next()?.trim().parse().ok()
}

/// A veth pair from `ns` (`iface`) to the switch (`port`), the port enslaved to
/// the segment's bridge and up. Both ends are created directly in their
/// namespaces: nothing ever appears in the machine's own namespace.
fn wire(ns: &Netns, iface: &str, switch: &Netns, port: &str, segment: &str) -> Result<()> {
    run_cmd(
        "ip",
        &[
            "link",
            "add",
            "name",
            iface,
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &switch.name,
        ],
        Duration::from_secs(20),
    )?;
    switch.ip_batch(&[
        format!("link set {port} master {}", bridge_name(segment)),
        format!("link set {port} up"),
    ])
}

/// The bridge of a segment in the switch namespace.
fn bridge_name(segment: &str) -> String {
    format!("b-{segment}")
}

fn make_ns(cleanup: &Cleanup, name: &str) -> Result<Netns> {
    let ns = Netns::create(name)?;
    let n = name.to_string();
    cleanup.push(format!("delete namespace {name}"), move || {
        Netns::delete(&n)
    });
    Ok(ns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rib_summary_is_read() {
        let s = "Table ipv4-unicast\nDestination: 20001, Path: 20001\n";
        assert_eq!(super::rib_destinations(s), Some(20001));
        assert_eq!(super::rib_destinations("nothing"), None);
    }
}
