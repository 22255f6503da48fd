//! Tasks (`[tasks.NAME]`): commands run in a service's environment apart from its instances.
//! The `Tasks` subsystem follows the serving release through the event stream: it registers
//! each scheduled task on the [`Scheduler`] (and removes those no longer configured), and
//! runs each `once` task that has not yet succeeded — so a once task runs after the first
//! successful deploy and never again by itself, whatever deploys, rollbacks and restarts
//! follow (the record is in the state database, `tasks_once`). `dockhand run NAME` runs any
//! task now, its output streamed (a once task that ran only with `--force`); `dockhand run
//! SERVICE -- CMD` runs a one-off command. Every run is recorded (`task_runs`: trigger,
//! release, status, exit code, attempts, duration); a failed run is an error event.
//!
//! Overlap: with `overlap = "skip"` (the default) a run due while another run of the same
//! task is in progress is not started — refused on demand (a conflict), recorded as skipped
//! with a warning when scheduled. Retries run again after a failed attempt, each attempt
//! under the task's timeout.

mod run;
mod swarm;

pub use swarm::OnSwarm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockhand_api::{Frame, RunResult, TaskInfo, TaskRun, TasksReport};
use dockhand_config::{AppConfig, Overlap, TaskConfig, TaskWhen};
use dockhand_state::{Store, TaskRunRecord, TaskRunStatus, TaskTrigger};
use tokio::sync::mpsc;

use crate::deploy::Deployer;
use crate::error::{AgentError, ErrorKind, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::runtimes::Runtimes;
use crate::scheduler::{Job, Schedule, Scheduler};
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// Runs kept in the history per task.
const KEEP_RUNS: usize = 200;
/// Prefix of the scheduler jobs of tasks.
const JOB_PREFIX: &str = "task:";

/// The tasks subsystem and its handle (cheap to clone).
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    events: Events,
    runtimes: Runtimes,
    layout: Arc<StateLayout>,
    fleet: Fleet,
    scheduler: Scheduler,
    /// Runs in progress, by task.
    running: Mutex<BTreeMap<String, u32>>,
    /// The scheduler jobs registered for tasks.
    registered: Mutex<BTreeSet<String>>,
    /// A `[cluster]` app's watch-only agent: its scheduled tasks (the configuration it
    /// starts with) run as Swarm jobs.
    swarm: Option<(Arc<AppConfig>, OnSwarm)>,
}

/// What runs a task: the trigger, and for `dockhand run` where the output goes.
pub struct Trigger<'a> {
    pub kind: TaskTrigger,
    pub force: bool,
    pub stream: Option<&'a mpsc::UnboundedSender<Frame>>,
}

impl Tasks {
    pub fn new(d: &Deployer, scheduler: &Scheduler) -> Tasks {
        Tasks::build(d, scheduler, None)
    }

    /// The tasks of a `[cluster]` app's watch-only agent: those of `config` (no release of
    /// this host's), each run a Swarm job on the Engine of `on`.
    pub fn on_swarm(
        d: &Deployer,
        scheduler: &Scheduler,
        config: Arc<AppConfig>,
        on: OnSwarm,
    ) -> Tasks {
        Tasks::build(d, scheduler, Some((config, on)))
    }

    fn build(
        d: &Deployer,
        scheduler: &Scheduler,
        swarm: Option<(Arc<AppConfig>, OnSwarm)>,
    ) -> Tasks {
        Tasks {
            inner: Arc::new(Inner {
                store: d.store.clone(),
                events: d.events.clone(),
                runtimes: d.runtimes.clone(),
                layout: d.layout.clone(),
                fleet: d.fleet.clone(),
                scheduler: scheduler.clone(),
                running: Mutex::default(),
                registered: Mutex::default(),
                swarm,
            }),
        }
    }

    /// The configuration whose tasks run, and its release on this host (none on a swarm:
    /// a job runs the release the swarm serves).
    fn serving(&self) -> Option<(Arc<AppConfig>, Option<i64>)> {
        if let Some((config, _)) = &self.inner.swarm {
            return Some((config.clone(), None));
        }
        self.inner
            .fleet
            .with_serving(|s| s.map(|a| (a.config.clone(), Some(a.id))))
    }

    /// Follows the serving release: its scheduled tasks on the scheduler, its once tasks
    /// that never succeeded started.
    fn reconcile(&self) {
        let Some((config, release)) = self.serving() else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for task in config.tasks.values() {
            let TaskWhen::Schedule(expr) = &task.when else {
                continue;
            };
            let schedule = match Schedule::cron_local(expr) {
                Ok(s) => s,
                Err(e) => {
                    self.inner.events.error(
                        EventKind::Task,
                        release,
                        Some(&task.service),
                        &format!("task `{}` cannot be scheduled: {e}", task.name),
                    );
                    continue;
                }
            };
            let job = format!("{JOB_PREFIX}{}", task.name);
            let me = self.clone();
            let name = task.name.clone();
            self.inner.scheduler.add(Job {
                name: job.clone(),
                schedule,
                catch_up: false,
                timeout: Duration::from_secs(10),
                // Started, not awaited: the overlap policy decides about the next due run,
                // not the scheduler's one-run-at-a-time rule.
                run: Arc::new(move || {
                    let me = me.clone();
                    let name = name.clone();
                    Box::pin(async move {
                        let started = format!("started task `{name}`");
                        tokio::spawn(async move {
                            let trigger = Trigger {
                                kind: TaskTrigger::Schedule,
                                force: false,
                                stream: None,
                            };
                            if let Err(e) = me.run(&name, trigger).await {
                                tracing::warn!(task = %name, "scheduled run not started: {e}");
                            }
                        });
                        Ok(started)
                    })
                }),
            });
            wanted.insert(job);
        }
        let gone: Vec<String> = {
            let mut registered = self
                .inner
                .registered
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let gone = registered.difference(&wanted).cloned().collect();
            *registered = wanted;
            gone
        };
        for job in gone {
            self.inner.scheduler.remove(&job);
        }
        for task in config.tasks.values() {
            if task.when != TaskWhen::Once || self.running_count(&task.name) > 0 {
                continue;
            }
            match self.inner.store.task_once(&task.name) {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(task = %task.name, "cannot read the once record: {e}");
                    continue;
                }
            }
            let me = self.clone();
            let name = task.name.clone();
            tokio::spawn(async move {
                let trigger = Trigger {
                    kind: TaskTrigger::Once,
                    force: false,
                    stream: None,
                };
                if let Err(e) = me.run(&name, trigger).await {
                    tracing::warn!(task = %name, "once task not started: {e}");
                }
            });
        }
    }

    fn running_count(&self, task: &str) -> u32 {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .copied()
            .unwrap_or(0)
    }

    /// Runs the task `name` of the serving release and records the run.
    pub async fn run(&self, name: &str, trigger: Trigger<'_>) -> Result<RunResult> {
        let (config, release) = self.serving().ok_or_else(|| {
            AgentError::not_found("nothing is deployed yet; run `dockhand deploy` first")
        })?;
        let task = config.tasks.get(name).ok_or_else(|| {
            AgentError::not_found(if config.tasks.is_empty() {
                format!("no task `{name}`: dockhand.toml defines no [tasks]")
            } else {
                format!(
                    "no task `{name}`; tasks: {}",
                    config.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
        })?;
        let store = &self.inner.store;
        if trigger.kind == TaskTrigger::Manual && task.when == TaskWhen::Once && !trigger.force {
            if let Some(done) = store.task_once(name)? {
                return Err(AgentError::new(
                    ErrorKind::Conflict,
                    format!(
                        "task `{name}` runs once and already ran (run {}, {}); run it again with `dockhand run {name} --force`",
                        done.run_id, done.ran_at
                    ),
                ));
            }
        }
        let Some(_slot) = self.claim(task) else {
            let why = format!("task `{name}` is already running and its overlap policy is `skip`");
            if trigger.kind == TaskTrigger::Manual {
                return Err(AgentError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{why}; wait for it (`dockhand tasks {name}`), or set overlap = \"allow\""
                    ),
                ));
            }
            let id =
                store.begin_task_run(name, trigger.kind, release, TaskRunStatus::Skipped, &why)?;
            self.inner.events.warn(
                EventKind::Task,
                release,
                Some(&task.service),
                &format!(
                    "{} run of task `{name}` skipped: {why}",
                    trigger.kind.as_str()
                ),
            );
            let run = store
                .task_runs(Some(name), 1)?
                .into_iter()
                .find(|r| r.id == id);
            return Ok(RunResult {
                run: run.map(|r| self.wire_run(&r)),
                exit_code: None,
                timed_out: false,
            });
        };
        let id = store.begin_task_run(name, trigger.kind, release, TaskRunStatus::Running, "")?;
        let log = self.inner.layout.task_log(name, id);
        let started = Instant::now();
        let ended = match &self.inner.swarm {
            Some((_, on)) => {
                crate::secrets::learn_file(&config.secrets_file, self.inner.events.redactor());
                swarm::run(
                    on,
                    task,
                    id,
                    &log,
                    self.inner.events.redactor(),
                    trigger.stream,
                )
                .await
            }
            None => Ok(self
                .run_here(&config, release, task, &log, trigger.stream)
                .await),
        };
        let ended = ended.unwrap_or_else(|e| swarm::Ended {
            status: TaskRunStatus::Failed,
            exit_code: None,
            message: format!("could not run: {e}"),
            attempts: 1,
        });
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, exit_code, attempts) = (ended.status, ended.exit_code, ended.attempts);
        let message = ended.message;
        if status == TaskRunStatus::Skipped {
            // A run of it started elsewhere (the CLI) holds the swarm: recorded like a local
            // skip.
            self.inner.events.warn(
                EventKind::Task,
                release,
                Some(&task.service),
                &format!(
                    "{} run of task `{name}` skipped: {message}",
                    trigger.kind.as_str()
                ),
            );
        }
        let message = self.inner.events.redactor().redact(&message);
        store.finish_task_run(id, status, exit_code, attempts, duration_ms, &message)?;
        if status == TaskRunStatus::Succeeded && task.when == TaskWhen::Once {
            // A forced run counts as the once run too.
            store.mark_task_once(id)?;
        }
        let took = humantime::format_duration(Duration::from_millis(duration_ms));
        let tries = if attempts > 1 {
            format!(", {attempts} attempts")
        } else {
            String::new()
        };
        if status == TaskRunStatus::Succeeded {
            self.inner.events.info(
                EventKind::Task,
                release,
                Some(&task.service),
                &format!(
                    "task `{name}` succeeded ({} run {id}, {took}{tries})",
                    trigger.kind.as_str()
                ),
            );
        } else if status != TaskRunStatus::Skipped {
            self.inner.events.error(
                EventKind::Task,
                release,
                Some(&task.service),
                &format!(
                    "task `{name}` failed ({} run {id}{tries}): {message}; its output is in {}",
                    trigger.kind.as_str(),
                    log.display()
                ),
            );
        }
        let _ = store.prune_task_runs(KEEP_RUNS);
        let run = store
            .task_runs(Some(name), 20)?
            .into_iter()
            .find(|r| r.id == id);
        Ok(RunResult {
            run: run.map(|r| self.wire_run(&r)),
            exit_code,
            timed_out: status == TaskRunStatus::TimedOut,
        })
    }

    /// The attempts of `task` on this host, retried as configured.
    async fn run_here(
        &self,
        config: &AppConfig,
        release: Option<i64>,
        task: &TaskConfig,
        log: &std::path::Path,
        stream: Option<&mpsc::UnboundedSender<Frame>>,
    ) -> swarm::Ended {
        let Some(release) = release else {
            return swarm::Ended {
                status: TaskRunStatus::Failed,
                exit_code: None,
                message: "could not run: no release serves on this host".into(),
                attempts: 0,
            };
        };
        let attempts_allowed = task.retries + 1;
        let mut attempts = 0;
        let mut last = Err(AgentError::internal("no attempt was made"));
        while attempts < attempts_allowed {
            attempts += 1;
            last = self
                .execute(config, release, task, &task.command, log, stream)
                .await;
            match &last {
                Ok(out) if out.exit_code == Some(0) && !out.timed_out => break,
                _ if attempts < attempts_allowed => {
                    run::note(
                        log,
                        &format!("attempt {attempts} of {attempts_allowed} failed; trying again"),
                    );
                }
                _ => {}
            }
        }
        let (status, exit_code, message) = match &last {
            Ok(out) if out.timed_out => (
                TaskRunStatus::TimedOut,
                None,
                format!(
                    "timed out after {} and was killed",
                    humantime::format_duration(task.timeout)
                ),
            ),
            Ok(out) if out.exit_code == Some(0) => {
                (TaskRunStatus::Succeeded, Some(0), String::new())
            }
            Ok(out) => (
                TaskRunStatus::Failed,
                out.exit_code,
                format!(
                    "{}{}",
                    out.exit_code
                        .map(|c| format!("exit code {c}"))
                        .unwrap_or_else(|| "killed by a signal".into()),
                    last_line(&out.output)
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ),
            ),
            Err(e) => (TaskRunStatus::Failed, None, format!("could not run: {e}")),
        };
        swarm::Ended {
            status,
            exit_code,
            message,
            attempts,
        }
    }

    /// `dockhand run SERVICE -- CMD`: a one-off command in the service's environment (a new
    /// process, or a new container of the release's image), not recorded as a task run.
    pub async fn command(
        &self,
        service: &str,
        argv: &[String],
        requested_by: &str,
        stream: &mpsc::UnboundedSender<Frame>,
    ) -> Result<RunResult> {
        if argv.is_empty() {
            return Err(AgentError::usage(
                "no command given: use `dockhand run SERVICE -- COMMAND [ARGS…]`",
            ));
        }
        if self.inner.swarm.is_some() {
            return Err(AgentError::usage(
                "this app runs on the swarm: run the command from the project (`dockhand run SERVICE -- COMMAND` there makes it a Swarm job)",
            ));
        }
        let (config, Some(release)) = self.serving().ok_or_else(|| {
            AgentError::not_found("nothing is deployed yet; run `dockhand deploy` first")
        })?
        else {
            return Err(AgentError::not_found(
                "nothing is deployed yet; run `dockhand deploy` first",
            ));
        };
        let svc = config.services.get(service).ok_or_else(|| {
            AgentError::not_found(format!(
                "no service or task `{service}`; services: {}; tasks: {}",
                config
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if config.tasks.is_empty() {
                    "none".to_string()
                } else {
                    config.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))
        })?;
        let command = crate::exec::shell_join(argv);
        let task = TaskConfig {
            name: format!("run-{service}"),
            service: service.to_string(),
            command: command.clone(),
            when: TaskWhen::Manual,
            timeout: crate::exec::EXEC_TIMEOUT,
            retries: 0,
            overlap: Overlap::Allow,
        };
        let stamp = crate::clock::utc().format("%Y%m%dT%H%M%S%.3f").to_string();
        let log = self.inner.layout.command_log(&svc.name, &stamp);
        self.inner.events.info(
            EventKind::Task,
            Some(release),
            Some(service),
            &format!("one-off command in `{service}` requested by {requested_by}"),
        );
        let out = self
            .execute(&config, release, &task, &command, &log, Some(stream))
            .await?;
        Ok(RunResult {
            run: None,
            exit_code: out.exit_code,
            timed_out: out.timed_out,
        })
    }

    async fn execute(
        &self,
        config: &AppConfig,
        release: i64,
        task: &TaskConfig,
        command: &str,
        log: &std::path::Path,
        stream: Option<&mpsc::UnboundedSender<Frame>>,
    ) -> Result<dockhand_runtime::OneShotOutput> {
        let svc = config.services.get(&task.service).ok_or_else(|| {
            AgentError::internal(format!(
                "task `{}` names service `{}`, which the release lacks",
                task.name, task.service
            ))
        })?;
        let job = run::Job {
            runtimes: &self.inner.runtimes,
            layout: &self.inner.layout,
            redactor: self.inner.events.redactor(),
            config,
            svc,
            release,
            id: &task.name,
            command,
            timeout: task.timeout,
            log,
        };
        run::execute(job, stream).await
    }

    /// Claims a run slot for `task`; `None` when it runs and does not overlap.
    fn claim(&self, task: &TaskConfig) -> Option<Slot> {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(task.name.clone()).or_default();
        if *n > 0 && task.overlap == Overlap::Skip {
            return None;
        }
        *n += 1;
        Some(Slot {
            tasks: self.clone(),
            name: task.name.clone(),
        })
    }

    /// `dockhand tasks`: every task of the serving release with its last run.
    pub fn list(&self) -> Result<TasksReport> {
        let Some((config, release)) = self.serving() else {
            return Ok(TasksReport {
                release: None,
                tasks: Vec::new(),
            });
        };
        let mut tasks = Vec::new();
        for t in config.tasks.values() {
            let last = self
                .inner
                .store
                .task_runs(Some(&t.name), 1)?
                .into_iter()
                .next();
            let once = self.inner.store.task_once(&t.name)?;
            let (when, schedule, next_run) = match &t.when {
                TaskWhen::Once => (dockhand_api::TaskWhen::Once, None, None),
                TaskWhen::Manual => (dockhand_api::TaskWhen::Manual, None, None),
                TaskWhen::Schedule(expr) => (
                    dockhand_api::TaskWhen::Schedule,
                    Some(expr.clone()),
                    // As the scheduler computes it: after the last run too (a wall clock
                    // stepped back does not run the task again for the repeated time).
                    Schedule::cron_local(expr)
                        .ok()
                        .and_then(|s| {
                            let last = self.scheduled_last_run(&t.name);
                            s.next_after(crate::clock::utc(), last)
                        })
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                ),
            };
            tasks.push(TaskInfo {
                name: t.name.clone(),
                service: t.service.clone(),
                command: t.command.clone(),
                when,
                schedule,
                next_run,
                once_done_at: once.map(|o| o.ran_at),
                running: self.running_count(&t.name),
                last_run: last.map(|r| self.wire_run(&r)),
            });
        }
        Ok(TasksReport { release, tasks })
    }

    /// When the scheduler last started `task`'s job.
    fn scheduled_last_run(&self, task: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let run = self
            .inner
            .store
            .job_last_run(&format!("{JOB_PREFIX}{task}"))
            .ok()
            .flatten()?;
        chrono::DateTime::parse_from_rfc3339(&run.ran_at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// One task's runs, newest first.
    pub fn history(&self, task: &str, limit: usize) -> Result<Vec<TaskRun>> {
        let runs = self.inner.store.task_runs(Some(task), limit.max(1))?;
        if runs.is_empty() {
            let known = self
                .serving()
                .is_some_and(|(c, _)| c.tasks.contains_key(task));
            if !known {
                return Err(AgentError::not_found(format!(
                    "no task `{task}` and no runs of one; `dockhand tasks` lists them"
                )));
            }
        }
        Ok(runs.iter().map(|r| self.wire_run(r)).collect())
    }

    fn wire_run(&self, r: &TaskRunRecord) -> TaskRun {
        let log = self.inner.layout.task_log(&r.task, r.id);
        crate::wire::task_run(r, log.exists().then(|| log.display().to_string()))
    }

    /// Marks runs a previous agent was stopped during as interrupted, with an event each.
    fn recover(&self) {
        match self.inner.store.interrupt_task_runs() {
            Ok(runs) => {
                for r in runs {
                    self.inner.events.warn(
                        EventKind::Task,
                        r.release_id,
                        None,
                        &format!(
                            "task `{}` (run {}, started {}) was interrupted: the agent stopped while it ran",
                            r.task, r.id, r.started_at
                        ),
                    );
                }
            }
            Err(e) => tracing::error!("cannot mark interrupted task runs: {e}"),
        }
    }
}

/// A run in progress; released on drop.
struct Slot {
    tasks: Tasks,
    name: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self
            .tasks
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.name) {
            *n = n.saturating_sub(1);
        }
    }
}

fn last_line(output: &str) -> Option<&str> {
    output.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

impl Subsystem for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut events = self.inner.events.subscribe();
            self.recover();
            ctx.ready();
            self.reconcile();
            loop {
                tokio::select! {
                    _ = ctx.shutdown.wait() => return Ok(()),
                    got = events.recv() => match got {
                        Ok(e) if [EventKind::Deploy, EventKind::Rollback, EventKind::Restore]
                            .iter()
                            .any(|k| k.as_str() == e.kind) => self.reconcile(),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.reconcile(),
                        Err(_) => return Ok(()),
                    }
                }
            }
        })
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}
