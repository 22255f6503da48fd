//! A small parser for dotenv files (the project's `.env` and the secrets file): `KEY=VALUE`
//! lines, an optional `export ` prefix, `#` comments, and single-quoted (literal) or
//! double-quoted (with `\n`, `\t`, `\"`, `\\` escapes) values that may span lines. Errors
//! carry a line and column but never the line's text, since these files hold secrets.

/// One malformed entry in a dotenv file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DotenvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a dotenv file into its entries, in order (a later duplicate wins when collected
/// into a map), or every malformed line.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<DotenvError>> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        line_start: 0,
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    while !parser.at_end() {
        match parser.entry() {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(error) => {
                errors.push(error);
                parser.skip_line();
            }
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    line_start: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.line_start = self.pos;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> DotenvError {
        DotenvError {
            line: self.line,
            column: self.pos - self.line_start + 1,
            message: message.into(),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    /// The rest of a line after a value: blanks and an optional comment.
    fn end_of_line(&mut self) -> Result<(), DotenvError> {
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') => {
                self.bump();
                Ok(())
            }
            Some('#') => {
                self.skip_line();
                Ok(())
            }
            Some(_) => Err(self.error("unexpected text after the closing quote")),
        }
    }

    fn entry(&mut self) -> Result<Option<(String, String)>, DotenvError> {
        self.skip_blanks();
        match self.peek() {
            None => return Ok(None),
            Some('\n' | '#') => {
                self.skip_line();
                return Ok(None);
            }
            Some(_) => {}
        }
        if self.chars[self.pos..].starts_with(&['e', 'x', 'p', 'o', 'r', 't', ' ']) {
            self.pos += 7;
            self.skip_blanks();
        }
        let key_start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            self.bump();
        }
        let key: String = self.chars[key_start..self.pos].iter().collect();
        if key.is_empty() {
            return Err(self.error("expected a variable name"));
        }
        if !is_valid_name(&key) {
            self.pos = key_start;
            return Err(self.error(
                "invalid variable name: use letters, digits and `_`, not starting with a digit",
            ));
        }
        self.skip_blanks();
        if self.peek() != Some('=') {
            return Err(self.error("expected `=` after the variable name"));
        }
        self.bump();
        self.skip_blanks();
        let value = match self.peek() {
            Some('\'') => {
                let unterminated = self.error("unterminated single-quoted value");
                self.bump();
                let mut value = String::new();
                loop {
                    match self.bump() {
                        None => return Err(unterminated),
                        Some('\'') => break,
                        Some(c) => value.push(c),
                    }
                }
                self.end_of_line()?;
                value
            }
            Some('"') => {
                let unterminated = self.error("unterminated double-quoted value");
                self.bump();
                let mut value = String::new();
                loop {
                    match self.bump() {
                        None => return Err(unterminated),
                        Some('"') => break,
                        Some('\\') => match self.bump() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('r') => value.push('\r'),
                            Some(c @ ('"' | '\\' | '$' | '\'')) => value.push(c),
                            Some(c) => {
                                value.push('\\');
                                value.push(c);
                            }
                            None => return Err(unterminated),
                        },
                        Some(c) => value.push(c),
                    }
                }
                self.end_of_line()?;
                value
            }
            _ => {
                let mut value = String::new();
                while let Some(c) = self.peek() {
                    if c == '\n' || (c == '#' && value.ends_with([' ', '\t'])) {
                        break;
                    }
                    value.push(c);
                    self.bump();
                }
                self.skip_line();
                value.trim_end().to_string()
            }
        };
        Ok(Some((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn parses_the_common_forms() {
        let text = "# comment\n\nA=1\nexport B = two words # trailing\nC='lit $X # not comment'\nD=\"line\\nnext \\\"q\\\"\"\nE=\nF=a#b\n";
        assert_eq!(
            pairs(text),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "lit $X # not comment".into()),
                ("D".into(), "line\nnext \"q\"".into()),
                ("E".into(), String::new()),
                ("F".into(), "a#b".into()),
            ]
        );
    }

    #[test]
    fn quoted_values_may_span_lines() {
        let text = "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\r\n";
        assert_eq!(
            pairs(text),
            vec![
                ("KEY".into(), "-----BEGIN-----\nabc\n-----END-----".into()),
                ("NEXT".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn reports_every_bad_line_without_its_text() {
        let errors = parse("GOOD=1\nno equals here\n1BAD=x\nQ=\"open\n").unwrap_err();
        assert!(errors.iter().all(|e| !e.message.contains("equals")));
        let lines: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(lines, vec![(2, 4), (3, 1), (4, 3)]);
        assert!(errors[0]
            .message
            .contains("expected `=` after the variable name"));
    }
}
