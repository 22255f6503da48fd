//! What the driver has created: listing containers by their labels, removing the service
//! and job containers a previous run of the agent left behind (databases stay), and the app's
//! network.

use std::collections::HashMap;

use bollard::models::{ContainerSummaryStateEnum, NetworkCreateRequest};
use bollard::query_parameters::{InspectNetworkOptions, ListContainersOptions};

use super::spec::{network_name, ContainerKind};
use super::{
    is_conflict, is_not_found, ContainerRuntime, LABEL_AGENT, LABEL_APP, LABEL_INSTANCE,
    LABEL_KIND, LABEL_RELEASE, LABEL_SERVICE,
};
use crate::error::RuntimeError;

/// A container Dockhand created, as `docker ps -a` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub app: String,
    pub service: String,
    pub instance: String,
    pub release: Option<i64>,
    pub kind: Option<ContainerKind>,
    pub image: String,
    /// `created`, `running`, `exited`, `restarting`, …
    pub state: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

impl ContainerRuntime {
    /// Every container of `app` (any agent, any kind, running or not).
    pub async fn list(&self, app: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.list_labelled(&[(LABEL_APP, app)]).await
    }

    /// Removes every service and job container labelled with this runtime's agent id (what
    /// a crashed agent left behind); database containers are kept. Returns their names.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, RuntimeError> {
        let agent = self.inner.agent_id.clone();
        let found = self.list_labelled(&[(LABEL_AGENT, &agent)]).await?;
        let mut removed = Vec::new();
        for c in found {
            if matches!(c.kind, Some(ContainerKind::Database)) {
                continue;
            }
            self.remove_container_quietly(&c.id).await?;
            removed.push(c.name);
        }
        Ok(removed)
    }

    /// Creates the bridge network `dockhand-<app>` (labelled) unless it exists; returns its
    /// name.
    pub async fn ensure_network(&self, app: &str) -> Result<String, RuntimeError> {
        let name = network_name(app);
        let found = self
            .api(
                || format!("failed to inspect network {name}"),
                self.docker()
                    .inspect_network(&name, None::<InspectNetworkOptions>),
            )
            .await;
        match found {
            Ok(_) => return Ok(name),
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(err),
        }
        let labels = HashMap::from([
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_AGENT.to_string(), self.inner.agent_id.clone()),
        ]);
        let created = self
            .api(
                || format!("failed to create network {name}"),
                self.docker().create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(labels),
                    ..Default::default()
                }),
            )
            .await;
        match created {
            // Created meanwhile by someone else.
            Err(err) if is_conflict(&err) => Ok(name),
            Err(err) => Err(err),
            Ok(_) => Ok(name),
        }
    }

    /// Containers carrying all of the labels.
    pub(crate) async fn list_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let found = self
            .api(
                || "failed to list containers".to_string(),
                self.docker().list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                })),
            )
            .await?;
        Ok(found
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                let state = c.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
                ContainerInfo {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    app: label(LABEL_APP),
                    service: label(LABEL_SERVICE),
                    instance: label(LABEL_INSTANCE),
                    release: labels.get(LABEL_RELEASE).and_then(|r| r.parse().ok()),
                    kind: labels.get(LABEL_KIND).and_then(|k| ContainerKind::parse(k)),
                    image: c.image.unwrap_or_default(),
                    running: state == ContainerSummaryStateEnum::RUNNING,
                    state: state.to_string(),
                    labels,
                }
            })
            .collect())
    }
}
