//! Markdown as the docs test reads it: the README and docs/*.md, their
//! fenced blocks (with a `<!-- docs-test: TAG -->` line before them), their
//! paragraphs and inline code spans, headings as GitHub anchors them, and
//! link targets. In: the files' text. Out: plain data for the trials.

use std::collections::{BTreeMap, BTreeSet};

use crate::root;

/// The text with every section whose heading says `(planned` blanked out
/// (its lines kept, empty, so line numbers stay): plans may name flags,
/// variables and metrics that do not exist yet; the rest may not.
pub fn without_planned(text: &str) -> String {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut planned_level: Option<usize> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let mut heading = None;
        match &fence {
            Some(f) if t.starts_with(f.as_str()) => fence = None,
            Some(_) => {}
            None if t.starts_with("```") || t.starts_with("~~~") => {
                let ch = t.chars().next().unwrap_or('`');
                fence = Some(t.chars().take_while(|c| *c == ch).collect());
            }
            None => {
                let level = t.chars().take_while(|c| *c == '#').count();
                if (1..=6).contains(&level) && t[level..].starts_with(' ') {
                    heading = Some((level, t.to_lowercase().contains("(planned")));
                }
            }
        }
        if let Some((level, planned)) = heading {
            if planned_level.is_some_and(|p| level <= p) {
                planned_level = None;
            }
            if planned && planned_level.is_none() {
                planned_level = Some(level);
            }
        }
        out.push(if planned_level.is_some() { "" } else { line });
    }
    out.join("\n")
}

pub struct Doc {
    /// From the repository's root, e.g. `docs/harness.md`.
    pub rel: String,
    pub text: String,
}

pub fn docs() -> Vec<Doc> {
    let mut rels = vec!["README.md".to_string()];
    let dir = root().join("docs");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    rels.extend(pages);
    rels.into_iter()
        .map(|rel| {
            let text = std::fs::read_to_string(root().join(&rel))
                .unwrap_or_else(|e| panic!("read {rel}: {e}"));
            Doc { rel, text }
        })
        .collect()
}

/// A fenced code block: the line of its fence, its info string, the tag of
/// a `<!-- docs-test: TAG -->` line right before it, its lines.
pub struct Block {
    pub line: usize,
    pub info: String,
    pub tag: Option<String>,
    pub lines: Vec<String>,
}

/// A paragraph outside code blocks (its first line, its text with newlines).
pub struct Para {
    pub line: usize,
    pub text: String,
}

pub fn scan(text: &str) -> (Vec<Block>, Vec<Para>) {
    let mut blocks = Vec::new();
    let mut paras = Vec::new();
    let mut open: Option<(String, Block)> = None;
    let mut para: Option<Para> = None;
    let mut last_nonblank = String::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let t = raw.trim_start();
        if let Some((fence, mut b)) = open.take() {
            if t.starts_with(&fence) && t.trim_end().chars().all(|c| c == '`' || c == '~') {
                blocks.push(b);
            } else {
                b.lines.push(raw.to_string());
                open = Some((fence, b));
            }
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            if let Some(p) = para.take() {
                paras.push(p);
            }
            let ch = t.chars().next().unwrap();
            let fence: String = t.chars().take_while(|c| *c == ch).collect();
            let tag = last_nonblank
                .trim()
                .strip_prefix("<!-- docs-test:")
                .and_then(|r| r.strip_suffix("-->"))
                .map(|r| r.trim().to_string());
            open = Some((
                fence.clone(),
                Block {
                    line: n,
                    info: t[fence.len()..].trim().to_string(),
                    tag,
                    lines: Vec::new(),
                },
            ));
            continue;
        }
        if t.is_empty() {
            if let Some(p) = para.take() {
                paras.push(p);
            }
        } else {
            last_nonblank = raw.to_string();
            match &mut para {
                Some(p) => {
                    p.text.push('\n');
                    p.text.push_str(raw);
                }
                None => {
                    para = Some(Para {
                        line: n,
                        text: raw.to_string(),
                    })
                }
            }
        }
    }
    if let Some(p) = para {
        paras.push(p);
    }
    (blocks, paras)
}

/// Splits a paragraph into its inline code spans and the text between them.
pub fn code_spans(text: &str) -> (Vec<String>, String) {
    let mut spans = Vec::new();
    let mut plain = String::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'`' {
            let run = b[i..].iter().take_while(|c| **c == b'`').count();
            let fence = &text[i..i + run];
            if let Some(end) = text[i + run..].find(fence) {
                let inner = &text[i + run..i + run + end];
                spans.push(inner.replace('\n', " ").trim().to_string());
                plain.push(' ');
                i += run + end + run;
                continue;
            }
            plain.push_str(fence);
            i += run;
            continue;
        }
        let ch = text[i..].chars().next().unwrap();
        plain.push(ch);
        i += ch.len_utf8();
    }
    (spans, plain)
}

/// The logical lines of a shell or ini block (continuations joined; an ini
/// line `Key=value` keeps its value).
pub fn block_lines(b: &Block) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (k, l) in b.lines.iter().enumerate() {
        let mut l = l.trim().to_string();
        if b.info == "ini" {
            if let Some((key, value)) = l.split_once('=') {
                if key.chars().all(|c| c.is_ascii_alphanumeric()) {
                    l = value.to_string();
                }
            }
        }
        if cur.is_empty() {
            start = b.line + 1 + k;
        }
        match l.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(&l);
                out.push((start, std::mem::take(&mut cur)));
            }
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// become hyphens.
pub fn slug(heading: &str) -> String {
    // A code span keeps its text, a link its text.
    let text = heading.replace('`', "");
    let mut t = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let close = rest[i..].find(')').map(|j| i + j + 1).unwrap_or(rest.len());
        t.push_str(&rest[..i]);
        rest = &rest[close..];
    }
    t.push_str(rest);
    t.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

pub fn anchors(text: &str) -> BTreeSet<String> {
    let (_, paras) = scan(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for p in paras {
        for l in p.text.lines() {
            let t = l.trim_start();
            let hashes = t.chars().take_while(|c| *c == '#').count();
            if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
                let s = slug(t[hashes..].trim());
                let n = seen.entry(s.clone()).or_insert(0);
                out.insert(if *n == 0 {
                    s.clone()
                } else {
                    format!("{s}-{n}")
                });
                *n += 1;
            }
        }
    }
    out
}

/// `[text](dest)` and `![alt](dest)` destinations in a paragraph's plain text.
pub fn link_targets(plain: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = plain;
    while let Some(i) = rest.find("](") {
        let tail = &rest[i + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        let dest = tail[..end]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        out.push(dest);
        rest = &tail[end..];
    }
    out
}
