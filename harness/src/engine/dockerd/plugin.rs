//! The driver as a managed (v2) Docker plugin, for scenarios with
//! `[driver] plugin = true` (dockerd engine only).
//!
//! The plugin folder is built once per run by `plugin/build.sh` from the
//! driver binary under test, embedding the run's GoBGP line (or built
//! beforehand and named by `HARNESS_PLUGIN_DIR`, checked to hold that same
//! binary, and used when it embeds the run's line); then each host's
//! dockerd installs it the way
//! the README tells operators to: `docker plugin create`, `docker plugin
//! set` with the settings that stand for the host's driver flags, `docker
//! plugin enable`. The host's gobgpd stays the harness's own, reached
//! through the plugin's `host-run` mount; restarts of "the driver" are
//! `docker plugin disable` and `enable`.
//!
//! In: the run's driver binary and host `i`'s driver flags. Out: the
//! plugin folder (and a second version of it for an upgrade), `docker
//! plugin set` settings, and the socket links that
//! make the plugin's driver (and an embedded gobgpd) reachable where the
//! harness looks for them. Owns no process: dockerd runs the plugin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::topology::World;
use crate::util::{eventually, run_output};

/// The plugin's name as `docker plugin create` gets it; networks use it
/// with `-d`.
pub const NAME: &str = "ipvlan-bgp:latest";
/// Where the plugin sees the folder set as `host-run.source` (config.json).
const HOST_RUN: &str = "/host/run";
/// Where the plugin sees the folder set as `etcd.source` (config.json).
const ETCD_DIR: &str = "/etc/ipvlan-bgp";
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository's `plugin/` folder (config.json, entrypoint, build.sh).
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin")
}

/// The variable naming a plugin folder built beforehand by `plugin/build.sh`
/// from the driver under test (`ci/test.sh` builds it once on the host, so
/// a VM under emulation does not strip and copy a debug binary per run).
pub const PREBUILT_ENV: &str = "HARNESS_PLUGIN_DIR";

/// What `plugin/build.sh` writes into `driver.stamp`: the driver binary's
/// size and modification time (seconds).
fn stamp(driver: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(driver).with_context(|| format!("stat {}", driver.display()))?;
    Ok(format!("{} {}", m.len(), m.mtime()))
}

/// The GoBGP line a plugin folder embeds (`plugin/build.sh --gobgp`,
/// written to `gobgp.line`; a folder without it embeds 3.x).
fn embedded_line(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("gobgp.line"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|_| "v3".into())
}

/// The plugin folder for this run: the prebuilt one ([`PREBUILT_ENV`]) when
/// it holds this run's driver and embeds the run's GoBGP line, else one
/// built for the run (once).
pub fn folder(w: &World) -> Result<PathBuf> {
    let line = w.gobgp_line().to_string();
    let prebuilt = std::env::var_os(PREBUILT_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| embedded_line(d) == line);
    if let Some(dir) = prebuilt {
        let want = stamp(&w.opts.driver_bin)?;
        let have = std::fs::read_to_string(dir.join("driver.stamp")).unwrap_or_default();
        if have.trim() != want {
            bail!(
                "{PREBUILT_ENV}={} holds another driver binary (stamp {:?}, {} has {want:?}): rebuild it with plugin/build.sh --driver {} --out {}",
                dir.display(),
                have.trim(),
                w.opts.driver_bin.display(),
                w.opts.driver_bin.display(),
                dir.display()
            );
        }
        return Ok(dir);
    }
    let out = w.dir.join("plugin");
    if out.join("config.json").exists() {
        return Ok(out);
    }
    let script = source_dir().join("build.sh");
    let args = [
        "--driver".to_string(),
        w.opts.driver_bin.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--gobgp".into(),
        line,
    ];
    let o = run_output(&script.display().to_string(), &args, BUILD_TIMEOUT)?;
    if !o.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(out)
}

/// What the second version's description ends with ([`second_version`]).
pub const V2_MARK: &str = "(v2, the harness's upgrade)";
/// The file only the second version's root file system has.
const V2_FILE: &str = "ipvlan-bgp-v2";

/// A second version of this run's plugin, for `docker plugin upgrade`: the
/// run's folder copied, its config.json's description ending with
/// [`V2_MARK`] and a file [`V2_FILE`] in its root file system (another
/// config and layer, so another image and digest). Made once.
pub fn second_version(w: &World) -> Result<PathBuf> {
    let v1 = folder(w)?;
    let out = w.dir.join("plugin-v2");
    let config = out.join("config.json");
    if config.exists() {
        return Ok(out);
    }
    let _ = std::fs::remove_dir_all(&out);
    let (from, to) = (v1.display().to_string(), out.display().to_string());
    let o = run_output("cp", &["-a", &from, &to], BUILD_TIMEOUT)?;
    if !o.status.success() {
        bail!(
            "cp -a {from} {to}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    // Another root file system too: dockerd 20.10 refuses to create a
    // plugin whose layer it already holds ("content ...: already exists").
    let stamp = out.join("rootfs").join(V2_FILE);
    std::fs::write(&stamp, format!("{V2_MARK}\n"))
        .with_context(|| format!("write {}", stamp.display()))?;
    let text =
        std::fs::read_to_string(&config).with_context(|| format!("read {}", config.display()))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", config.display()))?;
    let description = json["description"].as_str().unwrap_or_default().to_string();
    json["description"] = format!("{description} {V2_MARK}").into();
    std::fs::write(&config, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("write {}", config.display()))?;
    Ok(out)
}

/// `docker plugin set` arguments (`KEY=VALUE`) that stand for host `i`'s
/// driver flags: the ones with a setting of their own map to it, the rest
/// go to `EXTRA_ARGS`.
pub fn settings(w: &World, i: usize) -> Result<Vec<String>> {
    let h = &w.hosts[i];
    let out = settings_for(&w.driver_args(i), &h.dir, h.def.embedded_gobgpd)?;
    if let Some(dir) = out.iter().find_map(|s| s.strip_prefix("state.source=")) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {dir}"))?;
    }
    Ok(out)
}

/// The mapping behind [`settings`]: `host_dir` holds the host's gobgpd
/// socket (mounted as `host-run`), `embedded` asks for gobgpd in the plugin.
fn settings_for(args: &[String], host_dir: &Path, embedded: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    let mut pools: Vec<String> = Vec::new();
    let mut communities: Vec<String> = Vec::new();
    // The etcd files must share one folder: the plugin's etcd mount.
    let mut etcd_dir: Option<std::path::PathBuf> = None;
    let mut etcd_file = |flag: &str, v: String, key: &str| -> Result<String> {
        let p = Path::new(&v);
        let (dir, name) = (p.parent(), p.file_name());
        let (Some(dir), Some(name)) = (dir, name) else {
            bail!("{flag} {v}: not a file path");
        };
        match &etcd_dir {
            Some(d) if d != dir => {
                bail!(
                    "{flag} {v}: the plugin mounts one folder of etcd files ({})",
                    d.display()
                )
            }
            _ => etcd_dir = Some(dir.to_path_buf()),
        }
        Ok(format!("{key}={ETCD_DIR}/{}", name.to_string_lossy()))
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("driver flag {flag} has no value"))
        };
        match flag.as_str() {
            // dockerd gives the plugin its socket.
            "--socket" => drop(value()?),
            "--state-dir" => out.push(format!("state.source={}", value()?)),
            "--parent" => out.push(format!("PARENT={}", value()?)),
            "--asn" => out.push(format!("ASN={}", value()?)),
            "--router-id" => out.push(format!("ROUTER_ID={}", value()?)),
            "--peer" => peers.push(value()?),
            "--accept-pool" => pools.push(value()?),
            "--community" => communities.push(value()?),
            "--next-hop" => out.push(format!("NEXT_HOP={}", value()?)),
            "--log-level" => out.push(format!("LOG_LEVEL={}", value()?)),
            "--etcd-endpoints" => out.push(format!("ETCD_ENDPOINTS={}", value()?)),
            "--etcd-user" => out.push(format!("ETCD_USER={}", value()?)),
            "--ipam-host-id" => out.push(format!("IPAM_HOST_ID={}", value()?)),
            "--etcd-ca" => out.push(etcd_file(flag, value()?, "ETCD_CA")?),
            "--etcd-cert" => out.push(etcd_file(flag, value()?, "ETCD_CERT")?),
            "--etcd-key" => out.push(etcd_file(flag, value()?, "ETCD_KEY")?),
            "--etcd-password-file" => out.push(etcd_file(flag, value()?, "ETCD_PASSWORD_FILE")?),
            "--gobgp" if embedded => {
                drop(value()?);
                out.push("GOBGP=embedded".into());
            }
            "--gobgp" => {
                let v = value()?;
                let gobgp = match v.strip_prefix("unix://").map(Path::new) {
                    Some(sock) if sock.parent() == Some(host_dir) => {
                        out.push(format!("host-run.source={}", host_dir.display()));
                        let name = sock
                            .file_name()
                            .ok_or_else(|| anyhow!("--gobgp {v}: no file name"))?;
                        format!("unix://{HOST_RUN}/{}", name.to_string_lossy())
                    }
                    Some(_) => bail!("--gobgp {v}: the plugin sees only the host's run folder"),
                    None => v,
                };
                out.push(format!("GOBGP={gobgp}"));
            }
            other => extra.push(other.to_string()),
        }
    }
    if let Some(bad) = extra
        .iter()
        .chain(&peers)
        .chain(&pools)
        .chain(&communities)
        .find(|a| a.chars().any(char::is_whitespace))
    {
        bail!("driver argument {bad:?} has white space: the plugin's list settings split on it");
    }
    // Without the IPAM's files, the etcd mount shows the state folder, as
    // the plugin's default does (a mount's source must exist).
    let state = out
        .iter()
        .find_map(|s| s.strip_prefix("state.source="))
        .map(std::path::PathBuf::from);
    if let Some(d) = etcd_dir.or(state) {
        out.push(format!("etcd.source={}", d.display()));
    }
    for (key, list) in [
        ("PEERS", &peers),
        ("ACCEPT_POOLS", &pools),
        ("COMMUNITIES", &communities),
    ] {
        if !list.is_empty() {
            out.push(format!("{key}={}", list.join(" ")));
        }
    }
    if !extra.is_empty() {
        out.push(format!("EXTRA_ARGS={}", extra.join(" ")));
    }
    Ok(out)
}

/// Links `link` to `file` in the folder dockerd makes for the plugin
/// beside its socket (`plugins/<plugin id>/`), once it is there.
fn link_from_plugin_folder(
    h: &crate::topology::HostRt,
    file: &str,
    link: &Path,
) -> std::result::Result<(), String> {
    let target = std::fs::read_dir(h.plugin_dir())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path().join(file))
        .find(|p| p.exists())
        .ok_or_else(|| format!("no {file} in the plugin's folder yet"))?;
    if std::fs::read_link(link).ok().as_ref() != Some(&target) {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&target, link).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits until host `i`'s plugin answers Activate on its socket, reached
/// through `plugin.sock` in the host's folder (see `HostRt::socket`).
pub fn await_ready(w: &World, i: usize) -> Result<()> {
    let h = &w.hosts[i];
    eventually(
        w.opts.scale(Duration::from_secs(30)),
        Duration::from_millis(50),
        || {
            link_from_plugin_folder(h, "ipvlan-bgp.sock", &h.dir.join("plugin.sock"))?;
            w.driver_ready(i).map_err(|e| format!("{e:#}"))
        },
    )
    .map_err(|e| anyhow!("the {NAME} plugin on {} did not answer: {e}", h.def.name))?;
    Ok(())
}

/// For a host whose plugin embeds gobgpd: links `gobgpd.sock` in the host's
/// folder (where the harness's client and the `gobgp` CLI look) to the API
/// socket the plugin makes beside its own, and waits until gobgpd answers.
pub fn link_embedded_gobgpd(w: &World, i: usize) -> Result<()> {
    let h = &w.hosts[i];
    eventually(
        w.opts.scale(Duration::from_secs(30)),
        Duration::from_millis(50),
        || {
            link_from_plugin_folder(h, "gobgpd.sock", &h.gobgp_api())?;
            w.gobgpd_ready(i).map_err(|e| format!("{e:#}"))
        },
    )
    .map_err(|e| {
        anyhow!(
            "the gobgpd inside {}'s plugin did not answer: {e}",
            h.def.name
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_become_settings_and_the_rest_extra_args() {
        let a = args(&[
            "--socket",
            "/h/plugins/ipvlan-bgp.sock",
            "--state-dir",
            "/h/state",
            "--parent",
            "eth1",
            "--gobgp",
            "unix:///h/gobgpd.sock",
            "--asn",
            "65000",
            "--peer",
            "192.0.2.2:65000,hold=9",
            "--peer",
            "192.0.2.3:65000",
            "--accept-pool",
            "10.1.0.0/16",
            "--stale-routes-time",
            "10",
        ]);
        let s = settings_for(&a, Path::new("/h"), false).unwrap();
        assert_eq!(
            s,
            args(&[
                "state.source=/h/state",
                "PARENT=eth1",
                "host-run.source=/h",
                "GOBGP=unix:///host/run/gobgpd.sock",
                "ASN=65000",
                "etcd.source=/h/state",
                "PEERS=192.0.2.2:65000,hold=9 192.0.2.3:65000",
                "ACCEPT_POOLS=10.1.0.0/16",
                "EXTRA_ARGS=--stale-routes-time 10",
            ])
        );
    }

    #[test]
    fn etcd_flags_become_settings_and_their_files_one_mount() {
        let a = args(&[
            "--etcd-endpoints",
            "https://192.0.2.254:2379,https://192.0.2.253:2379",
            "--etcd-ca",
            "/r/etcd/h1/ca.crt",
            "--etcd-cert",
            "/r/etcd/h1/client.crt",
            "--etcd-key",
            "/r/etcd/h1/client.key",
            "--etcd-user",
            "h1",
            "--etcd-password-file",
            "/r/etcd/h1/password",
        ]);
        let s = settings_for(&a, Path::new("/h"), false).unwrap();
        assert_eq!(
            s,
            args(&[
                "ETCD_ENDPOINTS=https://192.0.2.254:2379,https://192.0.2.253:2379",
                "ETCD_CA=/etc/ipvlan-bgp/ca.crt",
                "ETCD_CERT=/etc/ipvlan-bgp/client.crt",
                "ETCD_KEY=/etc/ipvlan-bgp/client.key",
                "ETCD_USER=h1",
                "ETCD_PASSWORD_FILE=/etc/ipvlan-bgp/password",
                "etcd.source=/r/etcd/h1",
            ])
        );
        let split = args(&["--etcd-ca", "/a/ca.crt", "--etcd-cert", "/b/client.crt"]);
        assert!(settings_for(&split, Path::new("/h"), false).is_err());
    }

    #[test]
    fn embedded_gobgpd_and_refusals() {
        let a = args(&["--gobgp", "unix:///h/gobgpd.sock", "--asn", "65000"]);
        let s = settings_for(&a, Path::new("/h"), true).unwrap();
        assert_eq!(s, args(&["GOBGP=embedded", "ASN=65000"]));
        // A socket the plugin cannot see, a value that would split, a flag without value.
        assert!(settings_for(
            &args(&["--gobgp", "unix:///elsewhere/x.sock"]),
            Path::new("/h"),
            false
        )
        .is_err());
        assert!(settings_for(&args(&["--community", "a b"]), Path::new("/h"), false).is_err());
        assert!(settings_for(&args(&["--parent"]), Path::new("/h"), false).is_err());
    }
}
