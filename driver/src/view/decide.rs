//! The one place that decides whether an endpoint is announced.
//!
//! In: the [`Evidence`] about one endpoint: Docker joined it (Join, no Leave
//! since), whether its sandbox is still there (looked at after the driver's
//! own downtime), whether its address is live in the container yet
//! ([`Address`]: Docker configures it after Join), and the health gate's
//! word on its container. Out: a
//! [`Decision`], announce or hold with the reason. The view builder asks it
//! for every endpoint of the state, the start-up check for every joined
//! endpoint whose sandbox it looked at, the health gate for every endpoint
//! announcement it sees. A new kind of evidence (an address-is-live signal,
//! say) is a field of [`Evidence`] and a rule in [`decide`], here and
//! nowhere else.
//!
//! A sandbox is gone only on evidence, never on a failure to look: its
//! namespace file is absent from a directory that can be read and holds
//! other sandboxes, or the host rebooted since ([`Sandbox::at`],
//! [`judge_restart`]), or Docker itself says the endpoint's container is
//! not running (exited, dead, or no container holds the endpoint) on a
//! network Docker knows ([`DockerSays`], [`judge_by_docker`]): real dockerd
//! keeps a killed container's namespace while the driver is down. A file that cannot be looked at (EACCES), a missing
//! or empty directory (the exec root not mounted here), or every sandbox
//! vanishing at once (an exec-root mismatch) proves nothing: announced as
//! before, and said loudly. Pure, but for [`Looker`], which looks at files.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// What is known about one endpoint when its announcement is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Docker joined it to a sandbox, and has not left it since.
    pub joined: bool,
    /// Whether its sandbox (the container's network namespace) is there.
    pub sandbox: Sandbox,
    /// Whether its address is live in the container yet.
    pub address: Address,
    /// The health gate's word on its container.
    pub health: Health,
}

/// Whether an endpoint's address is live inside its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// Seen live (configured, its link up, IPv6 past DAD), or announced
    /// anyway once the bound of the watch passed, or never watched (joined
    /// before the driver started: long live by now; no sandbox named).
    Ready,
    /// Joined, and the driver watches the container for it: Docker has not
    /// configured it yet.
    Pending,
}

/// What is known of an endpoint's sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Not looked at: while the driver runs, Docker's Join and Leave say it.
    Unchecked,
    /// Its namespace file exists.
    Alive,
    /// Gone, on evidence: its file is absent from a readable directory that
    /// holds other sandboxes, or the host rebooted since the Join.
    Gone,
    /// Looked at, and nothing proves it either way (why): announced as before.
    Unknown(&'static str),
}

impl Sandbox {
    /// One look at the sandbox Docker named at Join (`""`: none recorded).
    pub fn at(path: &str) -> Sandbox {
        Looker::default().look(path)
    }
}

/// Looks at sandboxes, reading each directory once (a host's sandboxes
/// share Docker's `<exec-root>/netns`).
#[derive(Debug, Default)]
pub struct Looker {
    /// Directory → whether it holds anything, or why it cannot be read.
    dirs: HashMap<PathBuf, Result<bool, &'static str>>,
}

impl Looker {
    pub fn look(&mut self, path: &str) -> Sandbox {
        if path.is_empty() {
            return Sandbox::Unchecked;
        }
        let path = Path::new(path);
        match std::fs::metadata(path) {
            Ok(_) => return Sandbox::Alive,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Sandbox::Unknown("its file cannot be looked at (permission denied)")
            }
            Err(_) => return Sandbox::Unknown("its file cannot be looked at"),
        }
        let Some(dir) = path.parent() else {
            return Sandbox::Unknown("it names no directory");
        };
        let listing =
            self.dirs
                .entry(dir.to_path_buf())
                .or_insert_with(|| match std::fs::read_dir(dir) {
                    Ok(mut entries) => Ok(entries.next().is_some()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Err("its directory is missing (Docker's exec root not mounted here?)")
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        Err("its directory cannot be read (permission denied)")
                    }
                    Err(_) => Err("its directory cannot be read"),
                });
        match *listing {
            Ok(true) => Sandbox::Gone,
            Ok(false) => Sandbox::Unknown(
                "its directory holds no other sandbox (Docker's exec root not mounted here?)",
            ),
            Err(why) => Sandbox::Unknown(why),
        }
    }
}

/// What the host's boot id says about the driver's downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The same boot as recorded in the state.
    Same,
    /// Another boot: every sandbox recorded before is gone.
    Rebooted,
    /// Nothing recorded (a state from before boot ids), or unreadable.
    Unknown,
}

/// The sandboxes of every joined endpoint, looked at after the driver's own
/// downtime, judged together (in place): after a reboot every one is gone;
/// otherwise, when not one is alive but some seem gone, that is no evidence
/// (every container dying at once while the driver was down is far less
/// likely than the driver looking in the wrong place) and they are
/// [`Sandbox::Unknown`]. Returns whether that happened, for a loud log.
pub fn judge_restart(looks: &mut [Sandbox], boot: Boot) -> bool {
    if boot == Boot::Rebooted {
        for s in looks.iter_mut().filter(|s| **s != Sandbox::Unchecked) {
            *s = Sandbox::Gone;
        }
        return false;
    }
    let alive = looks.contains(&Sandbox::Alive);
    let gone = looks.contains(&Sandbox::Gone);
    if alive || !gone {
        return false;
    }
    for s in looks.iter_mut().filter(|s| **s == Sandbox::Gone) {
        *s = Sandbox::Unknown("every sandbox seemed gone at once, which proves nothing");
    }
    true
}

/// What Docker answered, after the driver's own downtime, about the
/// container of one joined endpoint (asked by [`crate::docker::restart_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerSays {
    /// Its network lists the endpoint, and the container runs.
    Running,
    /// Its network lists the endpoint, and the container has stopped:
    /// `exited` or `dead` (Docker's `State.Status`).
    Stopped(String),
    /// Docker knows the network, but no container holds the endpoint (or
    /// the container it names is gone).
    Absent,
    /// Nothing proven (why): Docker unreachable or slow, an odd answer, a
    /// network this Docker does not know (another dockerd), a container
    /// in another state (created, restarting, removing).
    Unknown(String),
}

/// A sandbox not known to be gone is gone when Docker says its container
/// stopped or holds the endpoint no more; Docker unreachable, slow, or
/// unsure changes nothing (a restart never stops announcing a live
/// container on a failure to ask).
pub fn judge_by_docker(look: Sandbox, says: &DockerSays) -> Sandbox {
    match (look, says) {
        (Sandbox::Unchecked | Sandbox::Gone, _) => look,
        (_, DockerSays::Stopped(_) | DockerSays::Absent) => Sandbox::Gone,
        (_, DockerSays::Running | DockerSays::Unknown(_)) => look,
    }
}

/// The health gate's word on an endpoint's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No gate (`--health-gate` is off), or one that does not gate this
    /// announcement.
    Ungated,
    /// Docker classified the container: `announces` for healthy or no
    /// health check; `name` says which.
    Verdict { announces: bool, name: &'static str },
    /// Never classified yet; `fail_open` once Docker has been unreachable
    /// for long enough that it is announced without a verdict.
    Waiting { fail_open: bool },
}

/// Announce, or hold and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Announce,
    Hold(&'static str),
}

impl Decision {
    pub fn announces(self) -> bool {
        self == Decision::Announce
    }
}

/// Announced only when joined, with a sandbox not known to be gone (a
/// sandbox that could not be looked at is not known to be gone), its
/// address live in the container, and the health gate (when on) says so.
pub fn decide(e: &Evidence) -> Decision {
    if !e.joined {
        return Decision::Hold("not joined");
    }
    if e.sandbox == Sandbox::Gone {
        return Decision::Hold("its sandbox is gone");
    }
    if e.address == Address::Pending {
        return Decision::Hold("its address is not live in the container yet");
    }
    match e.health {
        Health::Ungated
        | Health::Verdict {
            announces: true, ..
        }
        | Health::Waiting { fail_open: true } => Decision::Announce,
        Health::Verdict { name, .. } => Decision::Hold(name),
        Health::Waiting { fail_open: false } => Decision::Hold("waiting for Docker"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(sandbox: Sandbox, health: Health) -> Decision {
        decide(&Evidence {
            joined: true,
            sandbox,
            address: Address::Ready,
            health,
        })
    }

    #[test]
    fn every_piece_of_evidence_can_hold() {
        use Decision::{Announce, Hold};
        let healthy = Health::Verdict {
            announces: true,
            name: "healthy",
        };
        let unhealthy = Health::Verdict {
            announces: false,
            name: "unhealthy",
        };
        assert_eq!(joined(Sandbox::Unchecked, Health::Ungated), Announce);
        assert_eq!(joined(Sandbox::Alive, healthy), Announce);
        let left = Evidence {
            joined: false,
            sandbox: Sandbox::Alive,
            address: Address::Ready,
            health: healthy,
        };
        assert_eq!(decide(&left), Hold("not joined"));
        let configuring = Evidence {
            joined: true,
            address: Address::Pending,
            ..left
        };
        assert_eq!(
            decide(&configuring),
            Hold("its address is not live in the container yet")
        );
        assert_eq!(joined(Sandbox::Gone, healthy), Hold("its sandbox is gone"));
        assert_eq!(joined(Sandbox::Alive, unhealthy), Hold("unhealthy"));
        let waiting = Health::Waiting { fail_open: false };
        assert_eq!(joined(Sandbox::Alive, waiting), Hold("waiting for Docker"));
        let open = Health::Waiting { fail_open: true };
        assert_eq!(joined(Sandbox::Unchecked, open), Announce);
    }

    #[test]
    fn a_sandbox_is_gone_only_on_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let netns = dir.path().join("netns");
        std::fs::create_dir(&netns).unwrap();
        let ns = netns.join("ns");
        let path = ns.to_str().unwrap();
        assert_eq!(Sandbox::at(""), Sandbox::Unchecked);
        // An empty directory: the exec root may not be mounted here.
        assert!(matches!(Sandbox::at(path), Sandbox::Unknown(_)));
        // A missing directory.
        let elsewhere = dir.path().join("missing/ns");
        assert!(matches!(
            Sandbox::at(elsewhere.to_str().unwrap()),
            Sandbox::Unknown(_)
        ));
        // Others there, ours not: gone.
        std::fs::write(netns.join("other"), "").unwrap();
        assert_eq!(Sandbox::at(path), Sandbox::Gone);
        std::fs::write(&ns, "").unwrap();
        assert_eq!(Sandbox::at(path), Sandbox::Alive);
        // An unknown sandbox is announced as before.
        let unknown = Sandbox::Unknown("why");
        assert_eq!(joined(unknown, Health::Ungated), Decision::Announce);
    }

    #[test]
    fn every_sandbox_gone_at_once_proves_nothing_unless_the_host_rebooted() {
        use Sandbox::{Alive, Gone, Unchecked, Unknown};
        // One of several gone, one alive: evidence.
        let mut looks = [Alive, Gone, Unchecked];
        assert!(!judge_restart(&mut looks, Boot::Same));
        assert_eq!(looks, [Alive, Gone, Unchecked]);
        // All of them gone at once: not believed, said loudly.
        let mut looks = [Gone, Gone, Unknown("x")];
        assert!(judge_restart(&mut looks, Boot::Unknown));
        assert!(looks.iter().all(|s| matches!(s, Unknown(_))));
        let mut looks = [Gone];
        assert!(judge_restart(&mut looks, Boot::Same));
        // After a reboot every recorded sandbox is gone, whatever a look said.
        let mut looks = [Alive, Unknown("x"), Gone, Unchecked];
        assert!(!judge_restart(&mut looks, Boot::Rebooted));
        assert_eq!(looks, [Gone, Gone, Gone, Unchecked]);
    }

    #[test]
    fn docker_saying_a_container_stopped_is_evidence_and_silence_is_not() {
        use Sandbox::{Alive, Gone, Unchecked, Unknown};
        let running = DockerSays::Running;
        let exited = DockerSays::Stopped("exited".into());
        let dead = DockerSays::Stopped("dead".into());
        let absent = DockerSays::Absent;
        let unreachable = DockerSays::Unknown("connection refused".into());
        // A namespace still there (real dockerd keeps a killed container's).
        assert_eq!(judge_by_docker(Alive, &running), Alive);
        assert_eq!(judge_by_docker(Alive, &exited), Gone);
        assert_eq!(judge_by_docker(Alive, &dead), Gone);
        assert_eq!(judge_by_docker(Alive, &absent), Gone);
        assert_eq!(judge_by_docker(Alive, &unreachable), Alive);
        // A look that proved nothing: Docker's word decides, when it has one.
        let unsure = Unknown("its directory cannot be read");
        assert_eq!(judge_by_docker(unsure, &exited), Gone);
        assert_eq!(judge_by_docker(unsure, &unreachable), unsure);
        assert_eq!(judge_by_docker(unsure, &running), unsure);
        // Already gone stays gone; an endpoint never looked at is not judged.
        assert_eq!(judge_by_docker(Gone, &running), Gone);
        assert_eq!(judge_by_docker(Unchecked, &exited), Unchecked);
        // And what the decision makes of it.
        let decided = |s| joined(judge_by_docker(Alive, s), Health::Ungated);
        assert_eq!(decided(&running), Decision::Announce);
        assert_eq!(decided(&unreachable), Decision::Announce);
        assert_eq!(decided(&exited), Decision::Hold("its sandbox is gone"));
        assert_eq!(decided(&absent), Decision::Hold("its sandbox is gone"));
    }

    /// Runs `f` on a thread without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    /// in its effective set (capabilities are per thread), as a managed
    /// plugin runs: even root then gets EACCES from a directory of mode 000.
    fn without_dac_override<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        const DAC: u32 = 1 << 1 | 1 << 2;
        std::thread::spawn(move || {
            let mut h = Header {
                version: VERSION_3,
                pid: 0,
            };
            let mut d = [Data::default(); 2];
            // SAFETY: capget/capset with a version-3 header and two data
            // structs, as the kernel's ABI defines them, on this thread only.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
                d[0].effective &= !DAC;
                assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0);
            }
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn an_unreadable_directory_proves_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let netns = dir.path().join("netns");
        std::fs::create_dir(&netns).unwrap();
        std::fs::write(netns.join("other"), "").unwrap();
        std::fs::write(netns.join("alive"), "").unwrap();
        let mode = |m| std::fs::set_permissions(&netns, std::fs::Permissions::from_mode(m));
        mode(0o000).unwrap();
        let gone = netns.join("ns").to_str().unwrap().to_string();
        let alive = netns.join("alive").to_str().unwrap().to_string();
        let looks = without_dac_override(move || (Sandbox::at(&gone), Sandbox::at(&alive)));
        mode(0o755).unwrap();
        assert!(matches!(looks.0, Sandbox::Unknown(_)), "{looks:?}");
        assert!(matches!(looks.1, Sandbox::Unknown(_)), "{looks:?}");
        // Readable again: the evidence is back.
        let gone = netns.join("ns");
        assert_eq!(Sandbox::at(gone.to_str().unwrap()), Sandbox::Gone);
    }
}
