//! What can go wrong talking to a swarm, by what the user can do about it.

use std::time::Duration;

/// An error of the Swarm API.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No Docker Engine answers at the socket.
    #[error("no Docker Engine answers at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    /// The engine answers but is not a swarm manager.
    #[error("the Docker Engine at {host} is not a swarm manager: {reason}")]
    NotManager { host: String, reason: String },
    /// A call took longer than its limit.
    #[error("{call} got no answer from {host} within {limit:?}")]
    Timeout {
        host: String,
        call: &'static str,
        limit: Duration,
    },
    /// A node of `[cluster]` is not in the swarm.
    #[error("node `{node}` of [cluster] is not in the swarm managed at {host} (no node has the label dockhand.node={node} or that hostname); join it with `dockhand setup`")]
    MissingNode { host: String, node: String },
    /// Another deploy or rollback of the app holds its lock.
    #[error("another deploy or rollback of `{app}` is under way ({holder}, since {}); wait for it to finish (if it died, its lock expires an hour after it was taken, or remove it with `docker config rm {name}`)", since_text(*since))]
    Locked {
        app: String,
        holder: String,
        since: i64,
        name: String,
    },
    /// Any other error the Engine API returned.
    #[error("{call} failed on {host}: {reason}")]
    Api {
        host: String,
        call: &'static str,
        reason: String,
    },
}

impl ClusterError {
    /// Whether the cause is outside Dockhand (the engine down, not a manager, slow).
    pub fn is_environmental(&self) -> bool {
        !matches!(
            self,
            ClusterError::Api { .. }
                | ClusterError::MissingNode { .. }
                | ClusterError::Locked { .. }
        )
    }
}

/// A Unix time as an RFC 3339 UTC timestamp.
pub(crate) fn since_text(since: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(since.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}
