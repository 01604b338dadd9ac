//! The one place that decides whether an endpoint is announced.
//!
//! In: the [`Evidence`] about one endpoint: Docker joined it (Join, no Leave
//! since), whether its sandbox is still there (looked at after the driver's
//! own downtime), and the health gate's word on its container. Out: a
//! [`Decision`], announce or hold with the reason. The view builder asks it
//! for every endpoint of the state, the start-up check for every joined
//! endpoint whose sandbox it looked at, the health gate for every endpoint
//! announcement it sees. A new kind of evidence (an address-is-live signal,
//! say) is a field of [`Evidence`] and a rule in [`decide`], here and
//! nowhere else. Pure, but for [`Sandbox::at`], which looks at one file.

use std::path::Path;

/// What is known about one endpoint when its announcement is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Docker joined it to a sandbox, and has not left it since.
    pub joined: bool,
    /// Whether its sandbox (the container's network namespace) is there.
    pub sandbox: Sandbox,
    /// The health gate's word on its container.
    pub health: Health,
}

/// What is known of an endpoint's sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Not looked at: while the driver runs, Docker's Join and Leave say it.
    Unchecked,
    /// Its namespace file exists.
    Alive,
    /// Its namespace file is gone: the container died while the driver was down.
    Gone,
}

impl Sandbox {
    /// One look at the sandbox Docker named at Join (`""`: none recorded).
    pub fn at(path: &str) -> Sandbox {
        if path.is_empty() {
            Sandbox::Unchecked
        } else if Path::new(path).exists() {
            Sandbox::Alive
        } else {
            Sandbox::Gone
        }
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

/// Announced only when joined, with a sandbox not known to be gone, and
/// the health gate (when on) says so.
pub fn decide(e: &Evidence) -> Decision {
    if !e.joined {
        return Decision::Hold("not joined");
    }
    if e.sandbox == Sandbox::Gone {
        return Decision::Hold("its sandbox is gone");
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
            health: healthy,
        };
        assert_eq!(decide(&left), Hold("not joined"));
        assert_eq!(joined(Sandbox::Gone, healthy), Hold("its sandbox is gone"));
        assert_eq!(joined(Sandbox::Alive, unhealthy), Hold("unhealthy"));
        let waiting = Health::Waiting { fail_open: false };
        assert_eq!(joined(Sandbox::Alive, waiting), Hold("waiting for Docker"));
        let open = Health::Waiting { fail_open: true };
        assert_eq!(joined(Sandbox::Unchecked, open), Announce);
    }

    #[test]
    fn a_sandbox_is_gone_only_when_its_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("ns");
        assert_eq!(Sandbox::at(""), Sandbox::Unchecked);
        assert_eq!(Sandbox::at(ns.to_str().unwrap()), Sandbox::Gone);
        std::fs::write(&ns, "").unwrap();
        assert_eq!(Sandbox::at(ns.to_str().unwrap()), Sandbox::Alive);
    }
}
