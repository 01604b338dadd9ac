//! The hosts' own daemons: gobgpd of the run's GoBGP line (with its TOML,
//! unless the driver configures it) and the driver, each started in its host's namespace,
//! awaited, signalled, stopped and started again by scenario steps.
//!
//! In: the [`World`]'s hosts and scenario. Out: running daemons (their
//! stop registered for cleanup), their flags and configuration files.
//! Owns the daemons' command lines; their neighbours come from
//! [`super::sessions`], their files from [`super::configs`].

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::configs::{self, Neighbor, Timers};
use super::daemon::{await_ready, Daemon};
use super::hosts::UNDERLAY_IF;
use super::sessions;
use super::world::World;
use crate::scenario::{BgpConfigBy, BgpMode, DaemonKind, GobgpLine};
use crate::util::require;

/// The stale-routes time the harness gives every driver (before scaling),
/// unless the scenario sets its own or deploys with `[driver] defaults`.
const STALE_ROUTES_TIME: Duration = Duration::from_secs(10);

impl World {
    /// gobgpd on every host (unless its plugin embeds it), then the driver
    /// on every Docker host (unless dockerd runs it as a managed plugin):
    /// every daemon of a kind started, then all awaited together.
    pub(super) fn start_host_daemons(&self, progress: &dyn Fn(&str)) -> Result<()> {
        let s = &self.scenario;
        if s.bgp.mode != BgpMode::None {
            require(self.gobgp_line().daemon())?;
            // An embedded gobgpd starts with its plugin (the engine's setup).
            let all: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| !self.hosts[i].def.embedded_gobgpd)
                .collect();
            for &i in &all {
                self.write_gobgpd_config(i)?;
            }
            self.start_daemons(&all, DaemonKind::Gobgpd)?;
            progress("gobgpd running on every host");
        }
        // A managed plugin is started by its dockerd (the engine's setup).
        if !s.driver.plugin {
            let docker: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| self.hosts[i].runs_driver())
                .collect();
            self.start_daemons(&docker, DaemonKind::Driver)?;
            progress("drivers ready");
        }
        Ok(())
    }

    fn daemon(&self, i: usize, kind: DaemonKind) -> Result<&Daemon> {
        match kind {
            DaemonKind::Gobgpd => Ok(&self.hosts[i].gobgpd),
            DaemonKind::Driver => Ok(&self.hosts[i].driver),
            DaemonKind::Driver2 => Ok(&self.hosts[i].driver2),
            DaemonKind::Dockerd => bail!("dockerd belongs to the dockerd engine, not to the world"),
        }
    }

    /// gobgpd's neighbours of host `i` (the session planner's).
    pub fn neighbours(&self, i: usize) -> Vec<Neighbor> {
        sessions::host_neighbours(&self.scenario, i)
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
            self.gobgp_line(),
            &h.def.name,
            h.def.asn,
            h.addr.addr(),
            h.addr6.map(|a| a.addr()),
            &self.neighbours(i),
            Timers::from(&self.scenario.bgp),
        )?;
        let path = h.dir.join("gobgpd.toml");
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
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
            "--log-level".into(),
            "debug,h2=info,tonic=info,hyper=info,tower=info".into(),
        ];
        // A dual-homed host: its uplinks (dual-uplink mode, no parent).
        if h.def.uplink_links.is_empty() {
            a.extend(["--parent".into(), UNDERLAY_IF.into()]);
        }
        for u in &h.def.uplink_links {
            a.extend(["--uplink".into(), u.iface.clone()]);
        }
        let extra: Vec<&String> = s.driver.args.iter().chain(&h.def.driver_args).collect();
        // A scenario may set its own stale time; clap refuses a flag given twice.
        // 10 s, scaled as the steps' deadlines and holds are (HARNESS_TIME_SCALE,
        // 10 in the emulated VM): a step that holds "3 s" while the stale time
        // runs must see the same ratio there as natively.
        if !s.driver.defaults && !extra.iter().any(|x| x.starts_with("--stale-routes-time")) {
            let stale = self.opts.scale(STALE_ROUTES_TIME).as_secs().max(1);
            a.extend(["--stale-routes-time".into(), stale.to_string()]);
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
            a.extend(["--asn".into(), h.def.asn.to_string()]);
            // As deployed, the driver takes its router ID from the parent.
            if !s.driver.defaults {
                a.extend(["--router-id".into(), h.addr.addr().to_string()]);
            }
            for n in self.neighbours(i) {
                // An IPv6 neighbour in brackets, as in a socket address.
                let addr = match n.addr {
                    std::net::IpAddr::V4(a) => a.to_string(),
                    std::net::IpAddr::V6(a) => format!("[{a}]"),
                };
                let mut p = format!("{addr}:{}", n.asn);
                if !s.driver.defaults {
                    p.push_str(&format!(
                        ",hold={},keepalive={},connect-retry={}",
                        s.bgp.hold_time, s.bgp.keepalive, s.bgp.connect_retry
                    ));
                }
                if n.rr_client {
                    p.push_str(",rr-client");
                }
                if n.passive {
                    p.push_str(",passive");
                }
                if let (true, Some(b)) = (n.bfd, s.bgp.bfd) {
                    p.push_str(&format!(
                        ",bfd={}ms,bfd-multiplier={}",
                        b.interval.0.as_millis(),
                        b.multiplier
                    ));
                }
                a.extend(["--peer".into(), p]);
            }
        }
        // The cluster-wide IPAM's etcd, with this host's certificate and user.
        if let Some(e) = &self.etcd {
            a.extend(e.driver_args(&h.def.name));
        }
        // `{docker_sock}`: the host's dockerd API socket (dockerd engine).
        let sock = h.docker_api_socket().display().to_string();
        // The driver asks Docker about endpoints at a restart: this host's
        // own dockerd (the socket exists on the dockerd engine only; on the
        // emulator nothing answers there, as on a host without Docker),
        // never the machine's /var/run/docker.sock, the flag's default.
        if !extra.iter().any(|x| x.starts_with("--docker-socket")) {
            a.extend(["--docker-socket".into(), format!("unix://{sock}")]);
        }
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
                        DaemonKind::Driver2 => plugin_ready(self, &self.hosts[i].socket2()),
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
                let line = self.gobgp_line();
                let mut args = vec![
                    "-p".to_string(),
                    "-l".into(),
                    "info".into(),
                    "--pprof-disable".into(),
                    "--api-hosts".into(),
                    format!("unix://{}", h.gobgp_api().display()),
                ];
                // 4.x serves Prometheus metrics on 127.0.0.1:6060 even with
                // --pprof-disable; an empty path closes that listener.
                if line == GobgpLine::V4 {
                    args.push("--metrics-path=".into());
                }
                if !self.driver_configures(i) {
                    args.extend(["-f".into(), h.dir.join("gobgpd.toml").display().to_string()]);
                }
                (require(line.daemon())?, args)
            }
            DaemonKind::Driver if h.def.driver_drop_caps.is_empty() => {
                (self.opts.driver_bin.clone(), self.driver_args(i))
            }
            DaemonKind::Driver => {
                // Dropped from the bounding set, root's exec does not regain them.
                let caps = h
                    .def
                    .driver_drop_caps
                    .iter()
                    .map(|c| format!("-{c}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut args = vec![
                    "--bounding-set".to_string(),
                    caps.clone(),
                    "--inh-caps".into(),
                    caps,
                    "--".into(),
                    self.opts.driver_bin.display().to_string(),
                ];
                args.extend(self.driver_args(i));
                (require("setpriv")?, args)
            }
            DaemonKind::Driver2 => (self.opts.driver_bin.clone(), self.driver2_args(i)),
            DaemonKind::Dockerd => bail!("dockerd belongs to the dockerd engine"),
        };
        d.spawn(Some(&h.ns.path()), &prog, &args)
            .with_context(|| format!("start {kind:?} on {}", h.def.name))?;
        d.stop_at_cleanup(&self.cleanup, format!("stop {kind:?} on {}", h.def.name));
        Ok(true)
    }

    /// Whether host `i`'s gobgpd answers on its API (3.x: `GetBgp` over
    /// gRPC; 4.x: the `gobgp-v4` CLI's `global`, or its "not started yet"
    /// before the driver configures it).
    pub fn gobgpd_ready(&self, i: usize) -> Result<()> {
        let api = self.hosts[i].gobgp_api();
        if !api.exists() {
            bail!("no API socket yet");
        }
        if self.gobgp_line() == GobgpLine::V4 {
            return match self.gobgp_cli_json(i, &["global"]) {
                Ok(_) => Ok(()),
                Err(e) if format!("{e:#}").contains("hasn't started yet") => Ok(()),
                Err(e) => Err(e),
            };
        }
        self.rt.block_on(async {
            use ipvlan_bgp::bgp::gobgp::{Gobgp, GobgpAddr, GobgpApi};
            // Connecting detects the line: one GetBgp answered.
            let mut c = Gobgp::connect(&GobgpAddr::Unix(api), Duration::from_secs(1)).await?;
            c.get_bgp().await?;
            Ok::<_, anyhow::Error>(())
        })
    }

    pub fn driver_ready(&self, i: usize) -> Result<()> {
        plugin_ready(self, &self.hosts[i].socket())
    }

    /// The flags of host `i`'s second driver instance: its own socket and
    /// state directory, the host's parent, no BGP (one announcer per host).
    fn driver2_args(&self, i: usize) -> Vec<String> {
        let h = &self.hosts[i];
        [
            "--socket",
            &h.socket2().display().to_string(),
            "--state-dir",
            &h.state2().display().to_string(),
            "--parent",
            UNDERLAY_IF,
            "--log-level",
            "debug",
            "--gobgp",
            "none",
        ]
        .map(String::from)
        .to_vec()
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
}

/// Whether the driver on `sock` answers Plugin.Activate.
fn plugin_ready(w: &World, sock: &std::path::Path) -> Result<()> {
    let r = w.rt.block_on(ipvlan_bgp::api::client::post(
        sock,
        "/Plugin.Activate",
        Vec::new(),
        Duration::from_secs(2),
    ))?;
    if r.status != 200 {
        bail!("activate answered {}", r.status);
    }
    Ok(())
}
