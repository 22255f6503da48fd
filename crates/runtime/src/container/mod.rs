//! The container driver: runs services, databases and one-off jobs as Docker containers
//! through the Docker Engine API (`bollard`, over the Unix socket).
//!
//! A service replica is supervised by the agent exactly like a process ([`crate::Instance`]):
//! its output is streamed into the instance log file, its exits are restarted with the same
//! back-off and crash-loop rules, and stopping it removes the container. A database is a
//! long-lived container that Docker itself restarts (`unless-stopped`) and that outlives the
//! agent; a job is a throwaway container. Everything the driver creates carries the
//! `dockhand.*` labels, which is how it finds its containers again after an agent crash.

mod context;
mod create;
mod database;
mod image;
mod inventory;
mod jobs;
mod logstream;
mod pipe;
mod spec;
mod supervise;
mod transfer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use crate::error::RuntimeError;
use crate::spec::LogRotation;

pub use database::{database_spec_hash, DatabaseLogs, DatabaseState};
pub use inventory::ContainerInfo;
pub use jobs::{ExecEvent, ExecStream};
pub use pipe::{ExecDone, ExecEnd, ExecInput, ExecPipe};
pub use spec::{
    network_name, volume_name, BuildSpec, ContainerKind, ContainerSpec, EnsuredImage, ImageSource,
    Mount, PublishedPort, PullPolicy, Ulimit,
};
pub use transfer::ImageLayers;

/// Label: the app a Docker object belongs to.
pub const LABEL_APP: &str = "dockhand.app";
/// Label: the agent that created it.
pub const LABEL_AGENT: &str = "dockhand.agent";
/// Label: the service or database name.
pub const LABEL_SERVICE: &str = "dockhand.service";
/// Label: the release number.
pub const LABEL_RELEASE: &str = "dockhand.release";
/// Label: the instance id.
pub const LABEL_INSTANCE: &str = "dockhand.instance";
/// Label: `service`, `database` or `job`.
pub const LABEL_KIND: &str = "dockhand.kind";
/// Label of a database container: the hash of the spec it was created from.
pub const LABEL_SPEC_HASH: &str = "dockhand.spec-hash";
/// Label of an image Dockhand built: `true`.
pub const LABEL_BUILT: &str = "dockhand.built";

/// Where the Docker Engine is: `$DOCKER_HOST`, else `unix:///var/run/docker.sock`.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// How long the driver waits for the Docker Engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DockerTimeouts {
    /// One API call (create, start, inspect, …).
    pub api: Duration,
    /// The first ping at connect.
    pub connect: Duration,
    /// A whole image pull.
    pub pull: Duration,
    /// A whole image build.
    pub build: Duration,
}

impl Default for DockerTimeouts {
    fn default() -> Self {
        DockerTimeouts {
            api: Duration::from_secs(60),
            connect: Duration::from_secs(5),
            pull: Duration::from_secs(15 * 60),
            build: Duration::from_secs(30 * 60),
        }
    }
}

/// The container runtime of one agent. Cheap to clone.
#[derive(Clone)]
pub struct ContainerRuntime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) docker: Docker,
    pub(crate) host: String,
    /// The daemon's Unix socket.
    pub(crate) socket: std::path::PathBuf,
    pub(crate) agent_id: String,
    pub(crate) rotation: LogRotation,
    pub(crate) timeouts: DockerTimeouts,
}

impl ContainerRuntime {
    /// Connects to the Docker Engine at `$DOCKER_HOST` (a `unix://` path) or
    /// `/var/run/docker.sock`, negotiates the API version with it and pings it.
    pub async fn connect(
        agent_id: &str,
        rotation: LogRotation,
    ) -> Result<ContainerRuntime, RuntimeError> {
        ContainerRuntime::connect_with(agent_id, rotation, DockerTimeouts::default()).await
    }

    /// [`ContainerRuntime::connect`] with other timeouts.
    pub async fn connect_with(
        agent_id: &str,
        rotation: LogRotation,
        timeouts: DockerTimeouts,
    ) -> Result<ContainerRuntime, RuntimeError> {
        ContainerRuntime::connect_to(&docker_host(), agent_id, rotation, timeouts).await
    }

    /// Connects to the Docker Engine at `host` (`unix:///path` or `/path`).
    pub async fn connect_to(
        host: &str,
        agent_id: &str,
        rotation: LogRotation,
        timeouts: DockerTimeouts,
    ) -> Result<ContainerRuntime, RuntimeError> {
        let host = host.to_string();
        let unreachable = |reason: String| RuntimeError::DockerUnreachable {
            host: host.clone(),
            reason,
        };
        let path = match host.strip_prefix("unix://") {
            Some(path) => path.to_string(),
            None if host.starts_with('/') => host.clone(),
            None => {
                return Err(unreachable(
                    "only unix:// sockets are supported; unset DOCKER_HOST or point it at the local socket"
                        .to_string(),
                ))
            }
        };
        // The client's own per-request timeout bounds the response headers; our calls add
        // their own limits around whole operations.
        let client_timeout = timeouts.api.as_secs().max(1);
        let docker = Docker::connect_with_unix(&path, client_timeout, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
        // bollard pins a recent API version by default, which an older daemon refuses:
        // negotiate down to the daemon's version first.
        let docker = match tokio::time::timeout(timeouts.connect, docker.negotiate_version()).await
        {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(timeouts.connect)
                )))
            }
        };
        match tokio::time::timeout(timeouts.connect, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer to ping within {}",
                    humantime::format_duration(timeouts.connect)
                )))
            }
        }
        Ok(ContainerRuntime {
            inner: Arc::new(Inner {
                docker,
                host,
                socket: path.into(),
                agent_id: agent_id.to_string(),
                rotation,
                timeouts,
            }),
        })
    }

    /// The agent id in the `dockhand.agent` label.
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// Where the Docker Engine is, e.g. `unix:///var/run/docker.sock`.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.inner.docker.client_version().to_string()
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// Runs one API call with the API timeout.
    pub(crate) async fn api<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, RuntimeError> {
        timed(self.inner.timeouts.api, what, fut).await
    }
}

/// Runs `fut` with a limit, mapping its error and a timeout to [`RuntimeError`].
pub(crate) async fn timed<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RuntimeError::Docker {
            what: what(),
            source,
        }),
        Err(_) => Err(RuntimeError::DockerTimeout {
            what: what(),
            after: limit,
        }),
    }
}

/// Whether a Docker error is "no such object" (HTTP 404).
pub(crate) fn is_not_found(err: &RuntimeError) -> bool {
    matches!(
        err,
        RuntimeError::Docker {
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            },
            ..
        }
    )
}

/// Whether a Docker error is a conflict (HTTP 409: name in use, already running, …).
pub(crate) fn is_conflict(err: &RuntimeError) -> bool {
    matches!(
        err,
        RuntimeError::Docker {
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                ..
            },
            ..
        }
    )
}

/// Whether an error means the daemon itself is gone (connection refused, reset, timeout)
/// rather than an answer from it.
pub(crate) fn is_connection_error(err: &RuntimeError) -> bool {
    match err {
        RuntimeError::DockerTimeout { .. } => true,
        RuntimeError::Docker { source, .. } => !matches!(
            source,
            bollard::errors::Error::DockerResponseServerError { .. }
                | bollard::errors::Error::DockerContainerWaitError { .. }
        ),
        _ => false,
    }
}
