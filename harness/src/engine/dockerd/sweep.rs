//! What dockerds leave behind, removed: containerd shims (they daemonize,
//! so they outlive a killed dockerd), container processes and cgroup
//! folders; at the end of a run, and at the start of the next one for runs
//! that were killed.
//!
//! In: a run folder or cgroup name. Out: processes killed, folders
//! removed (best effort), a count for the sweep. Owns nothing.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{eventually, scaled};

/// Removes `name` (and anything below it) from every cgroup v1 controller
/// and the v2 tree, deepest first.
pub(super) fn remove_cgroups(name: &str) {
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
pub(super) fn kill_shims_under(dir: &Path) {
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
