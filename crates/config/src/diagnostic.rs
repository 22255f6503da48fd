//! Diagnostics: one problem found in a configuration file, with the place it was found
//! (file, 1-based line and column, dotted key) and how to fix it. `Display` renders them the
//! way rustc and `just` do, with the source line and a caret under the offending text, so
//! `dockhand check` and every command that loads the config print the same thing.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a diagnostic is: errors stop the config from loading, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a configuration file.
///
/// `line` and `column` are 1-based; `column` counts characters, not bytes. A problem that
/// concerns a whole file (it cannot be read, say) points at 1:1 and has no `source_line`.
/// Diagnostics about the `.env` and secrets files never carry their source line, because
/// those lines may hold secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
    pub help: Option<String>,
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about a whole file, with no position inside it.
    pub fn whole_file(severity: Severity, file: &Path, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            key: None,
            message,
            help: None,
            source_line: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        writeln!(f, "{}: {}", self.severity, self.message)?;
        write!(
            f,
            " {pad}--> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        if let Some(source) = &self.source_line {
            let (indent, width) = caret_layout(source, self.column);
            write!(f, "\n {pad} |")?;
            write!(f, "\n {number} | {source}")?;
            write!(f, "\n {pad} | {indent}{}", "^".repeat(width))?;
        }
        if let Some(help) = &self.help {
            if self.source_line.is_none() {
                write!(f, "\n {pad} |")?;
            }
            write!(f, "\n {pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets in a source text to 1-based line and column numbers.
pub(crate) struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> SourceMap<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            file,
            text,
            line_starts,
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let index = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[index];
        (index + 1, self.text[start..offset].chars().count() + 1)
    }

    /// The text of a 1-based line, without its line ending.
    pub(crate) fn line_text(&self, line: usize) -> &'a str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    /// A diagnostic pointing at the start of `span`, quoting its source line.
    pub(crate) fn diagnostic(
        &self,
        severity: Severity,
        span: Range<usize>,
        key: Option<String>,
        message: String,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
            help: None,
            source_line: Some(self.line_text(line).to_string()),
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The whitespace that puts a caret under `column`, and how many carets to draw: the token
/// that starts there (a quoted string, a bracketed table or array, or a bare word).
fn caret_layout(source: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = source.chars().collect();
    let start = column.saturating_sub(1).min(chars.len());
    let indent = chars[..start]
        .iter()
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let rest = &chars[start..];
    let width = match rest.first() {
        None => 1,
        Some(&quote @ ('"' | '\'')) => rest[1..]
            .iter()
            .position(|&c| c == quote)
            .map_or(rest.len(), |end| end + 2),
        Some(&open @ ('[' | '{')) => {
            let close = if open == '[' { ']' } else { '}' };
            let mut depth = 0usize;
            let mut width = rest.len();
            for (i, &c) in rest.iter().enumerate() {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth -= 1;
                    if depth == 0 {
                        width = i + 1;
                        break;
                    }
                }
            }
            width
        }
        Some(_) => rest
            .iter()
            .position(|&c| c.is_whitespace() || matches!(c, '=' | ',' | '}' | ']' | '.' | '#'))
            .unwrap_or(rest.len())
            .max(1),
    };
    (indent, width)
}

/// Renders a list of diagnostics separated by blank lines.
pub(crate) fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&diagnostic.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        let map = SourceMap::new(Path::new("f"), text);
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(6), (2, 1));
        assert_eq!(map.position(text.find('"').unwrap()), (2, 6));
        assert_eq!(map.line_text(2), "bé = \"x\"");
    }

    #[test]
    fn caret_covers_the_token() {
        assert_eq!(caret_layout("prot = 8080", 1), (String::new(), 4));
        assert_eq!(caret_layout("a = \"x y\" # c", 5), ("    ".into(), 5));
        assert_eq!(
            caret_layout("h = { a = { b = 1 } }", 5),
            ("    ".into(), 17)
        );
        assert_eq!(caret_layout("[services.api]", 11), ("          ".into(), 3));
    }
}
