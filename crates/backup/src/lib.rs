//! `dockhand_backup`: backups that prove they can be restored.
//!
//! A backup dumps each source (PostgreSQL and Redis inside their containers, SQLite with the
//! online backup API, Docker volumes through a helper container, host directories, the app's
//! own files) and streams it through zstd and age encryption, hashing what is stored, to one
//! or more targets (a local directory, S3-compatible storage) — never holding a dump in
//! memory or staging it uncompressed (`pipeline`). A dump is judged before it is completed:
//! a non-zero exit, an engine error on stderr, a wrong format or an implausible size fails it
//! and leaves no object behind (`checks`). What a backup holds is its `Manifest`. A restore
//! drill fetches each object, checks its checksum, decrypts it, restores it into a throwaway
//! copy and compares row counts with the record (`restore::drill_item`); a restore does the
//! same checks before it touches anything. Retention is a pure function (`retention`).
//!
//! The agent owns scheduling, the catalog, events and the services around a restore; this
//! crate knows nothing of them.

pub mod checks;
pub mod crypto;
mod error;
pub mod manifest;
pub mod pipeline;
pub mod pitr;
pub mod restore;
pub mod retention;
pub mod run;
pub mod sources;
pub mod target;
pub mod transfer;

pub use error::{BackupError, ErrorKind, Result};
