//! Deploy hooks: a one-off job of the new release — a process in the service's working
//! directory, or a container of the release's image with its volumes and network — with the
//! release's environment, its output kept in the hook's log file.

use std::time::Duration;

use dockhand_config::{AppConfig, Secrets, ServiceConfig};
use dockhand_runtime::OneShot;

use super::plan::HookPhase;
use super::{instances, Deployer};
use crate::containers;
use crate::error::{AgentError, Result};

/// Timeout of one deploy hook.
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `command` for `svc` of `release`. `Err` says what failed, with the end of its output.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    d: &Deployer,
    config: &AppConfig,
    svc: &ServiceConfig,
    command: &str,
    phase: HookPhase,
    release: i64,
    image: Option<&str>,
    secrets: &Secrets,
) -> Result<()> {
    let which = phase.as_str();
    let service = &svc.name;
    let env = instances::service_env(config, svc, release, secrets)?;
    let log_path = d.layout.hook_log(service, which, release);
    crate::layout::ensure_parent(&log_path)?;
    let ran = match (&svc.container, image) {
        (Some(_), Some(image)) => {
            let rt = d.runtimes.containers().await?;
            let spec = containers::job_spec(
                config,
                svc,
                release,
                &format!("r{release}-{which}-{service}"),
                image,
                env,
                command,
                log_path,
            );
            rt.run_once(spec, HOOK_TIMEOUT).await
        }
        (Some(_), None) => {
            return Err(AgentError::internal(format!(
                "no image was prepared for the {which} hook of `{service}`"
            )))
        }
        (None, _) => {
            d.runtimes
                .process()
                .run_once(OneShot {
                    command: command.to_string(),
                    workdir: crate::snapshot::workdir(&d.layout, config, release, svc),
                    env,
                    timeout: HOOK_TIMEOUT,
                    log_path: Some(log_path),
                })
                .await
        }
    };
    let out = ran.map_err(|e| {
        let kind = if e.is_environmental() {
            crate::error::ErrorKind::Environment
        } else {
            crate::error::ErrorKind::Runtime
        };
        AgentError::new(
            kind,
            format!("{which} hook of {service} could not run: {e}"),
        )
    })?;
    let tail: Vec<&str> = out.output.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let tail = tail.join("\n");
    match (out.timed_out, out.exit_code) {
        (true, _) => Err(AgentError::runtime(format!(
            "{which} hook of {service} (`{command}`) timed out after {}s\n{tail}",
            HOOK_TIMEOUT.as_secs()
        ))),
        (false, Some(0)) => Ok(()),
        (false, code) => Err(AgentError::runtime(format!(
            "{which} hook of {service} (`{command}`) failed with {}\n{tail}",
            code.map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "a signal".into())
        ))),
    }
}
