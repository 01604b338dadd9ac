//! The docs against the code: README.md and docs/*.md may only name what
//! exists, and the README's quick start runs as written.
//!
//! In: the Markdown files, the `ipvlan-bgp` and `harness` binaries (their
//! `--help`), the scenario schema (its own error messages list every key),
//! plugin/config.json, the ci scripts. Out: one trial each for
//! - flags: every `--flag` given to `ipvlan-bgp` or `harness` on a command
//!   line is in that (sub)command's `--help`; every other `--flag` in the
//!   text is one of theirs or a listed flag of another program (Docker,
//!   gobgpd, ...), so `--stale-time` for `--stale-routes-time` fails; a
//!   section whose heading says "(planned" is a plan and exempt;
//! - environment variables, metrics, plugin settings and the scenario file's
//!   keys: the docs name exactly what the code knows;
//! - the two commands: their scripts exist, `ci/demo.sh` runs the quick
//!   start's line word for word and installs only the demo's packages;
//! - the quick start: the fenced block after `<!-- docs-test: quickstart -->`
//!   is run (with this build's `harness`, same arguments) and must pass; a
//!   machine that cannot run it (no root, no gobgpd) shows it as ignored
//!   with the reason, a failure under `CI=true`;
//! - links: every relative link and image points at a file that exists, and
//!   every `#anchor` at a heading there; every docs page is linked from the
//!   README;
//! - router examples: docs/router-config.md's FRR and BIRD blocks are what
//!   `harness router-config` prints, and they parse in FRR and BIRD
//!   (`router_config.rs`).
//!
//! Reading Markdown is `markdown.rs`'s job, reading command lines and the
//! binaries' `--help` is `cli.rs`'s; this file holds the trials.

mod cli;
mod markdown;
mod router_config;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use cli::{driver_bin, flags_in, harness_bin, program, shell_commands, Cli};
use markdown::{
    anchors, block_lines, code_spans, docs, link_targets, scan, without_planned, Block,
};

/// Flags of other programs that the docs mention outside a command line of
/// that program (in prose or a table), with their owner. A flag of
/// `ipvlan-bgp` or `harness` never belongs here: those come from `--help`.
const OTHER_PROGRAMS_FLAGS: &[(&str, &str)] = &[
    ("--api-hosts", "gobgpd"),
    ("--pprof-disable", "gobgpd"),
    ("--target", "gobgp"),
    ("--driver-opt", "docker run / docker network connect"),
    ("--network", "docker run"),
    ("--health-cmd", "docker run"),
    ("--sysctl", "docker run"),
    ("--internal", "docker network create"),
    ("--ipv6", "docker network create"),
    ("--ipv4", "docker network create"),
    ("--subnet", "docker network create"),
    ("--gateway", "docker network create"),
    ("--ip-range", "docker network create"),
    ("--ipam-opt", "docker network create"),
    ("--ip", "docker run"),
    ("--ip6", "docker run"),
    ("--mac-address", "docker run"),
    ("--aux-address", "docker network create"),
    ("--prefix", "etcdctl role grant-permission"),
    ("--client-cert-auth", "etcd"),
    ("--ipam-driver", "docker network create"),
    ("--live-restore", "dockerd"),
    ("--exec-root", "dockerd"),
    ("--kernel", "ci/vm/run.sh"),
    ("--modules", "ci/vm/run.sh"),
    ("--deny-module", "ci/vm/run.sh"),
    ("--create", "plugin/build.sh"),
    ("--bench", "cargo bench"),
    ("--nocapture", "cargo test"),
    ("--rm", "docker run"),
    ("--mode", "the 2015 Go prototype"),
    ("--current", "gobgp monitor"),
    ("--metrics-path", "gobgpd (v4)"),
    ("--graceful-restart", "gobgpd"),
    ("--bfdctl", "bfdd"),
    ("--vty_socket", "bfdd"),
    ("--insecure-registry", "dockerd"),
    ("--skip-remote-check", "docker plugin upgrade"),
    ("--grant-all-permissions", "docker plugin upgrade"),
];

/// Programs whose command lines the test does not check flag by flag.
const OTHER_PROGRAMS: &[&str] = &[
    "docker",
    "dockerd",
    "gobgpd",
    "gobgp",
    "cargo",
    "apt-get",
    "install",
    "ip",
    "sysctl",
    "vtysh",
    "birdc",
    "busybox",
    "run.sh",
    "build.sh",
    "install.sh",
    "demo.sh",
    "test.sh",
    "make",
    "bfdd",
];

/// No errors: passed; else every error, one a line.
fn verdict(errors: Vec<String>) -> Result<(), Failed> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn flags_in_the_docs_exist() -> Result<(), Failed> {
    let driver = Cli::load("ipvlan-bgp", &driver_bin()?)?;
    let harness = Cli::load("harness", &harness_bin())?;
    let mut known: BTreeSet<String> = driver.all_flags();
    known.extend(harness.all_flags());
    let other: BTreeMap<&str, &str> = OTHER_PROGRAMS_FLAGS.iter().copied().collect();
    for f in other.keys() {
        if known.contains(*f) {
            return Err(format!(
                "{f} is listed as a flag of {} in OTHER_PROGRAMS_FLAGS but ipvlan-bgp or harness has it too: remove it from the list",
                other[f]
            )
            .into());
        }
    }
    let mut errors = Vec::new();
    let mut checked = 0usize;
    // A command line: a flag of ours is checked against its (sub)command.
    let mut command = |cmd: &[String], at: &str, errors: &mut Vec<String>| -> bool {
        let Some((prog, rest)) = program(cmd) else {
            return false;
        };
        for w in cmd {
            // `docker plugin set … EXTRA_ARGS="--flag …"`: the driver's flags.
            if let Some(args) = w.strip_prefix("EXTRA_ARGS=") {
                let words: Vec<String> = args.split_whitespace().map(str::to_string).collect();
                driver.check(&words, at, errors);
                checked += 1;
            }
        }
        match prog.as_str() {
            "ipvlan-bgp" => driver.check(rest, at, errors),
            "harness" => harness.check(rest, at, errors),
            p if OTHER_PROGRAMS.contains(&p) => {}
            _ => return false,
        }
        checked += 1;
        true
    };
    let loose = |flags: Vec<String>, at: &str, errors: &mut Vec<String>| {
        for f in flags {
            if !known.contains(&f) && !other.contains_key(f.as_str()) {
                errors.push(format!(
                    "{at}: {f} is a flag of neither `ipvlan-bgp --help` nor `harness --help` (nor a listed flag of another program)"
                ));
            }
        }
    };
    for d in docs() {
        let (blocks, paras) = scan(&without_planned(&d.text));
        for b in &blocks {
            if !matches!(b.info.as_str(), "sh" | "bash" | "shell" | "console" | "ini") {
                continue;
            }
            for (line, l) in block_lines(b) {
                let at = format!("{}:{line}", d.rel);
                for cmd in shell_commands(&l) {
                    if !command(&cmd, &at, &mut errors) {
                        loose(
                            cmd.iter().flat_map(|w| flags_in(w)).collect(),
                            &at,
                            &mut errors,
                        );
                    }
                }
            }
        }
        for p in &paras {
            let at = format!("{}:{}", d.rel, p.line);
            let (spans, plain) = code_spans(&p.text);
            for s in spans {
                for cmd in shell_commands(&s) {
                    if !command(&cmd, &at, &mut errors) {
                        loose(
                            cmd.iter().flat_map(|w| flags_in(w)).collect(),
                            &at,
                            &mut errors,
                        );
                    }
                }
            }
            loose(flags_in(&plain), &at, &mut errors);
        }
    }
    if checked < 20 {
        errors.push(format!(
            "only {checked} command lines of ipvlan-bgp, harness or other programs found: is the parser broken?"
        ));
    }
    verdict(errors)
}

/// Whole words of `chars` that start with `prefix` (not inside a longer
/// word), without a trailing `_`.
fn words(text: &str, prefix: &str, chars: fn(char) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let before = rest[..i].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            let word: String = tail.chars().take_while(|c| chars(*c)).collect();
            out.push(word.trim_end_matches('_').to_string());
        }
        rest = &tail[prefix.len()..];
    }
    out
}

/// Words such as `IPVLAN_BGP_PARENT`, `HARNESS_RUN_DIR`, `IBVM_CACHE`.
fn env_names(text: &str) -> BTreeSet<String> {
    let upper = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    ["IPVLAN_BGP_", "HARNESS_", "IBVM_"]
        .into_iter()
        .flat_map(|prefix| words(text, prefix, upper))
        .collect()
}

fn read_tree(dir: &Path, ext: &str, out: &mut String) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            read_tree(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) || ext.is_empty() {
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

fn environment_variables_in_the_docs_exist() -> Result<(), Failed> {
    let driver = Cli::load("ipvlan-bgp", &driver_bin()?)?;
    let mut harness_src = String::new();
    read_tree(&root().join("harness/src"), "rs", &mut harness_src);
    // A variable the driver reads itself, not through a flag (a secret:
    // IPVLAN_BGP_ETCD_PASSWORD), is a string literal in its source.
    let mut driver_src = String::new();
    read_tree(&root().join("driver/src"), "rs", &mut driver_src);
    let mut vm_src = String::new();
    read_tree(&root().join("ci/vm"), "", &mut vm_src);
    let mut errors = Vec::new();
    let mut seen = 0;
    for d in docs() {
        for name in env_names(&without_planned(&d.text)) {
            seen += 1;
            let quoted = format!("\"{name}\"");
            let known = if name.starts_with("IPVLAN_BGP_") {
                driver.env.contains(&name)
                    || harness_src.contains(&quoted)
                    || driver_src.contains(&quoted)
            } else if name.starts_with("HARNESS_") {
                harness_src.contains(&quoted)
            } else {
                vm_src.contains(&name)
            };
            if !known {
                errors.push(format!(
                    "{}: {name} is read by neither the driver (`ipvlan-bgp --help` [env: …]) nor the harness nor ci/vm",
                    d.rel
                ));
            }
        }
    }
    if seen == 0 {
        errors.push("no environment variable found in the docs: is the scan broken?".into());
    }
    verdict(errors)
}

/// `ipvlan_bgp_*` series names in a text, without Prometheus's suffixes.
fn metric_families(text: &str) -> BTreeSet<String> {
    let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    words(text, "ipvlan_bgp_", lower)
        .into_iter()
        .map(|mut n| {
            for suffix in ["_total", "_bucket", "_count", "_sum"] {
                if let Some(stem) = n.strip_suffix(suffix) {
                    n = stem.to_string();
                }
            }
            n
        })
        .collect()
}

/// The metrics the docs name are the families the driver registers, and
/// docs/operations.md's table names every one of them.
fn metrics_in_the_docs_exist() -> Result<(), Failed> {
    let mut src = String::new();
    read_tree(&root().join("driver/src"), "rs", &mut src);
    // Registered names are string literals of the bare name: "ipvlan_bgp_x".
    let mut registered = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find("\"ipvlan_bgp_") {
        let tail = &rest[i + 1..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if tail[name.len()..].starts_with('"') {
            registered.extend(metric_families(&name));
        }
        rest = tail;
    }
    if registered.len() < 10 {
        return Err(format!(
            "only {} metric names found in driver/src: is the scan broken?",
            registered.len()
        )
        .into());
    }
    let mut errors = Vec::new();
    for d in docs() {
        for m in metric_families(&without_planned(&d.text)) {
            if !registered.contains(&m) {
                errors.push(format!("{}: {m} is no metric of the driver", d.rel));
            }
        }
    }
    let page =
        std::fs::read_to_string(root().join("docs/operations.md")).map_err(|e| e.to_string())?;
    let documented = metric_families(&page);
    for m in registered.difference(&documented) {
        errors.push(format!(
            "docs/operations.md does not describe the driver's metric {m}"
        ));
    }
    verdict(errors)
}

/// The plugin settings table (docs/options.md) names exactly the settable env values
/// and mounts of plugin/config.json.
fn plugin_settings_match_the_plugin() -> Result<(), Failed> {
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("plugin/config.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut want = BTreeSet::new();
    for e in config["env"].as_array().into_iter().flatten() {
        want.insert(e["name"].as_str().unwrap_or_default().to_string());
    }
    for m in config["mounts"].as_array().into_iter().flatten() {
        if m["settable"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == "source"))
        {
            want.insert(format!("{}.source", m["name"].as_str().unwrap_or_default()));
        }
    }
    let page = docs()
        .into_iter()
        .find(|d| d.rel == "docs/options.md")
        .ok_or("docs/options.md is missing (the plugin settings table lives there)")?;
    let table: Vec<&str> = page
        .text
        .lines()
        .skip_while(|l| !l.starts_with("| setting (`docker plugin set"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    if table.is_empty() {
        return Err(
            "docs/options.md: no plugin settings table (a row starting `| setting (`docker plugin set`)"
                .into(),
        );
    }
    let mut have = BTreeSet::new();
    for row in table {
        let first = row.split('|').nth(1).unwrap_or_default();
        let (spans, _) = code_spans(first);
        have.extend(spans);
    }
    if want == have {
        Ok(())
    } else {
        Err(format!(
            "docs/options.md's plugin settings differ from plugin/config.json: missing {:?}, unknown {:?}",
            want.difference(&have).collect::<Vec<_>>(),
            have.difference(&want).collect::<Vec<_>>()
        )
        .into())
    }
}

/// The names after "expected" in a serde error: `` `a`, `b` or `c` ``.
fn expected_names(msg: &str) -> Vec<String> {
    let Some((_, tail)) = msg.split_once("expected") else {
        return Vec::new();
    };
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// What the schema says about a scenario file, from its own error message.
fn schema_names(toml: &str) -> Result<Vec<String>, Failed> {
    let file = std::env::temp_dir().join(format!(
        "docs-schema-{}-{}.toml",
        std::process::id(),
        toml.len()
    ));
    std::fs::write(&file, toml).map_err(|e| e.to_string())?;
    let r = harness::Scenario::load(&file);
    let _ = std::fs::remove_file(&file);
    let msg = match r {
        Ok(_) => return Err(format!("the schema accepted a key it should not:\n{toml}").into()),
        Err(e) => format!("{e:#}"),
    };
    let names = expected_names(&msg);
    if names.is_empty() {
        return Err(format!("cannot read the expected names from: {msg}").into());
    }
    Ok(names)
}

const SCENARIO_HEAD: &str = "description = \"x\"\nrequires = []\n";

/// docs/scenario-files.md names every key of the file the schema knows
/// (the step kinds and their keys: docs/scenario-steps.md, generated from
/// the harness's step table and checked by its own test).
fn scenario_file_keys_are_documented() -> Result<(), Failed> {
    let page = std::fs::read_to_string(root().join("docs/scenario-files.md"))
        .map_err(|e| e.to_string())?;
    let rows: Vec<&str> = page.lines().filter(|l| l.starts_with("| ")).collect();
    // The row whose first cell holds `first`.
    let row = |first: &str| -> Option<&str> {
        rows.iter().copied().find(|r| {
            code_spans(r.split('|').nth(1).unwrap_or_default())
                .0
                .iter()
                .any(|s| s == first)
                || r.split('|').nth(1).is_some_and(|c| c.trim() == first)
        })
    };
    let mut errors = Vec::new();
    let need = |section: &str, keys: Vec<String>, errors: &mut Vec<String>| match row(section) {
        None => errors.push(format!(
            "docs/scenario-files.md: no table row for {section}"
        )),
        Some(r) => {
            // A key is named by a code span that starts with it (`key`,
            // `key = …`, `[[key]]`), or inside an inline table `{ a, b }`.
            let (spans, _) = code_spans(r);
            // The span's first word, up to a blank, `=`, `]` or `,`.
            let ident = |t: &str| -> String {
                t.split(|c: char| c.is_whitespace() || matches!(c, '=' | ']' | ','))
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            let mut named = BTreeSet::new();
            for sp in &spans {
                if let Some(inner) = sp.strip_prefix('{') {
                    named.extend(inner.split(',').map(|k| ident(k.trim())));
                } else {
                    named.insert(ident(sp.trim_start_matches('[')));
                }
            }
            for k in keys {
                if !named.contains(k.as_str()) {
                    errors.push(format!(
                        "docs/scenario-files.md: the {section} row does not name `{k}`"
                    ));
                }
            }
        }
    };
    let bogus = "zz_not_a_key = 1\n";
    let top = schema_names(&format!("{bogus}{SCENARIO_HEAD}"))?;
    need("top level", top, &mut errors);
    let host = "[[hosts]]\nname = \"h1\"\n";
    let sections = [
        ("`[bgp]`", format!("{SCENARIO_HEAD}[bgp]\n{bogus}{host}")),
        ("`[bgp.bfd]`", format!("{SCENARIO_HEAD}[bgp.bfd]\n{bogus}{host}")),
        ("`[driver]`", format!("{SCENARIO_HEAD}[driver]\n{bogus}{host}")),
        ("`[[segments]]`", format!("{SCENARIO_HEAD}[[segments]]\n{bogus}{host}")),
        ("`[[hosts]]`", format!("{SCENARIO_HEAD}{host}{bogus}")),
        ("`[[routers]]`", format!("{SCENARIO_HEAD}{host}[[routers]]\n{bogus}")),
        ("`[[networks]]`", format!("{SCENARIO_HEAD}{host}[[networks]]\n{bogus}")),
        ("`[[containers]]`", format!("{SCENARIO_HEAD}{host}[[containers]]\n{bogus}")),
        ("`[etcd]`", format!("{SCENARIO_HEAD}[etcd]\n{bogus}{host}")),
        (
            "`[[containers]]`",
            format!("{SCENARIO_HEAD}{host}[[containers]]\nname = \"c\"\nhost = \"h1\"\nnetwork = \"n\"\nhealth = {{ zz_not_a_key = 1 }}\n"),
        ),
    ];
    for (section, toml) in sections {
        let keys = schema_names(&toml)?;
        need(section.trim_matches('`'), keys, &mut errors);
    }
    verdict(errors)
}

fn the_block<'a>(blocks: &'a [Block], tag: &str) -> Result<&'a Block, Failed> {
    the_block_in("README.md", blocks, tag)
}

/// The one block of page `rel` tagged `<!-- docs-test: TAG -->`.
fn the_block_in<'a>(rel: &str, blocks: &'a [Block], tag: &str) -> Result<&'a Block, Failed> {
    let found: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.tag.as_deref() == Some(tag))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "{rel} must have exactly one fenced block after `<!-- docs-test: {tag} -->`, found {}",
            found.len()
        )
        .into()),
    }
}

/// The commands of a tagged block: its lines without comments.
fn block_commands(b: &Block) -> Vec<Vec<String>> {
    block_lines(b)
        .into_iter()
        .flat_map(|(_, l)| shell_commands(&l))
        .collect()
}

fn the_two_commands_are_true() -> Result<(), Failed> {
    let readme = &docs()[0];
    let (blocks, _) = scan(&readme.text);
    let mut errors = Vec::new();
    let commands = block_commands(the_block(&blocks, "commands")?);
    let scripts: Vec<String> = commands
        .iter()
        .filter_map(|c| c.iter().find(|w| *w != "sudo").cloned())
        .collect();
    if scripts != ["ci/demo.sh", "ci/test.sh"] {
        errors.push(format!(
            "README.md: the two commands are {scripts:?}, not ci/demo.sh and ci/test.sh"
        ));
    }
    for s in &scripts {
        let meta = std::fs::metadata(root().join(s));
        if !meta
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        {
            errors.push(format!("{s} is not an executable file"));
        }
    }
    let demo = std::fs::read_to_string(root().join("ci/demo.sh")).map_err(|e| e.to_string())?;
    let quick = the_block(&blocks, "quickstart")?;
    for (_, line) in block_lines(quick) {
        if !line.is_empty() && !demo.lines().any(|l| l.contains(line.as_str())) {
            errors.push(format!(
                "ci/demo.sh does not run the quick start's line `{line}` word for word"
            ));
        }
    }
    if !demo.lines().any(|l| l.trim() == "ci/install.sh demo") {
        errors.push("ci/demo.sh does not call `ci/install.sh demo`".into());
    }
    // What each profile would install (dry run: changes nothing).
    let packages = |profile: &str| -> Result<Vec<String>, Failed> {
        let out = Command::new("bash")
            .arg(root().join("ci/install.sh"))
            .args(["--dry-run", profile])
            .output()
            .map_err(|e| format!("ci/install.sh --dry-run {profile}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("ci/vm/run.sh") != (profile == "full") {
            return Err(format!("ci/install.sh --dry-run {profile}: {text}").into());
        }
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("ci/install.sh: packages: "))
            .ok_or_else(|| {
                format!("ci/install.sh --dry-run {profile} names no packages: {text}")
            })?;
        Ok(line.split_whitespace().map(str::to_string).collect())
    };
    let demo_pkgs = packages("demo")?;
    let full_pkgs = packages("full")?;
    for p in ["gobgpd", "iproute2"] {
        if !demo_pkgs.iter().any(|x| x == p) {
            errors.push(format!("ci/install.sh demo does not install {p}"));
        }
    }
    for p in [
        "frr",
        "bird2",
        "chromium",
        "docker.io",
        "qemu-system-x86",
        "busybox-static",
        "docker-registry",
    ] {
        if demo_pkgs.iter().any(|x| x == p) {
            errors.push(format!(
                "ci/install.sh demo installs {p}, which the demo does not need"
            ));
        }
    }
    for p in &demo_pkgs {
        if !full_pkgs.contains(p) {
            errors.push(format!("ci/install.sh full lacks the demo's {p}"));
        }
    }
    for p in [
        "frr",
        "bird2",
        "nftables",
        "busybox-static",
        "docker-registry",
    ] {
        if !full_pkgs.iter().any(|x| x == p) {
            errors.push(format!("ci/install.sh full does not install {p}"));
        }
    }
    verdict(errors)
}

fn quick_start_runs_as_written() -> Result<Completion, Failed> {
    let readme = &docs()[0];
    let (blocks, _) = scan(&readme.text);
    let cmds = block_commands(the_block(&blocks, "quickstart")?);
    if cmds.is_empty() {
        return Err("README.md: the quick start block holds no command".into());
    }
    if !nix::unistd::geteuid().is_root() {
        let reason = "the quick start needs root (network namespaces)";
        if under_ci() {
            return Err(format!("{reason}, and under CI=true that is a failure").into());
        }
        return Ok(Completion::ignored_with(reason));
    }
    // A folder of its own: the scenarios are there, the reports land there.
    let work = std::env::temp_dir().join(format!("docs-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("target")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(root().join("scenarios"), work.join("scenarios"))
        .map_err(|e| e.to_string())?;
    let result = (|| -> Result<Completion, Failed> {
        for cmd in &cmds {
            let (prog, args) = program(cmd).ok_or("an empty command")?;
            if prog != "harness" {
                return Err(format!(
                    "the quick start runs {prog}; this test runs only `harness` lines"
                )
                .into());
            }
            let json = args
                .iter()
                .position(|a| a == "--json")
                .and_then(|i| args.get(i + 1))
                .ok_or("the quick start's harness run has no `--json FILE`: the test reads the report to tell a pass from a skip")?;
            let out = Command::new(harness_bin())
                .args(args)
                .current_dir(&work)
                .output()
                .map_err(|e| format!("run harness: {e}"))?;
            let log = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = std::fs::read_to_string(work.join(json))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .ok_or_else(|| {
                    format!(
                        "`harness {}` wrote no report {json}:\n{log}",
                        args.join(" ")
                    )
                })?;
            if let Some(reason) = report["skipped"].as_str() {
                if under_ci() {
                    return Err(
                        format!("the quick start was skipped under CI=true: {reason}").into(),
                    );
                }
                return Ok(Completion::ignored_with(format!(
                    "the quick start skipped: {reason}"
                )));
            }
            if !out.status.success() || report["passed"] != serde_json::Value::Bool(true) {
                return Err(format!("`harness {}` did not pass:\n{log}", args.join(" ")).into());
            }
        }
        Ok(Completion::Completed)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn check_target(from: &str, dest: &str, errors: &mut Vec<String>) {
    let (path, anchor) = match dest.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (dest, None),
    };
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let target = if path.is_empty() {
        root().join(from)
    } else {
        root().join(base).join(path)
    };
    if !target.exists() {
        errors.push(format!(
            "{from}: link to {dest}: {} does not exist",
            target.display()
        ));
        return;
    }
    if let Some(a) = anchor {
        if target.extension().is_some_and(|x| x == "md") {
            let text = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&text).contains(a) {
                errors.push(format!(
                    "{from}: link to {dest}: no heading with the anchor #{a}"
                ));
            }
        }
    }
}

fn relative_links_resolve() -> Result<(), Failed> {
    let mut errors = Vec::new();
    let mut links = 0;
    let docs = docs();
    let mut linked_from_readme = BTreeSet::new();
    for d in &docs {
        let (_, paras) = scan(&d.text);
        for p in paras {
            let (_, plain) = code_spans(&p.text);
            for dest in link_targets(&plain) {
                if dest.contains("://") || dest.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                if d.rel == "README.md" {
                    linked_from_readme.insert(dest.split('#').next().unwrap_or("").to_string());
                }
                check_target(&d.rel, &dest, &mut errors);
            }
        }
    }
    for d in docs.iter().skip(1) {
        if !linked_from_readme.contains(&d.rel) {
            errors.push(format!("{} is not linked from README.md", d.rel));
        }
    }
    // The plugin's `docker plugin inspect` points at a README section.
    let config =
        std::fs::read_to_string(root().join("plugin/config.json")).map_err(|e| e.to_string())?;
    let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
    if let Some((_, anchor)) = config["documentation"]
        .as_str()
        .and_then(|u| u.split_once('#'))
    {
        if !anchors(&docs[0].text).contains(anchor) {
            errors.push(format!("plugin/config.json's documentation URL names #{anchor}, which README.md has no heading for"));
        }
    }
    if links < 10 {
        errors.push(format!(
            "only {links} relative links found: is the scan broken?"
        ));
    }
    verdict(errors)
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("flags_in_the_docs_exist", flags_in_the_docs_exist),
        Trial::test(
            "environment_variables_in_the_docs_exist",
            environment_variables_in_the_docs_exist,
        ),
        Trial::test("metrics_in_the_docs_exist", metrics_in_the_docs_exist),
        Trial::test(
            "plugin_settings_match_the_plugin",
            plugin_settings_match_the_plugin,
        ),
        Trial::test(
            "scenario_file_keys_are_documented",
            scenario_file_keys_are_documented,
        ),
        Trial::test("the_two_commands_are_true", the_two_commands_are_true),
        Trial::ignorable_test("quick_start_runs_as_written", quick_start_runs_as_written),
        Trial::test("relative_links_resolve", relative_links_resolve),
        Trial::test(
            "router_config_examples_are_generated",
            router_config::router_config_examples_are_generated,
        ),
        Trial::ignorable_test(
            "router_config_examples_parse",
            router_config::router_config_examples_parse,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
