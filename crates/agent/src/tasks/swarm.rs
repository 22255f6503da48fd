//! A task run on the swarm, for the watch-only agent of a `[cluster]` app: the agent runs on
//! the first manager with the Engine at hand, so a scheduled task (or `dockhand run` through
//! its socket) is a Swarm job made by `dockhand_cluster::run_task`. Its output is written to
//! the run's log in the format of the single-host runner (`<time> out|err|sys <text>`,
//! redacted) and, for `dockhand run`, sent as output frames.

use std::io::Write as _;
use std::path::Path;

use dockhand_api::{Frame, OutputStream};
use dockhand_cluster::{JobOutcome, JobReport, Swarm, SwarmTimeouts};
use dockhand_config::TaskConfig;
use dockhand_state::TaskRunStatus;
use tokio::sync::mpsc;

use crate::error::{AgentError, ErrorKind, Result};
use crate::secrets::Redactor;

/// Where the swarm's tasks run from: the app and the manager's Engine.
#[derive(Debug, Clone)]
pub struct OnSwarm {
    pub app: String,
    /// `unix://` socket of the manager's Engine (`$DOCKER_HOST`, else the local one).
    pub engine: String,
}

/// How a run ended, as the state records it.
pub(super) struct Ended {
    pub status: TaskRunStatus,
    pub exit_code: Option<i32>,
    pub message: String,
    pub attempts: u32,
}

/// Runs `task` as run `id` on the swarm; its output goes to `log` and `stream`.
pub(super) async fn run(
    on: &OnSwarm,
    task: &TaskConfig,
    id: i64,
    log: &Path,
    redactor: &Redactor,
    stream: Option<&mpsc::UnboundedSender<Frame>>,
) -> Result<Ended> {
    let swarm = Swarm::connect(&on.engine, SwarmTimeouts::default())
        .await
        .map_err(|e| AgentError::new(ErrorKind::Environment, e.to_string()))?;
    let run_id = id.to_string();
    let mut notes = Vec::new();
    let mut report =
        dockhand_cluster::run_task(&swarm, &on.app, task, &run_id, &mut |line: &str| {
            notes.push(line.to_string())
        })
        .await
        .map_err(|e| {
            let kind = match &e {
                dockhand_cluster::JobError::Swarm(s) if s.is_environmental() => {
                    ErrorKind::Environment
                }
                dockhand_cluster::JobError::Swarm(_) => ErrorKind::Runtime,
                _ => ErrorKind::NotFound,
            };
            let help = e.help().map(|h| format!("; {h}")).unwrap_or_default();
            AgentError::new(
                kind,
                format!("task `{}` could not run: {e}{help}", task.name),
            )
        })?;
    report.redact(|t| redactor.redact(t));
    write_log(log, &report, &notes)?;
    if let Some(tx) = stream {
        for line in &report.output {
            let stream = if line.stream == "err" {
                OutputStream::Err
            } else {
                OutputStream::Out
            };
            let _ = tx.send(Frame::Output {
                stream,
                data: format!("{}\n", line.text),
            });
        }
    }
    let status = match report.outcome {
        JobOutcome::Succeeded => TaskRunStatus::Succeeded,
        JobOutcome::Failed => TaskRunStatus::Failed,
        JobOutcome::TimedOut => TaskRunStatus::TimedOut,
        JobOutcome::Skipped => TaskRunStatus::Skipped,
    };
    let message = match report.outcome {
        JobOutcome::Failed => format!(
            "{}{}",
            report.message,
            report
                .output
                .iter()
                .rev()
                .map(|l| l.text.trim())
                .find(|l| !l.is_empty())
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ),
        _ => report.message.clone(),
    };
    Ok(Ended {
        status,
        exit_code: report.exit_code,
        message,
        attempts: report.attempts,
    })
}

/// Appends the run's output to its log, each attempt introduced by a `sys` line naming the
/// job, the release and the node.
fn write_log(log: &Path, report: &JobReport, notes: &[String]) -> Result<()> {
    crate::layout::ensure_parent(log)?;
    let now = || crate::clock::utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut text = String::new();
    for note in notes {
        text += &format!("{} sys {note}\n", now());
    }
    let mut attempt = 0;
    for line in &report.output {
        let at = line.at.clone().unwrap_or_else(now);
        if line.attempt != attempt {
            attempt = line.attempt;
            text += &format!(
                "{at} sys attempt {attempt}: Swarm job {}{}\n",
                report.job,
                report
                    .release
                    .as_ref()
                    .map(|r| format!(" of release {r}"))
                    .unwrap_or_default()
            );
        }
        text += &format!("{at} {} {}\n", line.stream, line.text);
    }
    if !report.message.is_empty() {
        text += &format!("{} sys {}\n", now(), report.message);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| AgentError::internal(format!("failed to open {}: {e}", log.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| AgentError::internal(format!("failed to write {}: {e}", log.display())))
}
