//! The one error type of the runtime, so the agent can report why an instance did not start.

use std::io;
use std::path::PathBuf;

/// Why the runtime could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The working directory does not exist or is not a directory.
    #[error("working directory {} does not exist or is not a directory: create it or fix `workdir`", path.display())]
    Workdir { path: PathBuf },
    /// The shell could not be spawned.
    #[error("failed to spawn /bin/sh: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
    /// The log file could not be opened.
    #[error("failed to open log file {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
