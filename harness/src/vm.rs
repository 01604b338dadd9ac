//! `harness run --vm`: the same scenarios, inside a virtual machine that
//! boots a stock kernel (one that has ipvlan) on this machine's own root file
//! system.
//!
//! ```text
//! harness run --vm F...  ─► ci/vm/run.sh (QEMU, Debian's kernel, host's / over 9p, read-only)
//!                              └─► this same harness binary: run --json $IBVM_OUT/reports F...
//!                  ◄── reports/<scenario>.json copied out of the job folder, exit status
//! ```
//! In: scenario files (validated here first, so mistakes name the file and
//! line without a boot), the engine, and optionally another kernel. Out: one
//! [`Report`] per file, exactly as a run without `--vm` gives them. The VM
//! boots once for all the files. A file whose report did not come back (the
//! VM timed out, crashed or never booted) gets a failed report that says why;
//! where the VM cannot boot at all, outside CI that is a visible skip, under
//! CI (`CI=true`) a failure. The VM itself ([`runner_command`],
//! [`console_to_stderr`]) also serves `harness bench --vm` (`bench::in_vm`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::Cleanup;
use crate::machine::under_ci;
use crate::report::Report;
use crate::scenario::{Engine, Scenario};

/// The runner's exit status when the command did not finish in time.
pub const RC_TIMEOUT: i32 = 124;
/// The runner's exit status when the VM could not be prepared or booted.
pub const RC_NO_VM: i32 = 125;

/// How to run the VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Another kernel (vmlinux or bzImage) instead of Debian's current one.
    pub kernel: Option<PathBuf>,
    /// That kernel's modules (`DIR/lib/modules/VERSION`, or that folder itself).
    pub modules: Option<PathBuf>,
    /// Kills the VM after this long.
    pub timeout: Duration,
    /// Scenarios the guest's harness runs at once (`harness run --jobs`).
    pub jobs: u16,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            kernel: None,
            modules: None,
            timeout: Duration::from_secs(30 * 60),
            jobs: 1,
        }
    }
}

/// `HARNESS_VM_RUNNER`, else `ci/vm/run.sh` of the source tree this harness
/// was built from, else one found above the executable.
pub fn runner_script() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HARNESS_VM_RUNNER") {
        return Ok(PathBuf::from(p));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/vm/run.sh");
    if let Ok(p) = std::fs::canonicalize(built) {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("current executable")?;
    for dir in exe.ancestors().skip(1) {
        let cand = dir.join("ci/vm/run.sh");
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!("cannot find ci/vm/run.sh (the VM runner); set HARNESS_VM_RUNNER")
}

/// Runs the scenarios in one VM and returns their reports, in the order given.
pub fn run(scenarios: &[Scenario], engine: Engine, vm: &VmOptions) -> Vec<Report> {
    let started = Instant::now();
    match run_inner(scenarios, engine, vm) {
        Ok(reports) => reports,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("harness --vm: {msg}");
            scenarios
                .iter()
                .map(|s| missing_report(s, engine, &msg, false, started.elapsed()))
                .collect()
        }
    }
}

fn run_inner(scenarios: &[Scenario], engine: Engine, vm: &VmOptions) -> Result<Vec<Report>> {
    let started = Instant::now();
    let script = runner_script()?;
    let exe = std::env::current_exe().context("current executable")?;
    let driver = crate::topology::find_driver_bin()?;
    sweep_reports();
    // The runner creates it only to copy the reports out, after the VM is off.
    let out = std::env::temp_dir().join(format!("{REPORTS_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cleanup = Cleanup::new();
    let out2 = out.clone();
    cleanup.push(
        format!("remove {}", out.display()),
        move || match std::fs::remove_dir_all(&out2) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    );

    let mut cmd = runner_command(&script, vm, &out, &driver)?;
    // Logs of failed scenarios (kept in the run folder) come back out with the reports.
    cmd.arg("--env")
        .arg(format!("HARNESS_RUN_DIR={GUEST_RUN_DIR}"))
        .arg("--")
        .arg("bash")
        .arg("-c")
        .arg(format!(
            "\"$@\"; rc=$?; if [ -n \"$(ls -A {GUEST_RUN_DIR} 2>/dev/null)\" ]; then cp -a {GUEST_RUN_DIR} \"$IBVM_OUT/runs\"; fi; exit $rc"
        ))
        .arg("harness-in-vm")
        .arg(&exe)
        .arg("run")
        .arg("--engine")
        .arg(engine.name())
        .arg("--jobs")
        .arg(vm.jobs.max(1).to_string())
        .arg("--json")
        .arg("/run/ibvm/job/out/reports");
    // As given: the guest runs from the same directory, so reports name the files alike.
    for s in scenarios {
        cmd.arg(&s.file);
    }
    console_to_stderr(&mut cmd)?;
    eprintln!(
        "harness --vm: {} scenario(s) in one VM ({})",
        scenarios.len(),
        script.display()
    );
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", script.display()))?;
    let pid = child.id();
    let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(Some(child)));
    let c2 = child.clone();
    // Ctrl-C: stop the runner (it kills its VM and removes its job folder) and wait for it.
    cleanup.push(format!("stop the VM runner (pid {pid})"), move || {
        let mut g = c2.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = g.take() {
            crate::netns::stop_child(
                &mut c,
                nix::sys::signal::Signal::SIGTERM,
                Duration::from_secs(15),
            )?;
        }
        Ok(())
    });
    let status = loop {
        {
            let mut g = child.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_mut() {
                Some(c) => {
                    if let Some(st) = c.try_wait()? {
                        g.take();
                        break st;
                    }
                }
                None => bail!("the VM runner was stopped"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let code = status.code().unwrap_or(-1);
    let why = match code {
        0 | 1 => None,
        RC_TIMEOUT => Some(format!(
            "the VM did not finish within {:?} and was killed",
            vm.timeout
        )),
        RC_NO_VM => Some(
            "the VM could not be prepared or did not boot (see the ci/vm lines above)".to_string(),
        ),
        c => Some(format!("the harness inside the VM ended with status {c}")),
    };
    let mut reports = Vec::new();
    for s in scenarios {
        let p = out.join("reports").join(format!("{}.json", s.name));
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Report>(&b).ok())
        {
            Some(r) => reports.push(r),
            None => {
                let msg = why.clone().unwrap_or_else(|| {
                    format!("the VM returned no report for {} (status {code})", s.name)
                });
                reports.push(missing_report(
                    s,
                    engine,
                    &msg,
                    code == RC_NO_VM,
                    started.elapsed(),
                ));
            }
        }
    }
    keep_guest_logs(&out.join("runs"));
    for e in cleanup.run() {
        eprintln!("harness --vm: cleanup: {e}");
    }
    Ok(reports)
}

/// A report for a scenario whose run in the VM gave none. A VM that cannot
/// boot is a skip outside CI, a failure under it.
fn missing_report(s: &Scenario, engine: Engine, why: &str, no_vm: bool, took: Duration) -> Report {
    let mut r = Report {
        scenario: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        engine: engine.name().to_string(),
        elapsed_ms: took.as_millis() as u64,
        ..Report::default()
    };
    if no_vm && !under_ci() {
        r.skipped = Some(format!("{why} (under CI this is a failure)"));
    } else {
        r.error = Some(why.to_string());
    }
    r
}

const REPORTS_PREFIX: &str = "ibvm-reports-";
/// The harness's run folder inside the guest (under the overlay: thrown away).
const GUEST_RUN_DIR: &str = "/tmp/ibvm-harness-runs";

/// Moves the run folders the guest kept (failed scenarios) to this machine's
/// run folder, where a run without `--vm` would have left them.
fn keep_guest_logs(from: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    let root = std::env::var_os("HARNESS_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ipvlan-bgp-harness"));
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!(
            "harness --vm: cannot keep the VM's logs: create {}: {e}",
            root.display()
        );
        return;
    }
    for e in entries.flatten() {
        let dest = root.join(e.file_name());
        let _ = std::fs::remove_dir_all(&dest);
        let moved = std::fs::rename(e.path(), &dest).is_ok()
            || Command::new("cp")
                .arg("-a")
                .arg(e.path())
                .arg(&dest)
                .status()
                .is_ok_and(|s| s.success());
        if moved {
            eprintln!("harness --vm: logs from the VM kept in {}", dest.display());
        }
    }
}

/// Removes report folders left by `--vm` runs whose harness was killed.
fn sweep_reports() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(REPORTS_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{}: not found", p.display()))
}

/// `bash ci/vm/run.sh` with the options every VM run shares: timeout, output
/// folder, our driver binary, the kernel and modules if given, and
/// `HARNESS_REQUIRE=ipvlan`. The VM exists to give ipvlan scenarios a kernel
/// with ipvlan: there, a scenario that needs it may not skip (a VM whose
/// modules do not load must fail the run, not report every ipvlan scenario
/// as skipped). The caller appends `--` and the guest's command.
pub fn runner_command(script: &Path, vm: &VmOptions, out: &Path, driver: &Path) -> Result<Command> {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg("--timeout")
        .arg(vm.timeout.as_secs().max(1).to_string())
        .arg("--out")
        .arg(out)
        .arg("--env")
        .arg(format!("IPVLAN_BGP_BIN={}", absolute(driver)?.display()))
        .arg("--env")
        .arg("HARNESS_REQUIRE=ipvlan")
        // The host's trial log is not the guest's (another kernel): the
        // suite keeps one log per kernel (`ci/vm/suite.sh`).
        .arg("--env")
        .arg(format!("{}=", crate::skips::LOG_ENV));
    if let Some(k) = &vm.kernel {
        cmd.arg("--kernel").arg(absolute(k)?);
    }
    if let Some(m) = &vm.modules {
        cmd.arg("--modules").arg(absolute(m)?);
    }
    Ok(cmd)
}

/// The guest's console goes to our stderr (stdout stays for the caller),
/// and the VM runner is stopped when we die (SIGTERM lets its trap clean up).
pub fn console_to_stderr(cmd: &mut Command) -> Result<()> {
    let console = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("dup stderr")?;
    cmd.stdin(Stdio::null()).stdout(Stdio::from(console));
    crate::netns::prepare_child(cmd, None, libc::SIGTERM, false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_and_the_guest_scripts_are_found_and_parse() {
        let script = runner_script().unwrap();
        let dir = script.parent().unwrap();
        for (shell, file) in [
            ("bash", "run.sh"),
            ("sh", "init"),
            ("sh", "stage2"),
            ("bash", "suite.sh"),
            ("bash", "require-kernel.sh"),
        ] {
            let p = dir.join(file);
            let out = Command::new(shell).arg("-n").arg(&p).output().unwrap();
            assert!(
                out.status.success(),
                "{} does not parse: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn a_missing_report_says_why_and_fails() {
        let s = Scenario::parse(
            "description = \"x\"\n[[hosts]]\nname = \"h1\"\n",
            Path::new("scenarios/x.toml"),
        )
        .unwrap();
        let r = missing_report(
            &s,
            Engine::Emulator,
            "the VM timed out",
            false,
            Duration::ZERO,
        );
        assert_eq!(r.scenario, "x");
        assert!(!r.passed && r.skipped.is_none());
        assert_eq!(r.error.as_deref(), Some("the VM timed out"));
    }
}
