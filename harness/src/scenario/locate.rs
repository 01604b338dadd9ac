//! Where a mistake in a scenario file is: its file and line, for every
//! error the parse and the checks report.
//!
//! In: the file's name and text. Out: errors that start `FILE:LINE:` (or
//! `FILE:` for what has no one line). Owns no state beyond the two strings.

use anyhow::anyhow;

/// The 1-based line of a byte offset.
pub(super) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// The file being parsed, to name it and the line of an offset in errors.
#[derive(Clone, Copy)]
pub(super) struct Here<'a> {
    pub(super) file: &'a str,
    pub(super) src: &'a str,
}

impl Here<'_> {
    /// `FILE:LINE: msg`, the line being that of `offset`.
    pub(super) fn at(&self, offset: usize, msg: String) -> anyhow::Error {
        anyhow!("{}:{}: {msg}", self.file, line_of(self.src, offset))
    }
}
