//! The executor: performs a [`Plan`]'s steps in order through the runtimes, the proxy, the
//! fleet and the state database, reporting progress as it goes.
//!
//! A failure before `commit` (or any failure of a restart) aborts: every instance this plan
//! started is stopped and removed, the deployment is recorded as failed, and the serving
//! release is untouched. After `commit` a failure is a warning: the release is live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockhand_api::Progress;
use dockhand_config::{AppConfig, Secrets};
use dockhand_proxy::RouteTable;
use dockhand_state::{DeploymentOutcome, Recovery};

use super::plan::{DeployKind, GateCheck, HookPhase, Plan, StaticPlan, Step, KEEP_RELEASES};
use super::timing::{Timed, Timing};
use super::{gate, hooks, instances, DeployOutcome, Deployer, Failure};
use crate::containers::{self, Images};
use crate::error::{AgentError, Result};
use crate::events::EventKind;
use crate::fleet::{ActiveRelease, LiveInstance};
use crate::runtimes::Runtimes;
use crate::{routes, statics, Sink};

/// One plan being executed.
pub(super) struct Execution<'a> {
    d: &'a Deployer,
    config: Option<&'a AppConfig>,
    secrets: &'a Secrets,
    sink: Sink<'a>,
    started_at: Instant,
    images: Images,
    /// The instances this plan started, in start order.
    new: Vec<LiveInstance>,
    /// The static services' sites of this release, loaded at their `static` step.
    sites: std::collections::BTreeMap<String, Arc<dockhand_proxy::StaticSite>>,
    /// Release directories of static files this plan staged (removed if it aborts).
    staged: bool,
    /// The routing table to the new instances, built at `commit`.
    table: Option<RouteTable>,
    /// The table that served before a canary split it (put back when the canary aborts).
    before_canary: Option<Arc<RouteTable>>,
    canary: Option<super::canary::CanaryReport>,
    committed: bool,
    announced: bool,
    network_ready: bool,
    recovery: Recovery,
    warnings: Vec<String>,
    failures: Vec<Failure>,
    /// Each step run so far with how long it took (and what ran before the plan).
    timings: Vec<Timing>,
}

impl<'a> Execution<'a> {
    /// `config`: the release's configuration (`None` when only cleaning up at start).
    pub fn new(
        d: &'a Deployer,
        config: Option<&'a AppConfig>,
        secrets: &'a Secrets,
        sink: Sink<'a>,
    ) -> Execution<'a> {
        Execution {
            d,
            config,
            secrets,
            sink,
            started_at: Instant::now(),
            images: Images::new(),
            new: Vec::new(),
            sites: Default::default(),
            staged: false,
            table: None,
            before_canary: None,
            canary: None,
            committed: false,
            announced: false,
            network_ready: false,
            recovery: Recovery::default(),
            warnings: Vec::new(),
            failures: Vec::new(),
            timings: Vec::new(),
        }
    }

    /// The deploy began at `at`, before the plan, with the steps `before` (the release's
    /// code): the outcome's duration and steps count them.
    pub fn begun(mut self, at: Instant, before: Vec<Timing>) -> Execution<'a> {
        self.started_at = at;
        self.timings = before;
        self
    }

    pub async fn run(mut self, plan: &Plan) -> DeployOutcome {
        self.warnings.extend(plan.warnings.iter().cloned());
        for step in &plan.steps {
            let since = Instant::now();
            let result = self.step(plan, step).await;
            self.timings.push(Timing::of_step(step, since));
            if let Err(e) = result {
                let message = self.d.events.redactor().redact(e.message());
                if !self.committed {
                    return self.abort(plan, message).await;
                }
                self.warnings.push(message);
            }
            if let Some(failpoint) = &self.d.failpoint {
                failpoint.after(plan, step);
            }
        }
        self.finish(plan)
    }

    async fn step(&mut self, plan: &Plan, step: &Step) -> Result<()> {
        match step {
            Step::Recover { .. } => {
                self.recovery = self.d.store.recover()?;
                Ok(())
            }
            Step::Reap { containers } => {
                self.reap(*containers).await;
                Ok(())
            }
            Step::Database { name, action } => {
                let config = self.config()?;
                let db = &config.databases[name];
                let rt = self.d.runtimes.containers().await?;
                let ops = containers::databases::Ops {
                    rt: &rt,
                    runtimes: &self.d.runtimes,
                    layout: &self.d.layout,
                    events: &self.d.events,
                    sink: self.sink,
                };
                let warnings = ops.ensure(config, db, self.secrets, *action).await?;
                self.warnings.extend(warnings);
                Ok(())
            }
            Step::Image { service, source } => {
                let config = self.config()?;
                let rt = self.d.runtimes.containers().await?;
                let (image, warnings) = containers::images::ensure(
                    &rt,
                    config,
                    &config.services[service],
                    source,
                    plan.release,
                    self.d.events.redactor(),
                    self.sink,
                )
                .await?;
                self.images.insert(service.clone(), image);
                self.warnings.extend(warnings);
                Ok(())
            }
            Step::Hook {
                service,
                phase,
                command,
            } => {
                let config = self.config()?;
                self.say(
                    "hook",
                    Some(service),
                    format!("{}: {command}", phase.as_str()),
                );
                if config.services[service].container.is_some() {
                    self.ensure_network(config).await?;
                }
                let ran = hooks::run(
                    self.d,
                    config,
                    &config.services[service],
                    command,
                    *phase,
                    plan.release,
                    self.images.get(service).map(String::as_str),
                    self.secrets,
                )
                .await;
                if let (Err(e), HookPhase::PreDeploy) = (&ran, phase) {
                    self.failures.push(Failure {
                        service: service.clone(),
                        instance: String::new(),
                        reason: self.d.events.redactor().redact(e.message()),
                        last_probes: Vec::new(),
                        last_logs: Vec::new(),
                    });
                }
                ran
            }
            Step::Static { service, source } => self.stage(plan, service, source).await,
            Step::Start { service, instances } => self.start(plan, service, instances).await,
            Step::Gate { checks } => self.gate(plan, checks).await,
            Step::Canary {
                serving,
                services,
                canary,
            } => self.canary(plan, *serving, services, canary).await,
            Step::Commit => {
                let config = self.config()?;
                let table =
                    routes::build_table(config, &self.backends(), &self.sites, self.secrets)
                        .map_err(|e| AgentError::runtime(format!("routing table: {e}")))?;
                self.d
                    .store
                    .finish_deployment(plan.deployment, DeploymentOutcome::Succeeded, "serving")
                    .map_err(|e| {
                        // Without the record a restart would not know this release: do not serve it.
                        AgentError::environment(format!(
                            "could not record release {} as current in the state database ({e}); is the disk full?",
                            plan.release
                        ))
                    })?;
                self.table = Some(table);
                self.committed = true;
                Ok(())
            }
            Step::Swap => {
                let config = self.config()?;
                let table = match self.table.take() {
                    Some(t) => t,
                    None => {
                        routes::build_table(config, &self.backends(), &self.sites, self.secrets)
                            .map_err(|e| {
                                AgentError::internal(format!(
                                    "routing table of release {}: {e}",
                                    plan.release
                                ))
                            })?
                    }
                };
                let old_table = self.d.proxy.set_routes(table);
                self.d.fleet.serve(ActiveRelease {
                    id: plan.release,
                    config: Arc::new(config.clone()),
                    instances: self.new.clone(),
                });
                drop(old_table);
                if plan.kind != DeployKind::Restart {
                    self.say(
                        "swap",
                        None,
                        format!("release {} now serves all traffic", plan.release),
                    );
                }
                Ok(())
            }
            Step::Drain {
                release,
                instances,
                timeout,
            } => {
                let backends: Vec<_> = self
                    .d
                    .fleet
                    .get(instances)
                    .into_iter()
                    .filter_map(|i| i.backend)
                    .collect();
                self.say(
                    "drain",
                    None,
                    format!(
                        "draining release {release} (up to {})",
                        crate::health::humanize(*timeout)
                    ),
                );
                let outcome = self.d.proxy.drain(&backends, *timeout).await;
                if !outcome.idle {
                    self.warnings.push(format!(
                        "{} request(s) or connection(s) to release {release} were still open after the drain timeout",
                        outcome.remaining
                    ));
                }
                Ok(())
            }
            Step::Stop { release, instances } => {
                self.say("stop", None, format!("stopping release {release}"));
                let old = self.d.fleet.get(instances);
                instances::retire(self.d, &old).await;
                Ok(())
            }
            Step::Prune => {
                self.prune().await;
                Ok(())
            }
        }
    }

    /// The release's configuration; a plan that needs it was made with it.
    fn config(&self) -> Result<&'a AppConfig> {
        self.config
            .ok_or_else(|| AgentError::internal("a step of a clean-up plan needs a configuration"))
    }

    fn say(&self, step: &str, service: Option<&str>, message: String) {
        (self.sink)(Progress {
            step: step.into(),
            message: self.d.events.redactor().redact(&message),
            service: service.map(str::to_string),
        })
    }

    /// Kills what a previous run of this agent left running.
    async fn reap(&mut self, containers: bool) {
        let reaped = dockhand_runtime::reap_orphans(self.d.runtimes.agent_id());
        let r = self.recovery;
        if r.aborted_deployments > 0 || r.failed_releases > 0 || !reaped.is_empty() {
            self.d.events.warn(
                EventKind::Recovery,
                None,
                None,
                &format!(
                    "recovered from an unclean stop: {} deployment(s) aborted, {} release(s) marked failed, {} leftover process(es) killed",
                    r.aborted_deployments, r.failed_releases, reaped.len()
                ),
            );
        }
        if !containers && !Runtimes::docker_socket_exists() {
            return;
        }
        let rt = match self.d.runtimes.containers().await {
            Ok(rt) => rt,
            Err(e) => {
                if containers {
                    tracing::warn!("{e}");
                }
                return;
            }
        };
        match rt.remove_orphans().await {
            Ok(removed) if !removed.is_empty() => self.d.events.warn(
                EventKind::Recovery,
                None,
                None,
                &format!(
                    "removed {} container(s) left by the previous run: {}",
                    removed.len(),
                    removed.join(", ")
                ),
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not look for leftover containers: {e}"),
        }
    }

    async fn start(&mut self, plan: &Plan, service: &str, ids: &[String]) -> Result<()> {
        let config = self.config()?;
        if !self.announced {
            self.announced = true;
            self.say(
                "start",
                None,
                match self.d.fleet.serving_release() {
                    Some(current) => {
                        format!("starting release {} beside release {current}", plan.release)
                    }
                    None => format!("starting release {}", plan.release),
                },
            );
            if config.services.values().any(|s| s.container.is_some()) {
                self.ensure_network(config).await?;
            }
        }
        let svc = &config.services[service];
        for (index, id) in ids.iter().enumerate() {
            let inst = instances::start(
                self.d,
                config,
                svc,
                plan,
                index as u32,
                id,
                self.secrets,
                self.images.get(service).map(String::as_str),
            )
            .await?;
            self.say(
                "start",
                Some(service),
                format!(
                    "{} started (pid {}{})",
                    inst.id,
                    inst.instance
                        .pid()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    inst.port.map(|p| format!(", port {p}")).unwrap_or_default()
                ),
            );
            self.new.push(inst);
        }
        Ok(())
    }

    /// A static service's files for the release: copied (a new release) and indexed.
    async fn stage(&mut self, plan: &Plan, service: &str, source: &StaticPlan) -> Result<()> {
        let config = self.config()?;
        let svc = &config.services[service];
        let Some(site_config) = &svc.static_site else {
            return Err(AgentError::internal(format!(
                "a static step for service `{service}`, which has no `static`"
            )));
        };
        let layout = &self.d.layout;
        match source {
            StaticPlan::CopyDir(dir) => {
                self.staged = true;
                self.say(
                    "static",
                    Some(service),
                    format!("copying {}", dir.display()),
                );
                let staged = statics::stage_dir(layout, service, plan.release, dir).await?;
                if !staged.skipped.is_empty() {
                    self.warnings.push(format!(
                        "service `{service}`: {} symlink(s) leading outside {} are not served: {}",
                        staged.skipped.len(),
                        dir.display(),
                        staged.skipped.join(", ")
                    ));
                }
            }
            StaticPlan::CopyFromImage(path) => {
                self.staged = true;
                let Some(image) = self.images.get(service).cloned() else {
                    return Err(AgentError::internal(format!(
                        "service `{service}` has no image to copy its static files from"
                    )));
                };
                self.say(
                    "static",
                    Some(service),
                    format!("copying {path} out of {image}"),
                );
                let rt = self.d.runtimes.containers().await?;
                let job = format!("static-r{}-{service}", plan.release);
                let spec = containers::job_spec(
                    config,
                    svc,
                    plan.release,
                    &job,
                    &image,
                    Vec::new(),
                    "true",
                    layout.hook_log(service, "static", plan.release),
                );
                let archive = layout
                    .static_release(service, plan.release)
                    .with_extension("tar");
                if let Some(parent) = archive.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        AgentError::environment(format!(
                            "could not create {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                rt.copy_from_image(spec, path, &archive, Duration::from_secs(600))
                    .await?;
                let staged =
                    statics::stage_archive(layout, service, plan.release, path, &archive).await?;
                if !staged.skipped.is_empty() {
                    self.warnings.push(format!(
                        "service `{service}`: {} symlink(s) leading outside {path} are not served: {}",
                        staged.skipped.len(),
                        staged.skipped.join(", ")
                    ));
                }
            }
            StaticPlan::Retained => {}
        }
        let site = statics::load(layout, service, plan.release, site_config).await?;
        self.say(
            "static",
            Some(service),
            format!("{} file(s) ready", site.len()),
        );
        self.sites.insert(service.to_string(), site);
        Ok(())
    }

    /// The app's Docker network, before the first container of the plan.
    async fn ensure_network(&mut self, config: &AppConfig) -> Result<()> {
        if !self.network_ready {
            let rt = self.d.runtimes.containers().await?;
            rt.ensure_network(&config.app).await?;
            self.network_ready = true;
        }
        Ok(())
    }

    /// Every new instance's gate at once; the first failure ends the others.
    async fn gate(&mut self, plan: &Plan, checks: &[GateCheck]) -> Result<()> {
        let mut services: Vec<&str> = checks.iter().map(|c| c.service.as_str()).collect();
        services.dedup();
        // The plan's last gate is the release's; an earlier one lets a dependent start.
        let last = plan
            .steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Gate { checks } => Some(checks),
                _ => None,
            })
            .is_some_and(|c| c.as_slice() == checks);
        let message = if last {
            "waiting for every new instance to pass its health check".to_string()
        } else {
            format!(
                "waiting for {} to pass its health check before starting what depends on it",
                services.join(", ")
            )
        };
        self.say("health", None, message);
        let mut gates = tokio::task::JoinSet::new();
        for check in checks {
            let Some(inst) = self.new.iter().find(|i| i.id == check.instance).cloned() else {
                return Err(AgentError::internal(format!(
                    "the gate of {} has no started instance",
                    check.instance
                )));
            };
            let check = check.clone();
            gates.spawn(async move {
                let r = gate::wait(&inst, &check).await;
                (inst, r)
            });
        }
        let mut failures = Vec::new();
        while let Some(joined) = gates.join_next().await {
            let (inst, result) = match joined {
                Ok(r) => r,
                // Gates aborted after the first failure.
                Err(e) if e.is_cancelled() => continue,
                Err(e) => return Err(AgentError::internal(e)),
            };
            match result {
                Ok(()) => self.say(
                    "health",
                    Some(&inst.service),
                    format!("{} is healthy", inst.id),
                ),
                Err(reason) => {
                    self.say(
                        "health",
                        Some(&inst.service),
                        format!("{} failed: {reason}", inst.id),
                    );
                    failures.push(gate::failure(&inst, reason, self.d.events.redactor()));
                    gates.abort_all();
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let message = format!(
            "release {} failed its health gate: {}",
            plan.release,
            failures
                .iter()
                .map(|f| format!("{} ({})", f.instance, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
        self.failures = failures;
        Err(AgentError::runtime(message))
    }

    /// The new instances' backends by service, with the monitor's metrics listener when the
    /// release publishes `/metrics` on a route.
    fn backends(&self) -> std::collections::BTreeMap<String, Vec<Arc<dockhand_proxy::Backend>>> {
        self.d.route_backends(&self.new)
    }

    /// The canary's steps; `Err` when it was aborted (the abort puts the old table back).
    async fn canary(
        &mut self,
        plan: &Plan,
        serving: i64,
        services: &[String],
        cfg: &dockhand_config::CanaryConfig,
    ) -> Result<()> {
        let Some(monitor) = self.d.monitor.clone() else {
            self.warnings.push(
                "the canary needs the monitor's figures, which this agent does not keep: deployed all at once".into(),
            );
            return Ok(());
        };
        let before = self.d.proxy.routes();
        self.before_canary = Some(before.clone());
        let mut report = super::canary::CanaryReport::default();
        let (sink, redactor) = (self.sink, self.d.events.redactor());
        let say = move |m: String| {
            sink(Progress {
                step: "canary".into(),
                message: redactor.redact(&m),
                service: None,
            })
        };
        let result = super::canary::run(
            self.d,
            &monitor,
            plan.release,
            serving,
            services,
            cfg,
            &self.new,
            &before,
            &mut report,
            &say,
        )
        .await;
        for stage in &report.stages {
            for (service, canary, _) in &stage.services {
                let requests = canary.map_or(0, |t| t.requests);
                if stage.failed.is_none() && requests < cfg.min_requests {
                    self.warnings.push(format!(
                        "{service}: only {requests} request(s) reached the canary at {}, fewer than min_requests ({}): that step was not judged",
                        dockhand_config::share_text(stage.share),
                        cfg.min_requests
                    ));
                }
            }
        }
        self.canary = Some(report);
        result.map_err(AgentError::runtime)
    }

    /// Sends every request back to the table that served before the canary, then waits
    /// until no request holds the canary's instances (they are stopped next).
    async fn undo_canary(&mut self) {
        let Some(before) = self.before_canary.take() else {
            return;
        };
        drop(self.d.proxy.set_routes(before.without_canaries()));
        let backends: Vec<_> = self.new.iter().filter_map(|i| i.backend.clone()).collect();
        let timeout = self
            .config
            .map_or(Duration::from_secs(30), |c| c.proxy.drain_timeout);
        let outcome = self.d.proxy.drain(&backends, timeout).await;
        if !outcome.idle {
            self.warnings.push(format!(
                "{} request(s) or connection(s) to the canary were still open after the drain timeout",
                outcome.remaining
            ));
        }
    }

    /// Releases, builds and log files beyond retention. Failures are logged: leftovers cost
    /// disk, not correctness.
    async fn prune(&self) {
        match self.d.store.prune_releases(KEEP_RELEASES) {
            Ok(pruned) => statics::remove(&self.d.layout, &pruned),
            Err(e) => tracing::warn!("could not prune old releases: {e}"),
        }
        if let Ok(keep) = self.d.store.retained_releases() {
            crate::snapshot::prune(&self.d.layout, &keep);
        }
        let Some(config) = self.config else { return };
        crate::logs::prune(&self.d.layout, &self.d.fleet.live_ids(), config);
        if config
            .services
            .values()
            .any(|s| s.container.as_ref().is_some_and(|c| c.build.is_some()))
        {
            if let Ok(rt) = self.d.runtimes.containers().await {
                containers::images::prune(&rt, &self.d.store, &config.app).await;
            }
        }
    }

    /// Stops what this plan started, records the failure and returns it. The serving
    /// release is untouched.
    pub async fn abort(mut self, plan: &Plan, message: String) -> DeployOutcome {
        let since = Instant::now();
        let message = self.d.events.redactor().redact(&message);
        if plan.kind == DeployKind::Restart {
            instances::retire(self.d, &self.new).await;
            self.timings.push(Timing::since(Timed::Abort, None, since));
            let message = format!("could not start release {}: {message}", plan.release);
            self.d
                .events
                .error(EventKind::Restore, Some(plan.release), None, &message);
            return self.outcome(plan, false, message);
        }
        self.say(
            "abort",
            None,
            format!(
                "stopping release {} — the current release keeps serving",
                plan.release
            ),
        );
        if self.before_canary.is_some() {
            self.say(
                "canary",
                None,
                format!(
                    "sending every request back to the serving release and draining release {}",
                    plan.release
                ),
            );
            self.undo_canary().await;
        }
        instances::retire(self.d, &self.new).await;
        if self.staged {
            statics::remove(&self.d.layout, &[plan.release]);
        }
        if let Err(e) =
            self.d
                .store
                .finish_deployment(plan.deployment, DeploymentOutcome::Failed, &message)
        {
            // The next agent start marks the deployment aborted; the current release is intact.
            tracing::error!("failed to record the failed deployment: {e}");
        }
        self.d
            .events
            .error(event_kind(plan.kind), Some(plan.release), None, &message);
        self.new.clear();
        self.timings.push(Timing::since(Timed::Abort, None, since));
        self.outcome(plan, false, message)
    }

    fn finish(self, plan: &Plan) -> DeployOutcome {
        if plan.kind == DeployKind::Restart {
            return self.outcome(plan, true, format!("release {} restarted", plan.release));
        }
        let took = self.started_at.elapsed();
        // Most deploys of a process app take tens of milliseconds: "0.0s" would say nothing.
        let took = if took < Duration::from_secs(1) {
            format!("{} ms", took.as_millis())
        } else {
            format!("{:.1} s", took.as_secs_f64())
        };
        let message = format!(
            "release {} is live ({} in {took})",
            plan.release,
            plan.kind.word()
        );
        let kind = event_kind(plan.kind);
        self.d.events.info(kind, Some(plan.release), None, &message);
        for w in &self.warnings {
            self.d.events.warn(kind, Some(plan.release), None, w);
        }
        self.outcome(plan, true, message)
    }

    fn outcome(self, plan: &Plan, succeeded: bool, message: String) -> DeployOutcome {
        DeployOutcome {
            release: plan.release,
            deployment: plan.deployment,
            kind: plan.kind,
            succeeded,
            message,
            duration: self.started_at.elapsed(),
            failures: self.failures,
            warnings: self.warnings,
            canary: self.canary,
            steps: self.timings,
        }
    }
}

fn event_kind(kind: DeployKind) -> EventKind {
    match kind {
        DeployKind::Deploy | DeployKind::Reload => EventKind::Deploy,
        DeployKind::Rollback => EventKind::Rollback,
        DeployKind::Restart => EventKind::Restore,
    }
}
