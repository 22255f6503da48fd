//! Editing the secrets file for `dockhand secrets set|rm|edit`: an entry is replaced or
//! removed where it is, every other line (comments, blank lines, other entries) kept as
//! written; the file is replaced by a rename of a 0600 temporary file, so a crash never leaves
//! it half-written or readable by others. Values are quoted so that the dotenv reader gives
//! them back byte for byte.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::secrets::SecretsError;

/// Whether `name` may be a secret's name (what `${secret.NAME}` accepts).
pub fn valid_secret_name(name: &str) -> bool {
    crate::dotenv::is_valid_name(name)
}

/// `text` with `name` set to `value`: the entry replaced where it was (the last one, if the
/// name is given twice; earlier ones removed), or appended.
pub fn set_entry(text: &str, name: &str, value: &str) -> String {
    let line = format!("{name}={}", quote(value));
    let spans = entry_spans(text, name);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match spans.last() {
        Some(&(start, end)) => {
            lines.splice(start..end, [line]);
            for &(s, e) in spans.iter().rev().skip(1) {
                lines.drain(s..e);
            }
        }
        None => lines.push(line),
    }
    join(lines)
}

/// `text` without any entry of `name`; `None` when there is none.
pub fn remove_entry(text: &str, name: &str) -> Option<String> {
    let spans = entry_spans(text, name);
    if spans.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for &(s, e) in spans.iter().rev() {
        lines.drain(s..e);
    }
    Some(join(lines))
}

/// Writes `text` to `path` through a 0600 temporary file and a rename.
pub fn write_secrets(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Reads the secrets file for editing: its text (empty when it does not exist yet), after the
/// same checks as loading (a regular file, 0600 or stricter, well-formed).
pub fn read_for_edit(path: &Path) -> Result<String, SecretsError> {
    match crate::secrets::Secrets::load(path) {
        Ok(_) => fs::read_to_string(path).map_err(|source| SecretsError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
        Err(SecretsError::NotFound { .. }) => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// The lines `[start, end)` (0-based) of each entry of `name` in `text`.
fn entry_spans(text: &str, name: &str) -> Vec<(usize, usize)> {
    let parsed = dockhand_dotenv::parse(text);
    let starts: Vec<usize> = parsed.entries.iter().map(|e| e.line - 1).collect();
    let total = text.lines().count();
    let lines: Vec<&str> = text.lines().collect();
    parsed
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == name)
        .map(|(i, e)| {
            let start = e.line - 1;
            // A value may run over several lines (a quoted newline): the entry ends where
            // the lines from its start parse as that one entry.
            let limit = starts.get(i + 1).copied().unwrap_or(total).max(start + 1);
            let end = (start + 1..=limit)
                .find(|&end| {
                    let chunk = lines[start..end].join("\n");
                    let p = dockhand_dotenv::parse(&chunk);
                    p.errors.is_empty() && p.entries.len() == 1 && p.entries[0].value == e.value
                })
                .unwrap_or(start + 1);
            (start, end)
        })
        .collect()
}

/// A dotenv value the reader gives back unchanged: single quotes (literal) unless it holds
/// one, else double quotes with `\\`, `\"` and `\n` escaped.
fn quote(value: &str) -> String {
    if !value.contains('\'') && !value.contains('\n') && !value.contains('\r') {
        return format!("'{value}'");
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn join(lines: Vec<String>) -> String {
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, name: &str) -> Option<String> {
        dockhand_dotenv::parse(text)
            .entries
            .into_iter()
            .rev()
            .find(|e| e.name == name)
            .and_then(|e| e.value)
    }

    #[test]
    fn set_replaces_in_place_and_keeps_comments() {
        let text = "# db\nDB_PASSWORD=old\n\n# mail\nSMTP=x\n";
        let out = set_entry(text, "DB_PASSWORD", "n3w");
        assert_eq!(out, "# db\nDB_PASSWORD='n3w'\n\n# mail\nSMTP=x\n");
        let out = set_entry(&out, "API_KEY", "k");
        assert!(out.ends_with("SMTP=x\nAPI_KEY='k'\n"), "{out}");
    }

    #[test]
    fn awkward_values_read_back_unchanged() {
        for v in [
            "it's",
            "a\"b",
            "line1\nline2",
            "$HOME",
            "back\\slash",
            "",
            " spaced ",
        ] {
            let out = set_entry("A=1\n", "S", v);
            assert_eq!(value_of(&out, "S").as_deref(), Some(v), "{out}");
            assert_eq!(value_of(&out, "A").as_deref(), Some("1"));
            // And replacing a multi-line value leaves no piece of it behind.
            let again = set_entry(&out, "S", "plain");
            assert_eq!(again, "A=1\nS='plain'\n", "{v:?}");
        }
    }

    #[test]
    fn remove_drops_every_entry_of_the_name() {
        let text = "A=1\nB=2\n# keep\nA=3\n";
        assert_eq!(remove_entry(text, "A").as_deref(), Some("B=2\n# keep\n"));
        assert_eq!(remove_entry(text, "C"), None);
    }

    #[test]
    fn the_file_is_written_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".dockhand/secrets.env");
        write_secrets(&path, "A='1'\n").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_for_edit(&path).unwrap(), "A='1'\n");
    }
}
