//! Escaping for XML, HTML and SVG: the one function every report and plot
//! puts text from scenario files, reports and logs through.
//!
//! In: any text. Out: text safe in element content and quoted attribute
//! values. Pure.

/// Escapes text for XML, HTML and SVG (element content and quoted
/// attribute values); control characters XML forbids become `?`.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}
