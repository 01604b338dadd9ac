//! docs/router-config.md against the code that writes the routers'
//! configurations: each fenced block tagged `<!-- docs-test: frr-example -->`
//! or `bird-example` is exactly what `harness router-config` prints for
//! the command shown above it (`HARNESS_WRITE_DOCS=1` rewrites the blocks),
//! and the generated configurations parse in the installed FRR and BIRD
//! (`vtysh --dryrun`, `bird -p`).
//!
//! In: the page, this build's `harness` binary, FRR's `vtysh` and `bird`.
//! Out: two trials.

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::{Completion, Failed};

use crate::cli::harness_bin;
use crate::markdown::scan;
use crate::{root, the_block_in, under_ci, verdict};

pub const PAGE: &str = "docs/router-config.md";

/// The page's tagged examples and the `harness router-config` arguments
/// that print them (the page shows the same command above each block).
pub const EXAMPLES: &[(&str, &[&str])] = &[
    ("frr-example", &["--kind", "frr", "--bfd"]),
    ("bird-example", &["--kind", "bird"]),
];

/// `prog` in `$PATH` (or /usr/sbin, where Debian puts BIRD).
fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn generate(args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(harness_bin())
        .arg("router-config")
        .args(args)
        .output()
        .map_err(|e| format!("harness router-config: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "harness router-config {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn router_config_examples_are_generated() -> Result<(), Failed> {
    let path = root().join(PAGE);
    let mut text = std::fs::read_to_string(&path).map_err(|e| format!("read {PAGE}: {e}"))?;
    let write = std::env::var_os("HARNESS_WRITE_DOCS").is_some();
    let mut errors = Vec::new();
    for (tag, args) in EXAMPLES {
        let want = generate(args)?;
        let (blocks, _) = scan(&text);
        let b = the_block_in(PAGE, &blocks, tag)?;
        let have: String = b.lines.iter().map(|l| format!("{l}\n")).collect();
        if have == want {
            continue;
        }
        if write {
            // The block's lines follow its opening fence (line `b.line`).
            let lines: Vec<&str> = text.lines().collect();
            let mut out: Vec<String> = lines[..b.line].iter().map(|l| l.to_string()).collect();
            out.extend(want.lines().map(str::to_string));
            out.extend(
                lines[b.line + b.lines.len()..]
                    .iter()
                    .map(|l| l.to_string()),
            );
            text = out.join("\n") + "\n";
            continue;
        }
        let first = have
            .lines()
            .zip(want.lines())
            .position(|(h, w)| h != w)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        errors.push(format!(
            "{PAGE}:{}: the {tag} block differs from `harness router-config {}` (first at block line {}: {:?} vs generated {:?}); rewrite it with HARNESS_WRITE_DOCS=1 cargo test -p harness --test docs",
            b.line,
            args.join(" "),
            first + 1,
            have.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>"),
        ));
    }
    if write {
        std::fs::write(&path, &text).map_err(|e| format!("write {PAGE}: {e}"))?;
    }
    verdict(errors)
}

/// Every variant the command prints (BFD on and off, an IPv6 pool too)
/// parses in FRR and BIRD as installed: a line they do not know fails.
pub fn router_config_examples_parse() -> Result<Completion, Failed> {
    let checkers: [(&str, &str, &[&str]); 2] = [
        ("frr", "vtysh", &["--dryrun", "-f"]),
        ("bird", "bird", &["-p", "-c"]),
    ];
    let missing: Vec<&str> = checkers
        .iter()
        .map(|(_, prog, _)| *prog)
        .filter(|p| find(p).is_none())
        .collect();
    if !missing.is_empty() {
        let reason = format!(
            "{} not installed (ci/install.sh installs frr and bird2)",
            missing.join(", ")
        );
        if under_ci() {
            return Err(format!("{reason}, and under CI=true that is a failure").into());
        }
        return Ok(Completion::ignored_with(reason));
    }
    let dir = std::env::temp_dir().join(format!("harness-router-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    let variants: [&[&str]; 3] = [
        &[],
        &["--bfd"],
        &["--pool", "10.1.0.0/16", "--pool", "fd00:1::/48"],
    ];
    for (kind, prog, check) in checkers {
        for extra in variants {
            let mut args = vec!["--kind", kind];
            args.extend_from_slice(extra);
            let file = dir.join(format!("{kind}.conf"));
            std::fs::write(&file, generate(&args)?).map_err(|e| e.to_string())?;
            let bin = find(prog).ok_or_else(|| format!("{prog} vanished"))?;
            let out = Command::new(bin)
                .args(check)
                .arg(&file)
                .output()
                .map_err(|e| format!("{prog}: {e}"))?;
            if !out.status.success() {
                errors.push(format!(
                    "`harness router-config {}` does not parse in {prog}: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    verdict(errors)?;
    Ok(Completion::Completed)
}
