//! The boundary between the agent's internal types and the wire: every state, level and
//! kind the agent answers with is converted here, with one explicit `match` each, so a new
//! internal variant fails to compile until someone decides what clients see for it.

use dockhand_api as api;
use dockhand_runtime as runtime;
use dockhand_state as state;

/// The supervisor's state of an instance.
pub fn instance_state(s: runtime::InstanceState) -> api::InstanceState {
    match s {
        runtime::InstanceState::Running => api::InstanceState::Running,
        runtime::InstanceState::Backoff => api::InstanceState::Backoff,
        runtime::InstanceState::CrashLoop => api::InstanceState::CrashLoop,
        runtime::InstanceState::Exited => api::InstanceState::Exited,
        runtime::InstanceState::Stopping => api::InstanceState::Stopping,
        runtime::InstanceState::Stopped => api::InstanceState::Stopped,
    }
}

/// An instance's health: `has_check` is whether its service is probed at all, `healthy` the
/// prober's verdict so far (`None`: no verdict yet).
pub fn instance_health(has_check: bool, healthy: Option<bool>) -> api::InstanceHealth {
    match (has_check, healthy) {
        (false, _) => api::InstanceHealth::NoCheck,
        (true, Some(true)) => api::InstanceHealth::Healthy,
        (true, Some(false)) => api::InstanceHealth::Unhealthy,
        (true, None) => api::InstanceHealth::Unknown,
    }
}

pub fn release_status(s: state::ReleaseStatus) -> api::ReleaseStatus {
    match s {
        state::ReleaseStatus::Pending => api::ReleaseStatus::Pending,
        state::ReleaseStatus::Current => api::ReleaseStatus::Current,
        state::ReleaseStatus::Retired => api::ReleaseStatus::Retired,
        state::ReleaseStatus::Failed => api::ReleaseStatus::Failed,
        state::ReleaseStatus::Pruned => api::ReleaseStatus::Pruned,
    }
}

/// A database container's state from the container runtime's word for it (Docker's).
pub fn database_state(docker_state: &str) -> api::DatabaseState {
    api::DatabaseState::from_word(docker_state)
}

pub fn event(e: state::Event) -> api::Event {
    api::Event {
        id: e.id,
        ts: e.ts,
        level: event_level(e.level),
        kind: e.kind,
        release: e.release,
        service: e.service,
        message: e.message,
    }
}

pub fn event_level(l: state::EventLevel) -> api::EventLevel {
    match l {
        state::EventLevel::Info => api::EventLevel::Info,
        state::EventLevel::Warn => api::EventLevel::Warn,
        state::EventLevel::Error => api::EventLevel::Error,
    }
}

pub fn log_level(l: runtime::Level) -> api::LogLevel {
    match l {
        runtime::Level::Error => api::LogLevel::Error,
        runtime::Level::Warn => api::LogLevel::Warn,
        runtime::Level::Info => api::LogLevel::Info,
        runtime::Level::Debug => api::LogLevel::Debug,
    }
}

/// The other way: the minimum level a logs request asks for.
pub fn runtime_level(l: api::LogLevel) -> runtime::Level {
    match l {
        api::LogLevel::Error => runtime::Level::Error,
        api::LogLevel::Warn => runtime::Level::Warn,
        api::LogLevel::Info => runtime::Level::Info,
        api::LogLevel::Debug => runtime::Level::Debug,
    }
}

pub fn log_stream(s: runtime::Stream) -> api::LogStream {
    match s {
        runtime::Stream::Out => api::LogStream::Out,
        runtime::Stream::Err => api::LogStream::Err,
        runtime::Stream::System => api::LogStream::Sys,
    }
}

/// The stream of an `exec`'d command's line; the runtime's own lines go to stdout.
pub fn output_stream(s: runtime::Stream) -> api::OutputStream {
    match s {
        runtime::Stream::Err => api::OutputStream::Err,
        runtime::Stream::Out | runtime::Stream::System => api::OutputStream::Out,
    }
}

/// A deploy's outcome as the client sees it.
pub fn deploy_report(o: crate::deploy::DeployOutcome) -> api::DeployReport {
    api::DeployReport {
        release: o.release,
        deployment: o.deployment,
        kind: match o.kind {
            crate::deploy::DeployKind::Rollback => api::DeployKind::Rollback,
            crate::deploy::DeployKind::Deploy
            | crate::deploy::DeployKind::Reload
            | crate::deploy::DeployKind::Restart => api::DeployKind::Deploy,
        },
        succeeded: o.succeeded,
        message: o.message,
        duration_ms: o.duration.as_millis() as u64,
        failures: o
            .failures
            .into_iter()
            .map(|f| api::GateFailure {
                service: f.service,
                instance: f.instance,
                reason: f.reason,
                last_probes: f.last_probes,
                last_logs: f.last_logs,
            })
            .collect(),
        warnings: o.warnings,
        canary: o.canary.map(canary_report),
        steps: step_timings(&o.steps),
    }
}

/// Timed steps as the client sees them.
pub fn step_timings(steps: &[crate::deploy::timing::Timing]) -> Vec<api::StepTiming> {
    use crate::deploy::timing::Timed;
    steps
        .iter()
        .map(|t| api::StepTiming {
            step: match t.step {
                Timed::Check => api::StepKind::Check,
                Timed::Backup => api::StepKind::Backup,
                Timed::Fetch => api::StepKind::Fetch,
                Timed::Build => api::StepKind::Build,
                Timed::Recover => api::StepKind::Recover,
                Timed::Reap => api::StepKind::Reap,
                Timed::Database => api::StepKind::Database,
                Timed::Static => api::StepKind::Static,
                Timed::PreDeploy => api::StepKind::PreDeploy,
                Timed::Start => api::StepKind::Start,
                Timed::Gate => api::StepKind::Gate,
                Timed::Canary => api::StepKind::Canary,
                Timed::Commit => api::StepKind::Commit,
                Timed::Swap => api::StepKind::Swap,
                Timed::Drain => api::StepKind::Drain,
                Timed::Stop => api::StepKind::Stop,
                Timed::PostDeploy => api::StepKind::PostDeploy,
                Timed::Prune => api::StepKind::Prune,
                Timed::Abort => api::StepKind::Abort,
            },
            service: t.service.clone(),
            duration_ms: t.duration.as_millis() as u64,
        })
        .collect()
}

fn canary_report(r: crate::deploy::canary::CanaryReport) -> api::CanaryReport {
    let figures = |t: Option<crate::monitor::Traffic>| {
        t.map(|t| api::TrafficFigures {
            requests: t.requests,
            error_ratio: t.error_ratio,
            p99_ms: t.p99_ms,
        })
    };
    api::CanaryReport {
        serving: r.serving,
        promoted: r.promoted,
        steps: r
            .stages
            .into_iter()
            .map(|s| api::CanaryStep {
                share: s.share,
                duration_ms: s.duration.as_millis() as u64,
                services: s
                    .services
                    .into_iter()
                    .map(|(service, canary, serving)| api::CanaryFigures {
                        service,
                        canary: figures(canary),
                        serving: figures(serving),
                    })
                    .collect(),
                failed: s.failed,
            })
            .collect(),
    }
}

pub fn release_info(r: &state::Release) -> api::ReleaseInfo {
    api::ReleaseInfo {
        id: r.id,
        status: release_status(r.status),
        created_at: r.created_at.clone(),
        activated_at: r.activated_at.clone(),
        note: r.note.clone(),
        revision: (!r.revision.is_empty()).then(|| r.revision.clone()),
        revision_author: (!r.revision_author.is_empty()).then(|| r.revision_author.clone()),
        revision_message: (!r.revision_message.is_empty()).then(|| r.revision_message.clone()),
    }
}

/// A subsystem and its state (with what is wrong, when something is).
pub fn subsystem(name: &str, state: crate::subsystem::SubsystemState) -> api::SubsystemInfo {
    use crate::subsystem::SubsystemState as S;
    let (state, message) = match state {
        S::Starting => (api::SubsystemState::Starting, None),
        S::Ready => (api::SubsystemState::Ready, None),
        S::Degraded(why) => (api::SubsystemState::Degraded, Some(why)),
        S::Stopped => (api::SubsystemState::Stopped, None),
        S::Failed(why) => (api::SubsystemState::Failed, Some(why)),
    };
    api::SubsystemInfo {
        name: name.to_string(),
        state,
        message,
    }
}

/// What started a task run.
pub fn task_trigger(t: state::TaskTrigger) -> api::TaskTrigger {
    match t {
        state::TaskTrigger::Once => api::TaskTrigger::Once,
        state::TaskTrigger::Schedule => api::TaskTrigger::Schedule,
        state::TaskTrigger::Manual => api::TaskTrigger::Manual,
    }
}

/// How a task run ended.
pub fn task_run_state(s: state::TaskRunStatus) -> api::TaskRunState {
    match s {
        state::TaskRunStatus::Running => api::TaskRunState::Running,
        state::TaskRunStatus::Succeeded => api::TaskRunState::Succeeded,
        state::TaskRunStatus::Failed => api::TaskRunState::Failed,
        state::TaskRunStatus::TimedOut => api::TaskRunState::TimedOut,
        state::TaskRunStatus::Skipped => api::TaskRunState::Skipped,
        state::TaskRunStatus::Interrupted => api::TaskRunState::Interrupted,
    }
}

/// One recorded task run, with where its output is.
pub fn task_run(r: &state::TaskRunRecord, log: Option<String>) -> api::TaskRun {
    api::TaskRun {
        id: r.id,
        task: r.task.clone(),
        trigger: task_trigger(r.trigger),
        release: r.release_id,
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        state: task_run_state(r.status),
        exit_code: r.exit_code,
        attempts: r.attempts,
        duration_ms: r.duration_ms,
        message: r.message.clone(),
        log,
    }
}
