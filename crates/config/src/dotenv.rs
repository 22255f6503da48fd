//! The project's `.env` and the secrets file: read with the shared reader
//! (`dockhand_dotenv`, docker compose's rules for lines, quotes, escapes and comments) and
//! held to config's stricter rules on top — every entry needs `=`, and a name is letters,
//! digits and `_`, not starting with a digit, since `${NAME}` can name nothing else. Errors
//! carry a line and column but never the line's text, since these files hold secrets.

/// One malformed entry in a dotenv file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DotenvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a dotenv file into its entries, in order (a later duplicate wins when collected
/// into a map), or every malformed entry, in file order.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<DotenvError>> {
    let parsed = dockhand_dotenv::parse(text);
    let mut errors: Vec<DotenvError> = parsed
        .errors
        .into_iter()
        .map(|e| DotenvError {
            line: e.line,
            column: e.column,
            message: e.message,
        })
        .collect();
    let mut entries = Vec::new();
    for entry in parsed.entries {
        if !is_valid_name(&entry.name) {
            errors.push(DotenvError {
                line: entry.line,
                column: entry.column,
                message:
                    "invalid variable name: use letters, digits and `_`, not starting with a digit"
                        .into(),
            });
            continue;
        }
        match entry.value {
            Some(value) => entries.push((entry.name, value)),
            None => errors.push(DotenvError {
                line: entry.line,
                column: entry.column + entry.name.chars().count(),
                message: "expected `=` after the variable name".into(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

    #[test]
    fn names_compose_accepts_but_interpolation_cannot_use_are_errors() {
        let errors = parse("A.B=1\nBARE\nexport\tOK=1\nMY-VAR='x'\n").unwrap_err();
        let found: Vec<(usize, usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    1,
                    1,
                    "invalid variable name: use letters, digits and `_`, not starting with a digit"
                ),
                (2, 5, "expected `=` after the variable name"),
                (
                    4,
                    1,
                    "invalid variable name: use letters, digits and `_`, not starting with a digit"
                ),
            ]
        );
    }

    /// The `.env` and the secrets file follow docker compose's escapes (see dockhand-dotenv's
    /// tests, which pin them against compose-go): `\$` is a `$`, `\'` in double quotes keeps
    /// its backslash, `\'` in single quotes is a quote, and `\\n` is a backslash then `n`.
    #[test]
    fn values_follow_compose_escapes() {
        let text = "A=\"it\\'s \\$5 a\\\\nb\"\nB='it\\'s'\nC=tab\t# not a comment\n";
        assert_eq!(
            pairs(text),
            vec![
                ("A".into(), "it\\'s $5 a\\nb".into()),
                ("B".into(), "it's".into()),
                ("C".into(), "tab\t# not a comment".into()),
            ]
        );
    }
}
