//! The real engine: one dockerd (20.10, Debian's `docker.io`) per host.
//!
//! Each host's dockerd runs inside the host's network namespace and in a
//! private mount namespace of its own, held by a `sleep` process that bind-
//! mounts the host's plugin folder over `/run/docker/plugins` (so every host
//! finds *its* ipvlan-bgp under the same driver name) and a private folder
//! over `/etc/docker`. `ip netns exec` is not used: it remounts /sys and
//! breaks dockerd's cgroups; `nsenter` into the holder's mount namespace plus
//! the host's network namespace works. Networks are made with
//! `docker network create -d ipvlan-bgp`, containers with `docker run -d`
//! from a busybox image imported locally (no registry is reachable), probes
//! run in the containers' namespaces (`/proc/<pid>/ns/net`). Everything is
//! torn down at the end: containers, daemons, mounts, cgroup folders, data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use crate::daemon::{await_ready, Daemon};
use crate::engine::{ContainerRt, Control, Engine, Subnets};
use crate::plugin;
use crate::scenario::NetworkDef;
use crate::util::{eventually, require, run_output, scaled, tail};
use crate::world::{World, UNDERLAY_IF};

pub const DOCKER: &str = "/usr/bin/docker";
pub const IMAGE: &str = "ibh-busybox:latest";
/// dockerd's default exec root: with the managed plugin, a per-host folder
/// is mounted there in dockerd's mount namespace.
const PLUGIN_EXEC_ROOT: &str = "/var/run/docker";
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// dockerd stops its containers before it exits (up to its 15 s shutdown timeout).
const DOCKERD_STOP: Duration = Duration::from_secs(30);

struct DockerHost {
    dir: PathBuf,
    holder: Daemon,
    dockerd: Daemon,
    cgroup: String,
}

impl Dockerd {
    /// A container's IPv4 address, as Docker's IPAM gave it.
    /// The container's addresses as dockerd reports them: IPv4 (dockerd
    /// 20.10 has no IPv6-only networks), and IPv6 when `dual` (a dual-stack
    /// network). Read again after a restart: the IPAM may hand out others.
    fn addresses(
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

/// Where host `h`'s dockerd serves its API (`{docker_sock}` in driver args).
pub fn api_socket(h: &crate::world::HostRt) -> PathBuf {
    h.dir.join("d").join("docker.sock")
}

impl DockerHost {
    fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
}

#[derive(Default)]
pub struct Dockerd {
    hosts: BTreeMap<usize, DockerHost>,
    /// Whether each host's dockerd runs with `--live-restore`.
    live_restore: BTreeMap<usize, bool>,
}

/// Finds dockerd 20.10 (`/usr/sbin/dockerd`) and its client.
pub fn available() -> Result<PathBuf> {
    let d = require("dockerd")?;
    if !Path::new(DOCKER).is_file() {
        bail!("{DOCKER} (the docker.io client) is not installed");
    }
    Ok(d)
}

/// A tar of a busybox-static root file system, made once per process into
/// one shared file (`ibh-busybox.tar` in the temporary folder, replaced
/// atomically), so runs leave no tar each behind.
fn busybox_tar() -> Result<PathBuf> {
    static TAR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    TAR.get_or_init(|| make_busybox_tar().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn make_busybox_tar() -> Result<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("busybox is not installed (apt-get install busybox-static)"))?;
    let root = std::env::temp_dir().join(format!("ibh-busybox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy(&busybox, root.join("bin/busybox"))?;
    let list = run_output(
        &busybox.display().to_string(),
        &["--list"],
        Duration::from_secs(10),
    )?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let tar = std::env::temp_dir().join("ibh-busybox.tar");
    let partial = std::env::temp_dir().join(format!("ibh-busybox-{}.tar", std::process::id()));
    let out = run_output(
        "tar",
        &[
            "-C",
            &root.display().to_string(),
            "-cf",
            &partial.display().to_string(),
            ".",
        ],
        Duration::from_secs(60),
    )?;
    let _ = std::fs::remove_dir_all(&root);
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!("tar busybox root: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::rename(&partial, &tar).with_context(|| format!("rename to {}", tar.display()))?;
    Ok(tar)
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

    fn start_daemon(&mut self, w: &World, host: usize) -> Result<()> {
        let h = &w.hosts[host];
        let dh = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no docker host #{host}"))?;
        if dh.dockerd.running() {
            return Ok(());
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
        let args: Vec<String> = vec![
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
        dh.dockerd
            .spawn(None, Path::new("/usr/bin/nsenter"), &args)?;
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

    fn setup_host(&mut self, w: &World, host: usize) -> Result<()> {
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
                dd.signal(Signal::SIGTERM)
            });
        self.hosts.insert(host, dh);
        self.start_daemon(w, host)?;
        let tar = busybox_tar()?;
        self.docker(host, &["import", &tar.display().to_string(), IMAGE])?;
        if w.driver_is_plugin() {
            self.install_plugin(w, host)?;
        }
        Ok(())
    }

    /// `docker plugin create`, `set` and `enable`, as an operator would.
    fn install_plugin(&mut self, w: &World, host: usize) -> Result<()> {
        let folder = plugin::folder(w)?;
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
    fn enable_plugin(&mut self, w: &World, host: usize) -> Result<()> {
        self.docker(host, &["plugin", "enable", plugin::NAME])?;
        plugin::await_ready(w, host)?;
        if w.hosts[host].def.embedded_gobgpd {
            plugin::link_embedded_gobgpd(w, host)?;
        }
        Ok(())
    }

    /// The driver's name for `docker network create -d`.
    fn driver_name(w: &World) -> &'static str {
        if w.driver_is_plugin() {
            plugin::NAME
        } else {
            "ipvlan-bgp"
        }
    }

    fn pid_netns(&self, host: usize, name: &str) -> Result<PathBuf> {
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

/// Removes `name` (and anything below it) from every cgroup v1 controller
/// and the v2 tree, deepest first.
fn remove_cgroups(name: &str) {
    let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in ctrls.flatten() {
        let base = c.path().join(name);
        if base.is_dir() {
            rmdir_tree(&base);
        }
    }
    let v2 = Path::new("/sys/fs/cgroup").join(name);
    if v2.is_dir() {
        rmdir_tree(&v2);
    }
}

/// Kills every process left in a cgroup tree (containers whose shim died),
/// then removes the folders, deepest first.
fn rmdir_tree(p: &Path) {
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    // Best effort: a process that will not die leaves the folder behind.
    let _ = eventually(
        scaled(Duration::from_secs(1)),
        Duration::from_millis(20),
        || {
            let pids = ["cgroup.procs", "tasks"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(p.join(f)).ok())
                .flat_map(|s| {
                    s.split_whitespace()
                        .filter_map(|x| x.parse::<i32>().ok())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>();
            if pids.is_empty() {
                return Ok(());
            }
            let left = pids.len();
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(format!("{left} processes left in {}", p.display()))
        },
    );
    let _ = std::fs::remove_dir(p);
}

/// Kills processes whose command line names `dir`: the containerd shims a
/// dockerd of ours started (they daemonize, so they outlive a killed dockerd).
fn kill_shims_under(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Removes what dockerd engines of killed harness runs left behind: shims
/// (by their run folder), container processes and cgroup folders (by the
/// `ibh-<pid>-` cgroup parent of a run whose process is gone).
pub fn sweep(run_root: &Path) -> usize {
    let mut n = 0;
    let dead = |name: &str| -> bool {
        name.strip_prefix(crate::netns::PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| !crate::netns::process_alive(pid))
    };
    // Shims name their run folder (`<run_root>/ibh-<pid>-...`) in their command line.
    let needle = format!("{}/", run_root.display());
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for e in procs.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(
                &std::fs::read(e.path().join("cmdline")).unwrap_or_default(),
            )
            .into_owned();
            let ours = cmd
                .split(&needle)
                .skip(1)
                .any(|rest| dead(rest.split('/').next().unwrap_or("")));
            if ours {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") else {
        return n;
    };
    for c in ctrls.flatten() {
        let Ok(groups) = std::fs::read_dir(c.path()) else {
            continue;
        };
        for g in groups.flatten() {
            let name = g.file_name().to_string_lossy().into_owned();
            if g.path().is_dir() && dead(&name) {
                rmdir_tree(&g.path());
                n += 1;
            }
        }
    }
    n
}

impl Engine for Dockerd {
    fn name(&self) -> &'static str {
        "dockerd"
    }

    fn setup(&mut self, w: &World) -> Result<()> {
        available()?;
        for h in &w.hosts {
            if h.runs_driver() {
                self.live_restore
                    .insert(h.index, h.def.dockerd_live_restore);
                self.setup_host(w, h.index)
                    .with_context(|| format!("start dockerd on {}", h.def.name))?;
            }
        }
        Ok(())
    }

    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
    ) -> Result<()> {
        // dockerd 20.10 always gives a network an IPv4 pool (Docker 28
        // added `--ipv4=false`): an IPv6-only network is the emulator's.
        let subnet = subnets.v4.ok_or_else(|| {
            anyhow!(
                "network {}: dockerd 20.10 cannot create an IPv6-only network (no --ipv4=false before Docker 28); run it on the emulator",
                net.name
            )
        })?;
        let gateway = std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1).to_string();
        let subnet_s = subnet.to_string();
        let mut opts: BTreeMap<String, String> = net.options.clone();
        opts.entry("parent".into())
            .or_insert_with(|| UNDERLAY_IF.into());
        let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "network",
            "create",
            "-d",
            Self::driver_name(w),
            "--subnet",
            &subnet_s,
            "--gateway",
            &gateway,
        ];
        // Dual stack: `--ipv6` and the second subnet with its gateway (the
        // first address, as Docker's IPAM would pick).
        let v6 = subnets.v6.map(|n| {
            (
                n.to_string(),
                std::net::Ipv6Addr::from(u128::from(n.network()) + 1).to_string(),
            )
        });
        if let Some((sub6, gw6)) = &v6 {
            args.extend(["--ipv6", "--subnet", sub6, "--gateway", gw6]);
        }
        for o in &opts {
            args.extend(["-o", o.as_str()]);
        }
        args.push(&net.name);
        self.docker(host, &args)?;
        Ok(())
    }

    fn delete_network(&mut self, _w: &World, host: usize, net: &NetworkDef) -> Result<()> {
        self.docker(host, &["network", "rm", &net.name])?;
        Ok(())
    }

    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt> {
        let network = network_arg(&net.name, w.container_def(name));
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &network,
            "--restart",
            "unless-stopped",
        ];
        let health = w.container_def(name).and_then(|c| c.health.as_ref());
        let (interval, retries) = health
            .map(|h| {
                let i = h.interval.map(|d| format!("{}ms", d.0.as_millis()));
                (i, h.retries.map(|r| r.to_string()))
            })
            .unwrap_or_default();
        if let Some(h) = health {
            args.extend(["--health-cmd", h.cmd.as_str()]);
        }
        if let Some(i) = &interval {
            args.extend(["--health-interval", i.as_str()]);
        }
        if let Some(r) = &retries {
            args.extend(["--health-retries", r.as_str()]);
        }
        args.extend([IMAGE, "sleep", "2147483647"]);
        self.docker(host, &args)?;
        let (address, address6) = self.addresses(
            host,
            name,
            net.subnets6.contains_key(&w.hosts[host].def.name),
        )?;
        Ok(ContainerRt {
            name: name.to_string(),
            host,
            network: net.name.clone(),
            address,
            address6,
            netns: self.pid_netns(host, name)?,
            handle: name.to_string(),
            src_name: String::new(),
        })
    }

    fn exec(&mut self, _w: &World, c: &ContainerRt, command: &[String]) -> Result<String> {
        let mut args = vec!["exec", c.handle.as_str()];
        args.extend(command.iter().map(String::as_str));
        self.docker(c.host, &args)
    }

    fn stop(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["stop", "-t", "0", &c.handle])?;
        self.docker(c.host, &["rm", &c.handle])?;
        Ok(())
    }

    /// `docker kill` (its restart policy off first, or dockerd would start
    /// it again); dockerd's own network cleanup runs whenever it can.
    fn kill(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["update", "--restart", "no", &c.handle])?;
        self.docker(c.host, &["kill", &c.handle])?;
        Ok(())
    }

    fn reap(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["rm", "-f", &c.handle])?;
        Ok(())
    }

    fn refresh(&mut self, _w: &World, c: &mut ContainerRt) -> Result<()> {
        c.netns = self.pid_netns(c.host, &c.handle)?;
        // Restarted by dockerd, it may have got another address from the IPAM.
        (c.address, c.address6) = self.addresses(c.host, &c.handle, c.address6.is_some())?;
        Ok(())
    }

    fn control(&mut self, w: &World, host: usize, action: Control) -> Result<()> {
        let d = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no dockerd on {}", w.hosts[host].def.name))?
            .dockerd
            .clone();
        match action {
            Control::Kill => d.signal(Signal::SIGKILL),
            Control::Stop => d.signal_within(Signal::SIGTERM, DOCKERD_STOP),
            Control::Start => self.start_daemon(w, host),
            Control::Restart => {
                d.signal_within(Signal::SIGTERM, DOCKERD_STOP)?;
                self.start_daemon(w, host)
            }
        }
    }

    fn control_driver(&mut self, w: &World, host: usize, action: Control) -> Result<()> {
        let disable = ["plugin", "disable", "-f", plugin::NAME];
        match action {
            Control::Kill => {
                bail!("the managed plugin is stopped with docker plugin disable, not killed")
            }
            Control::Stop => self.docker(host, &disable).map(drop),
            Control::Start => self.enable_plugin(w, host),
            Control::Restart => {
                self.docker(host, &disable)?;
                self.enable_plugin(w, host)
            }
        }
    }

    fn diagnostics(&self, _w: &World) -> String {
        let mut out = String::new();
        for (host, dh) in &self.hosts {
            out.push_str(&format!("\n===== dockerd on host #{host} =====\n"));
            if let Ok(ps) = self.docker(
                *host,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Names}} {{.Status}} {{.Networks}}",
                ],
            ) {
                out.push_str(&format!("$ docker ps -a\n{ps}\n"));
            }
            if let Ok(n) = self.docker(*host, &["network", "ls"]) {
                out.push_str(&format!("$ docker network ls\n{n}\n"));
            }
            out.push_str(&format!(
                "--- dockerd log (tail) {} ---\n{}\n",
                dh.dockerd.log.display(),
                tail(&dh.dockerd.log, 25)
            ));
        }
        out
    }
}

/// `docker run --network`: the name, or with `--driver-opt`s the long form
/// `name=N,driver-opt=k=v` (a value with a comma CSV-quoted, as the CLI reads it).
fn network_arg(net: &str, c: Option<&crate::scenario::ContainerDef>) -> String {
    let opts = c.map(|c| &c.driver_opts).filter(|o| !o.is_empty());
    let Some(opts) = opts else {
        return net.to_string();
    };
    let mut out = format!("name={net}");
    for (k, v) in opts {
        let field = format!("driver-opt={k}={v}");
        if field.contains(',') {
            out.push_str(&format!(",\"{field}\""));
        } else {
            out.push_str(&format!(",{field}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_opts_take_the_long_network_form() {
        let mut c = crate::scenario::ContainerDef {
            name: "c".into(),
            host: "h1".into(),
            hosts: None,
            network: "n".into(),
            count: None,
            driver_opts: BTreeMap::new(),
            health: None,
        };
        assert_eq!(network_arg("n", Some(&c)), "n");
        c.driver_opts.insert("bgp_med".into(), "5".into());
        c.driver_opts
            .insert("bgp_communities".into(), "65000:1,65000:2".into());
        assert_eq!(
            network_arg("n", Some(&c)),
            r#"name=n,"driver-opt=bgp_communities=65000:1,65000:2",driver-opt=bgp_med=5"#
        );
    }
}
