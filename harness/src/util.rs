//! Small shared helpers: commands with timeouts, polling with a deadline,
//! durations as scenario files write them, and Docker-like IDs.
//!
//! In: commands, deadlines, text. Out: outputs or errors that name the
//! command, the poll's last difference, parsed durations, IDs. Owns the
//! deadline scale (`HARNESS_TIME_SCALE`). Depends on no other module.

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Deserializer};

/// Runs a command, waits at most `timeout`, and fails with its stderr if it
/// exits non-zero. The error names the command.
pub fn run_cmd<S: AsRef<OsStr>>(prog: &str, args: &[S], timeout: Duration) -> Result<String> {
    let out = run_output(prog, args, timeout)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(prog, args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run_cmd`] but returns the output whatever the exit status.
pub fn run_output<S: AsRef<OsStr>>(prog: &str, args: &[S], timeout: Duration) -> Result<Output> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start `{}`", describe(prog, args)))?;
    // Drain both pipes while the command runs: a command that writes more
    // than a pipe holds (64 KiB; `gobgp-v4 -j neighbor` of a reflector with
    // 30 clients does) would otherwise block on its write and never exit.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let waited = eventually(scaled(timeout), Duration::from_millis(2), || {
        match child.try_wait() {
            Ok(None) => Err(String::new()),
            Ok(Some(status)) => Ok(Ok(status)),
            Err(e) => Ok(Err(e)),
        }
    });
    match waited {
        Ok((Ok(status), _)) => {
            let collect = |h: std::thread::JoinHandle<Vec<u8>>| {
                h.join()
                    .map_err(|_| anyhow!("collect output of `{}`", describe(prog, args)))
            };
            Ok(Output {
                status,
                stdout: collect(stdout)?,
                stderr: collect(stderr)?,
            })
        }
        Ok((Err(e), _)) => Err(e).with_context(|| format!("wait for `{}`", describe(prog, args))),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end when the last holder of the pipes does (a
            // process the command left behind may keep them): not joined.
            bail!(
                "`{}` did not finish within {:?}",
                describe(prog, args),
                scaled(timeout)
            );
        }
    }
}

pub fn describe<S: AsRef<OsStr>>(prog: &str, args: &[S]) -> String {
    let mut s = prog.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// The factor every deadline is multiplied by on a slow machine (an
/// emulated VM): `HARNESS_TIME_SCALE`, at least 1, read once per process.
pub fn time_scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("HARNESS_TIME_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| v.is_finite() && *v >= 1.0)
            .unwrap_or(1.0)
    })
}

/// `d` on this machine: multiplied by [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_scale())
}

/// The one deadline loop of the harness: polls `check` every `interval`
/// until it returns `Ok`, for at most `timeout`, and returns the value with
/// how long it took. The check returns what still differs; the last
/// difference is the error.
///
/// `timeout` is the budget on this machine: the caller has already scaled
/// it, with [`scaled`] or `Options::scale` (the same factor), so that a
/// deadline written in a scenario file is scaled exactly once.
///
/// To give up before the deadline (the daemon being waited for has died),
/// let `T` be a `Result` and return `Ok(Err(why))`: the loop stops and the
/// caller sees `why`.
pub fn eventually<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> std::result::Result<T, String>,
) -> std::result::Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(diff) => {
                if start.elapsed() >= timeout {
                    return Err(format!("still not true after {timeout:?}: {diff}"));
                }
            }
        }
        std::thread::sleep(interval);
    }
}

/// The other half of [`eventually`]: `check` must stay `Ok` for the whole
/// of `period` (already scaled, as for [`eventually`]), polled every
/// `interval`; the first difference seen is the error. For "still true a
/// while later" steps, where one good poll proves nothing.
pub fn holds(
    period: Duration,
    interval: Duration,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let start = Instant::now();
    loop {
        check().map_err(|diff| format!("stopped holding after {:?}: {diff}", start.elapsed()))?;
        if start.elapsed() >= period {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// A duration written as `250ms`, `10s`, `2m` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let (num, unit) = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map(|i| s.split_at(i))
            .unwrap_or((s, "s"));
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" => n * 60.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
        };
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(format!("{s:?} is out of range"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => format!("{n}s").parse().map_err(serde::de::Error::custom),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A 64-hex-character ID, like Docker's, derived from `parts`.
pub fn docker_id(parts: &[&str]) -> String {
    let mut out = String::with_capacity(64);
    for round in 0u64..4 {
        let mut h = DefaultHasher::new();
        round.hash(&mut h);
        for p in parts {
            p.hash(&mut h);
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The last `n` lines of a file, or a note that it cannot be read.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/lib/frr"]
                .iter()
                .map(Into::into),
        )
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

pub fn require(prog: &str) -> Result<std::path::PathBuf> {
    which(prog).ok_or_else(|| anyhow!("{prog} is not installed (not on PATH)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More output than a pipe holds (64 KiB) comes back whole, well within
    /// the deadline (the command never blocks on its write).
    #[test]
    fn run_output_takes_more_than_a_pipe_holds() {
        let out = run_output(
            "sh",
            &[
                "-c",
                "head -c 300000 /dev/zero; head -c 100000 /dev/zero >&2",
            ],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!((out.stdout.len(), out.stderr.len()), (300_000, 100_000));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("10s".parse::<Dur>().unwrap().0, Duration::from_secs(10));
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        assert_eq!("3".parse::<Dur>().unwrap().0, Duration::from_secs(3));
        assert!("10x".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
    }

    #[test]
    fn ids_look_like_docker_ids_and_differ() {
        let a = docker_id(&["run", "net", "blue"]);
        let b = docker_id(&["run", "net", "red"]);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(a, docker_id(&["run", "net", "blue"]));
    }

    #[test]
    fn eventually_reports_the_last_difference() {
        let mut n = 0;
        let r = eventually(Duration::from_millis(30), Duration::from_millis(5), || {
            n += 1;
            Err::<(), _>(format!("try {n}"))
        });
        let e = r.unwrap_err();
        assert!(e.contains("still not true") && e.contains("try"), "{e}");
        let (v, _) = eventually(Duration::from_secs(1), Duration::from_millis(1), || {
            Ok::<_, String>(7)
        })
        .unwrap();
        assert_eq!(v, 7);
    }

    #[test]
    fn holds_polls_for_the_whole_period_and_fails_on_the_first_difference() {
        let mut n = 0;
        let t = Instant::now();
        holds(Duration::from_millis(30), Duration::from_millis(5), || {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30) && n >= 3, "{n}");
        let mut n = 0;
        let e = holds(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            if n < 4 {
                Ok(())
            } else {
                Err(format!("changed at poll {n}"))
            }
        })
        .unwrap_err();
        assert!(e.contains("changed at poll 4"), "{e}");
    }

    #[test]
    fn commands_time_out() {
        let e = run_cmd("sleep", &["5"], Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert_eq!(
            run_cmd("echo", &["hi"], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
        assert!(run_cmd("false", &[] as &[&str], Duration::from_secs(5)).is_err());
    }
}
