//! The state on disk: what the driver must remember across its own restarts.
//!
//! Docker never replays CreateNetwork, so networks, their endpoints, the
//! links we made for them and what is announced live under `--state-dir`:
//! a snapshot, `state.json`, and a journal beside it, `state.journal`.
//! In: each change as a [`Record`] ([`crate::model::state`]), checked
//! against the state, appended to the journal as one JSON line and made
//! durable with `fdatasync` before it is applied to the in-memory
//! [`State`] and Docker gets its answer ([`Store::commit`]): a change
//! costs one small write, whatever the number of endpoints (the time a
//! thread spends in commits: [`take_commit_time`]). Out: the state
//! at start, the snapshot with the journal replayed over it.
//! When the journal outgrows the snapshot it is compacted: the whole state
//! is written as a new snapshot atomically (temporary file, fsync, rename,
//! fsync of the directory), then the journal goes, so each change costs
//! O(1) amortised and the files stay within about twice the state.
//!
//! What holds, and what the tests inject a failure for each of:
//! - a change is acknowledged only once its record is durable in the
//!   journal; a snapshot never acknowledges one (compaction runs after the
//!   record is durable, and its failure costs nothing but a retry);
//! - a refused change never replays: a record whose write or `fdatasync`
//!   failed is cut off the journal, and if it cannot be cut, a snapshot of
//!   the state *before* it is written at once, which makes that journal an
//!   absorbed one; until a snapshot succeeds, no change is accepted;
//! - directory fsync errors are errors (a rename or a new journal that is
//!   not durable is not acknowledged);
//! - the journal's header names the snapshot generation it continues: its
//!   own generation is replayed, the exact previous one is known as
//!   absorbed by a compaction cut short; any other is an error naming both
//!   files (a snapshot restored from a backup never silently drops a newer
//!   journal).
//!
//! A crash leaves either record whole or a torn last line, which loading
//! ignores (and logs); a whole line that is not a record, or one the state
//! refuses, is an error naming the file and line. Snapshots of version 1
//! and 2 without a journal load as before. The IPv6 fields of networks and
//! endpoints are optional and left out for IPv4-only networks: files from
//! before IPv6 load, and an earlier driver still reads what this one writes
//! for IPv4-only networks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::model::state::{Record, State, VERSION};

thread_local! {
    /// Time this thread spent in [`Store::commit`] (the write, its
    /// `fdatasync`, a compaction) since [`take_commit_time`] last read it.
    static COMMIT_TIME: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// The time this thread spent committing records since the last call (and
/// starts counting again): the plugin socket's "answered" line reports it
/// per call as `commit_ms`, the part of `run_ms` spent making the state durable.
pub fn take_commit_time() -> std::time::Duration {
    COMMIT_TIME.replace(std::time::Duration::ZERO)
}

pub const STATE_FILE: &str = "state.json";
/// The journal of changes since the snapshot, one JSON record a line.
pub const JOURNAL_FILE: &str = "state.journal";
/// Version of the journal's format, in its header line.
const JOURNAL_VERSION: u32 = 1;
/// The journal is compacted once it is larger than the snapshot and this.
const JOURNAL_MIN: u64 = 64 * 1024;

/// The journal's first line: which snapshot it continues.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    journal: u32,
    generation: u64,
}

/// The snapshot as written: the state plus the generation that ties a
/// journal to it (absent in files of earlier versions: generation 0).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    #[serde(flatten)]
    state: &'a State,
    #[serde(skip_serializing_if = "is_zero")]
    generation: u64,
}

#[derive(Deserialize)]
struct SnapshotIn {
    #[serde(flatten)]
    state: State,
    #[serde(default)]
    generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The file operations a test can make fail (see `Store::faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Fault {
    /// `fdatasync` of a journal record.
    RecordSync,
    /// Cutting a failed record off the journal (`ftruncate`).
    Cut,
    /// `fsync` of the temporary snapshot.
    SnapshotSync,
    /// `fsync` of the state directory (after a rename, a new or removed journal).
    DirSync,
    /// Removing an absorbed journal.
    Remove,
}

/// The state on disk: the snapshot and the journal of changes since.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Generation of the snapshot on disk; the journal names it in its header.
    generation: u64,
    /// Open for appending, positioned at its end; `None`: none yet (the next
    /// append creates it with its header).
    journal: Option<File>,
    /// Bytes of the journal that hold whole records (header included).
    journal_len: u64,
    /// Records in the journal.
    records: usize,
    /// Bytes of the last snapshot written or read.
    snapshot_len: u64,
    /// The next change must first write a snapshot: the journal may end
    /// with a refused record, or the last snapshot's rename may not be
    /// durable (so the journal it replaced must not be appended to).
    must_snapshot: bool,
    /// A journal of an earlier generation may still be on disk (its removal
    /// failed, or loading found one absorbed): removed before the next
    /// snapshot, so a leftover journal is only ever the exact previous one.
    absorbed_left: bool,
    /// Test hooks: the next append writes this many bytes, then fails; and
    /// the file operations that fail (with EIO) while listed.
    #[cfg(test)]
    pub(crate) fail_next_append: Option<usize>,
    #[cfg(test)]
    pub(crate) faults: std::collections::HashSet<Fault>,
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
    #[error("state journal {path}, line {line}: {reason}; move the journal away to start from the snapshot {STATE_FILE} alone (losing the changes it records), or restore a backup")]
    Journal {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A change that does not fit the state: nothing was written.
    #[error("state change refused: {0}")]
    Refused(String),
}

/// What loading found in the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records applied.
    pub records: usize,
    /// Bytes of a torn last record that were ignored.
    pub torn_bytes: u64,
    /// The journal belonged to the previous snapshot (a compaction was cut
    /// short after writing the snapshot) and was ignored.
    pub stale: bool,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            generation: 0,
            journal: None,
            journal_len: 0,
            records: 0,
            snapshot_len: 0,
            must_snapshot: false,
            absorbed_left: false,
            #[cfg(test)]
            fail_next_append: None,
            #[cfg(test)]
            faults: std::collections::HashSet::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Records in the journal since the last snapshot.
    pub fn journal_records(&self) -> usize {
        self.records
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    }

    /// Fails with EIO where a test asked for `f` to fail; nothing otherwise.
    fn inject(&self, f: Fault) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.contains(&f) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let _ = f;
        Ok(())
    }

    /// Loads the state (the snapshot, then the journal replayed over it),
    /// or an empty one if there is no file yet.
    pub fn load(&mut self) -> Result<State, StoreError> {
        self.load_replayed().map(|(s, _)| s)
    }

    /// [`Store::load`], also saying what the journal held.
    pub fn load_replayed(&mut self) -> Result<(State, Replayed), StoreError> {
        let path = self.path();
        let (mut state, generation, snapshot_len) = match fs::read(&path) {
            Ok(bytes) => {
                let snap: SnapshotIn = serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::Corrupt { path, source })?;
                (snap.state, snap.generation, bytes.len() as u64)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                State {
                    version: VERSION,
                    ..State::default()
                },
                0,
                0,
            ),
            Err(e) => return Err(self.io(&path)(e)),
        };
        self.generation = generation;
        self.snapshot_len = snapshot_len;
        self.journal = None;
        self.journal_len = 0;
        self.records = 0;
        self.must_snapshot = false;
        self.absorbed_left = false;
        let replayed = self.replay(&mut state)?;
        self.absorbed_left = replayed.stale;
        Ok((state, replayed))
    }

    /// Applies the journal's whole records to `state`. A last line without
    /// its newline is a record torn by a crash: ignored, and cut off before
    /// the next append. A whole line that is not a record is an error.
    fn replay(&mut self, state: &mut State) -> Result<Replayed, StoreError> {
        let path = self.journal_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replayed::default()),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let mut out = Replayed::default();
        let mut pos = 0usize;
        let mut line = 0usize;
        while pos < bytes.len() {
            let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') else {
                out.torn_bytes = (bytes.len() - pos) as u64;
                warn!(journal = %path.display(), line = line + 1, bytes = out.torn_bytes, "ignoring a torn last record in the state journal (the driver stopped while writing it; that change was never acknowledged)");
                break;
            };
            let text = &bytes[pos..pos + nl];
            line += 1;
            let bad = |reason: String| StoreError::Journal {
                path: path.clone(),
                line,
                reason,
            };
            if line == 1 {
                let h: Header = serde_json::from_slice(text)
                    .map_err(|e| bad(format!("not a journal header ({e})")))?;
                if h.journal != JOURNAL_VERSION {
                    return Err(bad(format!(
                        "journal version {} (this driver reads {JOURNAL_VERSION})",
                        h.journal
                    )));
                }
                if h.generation + 1 == self.generation {
                    // The snapshot that absorbed it was written, the journal
                    // not yet removed: everything in it is in the snapshot.
                    info!(journal = %path.display(), journal_generation = h.generation, snapshot_generation = self.generation, "ignoring a state journal that the last compaction already absorbed");
                    out.stale = true;
                    return Ok(out);
                }
                if h.generation != self.generation {
                    return Err(bad(format!(
                        "it continues snapshot generation {}, but {STATE_FILE} is generation {} \
                         (a snapshot {} than its journal: restored from a backup, or copied \
                         from another host?); nothing was changed",
                        h.generation,
                        self.generation,
                        if h.generation > self.generation {
                            "older"
                        } else {
                            "newer by more than one compaction"
                        },
                    )));
                }
            } else {
                let rec: Record = serde_json::from_slice(text)
                    .map_err(|e| bad(format!("not a state record ({e})")))?;
                state.apply(&rec).map_err(bad)?;
                out.records += 1;
            }
            pos += nl + 1;
        }
        self.journal_len = pos as u64;
        self.records = out.records;
        if out.torn_bytes > 0 && pos == 0 {
            // Not even the header survived: start a fresh journal.
            self.journal_len = 0;
        }
        Ok(out)
    }

    /// Writes the whole state as a new snapshot, atomically (temporary file,
    /// fsync, rename, fsync of the directory), and drops the journal it
    /// absorbs. A crash between the two leaves a journal of the previous
    /// generation, which [`Store::load`] ignores. An error anywhere means
    /// the new snapshot may or may not be the one on disk: the next change
    /// writes a snapshot again before it is journaled.
    pub fn save(&mut self, state: &State) -> Result<(), StoreError> {
        let saved = self.write_snapshot(state);
        if saved.is_err() {
            self.must_snapshot = true;
        }
        saved
    }

    fn write_snapshot(&mut self, state: &State) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let journal = self.journal_path();
        if self.absorbed_left {
            // Gone before a newer snapshot makes it two generations old.
            self.remove_journal()?;
        }
        let path = self.path();
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let generation = self.generation + 1;
        let mut data =
            serde_json::to_vec_pretty(&SnapshotOut { state, generation }).map_err(|e| {
                StoreError::Io {
                    path: path.clone(),
                    source: io::Error::other(e),
                }
            })?;
        data.push(b'\n');
        {
            let mut f = File::create(&tmp).map_err(self.io(&tmp))?;
            f.write_all(&data).map_err(self.io(&tmp))?;
            self.inject(Fault::SnapshotSync)
                .and_then(|_| f.sync_all())
                .map_err(self.io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        // From here the new snapshot may be the one on disk: the journal it
        // absorbs is of the previous generation, never appended to again.
        self.generation = generation;
        self.snapshot_len = data.len() as u64;
        self.journal = None;
        self.journal_len = 0;
        self.records = 0;
        self.absorbed_left = journal.exists();
        self.sync_dir()?;
        self.must_snapshot = false;
        if self.absorbed_left {
            // Harmless if it stays: its header names the previous generation.
            if let Err(e) = self.remove_journal() {
                warn!(error = %e, "could not remove the absorbed state journal; retried before the next snapshot");
            }
        }
        Ok(())
    }

    /// Removes the journal (an absorbed one) and makes that durable.
    fn remove_journal(&mut self) -> Result<(), StoreError> {
        let journal = self.journal_path();
        match self
            .inject(Fault::Remove)
            .and_then(|_| fs::remove_file(&journal))
        {
            Ok(()) => self.sync_dir()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&journal)(e)),
        }
        self.absorbed_left = false;
        Ok(())
    }

    /// Makes the directory's entries (a rename, a new or removed file) durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        self.inject(Fault::DirSync)
            .and_then(|_| File::open(&self.dir)?.sync_all())
            .map_err(self.io(&self.dir))
    }

    /// Whether a compaction is due: once the journal outgrows the snapshot
    /// (and a floor), so each change costs O(1) amortised, and disk use
    /// stays within twice the snapshot.
    fn compaction_due(&self) -> bool {
        self.journal_len > JOURNAL_MIN.max(self.snapshot_len)
    }

    /// Makes `rec` durable, then applies it to `state`: the one way a change
    /// is accepted. Refused (with nothing of it on disk, and `state` as it
    /// was) when it does not fit `state` or cannot be written; a record whose
    /// write failed halfway is cut off, or, where that fails too, a snapshot
    /// of `state` without it is written at once, so it can never replay.
    /// Afterwards, a compaction if one is due (its failure is logged: the
    /// record is durable already).
    pub fn commit(&mut self, state: &mut State, rec: &Record) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let done = self.commit_timed(state, rec);
        COMMIT_TIME.set(COMMIT_TIME.get() + started.elapsed());
        done
    }

    fn commit_timed(&mut self, state: &mut State, rec: &Record) -> Result<(), StoreError> {
        state.check(rec).map_err(StoreError::Refused)?;
        self.append(state, rec)?;
        state.apply(rec).map_err(StoreError::Refused)?;
        if self.compaction_due() {
            if let Err(e) = self.save(state) {
                warn!(error = %e, "could not compact the state journal; the change is in the journal, and the next one writes a snapshot first");
            }
        }
        Ok(())
    }

    /// Appends `rec` to the journal; `before` is the state without it.
    fn append(&mut self, before: &State, rec: &Record) -> Result<(), StoreError> {
        if self.must_snapshot {
            // The journal may end with a refused record, or the snapshot
            // that replaced it may not be durable: start from a fresh one,
            // of the state without `rec`.
            self.save(before)?;
        }
        let path = self.journal_path();
        let mut line = serde_json::to_vec(rec).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        if self.journal.is_none() {
            self.open_journal()?;
        }
        if let Err(e) = self.write_record(&line) {
            if !self.cut_back() {
                // The refused record may still be in the journal: a snapshot
                // of the state without it absorbs that journal.
                warn!(journal = %path.display(), "could not cut a failed record off the state journal; writing a snapshot without it");
                if let Err(e) = self.save(before) {
                    warn!(error = %e, "could not write the snapshot either; no change is accepted until one succeeds");
                }
            }
            return Err(self.io(&path)(e));
        }
        self.journal_len += line.len() as u64;
        self.records += 1;
        Ok(())
    }

    fn write_record(&mut self, line: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        let partial = self.fail_next_append.take();
        let sync = self.inject(Fault::RecordSync);
        let Some(f) = self.journal.as_mut() else {
            return Err(io::Error::other("the journal is not open"));
        };
        #[cfg(test)]
        if let Some(n) = partial {
            f.write_all(&line[..n.min(line.len())])?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        f.write_all(line)?;
        sync?;
        f.sync_data()
    }

    /// After a failed append: the journal ends at the last whole record
    /// again. False when that cannot be made durable (the caller then
    /// absorbs the journal into a snapshot).
    fn cut_back(&mut self) -> bool {
        let len = self.journal_len;
        let fault = self.inject(Fault::Cut);
        let cut = self.journal.as_mut().map(|f| {
            fault
                .and_then(|_| f.set_len(len))
                .and_then(|_| f.seek(SeekFrom::End(0)))
                .and_then(|_| f.sync_data())
        });
        if matches!(cut, Some(Ok(_))) {
            return true;
        }
        self.journal = None;
        self.must_snapshot = true;
        false
    }

    /// Opens the journal for appending: an existing one (of this snapshot's
    /// generation, cut to its whole records), or a new one with its header,
    /// durable (the file and its directory entry) before any record.
    fn open_journal(&mut self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.journal_path();
        let io = |e| StoreError::Io {
            path: path.clone(),
            source: e,
        };
        if self.journal_len > 0 {
            let mut f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            if f.metadata().map_err(io)?.len() != self.journal_len {
                f.set_len(self.journal_len).map_err(io)?;
            }
            f.seek(SeekFrom::End(0)).map_err(io)?;
            self.journal = Some(f);
            return Ok(());
        }
        let mut header = serde_json::to_vec(&Header {
            journal: JOURNAL_VERSION,
            generation: self.generation,
        })
        .map_err(|e| io(io::Error::other(e)))?;
        header.push(b'\n');
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(&header).map_err(io)?;
        f.sync_all().map_err(io)?;
        // An absorbed journal of the previous generation was just replaced.
        self.absorbed_left = false;
        self.sync_dir()?;
        self.journal_len = header.len() as u64;
        self.records = 0;
        self.journal = Some(f);
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file
/// beside it, fsync, rename, fsync of the directory (whose errors are
/// errors). For the small files beside the state (the announcer's ledger).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{
        Announce, Dataplane, EndpointSpec, IpvlanFlag, IpvlanMode, NetworkSpec, Parent,
    };
    use crate::model::state::{EndpointRecord, NetworkRecord};

    fn sample() -> State {
        let spec = NetworkSpec {
            id: "a".repeat(64),
            parent: Parent::parse("eth1.10").unwrap(),
            dataplane: Dataplane::Ipvlan {
                mode: IpvlanMode::L3,
                flag: IpvlanFlag::Bridge,
            },
            subnet: Some("10.1.1.0/24".parse().unwrap()),
            gateway: Some("10.1.1.1/24".parse().unwrap()),
            subnet6: None,
            gateway6: None,
            announce: Announce::Subnet,
            internal: false,
            host_link: false,
            attrs: Default::default(),
            cluster_ipam: false,
        };
        let ep = EndpointRecord {
            spec: EndpointSpec {
                id: "b".repeat(64),
                address: Some("10.1.1.2/24".parse().unwrap()),
                address6: None,
                mac: Some([2, 0, 0, 0, 0, 1]),
                attrs: Default::default(),
            },
            link: "ibebbbbbbbbbbbb".into(),
            joined: true,
            sandbox: "/var/run/docker/netns/x".into(),
            unmarked: false,
            health: None,
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
        let mut store = Store::new(dir.path());
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
        let mut store = Store::new(dir.path());
        fs::write(store.path(), old).unwrap();
        let mut want = sample();
        want.version = 1;
        assert_eq!(store.load().unwrap(), want);
        // A macvlan network, as written then.
        let mac = r#"{"dataplane":"macvlan","mode":"vepa"}"#;
        assert_eq!(
            serde_json::from_str::<Dataplane>(mac).unwrap(),
            Dataplane::Macvlan {
                mode: crate::model::network::MacvlanMode::Vepa
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
        let mut store = Store::new(dir.path());
        fs::write(store.path(), b"{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read(store.path()).unwrap(), b"{not json");
    }

    fn endpoint(id: &str, addr: &str, joined: bool) -> EndpointRecord {
        EndpointRecord {
            spec: EndpointSpec {
                id: id.into(),
                address: Some(addr.parse().unwrap()),
                address6: None,
                mac: None,
                attrs: Default::default(),
            },
            link: format!("ibe{}", &id[..12]),
            joined,
            sandbox: if joined {
                "/run/netns/x".into()
            } else {
                String::new()
            },
            unmarked: false,
            health: None,
        }
    }

    /// Commits `rec` to `st`, as the driver does.
    fn change(store: &mut Store, st: &mut State, rec: Record) {
        store.commit(st, &rec).unwrap();
    }

    /// Changes of every kind on top of [`sample`]'s network.
    fn changes() -> Vec<Record> {
        let net = "a".repeat(64);
        let spec = sample().networks[&net].spec.clone();
        let (e1, e2) = ("1".repeat(64), "2".repeat(64));
        vec![
            Record::PutEndpoint {
                network: net.clone(),
                endpoint: endpoint(&e1, "10.1.1.3/24", false),
            },
            Record::PutEndpoint {
                network: net.clone(),
                endpoint: endpoint(&e1, "10.1.1.3/24", true),
            },
            Record::PutEndpoint {
                network: net.clone(),
                endpoint: endpoint(&e2, "10.1.1.4/24", false),
            },
            Record::RemoveEndpoint {
                network: net.clone(),
                id: e2.clone(),
            },
            Record::PutNetwork {
                spec: NetworkSpec {
                    id: "d".repeat(64),
                    subnet: Some("10.2.0.0/16".parse().unwrap()),
                    gateway: Some("10.2.0.1/16".parse().unwrap()),
                    subnet6: Some("fd00:2::/64".parse().unwrap()),
                    gateway6: Some("fd00:2::1/64".parse().unwrap()),
                    ..spec
                },
                shim: Some("ibsdddddddddddd".into()),
            },
            Record::RemoveNetwork { id: "d".repeat(64) },
        ]
    }

    fn journal(store: &Store) -> Vec<u8> {
        fs::read(store.journal_path()).unwrap_or_default()
    }

    #[test]
    fn the_journal_replays_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        let snapshot = fs::read(store.path()).unwrap();
        for rec in changes() {
            change(&mut store, &mut st, rec);
        }
        // The snapshot is untouched: each change is one line of the journal.
        assert_eq!(fs::read(store.path()).unwrap(), snapshot);
        let lines = journal(&store).iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 1 + changes().len());
        assert_eq!(store.journal_records(), changes().len());
        let mut again = Store::new(dir.path());
        let (loaded, replayed) = again.load_replayed().unwrap();
        assert_eq!(loaded, st);
        assert_eq!(replayed.records, changes().len());
        assert!(st.was_deleted(&"2".repeat(64)) && st.was_deleted(&"d".repeat(64)));
        // Appending goes on where the loaded journal ends.
        let rec = Record::RemoveEndpoint {
            network: "a".repeat(64),
            id: "1".repeat(64),
        };
        change(&mut again, &mut st, rec);
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    /// The time a thread spends committing is counted (a commit's
    /// `fdatasync` takes some) and read once: the next read starts from zero.
    #[test]
    fn the_time_spent_committing_is_counted_and_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        take_commit_time();
        let rec = changes().remove(0);
        change(&mut store, &mut st, rec);
        assert!(take_commit_time() > std::time::Duration::ZERO);
        assert_eq!(take_commit_time(), std::time::Duration::ZERO);
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        let recs = changes();
        change(&mut store, &mut st, recs[0].clone());
        let whole = journal(&store);
        // The driver died while writing the next record.
        let torn = serde_json::to_vec(&recs[1]).unwrap();
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(store.journal_path(), &bytes).unwrap();
        let mut again = Store::new(dir.path());
        let (loaded, replayed) = again.load_replayed().unwrap();
        assert_eq!(loaded, st);
        assert_eq!(replayed.records, 1);
        assert_eq!(replayed.torn_bytes, (torn.len() / 2) as u64);
        // The next record replaces the torn bytes instead of following them.
        let mut st2 = loaded;
        change(&mut again, &mut st2, recs[2].clone());
        assert!(journal(&again).starts_with(&whole));
        assert_eq!(Store::new(dir.path()).load().unwrap(), st2);
        // Even a torn header is no failure: the snapshot alone.
        fs::write(store.journal_path(), b"{\"journ").unwrap();
        assert_eq!(Store::new(dir.path()).load().unwrap(), sample());
    }

    #[test]
    fn an_unknown_record_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        change(&mut store, &mut st, changes()[0].clone());
        let mut bytes = journal(&store);
        bytes.extend_from_slice(b"{\"op\":\"frobnicate\",\"id\":\"x\"}\n");
        bytes.extend_from_slice(&serde_json::to_vec(&changes()[1]).unwrap());
        bytes.push(b'\n');
        fs::write(store.journal_path(), &bytes).unwrap();
        let err = Store::new(dir.path()).load().unwrap_err();
        assert!(
            matches!(err, StoreError::Journal { line: 3, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("state.journal") && msg.contains("line 3"),
            "{msg}"
        );
        // A record that does not fit the state is refused just as loudly.
        let header = journal(&store)
            .split(|b| *b == b'\n')
            .next()
            .unwrap()
            .to_vec();
        let mut bytes = header;
        bytes.extend_from_slice(b"\n{\"op\":\"remove_network\",\"id\":\"nope\"}\n");
        fs::write(store.journal_path(), &bytes).unwrap();
        let msg = Store::new(dir.path()).load().unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("nope"), "{msg}");
    }

    #[test]
    fn the_journal_is_compacted_once_it_outgrows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        let net = "a".repeat(64);
        let mut compactions = 0;
        let mut most = 0;
        for i in 0..400u32 {
            let id = format!("{i:064x}");
            let rec = Record::PutEndpoint {
                network: net.clone(),
                endpoint: endpoint(&id, "10.1.1.9/24", i % 2 == 0),
            };
            let before = store.generation;
            change(&mut store, &mut st, rec);
            if store.generation != before {
                compactions += 1;
                assert_eq!(store.journal_records(), 0);
                assert!(!store.journal_path().exists());
            }
            most = most.max(journal(&store).len() as u64);
        }
        // ~300 bytes a record, 64 KiB at most in the journal: a few compactions.
        assert!((1..=3).contains(&compactions), "{compactions}");
        assert!(most <= JOURNAL_MIN + 1024, "{most}");
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    #[test]
    fn a_journal_absorbed_by_a_cut_short_compaction_is_not_replayed_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        for rec in changes() {
            change(&mut store, &mut st, rec);
        }
        let old = journal(&store);
        // Compaction wrote the snapshot; the driver died before the journal went.
        store.save(&st).unwrap();
        fs::write(store.journal_path(), &old).unwrap();
        // Replayed again, `remove_network` of a gone network would fail.
        let mut again = Store::new(dir.path());
        let (loaded, replayed) = again.load_replayed().unwrap();
        assert_eq!(loaded, st);
        assert!(replayed.stale);
        let rec = changes()[0].clone();
        change(&mut again, &mut st, rec);
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    #[test]
    fn a_failed_append_leaves_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        change(&mut store, &mut st, changes()[0].clone());
        let before = journal(&store);
        // The disk fills up halfway through the next record.
        store.fail_next_append = Some(40);
        let mut failed = st.clone();
        let err = store.commit(&mut failed, &changes()[1]).unwrap_err();
        assert!(err.to_string().contains("state.journal"), "{err}");
        assert_eq!(failed, st);
        assert_eq!(journal(&store), before);
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
        // And the next change goes in whole.
        change(&mut store, &mut st, changes()[2].clone());
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    /// A store with [`sample`] saved and the first change journaled.
    fn journaled(dir: &Path) -> (Store, State) {
        let mut store = Store::new(dir);
        let mut st = sample();
        store.save(&st).unwrap();
        change(&mut store, &mut st, changes()[0].clone());
        (store, st)
    }

    #[test]
    fn directory_fsync_errors_are_errors() {
        // After the snapshot's rename: the save fails, and the next change
        // starts from a snapshot again.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut st) = journaled(dir.path());
        store.faults.insert(Fault::DirSync);
        let err = store.save(&st).unwrap_err();
        assert!(err.to_string().contains("Input/output error"), "{err}");
        store.faults.clear();
        let generation = store.generation;
        change(&mut store, &mut st, changes()[1].clone());
        assert_eq!(store.generation, generation + 1, "a snapshot first");
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
        // A new journal whose directory entry is not durable: the change is refused.
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut st = sample();
        store.save(&st).unwrap();
        store.faults.insert(Fault::DirSync);
        let before = st.clone();
        assert!(store.commit(&mut st, &changes()[0]).is_err());
        assert_eq!(st, before);
        store.faults.clear();
        assert_eq!(Store::new(dir.path()).load().unwrap(), before);
        change(&mut store, &mut st, changes()[0].clone());
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    #[test]
    fn a_refused_record_never_replays() {
        let join = changes()[1].clone();
        // fdatasync fails: the record is cut off again.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, st) = journaled(dir.path());
        store.faults.insert(Fault::RecordSync);
        let mut failed = st.clone();
        assert!(store.commit(&mut failed, &join).is_err());
        assert_eq!(failed, st);
        assert_eq!(Store::new(dir.path()).load().unwrap(), st, "cut off");
        // ... and cannot be cut off (nor the journal removed): a snapshot
        // without it makes the journal that holds it an absorbed one.
        store.faults.extend([Fault::Cut, Fault::Remove]);
        assert!(store.commit(&mut failed, &join).is_err());
        assert_eq!(failed, st);
        let text = String::from_utf8(journal(&store)).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "the refused record is still there: {text}"
        );
        assert_eq!(Store::new(dir.path()).load().unwrap(), st, "absorbed");
        // ... and not even that snapshot can be written: nothing is accepted
        // until one can, and the first change then starts with it.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, st) = journaled(dir.path());
        store
            .faults
            .extend([Fault::RecordSync, Fault::Cut, Fault::SnapshotSync]);
        let mut failed = st.clone();
        assert!(store.commit(&mut failed, &join).is_err());
        assert!(store.commit(&mut failed, &changes()[2]).is_err());
        assert_eq!(failed, st);
        store.faults.clear();
        let mut st = st;
        change(&mut store, &mut st, changes()[2].clone());
        let loaded = Store::new(dir.path()).load().unwrap();
        assert_eq!(loaded, st);
        let e1 = "1".repeat(64);
        assert!(
            !loaded.networks[&"a".repeat(64)].endpoints[&e1].joined,
            "the refused join replayed"
        );
    }

    #[test]
    fn a_failed_compaction_refuses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut st) = journaled(dir.path());
        // Due at the next change.
        store.journal_len = JOURNAL_MIN + 1;
        store.faults.insert(Fault::SnapshotSync);
        let generation = store.generation;
        change(&mut store, &mut st, changes()[1].clone());
        assert_eq!(store.generation, generation);
        store.faults.clear();
        assert_eq!(Store::new(dir.path()).load().unwrap(), st, "in the journal");
        change(&mut store, &mut st, changes()[2].clone());
        assert_eq!(store.generation, generation + 1, "a snapshot first");
        assert_eq!(Store::new(dir.path()).load().unwrap(), st);
    }

    #[test]
    fn only_the_exact_previous_generation_counts_as_absorbed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut st) = journaled(dir.path());
        let backup = fs::read(store.path()).unwrap();
        // Two compactions later, the journal continues generation 3.
        store.save(&st).unwrap();
        store.save(&st).unwrap();
        change(&mut store, &mut st, changes()[1].clone());
        let newer = journal(&store);
        // The snapshot restored from a backup (generation 1) must not drop it.
        fs::write(store.path(), &backup).unwrap();
        let err = Store::new(dir.path()).load().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::Journal { line: 1, .. })
                && msg.contains("generation 3")
                && msg.contains("generation 1"),
            "{msg}"
        );
        assert_eq!(journal(&store), newer, "nothing was changed");
        // A journal two generations behind its snapshot is no leftover either.
        let dir = tempfile::tempdir().unwrap();
        let (mut store, st) = journaled(dir.path());
        let old = journal(&store);
        store.save(&st).unwrap();
        store.save(&st).unwrap();
        fs::write(store.journal_path(), &old).unwrap();
        assert!(Store::new(dir.path()).load().is_err());
        // The exact previous one is absorbed, and goes before the next snapshot.
        store.save(&st).unwrap();
        let prev = {
            let mut s = Store::new(dir.path());
            s.load().unwrap();
            s.generation - 1
        };
        fs::write(
            store.journal_path(),
            format!("{{\"journal\":{JOURNAL_VERSION},\"generation\":{prev}}}\n{{\"op\":\"remove_network\",\"id\":\"gone\"}}\n"),
        )
        .unwrap();
        let mut again = Store::new(dir.path());
        let (loaded, replayed) = again.load_replayed().unwrap();
        assert!(replayed.stale);
        assert_eq!(loaded, st);
        again.faults.insert(Fault::Remove);
        assert!(again.save(&st).is_err(), "the leftover cannot go");
        assert!(Store::new(dir.path()).load().is_ok());
        again.faults.clear();
        again.save(&st).unwrap();
        assert!(!again.journal_path().exists());
    }

    #[test]
    fn a_snapshot_of_this_version_reads_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        store.save(&sample()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["generation"], 1);
        assert!(v["networks"].is_object() && v["deleted"].is_array());
    }

    /// IPv6 fields are absent from the records of IPv4-only networks, so a
    /// journal or snapshot written before IPv6 (version 2, no `subnet6`,
    /// no `address6`) loads, and what this version writes for an IPv4-only
    /// network an earlier driver still reads. Dual stack round-trips.
    #[test]
    fn ipv6_fields_are_optional_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let net = "a".repeat(64);
        let ep = "e".repeat(64);
        let header = format!(r#"{{"journal":{JOURNAL_VERSION},"generation":0}}"#);
        let put_net = format!(
            r#"{{"op":"put_network","spec":{{"id":"{net}","parent":{{"name":"eth1","vlan":null}},"dataplane":{{"dataplane":"macvlan","mode":"bridge"}},"subnet":"10.3.0.0/24","gateway":"10.3.0.1/24","announce":"endpoint","internal":false,"host_link":false}},"shim":"ibs1"}}"#
        );
        let put_ep = format!(
            r#"{{"op":"put_endpoint","network":"{net}","endpoint":{{"spec":{{"id":"{ep}","address":"10.3.0.2/24","mac":null}},"link":"ibe1","joined":true,"sandbox":"/x"}}}}"#
        );
        fs::write(
            store.journal_path(),
            format!("{header}\n{put_net}\n{put_ep}\n"),
        )
        .unwrap();
        let st = Store::new(dir.path()).load().unwrap();
        let n = &st.networks[&net];
        assert_eq!(n.spec.subnet, Some("10.3.0.0/24".parse().unwrap()));
        assert_eq!((n.spec.subnet6, n.spec.gateway6), (None, None));
        let e = &n.endpoints[&ep].spec;
        assert_eq!(e.address, Some("10.3.0.2/24".parse().unwrap()));
        assert_eq!(e.address6, None);
        // Written back: no IPv6 keys at all for an IPv4-only network.
        let text = serde_json::to_string(&st).unwrap();
        assert!(
            !text.contains("subnet6") && !text.contains("address6"),
            "{text}"
        );
        // Dual stack and IPv6-only records round-trip.
        let mut st = st;
        let n = st.networks.get_mut(&net).unwrap();
        n.spec.subnet6 = Some("fd00:3::/64".parse().unwrap());
        n.spec.gateway6 = Some("fd00:3::1/64".parse().unwrap());
        let e = n.endpoints.get_mut(&ep).unwrap();
        e.spec.address6 = Some("fd00:3::2/64".parse().unwrap());
        let mut v6only = n.clone();
        v6only.spec.id = "f".repeat(64);
        v6only.spec.subnet = None;
        v6only.spec.gateway = None;
        v6only.spec.subnet6 = Some("fd00:4::/64".parse().unwrap());
        v6only.spec.gateway6 = None;
        v6only.endpoints.clear();
        st.networks.insert(v6only.spec.id.clone(), v6only);
        let back: State = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(back, st);
    }
}
