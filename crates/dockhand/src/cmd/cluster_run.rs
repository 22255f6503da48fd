//! `dockhand run TASK [--force]` and `dockhand run SERVICE -- CMD` in a project whose
//! `dockhand.toml` has `[cluster]`: the run is a Swarm job on the manager reached like
//! `deploy` reaches it (`super::cluster::connect`), made and waited on by
//! `dockhand_cluster::run_task`. Its output (redacted with the project's secrets) is printed
//! once the job ended, and kept in `.dockhand/runs/TASK-RUN.log` (mode 0600) beside the
//! secrets file, in the agent's log format; the exit code is the task's, as on one host.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dockhand_cluster::{JobError, JobOutcome, JobReport};
use dockhand_config::{Overlap, TaskConfig, TaskWhen};

use super::run::RunArgs;
use crate::output::{self, print_json};
use crate::Global;

pub fn run(g: &Global, path: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let json = g.json;
    let config = super::cluster::load(g, path)?;
    let nodes = super::cluster::node_access(g, path, &config)?;
    let redactor = dockhand_agent::Redactor::default();
    // Loaded only to redact the output: the job takes its secrets from the swarm.
    dockhand_agent::load_secrets(&config, &redactor)
        .map_err(|e| output::usage(redactor.redact(&e.to_string()), json))?;
    let task = if args.command.is_empty() {
        config.tasks.get(&args.name).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
            not_found(
                if known.is_empty() {
                    format!("no task `{}`: dockhand.toml defines no [tasks]", args.name)
                } else {
                    format!(
                        "no task `{}`; tasks: {} (a command in a service's environment: `dockhand run SERVICE -- COMMAND`)",
                        args.name,
                        known.join(", ")
                    )
                },
                json,
            )
        })?
    } else {
        if args.force {
            return Err(output::usage(
                "--force is for tasks; a command after `--` always runs",
                json,
            ));
        }
        if !config.services.contains_key(&args.name) {
            return Err(not_found(
                format!(
                    "no service `{}`; services: {}",
                    args.name,
                    config
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                json,
            ));
        }
        TaskConfig {
            name: format!("run-{}", args.name),
            service: args.name.clone(),
            command: dockhand_agent::shell_join(&args.command),
            when: TaskWhen::Manual,
            timeout: dockhand_agent::EXEC_TIMEOUT,
            retries: 0,
            overlap: Overlap::Allow,
        }
    };
    let app = config.app.clone();
    let run_id = dockhand_cluster::new_run_id();
    let mut progress = super::cluster::progress(json);
    let report = super::runtime()?.block_on(async {
        let (swarm, _link) = super::cluster::connect(g, &config, &nodes).await?;
        if task.when == TaskWhen::Once && !args.force {
            let done = dockhand_cluster::once_done(&swarm, &app, &task.name)
                .await
                .map_err(|e| super::cluster::swarm_error(e, json))?;
            if let Some(done) = done {
                return Err(conflict(
                    format!(
                        "task `{}` runs once and already ran (run {}, {}); run it again with `dockhand run {} --force`",
                        task.name,
                        done.run_id,
                        since(done.ran_at),
                        task.name
                    ),
                    json,
                ));
            }
        }
        let mut report = dockhand_cluster::run_task(&swarm, &app, &task, &run_id, &mut progress)
            .await
            .map_err(|e| job_error(e, &redactor, json))?;
        if report.outcome == JobOutcome::Succeeded && task.when == TaskWhen::Once {
            // A forced run counts as the once run too.
            if let Err(e) = dockhand_cluster::mark_once(&swarm, &report).await {
                progress(&format!("the once record could not be written: {e}"));
            }
        }
        report.redact(|t| redactor.redact(t));
        Ok(report)
    })?;
    if report.outcome == JobOutcome::Skipped {
        return Err(conflict(
            format!(
                "{}; wait for it, or set overlap = \"allow\"",
                report.message
            ),
            json,
        ));
    }
    let log = keep(path, &report);
    if json {
        print_json(&serde_json::json!({
            "run": &report,
            "log": log.as_ref().ok(),
            "exit_code": report.exit_code,
            "timed_out": report.outcome == JobOutcome::TimedOut,
        }));
    } else {
        for line in &report.output {
            if line.stream == "err" {
                eprintln!("{}", line.text);
            } else {
                println!("{}", line.text);
            }
        }
        let _ = std::io::stdout().flush();
        if let Err(e) = &log {
            eprintln!("warning: the output could not be kept: {e}");
        }
    }
    let where_ = format!(
        "run {}{}{}",
        report.run_id,
        report
            .node
            .as_ref()
            .map(|n| format!(" on node {n}"))
            .unwrap_or_default(),
        log.as_ref()
            .map(|p| format!("; its output is in {}", p.display()))
            .unwrap_or_default()
    );
    Ok(match report.outcome {
        JobOutcome::Succeeded => ExitCode::SUCCESS,
        JobOutcome::TimedOut => {
            if !json {
                eprintln!(
                    "error: task `{}` {}; its job was removed ({where_})",
                    task.name, report.message
                );
            }
            ExitCode::from(output::FAILED)
        }
        JobOutcome::Failed | JobOutcome::Skipped => {
            if !json {
                eprintln!(
                    "error: task `{}` failed: {} ({where_})",
                    task.name, report.message
                );
            }
            ExitCode::from(
                report
                    .exit_code
                    .map(|c| c.clamp(1, 255) as u8)
                    .unwrap_or(output::FAILED),
            )
        }
    })
}

/// Writes the run's output (already redacted) to `.dockhand/runs/TASK-RUN.log` beside the
/// project's `dockhand.toml`, mode 0600, in the agent's format (`<time> out|err <text>`).
fn keep(config_path: &Path, report: &JobReport) -> anyhow::Result<PathBuf> {
    let dir = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(".dockhand")
        .join("runs");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{}-{}.log", report.task, report.run_id));
    let mut text = String::new();
    let mut attempt = 0;
    for line in &report.output {
        let at = line.at.as_deref().unwrap_or("-");
        if line.attempt != attempt {
            attempt = line.attempt;
            text += &format!(
                "{at} sys attempt {attempt} of job {}{}\n",
                report.job,
                report
                    .release
                    .as_ref()
                    .map(|r| format!(", release {r}"))
                    .unwrap_or_default()
            );
        }
        text += &format!("{at} {} {}\n", line.stream, line.text);
    }
    text += &format!("- sys {:?}: {}\n", report.outcome, report.message);
    crate::private_file::create(&path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
    Ok(path)
}

fn since(at: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn not_found(message: String, json: bool) -> anyhow::Error {
    anyhow::Error::new(output::Exit {
        code: output::NOT_FOUND,
        json: json
            .then(|| serde_json::json!({ "error": { "code": "not_found", "message": message } })),
        message,
    })
}

fn conflict(message: String, json: bool) -> anyhow::Error {
    anyhow::Error::new(output::Exit {
        code: output::CONFLICT,
        json: json
            .then(|| serde_json::json!({ "error": { "code": "conflict", "message": message } })),
        message,
    })
}

fn job_error(e: JobError, redactor: &dockhand_agent::Redactor, json: bool) -> anyhow::Error {
    let JobError::Swarm(e) = e else {
        let mut message = redactor.redact(&e.to_string());
        if let Some(help) = e.help() {
            message = format!("{message}\n  {help}");
        }
        return not_found(message, json);
    };
    super::cluster::swarm_error(e, json)
}
