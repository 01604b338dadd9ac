//! Which skips the suite may report, and the proof that each listed skip
//! still happens.
//!
//! `ci/expected-skips` lists `TEST WHERE REASON-SUBSTRING` lines (a scenario
//! and its engine, or a driver test and its test binary), grouped under
//! `[if FACT...]` headers that say on which kernels they happen (`ipvlan`,
//! `no-ipvlan`, `vlan`, `no-vlan`, `force-forwarding`,
//! `no-force-forwarding`; `[always]` for none). Every test binary of the
//! suite appends one line per test it ran to the trial log
//! `$HARNESS_TRIAL_LOG` (JSON: test, where, the skip reason or null); a
//! log starts with the facts of the kernel it ran on (`harness skips
//! start`). `harness skips check` then compares the union of every log
//! with the list: a skip no line allows fails, and so does a line that no
//! longer happens (a stale line).
//!
//! In: the expected-skips text, trial logs, the kernel's [`Facts`] (from
//! `machine`). Out: the lines that hold on a kernel (the per-trial skip
//! policy in `machine` uses them), appended log lines, and the check's
//! verdict. Owns both file formats. No I/O besides the log files.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The environment variable naming the trial log to append to.
pub const LOG_ENV: &str = "HARNESS_TRIAL_LOG";

/// What a kernel has, as expected-skips conditions name it: each fact
/// appears as `NAME` or `no-NAME`.
pub const FACT_NAMES: [&str; 3] = ["ipvlan", "vlan", "force-forwarding"];

/// The facts of one kernel: the names from [`FACT_NAMES`] it has.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Facts {
    pub has: BTreeSet<String>,
}

impl Facts {
    /// Whether `cond` (`ipvlan` or `no-ipvlan`, ...) holds.
    pub fn holds(&self, cond: &str) -> bool {
        match cond.strip_prefix("no-") {
            Some(name) => !self.has.contains(name),
            None => self.has.contains(cond),
        }
    }

    /// Every fact as a condition: `ipvlan no-vlan ...`.
    pub fn describe(&self) -> String {
        FACT_NAMES
            .iter()
            .map(|n| {
                if self.has.contains(*n) {
                    n.to_string()
                } else {
                    format!("no-{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One line of the expected-skips file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSkip {
    /// A scenario's name, or a driver test's function name.
    pub test: String,
    /// The scenario's engine, or the driver test's binary (`socket`).
    pub place: String,
    /// A substring of the skip reason.
    pub reason: String,
    /// Facts that must all hold where the skip happens (empty: always).
    pub when: Vec<String>,
    /// Its line number, for messages.
    pub line: usize,
}

impl ExpectedSkip {
    fn applies(&self, f: &Facts) -> bool {
        self.when.iter().all(|c| f.holds(c))
    }

    fn allows(&self, t: &Trial, reason: &str) -> bool {
        self.test == t.test && self.place == t.place && reason.contains(&self.reason)
    }

    fn label(&self, file: &str) -> String {
        let when = if self.when.is_empty() {
            "always".to_string()
        } else {
            format!("if {}", self.when.join(" "))
        };
        format!(
            "{file}:{} `{} {} {}` [{when}]",
            self.line, self.test, self.place, self.reason
        )
    }
}

/// Lines `TEST WHERE REASON-SUBSTRING` under `[if FACT...]` / `[always]`
/// headers (before the first header: always); `#` starts a comment.
pub fn parse_expected(text: &str) -> Result<Vec<ExpectedSkip>, String> {
    let mut out = Vec::new();
    let mut when: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let mut words = head.split_whitespace();
            when = match words.next() {
                Some("always") if words.next().is_none() => Vec::new(),
                Some("if") => {
                    let conds: Vec<String> = words.map(str::to_string).collect();
                    if conds.is_empty() {
                        return Err(format!(
                            "expected-skips line {}: `[if]` names no fact",
                            i + 1
                        ));
                    }
                    for c in &conds {
                        let name = c.strip_prefix("no-").unwrap_or(c);
                        if !FACT_NAMES.contains(&name) {
                            return Err(format!(
                                "expected-skips line {}: unknown fact {c:?} (known: {}, each also as no-NAME)",
                                i + 1,
                                FACT_NAMES.join(", ")
                            ));
                        }
                    }
                    conds
                }
                _ => {
                    return Err(format!(
                        "expected-skips line {}: want `[if FACT...]` or `[always]`, got {line:?}",
                        i + 1
                    ))
                }
            };
            continue;
        }
        let mut words = line.split_whitespace();
        let (test, place) = (words.next(), words.next());
        let reason = words.collect::<Vec<_>>().join(" ");
        match (test, place) {
            (Some(t), Some(p)) if !reason.is_empty() => out.push(ExpectedSkip {
                test: t.to_string(),
                place: p.to_string(),
                reason,
                when: when.clone(),
                line: i + 1,
            }),
            _ => {
                return Err(format!(
                    "expected-skips line {}: want `TEST WHERE REASON-SUBSTRING`, got {line:?}",
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

/// The lines that hold on a kernel with these facts.
pub fn applying(lines: &[ExpectedSkip], f: &Facts) -> Vec<ExpectedSkip> {
    lines.iter().filter(|l| l.applies(f)).cloned().collect()
}

/// Whether a skip of `test` on `place` with `reason` is allowed by `lines`.
pub fn allowed(lines: &[ExpectedSkip], test: &str, place: &str, reason: &str) -> bool {
    let t = Trial {
        test: test.into(),
        place: place.into(),
        skipped: None,
    };
    lines.iter().any(|l| l.allows(&t, reason))
}

/// One line of a trial log: a test that ran, and its skip reason if it skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub test: String,
    #[serde(rename = "where")]
    pub place: String,
    pub skipped: Option<String>,
}

/// The first line of a trial log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    kernel: String,
    facts: Facts,
}

/// Starts (or empties) a trial log with the kernel's facts.
pub fn start_log(path: &Path, kernel: &str, facts: &Facts) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let h = Header {
        kernel: kernel.to_string(),
        facts: facts.clone(),
    };
    std::fs::write(path, format!("{}\n", serde_json::to_string(&h)?))
        .with_context(|| format!("write {}", path.display()))
}

/// Appends `t` to the log `$HARNESS_TRIAL_LOG` names, if it names one: one
/// `write` of one line in append mode, so parallel trials never interleave.
pub fn record(t: &Trial) -> Result<()> {
    let Some(path) = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let line = format!("{}\n", serde_json::to_string(t)?);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| {
            format!(
                "{LOG_ENV}={}: cannot append (start it with `harness skips start`)",
                Path::new(&path).display()
            )
        })?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("append to {}", Path::new(&path).display()))
}

/// One trial log read back: where it ran, and every trial.
#[derive(Debug, Clone)]
pub struct Log {
    pub name: String,
    pub kernel: String,
    pub facts: Facts,
    pub trials: Vec<Trial>,
}

pub fn read_log(path: &Path) -> Result<Log> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_log(&path.display().to_string(), &text)
}

fn parse_log(name: &str, text: &str) -> Result<Log> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().with_context(|| {
        format!("{name}: empty (no kernel facts: start it with `harness skips start`)")
    })?;
    let h: Header = serde_json::from_str(first)
        .with_context(|| format!("{name}: the first line is not the kernel's facts"))?;
    let mut trials = Vec::new();
    for (i, l) in lines.enumerate() {
        trials.push(
            serde_json::from_str(l).with_context(|| format!("{name} line {}: {l:?}", i + 2))?,
        );
    }
    Ok(Log {
        name: name.to_string(),
        kernel: h.kernel,
        facts: h.facts,
        trials,
    })
}

/// What [`check`] found: skips no line allows, lines that no longer
/// happen, and lines no run here could test (a note, not a failure).
#[derive(Debug, Default)]
pub struct Verdict {
    pub unlisted: Vec<String>,
    pub stale: Vec<String>,
    pub untested: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.unlisted.is_empty() && self.stale.is_empty()
    }
}

/// Compares the union of the logs with the expected lines:
/// - every skip must be allowed by a line that holds on its log's kernel;
/// - every line must be matched by a skip in some log whose kernel it
///   holds on, wherever that test ran on such a kernel; a line whose test
///   ran nowhere at all (renamed, deleted) is stale too. A line whose test
///   ran, but never on a kernel the line is about (ipvlan lines on a
///   machine without ipvlan), is only noted: another machine checks it.
pub fn check(file: &str, lines: &[ExpectedSkip], logs: &[Log]) -> Verdict {
    let mut v = Verdict::default();
    for log in logs {
        let here = applying(lines, &log.facts);
        for t in &log.trials {
            if let Some(reason) = &t.skipped {
                if !here.iter().any(|l| l.allows(t, reason)) {
                    v.unlisted.push(format!(
                        "{} ({}): {} on {} skipped ({reason}), and no line of {file} for [{}] allows it",
                        log.name,
                        log.kernel,
                        t.test,
                        t.place,
                        log.facts.describe()
                    ));
                }
            }
        }
    }
    for l in lines {
        let ran_anywhere = logs
            .iter()
            .flat_map(|g| &g.trials)
            .any(|t| t.test == l.test && t.place == l.place);
        let runs: Vec<(&Log, &Trial)> = logs
            .iter()
            .filter(|g| l.applies(&g.facts))
            .flat_map(|g| g.trials.iter().map(move |t| (g, t)))
            .filter(|(_, t)| t.test == l.test && t.place == l.place)
            .collect();
        let happened = runs
            .iter()
            .any(|(_, t)| t.skipped.as_deref().is_some_and(|r| l.allows(t, r)));
        if happened {
            continue;
        }
        if !ran_anywhere {
            v.stale.push(format!(
                "{}: no run of {} on {} at all (renamed or removed? remove the line)",
                l.label(file),
                l.test,
                l.place
            ));
        } else if runs.is_empty() {
            v.untested.push(l.label(file));
        } else {
            let seen: Vec<String> = runs
                .iter()
                .map(|(g, t)| {
                    format!(
                        "{}: {}",
                        g.name,
                        t.skipped
                            .as_deref()
                            .map_or("ran".to_string(), |r| format!("skipped ({r})"))
                    )
                })
                .collect();
            v.stale.push(format!(
                "{}: no longer happens ({}); remove the line",
                l.label(file),
                seen.join("; ")
            ));
        }
    }
    v
}

/// `harness skips check`: reads the file and the logs, prints the
/// verdict; an error when it fails.
pub fn check_files(expected: &Path, logs: &[impl AsRef<Path>]) -> Result<String> {
    let file = expected.display().to_string();
    let text = std::fs::read_to_string(expected).with_context(|| format!("read {file}"))?;
    let lines = parse_expected(&text).map_err(anyhow::Error::msg)?;
    let logs = logs
        .iter()
        .map(|p| read_log(p.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    if logs.is_empty() {
        bail!("no trial log given");
    }
    let v = check(&file, &lines, &logs);
    let mut out = String::new();
    for g in &logs {
        let skipped = g.trials.iter().filter(|t| t.skipped.is_some()).count();
        out.push_str(&format!(
            "{}: kernel {} [{}], {} tests ran, {skipped} skipped\n",
            g.name,
            g.kernel,
            g.facts.describe(),
            g.trials.len()
        ));
    }
    for u in &v.untested {
        out.push_str(&format!(
            "not checked here (no run on such a kernel): {u}\n"
        ));
    }
    if v.passed() {
        out.push_str(&format!(
            "every skip is listed in {file}, and every line that applies here happened\n"
        ));
        return Ok(out);
    }
    for u in &v.unlisted {
        out.push_str(&format!("UNLISTED SKIP: {u}\n"));
    }
    for s in &v.stale {
        out.push_str(&format!("STALE LINE: {s}\n"));
    }
    bail!(
        "{out}{} unlisted skip(s), {} stale line(s)",
        v.unlisted.len(),
        v.stale.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(has: &[&str]) -> Facts {
        Facts {
            has: has.iter().map(|s| s.to_string()).collect(),
        }
    }

    const LIST: &str = "# comment\n\
        l3   emulator  kernel gap: this kernel\n\
        [if no-ipvlan]\n\
        l3 dockerd has no ipvlan # why\n\
        [if ipvlan no-force-forwarding]\n\
        fwd socket no per-link IPv6 forwarding\n\
        [always]\n\
        other emulator x\n";

    fn log(name: &str, f: &[&str], trials: &[(&str, &str, Option<&str>)]) -> Log {
        Log {
            name: name.into(),
            kernel: "k".into(),
            facts: facts(f),
            trials: trials
                .iter()
                .map(|(t, p, s)| Trial {
                    test: t.to_string(),
                    place: p.to_string(),
                    skipped: s.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn sections_set_conditions_and_bad_lines_are_refused() {
        let l = parse_expected(LIST).unwrap();
        assert_eq!(l.len(), 4);
        assert!(l[0].when.is_empty());
        assert_eq!(l[1].when, ["no-ipvlan"]);
        assert_eq!(l[2].when, ["ipvlan", "no-force-forwarding"]);
        assert!(l[3].when.is_empty());
        assert_eq!(applying(&l, &facts(&["ipvlan"])).len(), 3);
        assert_eq!(applying(&l, &facts(&["force-forwarding"])).len(), 3);
        assert!(parse_expected("l3 emulator\n").is_err());
        assert!(parse_expected("[if bonding]\n").is_err());
        assert!(parse_expected("[if]\n").is_err());
        assert!(parse_expected("[sometimes]\n").is_err());
    }

    #[test]
    fn the_union_of_the_logs_must_match_the_list_both_ways() {
        let l = parse_expected(LIST).unwrap();
        let host = log(
            "host",
            &["force-forwarding"],
            &[
                (
                    "l3",
                    "emulator",
                    Some("kernel gap: this kernel has no ipvlan"),
                ),
                (
                    "l3",
                    "dockerd",
                    Some("kernel gap: this kernel has no ipvlan"),
                ),
                ("fwd", "socket", None),
                ("other", "emulator", Some("x marks")),
            ],
        );
        let vm = log(
            "vm",
            &["ipvlan", "vlan"],
            &[
                ("l3", "emulator", None),
                ("fwd", "socket", Some("no per-link IPv6 forwarding (6.17)")),
            ],
        );
        let v = check("list", &l, &[host.clone(), vm.clone()]);
        assert!(v.passed(), "{v:?}");
        assert!(v.untested.is_empty(), "{v:?}");

        // A skip that stopped happening: its line is stale.
        let mut fixed = host.clone();
        fixed.trials[1].skipped = None;
        let v = check("list", &l, &[fixed, vm.clone()]);
        assert_eq!(v.stale.len(), 1, "{v:?}");
        assert!(
            v.stale[0].contains("list:4") && v.stale[0].contains("ran"),
            "{v:?}"
        );

        // A skip the list does not allow on that kernel.
        let mut extra = vm.clone();
        extra.trials[0].skipped = Some("kernel gap: this kernel".into());
        let v = check("list", &l, &[host.clone(), extra]);
        // Line 2 holds everywhere and allows it: listed.
        assert!(v.passed(), "{v:?}");
        let mut extra = vm.clone();
        extra.trials.push(Trial {
            test: "l3".into(),
            place: "dockerd".into(),
            skipped: Some("has no ipvlan".into()),
        });
        let v = check("list", &l, &[host.clone(), extra]);
        assert_eq!(
            v.unlisted.len(),
            1,
            "[if no-ipvlan] does not hold in the VM: {v:?}"
        );

        // A line whose test ran only on other kernels: noted, not stale.
        let v = check("list", &l, std::slice::from_ref(&host));
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.untested.len(), 1, "{v:?}");

        // A line whose test ran nowhere (a renamed scenario): stale.
        let l2 = parse_expected(&format!("{LIST}gone emulator y\n")).unwrap();
        let v = check("list", &l2, &[host, vm]);
        assert_eq!(v.stale.len(), 1, "{v:?}");
        assert!(v.stale[0].contains("no run of gone"), "{v:?}");
    }

    #[test]
    fn a_log_starts_with_its_facts_and_takes_appended_trials() {
        let dir = std::env::temp_dir().join(format!("harness-skips-{}", std::process::id()));
        let p = dir.join("t.jsonl");
        start_log(&p, "6.1", &facts(&["ipvlan"])).unwrap();
        let t = Trial {
            test: "a".into(),
            place: "emulator".into(),
            skipped: Some("why".into()),
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(f, "{}", serde_json::to_string(&t).unwrap()).unwrap();
        let g = read_log(&p).unwrap();
        assert_eq!(g.kernel, "6.1");
        assert!(g.facts.holds("ipvlan") && g.facts.holds("no-vlan"));
        assert_eq!(g.trials, [t]);
        assert!(parse_log("x", "{\"test\":\"a\",\"where\":\"b\",\"skipped\":null}\n").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
