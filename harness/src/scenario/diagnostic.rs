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

fn byte_offset(src: &str, line: u64, column: u64) -> usize {
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = (column.max(1) - 1) as usize;
            return off
                + l.char_indices()
                    .nth(col)
                    .map_or(l.len().saturating_sub(1), |(b, _)| b);
        }
        off += l.len();
    }
    src.len().saturating_sub(1)
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
    let off = byte_offset(src, line, column).min(src.len());
    let len = src[off..].find('\n').unwrap_or(src.len() - off).max(1);
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        message,
        src: NamedSource::new(file, src.to_string()),
        span: (off, len.min(src.len().saturating_sub(off).max(1))).into(),
        label: label.to_string(),
        help,
    }
}
