//! Long-lived database containers: their spec (with secrets resolved), making one run and be
//! ready before any service starts, recreating one for `dockhand db upgrade`, and what
//! `status` says about them.

use std::path::Path;
use std::time::Duration;

use dockhand_api::Progress;
use dockhand_config::{AppConfig, DatabaseConfig, Secrets};
use dockhand_runtime::{
    ContainerKind, ContainerRuntime, ContainerSpec, ImageSource, PublishedPort,
};

use crate::deploy::plan::DatabaseAction;
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::layout::StateLayout;
use crate::runtimes::Runtimes;
use crate::Sink;

/// How long a database gets to stop before SIGKILL (`db upgrade`).
const DATABASE_STOP_GRACE: Duration = Duration::from_secs(30);

/// The spec of a database container, with its secrets resolved.
pub fn spec(
    config: &AppConfig,
    db: &DatabaseConfig,
    secrets: &Secrets,
    log_path: &Path,
) -> Result<ContainerSpec> {
    let mut spec = ContainerSpec::new(
        &config.app,
        &db.name,
        &db.name,
        ContainerKind::Database,
        &db.image,
    );
    let mut env = Vec::new();
    for (k, v) in db.container_env() {
        let value = v
            .resolve(secrets)
            .map_err(|e| AgentError::runtime(format!("database `{}`: {e}", db.name)))?;
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
    spec.mounts = super::mounts(&db.mounts());
    spec.memory_limit = db.memory_limit;
    spec.cpus = db.cpus;
    spec.shm_size = db.shm_size;
    spec.stop_grace = DATABASE_STOP_GRACE;
    spec.log_path = Some(log_path.to_path_buf());
    Ok(spec)
}

/// What making a database run acts through.
pub struct Ops<'a> {
    pub rt: &'a ContainerRuntime,
    pub runtimes: &'a Runtimes,
    pub layout: &'a StateLayout,
    pub events: &'a Events,
    pub sink: Sink<'a>,
}

impl Ops<'_> {
    /// Makes `db` run (created, started, kept, or recreated from its new table) and waits
    /// until its health command passes. Returns warnings.
    pub async fn ensure(
        &self,
        config: &AppConfig,
        db: &DatabaseConfig,
        secrets: &Secrets,
        action: DatabaseAction,
    ) -> Result<Vec<String>> {
        let redact = |m: String| self.events.redactor().redact(&m);
        self.rt.ensure_network(&config.app).await?;
        let spec = spec(config, db, secrets, &self.layout.database_log(&db.name))?;
        let ensured = self
            .rt
            .ensure_image(
                &ImageSource::Reference {
                    image: db.image.clone(),
                    pull: super::pull_policy(db.pull),
                },
                |line: &str| {
                    if !line.trim().is_empty() {
                        self.say(&db.name, line.trim().to_string(), "image")
                    }
                },
            )
            .await
            .map_err(|e| AgentError::from(e).context(format_args!("database `{}`", db.name)))?;
        let state = if action == DatabaseAction::Recreate {
            self.say(
                &db.name,
                format!(
                    "recreating database `{}` from its new settings (the data volume stays)",
                    db.name
                ),
                "database",
            );
            self.rt.recreate_database(&spec).await
        } else {
            self.rt.ensure_database(&spec).await
        }
        .map_err(|e| {
            AgentError::from(e).map_message(|m| redact(format!("database `{}`: {m}", db.name)))
        })?;
        if state.created {
            self.say(
                &db.name,
                format!("database `{}` created ({})", db.name, db.image),
                "database",
            );
            self.events.info(
                EventKind::Database,
                None,
                Some(&db.name),
                &format!("database `{}` created from {}", db.name, db.image),
            );
        }
        self.runtimes.follow_database(
            self.rt,
            &db.name,
            &state.id,
            &self.layout.database_log(&db.name),
        );
        self.wait_ready(db, &state.id).await?;
        Ok(ensured.warnings)
    }

    fn say(&self, db: &str, message: String, step: &str) {
        (self.sink)(Progress {
            step: step.into(),
            message,
            service: Some(db.to_string()),
        })
    }

    /// Runs the database's health command until it passes or its deploy timeout ends.
    async fn wait_ready(&self, db: &DatabaseConfig, container: &str) -> Result<()> {
        let Some(command) = db.health.command.as_ref() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + db.health.deploy_timeout;
        let mut said = false;
        loop {
            let last = match self
                .rt
                .exec(container, command.argv(), Vec::new(), db.health.timeout)
                .await
            {
                Ok(out) if out.exit_code == Some(0) => {
                    if said {
                        self.say(
                            &db.name,
                            format!("database `{}` is ready", db.name),
                            "database",
                        );
                    }
                    return Ok(());
                }
                Ok(out) => format!(
                    "`{}` {}{}",
                    command.display(),
                    match (out.timed_out, out.exit_code) {
                        (true, _) => "timed out".to_string(),
                        (false, Some(c)) => format!("exited with {c}"),
                        (false, None) => "was killed".to_string(),
                    },
                    last_line(&out.output)
                ),
                Err(e) => e.to_string(),
            };
            if !said {
                self.say(
                    &db.name,
                    format!("waiting for database `{}` to accept connections", db.name),
                    "database",
                );
                said = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AgentError::runtime(self.events.redactor().redact(&format!(
                    "database `{}` is not ready after {}: {last}; `dockhand logs {}` shows its output",
                    db.name,
                    crate::health::humanize(db.health.deploy_timeout),
                    db.name
                ))));
            }
            tokio::time::sleep(Duration::from_millis(500).min(db.health.interval)).await;
        }
    }
}

/// The database containers of `config`, as the Docker Engine sees them.
pub async fn status(runtimes: &Runtimes, config: &AppConfig) -> Vec<dockhand_api::DatabaseStatus> {
    if config.databases.is_empty() {
        return Vec::new();
    }
    let rt = runtimes.containers().await;
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
            Err(e) => status.problem = Some(e.to_string()),
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

fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}
