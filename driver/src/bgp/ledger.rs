//! What the announcer added to gobgpd, remembered across the driver's own
//! restarts: its proof of ownership.
//!
//! In: the prefixes the announcer is about to add (with their next hop),
//! the UUID gobgpd answered for each unary AddPath, and the prefixes it
//! withdrew. Out: `<state-dir>/announced.json` (written atomically, see
//! [`crate::store::write_atomic`]) and, after a restart, the answer to
//! "did we add this path?" ([`Ledger::proves`]) and the UUID to withdraw it
//! by. A path in gobgpd is adopted only when the ledger holds its prefix
//! with that next hop: a path that merely lies in a pool and carries our
//! next hop (an operator's own) is never taken for ours.
//!
//! Measured on gobgpd 3.10, and the same on 4.x (docs/gobgp-v4.md §3, 4.8's
//! server.go): AddPath answers the path's UUID (16 bytes); AddPathStream
//! answers none (3.x `google.protobuf.Empty`, 4.x an empty message);
//! ListPath leaves `uuid` empty; a DeletePath by a UUID that no longer
//! exists (the path was withdrawn, or replaced by another AddPath for the
//! prefix) fails with "can't find a specified path" (4.x: "... path(s)
//! with the given UUID(s)"). Both codecs pass the UUID through
//! [`super::gobgp::GobgpApi::add_path`] and
//! [`super::gobgp::GobgpApi::delete_path_uuid`]. So a UUID cannot be matched against gobgpd's RIB; the
//! proof is the ledger's own record, written *before* the paths are added
//! (a crash between the two leaves a record, never an unrecorded path),
//! and a withdrawal after a restart goes by UUID where one is known, so
//! that a path someone else put in ours' place is left alone. Paths added
//! in bulk (AddPathStream) have no UUID; theirs goes by prefix and next hop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// The ledger's file in the state directory.
pub const LEDGER_FILE: &str = "announced.json";
const VERSION: u32 = 1;

/// One path the announcer added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub next_hop: IpAddr,
    /// gobgpd's UUID of the path (hex), when AddPath answered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    paths: BTreeMap<IpNet, Entry>,
}

/// The announcer's paths in gobgpd, as far as it knows.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Where it is kept; `None`: only in memory (tests, tools).
    path: Option<PathBuf>,
    paths: BTreeMap<IpNet, Entry>,
}

impl Ledger {
    /// The ledger in `dir` (empty if there is none yet). One that cannot be
    /// read proves nothing: it is logged, and no path is adopted.
    pub fn open(dir: Option<PathBuf>) -> Ledger {
        let path = dir.map(|d| d.join(LEDGER_FILE));
        let paths = match path.as_ref().map(std::fs::read) {
            None => BTreeMap::new(),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Some(Err(e)) => {
                warn!(error = %e, "cannot read the announcer's ledger: no path in gobgpd is taken for ours");
                BTreeMap::new()
            }
            Some(Ok(bytes)) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) if f.version == VERSION => f.paths,
                Ok(f) => {
                    warn!(version = f.version, "the announcer's ledger is of another version: no path in gobgpd is taken for ours");
                    BTreeMap::new()
                }
                Err(e) => {
                    warn!(error = %e, "the announcer's ledger is corrupt: no path in gobgpd is taken for ours");
                    BTreeMap::new()
                }
            },
        };
        Ledger { path, paths }
    }

    /// Whether the announcer added a path for `prefix` with `next_hop`.
    pub fn proves(&self, prefix: &IpNet, next_hop: IpAddr) -> bool {
        self.paths
            .get(prefix)
            .is_some_and(|e| e.next_hop == next_hop)
    }

    /// gobgpd's UUID of our path for `prefix`, if AddPath answered one.
    pub fn uuid(&self, prefix: &IpNet) -> Option<Vec<u8>> {
        let hex = self.paths.get(prefix)?.uuid.as_deref()?;
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    /// Paths about to be added: recorded (without a UUID: the new path
    /// replaces any earlier one of ours, and its UUID) before they are.
    pub fn intend(&mut self, adds: impl IntoIterator<Item = (IpNet, IpAddr)>) {
        for (prefix, next_hop) in adds {
            self.paths.insert(
                prefix,
                Entry {
                    next_hop,
                    uuid: None,
                },
            );
        }
    }

    /// gobgpd answered `uuid` for our path of `prefix`.
    pub fn added(&mut self, prefix: IpNet, uuid: &[u8]) {
        if let Some(e) = self.paths.get_mut(&prefix) {
            e.uuid = (!uuid.is_empty()).then(|| uuid.iter().map(|b| format!("{b:02x}")).collect());
        }
    }

    /// Our path of `prefix` is no longer in gobgpd.
    pub fn removed(&mut self, prefix: &IpNet) {
        self.paths.remove(prefix);
    }

    /// Keeps only the prefixes `keep` says are still in gobgpd.
    pub fn retain(&mut self, mut keep: impl FnMut(&IpNet) -> bool) {
        self.paths.retain(|p, _| keep(p));
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Every path recorded (for `cleanup`).
    pub fn paths(&self) -> &BTreeMap<IpNet, Entry> {
        &self.paths
    }

    /// What [`Ledger::save`] would write, and where: serialized here, so
    /// the write itself can go to a blocking thread.
    pub fn snapshot(&self) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path.clone()?;
        let file = File {
            version: VERSION,
            paths: self.paths.clone(),
        };
        let bytes = serde_json::to_vec(&file).ok()?;
        Some((path, bytes))
    }

    /// Writes the ledger (atomically, durably). Blocking.
    pub fn save(&self) -> Result<(), crate::store::StoreError> {
        match self.snapshot() {
            Some((path, bytes)) => crate::store::write_atomic(&path, &bytes),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proves_what_it_recorded_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p: IpNet = "10.1.1.2/32".parse().unwrap();
        let q: IpNet = "10.1.1.3/32".parse().unwrap();
        let nh: IpAddr = "192.0.2.1".parse().unwrap();
        let mut l = Ledger::open(Some(dir.path().to_path_buf()));
        assert!(l.is_empty());
        l.intend([(p, nh), (q, nh)]);
        l.added(p, &[0xde, 0xad, 0x01]);
        l.save().unwrap();
        let mut l = Ledger::open(Some(dir.path().to_path_buf()));
        assert!(l.proves(&p, nh) && l.proves(&q, nh));
        assert!(!l.proves(&p, "192.0.2.9".parse().unwrap()));
        assert_eq!(l.uuid(&p), Some(vec![0xde, 0xad, 0x01]));
        assert_eq!(l.uuid(&q), None);
        l.removed(&p);
        l.save().unwrap();
        let l = Ledger::open(Some(dir.path().to_path_buf()));
        assert!(!l.proves(&p, nh) && l.proves(&q, nh));
        // A corrupt ledger proves nothing.
        std::fs::write(dir.path().join(LEDGER_FILE), b"{nope").unwrap();
        assert!(Ledger::open(Some(dir.path().to_path_buf())).is_empty());
    }
}
