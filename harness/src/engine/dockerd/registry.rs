//! The run's Docker registry, for scenarios with `[driver] registry = HOST`:
//! Debian's `docker-registry` (distribution 2.x) in that host's network
//! namespace, listening on its underlay address, port [`PORT`], storing
//! under the run's folder. Every host's dockerd trusts it over plain HTTP
//! (`--insecure-registry`); `docker plugin push` and `upgrade` talk to it.
//!
//! In: the [`World`] (the host named by `[driver] registry`). Out: the
//! registry's `ADDR:PORT`, the process started and awaited, registered for
//! cleanup (stopped by pid, its storage removed).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::topology::daemon::{await_ready, Daemon};
use crate::topology::World;
use crate::util::require;

/// The registry's port (distribution's usual one).
pub const PORT: u16 = 5000;

/// `ADDR:PORT` of the run's registry, when the scenario has one.
pub fn address(w: &World) -> Result<Option<String>> {
    let Some(name) = w.registry_host() else {
        return Ok(None);
    };
    let h = w.host(name)?;
    Ok(Some(format!("{}:{PORT}", h.addr.addr())))
}

/// Starts the registry (when the scenario has one) and waits until it
/// listens. On the harness's main thread: the process dies with the
/// thread that started it.
pub fn start(w: &World) -> Result<()> {
    let Some(addr) = address(w)? else {
        return Ok(());
    };
    let h = w.host(w.registry_host().unwrap_or_default())?;
    let bin = require("docker-registry")?;
    let dir = w.dir.join("registry");
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).with_context(|| format!("create {}", storage.display()))?;
    let config = dir.join("config.yml");
    std::fs::write(&config, config_yaml(&storage, &addr))
        .with_context(|| format!("write {}", config.display()))?;
    let d = Daemon::new(dir.join("registry.log"));
    let gone = dir.clone();
    w.cleanup.push("remove the registry's storage", move || {
        let _ = std::fs::remove_dir_all(&gone);
        Ok(())
    });
    d.stop_at_cleanup(&w.cleanup, "stop the docker registry");
    d.spawn(
        Some(&h.ns.path()),
        &bin,
        &["serve".into(), config.display().to_string()],
    )?;
    let pid = d
        .pid()
        .ok_or_else(|| anyhow!("docker-registry did not start"))?;
    await_ready(
        &format!("docker-registry on {addr}"),
        &[&d],
        w.opts.scale(Duration::from_secs(20)),
        Duration::from_millis(50),
        || listens(pid, PORT),
    )?;
    Ok(())
}

/// distribution's configuration: filesystem storage, plain HTTP on `addr`.
fn config_yaml(storage: &Path, addr: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        storage.display()
    )
}

/// Whether process `pid` (through its network namespace's table) has a
/// TCP socket listening on `port`.
fn listens(pid: u32, port: u16) -> Result<()> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .with_context(|| format!("read /proc/{pid}/net/tcp"))?;
    let want = format!(":{port:04X}");
    // Fields: sl local_address rem_address st ... (st 0A = LISTEN).
    let listening = table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    });
    if !listening {
        bail!("nothing listens on port {port} yet");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_storage_and_address() {
        let y = config_yaml(Path::new("/r/storage"), "192.0.2.66:5000");
        assert!(y.contains("rootdirectory: /r/storage\n"), "{y}");
        assert!(y.contains("addr: 192.0.2.66:5000\n"), "{y}");
    }
}
