//! Command lines as the docs test reads them, and the binaries' own word:
//! shell words and commands, `--flag` tokens, and every (sub)command of
//! `ipvlan-bgp` and `harness` with the flags and environment variables its
//! `--help` defines. In: a line of text, a binary. Out: words, flags, [`Cli`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Failed;

/// `--name` tokens in a piece of text (not `---`, not a bare `--`).
pub fn flags_in(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && b[i + 2].is_ascii_lowercase()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts {
            let end = i
                + 2
                + b[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == b'-')
                    .count();
            out.push(text[i..end].trim_end_matches('-').to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// A shell line as words: quotes removed, unquoted `;`, `&&`, `||`, `|`,
/// `&`, `$(` and `)` separate commands, an unquoted `#` after a blank starts
/// a comment.
pub fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let end_word = |cmds: &mut Vec<Vec<String>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            cmds.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                word.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                in_word = true;
            }
            '#' if !in_word => break,
            ' ' | '\t' => end_word(&mut cmds, &mut word, &mut in_word),
            ';' | '|' | '&' | ')' => {
                end_word(&mut cmds, &mut word, &mut in_word);
                cmds.push(Vec::new());
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                end_word(&mut cmds, &mut word, &mut in_word);
                cmds.push(Vec::new());
                i += 1;
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    end_word(&mut cmds, &mut word, &mut in_word);
    cmds.retain(|c| !c.is_empty());
    cmds
}

pub fn harness_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_harness"))
}

pub fn driver_bin() -> Result<PathBuf, Failed> {
    if let Some(p) = std::env::var_os("IPVLAN_BGP_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = harness_bin().with_file_name("ipvlan-bgp");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no ipvlan-bgp binary next to {} (build it: cargo build --workspace, or set IPVLAN_BGP_BIN)",
            harness_bin().display()
        )
        .into())
    }
}

pub fn help_text(bin: &Path, path: &[String]) -> Result<String, Failed> {
    let out = Command::new(bin)
        .args(path)
        .arg("--help")
        .output()
        .map_err(|e| format!("{} {} --help: {e}", bin.display(), path.join(" ")))?;
    if !out.status.success() {
        return Err(format!("{} {} --help failed", bin.display(), path.join(" ")).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The options a help text defines (not those its descriptions mention).
pub fn defined_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = match t.strip_prefix('-') {
                Some(r)
                    if r.starts_with(|c: char| c.is_ascii_alphabetic())
                        && r[1..].starts_with(", ") =>
                {
                    &r[3..]
                }
                _ => t,
            };
            let name = t.strip_prefix("--")?;
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .collect()
}

pub fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// Every (sub)command path of a binary with the flags its help defines.
pub struct Cli {
    pub name: &'static str,
    pub commands: BTreeMap<Vec<String>, BTreeSet<String>>,
    /// `[env: NAME=]` lines of every help text.
    pub env: BTreeSet<String>,
}

impl Cli {
    pub fn load(name: &'static str, bin: &Path) -> Result<Cli, Failed> {
        let mut cli = Cli {
            name,
            commands: BTreeMap::new(),
            env: BTreeSet::new(),
        };
        let mut todo = vec![Vec::<String>::new()];
        while let Some(path) = todo.pop() {
            let help = help_text(bin, &path)?;
            for l in help.lines() {
                if let Some(r) = l.trim().strip_prefix("[env: ") {
                    if let Some((v, _)) = r.split_once('=') {
                        cli.env.insert(v.to_string());
                    }
                }
            }
            for sub in subcommands(&help) {
                let mut p = path.clone();
                p.push(sub);
                todo.push(p);
            }
            cli.commands.insert(path, defined_flags(&help));
        }
        Ok(cli)
    }

    pub fn all_flags(&self) -> BTreeSet<String> {
        self.commands.values().flatten().cloned().collect()
    }

    /// Checks one command line of this program: `words` follow its name.
    pub fn check(&self, words: &[String], at: &str, errors: &mut Vec<String>) {
        let mut path: Vec<String> = Vec::new();
        let mut descending = true;
        for w in words {
            if w.starts_with('-') || w.starts_with("[-") {
                let known = &self.commands[&path];
                for f in flags_in(w) {
                    if !known.contains(&f) {
                        errors.push(format!(
                            "{at}: `{}{} {f}`: no such flag in `{} {}--help`",
                            self.name,
                            path.iter().map(|p| format!(" {p}")).collect::<String>(),
                            self.name,
                            path.iter().map(|p| format!("{p} ")).collect::<String>(),
                        ));
                    }
                }
                continue;
            }
            if descending {
                let mut next = path.clone();
                next.push(w.clone());
                if self.commands.contains_key(&next) {
                    path = next;
                    continue;
                }
                descending = false;
            }
        }
    }
}

/// The program of a command: after `sudo`, `exec`, `env` and `VAR=value`.
pub fn program(cmd: &[String]) -> Option<(String, &[String])> {
    let mut i = 0;
    while i < cmd.len() {
        let w = &cmd[i];
        let assignment = w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if w == "sudo"
            || w == "exec"
            || w == "env"
            || assignment
            || (i > 0 && cmd[i - 1] == "sudo" && w.starts_with('-'))
        {
            i += 1;
            continue;
        }
        let base = w.rsplit('/').next().unwrap_or(w).to_string();
        return Some((base, &cmd[i + 1..]));
    }
    None
}
