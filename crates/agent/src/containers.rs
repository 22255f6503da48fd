//! The agent's side of containers: connecting to the Docker Engine on first need, turning a
//! service or database of the configuration into the runtime's `ContainerSpec`, preparing
//! the images of a release (build or pull), and keeping the long-lived database containers
//! running — started before the services, never restarted by a deploy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dockhand_api::{ApiError, ErrorCode, Progress};
use dockhand_config::{AppConfig, DatabaseConfig, Mount, PullPolicy, Secrets, ServiceConfig};
use dockhand_runtime::{
    BuildSpec, ContainerKind, ContainerRuntime, ContainerSpec, ImageSource, LogRotation,
    PublishedPort, RestartPolicy,
};
use dockhand_state::EventLevel;

use crate::{Agent, Sink};

/// How long a database gets to stop before SIGKILL (`db upgrade`).
const DATABASE_STOP_GRACE: Duration = Duration::from_secs(30);

impl Agent {
    /// The container runtime, connected on first use.
    pub(crate) async fn containers(&self) -> Result<ContainerRuntime, ApiError> {
        let mut slot = self.docker.lock().await;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let rt = ContainerRuntime::connect(&self.agent_id, LogRotation::default())
            .await
            .map_err(|e| ApiError::new(ErrorCode::Failed, e.to_string()))?;
        *slot = Some(rt.clone());
        Ok(rt)
    }
}

/// The database containers of the serving release (else of the configuration file), as the
/// Docker Engine sees them.
pub async fn database_status(agent: &Arc<Agent>) -> Vec<dockhand_api::DatabaseStatus> {
    let config = match agent.live_config() {
        Some(c) => c,
        None => match crate::load_config(&agent.opts.config_path) {
            Ok(c) => c,
            Err(_) => return Vec::new(),
        },
    };
    if config.databases.is_empty() {
        return Vec::new();
    }
    let rt = agent.containers().await;
    let mut out = Vec::new();
    for db in config.databases.values() {
        let mut status = dockhand_api::DatabaseStatus {
            name: db.name.clone(),
            engine: db.engine.as_str().into(),
            image: db.image.clone(),
            state: dockhand_api::DatabaseState::Unknown,
            container: None,
            publish: db.publish.map(|a| a.to_string()),
            problem: None,
        };
        match &rt {
            Err(e) => status.problem = Some(e.message.clone()),
            Ok(rt) => match rt.find_database(&config.app, &db.name).await {
                Ok(Some(found)) => {
                    status.state = crate::wire::database_state(&found.state);
                    status.container = Some(found.name);
                }
                Ok(None) => status.state = dockhand_api::DatabaseState::Missing,
                Err(e) => status.problem = Some(e.to_string()),
            },
        }
        out.push(status);
    }
    out
}

impl Agent {
    /// `dockhand db upgrade NAME`: recreates the database container from the configuration
    /// file's table, on the same data volume.
    pub async fn db_upgrade(
        self: &Arc<Self>,
        database: &str,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<dockhand_api::DbUpgradeReport, ApiError> {
        let _guard = self.lock.acquire("db upgrade", requested_by)?;
        let config = crate::load_config(&self.opts.config_path)?;
        let Some(db) = config.databases.get(database) else {
            let known: Vec<&str> = config.databases.keys().map(String::as_str).collect();
            return Err(ApiError::new(
                ErrorCode::NotFound,
                if known.is_empty() {
                    format!("no database `{database}`: dockhand.toml defines none")
                } else {
                    format!("no database `{database}`; databases: {}", known.join(", "))
                },
            ));
        };
        let mut only = config.clone();
        only.databases.retain(|name, _| name == database);
        let warnings = ensure_databases(self, &only, Some(database), sink).await?;
        let message = format!(
            "database `{database}` runs {} from its current settings",
            db.image
        );
        self.event(
            EventLevel::Info,
            "database",
            None,
            Some(database),
            &format!("{message} (requested by {requested_by})"),
        );
        Ok(dockhand_api::DbUpgradeReport {
            database: database.to_string(),
            image: db.image.clone(),
            message,
            warnings,
        })
    }
}

/// The image each container service of a release runs, by service name.
pub type Images = BTreeMap<String, String>;

/// Everything a release needs before its instances start: its databases running and healthy,
/// then its images (built when `build`: a new release). Returns the images and the warnings.
/// Deploys, rollbacks and the restore at agent start all come through here.
pub async fn prepare_release(
    agent: &Arc<Agent>,
    config: &AppConfig,
    release: i64,
    build: bool,
    sink: Sink<'_>,
) -> Result<(Images, Vec<String>), ApiError> {
    if !config.uses_containers() {
        return Ok((Images::new(), Vec::new()));
    }
    let mut warnings = ensure_databases(agent, config, None, sink).await?;
    let (images, more) = prepare_images(agent, config, release, build, sink).await?;
    warnings.extend(more);
    Ok((images, warnings))
}

/// The tag of a service's build for `release`.
pub fn build_tag(svc: &ServiceConfig, release: i64) -> Option<String> {
    let c = svc.container.as_ref()?;
    c.build.as_ref()?;
    let repo = match c.image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => c.image.as_str(),
    };
    Some(format!("{repo}:r{release}"))
}

/// Makes the images of a release present: builds (when `build` is true: a new release) or
/// finds the builds of an earlier release, and pulls references per their policy.
async fn prepare_images(
    agent: &Arc<Agent>,
    config: &AppConfig,
    release: i64,
    build: bool,
    sink: Sink<'_>,
) -> Result<(Images, Vec<String>), ApiError> {
    let mut images = Images::new();
    let mut warnings = Vec::new();
    let containers: Vec<&ServiceConfig> = config
        .services
        .values()
        .filter(|s| s.container.is_some())
        .collect();
    if containers.is_empty() {
        return Ok((images, warnings));
    }
    let rt = agent.containers().await?;
    for svc in containers {
        let Some(c) = svc.container.as_ref() else {
            continue;
        };
        let source = match (&c.build, build_tag(svc, release)) {
            (Some(b), Some(tag)) if build => {
                sink(Progress {
                    step: "build".into(),
                    message: format!("building {} from {}", tag, b.context.display()),
                    service: Some(svc.name.clone()),
                });
                ImageSource::Build(BuildSpec {
                    app: config.app.clone(),
                    context: b.context.clone(),
                    dockerfile: Some(b.dockerfile.clone()),
                    target: b.target.clone(),
                    args: b.args.clone().into_iter().collect(),
                    tag,
                })
            }
            (Some(_), Some(tag)) => ImageSource::Reference {
                image: tag,
                pull: dockhand_runtime::PullPolicy::Never,
            },
            _ => ImageSource::Reference {
                image: c.image.clone(),
                pull: pull_policy(c.pull),
            },
        };
        let name = svc.name.clone();
        let ensured = rt
            .ensure_image(&source, |line: &str| {
                let line = line.trim();
                if !line.is_empty() {
                    sink(Progress {
                        step: "image".into(),
                        message: agent.redact(line),
                        service: Some(name.clone()),
                    });
                }
            })
            .await
            .map_err(|e| {
                let hint = match &source {
                    ImageSource::Reference { image, .. } if image.ends_with(&format!(":r{release}")) => {
                        format!("; the build of release {release} is gone, so deploy a new release instead")
                    }
                    _ => String::new(),
                };
                ApiError::new(
                    ErrorCode::Failed,
                    format!("image of service `{}`: {e}{hint}", svc.name),
                )
            })?;
        warnings.extend(
            ensured
                .warnings
                .iter()
                .map(|w| format!("{}: {w}", svc.name)),
        );
        images.insert(svc.name.clone(), ensured.reference);
    }
    Ok((images, warnings))
}

/// The spec of one replica of a container service.
#[allow(clippy::too_many_arguments)]
pub fn service_spec(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    instance_id: &str,
    image: &str,
    env: Vec<(String, String)>,
    host_port: Option<u16>,
    log_path: PathBuf,
) -> ContainerSpec {
    let c = svc.container.as_ref();
    let mut spec = ContainerSpec::new(
        &config.app,
        &svc.name,
        instance_id,
        ContainerKind::Service,
        image,
    );
    spec.release = release;
    spec.command = c.and_then(|c| c.command.clone());
    spec.entrypoint = c.and_then(|c| c.entrypoint.clone());
    spec.env = env;
    spec.network = Some(config.network());
    spec.aliases = vec![svc.name.clone()];
    if let (Some(host_port), Some(container_port)) = (host_port, svc.port) {
        spec.ports = vec![PublishedPort {
            host_ip: "127.0.0.1".into(),
            host_port,
            container_port,
        }];
    }
    spec.mounts = c.map(|c| mounts(&c.volumes)).unwrap_or_default();
    spec.memory_limit = svc.memory_limit;
    spec.cpus = c.and_then(|c| c.cpus);
    spec.user = c.and_then(|c| c.user.clone());
    spec.init = c.is_some_and(|c| c.init);
    spec.shm_size = c.and_then(|c| c.shm_size);
    spec.ulimits = c.map(|c| ulimits(&c.ulimits)).unwrap_or_default();
    spec.restart = crate::instances::runtime_restart(svc.restart);
    spec.stop_grace = svc.stop_timeout;
    spec.log_path = Some(log_path);
    spec
}

/// The spec of a one-off container (a deploy hook) of a service: its image, env, mounts and
/// network, running `/bin/sh -c <command>`.
#[allow(clippy::too_many_arguments)]
pub fn job_spec(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    job_id: &str,
    image: &str,
    env: Vec<(String, String)>,
    command: &str,
    log_path: PathBuf,
) -> ContainerSpec {
    let mut spec = service_spec(config, svc, release, job_id, image, env, None, log_path);
    spec.kind = ContainerKind::Job;
    spec.aliases.clear();
    spec.entrypoint = Some(Vec::new());
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), command.to_string()]);
    spec.restart = RestartPolicy::Never;
    spec
}

/// The spec of a database container, with its secrets resolved.
pub fn database_spec(
    agent: &Agent,
    config: &AppConfig,
    db: &DatabaseConfig,
    secrets: &Secrets,
) -> Result<ContainerSpec, ApiError> {
    let mut spec = ContainerSpec::new(
        &config.app,
        &db.name,
        &db.name,
        ContainerKind::Database,
        &db.image,
    );
    let mut env = Vec::new();
    for (k, v) in db.container_env() {
        let value = v.resolve(secrets).map_err(|e| {
            ApiError::new(ErrorCode::Failed, format!("database `{}`: {e}", db.name))
        })?;
        env.push((k, value));
    }
    spec.env = env;
    spec.command = db.command.clone();
    spec.network = Some(config.network());
    spec.aliases = vec![db.name.clone()];
    if let Some(addr) = db.publish {
        spec.ports = vec![PublishedPort {
            host_ip: addr.ip().to_string(),
            host_port: addr.port(),
            container_port: db.engine.port(),
        }];
    }
    spec.mounts = mounts(&db.mounts());
    spec.memory_limit = db.memory_limit;
    spec.cpus = db.cpus;
    spec.shm_size = db.shm_size;
    spec.stop_grace = DATABASE_STOP_GRACE;
    spec.log_path = Some(database_log(agent, &db.name));
    Ok(spec)
}

/// Where a database's output is copied while the agent runs.
pub fn database_log(agent: &Agent, name: &str) -> PathBuf {
    agent
        .opts
        .state_dir
        .join("logs")
        .join(name)
        .join(format!("{name}.log"))
}

/// Makes every database of `config` run and be healthy, before any service starts. A
/// database whose table changed is left alone, with a warning. With `upgrade`, that one
/// database is recreated from its new table instead.
pub async fn ensure_databases(
    agent: &Arc<Agent>,
    config: &AppConfig,
    upgrade: Option<&str>,
    sink: Sink<'_>,
) -> Result<Vec<String>, ApiError> {
    let mut warnings = Vec::new();
    if config.databases.is_empty() {
        return Ok(warnings);
    }
    let rt = agent.containers().await?;
    let secrets = crate::instances::secrets_for(agent, config)?.unwrap_or_else(Secrets::empty);
    rt.ensure_network(&config.app)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Failed, e.to_string()))?;
    for db in config.databases.values() {
        let spec = database_spec(agent, config, db, &secrets)?;
        let ensured = rt
            .ensure_image(
                &ImageSource::Reference {
                    image: db.image.clone(),
                    pull: pull_policy(db.pull),
                },
                |line: &str| {
                    if !line.trim().is_empty() {
                        sink(Progress {
                            step: "image".into(),
                            message: line.trim().to_string(),
                            service: Some(db.name.clone()),
                        })
                    }
                },
            )
            .await
            .map_err(|e| {
                ApiError::new(ErrorCode::Failed, format!("database `{}`: {e}", db.name))
            })?;
        warnings.extend(ensured.warnings);
        let state = if upgrade == Some(db.name.as_str()) {
            sink(Progress {
                step: "database".into(),
                message: format!(
                    "recreating database `{}` from its new settings (the data volume stays)",
                    db.name
                ),
                service: Some(db.name.clone()),
            });
            rt.recreate_database(&spec).await
        } else {
            rt.ensure_database(&spec).await
        }
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Failed,
                agent.redact(&format!("database `{}`: {e}", db.name)),
            )
        })?;
        if state.created {
            sink(Progress {
                step: "database".into(),
                message: format!("database `{}` created ({})", db.name, db.image),
                service: Some(db.name.clone()),
            });
            agent.event(
                EventLevel::Info,
                "database",
                None,
                Some(&db.name),
                &format!("database `{}` created from {}", db.name, db.image),
            );
        } else if state.changed && upgrade != Some(db.name.as_str()) {
            warnings.push(format!(
                "database `{}` changed in dockhand.toml and keeps running as it was; `dockhand db upgrade {}` applies the change (the data volume stays)",
                db.name, db.name
            ));
        }
        agent.follow_database(&rt, &db.name, &state.id);
        wait_database_healthy(agent, &rt, db, &state.id, sink).await?;
    }
    Ok(warnings)
}

/// Runs the database's health command until it passes or its deploy timeout ends.
async fn wait_database_healthy(
    agent: &Agent,
    rt: &ContainerRuntime,
    db: &DatabaseConfig,
    container: &str,
    sink: Sink<'_>,
) -> Result<(), ApiError> {
    let Some(command) = db.health.command.as_ref() else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + db.health.deploy_timeout;
    let mut last: String;
    let mut said = false;
    loop {
        match rt
            .exec(container, command.argv(), Vec::new(), db.health.timeout)
            .await
        {
            Ok(out) if out.exit_code == Some(0) => {
                if said {
                    sink(Progress {
                        step: "database".into(),
                        message: format!("database `{}` is ready", db.name),
                        service: Some(db.name.clone()),
                    });
                }
                return Ok(());
            }
            Ok(out) => {
                last = format!(
                    "`{}` {}{}",
                    command.display(),
                    match (out.timed_out, out.exit_code) {
                        (true, _) => "timed out".to_string(),
                        (false, Some(c)) => format!("exited with {c}"),
                        (false, None) => "was killed".to_string(),
                    },
                    last_line(&out.output)
                );
            }
            Err(e) => last = e.to_string(),
        }
        if !said {
            sink(Progress {
                step: "database".into(),
                message: format!("waiting for database `{}` to accept connections", db.name),
                service: Some(db.name.clone()),
            });
            said = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::Failed,
                agent.redact(&format!(
                    "database `{}` is not ready after {}: {last}; `dockhand logs {}` shows its output",
                    db.name,
                    crate::health::humanize(db.health.deploy_timeout),
                    db.name
                )),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500).min(db.health.interval)).await;
    }
}

fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

/// The runtime's pull policy for the configuration's.
pub fn pull_policy(p: PullPolicy) -> dockhand_runtime::PullPolicy {
    match p {
        PullPolicy::Missing => dockhand_runtime::PullPolicy::Missing,
        PullPolicy::Always => dockhand_runtime::PullPolicy::Always,
        PullPolicy::Never => dockhand_runtime::PullPolicy::Never,
    }
}

fn mounts(m: &[Mount]) -> Vec<dockhand_runtime::Mount> {
    m.iter()
        .map(|m| match m {
            Mount::Volume {
                name,
                target,
                read_only,
            } => dockhand_runtime::Mount::Volume {
                name: name.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::Bind {
                source,
                target,
                read_only,
            } => dockhand_runtime::Mount::Bind {
                source: source.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::Tmpfs { target } => dockhand_runtime::Mount::Tmpfs {
                target: target.clone(),
                size: None,
            },
        })
        .collect()
}

fn ulimits(u: &[dockhand_config::Ulimit]) -> Vec<dockhand_runtime::Ulimit> {
    u.iter()
        .map(|u| dockhand_runtime::Ulimit {
            name: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect()
}

/// The tags of builds that retained releases still need.
pub fn retained_tags(config_of: &[(i64, AppConfig)]) -> Vec<String> {
    let mut tags = Vec::new();
    for (release, config) in config_of {
        for svc in config.services.values() {
            if let Some(tag) = build_tag(svc, *release) {
                tags.push(tag);
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_tags_replace_the_tag_and_keep_registry_ports() {
        let mut svc = ServiceConfig {
            name: "api".into(),
            command: String::new(),
            workdir: PathBuf::from("/"),
            port: None,
            env: BTreeMap::new(),
            health: None,
            route: None,
            replicas: 1,
            restart: dockhand_config::RestartPolicy::Always,
            memory_limit: None,
            stop_timeout: Duration::from_secs(10),
            hooks: Default::default(),
            container: None,
            depends_on: Vec::new(),
        };
        assert_eq!(build_tag(&svc, 3), None);
        let mut c = dockhand_config::ContainerConfig {
            image: "registry.local:5000/shop/api".into(),
            build: Some(dockhand_config::BuildConfig {
                context: "/x".into(),
                dockerfile: "/x/Dockerfile".into(),
                target: None,
                args: BTreeMap::new(),
            }),
            pull: PullPolicy::Missing,
            command: None,
            entrypoint: None,
            volumes: Vec::new(),
            cpus: None,
            user: None,
            init: false,
            shm_size: None,
            ulimits: Vec::new(),
        };
        svc.container = Some(c.clone());
        assert_eq!(
            build_tag(&svc, 3).as_deref(),
            Some("registry.local:5000/shop/api:r3")
        );
        c.image = "shop/api:1.2".into();
        svc.container = Some(c);
        assert_eq!(build_tag(&svc, 12).as_deref(), Some("shop/api:r12"));
    }
}
