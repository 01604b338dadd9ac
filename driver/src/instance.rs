//! One driver per state directory (invariant 9): the start-up lock, and the
//! identity an instance marks its links with.
//!
//! In: the state directory. Out: a [`StateLock`], held for the life of the
//! process: an exclusive `flock` on `<state-dir>/lock` with the holder's
//! pid written in it, so that a second driver on the same directory refuses
//! to start and names the pid that holds it (the kernel drops the lock when
//! the process dies, however it dies). And [`new_id`]: a random identity
//! for a state that has none yet, made once and kept in the state
//! ([`crate::model::state::State::instance`]); two instances with two state
//! directories on one host (the binary and a managed plugin, say) mark
//! their links differently and never sweep each other's.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::model::names::INSTANCE_CHARS;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another ipvlan-bgp ({holder}) holds the state directory {dir} (lock file {file}): \
         one driver per state directory; stop that one, or give this one its own --state-dir and --socket"
    )]
    Held {
        dir: String,
        file: String,
        /// "pid N", or what the file says.
        holder: String,
    },
    #[error("cannot lock the state directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: io::Error,
    },
}

/// The state directory's lock, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of `dir` (creating the directory if needed) without
    /// waiting, and writes our pid into it.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let io_err = |source| LockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let text = text.trim();
                let holder = match text.parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) if text.is_empty() => {
                        "a process that has not written its pid yet".into()
                    }
                    Err(_) => format!("{text:?}"),
                };
                return Err(LockError::Held {
                    dir: dir.display().to_string(),
                    file: path.display().to_string(),
                    holder,
                });
            }
            Err((_, e)) => return Err(io_err(io::Error::from_raw_os_error(e as i32))),
        };
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        Ok(StateLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A fresh instance identity: 64 random bits as 16 hex digits.
pub fn new_id() -> io::Result<String> {
    let mut b = [0u8; INSTANCE_CHARS / 2];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::valid_instance;

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{pid}\n")
        );
        // flock is per open file: a second open in this process conflicts
        // as another process's would.
        let e = StateLock::acquire(&state).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {pid}")), "{e}");
        assert!(e.contains("one driver per state directory"), "{e}");
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        drop(again);
    }

    #[test]
    fn identities_are_valid_and_differ() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(valid_instance(&a) && valid_instance(&b), "{a} {b}");
        assert_ne!(a, b);
    }
}
