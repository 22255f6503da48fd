//! The backup crate's error: what failed, classified by who can fix it, with a message that
//! says what to do. Never carries a secret (a passphrase, a key, a credential).

/// What kind of failure a [`BackupError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The dump of a source failed (the engine said so, or its output is implausible).
    Source,
    /// A target could not be reached or refused the write (unreachable, full, denied).
    Target,
    /// A stored object does not match its recorded checksum.
    Checksum,
    /// The object could not be decrypted (wrong identity or passphrase, damaged header).
    Decrypt,
    /// A restore into the target (a database, a file, a volume) failed.
    Restore,
    /// A disk or process of this machine failed (disk full, permissions, Docker down).
    Environment,
    /// The request does not make sense (no such source or backup).
    Usage,
}

/// A failure of a backup, drill or restore.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackupError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

impl BackupError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackupError {
        BackupError {
            kind,
            message: message.into(),
        }
    }

    pub fn source(message: impl Into<String>) -> BackupError {
        BackupError::new(ErrorKind::Source, message)
    }

    pub fn target(message: impl Into<String>) -> BackupError {
        BackupError::new(ErrorKind::Target, message)
    }

    pub fn restore(message: impl Into<String>) -> BackupError {
        BackupError::new(ErrorKind::Restore, message)
    }

    pub fn environment(message: impl Into<String>) -> BackupError {
        BackupError::new(ErrorKind::Environment, message)
    }

    pub fn usage(message: impl Into<String>) -> BackupError {
        BackupError::new(ErrorKind::Usage, message)
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl std::fmt::Display) -> BackupError {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<dockhand_runtime::RuntimeError> for BackupError {
    fn from(e: dockhand_runtime::RuntimeError) -> BackupError {
        let kind = if e.is_environmental() {
            ErrorKind::Environment
        } else {
            ErrorKind::Source
        };
        BackupError::new(kind, e.to_string())
    }
}

/// An I/O error of this machine (a local file, a pipe): disk full and permissions say so.
pub(crate) fn io(what: impl std::fmt::Display, e: std::io::Error) -> BackupError {
    let hint = match e.raw_os_error() {
        Some(28) => "; the disk is full: free space and run the backup again",
        Some(13) => "; permission denied: check the owner and mode",
        _ => "",
    };
    BackupError::environment(format!("{what}: {e}{hint}"))
}
