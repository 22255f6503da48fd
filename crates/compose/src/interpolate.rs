//! Compose's variable interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alternative}`, `${VAR+alternative}`, `$VAR` and
//! `$$` for a literal `$`. Defaults may themselves contain references. Like compose, an unset
//! variable without a default becomes the empty string, and the caller reports it.

use std::collections::BTreeMap;

/// What interpolation needs: the variables (process environment over the project `.env`).
pub struct Vars<'a> {
    pub map: &'a BTreeMap<String, String>,
}

/// The outcome of interpolating one string.
#[derive(Debug, Default, PartialEq)]
pub struct Expanded {
    pub value: String,
    /// Variables that were unset and had no default (they became empty).
    pub unset: Vec<String>,
    /// Variables whose values went into the result.
    pub used: Vec<String>,
}

/// Expands `text`. Fails with the `${VAR?error}` message of a required unset variable, or
/// with a description of a malformed reference.
pub fn interpolate(text: &str, vars: &Vars<'_>) -> Result<Expanded, String> {
    let mut out = Expanded::default();
    expand(text, vars, &mut out)?;
    Ok(out)
}

fn expand(text: &str, vars: &Vars<'_>, out: &mut Expanded) -> Result<(), String> {
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.value.push('$');
            rest = tail;
        } else if let Some(inside) = after.strip_prefix('{') {
            let len = matching_brace(inside).ok_or_else(|| {
                // The value itself is not shown: it may be a secret.
                "unterminated `${`; close it with `}`, or write `$$` for a literal `$`".to_owned()
            })?;
            reference(&inside[..len], vars, out)?;
            rest = &inside[len + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // Not a reference: compose keeps a lone `$`.
                out.value.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                lookup_plain(name, vars, out);
                rest = &after[len..];
            }
        }
    }
    out.value.push_str(rest);
    Ok(())
}

fn lookup_plain(name: &str, vars: &Vars<'_>, out: &mut Expanded) {
    match vars.map.get(name) {
        Some(v) => {
            out.value.push_str(v);
            if !v.is_empty() && !out.used.iter().any(|u| u == name) {
                out.used.push(name.to_owned());
            }
        }
        None => {
            if !out.unset.iter().any(|u| u == name) {
                out.unset.push(name.to_owned());
            }
        }
    }
}

/// Length of a variable name at the start of `s` (letters, digits, `_`, not starting with a
/// digit).
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Byte length of the text before the `}` closing a `${`, counting nested `${`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn reference(inner: &str, vars: &Vars<'_>, out: &mut Expanded) -> Result<(), String> {
    let len = name_len(inner);
    let (name, op) = inner.split_at(len);
    if name.is_empty() {
        return Err(format!("invalid interpolation format `${{{inner}}}`"));
    }
    let value = vars.map.get(name);
    let set_non_empty = value.is_some_and(|v| !v.is_empty());
    let (kind, arg) = if op.is_empty() {
        ("", "")
    } else if let Some(arg) = op.strip_prefix(":-") {
        (":-", arg)
    } else if let Some(arg) = op.strip_prefix(":?") {
        (":?", arg)
    } else if let Some(arg) = op.strip_prefix(":+") {
        (":+", arg)
    } else if let Some(arg) = op.strip_prefix('-') {
        ("-", arg)
    } else if let Some(arg) = op.strip_prefix('?') {
        ("?", arg)
    } else if let Some(arg) = op.strip_prefix('+') {
        ("+", arg)
    } else {
        return Err(format!("invalid interpolation format `${{{inner}}}`"));
    };
    match kind {
        "" => lookup_plain(name, vars, out),
        ":-" | "-" => {
            let use_default = if kind == ":-" {
                !set_non_empty
            } else {
                value.is_none()
            };
            if use_default {
                expand(arg, vars, out)?;
            } else {
                lookup_plain(name, vars, out);
            }
        }
        ":?" | "?" => {
            let missing = if kind == ":?" {
                !set_non_empty
            } else {
                value.is_none()
            };
            if missing {
                let mut msg = Expanded::default();
                expand(arg, vars, &mut msg)?;
                let why = if msg.value.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {}", msg.value)
                };
                return Err(why);
            }
            lookup_plain(name, vars, out);
        }
        _ => {
            let use_alt = if kind == ":+" {
                set_non_empty
            } else {
                value.is_some()
            };
            if use_alt {
                expand(arg, vars, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<Expanded, String> {
        let map: BTreeMap<String, String> = [("SET", "v"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        interpolate(text, &Vars { map: &map })
    }

    fn ok(text: &str) -> String {
        run(text).unwrap().value
    }

    #[test]
    fn braced_and_plain_references() {
        assert_eq!(ok("a${SET}b"), "avb");
        assert_eq!(ok("$SET/$PORT:x"), "v/8080:x");
        assert_eq!(ok("${SET}${PORT}"), "v8080");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$${SET} $$(cat x) $$"), "${SET} $(cat x) $");
        assert_eq!(ok("cost: 5$"), "cost: 5$");
    }

    #[test]
    fn defaults_for_unset_and_empty() {
        assert_eq!(ok("${NOPE:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${NOPE-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${SET:-d}"), "v");
        assert_eq!(ok("${NOPE:-${SET}x}"), "vx");
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${SET:+alt}"), "alt");
        assert_eq!(ok("${EMPTY:+alt}"), "");
        assert_eq!(ok("${EMPTY+alt}"), "alt");
        assert_eq!(ok("${NOPE+alt}"), "");
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        assert_eq!(
            run("${NOPE:?set NOPE first}").unwrap_err(),
            "required variable NOPE is missing a value: set NOPE first"
        );
        assert!(run("${EMPTY:?e}").is_err());
        assert_eq!(ok("${EMPTY?e}"), "");
        assert!(run("${NOPE?}").unwrap_err().contains("NOPE"));
    }

    #[test]
    fn unset_without_default_becomes_empty_and_is_listed() {
        let out = run("${NOPE}:$ALSO_NOPE:${NOPE}").unwrap();
        assert_eq!(out.value, "::");
        assert_eq!(out.unset, vec!["NOPE".to_owned(), "ALSO_NOPE".to_owned()]);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(run("${SET").is_err());
        assert!(run("${1X}").is_err());
        assert!(run("${SET!x}").is_err());
    }
}
