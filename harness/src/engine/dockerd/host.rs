//! One dockerd (20.10, Debian's `docker.io`) per host, as the dockerd
//! engine runs them: each in the host's network namespace and in a private
//! mount namespace of its own, held by a `sleep` process that bind-mounts
//! the host's plugin folder over `/run/docker/plugins` (so every host finds
//! *its* ipvlan-bgp under the same driver name) and a private folder over
//! `/etc/docker`. `ip netns exec` is not used: it remounts /sys and breaks
//! dockerd's cgroups; `nsenter` into the holder's mount namespace plus the
//! host's network namespace works.
//!
//! In: a host of the [`World`]. Out: its dockerd running and answering,
//! the busybox image imported, the managed plugin installed where the
//! scenario asks (trusting the run's registry, if any); the docker CLI
//! against it. Owns each host's dockerd, its
//! mount holder, its folders and cgroup, all registered for cleanup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::image::{busybox_tar, IMAGE};
use super::plugin;
use super::registry;
use super::sweep::{kill_shims_under, remove_cgroups};
use crate::topology::daemon::{await_ready, Daemon};
use crate::topology::World;
use crate::util::{require, run_output};

pub const DOCKER: &str = "/usr/bin/docker";
/// dockerd's default exec root: with the managed plugin, a per-host folder
/// is mounted there in dockerd's mount namespace.
const PLUGIN_EXEC_ROOT: &str = "/var/run/docker";
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// What dockerd 20.10 prints, and exits, when the containerd it starts does
/// not answer within its fixed 15 s: under emulation (the VM, TCG) on a busy
/// machine it may not. dockerd is then started again (as systemd's
/// `Restart=` would), at most [`CONTAINERD_RETRIES`] times, and says so.
const CONTAINERD_SLOW: &str = "timeout waiting for containerd to start";
const CONTAINERD_RETRIES: usize = 2;

pub(super) struct DockerHost {
    dir: PathBuf,
    holder: Daemon,
    pub(super) dockerd: Daemon,
    cgroup: String,
}

impl DockerHost {
    fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
}

#[derive(Default)]
pub struct Dockerd {
    pub(super) hosts: BTreeMap<usize, DockerHost>,
    /// Whether each host's dockerd runs with `--live-restore`.
    pub(super) live_restore: BTreeMap<usize, bool>,
}

/// Finds dockerd 20.10 (`/usr/sbin/dockerd`) and its client.
pub fn available() -> Result<PathBuf> {
    let d = require("dockerd")?;
    if !Path::new(DOCKER).is_file() {
        bail!("{DOCKER} (the docker.io client) is not installed");
    }
    Ok(d)
}

impl Dockerd {
    /// A container's IPv4 address, as Docker's IPAM gave it.
    /// The container's addresses as dockerd reports them: IPv4 (dockerd
    /// 20.10 has no IPv6-only networks), and IPv6 when `dual` (a dual-stack
    /// network). Read again after a restart: the IPAM may hand out others.
    pub(super) fn addresses(
        &self,
        host: usize,
        name: &str,
        dual: bool,
    ) -> Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>)> {
        let out = self.docker(
            host,
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}",
                name,
            ],
        )?;
        let mut words = out.split(' ');
        let (v4, v6) = (
            words.next().unwrap_or_default().trim(),
            words.next().unwrap_or_default().trim(),
        );
        let address = v4
            .parse()
            .map_err(|_| anyhow!("container {name} has no IPv4 address ({v4:?})"))?;
        let address6 = if dual {
            Some(v6.parse().map_err(|_| {
                anyhow!("container {name} has no IPv6 address on its dual-stack network ({v6:?})")
            })?)
        } else {
            None
        };
        Ok((Some(address), address6))
    }
}

impl Dockerd {
    /// Runs the docker CLI against a host's dockerd; the error is what the user would see.
    pub fn docker(&self, host: usize, args: &[&str]) -> Result<String> {
        let h = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no dockerd on host #{host}"))?;
        let sock = format!("unix://{}", h.sock().display());
        let mut full = vec!["-H", sock.as_str()];
        full.extend_from_slice(args);
        let out = run_output(DOCKER, &full, CLI_TIMEOUT)?;
        if !out.status.success() {
            // What the user would see on their terminal.
            bail!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub(super) fn start_daemon(&self, w: &World, host: usize) -> Result<()> {
        if self.spawn_dockerd(w, host)? {
            if let Err(e) = self.await_dockerd(w, host) {
                self.again_after_slow_containerd(w, host, e, |_| Ok(()))?;
            }
        }
        Ok(())
    }

    /// Handles `failed`, a failed start of host `host`'s dockerd: when
    /// dockerd gave up on its containerd ([`CONTAINERD_SLOW`]), starts it
    /// again, awaits it and runs `then` (the rest of the host's start-up),
    /// up to [`CONTAINERD_RETRIES`] times; any other failure is returned as
    /// it is. On the harness's main thread (it spawns dockerd).
    pub(super) fn again_after_slow_containerd(
        &self,
        w: &World,
        host: usize,
        failed: anyhow::Error,
        then: impl Fn(&Self) -> Result<()>,
    ) -> Result<()> {
        let mut failed = failed;
        for attempt in 1..=CONTAINERD_RETRIES {
            let gave_up = format!("{failed:#}").contains(CONTAINERD_SLOW)
                && self.hosts.get(&host).is_some_and(|h| !h.dockerd.running());
            if !gave_up {
                return Err(failed);
            }
            eprintln!(
                "dockerd on {}: its containerd did not answer within dockerd's 15 s; starting dockerd again ({attempt} of {CONTAINERD_RETRIES})",
                w.hosts[host].def.name
            );
            self.spawn_dockerd(w, host)?;
            match self.await_dockerd(w, host).and_then(|()| then(self)) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failed = e.context(format!(
                        "start dockerd on {} again ({attempt} of {CONTAINERD_RETRIES})",
                        w.hosts[host].def.name
                    ))
                }
            }
        }
        Err(failed)
    }

    /// Starts host `host`'s dockerd unless it runs; answers whether it
    /// started one. Called on the harness's main thread: a child dies with
    /// the thread that started it (`PR_SET_PDEATHSIG`).
    fn spawn_dockerd(&self, w: &World, host: usize) -> Result<bool> {
        let h = &w.hosts[host];
        let dh = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no docker host #{host}"))?;
        if dh.dockerd.running() {
            return Ok(false);
        }
        let dockerd = available()?;
        let live = self.live_restore.get(&host).copied().unwrap_or(false);
        std::fs::write(
            dh.dir.join("daemon.json"),
            format!("{{\"live-restore\": {live}}}\n"),
        )?;
        let holder = dh
            .holder
            .pid()
            .ok_or_else(|| anyhow!("mount namespace holder is gone"))?;
        let mut args: Vec<String> = vec![
            format!("--mount=/proc/{holder}/ns/mnt"),
            format!("--net={}", h.ns.path().display()),
            dockerd.display().to_string(),
            "--data-root".into(),
            dh.dir.join("data").display().to_string(),
            "--exec-root".into(),
            if w.driver_is_plugin() {
                PLUGIN_EXEC_ROOT.into()
            } else {
                dh.dir.join("x").display().to_string()
            },
            "--pidfile".into(),
            dh.dir.join("docker.pid").display().to_string(),
            "-H".into(),
            format!("unix://{}", dh.sock().display()),
            "--config-file".into(),
            dh.dir.join("daemon.json").display().to_string(),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip6tables=false".into(),
            "--cgroup-parent".into(),
            dh.cgroup.clone(),
        ];
        // The run's registry speaks plain HTTP: trusted as an insecure one.
        if let Some(reg) = registry::address(w)? {
            args.extend(["--insecure-registry".into(), reg]);
        }
        dh.dockerd
            .spawn(None, Path::new("/usr/bin/nsenter"), &args)?;
        Ok(true)
    }

    /// Waits until host `host`'s dockerd answers.
    fn await_dockerd(&self, w: &World, host: usize) -> Result<()> {
        let h = &w.hosts[host];
        let dh = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no docker host #{host}"))?;
        await_ready(
            &format!("dockerd on {}", h.def.name),
            &[&dh.dockerd],
            w.opts.scale(Duration::from_secs(60)),
            Duration::from_millis(100),
            || {
                self.docker(host, &["version", "--format", "{{.Server.Version}}"])
                    .map(drop)
            },
        )?;
        Ok(())
    }

    /// Host `host`'s folders, its mount holder and their cleanup, and its
    /// dockerd started (awaited by [`Self::bring_up`]).
    pub(super) fn prepare_host(&mut self, w: &World, host: usize) -> Result<()> {
        let h = &w.hosts[host];
        let dir = h.dir.join("d");
        for sub in ["data", "x", "etc-docker/plugins"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for target in ["/run/docker/plugins", "/etc/docker"] {
            std::fs::create_dir_all(target).with_context(|| format!("create {target}"))?;
        }
        // With the managed plugin, dockerd's exec root is the default path
        // (a per-host folder mounted there): the sandbox paths it hands the
        // driver must mean the same inside the plugin, which mounts it.
        let exec_root = if w.driver_is_plugin() {
            format!("mount --bind {} /run/docker && ", dir.join("x").display())
        } else {
            String::new()
        };
        let script = format!(
            "{exec_root}mkdir -p /run/docker/plugins && mount --bind {} /run/docker/plugins && mount --bind {} /etc/docker && exec sleep 2147483647",
            h.plugin_dir().display(),
            dir.join("etc-docker").display()
        );
        let holder = Daemon::new(dir.join("holder.log"));
        holder.spawn(
            None,
            Path::new("/usr/bin/unshare"),
            &[
                "--mount".into(),
                "--propagation".into(),
                "slave".into(),
                "sh".into(),
                "-c".into(),
                script,
            ],
        )?;
        let pid = holder
            .pid()
            .ok_or_else(|| anyhow!("mount namespace holder for {} did not start", h.def.name))?;
        // Wait until the holder's mounts are in place.
        await_ready(
            &format!("mount namespace holder for {}", h.def.name),
            &[&holder],
            w.opts.scale(Duration::from_secs(10)),
            Duration::from_millis(10),
            || {
                let mi =
                    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
                if mi.contains(" /run/docker/plugins ") && mi.contains(" /etc/docker ") {
                    Ok(())
                } else {
                    bail!("/run/docker/plugins and /etc/docker not bind-mounted yet")
                }
            },
        )?;
        let cgroup = format!("{}-{}", w.id, h.def.name);
        let dh = DockerHost {
            dir: dir.clone(),
            holder: holder.clone(),
            dockerd: Daemon::new(dir.join("dockerd.log")),
            cgroup: cgroup.clone(),
        };
        // Unwound last-in first-out: dockerd, then holder, then cgroups and data.
        let data = dir.clone();
        let cg = cgroup.clone();
        w.cleanup.push(
            format!("remove docker data and cgroups of {}", h.def.name),
            move || {
                kill_shims_under(&data);
                remove_cgroups(&cg);
                let _ = std::fs::remove_dir_all(&data);
                Ok(())
            },
        );
        let hold = holder.clone();
        w.cleanup.push(
            format!("stop the mount holder of {}", h.def.name),
            move || hold.signal(Signal::SIGKILL),
        );
        let dd = dh.dockerd.clone();
        w.cleanup
            .push(format!("stop dockerd on {}", h.def.name), move || {
                // dockerd stops its containers first and waits up to its
                // --shutdown-timeout (15 s) for them: give it that and more.
                dd.signal_within(Signal::SIGTERM, Duration::from_secs(30))
            });
        self.hosts.insert(host, dh);
        self.spawn_dockerd(w, host)?;
        Ok(())
    }

    /// A prepared host's dockerd answering, the busybox image imported
    /// (`tar`), and the managed plugin installed from `plugin` when the
    /// scenario runs it. Hosts come up side by side (on threads of their
    /// own: this starts no long-lived process), touching only the docker
    /// CLI and the host's own folders.
    pub(super) fn bring_up(
        &self,
        w: &World,
        host: usize,
        tar: &Path,
        plugin: Option<&Path>,
    ) -> Result<()> {
        self.await_dockerd(w, host)?;
        self.docker(host, &["import", &tar.display().to_string(), IMAGE])?;
        if let Some(folder) = plugin {
            self.install_plugin(w, host, folder)?;
        }
        Ok(())
    }

    /// What every host's [`Self::bring_up`] shares, made once: the busybox
    /// tar and the plugin folder.
    pub(super) fn shared_files(w: &World) -> Result<(PathBuf, Option<PathBuf>)> {
        let plugin = if w.driver_is_plugin() {
            Some(plugin::folder(w)?)
        } else {
            None
        };
        Ok((busybox_tar()?, plugin))
    }

    /// `docker plugin create`, `set` and `enable`, as an operator would.
    fn install_plugin(&self, w: &World, host: usize, folder: &Path) -> Result<()> {
        self.docker(
            host,
            &[
                "plugin",
                "create",
                plugin::NAME,
                &folder.display().to_string(),
            ],
        )?;
        let settings = plugin::settings(w, host)?;
        let mut args = vec!["plugin", "set", plugin::NAME];
        args.extend(settings.iter().map(String::as_str));
        self.docker(host, &args)?;
        self.enable_plugin(w, host)
    }

    /// `docker plugin enable`, then waits until the driver (and an
    /// embedded gobgpd) answers.
    pub(super) fn enable_plugin(&self, w: &World, host: usize) -> Result<()> {
        self.docker(host, &["plugin", "enable", plugin::NAME])?;
        plugin::await_ready(w, host)?;
        if w.hosts[host].def.embedded_gobgpd {
            plugin::link_embedded_gobgpd(w, host)?;
        }
        Ok(())
    }

    /// The driver's name for `docker network create -d`.
    pub(super) fn driver_name(w: &World) -> &'static str {
        if w.driver_is_plugin() {
            plugin::NAME
        } else {
            "ipvlan-bgp"
        }
    }

    pub(super) fn pid_netns(&self, host: usize, name: &str) -> Result<PathBuf> {
        let pid = self.docker(host, &["inspect", "-f", "{{.State.Pid}}", name])?;
        let pid: u32 = pid
            .parse()
            .map_err(|_| anyhow!("container {name} has no pid ({pid:?})"))?;
        if pid == 0 {
            bail!("container {name} is not running");
        }
        Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }
}
