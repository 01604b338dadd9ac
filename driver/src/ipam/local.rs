//! This host's IPAM state on disk: the blocks it holds and the addresses it
//! gave out, so that a restarted driver keeps handing out addresses from
//! its blocks while etcd is unreachable (invariant 11).
//!
//! In: the state as `mod.rs` changed it. Out: `ipam.json` in the driver's
//! state directory, written atomically (temporary file, fsync, rename,
//! fsync of the directory) before a request is answered; read at start.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::alloc::PoolState;

/// Everything the IPAM keeps about this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    pub host: String,
    /// A random id of this driver instance, registered with the host id:
    /// a second driver configured with the same host id is refused.
    pub instance: String,
    pub pools: BTreeMap<IpNet, PoolState>,
}

/// The state file.
#[derive(Clone, Debug)]
pub struct LocalFile {
    path: PathBuf,
}

impl LocalFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or None if there is no file yet.
    pub fn load(&self) -> Result<Option<LocalState>, String> {
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    pub fn save(&self, state: &LocalState) -> Result<(), String> {
        let at = |e: std::io::Error| format!("{}: {e}", self.path.display());
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        {
            let mut f = fs::File::create(&tmp).map_err(at)?;
            f.write_all(&body).map_err(at)?;
            f.sync_all().map_err(at)?;
        }
        fs::rename(&tmp, &self.path).map_err(at)?;
        if let Some(dir) = self.path.parent().and_then(|d| fs::File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// A random instance id (hex), from std's randomly keyed hasher, the time
/// and the pid: unique enough to tell two driver instances apart.
pub fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let f = LocalFile::new(dir.path().join("ipam.json"));
        assert_eq!(f.load().unwrap(), None);
        let mut s = LocalState {
            host: "192.0.2.1".into(),
            instance: new_instance_id(),
            pools: BTreeMap::new(),
        };
        let p: IpNet = "10.20.0.0/16".parse().unwrap();
        let mut ps = PoolState::new(p, 26);
        ps.add_block("10.20.0.0/26".parse().unwrap(), 4, 10);
        ps.take(
            "10.20.0.1".parse().unwrap(),
            super::super::alloc::Use::Gateway,
        )
        .unwrap();
        s.pools.insert(p, ps);
        f.save(&s).unwrap();
        assert_eq!(f.load().unwrap(), Some(s));
        assert!(!dir.path().join("ipam.json.tmp").exists());
        std::fs::write(f.path(), b"{").unwrap();
        assert!(f.load().unwrap_err().contains("ipam.json"));
        assert_ne!(new_instance_id(), new_instance_id());
    }
}
