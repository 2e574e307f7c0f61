//! A problem in a scenario file as a diagnostic: file:line:column, the message, and the line
//! underlined, rendered by miette.

use miette::{NamedSource, SourceSpan};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(luo::scenario))]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// All problems of one file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} has {} problem(s)", .file, .problems.len())]
pub struct InvalidScenario {
    pub file: String,
    #[related]
    pub problems: Vec<Diagnostic>,
}

impl InvalidScenario {
    pub fn one(
        file: &str,
        src: &str,
        line: u64,
        column: u64,
        message: String,
        help: Option<String>,
    ) -> Self {
        InvalidScenario {
            file: file.into(),
            problems: vec![diagnostic(file, src, line, column, message, "here", help)],
        }
    }
}

/// The byte offset of line:column (columns count characters), always on a character boundary:
/// a column past a line's end means its last character, a line past the end the last one.
fn byte_offset(src: &str, line: u64, column: u64) -> usize {
    let last_char = |s: &str| s.char_indices().last().map_or(0, |(b, _)| b);
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = (column.max(1) - 1) as usize;
            return off + l.char_indices().nth(col).map_or(last_char(l), |(b, _)| b);
        }
        off += l.len();
    }
    last_char(src)
}

pub fn diagnostic(
    file: &str,
    src: &str,
    line: u64,
    column: u64,
    message: String,
    label: &str,
    help: Option<String>,
) -> Diagnostic {
    let off = byte_offset(src, line, column);
    // To the end of the line, and at least the character at `off` (nothing in an empty file).
    let rest = &src[off..];
    let first = rest.chars().next().map_or(0, char::len_utf8);
    let len = rest.find('\n').unwrap_or(rest.len()).max(first);
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        message,
        src: NamedSource::new(file, src.to_string()),
        span: (off, len).into(),
        label: label.to_string(),
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_stay_on_character_boundaries_and_inside_the_source() {
        let cases: &[(&str, u64, u64)] = &[
            ("&\u{13e}", 1, 3), // found by ci/fuzz-scenarios: a column past a line ending in ľ
            ("&\u{13e}", 1, 99),
            ("a\n\u{13e}\u{13e}", 2, 2),
            ("a\n\u{13e}", 7, 1), // a line past the end
            ("", 1, 1),
            ("\n", 1, 1),
            ("ab\ncd", 2, 1),
        ];
        for &(src, line, column) in cases {
            let d = diagnostic("f", src, line, column, "m".into(), "here", None);
            let (off, len) = (d.span.offset(), d.span.len());
            assert!(
                off + len <= src.len(),
                "{src:?} {line}:{column}: {off}+{len}"
            );
            assert!(
                src.is_char_boundary(off) && src.is_char_boundary(off + len),
                "{src:?} {line}:{column}"
            );
        }
        let d = diagnostic("f", "ab\ncd", 2, 2, "m".into(), "here", None);
        assert_eq!((d.span.offset(), d.span.len()), (4, 1));
    }
}
