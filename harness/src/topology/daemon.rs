//! The processes the harness runs for a scenario: gobgpd and the driver in
//! a host, zebra, bgpd and BIRD in a router, dockerd and its mount holder.
//!
//! In: a program, its arguments and the namespace to start it in. Out: a
//! [`Daemon`] handle, shared with the cleanup stack, that starts, stops,
//! kills, freezes and thaws exactly the pid we started (never a process
//! found by name), and keeps the path of its log; [`await_ready`] polls a
//! readiness check through [`eventually`] and gives up early, with the tail
//! of the log, when the process dies during start-up. `host_daemons`,
//! `routers` and the dockerd engine all use it; it uses none of them.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::Signal;

use crate::cleanup::Cleanup;
use crate::netns::{spawn_in, stop_child};
use crate::util::{eventually, tail};

/// How many log lines a start-up failure shows.
const LOG_TAIL: usize = 30;

/// One daemon process and its log; clones share the process.
#[derive(Clone)]
pub struct Daemon {
    pub child: Arc<Mutex<Option<Child>>>,
    pub log: PathBuf,
}

impl Daemon {
    /// A daemon not started yet, logging to `log`.
    pub fn new(log: PathBuf) -> Daemon {
        Daemon {
            child: Arc::new(Mutex::new(None)),
            log,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `prog` (inside the network namespace at `netns` if given; see
    /// [`spawn_in`]) with its output appended to the log. The process that
    /// ran before, if any, must have been stopped: its handle is replaced.
    pub fn spawn(&self, netns: Option<&Path>, prog: &Path, args: &[String]) -> Result<()> {
        let child = spawn_in(netns, prog, args, &self.log)?;
        *self.lock() = Some(child);
        Ok(())
    }

    /// Registers on `cleanup` the stop (SIGTERM) of whatever process this
    /// handle holds when the stack unwinds.
    pub fn stop_at_cleanup(&self, cleanup: &Cleanup, what: impl Into<String>) {
        let d = self.clone();
        cleanup.push(what, move || d.signal(Signal::SIGTERM));
    }

    pub fn running(&self) -> bool {
        match self.lock().as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|c| c.id())
    }

    /// Stops the process we started (by pid): SIGTERM waits for a clean
    /// exit, SIGKILL is a crash.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        self.signal_within(sig, Duration::from_secs(10))
    }

    /// Sends a signal that does not end the process (SIGSTOP, SIGCONT) to
    /// the pid we started.
    pub fn send(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid()
            .filter(|_| self.running())
            .ok_or_else(|| anyhow!("not running"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .with_context(|| format!("send {sig} to pid {pid}"))
    }

    /// Like [`Daemon::signal`], waiting up to `timeout` before SIGKILL.
    pub fn signal_within(&self, sig: Signal, timeout: Duration) -> Result<()> {
        let taken = self.lock().take();
        if let Some(mut c) = taken {
            stop_child(&mut c, sig, timeout)?;
        }
        Ok(())
    }
}

/// Polls `ready` every `interval` until it answers `Ok`, for at most
/// `within` (already scaled by the caller), and returns how long it took.
/// Fails at once, with the tail of its log, when one of `daemons` exits: a
/// dead daemon will not become ready, and its log says why.
pub fn await_ready(
    what: &str,
    daemons: &[&Daemon],
    within: Duration,
    interval: Duration,
    mut ready: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let waited = eventually(within, interval, || match ready() {
        Ok(()) => Ok(None),
        Err(e) => match daemons.iter().find(|d| !d.running()) {
            Some(dead) => Ok(Some((format!("{e:#}"), *dead))),
            None => Err(format!("{e:#}")),
        },
    });
    match waited {
        Ok((None, took)) => Ok(took),
        Ok((Some((last, dead)), _)) => Err(anyhow!(
            "{what} exited during start-up (last answer: {last})\n--- {} ---\n{}",
            dead.log.display(),
            tail(&dead.log, LOG_TAIL)
        )),
        Err(diff) => {
            let mut msg = format!("{what} not ready: {diff}");
            for d in daemons {
                msg.push_str(&format!(
                    "\n--- {} ---\n{}",
                    d.log.display(),
                    tail(&d.log, LOG_TAIL)
                ));
            }
            Err(anyhow!(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(d: &Daemon, script: &str) {
        d.spawn(
            None,
            Path::new("/bin/sh"),
            &["-c".to_string(), script.to_string()],
        )
        .unwrap();
    }

    #[test]
    fn a_daemon_that_dies_fails_fast_with_its_log() {
        let dir = std::env::temp_dir().join(format!("harness-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = Daemon::new(dir.join("dies.log"));
        sh(&d, "echo broken config line 7; exit 3");
        let t = std::time::Instant::now();
        let e = await_ready(
            "toy",
            &[&d],
            Duration::from_secs(20),
            Duration::from_millis(5),
            || Err(anyhow!("no socket")),
        )
        .unwrap_err()
        .to_string();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(e.contains("exited during start-up"), "{e}");
        assert!(e.contains("broken config line 7"), "{e}");
        assert!(e.contains("no socket"), "{e}");

        let d = Daemon::new(dir.join("lives.log"));
        sh(&d, "exec sleep 30");
        let e = await_ready(
            "toy",
            &[&d],
            Duration::from_millis(50),
            Duration::from_millis(5),
            || Err(anyhow!("no socket")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not ready") && e.contains("no socket"), "{e}");
        assert!(d.running());
        let mut n = 0;
        await_ready(
            "toy",
            &[&d],
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n < 3 {
                    Err(anyhow!("not yet"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap();
        d.signal(Signal::SIGTERM).unwrap();
        assert!(!d.running() && d.pid().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_daemon_that_ignores_sigterm_is_killed_after_the_timeout() {
        let dir = std::env::temp_dir().join(format!("harness-daemon-t-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = Daemon::new(dir.join("stubborn.log"));
        // A busy loop, not `sleep`: no grandchild outlives the shell.
        sh(&d, "trap '' TERM; echo up; while :; do :; done");
        await_ready(
            "stubborn",
            &[&d],
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                if std::fs::read_to_string(&d.log)
                    .unwrap_or_default()
                    .contains("up")
                {
                    Ok(())
                } else {
                    Err(anyhow!("not up"))
                }
            },
        )
        .unwrap();
        let pid = d.pid().unwrap();
        let t = std::time::Instant::now();
        let e = d
            .signal_within(Signal::SIGTERM, Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not exit") && e.contains("killed"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(!crate::netns::process_alive(pid));
        assert!(!d.running());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
