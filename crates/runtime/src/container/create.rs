//! Turning a [`ContainerSpec`] into a Docker container: the create body (labels, env, ports,
//! mounts, limits, network), named volumes with Dockhand's labels, and create-or-replace of a
//! container whose name a crashed agent left behind.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount as DockerMount, MountTmpfsOptions,
    MountType, NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy as DockerRestart,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions,
};

use super::spec::{volume_name, ContainerKind, ContainerSpec, Mount};
use super::{
    is_conflict, is_not_found, ContainerRuntime, LABEL_AGENT, LABEL_APP, LABEL_INSTANCE,
    LABEL_KIND, LABEL_RELEASE, LABEL_SERVICE,
};
use crate::error::RuntimeError;

impl ContainerRuntime {
    /// The `dockhand.*` labels of a spec plus its extra labels.
    pub(crate) fn labels_of(&self, spec: &ContainerSpec) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
        labels.insert(LABEL_APP.into(), spec.app.clone());
        labels.insert(LABEL_AGENT.into(), self.inner.agent_id.clone());
        labels.insert(LABEL_SERVICE.into(), spec.service.clone());
        labels.insert(LABEL_RELEASE.into(), spec.release.to_string());
        labels.insert(LABEL_INSTANCE.into(), spec.instance_id.clone());
        labels.insert(LABEL_KIND.into(), spec.kind.as_str().into());
        labels
    }

    /// Creates the named volumes of a spec that do not exist yet, labelled with the app.
    pub(crate) async fn ensure_volumes(&self, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        for mount in &spec.mounts {
            let Mount::Volume { name, .. } = mount else {
                continue;
            };
            let full = volume_name(&spec.app, name);
            let labels = HashMap::from([
                (LABEL_APP.to_string(), spec.app.clone()),
                (LABEL_AGENT.to_string(), self.inner.agent_id.clone()),
            ]);
            // Creating an existing volume returns it unchanged.
            self.api(
                || format!("failed to create volume {full}"),
                self.docker().create_volume(VolumeCreateRequest {
                    name: Some(full.clone()),
                    labels: Some(labels),
                    ..Default::default()
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Creates the container of `spec` (its volumes first) and returns its id. A container of
    /// the same name left by this agent (a crash, a restart at agent start) is replaced.
    pub(crate) async fn create_container(
        &self,
        spec: &ContainerSpec,
        restart: Option<RestartPolicyNameEnum>,
        extra_labels: &[(String, String)],
    ) -> Result<String, RuntimeError> {
        for mount in &spec.mounts {
            if let Mount::Bind { source, .. } = mount {
                if !source.exists() {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "bind mount source {} does not exist: create it or fix `volumes`",
                        source.display()
                    )));
                }
            }
        }
        self.ensure_volumes(spec).await?;
        let name = spec.container_name();
        let mut body = self.create_body(spec, restart);
        if let Some(labels) = body.labels.as_mut() {
            labels.extend(extra_labels.iter().cloned());
        }
        let mut replaced = false;
        loop {
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            let created = self
                .api(
                    || {
                        format!(
                            "failed to create container {name} from image `{}`",
                            spec.image
                        )
                    },
                    self.docker().create_container(Some(options), body.clone()),
                )
                .await;
            match created {
                Ok(resp) => return Ok(resp.id),
                Err(err) if is_conflict(&err) && !replaced => {
                    replaced = true;
                    self.remove_stale(&name, spec.kind).await?;
                }
                Err(err) if is_not_found(&err) => {
                    return Err(RuntimeError::ImageUnavailable {
                        image: spec.image.clone(),
                        reason: "was not pulled or built before the start: this is a bug in dockhand, please report it".into(),
                    })
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Removes a container in the way of a new one of the same name, if this agent made it.
    async fn remove_stale(&self, name: &str, kind: ContainerKind) -> Result<(), RuntimeError> {
        let info = self
            .api(
                || format!("failed to inspect container {name}"),
                self.docker()
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await?;
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(LABEL_AGENT).map(String::as_str) != Some(self.inner.agent_id.as_str())
            || kind == ContainerKind::Database
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "a container named {name} already exists and was not left by this agent: remove it (`docker rm -f {name}`) or rename the app"
            )));
        }
        self.remove_container_quietly(name).await
    }

    /// `docker rm -f` (with its anonymous volumes); a missing container is fine.
    pub(crate) async fn remove_container_quietly(&self, name: &str) -> Result<(), RuntimeError> {
        let removed = self
            .api(
                || format!("failed to remove container {name}"),
                self.docker().remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                ),
            )
            .await;
        match removed {
            Err(err) if is_not_found(&err) => Ok(()),
            // 409: removal already in progress.
            Err(err) if is_conflict(&err) => Ok(()),
            other => other,
        }
    }

    pub(crate) fn create_body(
        &self,
        spec: &ContainerSpec,
        restart: Option<RestartPolicyNameEnum>,
    ) -> ContainerCreateBody {
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut port_bindings = HashMap::new();
        let mut exposed = Vec::new();
        for p in &spec.ports {
            let key = format!("{}/tcp", p.container_port);
            exposed.push(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let mounts: Vec<DockerMount> = spec
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Volume {
                    name,
                    target,
                    read_only,
                } => DockerMount {
                    target: Some(target.clone()),
                    source: Some(volume_name(&spec.app, name)),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
                Mount::Bind {
                    source,
                    target,
                    read_only,
                } => DockerMount {
                    target: Some(target.clone()),
                    source: Some(source.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
                Mount::Tmpfs { target, size } => DockerMount {
                    target: Some(target.clone()),
                    typ: Some(MountType::TMPFS),
                    tmpfs_options: size.map(|s| MountTmpfsOptions {
                        size_bytes: Some(s as i64),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            })
            .collect();
        let ulimits: Vec<ResourcesUlimits> = spec
            .ulimits
            .iter()
            .map(|u| ResourcesUlimits {
                name: Some(u.name.clone()),
                soft: Some(u.soft),
                hard: Some(u.hard),
            })
            .collect();
        let host_config = HostConfig {
            memory: spec.memory_limit.map(|m| m as i64),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            init: spec.init.then_some(true),
            shm_size: spec.shm_size.map(|s| s as i64),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            network_mode: spec.network.clone(),
            restart_policy: Some(DockerRestart {
                name: Some(restart.unwrap_or(RestartPolicyNameEnum::NO)),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let networking_config = spec.network.as_ref().map(|net| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    aliases: Some(spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(env),
            user: spec.user.clone(),
            labels: Some(self.labels_of(spec)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: Some(spec.stop_grace.as_secs() as i64),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        }
    }
}
