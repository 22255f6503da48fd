//! The one error type of the runtime, so the agent can report why an instance did not start.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The Docker Engine does not answer.
    #[error("cannot reach the Docker Engine at {host}: {reason}; is dockerd running? `systemctl start docker`")]
    DockerUnreachable { host: String, reason: String },
    /// A Docker Engine API call failed.
    #[error("{what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker Engine API call did not finish in time.
    #[error("{what}: no answer from the Docker Engine within {}", humantime::format_duration(*after))]
    DockerTimeout { what: String, after: Duration },
    /// The image is not present locally and may not or could not be pulled.
    #[error("image `{image}` is not present locally and {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// `docker build` failed; `output` is the failing step's output.
    #[error("failed to build image `{tag}`: {message}{}", if output.is_empty() { String::new() } else { format!("\n{output}") })]
    Build {
        tag: String,
        message: String,
        output: String,
    },
    /// The build context could not be read.
    #[error("failed to read the build context {}: {source}", path.display())]
    BuildContext {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The spec cannot be run as asked.
    #[error("{0}")]
    InvalidSpec(String),
}

impl RuntimeError {
    /// Whether the machine is at fault (the Docker Engine is down or slow, a file cannot be
    /// written, a process cannot be spawned) rather than what was asked of it.
    pub fn is_environmental(&self) -> bool {
        matches!(
            self,
            RuntimeError::DockerUnreachable { .. }
                | RuntimeError::DockerTimeout { .. }
                | RuntimeError::Spawn { .. }
                | RuntimeError::Log { .. }
        )
    }
}
