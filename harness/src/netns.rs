//! Network namespaces and the processes started inside them.
//!
//! Namespaces are named `ibh-<pid>-<run>-<role>`: the harness's pid makes a
//! killed run's leftovers recognisable ([`sweep`] deletes those whose owner is
//! gone). Processes are started with `setns` in a `pre_exec` hook (no
//! `ip netns exec`, no mount tricks), in their own process group, and with
//! `PR_SET_PDEATHSIG` so they die with the harness thread that started them.
//!
//! In: names, programs and their arguments. Out: [`Netns`] handles (`ip`,
//! sysctls, `exec` inside), child processes, the sweep of leftovers. Owns
//! the `ibh-` prefix.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::util::{eventually, run_cmd, run_output, scaled};

pub const PREFIX: &str = "ibh-";
const IP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        run_cmd("ip", &["netns", "add", name], IP_TIMEOUT)
            .with_context(|| format!("create network namespace {name}"))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Like [`Netns::create`], without starting `ip`: the namespace is
    /// made on a throwaway thread (`unshare`), bind-mounted on
    /// `/run/netns/NAME` from `/proc/thread-self/ns/net`, and its loopback
    /// set up over netlink from inside. For the many short-lived sandboxes
    /// of emulated containers (two processes fewer per start). Needs
    /// `/run/netns` to exist as `ip netns` makes it (a shared mount): the
    /// world's own namespaces, made first with `ip`, see to that; without it
    /// this falls back to [`Netns::create`].
    pub fn create_fast(name: &str) -> Result<Netns> {
        let dir = Path::new("/run/netns");
        if !dir.is_dir() {
            return Netns::create(name);
        }
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare")?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .context("bind-mount the namespace")?;
            // This thread is inside the new namespace: its socket is too.
            let mut k = ipvlan_bgp::kernel::real::Kernel::open()?;
            let lo = k
                .link("lo")?
                .ok_or_else(|| anyhow!("a new namespace without lo"))?;
            k.set_up(lo.index, true)?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))
        .and_then(|r| r);
        if let Err(e) = made {
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
            return Err(e.context(format!("create network namespace {name}")));
        }
        Ok(Netns {
            name: name.to_string(),
        })
    }

    /// Like [`Netns::delete`], without starting `ip`: detach the bind
    /// mount and remove the file (the kernel frees the namespace once
    /// nothing holds it).
    pub fn delete_fast(name: &str) -> Result<()> {
        let path = Path::new("/run/netns").join(name);
        if !path.exists() {
            return Ok(());
        }
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(anyhow!("unmount {}: {e}", path.display())),
        }
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_cmd("ip", &full, IP_TIMEOUT).with_context(|| format!("in namespace {}", self.name))
    }

    /// Many `ip` commands in one process (`ip -n NAME -batch -`).
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start ip -batch")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(lines.join("\n").as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -batch in {} failed: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                lines.join("\n")
            );
        }
        Ok(())
    }

    /// Runs a program inside the namespace and returns its output (any status).
    pub fn exec(
        &self,
        prog: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<std::process::Output> {
        let mut full = vec!["netns", "exec", self.name.as_str(), prog];
        full.extend_from_slice(args);
        run_output("ip", &full, timeout)
    }

    /// Writes a sysctl of this namespace (`net.ipv4.ip_forward`, ...).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let ns = self.open()?;
        let key2 = key.to_string();
        let value = value.to_string();
        std::thread::spawn(move || -> Result<()> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let path = format!("/proc/sys/{}", key2.replace('.', "/"));
            std::fs::write(&path, &value).with_context(|| format!("write {path}"))?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("sysctl thread panicked"))?
        .with_context(|| format!("sysctl {key} in {}", self.name))
    }

    pub fn open(&self) -> Result<OwnedFd> {
        Ok(File::open(self.path())
            .with_context(|| format!("open {}", self.path().display()))?
            .into())
    }

    /// Starts `prog` inside this namespace (see [`spawn_in`]).
    pub fn spawn(&self, prog: &Path, args: &[String], log: &Path) -> Result<Child> {
        spawn_in(Some(&self.path()), prog, args, log)
    }

    /// Deletes the namespace and waits until it is really gone.
    pub fn delete(name: &str) -> Result<()> {
        let path = Path::new("/run/netns").join(name);
        if !path.exists() {
            return Ok(());
        }
        let out = run_output("ip", &["netns", "delete", name], IP_TIMEOUT)?;
        eventually(
            scaled(Duration::from_secs(5)),
            Duration::from_millis(10),
            || {
                if path.exists() {
                    Err(format!("{} exists", path.display()))
                } else {
                    Ok(())
                }
            },
        )
        .map_err(|diff| {
            anyhow!(
                "namespace {name} still there after delete ({diff}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        Ok(())
    }
}

/// Starts a process, inside the network namespace at `netns` if given, with
/// stdout and stderr appended to `log`. It gets its own process group and
/// SIGKILL when the starting thread exits.
pub fn spawn_in(netns: Option<&Path>, prog: &Path, args: &[String], log: &Path) -> Result<Child> {
    let ns_fd: Option<OwnedFd> = match netns {
        Some(p) => Some(
            File::open(p)
                .with_context(|| format!("open {}", p.display()))?
                .into(),
        ),
        None => None,
    };
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open log {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    prepare_child(
        &mut cmd,
        ns_fd.as_ref().map(|f| f.as_raw_fd()),
        libc::SIGKILL,
        true,
    );
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", prog.display()))?;
    drop(ns_fd);
    Ok(child)
}

/// Sets up a child of ours between fork and exec: enter the network
/// namespace open at `netns_fd`, get `deathsig` when the starting thread
/// dies, unblock the signals the harness blocks for its signal thread, and
/// (with `own_group`) lead a process group of its own so a terminal's
/// Ctrl-C reaches only the harness, which then cleans up in order.
pub fn prepare_child(
    cmd: &mut Command,
    netns_fd: Option<std::os::fd::RawFd>,
    deathsig: libc::c_int,
    own_group: bool,
) {
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = netns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, deathsig as libc::c_ulong, 0, 0, 0);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if own_group {
                libc::setpgid(0, 0);
            }
            Ok(())
        });
    }
}

/// Sends `sig` to a process we started and waits for it to exit.
pub fn stop_child(
    child: &mut Child,
    sig: nix::sys::signal::Signal,
    timeout: Duration,
) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, sig);
    // A frozen (SIGSTOPped) process handles nothing until it is continued.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let waited = eventually(scaled(timeout), Duration::from_millis(5), || {
        match child.try_wait() {
            Ok(None) => Err(format!("pid {} still running", child.id())),
            Ok(Some(_)) => Ok(Ok(())),
            Err(e) => Ok(Err(e)),
        }
    });
    match waited {
        Ok((done, _)) => done.with_context(|| format!("wait for pid {}", child.id())),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "pid {} did not exit within {:?} after {sig}; killed",
                child.id(),
                scaled(timeout)
            );
        }
    }
}

/// Whether `pid` is a live process (a zombie is not: it is dead and unreaped).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Deletes namespaces left by harness runs whose process is gone.
pub fn sweep() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        // Whatever still runs in a dead run's namespace was started by that run.
        if let Ok(out) = run_output("ip", &["netns", "pids", &name], IP_TIMEOUT) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if Netns::delete(&name).is_ok() {
            removed.push(name);
        }
    }
    removed
}
