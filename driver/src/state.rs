//! What the driver must remember across its own restarts.
//!
//! Docker never replays CreateNetwork, so networks, their endpoints, the
//! links we made for them and what is announced live in one JSON file under
//! `--state-dir`. It is written atomically (temporary file, fsync, rename,
//! fsync of the directory) after every change, so a crash leaves either the
//! old or the new state, never a torn one.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::{EndpointSpec, NetworkSpec};

pub const STATE_FILE: &str = "state.json";
/// 2: links carry our mark. A file of version 1 records links made before
/// marks existed; the driver adopts those once (see [`EndpointRecord::unmarked`]).
pub const VERSION: u32 = 2;
/// How many deleted IDs are remembered so that a replayed delete is harmless.
const TOMBSTONES: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Recently deleted network and endpoint IDs (replays of their deletion succeed).
    #[serde(default)]
    pub deleted: VecDeque<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub spec: NetworkSpec,
    /// The host-side link holding the gateway (L2 shim, or the L3 host link).
    pub shim: Option<String>,
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub spec: EndpointSpec,
    /// The host-side name of the container's link.
    pub link: String,
    /// Joined to a sandbox: the link exists (in the container) and is announced.
    pub joined: bool,
    #[serde(default)]
    pub sandbox: String,
    /// Its link was made before links were marked and was inside the
    /// container when the driver upgraded the state: when Docker brings it
    /// back, it is recognised by this record's name, kind and parent, once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmarked: bool,
}

impl State {
    pub fn remember_deleted(&mut self, id: &str) {
        self.deleted.retain(|d| d != id);
        self.deleted.push_back(id.to_string());
        while self.deleted.len() > TOMBSTONES {
            self.deleted.pop_front();
        }
    }

    pub fn was_deleted(&self, id: &str) -> bool {
        self.deleted.iter().any(|d| d == id)
    }

    pub fn endpoint_count(&self) -> usize {
        self.networks.values().map(|n| n.endpoints.len()).sum()
    }
}

/// The state file on disk.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "state file {path} is corrupt ({source}); move it away to start empty, or restore a backup"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    }

    /// Loads the state, or an empty one if there is no file yet.
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                })
            }
            Err(e) => return Err(self.io(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.path();
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let mut data = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        data.push(b'\n');
        {
            let mut f = File::create(&tmp).map_err(self.io(&tmp))?;
            f.write_all(&data).map_err(self.io(&tmp))?;
            f.sync_all().map_err(self.io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Announce, Dataplane, IpvlanFlag, IpvlanMode, Parent};

    fn sample() -> State {
        let spec = NetworkSpec {
            id: "a".repeat(64),
            parent: Parent::parse("eth1.10").unwrap(),
            dataplane: Dataplane::Ipvlan {
                mode: IpvlanMode::L3,
                flag: IpvlanFlag::Bridge,
            },
            subnet: "10.1.1.0/24".parse().unwrap(),
            gateway: Some("10.1.1.1/24".parse().unwrap()),
            announce: Announce::Subnet,
            internal: false,
            host_link: false,
        };
        let ep = EndpointRecord {
            spec: EndpointSpec {
                id: "b".repeat(64),
                address: "10.1.1.2/24".parse().unwrap(),
                mac: Some([2, 0, 0, 0, 0, 1]),
            },
            link: "ibebbbbbbbbbbbb".into(),
            joined: true,
            sandbox: "/var/run/docker/netns/x".into(),
            unmarked: false,
        };
        let mut st = State {
            version: VERSION,
            ..State::default()
        };
        st.networks.insert(
            spec.id.clone(),
            NetworkRecord {
                spec,
                shim: None,
                endpoints: [(ep.spec.id.clone(), ep)].into(),
            },
        );
        st.remember_deleted("c");
        st
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap().networks.len(), 0);
        let st = sample();
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), st);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![STATE_FILE.to_string()]);
    }

    /// A state file as the driver wrote it before the domain types left the
    /// kernel facade (with the `created_vlan` field it no longer needs) loads
    /// into the same state.
    #[test]
    fn files_of_earlier_versions_still_load() {
        let old = r#"{
  "version": 1,
  "networks": {
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": {
      "spec": {
        "id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "parent": { "name": "eth1.10", "vlan": [ "eth1", 10 ] },
        "dataplane": { "dataplane": "ipvlan", "mode": "l3", "flag": "bridge" },
        "subnet": "10.1.1.0/24",
        "gateway": "10.1.1.1/24",
        "announce": "subnet",
        "internal": false,
        "host_link": false
      },
      "shim": null,
      "created_vlan": true,
      "endpoints": {
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb": {
          "spec": {
            "id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "address": "10.1.1.2/24",
            "mac": [ 2, 0, 0, 0, 0, 1 ]
          },
          "link": "ibebbbbbbbbbbbb",
          "joined": true,
          "sandbox": "/var/run/docker/netns/x"
        }
      }
    }
  },
  "deleted": [ "c" ]
}"#;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        fs::write(store.path(), old).unwrap();
        let mut want = sample();
        want.version = 1;
        assert_eq!(store.load().unwrap(), want);
        // A macvlan network, as written then.
        let mac = r#"{"dataplane":"macvlan","mode":"vepa"}"#;
        assert_eq!(
            serde_json::from_str::<Dataplane>(mac).unwrap(),
            Dataplane::Macvlan {
                mode: crate::network::MacvlanMode::Vepa
            }
        );
        assert_eq!(
            serde_json::to_string(&sample().networks.values().next().unwrap().spec.dataplane)
                .unwrap(),
            r#"{"dataplane":"ipvlan","mode":"l3","flag":"bridge"}"#
        );
    }

    #[test]
    fn corrupt_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        fs::write(store.path(), b"{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read(store.path()).unwrap(), b"{not json");
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut st = State::default();
        for i in 0..(TOMBSTONES + 10) {
            st.remember_deleted(&i.to_string());
        }
        assert_eq!(st.deleted.len(), TOMBSTONES);
        assert!(!st.was_deleted("0"));
        assert!(st.was_deleted(&(TOMBSTONES + 9).to_string()));
    }
}
