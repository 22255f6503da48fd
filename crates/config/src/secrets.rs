//! The secrets file: a dotenv file (default `.dockhand/secrets.env`) that must be mode 0600
//! or stricter. `Secrets` holds its values for the moment they are put into a process
//! environment; its `Debug` output shows names only, and its errors never include a value or
//! a line of the file.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::dotenv;

/// Why the secrets file cannot be used. `Display` says what is wrong and what to do;
/// [`SecretsError::problem`] and [`SecretsError::help`] give the two halves.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    NotFound {
        path: PathBuf,
    },
    NotAFile {
        path: PathBuf,
    },
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    LoosePermissions {
        path: PathBuf,
        mode: u32,
    },
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    Missing {
        name: String,
        path: PathBuf,
    },
}

impl SecretsError {
    /// What is wrong, one line.
    pub fn problem(&self) -> String {
        match self {
            SecretsError::NotFound { path } => {
                format!("secrets file {} does not exist", path.display())
            }
            SecretsError::NotAFile { path } => {
                format!("secrets file {} is not a regular file", path.display())
            }
            SecretsError::Unreadable { path, source } => {
                format!("cannot read secrets file {}: {source}", path.display())
            }
            SecretsError::LoosePermissions { path, mode } => format!(
                "secrets file {} is accessible to other users (mode {mode:04o}); it must be 0600 or stricter",
                path.display()
            ),
            SecretsError::Malformed {
                path,
                line,
                column,
                message,
            } => format!(
                "secrets file {} is malformed at line {line}, column {column}: {message}",
                path.display()
            ),
            SecretsError::Missing { name, path } => {
                format!("secret `{name}` is not defined in {}", path.display())
            }
        }
    }

    /// What to do about it, one line.
    pub fn help(&self) -> String {
        match self {
            SecretsError::NotFound { path } => format!(
                "create it with `install -m 600 /dev/null {}` and add NAME=value lines",
                path.display()
            ),
            SecretsError::NotAFile { path } => {
                format!(
                    "{} must be a dotenv file with NAME=value lines",
                    path.display()
                )
            }
            SecretsError::Unreadable { path, .. } => {
                format!(
                    "make {} readable by the user running dockhand",
                    path.display()
                )
            }
            SecretsError::LoosePermissions { path, .. } => chmod_help(path),
            SecretsError::Malformed { .. } => {
                "each line must be NAME=value; quote values that contain spaces or `#`".into()
            }
            SecretsError::Missing { name, path } => {
                format!("add `{name}=...` to {}", path.display())
            }
        }
    }
}

impl fmt::Display for SecretsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.problem(), self.help())
    }
}

/// The mode of a file that its group or other users may access, `None` when it is
/// 0600 or stricter. The rule for every file holding a secret: the secrets file and
/// TLS private keys.
pub(crate) fn loose_mode(metadata: &fs::Metadata) -> Option<u32> {
    let mode = metadata.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// What to do about a file [`loose_mode`] refused.
pub(crate) fn chmod_help(path: &Path) -> String {
    format!("run `chmod 600 {}`", path.display())
}

/// Secret values loaded from the secrets file.
#[derive(Clone, Default)]
pub struct Secrets {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// Reads the secrets file after checking it is a regular file of mode 0600 or stricter.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let owned = || path.to_path_buf();
        let metadata = fs::metadata(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SecretsError::NotFound { path: owned() },
            _ => SecretsError::Unreadable {
                path: owned(),
                source,
            },
        })?;
        if !metadata.is_file() {
            return Err(SecretsError::NotAFile { path: owned() });
        }
        if let Some(mode) = loose_mode(&metadata) {
            return Err(SecretsError::LoosePermissions {
                path: owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(|source| SecretsError::Unreadable {
            path: owned(),
            source,
        })?;
        let entries = dotenv::parse(&text).map_err(|errors| {
            let first = &errors[0];
            SecretsError::Malformed {
                path: owned(),
                line: first.line,
                column: first.column,
                message: first.message.clone(),
            }
        })?;
        Ok(Secrets {
            path: owned(),
            values: entries.into_iter().collect(),
        })
    }

    /// No secrets yet, to be read from `path` (a secrets file that does not exist while
    /// every secret comes from a password manager).
    pub fn at(path: &Path) -> Secrets {
        Secrets {
            path: path.to_path_buf(),
            values: BTreeMap::new(),
        }
    }

    /// Sets `name` (a value fetched from a password manager; it wins over the file's).
    pub fn insert(&mut self, name: &str, value: String) {
        self.values.insert(name.to_string(), value);
    }

    /// No secrets at all, for services that reference none.
    pub fn empty() -> Secrets {
        Secrets::default()
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every secret value, so callers can redact them from anything they report.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(String::as_str)
    }

    /// The names of the secrets defined.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The file the secrets were read from (empty for [`Secrets::empty`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("path", &self.path)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("values", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("secrets.env");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn loads_a_private_file_and_redacts_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "API_TOKEN=hunter2\n", 0o600);
        let secrets = Secrets::load(&path).unwrap();
        assert_eq!(secrets.get("API_TOKEN"), Some("hunter2"));
        assert_eq!(secrets.values().collect::<Vec<_>>(), vec!["hunter2"]);
        let debug = format!("{secrets:?}");
        assert!(
            debug.contains("API_TOKEN") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_loose_permissions_missing_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "A=1\n", 0o644);
        let error = Secrets::load(&path).unwrap_err();
        assert!(matches!(
            error,
            SecretsError::LoosePermissions { mode: 0o644, .. }
        ));
        assert!(error.to_string().contains("chmod 600"), "{error}");
        assert!(matches!(
            Secrets::load(&dir.path().join("nope")),
            Err(SecretsError::NotFound { .. })
        ));
        assert!(matches!(
            Secrets::load(dir.path()),
            Err(SecretsError::NotAFile { .. })
        ));
    }

    #[test]
    fn malformed_file_error_does_not_echo_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "TOKEN hunter2\n", 0o400);
        let error = Secrets::load(&path).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
