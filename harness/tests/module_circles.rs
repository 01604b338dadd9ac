//! No import circles: neither between files nor between top-level modules.
//!
//! In: the source trees in [`TREES`], read as text. The module tree comes
//! from the `mod` declarations (from `lib.rs`, file modules and inline ones
//! such as `mod tests { .. }`); the arrows from every path that names
//! another module of the crate: `use crate::..`, `use super::..`,
//! `self::..`, a child module's name, anywhere in the code (comments and
//! string literals are skipped). A path points at the deepest module it
//! names; an item re-exported by a `mod.rs` points at that `mod.rs`.
//! Out: one trial per tree, failing with every circle found, each arrow of
//! it with the names that the first file takes from the second. A parent
//! that declares a child (`mod x;`) does not import it; a parent that uses
//! what the child defines does.
//!
//! A further trial plants circles in a throw-away tree and requires the
//! checker to find them, so it cannot pass by finding nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};

/// The source trees checked, relative to the workspace root, and whether a
/// circle there fails `cargo test` (`true`) or the trial is only listed as
/// ignored (`false`; `cargo test -p harness --test module_circles --
/// --ignored` still runs it and prints the circles).
///
/// `driver/src` is being restructured (issue 19) and still has a circle on
/// main (kernel.rs, network.rs, route_attrs.rs): once that work is merged,
/// switch its `false` to `true`, so CI fails on any new circle there too.
const TREES: &[(&str, bool)] = &[("harness/src", true), ("driver/src", true)];

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut trials: Vec<Trial> = TREES
        .iter()
        .map(|&(tree, enforced)| {
            let dir = root.join(tree);
            Trial::test(format!("no_import_circles::{tree}"), move || {
                let found = circles(&dir)?;
                if found.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{tree}:\n{}", found.join("\n")).into())
                }
            })
            .with_ignored_flag(!enforced)
        })
        .collect();
    trials.push(Trial::test("the_checker_finds_planted_circles", planted));
    libtest_mimic::run(&args, trials).exit();
}

/// A module: its path from the crate root and the file it lives in.
#[derive(Debug, Clone)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

/// One crate: its modules (file and inline ones) by path.
struct Crate {
    dir: PathBuf,
    modules: BTreeMap<Vec<String>, Module>,
}

/// Every circle of files and of top-level modules in the crates under
/// `dir` (`lib.rs` and `main.rs` are each a crate root), as lines of text.
fn circles(dir: &Path) -> Result<Vec<String>, Failed> {
    let mut out = Vec::new();
    for root in ["lib.rs", "main.rs"] {
        let root_file = dir.join(root);
        if !root_file.is_file() {
            continue;
        }
        let krate = read_crate(dir, &root_file)?;
        let files = arrows(&krate)?;
        for scc in cycles(&files) {
            out.push(format!(
                "circle of files in the crate of {root}: {}",
                describe(&scc, &files)
            ));
        }
        let mut tops: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for ((a, b), names) in &files {
            let (ta, tb) = (top(a), top(b));
            if ta != tb {
                tops.entry((ta.clone(), tb.clone()))
                    .or_default()
                    .insert(format!("{a} -> {b}: {}", join(names)));
            }
        }
        for scc in cycles(&tops) {
            let mut lines = Vec::new();
            for a in &scc {
                for b in &scc {
                    if let Some(why) = tops.get(&(a.clone(), b.clone())) {
                        lines.push(format!("  {a} -> {b} ({})", join(why)));
                    }
                }
            }
            out.push(format!(
                "circle of top-level modules in the crate of {root}: {}\n{}",
                scc.iter().cloned().collect::<Vec<_>>().join(", "),
                lines.join("\n")
            ));
        }
    }
    Ok(out)
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The top-level module of a file (`runner/expect.rs` -> `runner`).
fn top(file: &str) -> String {
    match file.split_once('/') {
        Some((dir, _)) => dir.to_string(),
        None => file.trim_end_matches(".rs").to_string(),
    }
}

fn describe(
    scc: &BTreeSet<String>,
    edges: &BTreeMap<(String, String), BTreeSet<String>>,
) -> String {
    let mut lines = vec![scc.iter().cloned().collect::<Vec<_>>().join(", ")];
    for a in scc {
        for b in scc {
            if let Some(names) = edges.get(&(a.clone(), b.clone())) {
                lines.push(format!("  {a} -> {b}: {}", join(names)));
            }
        }
    }
    lines.join("\n")
}

/// Reads the module tree that `root` declares, following `mod x;` to
/// `x.rs` or `x/mod.rs`.
fn read_crate(dir: &Path, root: &Path) -> Result<Crate, Failed> {
    let mut modules = BTreeMap::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Failed::from(format!("read {}: {e}", file.display())))?;
        let tokens = tokens(&strip(&text));
        modules.insert(
            path.clone(),
            Module {
                path: path.clone(),
                file: file.clone(),
            },
        );
        // Where this file's child modules live.
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let base = file.parent().unwrap_or(dir).to_path_buf();
        let child_dir = if file == root || stem == "mod" {
            base
        } else {
            base.join(&*stem)
        };
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < tokens.len() {
            match tokens[i].as_str() {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                }
                "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1]) => {
                    let name = tokens[i + 1].clone();
                    let mut here = path.clone();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    here.push(name.clone());
                    if tokens[i + 2] == ";" {
                        // A file module: only at the file's top level (inline
                        // modules with file children are not used here).
                        let dir_here = inline.iter().fold(child_dir.clone(), |d, (n, _)| d.join(n));
                        let f1 = dir_here.join(format!("{name}.rs"));
                        let f2 = dir_here.join(&name).join("mod.rs");
                        let f = if f1.is_file() {
                            f1
                        } else if f2.is_file() {
                            f2
                        } else {
                            return Err(format!(
                                "{}: mod {name}; but neither {} nor {} exists",
                                file.display(),
                                f1.display(),
                                f2.display()
                            )
                            .into());
                        };
                        todo.push((here, f));
                    } else if tokens[i + 2] == "{" {
                        modules.insert(
                            here.clone(),
                            Module {
                                path: here,
                                file: file.clone(),
                            },
                        );
                        inline.push((name, depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    Ok(Crate {
        dir: dir.to_path_buf(),
        modules,
    })
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// (from file, to file) -> the names the first takes from the second,
/// files named relative to the tree (`runner/expect.rs`).
fn arrows(k: &Crate) -> Result<BTreeMap<(String, String), BTreeSet<String>>, Failed> {
    let rel = |p: &Path| {
        p.strip_prefix(&k.dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let files: BTreeMap<PathBuf, Vec<String>> = k
        .modules
        .values()
        .filter(|m| {
            // The module that owns the file (not an inline one in it).
            k.modules
                .values()
                .filter(|o| o.file == m.file)
                .all(|o| o.path.len() >= m.path.len())
        })
        .map(|m| (m.file.clone(), m.path.clone()))
        .collect();
    for (file, path) in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failed::from(format!("read {}: {e}", file.display())))?;
        let tokens = tokens(&strip(&text));
        for (context, target) in paths(&tokens) {
            let mut here = path.clone();
            here.extend(context);
            let Some((module, item)) = resolve(k, &here, &target) else {
                continue;
            };
            let to = &k.modules[&module].file;
            if to != file {
                out.entry((rel(file), rel(to))).or_default().insert(item);
            }
        }
    }
    Ok(out)
}

/// Follows a path from module `here`: `crate`, `super`, `self` or a child
/// module first, then as deep as it names modules. Answers the module
/// reached and the name taken from it; None for a path that does not start
/// in this crate (another crate, a local item, a type's associated item).
fn resolve(k: &Crate, here: &[String], path: &[String]) -> Option<(Vec<String>, String)> {
    let mut at: Vec<String>;
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            at = Vec::new();
            rest = &path[1..];
        }
        "self" => {
            at = here.to_vec();
            rest = &path[1..];
        }
        "super" => {
            at = here.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                at.pop();
                rest = &rest[1..];
            }
        }
        first => {
            let mut child = here.to_vec();
            child.push(first.to_string());
            if !k.modules.contains_key(&child) {
                return None;
            }
            at = here.to_vec();
        }
    }
    let mut item = String::from("*");
    for seg in rest {
        let mut next = at.clone();
        next.push(seg.clone());
        if k.modules.contains_key(&next) {
            at = next;
        } else {
            item = seg.clone();
            break;
        }
    }
    if item == "*" {
        item = at.last().cloned().unwrap_or_else(|| "crate".into());
    }
    Some((at, item))
}

/// Every path in the code, with the inline modules it sits in: each `use`
/// tree expanded (`use a::{b, c::d}` gives `a::b` and `a::c::d`), and every
/// `x::y::z` outside `use` lines.
fn paths(t: &[String]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match t[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if i + 2 < t.len() && is_ident(&t[i + 1]) && t[i + 2] == "{" => {
                inline.push((t[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "use" => {
                let end = t[i..]
                    .iter()
                    .position(|x| x == ";")
                    .map_or(t.len(), |p| i + p);
                let ctx: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                for p in use_tree(&t[i + 1..end], &[]) {
                    out.push((ctx.clone(), p));
                }
                i = end + 1;
                continue;
            }
            s if is_ident(s) && t.get(i + 1).is_some_and(|x| x == "::") => {
                // Not the tail of a longer path (`a::b::c` is read once, from
                // `a`), nor a visibility (`pub(in crate::a)` imports nothing).
                let starts = i == 0 || (t[i - 1] != "::" && t[i - 1] != "in");
                if starts {
                    let mut p = vec![s.to_string()];
                    let mut j = i + 1;
                    while j + 1 < t.len() && t[j] == "::" && is_ident(&t[j + 1]) {
                        p.push(t[j + 1].clone());
                        j += 2;
                    }
                    let ctx: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                    out.push((ctx, p));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Expands one `use` tree (the tokens between `use` and `;`).
fn use_tree(t: &[String], prefix: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < t.len() {
        let s = t[i].as_str();
        match s {
            "::" => {}
            "{" => {
                // Split the group at its top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < t.len() {
                    match t[j].as_str() {
                        "{" => depth += 1,
                        "}" if depth == 0 => break,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            out.extend(use_tree(&t[start..j], &path));
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                out.extend(use_tree(&t[start..j], &path));
                return out;
            }
            "as" => break,
            "*" => break,
            "pub" | "(" | ")" | "in" => {}
            _ if is_ident(s) => path.push(s.to_string()),
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() || !prefix.is_empty() {
        out.push(path);
    }
    out
}

/// The source without comments, string and character literals.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == 'r'))
            && !(i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
            && {
                let k = if c[i] == 'b' { i + 2 } else { i + 1 };
                let mut h = k;
                while at(h) == '#' {
                    h += 1;
                }
                at(h) == '"'
            }
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let mut k = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            k += 1;
            loop {
                if k >= c.len() {
                    break;
                }
                if c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            i = k;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                let mut k = i + 2;
                while k < c.len() && c[k] != '\'' {
                    k += 1;
                }
                i = k + 1;
                out.push_str("' '");
            } else if at(i + 2) == '\'' {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphabetic() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // `r#type`: the raw identifier's name.
            out.push(word);
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c[i].is_whitespace() {
            i += 1;
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles<V>(edges: &BTreeMap<(String, String), V>) -> Vec<BTreeSet<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a).or_default().push(b);
        next.entry(b).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        n: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(v: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.n);
        s.low.insert(v, s.n);
        s.n += 1;
        s.stack.push(v);
        s.on.insert(v);
        for &w in &next[v] {
            if !s.index.contains_key(w) {
                visit(w, next, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        n: 0,
        out: Vec::new(),
    };
    let vs: Vec<&str> = next.keys().copied().collect();
    for v in vs {
        if !s.index.contains_key(v) {
            visit(v, &next, &mut s);
        }
    }
    s.out
}

/// Plants circles in a small tree and checks that each is found, and that
/// what is not a circle (a child using its parent, a parent only declaring
/// its children, paths in comments and strings) is not reported.
fn planted() -> Result<(), Failed> {
    let dir = std::env::temp_dir().join(format!("module-circles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |p: &str, text: &str| {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(f, text).expect("write");
    };
    write("lib.rs", "mod a;\nmod b;\npub mod run;\n");
    // No circle: the children use their parent, the parent only declares
    // them and calls their methods; a path in a comment, a string or a
    // visibility (`pub(in crate::run)`) counts for nothing.
    write(
        "run/mod.rs",
        "mod play;\nmod views;\npub use views::View;\npub struct Runner;\n// use crate::a::A;\nconst S: &str = \"crate::a::A\";\n",
    );
    write(
        "run/play.rs",
        "use super::{views::View, Runner};\nimpl Runner { pub(in crate::run) fn go(&self) {} }\n",
    );
    write(
        "run/views.rs",
        "pub struct View;\nimpl View { pub(in crate::run) fn new() -> View { View } }\n#[cfg(test)]\nmod tests { use super::*; }\n",
    );
    write(
        "a.rs",
        "pub struct A;\nfn f() -> crate::run::Runner { todo!() }\n",
    );
    write("b.rs", "use crate::a::A;\n");
    let found = circles(&dir)?;
    if !found.is_empty() {
        return Err(format!("circles where there are none:\n{}", found.join("\n")).into());
    }
    // A circle of two files, and through them of two top-level modules.
    write("a.rs", "pub struct A;\nfn f() -> crate::b::B { todo!() }\n");
    write("b.rs", "use crate::a::A;\npub struct B;\n");
    let found = circles(&dir)?;
    let text = found.join("\n");
    if found.len() != 2
        || !text.contains("a.rs -> b.rs: B")
        || !text.contains("b.rs -> a.rs: A")
        || !text.contains("circle of top-level modules")
    {
        return Err(format!("the planted circle a <-> b was not reported as such:\n{text}").into());
    }
    // A circle inside one folder through a re-export: mod.rs -> views.rs -> mod.rs.
    write("a.rs", "pub struct A;\n");
    write("run/views.rs", "use super::Runner;\npub struct View;\n");
    let found = circles(&dir)?;
    let text = found.join("\n");
    if found.len() != 1 || !text.contains("run/mod.rs -> run/views.rs: View") {
        return Err(format!("the planted circle in run/ was not reported:\n{text}").into());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
