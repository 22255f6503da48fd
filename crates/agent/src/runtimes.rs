//! The two runtimes behind one handle: native processes (always there) and the Docker Engine
//! (connected on first need, so an app of processes never needs Docker), plus the copies of
//! the database containers' output into their log files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use dockhand_runtime::{ContainerRuntime, DatabaseLogs, LogRotation, ProcessRuntime};

use crate::error::Result;

/// Cheap to clone.
#[derive(Clone)]
pub struct Runtimes {
    agent_id: String,
    process: ProcessRuntime,
    docker: Arc<tokio::sync::Mutex<Option<ContainerRuntime>>>,
    /// Copies of each database container's output, by database: (container id, copier).
    db_logs: Arc<Mutex<HashMap<String, (String, DatabaseLogs)>>>,
}

impl Runtimes {
    pub fn new(agent_id: &str) -> Runtimes {
        Runtimes {
            agent_id: agent_id.to_string(),
            process: ProcessRuntime::new(agent_id, LogRotation::default()),
            docker: Arc::default(),
            db_logs: Arc::default(),
        }
    }

    /// The id carried by everything this agent starts.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub fn process(&self) -> &ProcessRuntime {
        &self.process
    }

    /// The container runtime, connected on first use.
    pub async fn containers(&self) -> Result<ContainerRuntime> {
        let mut slot = self.docker.lock().await;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let rt = ContainerRuntime::connect(&self.agent_id, LogRotation::default()).await?;
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// Whether a Docker Engine socket exists (without connecting to it).
    pub fn docker_socket_exists() -> bool {
        let host = dockhand_runtime::docker_host();
        Path::new(host.strip_prefix("unix://").unwrap_or(&host)).exists()
    }

    /// Copies a database container's output into `log` (once per container).
    pub fn follow_database(&self, rt: &ContainerRuntime, name: &str, container: &str, log: &Path) {
        let mut logs = self.db_logs.lock().unwrap_or_else(|p| p.into_inner());
        if logs.get(name).is_some_and(|(known, _)| known == container) {
            return;
        }
        if let Err(e) = crate::layout::ensure_parent(log) {
            tracing::warn!("cannot copy the output of database `{name}`: {e}");
            return;
        }
        match rt.follow_database_logs(container, log) {
            Ok(follow) => {
                logs.insert(name.to_string(), (container.to_string(), follow));
            }
            Err(e) => tracing::warn!("cannot copy the output of database `{name}`: {e}"),
        }
    }
}
