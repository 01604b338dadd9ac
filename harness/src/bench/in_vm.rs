//! `harness bench … --vm`: a bench inside one VM whose kernel has ipvlan,
//! run by this same harness binary there, its JSON brought back.
//!
//! In: the bench's arguments and the VM's options. Out: its results, each
//! marked `vm = kvm | tcg` in its setup. Owns nothing; the VM is
//! [`crate::vm`]'s.

use anyhow::{bail, Context, Result};

use super::stats::{read_json, BenchResult};
use crate::topology::find_driver_bin;
use crate::vm::{
    console_to_stderr, runner_command, runner_script, VmOptions, RC_NO_VM, RC_TIMEOUT,
};

/// `harness bench ARGS… --json OUT` inside one VM (a kernel with ipvlan):
/// returns the results it wrote, each marked `vm = kvm | tcg` in its setup.
/// Timings under TCG (software emulation) are slow in absolute terms; only
/// the comparison of the alternated sides inside one run means anything.
pub fn bench_in_vm(args: &[String], vm: &VmOptions) -> Result<Vec<BenchResult>> {
    let script = runner_script()?;
    let exe = std::env::current_exe().context("current executable")?;
    let driver = find_driver_bin()?;
    let out = std::env::temp_dir().join(format!("ibvm-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = runner_command(&script, vm, &out, &driver)?;
    cmd.arg("--")
        .arg("bash")
        .arg("-c")
        .arg("\"$@\" --json \"$IBVM_OUT/bench.json\"; rc=$?; echo \"$IBVM_ACCEL\" > \"$IBVM_OUT/accel\"; exit $rc")
        .arg("harness-bench-in-vm")
        .arg(&exe)
        .arg("bench")
        .args(args);
    console_to_stderr(&mut cmd)?;
    eprintln!(
        "harness --vm: bench {} in a VM ({})",
        args.join(" "),
        script.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    let results = read_json(&out.join("bench.json"));
    let accel = std::fs::read_to_string(out.join("accel")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    match status.code() {
        Some(0) => {}
        Some(RC_TIMEOUT) => bail!("the VM did not finish within {:?}", vm.timeout),
        Some(RC_NO_VM) => bail!("the VM could not be prepared or did not boot"),
        c => bail!("the bench inside the VM ended with status {c:?}"),
    }
    let mut results = results?;
    for r in &mut results {
        let accel = accel.trim();
        r.setup.insert(
            "vm".into(),
            if accel.is_empty() { "yes" } else { accel }.to_string(),
        );
        if let Some(c) = r.setup.get_mut("command") {
            c.push_str(" --vm");
        }
    }
    Ok(results)
}
