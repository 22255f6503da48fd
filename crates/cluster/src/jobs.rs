//! `[tasks.NAME]` on a cluster: each attempt of a task is a Swarm job (`ReplicatedJob`, one
//! completion, restart condition none) named `<app>-task-<name>-<run id>`.
//!
//! The job is made from the *serving* Swarm service of the task's service ([`job_spec`],
//! pure, tested with plain data): the same image (the release's), env, Swarm secrets (by
//! id: the job never holds a value, so whoever starts it needs no secrets file), networks,
//! volumes, placement and resources, with the task's command through `/bin/sh -c`, no health
//! check, no network alias (it is not the service) and the labels `dockhand.app`,
//! `dockhand.task`, `dockhand.release`, `dockhand.job` (the run id), `dockhand.started` and
//! `dockhand.deadline` (Unix seconds). [`run_task`] creates it, waits until its one task
//! completes, fails or the task's `timeout` passes, reads its output through the service
//! logs API, and removes the job service in every case; a failed attempt is retried as
//! `retries` says. `overlap = "skip"` is judged on the swarm itself, so a run started from a
//! laptop and one started by the watch-only agent see each other: a job of the task whose
//! deadline has not passed is a run in progress. One whose deadline passed long ago was
//! left by a runner that died; it is removed then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models;
use dockhand_config::{Overlap, TaskConfig};
use serde::Serialize;
use sha2::Digest as _;

use crate::error::ClusterError;
use crate::swarm::Swarm;

/// Longest Swarm service name.
const MAX_NAME: usize = 63;
/// How long after its deadline a job left behind is taken for a dead runner's.
const LEFTOVER_GRACE: Duration = Duration::from_secs(60);
/// How often a job's task is looked at.
const POLL: Duration = Duration::from_millis(500);

/// The Swarm service name of run `run_id` of `task` of `app`: `<app>-task-<task>-<run id>`,
/// its middle shortened with a digest when that is longer than Swarm allows.
pub fn job_name(app: &str, task: &str, run_id: &str) -> String {
    fit(app, task, &format!("{app}-task-{task}"), run_id)
}

/// The Swarm config recording that once task `task` of `app` succeeded:
/// `dockhand-<app>-once-<task>`, shortened like [`job_name`].
pub fn once_name(app: &str, task: &str) -> String {
    fit(app, task, &format!("dockhand-{app}-once"), task)
}

/// `<head>-<tail>`, or when longer than Swarm allows, `head` cut short and a digest of `app`
/// and `task` before `tail`.
fn fit(app: &str, task: &str, head: &str, tail: &str) -> String {
    let full = format!("{head}-{tail}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = hex::encode(&sha2::Sha256::digest(format!("{app}/{task}").as_bytes())[..4]);
    let room = MAX_NAME.saturating_sub(tail.len() + digest.len() + 2);
    let head: String = head.chars().take(room).collect();
    let full = format!("{}-{digest}-{tail}", head.trim_end_matches('-'));
    full.chars().take(MAX_NAME).collect()
}

/// A new run id for a run that has no record to be numbered by (a run started by the CLI):
/// the time in base 36 and the process, short enough to leave the name room.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = now.as_millis() as u64;
    format!(
        "c{}{}",
        base36(millis),
        base36(u64::from(std::process::id()) % 1296)
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Why a task cannot run as a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The task's service does not run on the swarm (nothing deployed yet).
    #[error("service `{service}` of `{app}` does not run on the swarm (no Swarm service `{swarm_service}`), so task `{task}` has no release to run in")]
    NotDeployed {
        app: String,
        task: String,
        service: String,
        swarm_service: String,
    },
    /// The serving service's spec has no container (not one Dockhand made).
    #[error("the Swarm service `{swarm_service}` has no container spec; it was not made by `dockhand deploy`")]
    NoContainer { swarm_service: String },
    #[error(transparent)]
    Swarm(#[from] ClusterError),
}

impl JobError {
    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            JobError::NotDeployed { .. } | JobError::NoContainer { .. } => {
                Some("deploy the app with `dockhand deploy` first".into())
            }
            JobError::Swarm(_) => None,
        }
    }
}

/// What came of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// The last attempt exited 0.
    Succeeded,
    /// The last attempt exited non-zero, or Swarm could not run it.
    Failed,
    /// The last attempt was still running at its timeout; it was stopped and removed.
    TimedOut,
    /// Not started: a run of the task is in progress and its overlap policy is `skip`.
    Skipped,
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputLine {
    /// `out` or `err`.
    pub stream: &'static str,
    /// When the Engine received it (RFC 3339), when it said.
    pub at: Option<String>,
    pub text: String,
    /// The attempt it came from (1 for the first).
    pub attempt: u32,
}

/// A run of a task on the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub app: String,
    pub task: String,
    /// The Swarm service of the job (removed by now).
    pub job: String,
    pub run_id: String,
    /// The release the job ran (its service's `dockhand.release`).
    pub release: Option<String>,
    /// The hostname of the node the last attempt ran on.
    pub node: Option<String>,
    pub outcome: JobOutcome,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    /// Swarm's word on a failure, why a run was skipped, or the timeout.
    pub message: String,
    pub duration_ms: u64,
    /// Every attempt's output, in order (no secret is removed here: the caller redacts).
    pub output: Vec<OutputLine>,
}

impl JobReport {
    /// Passes every output line and the message through `redact`.
    pub fn redact(&mut self, redact: impl Fn(&str) -> String) {
        self.message = redact(&self.message);
        for line in &mut self.output {
            line.text = redact(&line.text);
        }
    }
}

/// The job spec of run `run_id` of `task`, made from `serving`, the spec of the Swarm
/// service of the task's service; `started` and its deadline are Unix seconds.
pub fn job_spec(
    app: &str,
    task: &TaskConfig,
    serving: &models::ServiceSpec,
    run_id: &str,
    started: i64,
) -> Result<models::ServiceSpec, JobError> {
    let swarm_service = format!("{app}-{}", task.service);
    let mut template = serving.task_template.clone().unwrap_or_default();
    let Some(mut container) = template.container_spec.take() else {
        return Err(JobError::NoContainer { swarm_service });
    };
    let release = container
        .labels
        .as_ref()
        .and_then(|l| l.get("dockhand.release").cloned())
        .or_else(|| {
            serving
                .labels
                .as_ref()
                .and_then(|l| l.get("dockhand.release").cloned())
        });
    let deadline = started.saturating_add(task.timeout.as_secs() as i64);
    let mut labels: HashMap<String, String> = [
        ("dockhand.app", app.to_string()),
        ("dockhand.task", task.name.clone()),
        ("dockhand.job", run_id.to_string()),
        ("dockhand.started", started.to_string()),
        ("dockhand.deadline", deadline.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(release) = &release {
        labels.insert("dockhand.release".into(), release.clone());
    }
    container.labels = Some(labels.clone());
    container.command = Some(vec!["/bin/sh".into(), "-c".into(), task.command.clone()]);
    container.args = None;
    // A one-off run has no health: it runs to its end.
    container.health_check = Some(models::HealthConfig {
        test: Some(vec!["NONE".into()]),
        ..Default::default()
    });
    if let Some(env) = container.env.as_mut() {
        env.retain(|e| !e.starts_with("DOCKHAND_TASK="));
        env.push(format!("DOCKHAND_TASK={}", task.name));
    }
    template.container_spec = Some(container);
    template.restart_policy = Some(models::TaskSpecRestartPolicy {
        condition: Some(models::TaskSpecRestartPolicyConditionEnum::NONE),
        max_attempts: Some(0),
        ..Default::default()
    });
    // On the service's networks, but not under its name: it is not one of its replicas.
    if let Some(networks) = template.networks.as_mut() {
        for n in networks {
            n.aliases = None;
        }
    }
    template.force_update = None;
    Ok(models::ServiceSpec {
        name: Some(job_name(app, &task.name, run_id)),
        labels: Some(labels),
        task_template: Some(template),
        mode: Some(models::ServiceSpecMode {
            replicated_job: Some(models::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        // No VIP (not every kernel has IPVS), and nothing published.
        endpoint_spec: Some(models::EndpointSpec {
            mode: Some(models::EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Where a job stands, judged from its task (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not placed or not finished yet.
    Pending,
    /// Its task ended: the exit code when the container ran, and Swarm's message.
    Ended {
        exit_code: Option<i32>,
        message: String,
    },
}

/// The state of a job from its tasks (a job of one completion has one).
pub fn job_state(tasks: &[models::Task]) -> JobState {
    use models::TaskState as S;
    let Some(task) = tasks
        .iter()
        .max_by_key(|t| t.version.as_ref().and_then(|v| v.index))
    else {
        return JobState::Pending;
    };
    let status = task.status.as_ref();
    let message = status
        .and_then(|s| s.err.clone().or_else(|| s.message.clone()))
        .unwrap_or_default();
    let exit_code = status
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.exit_code)
        .map(|c| c as i32);
    match status.and_then(|s| s.state) {
        Some(S::COMPLETE) => JobState::Ended {
            exit_code: Some(exit_code.unwrap_or(0)),
            message,
        },
        Some(S::FAILED | S::REJECTED | S::SHUTDOWN | S::ORPHANED | S::REMOVE) => {
            JobState::Ended {
                // A failed container says its code; a rejected task never ran.
                exit_code: exit_code.filter(|c| *c != 0),
                message,
            }
        }
        _ => JobState::Pending,
    }
}

/// Runs `task` of `app` on the swarm as run `run_id`, its attempts one after the other;
/// `progress` hears where each attempt runs.
pub async fn run_task(
    swarm: &Swarm,
    app: &str,
    task: &TaskConfig,
    run_id: &str,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<JobReport, JobError> {
    let began = Instant::now();
    let name = job_name(app, &task.name, run_id);
    let swarm_service = format!("{app}-{}", task.service);
    let mut report = JobReport {
        app: app.to_string(),
        task: task.name.clone(),
        job: name.clone(),
        run_id: run_id.to_string(),
        release: None,
        node: None,
        outcome: JobOutcome::Failed,
        exit_code: None,
        attempts: 0,
        message: String::new(),
        duration_ms: 0,
        output: Vec::new(),
    };
    let others = in_progress(swarm, app, &task.name).await?;
    if task.overlap == Overlap::Skip && !others.is_empty() {
        report.outcome = JobOutcome::Skipped;
        report.message = format!(
            "task `{}` is already running ({}) and its overlap policy is `skip`",
            task.name,
            others.join(", ")
        );
        return Ok(report);
    }
    let Some(serving) = swarm.service_spec(&swarm_service).await? else {
        return Err(JobError::NotDeployed {
            app: app.to_string(),
            task: task.name.clone(),
            service: task.service.clone(),
            swarm_service,
        });
    };
    let allowed = task.retries + 1;
    while report.attempts < allowed {
        report.attempts += 1;
        let attempt = report.attempts;
        let spec = job_spec(app, task, &serving, run_id, unix_now())?;
        report.release = spec
            .labels
            .as_ref()
            .and_then(|l| l.get("dockhand.release").cloned());
        swarm.create_service(spec).await?;
        let ran = attempt_once(swarm, &name, task.timeout, progress).await;
        // Its output first, then the job goes, whatever came of it.
        let logs = swarm.service_output(&name).await;
        let removed = swarm.remove_service(&name).await;
        let ended = ran?;
        match logs {
            Ok(lines) => report
                .output
                .extend(lines.into_iter().map(|(stream, at, text)| OutputLine {
                    stream,
                    at,
                    text,
                    attempt,
                })),
            Err(e) => progress(&format!("the output of {name} could not be read: {e}")),
        }
        removed?;
        report.node = ended.node;
        match ended.state {
            None => {
                report.outcome = JobOutcome::TimedOut;
                report.exit_code = None;
                report.message = format!(
                    "timed out after {} and was stopped",
                    humantime::format_duration(task.timeout)
                );
            }
            Some((Some(0), _)) => {
                report.outcome = JobOutcome::Succeeded;
                report.exit_code = Some(0);
                report.message.clear();
                break;
            }
            Some((code, message)) => {
                report.outcome = JobOutcome::Failed;
                report.exit_code = code;
                report.message = match code {
                    Some(c) => format!("exit code {c}"),
                    None if message.is_empty() => "Swarm could not run it".into(),
                    None => format!("Swarm could not run it: {message}"),
                };
            }
        }
        if report.attempts < allowed {
            progress(&format!(
                "attempt {attempt} of {allowed} failed ({}); trying again",
                report.message
            ));
        }
    }
    report.duration_ms = began.elapsed().as_millis() as u64;
    Ok(report)
}

/// A once task's success, as the swarm records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OnceRecord {
    pub task: String,
    pub run_id: String,
    pub release: Option<String>,
    /// When it succeeded (Unix seconds).
    pub ran_at: i64,
}

/// The record of once task `task` of `app`, when it succeeded.
pub async fn once_done(
    swarm: &Swarm,
    app: &str,
    task: &str,
) -> Result<Option<OnceRecord>, ClusterError> {
    let Some(data) = swarm.config_data(&once_name(app, task)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&data).ok())
}

/// Records that the once task of `report` succeeded, in the swarm (a Swarm config, so any
/// manager, the CLI anywhere and the watch-only agent read the same record).
pub async fn mark_once(swarm: &Swarm, report: &JobReport) -> Result<(), ClusterError> {
    let record = OnceRecord {
        task: report.task.clone(),
        run_id: report.run_id.clone(),
        release: report.release.clone(),
        ran_at: unix_now(),
    };
    let data = serde_json::to_vec(&record).unwrap_or_default();
    swarm
        .ensure_config(
            &once_name(&report.app, &report.task),
            &data,
            HashMap::from([
                ("dockhand.once-app".to_string(), report.app.clone()),
                ("dockhand.once-task".to_string(), report.task.clone()),
            ]),
        )
        .await
        .map(|_| ())
}

/// Runs each `when = "once"` task of `config` that has not succeeded on this swarm yet, one
/// after the other, recording each success; a task that could not be started is a failed
/// report saying why (the deploy that calls this has succeeded whatever comes of them).
pub async fn run_once_tasks(
    swarm: &Swarm,
    config: &dockhand_config::AppConfig,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Vec<JobReport> {
    let mut out = Vec::new();
    for task in config.tasks.values() {
        if task.when != dockhand_config::TaskWhen::Once {
            continue;
        }
        match once_done(swarm, &config.app, &task.name).await {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                out.push(not_started(&config.app, task, e.to_string()));
                continue;
            }
        }
        progress(&format!(
            "task {}: runs once, after the first deploy",
            task.name
        ));
        let run_id = new_run_id();
        let report = match run_task(swarm, &config.app, task, &run_id, progress).await {
            Ok(report) => report,
            Err(e) => not_started(&config.app, task, e.to_string()),
        };
        if report.outcome == JobOutcome::Succeeded {
            if let Err(e) = mark_once(swarm, &report).await {
                progress(&format!(
                    "task {}: succeeded, but its once record could not be written: {e}",
                    task.name
                ));
            }
        }
        out.push(report);
    }
    out
}

fn not_started(app: &str, task: &TaskConfig, message: String) -> JobReport {
    JobReport {
        app: app.to_string(),
        task: task.name.clone(),
        job: String::new(),
        run_id: String::new(),
        release: None,
        node: None,
        outcome: JobOutcome::Failed,
        exit_code: None,
        attempts: 0,
        message: format!("could not run: {message}"),
        duration_ms: 0,
        output: Vec::new(),
    }
}

/// How one attempt ended: `state` is `None` at the timeout, else the exit code and Swarm's
/// message; `node` is where it ran.
struct Attempt {
    state: Option<(Option<i32>, String)>,
    node: Option<String>,
}

async fn attempt_once(
    swarm: &Swarm,
    name: &str,
    timeout: Duration,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Attempt, ClusterError> {
    let deadline = Instant::now() + timeout;
    let mut node_id: Option<String> = None;
    let mut node = None;
    loop {
        let tasks = swarm.service_tasks(name).await?;
        if node_id.is_none() {
            node_id = tasks.iter().find_map(|t| t.node_id.clone());
            if let Some(id) = &node_id {
                node = swarm.node_hostname(id).await?;
                progress(&format!(
                    "{name}: on node {}",
                    node.as_deref().unwrap_or(id.as_str())
                ));
            }
        }
        if let JobState::Ended { exit_code, message } = job_state(&tasks) {
            return Ok(Attempt {
                state: Some((exit_code, message)),
                node,
            });
        }
        if Instant::now() >= deadline {
            return Ok(Attempt { state: None, node });
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// The jobs of `task` in progress (their Swarm names); one whose deadline passed more than
/// a minute ago was left by a runner that died, and is removed.
async fn in_progress(swarm: &Swarm, app: &str, task: &str) -> Result<Vec<String>, ClusterError> {
    let now = unix_now();
    let mut out = Vec::new();
    for service in swarm.task_jobs(app, task).await? {
        let spec = service.spec.unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let deadline = spec
            .labels
            .as_ref()
            .and_then(|l| l.get("dockhand.deadline"))
            .and_then(|d| d.parse::<i64>().ok())
            .unwrap_or(0);
        if deadline + LEFTOVER_GRACE.as_secs() as i64 <= now {
            swarm.remove_service(&name).await?;
        } else {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `<timestamp> <text>` of a log line with timestamps → both (a line without one is text).
pub(crate) fn split_timestamp(line: &str) -> (Option<String>, String) {
    match line.split_once(' ') {
        Some((ts, text)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.ends_with('Z') => {
            (Some(ts.to_string()), text.to_string())
        }
        _ => (None, line.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn task(toml: &str) -> TaskConfig {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        std::fs::write(&secrets, "token=hunter2\n").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "app = \"shop\"\n[services.web]\nimage = \"shop:1\"\nport = 8080\n\
             env = {{ TOKEN = \"${{secret.token}}\", MODE = \"prod\" }}\n\
             volumes = [\"media:/media\"]\n\
             health = {{ command = \"true\" }}\n{toml}"
        );
        let loaded = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            &text,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        loaded.config.tasks["seed"].clone()
    }

    /// The spec `dockhand deploy` gives web at release 7.
    fn serving() -> models::ServiceSpec {
        let text = "app = \"shop\"\n[services.web]\nimage = \"shop:1\"\nport = 8080\n\
             env = { MODE = \"prod\" }\nvolumes = [\"media:/media\"]\nreplicas = 3\n\
             health = { command = \"true\" }\n";
        let loaded = dockhand_config::load_str(
            std::path::Path::new("/nowhere/dockhand.toml"),
            text,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let web = &loaded.config.services["web"];
        let mut plan = crate::plan::plan_service(
            "shop",
            web,
            "7",
            "shop:1",
            &["node.role == worker".to_string()],
        )
        .unwrap();
        plan.secrets.push(crate::plan::SecretMount {
            env: "TOKEN".into(),
            secret: "token".into(),
            target: "/run/secrets/token".into(),
        });
        plan.env.push("TOKEN_FILE=/run/secrets/token".into());
        let ids = BTreeMap::from([(
            "token".to_string(),
            ("sid9".to_string(), "shop-token-abc".to_string()),
        )]);
        plan.to_spec(&ids)
    }

    #[test]
    fn a_task_becomes_a_one_completion_job_of_the_serving_release_without_restarts() {
        let seed = task(
            "[tasks.seed]\nservice = \"web\"\ncommand = \"./seed --all\"\ntimeout = \"90s\"\n",
        );
        let spec = job_spec("shop", &seed, &serving(), "41", 1_000).unwrap();
        assert_eq!(spec.name.as_deref(), Some("shop-task-seed-41"));
        let mode = spec.mode.as_ref().unwrap();
        assert_eq!(
            mode.replicated_job,
            Some(models::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            })
        );
        assert!(mode.replicated.is_none() && mode.global.is_none());
        assert!(spec.update_config.is_none() && spec.rollback_config.is_none());
        let labels = spec.labels.as_ref().unwrap();
        assert_eq!(labels["dockhand.app"], "shop");
        assert_eq!(labels["dockhand.task"], "seed");
        assert_eq!(labels["dockhand.release"], "7");
        assert_eq!(labels["dockhand.job"], "41");
        assert_eq!(labels["dockhand.deadline"], "1090");
        assert!(!labels.contains_key("dockhand.service"), "{labels:?}");

        let task = spec.task_template.as_ref().unwrap();
        assert_eq!(
            task.restart_policy.as_ref().unwrap().condition,
            Some(models::TaskSpecRestartPolicyConditionEnum::NONE)
        );
        // Placement and the overlay of the service, without its alias.
        assert_eq!(
            task.placement.as_ref().unwrap().constraints.as_deref(),
            Some(&["node.role == worker".to_string()][..])
        );
        let network = &task.networks.as_ref().unwrap()[0];
        assert_eq!(network.target.as_deref(), Some("dockhand-shop"));
        assert_eq!(network.aliases, None);

        let c = task.container_spec.as_ref().unwrap();
        assert_eq!(c.image.as_deref(), Some("shop:1"));
        assert_eq!(
            c.command.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "./seed --all".into()][..])
        );
        assert_eq!(c.args, None);
        assert_eq!(
            c.health_check.as_ref().unwrap().test.as_deref(),
            Some(&["NONE".to_string()][..])
        );
        let env = c.env.as_ref().unwrap();
        for want in [
            "MODE=prod",
            "DOCKHAND_RELEASE=7",
            "TOKEN_FILE=/run/secrets/token",
            "DOCKHAND_TASK=seed",
        ] {
            assert!(env.contains(&want.to_string()), "{want} in {env:?}");
        }
        // The same Swarm secret as the service, by id: no value anywhere.
        let secret = &c.secrets.as_ref().unwrap()[0];
        assert_eq!(secret.secret_id.as_deref(), Some("sid9"));
        assert_eq!(secret.secret_name.as_deref(), Some("shop-token-abc"));
        assert!(!serde_json::to_string(&spec).unwrap().contains("hunter2"));
        let mounts = c.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("shop_media"));
        assert_eq!(mounts[0].target.as_deref(), Some("/media"));
        assert_eq!(c.labels.as_ref().unwrap()["dockhand.task"], "seed");
    }

    #[test]
    fn a_service_spec_without_a_container_is_refused() {
        let seed = task("[tasks.seed]\ncommand = \"x\"\n");
        let err = job_spec("shop", &seed, &models::ServiceSpec::default(), "1", 0).unwrap_err();
        assert!(matches!(err, JobError::NoContainer { .. }), "{err}");
    }

    #[test]
    fn job_names_fit_swarm_and_stay_apart() {
        assert_eq!(job_name("shop", "seed", "c12"), "shop-task-seed-c12");
        let app = "a".repeat(40);
        let long = job_name(&app, &"t".repeat(40), "c1234567890");
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-c1234567890"), "{long}");
        let other = job_name(&app, &format!("{}x", "t".repeat(39)), "c1234567890");
        assert_ne!(long, other);
        assert!(new_run_id().starts_with('c'));
        assert_eq!(once_name("shop", "seed"), "dockhand-shop-once-seed");
        let once = once_name(&app, &"t".repeat(40));
        assert!(once.len() <= 63, "{once}");
    }

    fn task_in(state: models::TaskState, exit: Option<i64>, err: Option<&str>) -> models::Task {
        models::Task {
            status: Some(models::TaskStatus {
                state: Some(state),
                err: err.map(str::to_string),
                container_status: exit.map(|c| models::ContainerStatus {
                    exit_code: Some(c),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_ends_when_its_task_completes_fails_or_is_rejected() {
        use models::TaskState as S;
        assert_eq!(job_state(&[]), JobState::Pending);
        assert_eq!(
            job_state(&[task_in(S::RUNNING, None, None)]),
            JobState::Pending
        );
        assert_eq!(
            job_state(&[task_in(S::COMPLETE, Some(0), None)]),
            JobState::Ended {
                exit_code: Some(0),
                message: String::new()
            }
        );
        assert_eq!(
            job_state(&[task_in(S::FAILED, Some(3), Some("task: non-zero exit (3)"))]),
            JobState::Ended {
                exit_code: Some(3),
                message: "task: non-zero exit (3)".into()
            }
        );
        assert_eq!(
            job_state(&[task_in(S::REJECTED, None, Some("No such image: x"))]),
            JobState::Ended {
                exit_code: None,
                message: "No such image: x".into()
            }
        );
    }

    #[test]
    fn log_lines_lose_their_timestamp() {
        assert_eq!(
            split_timestamp("2026-12-07T12:00:00.123456789Z hello world"),
            (
                Some("2026-12-07T12:00:00.123456789Z".into()),
                "hello world".into()
            )
        );
        assert_eq!(split_timestamp("plain"), (None, "plain".into()));
    }
}
