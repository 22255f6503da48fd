//! The dotenv format as docker compose reads it (compose-go's `dotenv` package), shared by
//! `dockhand import compose` (a project's `.env` and `env_file`s) and `dockhand.toml` (the
//! project's `.env` and the secrets file), so a file means the same to both and to
//! `docker compose`. This crate does the lexical part only — lines, `export`, names,
//! quotes, escapes, comments — and says where each entry and each error is, so callers can
//! point at `file:line:column`. It expands no `${VAR}`, applies no name rule stricter than
//! compose's (callers may), and never puts a value into an error or into `Debug` output.
//!
//! The rules:
//! - `NAME=value` entries, one per line (a quoted value may span lines), blanks allowed
//!   around `=`; an optional `export ` in front; blank lines and lines starting with `#`
//!   are skipped; a UTF-8 byte order mark at the start is skipped.
//! - A name is letters, digits, `_`, `.`, `-`, `[` and `]`. A name alone on its line is an
//!   entry without a value (compose takes that variable from its environment).
//! - An unquoted value runs to the end of the line, ends before ` #` (a space, then `#`)
//!   and loses its trailing blanks; a backslash in it is just a backslash.
//! - In single quotes everything is literal but `\'`, which is a quote.
//! - In double quotes `\n`, `\r`, `\t`, `\\`, `\"`, `\$`, `\a`, `\b`, `\f`, `\v` and `\0`
//!   followed by three octal digits (up to `\0377`) are escapes; any other backslash stays.
//! - After a closing quote only blanks and a `#` comment may follow on the line.

use std::fmt;

/// One entry of a dotenv file, where its name starts.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `None` for a name alone on its line.
    pub value: Option<String>,
    /// 1-based line of the name.
    pub line: usize,
    /// 1-based column of the name, in characters.
    pub column: usize,
}

/// A malformed entry: where, and what is wrong. The message never quotes the file, since
/// dotenv files hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Everything read from a dotenv file, in file order. A name given twice appears twice;
/// the caller decides (collected into a map, the later one wins, as with compose).
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    /// The malformed entries; reading goes on after each at the next line (after an
    /// unterminated quote, nothing is left to read).
    pub errors: Vec<Error>,
}

/// Whether a variable's name says it holds a secret (`DB_PASSWORD`, `API_TOKEN`, `JWT_SECRET`,
/// `STRIPE_KEY`; not `*_FILE` or `*_PATH`, which name where one is). The one rule shared by
/// `dockhand import compose`, `check` and `init`.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("_FILE") || upper.ends_with("_PATH") {
        return false;
    }
    [
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

/// Reads dotenv `text`.
pub fn parse(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        line_start: 0,
    };
    let mut parsed = Parsed::default();
    while !reader.at_end() {
        match reader.entry() {
            Ok(Some(entry)) => parsed.entries.push(entry),
            Ok(None) => {}
            Err(error) => {
                parsed.errors.push(error);
                reader.skip_line();
            }
        }
    }
    parsed
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("value", &self.value.as_ref().map(|_| "<hidden>"))
            .field("line", &self.line)
            .field("column", &self.column)
            .finish()
    }
}

struct Reader {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    line_start: usize,
}

impl Reader {
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

    fn column(&self) -> usize {
        self.pos - self.line_start + 1
    }

    fn error(&self, message: &str) -> Error {
        Error {
            line: self.line,
            column: self.column(),
            message: message.to_owned(),
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

    /// `export` followed by a blank: the shell prefix, not a name.
    fn at_export(&self) -> bool {
        self.chars[self.pos..].starts_with(&['e', 'x', 'p', 'o', 'r', 't'])
            && matches!(self.chars.get(self.pos + 6), Some(' ' | '\t'))
    }

    /// The next entry, or `None` at a blank line, a comment or the end.
    fn entry(&mut self) -> Result<Option<Entry>, Error> {
        self.skip_blanks();
        match self.peek() {
            None => return Ok(None),
            Some('\n' | '#') => {
                self.skip_line();
                return Ok(None);
            }
            Some(_) => {}
        }
        if self.at_export() {
            self.pos += "export".len();
            self.skip_blanks();
        }
        let (line, column) = (self.line, self.column());
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if name.is_empty() {
            return Err(self.error("expected a variable name"));
        }
        let entry = |value| Entry {
            name,
            value,
            line,
            column,
        };
        self.skip_blanks();
        match self.peek() {
            None => return Ok(Some(entry(None))),
            Some('\n') => {
                self.bump();
                return Ok(Some(entry(None)));
            }
            Some('=') => {
                self.bump();
            }
            Some(_) => return Err(self.error("expected `=` after the variable name")),
        }
        self.skip_blanks();
        let value = match self.peek() {
            Some('\'') => self.single_quoted()?,
            Some('"') => self.double_quoted()?,
            _ => self.unquoted(),
        };
        Ok(Some(entry(Some(value))))
    }

    fn unquoted(&mut self) -> String {
        let mut value = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' || (c == '#' && value.ends_with(' ')) {
                break;
            }
            value.push(c);
            self.bump();
        }
        self.skip_line();
        value.trim_end().to_owned()
    }

    fn single_quoted(&mut self) -> Result<String, Error> {
        let unterminated = self.error("unterminated single-quoted value");
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated),
                Some('\'') => break,
                Some('\\') => match self.bump() {
                    None => return Err(unterminated),
                    Some('\'') => value.push('\''),
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                },
                Some(c) => value.push(c),
            }
        }
        self.end_of_line()?;
        Ok(value)
    }

    fn double_quoted(&mut self) -> Result<String, Error> {
        let unterminated = self.error("unterminated double-quoted value");
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated),
                Some('"') => break,
                Some('\\') => match self.bump() {
                    None => return Err(unterminated),
                    Some(c) => self.escape(c, &mut value),
                },
                Some(c) => value.push(c),
            }
        }
        self.end_of_line()?;
        Ok(value)
    }

    /// Appends what backslash-`c` in double quotes stands for.
    fn escape(&mut self, c: char, value: &mut String) {
        let escaped = match c {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '\\' | '"' | '$' => c,
            '0' => {
                if let Some(octal) = self.octal() {
                    value.push(octal);
                    return;
                }
                // Not three octal digits: kept as written (compose-go drops the `0` here,
                // which reads as an accident of its implementation).
                value.push_str("\\0");
                return;
            }
            other => {
                value.push('\\');
                value.push(other);
                return;
            }
        };
        value.push(escaped);
    }

    /// After `\0`: three octal digits up to `377` are the character with that code.
    fn octal(&mut self) -> Option<char> {
        let digits = self.chars.get(self.pos..self.pos + 3)?;
        let code = digits
            .iter()
            .try_fold(0u32, |code, d| d.to_digit(8).map(|d| code * 8 + d))?;
        let byte = u8::try_from(code).ok()?;
        self.pos += 3;
        Some(char::from(byte))
    }

    /// The rest of a line after a closing quote: blanks and an optional comment.
    fn end_of_line(&mut self) -> Result<(), Error> {
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
}

/// The characters compose allows in a variable name.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, value)` of every entry; panics on any error.
    fn pairs(text: &str) -> Vec<(String, Option<String>)> {
        let parsed = parse(text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        parsed
            .entries
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    /// The value of a file holding the one entry `K=<raw>`.
    fn value(raw: &str) -> String {
        match pairs(&format!("K={raw}\n")).as_slice() {
            [(_, Some(v))] => v.clone(),
            other => panic!("K={raw} read as {other:?}"),
        }
    }

    /// The messages of the errors in `text`, with their positions.
    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        parse(text)
            .errors
            .into_iter()
            .map(|e| (e.line, e.column, e.message))
            .collect()
    }

    // The escapes pinned below are compose-go's (compose-spec/compose-go v2,
    // dotenv/parser.go: `extractQuotedValue` drops the backslash of an escaped quote,
    // `expandEscapes` expands `\a \b \f \n \r \t \v \\ \" \$` and `\0` with three octal
    // digits; its tests in dotenv/godotenv_test.go, `TestParsing` and
    // `TestUnterminatedQuotes`, pin the same cases). Escapes are read left to right, so
    // `\\` is taken before the `n` after it: `"a\\nb"` is a backslash followed by `n`.
    #[test]
    fn double_quotes_expand_compose_go_escapes() {
        assert_eq!(value(r#""a\\nb""#), "a\\nb");
        assert_eq!(value(r#""a\nb""#), "a\nb");
        assert_eq!(value(r#""a\r\tb""#), "a\r\tb");
        assert_eq!(value(r#""say \"hi\"""#), "say \"hi\"");
        assert_eq!(value(r#""C:\\dir\\""#), "C:\\dir\\");
        assert_eq!(value(r#""\$HOME costs \$5""#), "$HOME costs $5");
        assert_eq!(value(r#""Z\aZ\bZ\fZ\vZ""#), "Z\u{7}Z\u{8}Z\u{c}Z\u{b}Z");
        assert_eq!(value(r#""\0123\0351""#), "S\u{e9}");
        // compose-go: `FOO="bar\\\n\ b\az"` is `bar\` newline `\ b` BEL `z`.
        assert_eq!(value(r#""bar\\\n\ b\az""#), "bar\\\n\\ b\u{7}z");
        assert_eq!(value(r#""bar\\r\ b""#), "bar\\r\\ b");
        assert_eq!(value(r#""bar\nbaz\\""#), "bar\nbaz\\");
    }

    #[test]
    fn other_backslashes_in_double_quotes_stay() {
        // Not escapes in compose-go either: `\'`, `\x07`, `\u12e4`, `\c`, `\ `.
        assert_eq!(value(r#""it\'s""#), "it\\'s");
        assert_eq!(value(r#""\x07 \u12e4 \c \ ""#), "\\x07 \\u12e4 \\c \\ ");
        // `\0` without three octal digits (up to 377) is kept as written.
        assert_eq!(value(r#""\0 \012 \0400 \09""#), "\\0 \\012 \\0400 \\09");
    }

    #[test]
    fn single_quotes_are_literal_but_for_an_escaped_quote() {
        assert_eq!(
            value(r"'a\nb $X # not a comment'"),
            "a\\nb $X # not a comment"
        );
        assert_eq!(value(r"'it\'s'"), "it's");
        assert_eq!(value(r"'C:\\dir\\'"), "C:\\\\dir\\\\");
        assert_eq!(value(r#"'"quoted"'"#), "\"quoted\"");
        // compose-go: `KEY='value\'` is unterminated (the quote is escaped).
        assert_eq!(
            errors("K='value\\'\n"),
            vec![(1, 3, "unterminated single-quoted value".to_owned())]
        );
    }

    #[test]
    fn unquoted_values_end_at_a_space_then_hash() {
        assert_eq!(value("two words # comment"), "two words");
        assert_eq!(value("bar #"), "bar");
        assert_eq!(value("123#not-a-comment"), "123#not-a-comment");
        // Only a space starts a comment, as in compose-go (`strings.Cut(value, " #")`).
        assert_eq!(value("a\t# tab"), "a\t# tab");
        assert_eq!(value(r"a\tb \n"), "a\\tb \\n");
        assert_eq!(value("  padded  "), "padded");
        assert_eq!(value(" #starts-with-hash"), "#starts-with-hash");
        assert_eq!(value("a=b:c"), "a=b:c");
        assert_eq!(value(""), "");
    }

    #[test]
    fn quoted_values_may_span_lines() {
        let text = "KEY=\"-----BEGIN-----\nabc\n-----END-----\" # pem\nS='one\ntwo'\nNEXT=1\r\n";
        assert_eq!(
            pairs(text),
            vec![
                (
                    "KEY".into(),
                    Some("-----BEGIN-----\nabc\n-----END-----".into())
                ),
                ("S".into(), Some("one\ntwo".into())),
                ("NEXT".into(), Some("1".into())),
            ]
        );
        let next = &parse(text).entries[2];
        assert_eq!((next.line, next.column), (6, 1));
    }

    #[test]
    fn names_export_and_bare_names() {
        let text = "\u{feff}# c\n  export A=1\nexport\tB=2\nexportC=3\nD\nE  \r\nG.H=4\na[1]=5\nÜBER-x=6\nF\n";
        assert_eq!(
            pairs(text),
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("2".into())),
                ("exportC".into(), Some("3".into())),
                ("D".into(), None),
                ("E".into(), None),
                ("G.H".into(), Some("4".into())),
                ("a[1]".into(), Some("5".into())),
                ("ÜBER-x".into(), Some("6".into())),
                ("F".into(), None),
            ]
        );
        let a = &parse(text).entries[0];
        assert_eq!((a.line, a.column), (2, 10));
    }

    /// The forms `dockhand import compose` read before the reader was shared.
    #[test]
    fn compose_dotenv_forms() {
        let env = pairs("# c\nA=1\nexport B = two # note\nC=\"x\\ny\"\nD='$raw'\nE=\nF\n");
        assert_eq!(
            env,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("two".into())),
                ("C".into(), Some("x\ny".into())),
                ("D".into(), Some("$raw".into())),
                ("E".into(), Some(String::new())),
                ("F".into(), None),
            ]
        );
    }

    #[test]
    fn errors_say_where_but_never_quote_the_file() {
        let text = "GOOD=1\nno equals here\n=secret\nA=\"x\" junk\nB='fine'\nQ=\"open\nLATER=1\n";
        let parsed = parse(text);
        assert_eq!(
            parsed
                .errors
                .iter()
                .map(|e| (e.line, e.column))
                .collect::<Vec<_>>(),
            vec![(2, 4), (3, 1), (4, 7), (6, 3)]
        );
        assert_eq!(
            parsed
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
            vec![
                "expected `=` after the variable name",
                "expected a variable name",
                "unexpected text after the closing quote",
                "unterminated double-quoted value",
            ]
        );
        // Reading goes on after a bad line; an unterminated quote takes the rest.
        let names: Vec<&str> = parsed.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["GOOD", "B"]);
        for secret in ["equals", "secret", "junk", "open"] {
            assert!(!format!("{parsed:?}").contains(secret), "{secret}");
        }
    }

    #[test]
    fn debug_output_hides_values() {
        let parsed = parse("TOKEN=hunter2\n");
        let shown = format!("{parsed:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
