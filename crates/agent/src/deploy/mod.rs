//! Deploys, reloads, rollbacks and the restart of the committed release when the agent
//! starts — one path for all of them: commit what is wanted to the state database, observe
//! what is there, compute the plan (`plan.rs`, pure), execute it (`execute.rs`).
//!
//! [`Deployer`] holds the narrow handles a deploy acts through; it is the only code that
//! starts or stops instances of a release.

pub mod canary;
mod execute;
pub(crate) mod failpoint;
mod gate;
mod hooks;
mod instances;
pub mod plan;
#[cfg(test)]
mod tests;
pub mod timing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dockhand_config::{AppConfig, Secrets};
use dockhand_proxy::ProxyHandle;
use dockhand_state::{ReleaseStatus, Store};

use crate::containers;
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::prober::Prober;
use crate::runtimes::Runtimes;
use crate::Sink;

pub use failpoint::Failpoint;
pub use instances::{runtime_restart, service_env, stop_all};
pub use plan::DeployKind;
use plan::{DatabaseSeen, Observed, Target, Unfinished};
use timing::{Timed, Timing};

/// What a deploy acts through. Cheap to clone.
#[derive(Clone)]
pub struct Deployer {
    pub layout: Arc<StateLayout>,
    pub store: Arc<Store>,
    pub events: Events,
    pub runtimes: Runtimes,
    pub proxy: ProxyHandle,
    pub fleet: Fleet,
    pub prober: Prober,
    pub failpoint: Option<Failpoint>,
    /// The monitor's figures, which a canary is judged by (`None`: canaries deploy at once).
    pub monitor: Option<crate::monitor::MonitorHandle>,
    /// The canary in progress, for `status`.
    pub canary: canary::CanaryStatus,
    /// The update webhook's loopback backend, routed when `[update] webhook` is set.
    pub webhook: Option<Arc<dockhand_proxy::Backend>>,
    /// The dashboard's loopback listener for the proxy, routed when `[dashboard] route` is
    /// set (bound at the agent's start).
    pub dashboard: Option<Arc<dockhand_proxy::Backend>>,
}

/// How a deploy, reload, rollback or restart ended.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    pub release: i64,
    pub deployment: i64,
    pub kind: DeployKind,
    pub succeeded: bool,
    pub message: String,
    pub duration: Duration,
    /// Why the gate failed, per instance, when it did.
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    /// What the canary step measured, when the plan had one.
    pub canary: Option<canary::CanaryReport>,
    /// Each step run, in order, with how long it took (within `duration`).
    pub steps: Vec<Timing>,
}

/// Why one instance (or hook) stopped a deploy.
#[derive(Debug, Clone)]
pub struct Failure {
    pub service: String,
    /// Empty for a hook.
    pub instance: String,
    pub reason: String,
    /// The last health probe results, newest last.
    pub last_probes: Vec<String>,
    /// The instance's last log lines (redacted).
    pub last_logs: Vec<String>,
}

impl Deployer {
    /// Deploys `config` as a new release (`kind` is `Deploy` or `Reload`).
    pub async fn deploy_new(
        &self,
        config: AppConfig,
        kind: DeployKind,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        self.deploy_prebuilt(config, kind, requested_by, &BTreeMap::new(), sink)
            .await
    }

    /// [`Deployer::deploy_new`] with images built elsewhere (by service) standing in for
    /// the builds.
    pub async fn deploy_prebuilt(
        &self,
        config: AppConfig,
        kind: DeployKind,
        requested_by: &str,
        prebuilt: &BTreeMap<String, String>,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        let begun = Instant::now();
        let config_json = config_json(&config);
        // The code is copied before anything is committed: a copy that fails (a full disk)
        // stops the deploy like a configuration error.
        let code = if crate::snapshot::needed(&config) {
            let pending = self
                .layout
                .releases_dir()
                .join(format!("pending-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&pending);
            let revision = crate::snapshot::take(&config, &self.layout, &pending).await?;
            Some((revision, Some(pending)))
        } else if crate::snapshot::has_process_services(&config) {
            Some((
                crate::snapshot::revision(&config, &self.layout).await?,
                None,
            ))
        } else {
            None
        };
        // The release's code is what a process service builds: copied, or its revision read.
        let before = match &code {
            Some(_) => vec![Timing::since(Timed::Build, None, begun)],
            None => Vec::new(),
        };
        let (release, deployment) =
            self.store
                .begin_deploy(&config_json, requested_by, kind.note())?;
        if let Some((revision, pending)) = code {
            let dest = self.layout.release_src(release);
            let moved = match &pending {
                Some(pending) => {
                    let _ = std::fs::remove_dir_all(&dest);
                    std::fs::rename(pending, &dest)
                }
                None => Ok(()),
            };
            match moved {
                Ok(()) => self.store.set_release_revision(
                    release,
                    &revision.id,
                    revision.author.as_deref().unwrap_or(""),
                    revision.message.as_deref().unwrap_or(""),
                )?,
                Err(e) => {
                    if let Some(pending) = &pending {
                        let _ = std::fs::remove_dir_all(pending);
                    }
                    self.events.warn(
                        EventKind::Deploy,
                        Some(release),
                        None,
                        &format!("the release's code could not be kept ({e}); its process services run from the project directory"),
                    );
                }
            }
        }
        self.events.info(
            EventKind::Deploy,
            Some(release),
            None,
            &format!("deploy of release {release} started by {requested_by}"),
        );
        let target = Target {
            kind,
            release,
            deployment,
            config: &config,
            prebuilt,
        };
        Ok(self.run(target, (begun, before), sink).await)
    }

    /// Returns to a retained release (default: the one before the current) through the same
    /// gate.
    pub async fn rollback(
        &self,
        to: Option<i64>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        let begun = Instant::now();
        let release = match to {
            Some(id) => self.store.release(id)?.ok_or_else(|| {
                AgentError::not_found(format!(
                    "release {id} does not exist; `dockhand releases` lists them"
                ))
            })?,
            None => self.store.previous_release()?.ok_or_else(|| {
                AgentError::not_found("there is no earlier release to roll back to")
            })?,
        };
        match release.status {
            ReleaseStatus::Current => {
                return Err(AgentError::usage(format!(
                    "release {} is already the current release",
                    release.id
                )))
            }
            ReleaseStatus::Pruned | ReleaseStatus::Pending => {
                return Err(AgentError::not_found(format!(
                    "release {} is {} and cannot be rolled back to; `dockhand releases` lists the retained ones",
                    release.id,
                    release.status.as_str()
                )))
            }
            ReleaseStatus::Retired | ReleaseStatus::Failed => {}
        }
        let config = release_config(release.id, &release.config)?;
        let deployment = self.store.begin_rollback(release.id, requested_by)?;
        self.events.info(
            EventKind::Rollback,
            Some(release.id),
            None,
            &format!(
                "rollback to release {} started by {requested_by}",
                release.id
            ),
        );
        let none = BTreeMap::new();
        let target = Target {
            kind: DeployKind::Rollback,
            release: release.id,
            deployment,
            config: &config,
            prebuilt: &none,
        };
        Ok(self.run(target, (begun, Vec::new()), sink).await)
    }

    /// At agent start: records what a previous run left unfinished as such, removes its
    /// leftover processes and containers, and starts the committed release (if any), routing
    /// to each instance as soon as it passes its health check. An error leaves the agent up
    /// (with nothing serving) so that a fixed configuration can be deployed.
    /// Takes the app down for a restore: every route answers 503 (a route without a
    /// backend), then every instance stops. `restart` brings the committed release back.
    /// The minimal maintenance mode of restores; the edge's maintenance page replaces the
    /// empty routes when it lands.
    pub async fn stop_for_maintenance(&self) {
        if let Some(config) = self.fleet.serving_config() {
            // Without secrets a route with basic auth cannot be built: then no route at all
            // (404) rather than keep serving the app being restored.
            let table = crate::routes::build_table(
                &config,
                &self.route_backends(&[]),
                &Default::default(),
                &Secrets::empty(),
            )
            .unwrap_or_else(|_| dockhand_proxy::RouteTable::empty());
            self.proxy.set_routes(table);
        }
        let all = self.fleet.take_all();
        stop_all(&self.prober, &all).await;
        for inst in &all {
            let _ = self.store.remove_instance(&inst.id);
        }
    }

    /// The backends of each routed service among `instances`, and the update webhook's.
    pub(crate) fn route_backends(
        &self,
        instances: &[crate::fleet::LiveInstance],
    ) -> std::collections::BTreeMap<String, Vec<Arc<dockhand_proxy::Backend>>> {
        let mut map = crate::fleet::backends_by_service(instances);
        if let Some(b) = self.monitor.as_ref().and_then(|m| m.route_backend()) {
            map.insert(crate::routes::METRICS_SERVICE.into(), vec![b]);
        }
        if let Some(hook) = &self.webhook {
            map.insert(
                crate::update::webhook::ROUTE_NAME.to_string(),
                vec![hook.clone()],
            );
        }
        if let Some(b) = &self.dashboard {
            map.insert(crate::routes::DASHBOARD_SERVICE.into(), vec![b.clone()]);
        }
        map
    }

    pub async fn restart(&self, sink: Sink<'_>) -> Result<()> {
        let unfinished = Unfinished {
            pending: self
                .store
                .releases(usize::MAX)?
                .into_iter()
                .filter(|r| r.status == ReleaseStatus::Pending)
                .map(|r| r.id)
                .collect(),
            instances: self.store.instances()?.into_iter().map(|i| i.id).collect(),
        };
        let committed = match self.store.current_release()? {
            Some(r) => Some((r.id, release_config(r.id, &r.config)?)),
            None => None,
        };
        // Without its secrets the release cannot start: only clean up, then say why.
        let (start, secrets, problem) = match committed {
            Some((id, config)) => match crate::secrets::load(&config, self.events.redactor()) {
                Ok(secrets) => (Some((id, config)), secrets, None),
                Err(e) => (None, Secrets::empty(), Some((id, e))),
            },
            None => (None, Secrets::empty(), None),
        };
        let mut observed = match &start {
            // An engine that does not answer fails the database step with its own error.
            Some((_, config)) => self.observe(config, &secrets).await.unwrap_or_default(),
            None => Observed::default(),
        };
        observed.unfinished = unfinished;
        let plan = plan::plan_restart(start.as_ref().map(|(id, c)| (*id, c)), &observed);
        let outcome = execute::Execution::new(self, start.as_ref().map(|(_, c)| c), &secrets, sink)
            .run(&plan)
            .await;
        if let Some((release, e)) = problem {
            let message = format!("could not start release {release}: {e}");
            self.events
                .error(EventKind::Restore, Some(release), None, &message);
            return Err(e.map_message(|_| message));
        }
        if !outcome.succeeded {
            return Err(AgentError::runtime(outcome.message));
        }
        if let Some((release, _)) = start {
            self.events.info(
                EventKind::Restore,
                Some(release),
                None,
                &format!("release {release} restarted after agent start"),
            );
        }
        Ok(())
    }

    /// Observes, plans and executes `target`, whose deployment is already recorded; `begun`:
    /// when the operation began and what it timed before.
    async fn run(
        &self,
        target: Target<'_>,
        begun: (Instant, Vec<Timing>),
        sink: Sink<'_>,
    ) -> DeployOutcome {
        let prepared = async {
            let secrets = crate::secrets::load(target.config, self.events.redactor())?;
            let observed = self.observe(target.config, &secrets).await?;
            Ok::<_, AgentError>((secrets, plan::plan(target, &observed)))
        }
        .await;
        match prepared {
            Ok((secrets, plan)) => {
                execute::Execution::new(self, Some(target.config), &secrets, sink)
                    .begun(begun.0, begun.1)
                    .run(&plan)
                    .await
            }
            Err(e) => {
                let plan = plan::Plan {
                    kind: target.kind,
                    release: target.release,
                    deployment: target.deployment,
                    steps: Vec::new(),
                    warnings: Vec::new(),
                };
                execute::Execution::new(self, Some(target.config), &Secrets::empty(), sink)
                    .begun(begun.0, begun.1)
                    .abort(&plan, e.message().to_string())
                    .await
            }
        }
    }

    /// What the planner needs to know: the serving release, and the wanted databases as the
    /// Docker Engine has them.
    async fn observe(&self, config: &AppConfig, secrets: &Secrets) -> Result<Observed> {
        let mut observed = Observed {
            serving: self.fleet.observe(),
            ..Observed::default()
        };
        if config.databases.is_empty() {
            return Ok(observed);
        }
        let rt = self.runtimes.containers().await?;
        for db in config.databases.values() {
            let spec = containers::databases::spec(
                config,
                db,
                secrets,
                &self.layout.database_log(&db.name),
            )?;
            let seen = match rt.find_database(&config.app, &db.name).await? {
                None => DatabaseSeen::Missing,
                Some(found) => {
                    let current = found.labels.get(dockhand_runtime::LABEL_SPEC_HASH)
                        == Some(&dockhand_runtime::database_spec_hash(&spec));
                    if found.running {
                        DatabaseSeen::Running { current }
                    } else {
                        DatabaseSeen::Stopped { current }
                    }
                }
            };
            observed.databases.insert(db.name.clone(), seen);
        }
        Ok(observed)
    }
}

/// The configuration stored with a release.
fn release_config(release: i64, json: &str) -> Result<AppConfig> {
    serde_json::from_str(json).map_err(|e| {
        AgentError::internal(format!(
            "release {release} in the state database is unreadable: {e}"
        ))
    })
}

/// A configuration as stored with its release (and compared by `reload`).
pub fn config_json(config: &AppConfig) -> String {
    serde_json::to_string(config).unwrap_or_default()
}
