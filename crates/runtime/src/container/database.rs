//! Long-lived database containers. A database is found by its labels (app, kind, name), is
//! created once with Docker's restart policy `unless-stopped` (so it outlives the agent and
//! comes back after a daemon restart) and a label holding the hash of its spec, and is never
//! recreated by a deploy: a changed spec is reported, and only
//! [`ContainerRuntime::recreate_database`] (`dockhand db upgrade`) replaces the container, on
//! the same volume.
//!
//! Logs: the agent calls [`ContainerRuntime::follow_database_logs`] once per database while it
//! runs; the returned [`DatabaseLogs`] copies the container's output into a log file (the
//! runtime's format) across container restarts, until it is stopped or dropped.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bollard::models::RestartPolicyNameEnum;
use bollard::query_parameters::{StartContainerOptions, StopContainerOptions};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::inventory::ContainerInfo;
use super::logstream::{LogCursor, LogSink};
use super::spec::{ContainerKind, ContainerSpec, Mount};
use super::{is_conflict, ContainerRuntime, LABEL_SPEC_HASH};
use crate::error::RuntimeError;
use crate::logs::LogWriter;

/// What [`ContainerRuntime::ensure_database`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseState {
    /// The container id.
    pub id: String,
    /// The container was created now.
    pub created: bool,
    /// The running container was made from another spec; `recreate_database` applies it.
    pub changed: bool,
}

/// Copies a database container's output into a log file until stopped or dropped.
pub struct DatabaseLogs {
    task: JoinHandle<()>,
}

impl DatabaseLogs {
    /// Stops copying.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for DatabaseLogs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ContainerRuntime {
    /// Makes sure the database container of `spec` (kind `database`) exists and runs: creates
    /// it when absent, starts it when stopped, and reports (without touching it) a running
    /// container whose spec changed.
    pub async fn ensure_database(
        &self,
        spec: &ContainerSpec,
    ) -> Result<DatabaseState, RuntimeError> {
        check_database(spec)?;
        let hash = database_spec_hash(spec);
        match self.find_database(&spec.app, &spec.service).await? {
            Some(found) => {
                let changed = found.labels.get(LABEL_SPEC_HASH) != Some(&hash);
                if !found.running {
                    self.start_database(&found.name).await?;
                }
                Ok(DatabaseState {
                    id: found.id,
                    created: false,
                    changed,
                })
            }
            None => self.create_database(spec, &hash).await,
        }
    }

    /// Stops and removes the database container (its named volumes stay) and creates it again
    /// from `spec`.
    pub async fn recreate_database(
        &self,
        spec: &ContainerSpec,
    ) -> Result<DatabaseState, RuntimeError> {
        check_database(spec)?;
        if let Some(found) = self.find_database(&spec.app, &spec.service).await? {
            let grace = spec.stop_grace;
            super::timed(
                grace + self.inner.timeouts.api,
                || format!("failed to stop database container {}", found.name),
                self.docker().stop_container(
                    &found.name,
                    Some(StopContainerOptions {
                        t: Some(grace.as_secs().min(i32::MAX as u64) as i32),
                        signal: None,
                    }),
                ),
            )
            .await?;
            // Without `v`: the data lives in named volumes, which are never removed here.
            self.api(
                || format!("failed to remove database container {}", found.name),
                self.docker().remove_container(
                    &found.name,
                    None::<bollard::query_parameters::RemoveContainerOptions>,
                ),
            )
            .await?;
        }
        let mut state = self
            .create_database(spec, &database_spec_hash(spec))
            .await?;
        state.changed = true;
        Ok(state)
    }

    /// The database container `name` of `app`, if there is one.
    pub async fn find_database(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<ContainerInfo>, RuntimeError> {
        let found = self
            .list_labelled(&[
                (super::LABEL_APP, app),
                (super::LABEL_KIND, ContainerKind::Database.as_str()),
                (super::LABEL_SERVICE, name),
            ])
            .await?;
        Ok(found.into_iter().next())
    }

    /// Copies the output of database container `container` into `log_path` from now on
    /// (from the log file's last change when it exists, so an agent restart loses nothing),
    /// following it across restarts of the container.
    pub fn follow_database_logs(
        &self,
        container: &str,
        log_path: &Path,
    ) -> Result<DatabaseLogs, RuntimeError> {
        let since = std::fs::metadata(log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128).ok())
            .unwrap_or_else(OffsetDateTime::now_utc);
        let log = LogWriter::open(log_path, self.inner.rotation)
            .map_err(|source| RuntimeError::Log {
                path: log_path.to_path_buf(),
                source,
            })?
            .shared();
        let sink = LogSink {
            log: Some(log),
            tail: None,
        };
        let cursor = LogCursor::starting_at(since);
        let rt = self.clone();
        let container = container.to_string();
        let task = tokio::spawn(async move {
            loop {
                rt.follow_output(&container, &cursor, &sink).await;
                // The container stopped or the daemon went away: Docker restarts it
                // (`unless-stopped`), so look again shortly.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(DatabaseLogs { task })
    }

    async fn create_database(
        &self,
        spec: &ContainerSpec,
        hash: &str,
    ) -> Result<DatabaseState, RuntimeError> {
        let id = self
            .create_container(
                spec,
                Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                &[(LABEL_SPEC_HASH.to_string(), hash.to_string())],
            )
            .await?;
        if let Err(err) = self.start_database(&spec.container_name()).await {
            let _ = self.remove_container_quietly(&spec.container_name()).await;
            return Err(err);
        }
        Ok(DatabaseState {
            id,
            created: true,
            changed: false,
        })
    }

    async fn start_database(&self, name: &str) -> Result<(), RuntimeError> {
        match self
            .api(
                || format!("failed to start database container {name}"),
                self.docker()
                    .start_container(name, None::<StartContainerOptions>),
            )
            .await
        {
            Err(err) if is_conflict(&err) => Ok(()),
            other => other,
        }
    }
}

fn check_database(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    if spec.kind != ContainerKind::Database {
        return Err(RuntimeError::InvalidSpec(format!(
            "{} is a {} container, not a database: this is a bug in dockhand, please report it",
            spec.service,
            spec.kind.as_str()
        )));
    }
    Ok(())
}

/// The hash of everything in a database spec that shapes its container (not the release or
/// instance id, which change with every deploy).
pub fn database_spec_hash(spec: &ContainerSpec) -> String {
    let mut env = spec.env.clone();
    env.sort();
    let mounts: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Volume {
                name,
                target,
                read_only,
            } => format!("volume:{name}:{target}:{read_only}"),
            Mount::Bind {
                source,
                target,
                read_only,
            } => format!("bind:{}:{target}:{read_only}", source.display()),
            Mount::Tmpfs { target, size } => format!("tmpfs:{target}:{size:?}"),
        })
        .collect();
    let canonical = serde_json::json!({
        "image": spec.image,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "env": env,
        "network": spec.network,
        "aliases": spec.aliases,
        "ports": spec.ports.iter().map(|p| format!("{}:{}:{}", p.host_ip, p.host_port, p.container_port)).collect::<Vec<_>>(),
        "mounts": mounts,
        "memory": spec.memory_limit,
        "cpus": spec.cpus,
        "user": spec.user,
        "init": spec.init,
        "shm_size": spec.shm_size,
        "ulimits": spec.ulimits.iter().map(|u| format!("{}:{}:{}", u.name, u.soft, u.hard)).collect::<Vec<_>>(),
        "stop_grace": spec.stop_grace.as_secs(),
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    hex::encode(&digest[..16])
}
