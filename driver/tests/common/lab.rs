//! A small lab for the privileged BGP tests: network namespaces with a
//! per-run name, commands run inside them, gobgpd of either line, and a
//! cleanup stack that undoes everything on drop (also when an assertion
//! fails).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipvlan_bgp::bgp::gobgp::ApiLine;

/// Undo steps, run in reverse order on drop.
#[derive(Default)]
pub struct Cleanup(pub Vec<Box<dyn FnOnce()>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

impl Cleanup {
    /// A network namespace, deleted at cleanup.
    pub fn netns(&mut self, name: &str) {
        run(&["ip", "netns", "add", name]);
        let name = name.to_string();
        self.0.push(Box::new(move || {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }));
    }

    /// A child process, killed (by its pid) at cleanup.
    pub fn child(&mut self, mut child: Child) -> u32 {
        let pid = child.id();
        self.0.push(Box::new(move || {
            let _ = child.kill();
            let _ = child.wait();
        }));
        pid
    }
}

/// Runs a command; panics with its stderr when it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n NS ARGS...`.
pub fn ip(ns: &str, args: &str) {
    let mut full = vec!["ip", "-n", ns];
    full.extend(args.split_whitespace());
    run(&full);
}

/// Polls `f` until it holds or `within` passes; returns how long it took.
pub async fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f().then(|| start.elapsed())
}

/// The daemon and the CLI of a line.
pub fn progs(line: ApiLine) -> (&'static str, &'static str) {
    match line {
        ApiLine::V3 => ("gobgpd", "gobgp"),
        ApiLine::V4 => ("gobgpd-v4", "gobgp-v4"),
    }
}

/// Why this host cannot run a test of `line` (not root, a tool missing).
pub fn missing(line: ApiLine, needs_root: bool) -> Option<String> {
    if needs_root && !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    let (daemon, cli) = progs(line);
    [daemon, cli]
        .into_iter()
        .find(|t| Command::new(t).arg("--version").output().is_err())
        .map(|t| format!("{t} is not installed (ci/install.sh)"))
}

/// Starts gobgpd of `line` in namespace `ns` (none: here), logging to `log`.
pub fn gobgpd(line: ApiLine, ns: Option<&str>, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    let mut full: Vec<&str> = match ns {
        Some(ns) => vec!["netns", "exec", ns],
        None => vec![],
    };
    full.extend([progs(line).0, "-p", "--pprof-disable"]);
    if line == ApiLine::V4 {
        // 4.x serves metrics on 127.0.0.1:6060 despite --pprof-disable.
        full.push("--metrics-path=");
    }
    full.extend(args);
    let (prog, rest) = match ns {
        Some(_) => ("ip", &full[..]),
        None => (full[0], &full[1..]),
    };
    Command::new(prog)
        .args(rest)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", progs(line).0))
}

/// The CLI of `line` against the API at `target` (`unix:///…` or
/// `HOST:PORT` as `-u HOST -p PORT`), run in `ns`.
pub fn cli(line: ApiLine, ns: Option<&str>, target: &str, args: &str) -> String {
    let mut full: Vec<String> = match ns {
        Some(ns) => ["ip", "netns", "exec", ns].map(String::from).to_vec(),
        None => vec![],
    };
    full.push(progs(line).1.into());
    match target.strip_prefix("unix://") {
        Some(_) => full.extend(["--target".into(), target.into()]),
        None => {
            let (h, p) = target.rsplit_once(':').expect("HOST:PORT");
            full.extend(["-u".into(), h.into(), "-p".into(), p.into()]);
        }
    }
    full.extend(args.split_whitespace().map(String::from));
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    run(&refs)
}

/// The tail of each log in `dir` (on a failure).
pub fn show_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            eprintln!(
                "--- {}\n{}",
                e.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
