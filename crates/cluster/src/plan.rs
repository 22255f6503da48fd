//! A service of the app as a Swarm service, planned as data: [`plan_service`] turns a
//! container service of the config into a [`ServicePlan`] (pure, tested with plain data), and
//! [`ServicePlan::to_spec`] writes the Engine API's `ServiceSpec` from it.
//!
//! What a deploy relies on: start-first updates one task at a time, watched for a monitor
//! window and rolled back by Swarm itself when a new task fails; `dnsrr` endpoints (no VIP:
//! the proxy routes to task addresses, and not every kernel has IPVS); the app's overlay
//! network; `${secret.NAME}` values as Swarm secrets mounted in the task's `/run/secrets`
//! (tmpfs), never a value in the spec or a file on a node's disk.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models;
use dockhand_config::{DatabaseConfig, Mount, RestartPolicy, ServiceConfig};
use serde::Serialize;

/// How tasks are replaced by an update (and by Swarm's own rollback).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdatePolicy {
    /// Tasks replaced at a time.
    pub parallelism: u32,
    /// Pause between batches.
    pub delay: Duration,
    /// How long a new task is watched after it starts; failing within it counts as a
    /// failed update.
    pub monitor: Duration,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            parallelism: 1,
            delay: Duration::ZERO,
            monitor: Duration::from_secs(10),
        }
    }
}

/// A secret of the config delivered as a Swarm secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMount {
    /// The environment variable that named it (`DATABASE_PASSWORD`).
    pub env: String,
    /// The name in the secrets file.
    pub secret: String,
    /// Where the task reads it.
    pub target: String,
}

/// One service of the app on the swarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    /// `<app>-<service>`.
    pub name: String,
    pub app: String,
    pub service: String,
    pub release: String,
    pub image: String,
    pub replicas: u32,
    /// `NAME=value` lines, sorted; secrets are not among them.
    pub env: Vec<String>,
    /// The secrets the task gets as files (`NAME_FILE` names each one's path in `env`).
    pub secrets: Vec<SecretMount>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub init: bool,
    pub memory_limit: Option<u64>,
    pub cpus: Option<f64>,
    pub restart: RestartPolicy,
    pub stop_grace: Duration,
    /// A command health check Swarm runs in the task (HTTP checks are Dockhand's).
    pub health_command: Option<HealthCommand>,
    pub update: UpdatePolicy,
    /// Placement constraints (`node.labels.db == main`).
    pub constraints: Vec<String>,
    /// The app's overlay network.
    pub network: String,
    /// A service of the app (replaced start-first) or a database (stop-first, one task).
    pub kind: PlanKind,
    /// Named volumes (`<app>_<name>`, on the node the task runs on).
    pub mounts: Vec<VolumeMount>,
}

/// What a planned Swarm service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanKind {
    /// A service of the app: its tasks carry the release and are replaced start-first.
    Service,
    /// A database: one task on the node that holds its volume, replaced stop-first (two
    /// servers never share its files), left alone by a deploy that does not change it.
    Database,
}

/// A named volume mounted in a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    /// The Docker volume, `<app>_<name>`.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A command Swarm runs to decide whether a task is healthy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCommand {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// Why a service cannot run on the cluster as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("service `{service}` is a process (`command`); on a cluster every service runs from an image")]
    NotAContainer { service: String },
    #[error("`{service}`'s env `{env}` puts a secret inside a longer value; on a cluster a secret is a whole value (`{env} = \"${{secret.NAME}}\"`), delivered as a file named by `{env}_FILE`")]
    EmbeddedSecret { service: String, env: String },
    #[error("service `{service}` is built from a Dockerfile; on a cluster every service runs an image every node has (build it, load it on the nodes, and set `image`)")]
    Build { service: String },
    #[error("`{service}` mounts the host path {path}; on a cluster a task may run on any node, so only named volumes are mounted")]
    BindMount { service: String, path: String },
    #[error("database `{database}` is not pinned to a node: its volume lives on one node, so its task must always run there")]
    UnpinnedDatabase { database: String },
    #[error(
        "[proxy.acme.dns] (DNS-01 through a provider) is not done by the cluster's ingress yet"
    )]
    IngressDns,
    #[error("[proxy.acme] eab (external account binding) is not done by the cluster's ingress yet: its MAC key is a secret the ingress does not hold")]
    IngressEab,
    #[error("`{host}` can only get its certificate by {challenges}; the cluster's ingress answers http-01 (on every ingress node)")]
    IngressChallenge { host: String, challenges: String },
    #[error("`{host}` would need a certificate from the local CA, which the cluster's ingress does not run")]
    IngressLocalHost { host: String },
    #[error("cannot read {path} for the ingress: {reason}")]
    IngressFile { path: String, reason: String },
}

impl PlanError {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            PlanError::NotAContainer { .. } => "give the service an `image`".into(),
            PlanError::EmbeddedSecret { env, .. } => {
                format!("set `{env} = \"${{secret.NAME}}\"` and have the program read the file `{env}_FILE` names")
            }
            PlanError::Build { .. } => "set `image` to an image loaded on every node".into(),
            PlanError::BindMount { .. } => "use a named volume (`volumes = [\"data:/data\"]`)".into(),
            PlanError::IngressDns => "remove [proxy.acme.dns] and let the ingress answer http-01, or give the wildcard's certificate in [proxy] certificates".into(),
            PlanError::IngressEab => "use a CA without external account binding, or give the certificates in [proxy] certificates".into(),
            PlanError::IngressChallenge { .. } => "allow http-01 (`challenge = [\"http-01\"]` on the route or in [proxy.acme]); a wildcard needs DNS-01, so give its certificate in [proxy] certificates".into(),
            PlanError::IngressLocalHost { host } => format!(
                "route a public name instead of `{host}`, or cover it with a file in [proxy] certificates"
            ),
            PlanError::IngressFile { .. } => "check the path in [proxy] (relative paths are from the project directory) and that you may read it".into(),
            PlanError::UnpinnedDatabase { database } => format!(
                "label its node and pin it: [cluster.labels.NODE] {database} = \"yes\" and [cluster] placement = {{ {database} = [\"node.labels.{database} == yes\"] }}"
            ),
        }
    }
}

/// The overlay network of `app`'s services.
pub fn network_name(app: &str) -> String {
    format!("dockhand-{app}")
}

/// Plans `service` of `app` at `release`, running `image` (the release's image reference).
pub fn plan_service(
    app: &str,
    service: &ServiceConfig,
    release: &str,
    image: &str,
    constraints: &[String],
) -> Result<ServicePlan, PlanError> {
    let Some(container) = &service.container else {
        return Err(PlanError::NotAContainer {
            service: service.name.clone(),
        });
    };
    if container.build.is_some() {
        return Err(PlanError::Build {
            service: service.name.clone(),
        });
    }
    let (mut env, secrets) = split_env(&service.name, service.env.iter())?;
    let mounts = volume_mounts(app, &service.name, &container.volumes)?;
    if let Some(port) = service.port {
        env.entry("PORT".into()).or_insert_with(|| port.to_string());
    }
    env.insert("DOCKHAND_APP".into(), app.to_string());
    env.insert("DOCKHAND_SERVICE".into(), service.name.clone());
    env.insert("DOCKHAND_RELEASE".into(), release.to_string());
    let health_command = service.health.as_ref().and_then(|h| {
        let command = h.command.as_ref()?;
        Some(HealthCommand {
            test: health_test(command),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.unhealthy_threshold,
            start_period: h.start_period,
        })
    });
    let mut update = UpdatePolicy::default();
    if let Some(h) = &service.health {
        // Long enough to see a new task fail its check the configured number of times.
        update.monitor = update
            .monitor
            .max(h.start_period + h.interval * h.unhealthy_threshold.max(1));
    }
    Ok(ServicePlan {
        name: format!("{app}-{}", service.name),
        app: app.to_string(),
        service: service.name.clone(),
        release: release.to_string(),
        image: image.to_string(),
        replicas: service.replicas,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        secrets,
        command: container.command.clone(),
        entrypoint: container.entrypoint.clone(),
        user: container.user.clone(),
        init: container.init,
        memory_limit: service.memory_limit,
        cpus: container.cpus,
        restart: service.restart,
        stop_grace: service.stop_timeout,
        health_command,
        update,
        constraints: constraints.to_vec(),
        network: network_name(app),
        kind: PlanKind::Service,
        mounts,
    })
}

/// Plans database `db` of `app`: one task, pinned by `constraints` (required: the volume is
/// on one node), its credentials from Swarm secrets (`POSTGRES_PASSWORD_FILE`, the official
/// images' convention), its health command as Swarm's check.
pub fn plan_database(
    app: &str,
    db: &DatabaseConfig,
    constraints: &[String],
) -> Result<ServicePlan, PlanError> {
    if constraints.is_empty() {
        return Err(PlanError::UnpinnedDatabase {
            database: db.name.clone(),
        });
    }
    let container_env = db.container_env();
    let (mut env, secrets) = split_env(&db.name, container_env.iter())?;
    // Empty credentials are the image's defaults, not values.
    env.retain(|_, v| !v.is_empty());
    let mounts = volume_mounts(app, &db.name, &db.mounts())?;
    let health_command = db.health.command.as_ref().map(|command| HealthCommand {
        test: health_test(command),
        interval: db.health.interval,
        timeout: db.health.timeout,
        retries: db.health.unhealthy_threshold,
        start_period: db.health.start_period,
    });
    Ok(ServicePlan {
        name: format!("{app}-{}", db.name),
        app: app.to_string(),
        service: db.name.clone(),
        // A database's tasks carry no release: a deploy that leaves its table alone leaves
        // its task alone.
        release: String::new(),
        image: db.image.clone(),
        replicas: 1,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        secrets,
        command: db.command.clone(),
        entrypoint: None,
        user: None,
        init: false,
        memory_limit: db.memory_limit,
        cpus: db.cpus,
        restart: RestartPolicy::Always,
        stop_grace: Duration::from_secs(30),
        health_command,
        update: UpdatePolicy {
            monitor: Duration::from_secs(5),
            ..UpdatePolicy::default()
        },
        constraints: constraints.to_vec(),
        network: network_name(app),
        kind: PlanKind::Database,
        mounts,
    })
}

/// A health command as Swarm's `test`.
fn health_test(command: &dockhand_config::CommandLine) -> Vec<String> {
    match command {
        dockhand_config::CommandLine::Shell(line) => vec!["CMD-SHELL".into(), line.clone()],
        dockhand_config::CommandLine::Exec(argv) => std::iter::once("CMD".to_string())
            .chain(argv.iter().cloned())
            .collect(),
    }
}

/// The env of `owner` without its secrets, and the secrets as files (`NAME_FILE` in the env).
fn split_env<'a>(
    owner: &str,
    vars: impl Iterator<Item = (&'a String, &'a dockhand_config::EnvValue)>,
) -> Result<(BTreeMap<String, String>, Vec<SecretMount>), PlanError> {
    let mut env = BTreeMap::new();
    let mut secrets = Vec::new();
    for (name, value) in vars {
        let names = value.secret_names();
        if names.is_empty() {
            // No secret reference: the template's only escape is `$$`.
            env.insert(name.clone(), value.template().replace("$$", "$"));
            continue;
        }
        let whole = format!("${{secret.{}}}", names[0]);
        if names.len() != 1 || value.template() != whole {
            return Err(PlanError::EmbeddedSecret {
                service: owner.to_string(),
                env: name.clone(),
            });
        }
        let target = format!("/run/secrets/{}", names[0]);
        env.insert(format!("{name}_FILE"), target.clone());
        if !secrets.iter().any(|s: &SecretMount| s.secret == names[0]) {
            secrets.push(SecretMount {
                env: name.clone(),
                secret: names[0].clone(),
                target,
            });
        }
    }
    Ok((env, secrets))
}

/// The named volumes of `owner` (`<app>_<name>`); host paths are refused, tmpfs left out.
fn volume_mounts(app: &str, owner: &str, mounts: &[Mount]) -> Result<Vec<VolumeMount>, PlanError> {
    let mut out = Vec::new();
    for mount in mounts {
        match mount {
            Mount::Volume {
                name,
                target,
                read_only,
            } => out.push(VolumeMount {
                source: format!("{app}_{name}"),
                target: target.clone(),
                read_only: *read_only,
            }),
            Mount::Bind { source, .. } => {
                return Err(PlanError::BindMount {
                    service: owner.to_string(),
                    path: source.display().to_string(),
                })
            }
            Mount::Tmpfs { .. } => {}
        }
    }
    Ok(out)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl ServicePlan {
    /// The Engine API's spec; `secret_ids` maps each secret's name in the secrets file to the
    /// Swarm secret (id, name) holding its current value.
    pub fn to_spec(&self, secret_ids: &BTreeMap<String, (String, String)>) -> models::ServiceSpec {
        let mut labels: HashMap<String, String> = [
            ("dockhand.app", self.app.as_str()),
            ("dockhand.service", self.service.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match self.kind {
            PlanKind::Service => labels.insert("dockhand.release".into(), self.release.clone()),
            PlanKind::Database => labels.insert("dockhand.database".into(), self.service.clone()),
        };
        let mounts: Vec<models::Mount> = self
            .mounts
            .iter()
            .map(|m| models::Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.clone()),
                typ: Some(models::MountType::VOLUME),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let secrets = self
            .secrets
            .iter()
            .filter_map(|s| {
                let (id, name) = secret_ids.get(&s.secret)?;
                Some(models::TaskSpecContainerSpecSecrets {
                    file: Some(models::TaskSpecContainerSpecFile {
                        name: Some(s.secret.clone()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        // Readable by the task's user whoever it is; the file lives on the
                        // task's tmpfs only.
                        mode: Some(0o444),
                    }),
                    secret_id: Some(id.clone()),
                    secret_name: Some(name.clone()),
                })
            })
            .collect::<Vec<_>>();
        let container = models::TaskSpecContainerSpec {
            image: Some(self.image.clone()),
            labels: Some(labels.clone()),
            command: self.entrypoint.clone(),
            args: self.command.clone(),
            env: Some(self.env.clone()),
            user: self.user.clone(),
            init: Some(self.init),
            stop_grace_period: Some(nanos(self.stop_grace)),
            secrets: (!secrets.is_empty()).then_some(secrets),
            mounts: (!mounts.is_empty()).then_some(mounts),
            health_check: self.health_command.as_ref().map(|h| models::HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(nanos(h.interval)),
                timeout: Some(nanos(h.timeout)),
                retries: Some(i64::from(h.retries)),
                start_period: Some(nanos(h.start_period)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let condition = match self.restart {
            RestartPolicy::Always => models::TaskSpecRestartPolicyConditionEnum::ANY,
            RestartPolicy::OnFailure => models::TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartPolicy::Never => models::TaskSpecRestartPolicyConditionEnum::NONE,
        };
        let task = models::TaskSpec {
            container_spec: Some(container),
            resources: Some(models::TaskSpecResources {
                limits: Some(models::Limit {
                    memory_bytes: self.memory_limit.map(|m| m as i64),
                    nano_cpus: self.cpus.map(|c| (c * 1e9) as i64),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(models::TaskSpecRestartPolicy {
                condition: Some(condition),
                delay: Some(nanos(Duration::from_secs(1))),
                ..Default::default()
            }),
            placement: (!self.constraints.is_empty()).then(|| models::TaskSpecPlacement {
                constraints: Some(self.constraints.clone()),
                ..Default::default()
            }),
            networks: Some(vec![models::NetworkAttachmentConfig {
                target: Some(self.network.clone()),
                aliases: Some(vec![self.service.clone()]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let u = &self.update;
        let (order, rollback_order) = match self.kind {
            PlanKind::Service => (
                models::ServiceSpecUpdateConfigOrderEnum::START_FIRST,
                models::ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            ),
            PlanKind::Database => (
                models::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
                models::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            ),
        };
        models::ServiceSpec {
            name: Some(self.name.clone()),
            labels: Some(labels),
            task_template: Some(task),
            mode: Some(models::ServiceSpecMode {
                replicated: Some(models::ServiceSpecModeReplicated {
                    replicas: Some(i64::from(self.replicas)),
                }),
                ..Default::default()
            }),
            update_config: Some(models::ServiceSpecUpdateConfig {
                parallelism: Some(i64::from(u.parallelism)),
                delay: Some(nanos(u.delay)),
                failure_action: Some(models::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                monitor: Some(nanos(u.monitor)),
                max_failure_ratio: Some(0.0),
                order: Some(order),
            }),
            rollback_config: Some(models::ServiceSpecRollbackConfig {
                parallelism: Some(i64::from(u.parallelism)),
                delay: Some(0),
                failure_action: Some(models::ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
                monitor: Some(nanos(u.monitor)),
                max_failure_ratio: Some(0.0),
                order: Some(rollback_order),
            }),
            endpoint_spec: Some(models::EndpointSpec {
                mode: Some(models::EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(toml: &str) -> ServiceConfig {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        std::fs::write(&secrets, "db_password=hunter2\npw=hunter3\n").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!("app = \"shop\"\n{toml}");
        let loaded = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            &text,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        loaded.config.services["web"].clone()
    }

    #[test]
    fn a_container_service_becomes_a_start_first_dnsrr_service_that_rolls_back() {
        let web = service(
            "[services.web]\nimage = \"shop:1\"\nport = 8080\nreplicas = 3\nmemory = \"256MB\"\n\
             cpus = 0.5\nenv = { GREETING = \"cost $$5\", DB_PASSWORD = \"${secret.db_password}\" }\n\
             health = { path = \"/health\", interval = \"2s\", unhealthy_threshold = 4 }\n",
        );
        let plan = plan_service(
            "shop",
            &web,
            "7",
            "shop:1",
            &["node.labels.web == yes".to_string()],
        )
        .unwrap();
        assert_eq!(plan.name, "shop-web");
        assert_eq!(plan.replicas, 3);
        assert_eq!(
            plan.env,
            [
                "DB_PASSWORD_FILE=/run/secrets/db_password",
                "DOCKHAND_APP=shop",
                "DOCKHAND_RELEASE=7",
                "DOCKHAND_SERVICE=web",
                "GREETING=cost $5",
                "PORT=8080",
            ]
        );
        assert_eq!(
            plan.secrets,
            [SecretMount {
                env: "DB_PASSWORD".into(),
                secret: "db_password".into(),
                target: "/run/secrets/db_password".into(),
            }]
        );
        // Four failed checks two seconds apart fit in the monitor window.
        assert!(
            plan.update.monitor >= Duration::from_secs(8),
            "{:?}",
            plan.update
        );

        let ids = BTreeMap::from([(
            "db_password".to_string(),
            ("sid1".to_string(), "shop-db_password-abc".to_string()),
        )]);
        let spec = plan.to_spec(&ids);
        let update = spec.update_config.as_ref().unwrap();
        assert_eq!(
            update.order,
            Some(models::ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(
            update.failure_action,
            Some(models::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        assert_eq!(update.parallelism, Some(1));
        assert_eq!(
            spec.endpoint_spec.as_ref().unwrap().mode,
            Some(models::EndpointSpecModeEnum::DNSRR)
        );
        let task = spec.task_template.as_ref().unwrap();
        let limits = task.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits.memory_bytes, Some(256_000_000));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        assert_eq!(
            task.placement.as_ref().unwrap().constraints.as_deref(),
            Some(&["node.labels.web == yes".to_string()][..])
        );
        assert_eq!(
            task.networks.as_ref().unwrap()[0].target.as_deref(),
            Some("dockhand-shop")
        );
        let container = task.container_spec.as_ref().unwrap();
        let secret = &container.secrets.as_ref().unwrap()[0];
        assert_eq!(secret.secret_id.as_deref(), Some("sid1"));
        assert_eq!(
            secret.file.as_ref().unwrap().name.as_deref(),
            Some("db_password")
        );
        // No secret value anywhere in the spec (the plan never had one).
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
    }

    #[test]
    fn a_secret_inside_a_longer_value_is_refused_with_the_way_out() {
        let web = service(
            "[services.web]\nimage = \"shop:1\"\nenv = { URL = \"postgres://u:${secret.pw}@db/x\" }\n",
        );
        let err = plan_service("shop", &web, "1", "shop:1", &[]).unwrap_err();
        assert_eq!(
            err,
            PlanError::EmbeddedSecret {
                service: "web".into(),
                env: "URL".into()
            }
        );
        assert!(err.to_string().contains("URL_FILE"), "{err}");
    }

    fn database(toml: &str) -> DatabaseConfig {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        std::fs::write(&secrets, "pw=hunter3\n").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!("app = \"shop\"\n[services.web]\nimage = \"x\"\n{toml}");
        let loaded = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            &text,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        loaded.config.databases["db"].clone()
    }

    #[test]
    fn a_database_is_one_pinned_stop_first_task_on_its_volume_without_a_release() {
        let db = database(
            "[databases.db]\nengine = \"postgres\"\nuser = \"shop\"\npassword = \"${secret.pw}\"\n",
        );
        let pin = ["node.labels.db == main".to_string()];
        let plan = plan_database("shop", &db, &pin).unwrap();
        assert_eq!(plan.name, "shop-db");
        assert_eq!(plan.replicas, 1);
        assert_eq!(plan.kind, PlanKind::Database);
        assert!(
            plan.env
                .contains(&"POSTGRES_PASSWORD_FILE=/run/secrets/pw".to_string()),
            "{:?}",
            plan.env
        );
        assert!(
            plan.env.contains(&"POSTGRES_USER=shop".to_string()),
            "{:?}",
            plan.env
        );
        assert_eq!(plan.mounts[0].source, "shop_db-data");
        assert_eq!(plan.mounts[0].target, "/var/lib/postgresql/data");
        assert!(plan.health_command.is_some());
        let spec = plan.to_spec(&BTreeMap::new());
        let labels = spec.labels.as_ref().unwrap();
        assert!(!labels.contains_key("dockhand.release"), "{labels:?}");
        assert_eq!(labels["dockhand.database"], "db");
        assert_eq!(
            spec.update_config.as_ref().unwrap().order,
            Some(models::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        let mounts = spec
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap()
            .mounts
            .as_ref()
            .unwrap();
        assert_eq!(mounts[0].typ, Some(models::MountType::VOLUME));

        let err = plan_database("shop", &db, &[]).unwrap_err();
        assert_eq!(
            err,
            PlanError::UnpinnedDatabase {
                database: "db".into()
            }
        );
        assert!(
            err.help().contains("node.labels.db == yes"),
            "{}",
            err.help()
        );
    }

    #[test]
    fn a_process_service_cannot_run_on_a_cluster() {
        let web = service("[services.web]\ncommand = \"./server\"\n");
        assert!(matches!(
            plan_service("shop", &web, "1", "x", &[]),
            Err(PlanError::NotAContainer { .. })
        ));
    }
}
