//! The containers' image: busybox-static imported into each dockerd from
//! a local tar (no registry is reachable), made once per process.
//!
//! In: the machine's busybox. Out: `ibh-busybox.tar` in the temporary
//! folder, replaced atomically, so runs leave no tar each behind.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::util::run_output;

/// The image every container of the dockerd engine runs.
pub const IMAGE: &str = "ibh-busybox:latest";

/// A tar of a busybox-static root file system, made once per process into
/// one shared file (`ibh-busybox.tar` in the temporary folder, replaced
/// atomically), so runs leave no tar each behind.
pub(super) fn busybox_tar() -> Result<PathBuf> {
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
