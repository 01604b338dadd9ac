//! How a run finds its binaries and where it writes: [`Options`].
//!
//! In: the environment (`IPVLAN_BGP_BIN`, `HARNESS_RUN_DIR`,
//! `HARNESS_TIME_SCALE`) and the command line. Out: the driver binary's
//! path, the run root, the deadline scale, whether to keep a failed
//! topology, the GoBGP line to run. Owns no state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::scenario::{GobgpLine, Scenario};

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
    /// The GoBGP line to run instead of the scenario's first
    /// (`harness run --gobgp-version`; the test suite sets each of the
    /// scenario's lines in turn).
    pub gobgp: Option<GobgpLine>,
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
            gobgp: None,
        })
    }

    /// The GoBGP line a run of `s` uses: the override, else the scenario's
    /// first; `None` for a scenario without BGP.
    pub fn line_for(&self, s: &Scenario) -> Option<GobgpLine> {
        let first = s.gobgp.first().copied()?;
        Some(self.gobgp.unwrap_or(first))
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
