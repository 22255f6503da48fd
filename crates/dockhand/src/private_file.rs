//! Files that hold a secret (key pairs the CLI makes): created with mode 0600, never readable by
//! others, not even for a moment, and never over an existing file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes` to it.
pub fn create(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
