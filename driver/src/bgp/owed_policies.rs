//! The policies a StartBgp of ours still owes gobgpd, remembered across the
//! driver's own restarts.
//!
//! In: the state directory (`None`: in memory only, as tests and tools run
//! it), the gobgpd address the session talks to, the AS and router ID our
//! StartBgp is about to set ([`OwedPolicies::promise`], *before* StartBgp),
//! the word that the policies are in ([`OwedPolicies::settle`]), and the AS
//! and router ID a gobgpd that already runs BGP reports. Out:
//! `<state-dir>/policies-owed.json` while our StartBgp has run and its
//! policies (the GRACEFUL_SHUTDOWN import, the `--export own` export) are not
//! known to be in, and the answer to "did our StartBgp on *this* gobgpd leave
//! them owed?" ([`OwedPolicies::owed_by`]).
//!
//! A driver killed between StartBgp and the policies' install leaves gobgpd
//! (which outlives it) running BGP as our AS without the export policy; the
//! restarted driver would take it for an operator's gobgpd and leave it so
//! forever: a dual-homed host passing learned paths on. The mark is its
//! proof that the start was its own: it ties the start to the gobgpd's
//! address, AS and router ID. A mark another gobgpd does not match (another
//! address, AS or router ID: gobgpd restarted with an operator's config) is
//! stale: warned, dropped, and that gobgpd left alone. A mark that cannot
//! be read whole proves nothing, the same way. The file is replaced
//! atomically (written beside, renamed over) and not flushed: like the
//! announcer's ledger ([`super::ledger`]) it must outlive the driver's
//! process, not the machine (a power loss takes gobgpd's BGP with it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::ledger::replace_file;

/// The mark in the state directory.
pub const OWED_FILE: &str = "policies-owed.json";
const VERSION: u32 = 1;

/// Whom the owed policies are owed by: the gobgpd our StartBgp ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    version: u32,
    /// gobgpd's address as the driver dials it (`unix:///run/...` or `host:port`).
    pub gobgp: String,
    pub asn: u32,
    pub router_id: String,
}

impl Mark {
    pub fn new(gobgp: &str, asn: u32, router_id: &str) -> Mark {
        Mark {
            version: VERSION,
            gobgp: gobgp.to_string(),
            asn,
            router_id: router_id.to_string(),
        }
    }
}

/// The mark could not be written: our StartBgp must not run, it could not
/// be proven ours after a restart.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}; BGP is not started until it can be (a start the driver cannot prove its own after a restart could leave gobgpd without the export policy)", .path.display())]
pub struct MarkError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The owed policies' mark, in memory and (with a state directory) on disk.
#[derive(Debug)]
pub struct OwedPolicies {
    dir: Option<PathBuf>,
    gobgp: String,
    mark: Option<Mark>,
    /// The file was read (it is read once, at the first connection).
    read: bool,
}

impl OwedPolicies {
    /// Nothing read yet: the file is read at the first [`OwedPolicies::owed_by`].
    pub fn new(dir: Option<PathBuf>, gobgp: &str) -> OwedPolicies {
        OwedPolicies {
            read: dir.is_none(),
            dir,
            gobgp: gobgp.to_string(),
            mark: None,
        }
    }

    /// Whether our StartBgp left the policies owed on this gobgpd, which
    /// runs BGP as `asn` with `router_id`. A mark that does not match it is
    /// stale: warned and dropped (that gobgpd is not ours to configure).
    pub async fn owed_by(&mut self, asn: u32, router_id: &str) -> bool {
        if !self.read {
            self.read = true;
            if let Some(dir) = self.dir.clone() {
                self.mark = match blocking(move || read(&dir)).await {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) | Err(e) => {
                        warn!(error = %e, "the owed policies' mark cannot be read: it proves nothing, and is dropped");
                        self.drop_mark().await;
                        None
                    }
                };
            }
        }
        let Some(m) = &self.mark else {
            return false;
        };
        if m.gobgp == self.gobgp && m.asn == asn && m.router_id == router_id {
            return true;
        }
        warn!(
            marked_gobgp = %m.gobgp, marked_asn = m.asn, marked_router_id = %m.router_id,
            gobgp = %self.gobgp, gobgpd_asn = asn, gobgpd_router_id = %router_id,
            "a StartBgp of ours left its policies owed on another gobgpd (or before this one restarted with other settings): this gobgpd is left alone, the stale mark dropped"
        );
        self.drop_mark().await;
        false
    }

    /// Before StartBgp: the policies are owed by this start until
    /// [`OwedPolicies::settle`]. Written to disk first; a failed write
    /// leaves the start unproven: the caller must not start BGP.
    pub async fn promise(&mut self, asn: u32, router_id: &str) -> Result<(), MarkError> {
        let mark = Mark::new(&self.gobgp, asn, router_id);
        if let Some(dir) = self.dir.clone() {
            let m = mark.clone();
            let path = dir.join(OWED_FILE);
            blocking(move || write(&dir, &m))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|source| MarkError { path, source })?;
        }
        self.read = true;
        self.mark = Some(mark);
        Ok(())
    }

    /// The policies are in: nothing is owed. A mark that cannot be removed
    /// is warned about; a restarted driver then installs the policies
    /// again, which changes nothing.
    pub async fn settle(&mut self) {
        self.mark = None;
        self.drop_mark().await;
    }

    async fn drop_mark(&mut self) {
        self.mark = None;
        let Some(dir) = self.dir.clone() else {
            return;
        };
        if let Err(e) = blocking(move || remove(&dir))
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            warn!(error = %e, "cannot remove the owed policies' mark: a restarted driver installs the policies again (a no-op when they are in)");
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// The mark in `dir`: `None` when there is none; an error when one is
/// there but cannot be read whole.
pub fn read(dir: &Path) -> Result<Option<Mark>, String> {
    let path = dir.join(OWED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let m: Mark = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.version != VERSION {
        return Err(format!(
            "{}: version {} (this driver writes {VERSION})",
            path.display(),
            m.version
        ));
    }
    Ok(Some(m))
}

/// Writes `mark` to `dir` (created if missing), replacing any mark there whole.
pub fn write(dir: &Path, mark: &Mark) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec(mark).map_err(std::io::Error::other)?;
    replace_file(&dir.join(OWED_FILE), &bytes)
}

/// Removes the mark in `dir`; none there is fine.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(OWED_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCK: &str = "unix:///run/gobgpd.sock";

    #[test]
    fn a_written_mark_reads_back_and_a_removed_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        let m = Mark::new(SOCK, 65000, "192.0.2.1");
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(m.clone())));
        // Replaced whole, nothing left beside it.
        let m2 = Mark::new(SOCK, 65001, "192.0.2.9");
        write(dir.path(), &m2).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(m2)));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OWED_FILE]);
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        remove(dir.path()).unwrap();
    }

    #[test]
    fn a_cut_or_foreign_mark_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let whole = serde_json::to_string(&Mark::new(SOCK, 65000, "192.0.2.1")).unwrap();
        std::fs::write(dir.path().join(OWED_FILE), &whole[..whole.len() / 2]).unwrap();
        assert!(read(dir.path()).unwrap_err().contains(OWED_FILE));
        std::fs::write(dir.path().join(OWED_FILE), whole.replace(":1,", ":2,")).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("version 2"));
        std::fs::write(
            dir.path().join(OWED_FILE),
            whole.replace('}', ",\"extra\":1}"),
        )
        .unwrap();
        assert!(read(dir.path()).is_err());
    }

    #[tokio::test]
    async fn a_promise_survives_a_restart_until_settled() {
        let dir = tempfile::tempdir().unwrap();
        let state = Some(dir.path().join("state"));
        let mut o = OwedPolicies::new(state.clone(), SOCK);
        o.promise(65000, "192.0.2.1").await.unwrap();
        assert!(o.owed_by(65000, "192.0.2.1").await);
        // A restarted driver: a fresh one on the same directory.
        let mut o = OwedPolicies::new(state.clone(), SOCK);
        assert!(o.owed_by(65000, "192.0.2.1").await);
        o.settle().await;
        assert!(!o.owed_by(65000, "192.0.2.1").await);
        let mut o = OwedPolicies::new(state.clone(), SOCK);
        assert!(!o.owed_by(65000, "192.0.2.1").await);
        assert_eq!(read(state.as_deref().unwrap()), Ok(None));
    }

    #[tokio::test]
    async fn a_stale_mark_owes_nothing_and_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = || Some(dir.path().to_path_buf());
        for (gobgp, asn, rid) in [
            (SOCK, 65001, "192.0.2.1"),
            (SOCK, 65000, "192.0.2.2"),
            ("127.0.0.1:50051", 65000, "192.0.2.1"),
        ] {
            write(dir.path(), &Mark::new(gobgp, 65000, "192.0.2.1")).unwrap();
            let mut o = OwedPolicies::new(state(), SOCK);
            assert!(!o.owed_by(asn, rid).await, "{gobgp} {asn} {rid}");
            assert_eq!(read(dir.path()), Ok(None), "the stale mark stayed");
            assert!(!o.owed_by(65000, "192.0.2.1").await);
        }
        // A cut mark proves nothing, and goes.
        std::fs::write(dir.path().join(OWED_FILE), "{\"version\":1,\"gob").unwrap();
        let mut o = OwedPolicies::new(state(), SOCK);
        assert!(!o.owed_by(65000, "192.0.2.1").await);
        assert_eq!(read(dir.path()), Ok(None));
    }

    #[tokio::test]
    async fn without_a_state_dir_the_mark_lives_in_memory() {
        let mut o = OwedPolicies::new(None, SOCK);
        assert!(!o.owed_by(65000, "192.0.2.1").await);
        o.promise(65000, "192.0.2.1").await.unwrap();
        assert!(o.owed_by(65000, "192.0.2.1").await);
        o.settle().await;
        assert!(!o.owed_by(65000, "192.0.2.1").await);
    }

    #[tokio::test]
    async fn a_mark_that_cannot_be_written_fails_the_promise() {
        let dir = tempfile::tempdir().unwrap();
        // The state "directory" is a file: nothing can be written in it.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let mut o = OwedPolicies::new(Some(file.clone()), SOCK);
        let e = o.promise(65000, "192.0.2.1").await.unwrap_err();
        assert_eq!(e.path, file.join(OWED_FILE));
        assert!(e.to_string().contains("not started"), "{e}");
        assert!(!o.owed_by(65000, "192.0.2.1").await);
    }
}
