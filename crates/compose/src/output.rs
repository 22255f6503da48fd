//! Writing an import: `dockhand.toml` (refusing to overwrite without `--force`) and the
//! secrets file (`.dockhand/secrets.env`, mode 0600, appended without repeating a name).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{convert, Conversion, ImportError, ImportOptions, NoteKind, Output};

/// Converts the project and writes the result (unless `opts.output` is `Stdout`). The
/// returned conversion's report names the files written.
pub fn import(opts: &ImportOptions) -> Result<Conversion, ImportError> {
    let mut conv = convert(opts)?;
    let out_path = match &opts.output {
        Output::Stdout => return Ok(conv),
        Output::File(p) if p.is_absolute() => p.clone(),
        Output::File(p) => opts.dir.join(p),
        Output::Beside => conv.report.sources[0].parent().map_or_else(
            || PathBuf::from("dockhand.toml"),
            |d| d.join("dockhand.toml"),
        ),
    };
    if out_path.exists() && !opts.force {
        return Err(ImportError::OutputExists { path: out_path });
    }
    let out_dir = out_path.parent().map(Path::to_path_buf).unwrap_or_default();
    if !conv.secrets.is_empty() {
        let secrets_path = out_dir.join(".dockhand").join("secrets.env");
        let kept = write_secrets(&secrets_path, &conv.secrets)?;
        if !kept.is_empty() {
            conv.report.notes.push(crate::Note {
                service: None,
                key: "secrets".into(),
                kind: NoteKind::Warning,
                message: format!(
                    "{} already had {}; the existing values were kept",
                    secrets_path.display(),
                    kept.join(", ")
                ),
            });
        }
        conv.report.secrets_file = Some(secrets_path);
    }
    std::fs::write(&out_path, &conv.toml).map_err(|source| ImportError::Write {
        path: out_path.clone(),
        source,
    })?;
    conv.report.output = Some(out_path);
    Ok(conv)
}

/// Appends the secrets whose names the file does not have yet; returns the names it kept.
fn write_secrets(path: &Path, secrets: &[(String, String)]) -> Result<Vec<String>, ImportError> {
    let err = |source| ImportError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let existing = match std::fs::read_to_string(path) {
        // A malformed line names nothing here; loading dockhand.toml reports it.
        Ok(text) => dockhand_dotenv::parse(&text)
            .entries
            .into_iter()
            .map(|e| e.name)
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(err(e)),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    let mut kept = Vec::new();
    let mut text = String::new();
    for (name, value) in secrets {
        if existing.contains(name) {
            kept.push(name.clone());
            continue;
        }
        text.push_str(&format!("{name}={}\n", quote(value)));
    }
    file.write_all(text.as_bytes()).map_err(err)?;
    Ok(kept)
}

/// A dotenv value: bare when it is plain, else single-quoted (double-quoted when it has a
/// single quote or a newline, or ends with a backslash, which would escape the closing
/// single quote; with `\`, `"` and newlines escaped).
fn quote(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,%".contains(c));
    if plain {
        value.to_owned()
    } else if !value.contains(['\'', '\n']) && !value.ends_with('\\') {
        format!("'{value}'")
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `quote` writes reads back as the same value with the shared dotenv reader,
    /// which `dockhand.toml`'s secrets file is read with.
    #[test]
    fn quoted_values_read_back_unchanged() {
        for value in [
            "",
            "plain-value_1.2:3@x+y=z,50%",
            "with space",
            "hash # inside",
            "dollar $HOME and ${X}",
            "it's",
            "two\nlines",
            "back\\slash \\n and \\'",
            "ends with a backslash\\",
            "quote \" and backslash-quote \\\"",
            "tab\there",
        ] {
            let parsed = dockhand_dotenv::parse(&format!("S={}\n", quote(value)));
            assert!(parsed.errors.is_empty(), "{value:?}: {:?}", parsed.errors);
            assert_eq!(
                parsed.entries[0].value.as_deref(),
                Some(value),
                "{value:?} written as {}",
                quote(value)
            );
        }
    }
}
