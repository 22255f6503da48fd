//! `exec`: run a command in a service's environment and working directory, streaming its
//! output back to the client.

use std::time::Duration;

use dockhand_api::{ExecResult, Frame, OutputStream};
use dockhand_runtime::OneShot;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::fleet::Fleet;
use crate::runtimes::Runtimes;
use crate::secrets::Redactor;
use crate::wire;

/// The longest an `exec` may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

/// What `exec` acts through.
pub struct Exec<'a> {
    pub fleet: &'a Fleet,
    pub runtimes: &'a Runtimes,
    pub redactor: &'a Redactor,
    pub layout: &'a crate::layout::StateLayout,
}

pub async fn run(
    x: Exec<'_>,
    service: &str,
    argv: &[String],
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) -> Result<ExecResult> {
    if argv.is_empty() {
        return Err(AgentError::usage(
            "no command given: use `dockhand exec SERVICE -- COMMAND [ARGS…]`",
        ));
    }
    let (config, release) = x
        .fleet
        .with_serving(|s| s.map(|a| (a.config.clone(), a.id)))
        .ok_or_else(|| {
            AgentError::not_found("nothing is deployed yet; run `dockhand deploy` first")
        })?;
    if config.databases.contains_key(service) {
        // Found by its labels, like every container the agent acts on.
        let rt = x.runtimes.containers().await?;
        let found = rt
            .find_database(&config.app, service)
            .await?
            .ok_or_else(|| {
                AgentError::runtime(format!(
                    "database `{service}` has no container; `dockhand deploy` creates it"
                ))
            })?;
        return in_container(&x, &found.name, argv, Vec::new(), tx, hangup).await;
    }
    let svc = config.services.get(service).ok_or_else(|| {
        AgentError::not_found(format!(
            "no service `{service}`; services: {}",
            config
                .services
                .keys()
                .chain(config.databases.keys())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if svc.container.is_some() {
        // Into a running replica of the current release: its env is already the service's.
        let container = x.fleet.with_serving(|live| {
            live.and_then(|a| {
                a.instances
                    .iter()
                    .filter(|i| i.service == service)
                    .filter(|i| {
                        i.instance.status().state == dockhand_runtime::InstanceState::Running
                    })
                    .find_map(|i| i.container.clone())
            })
        });
        let Some(container) = container else {
            return Err(AgentError::runtime(format!(
                "no replica of `{service}` is running; `dockhand status` shows why"
            )));
        };
        return in_container(&x, &container, argv, Vec::new(), tx, hangup).await;
    }
    let secrets = crate::secrets::load(&config, x.redactor)?;
    let env = crate::deploy::service_env(&config, svc, release, &secrets)?;
    let mut child = x
        .runtimes
        .process()
        .spawn_attached(OneShot {
            command: shell_join(argv),
            workdir: crate::snapshot::workdir(x.layout, &config, release, svc),
            env,
            timeout: EXEC_TIMEOUT,
            log_path: None,
        })
        .map_err(|e| AgentError::from(e).context("exec"))?;
    drop(child.stdin.take());
    let out = child
        .stdout
        .take()
        .map(|s| pump(s, OutputStream::Out, tx.clone()));
    let err = child
        .stderr
        .take()
        .map(|s| pump(s, OutputStream::Err, tx.clone()));
    let status = tokio::select! {
        status = tokio::time::timeout(EXEC_TIMEOUT, child.wait()) => status,
        // The client went away (Ctrl-C): the command goes too.
        _ = async { let _ = hangup.wait_for(|gone| *gone).await; } => {
            kill_group(&child);
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Ok(ExecResult { exit_code: None, timed_out: false });
        }
    };
    let timed_out = status.is_err();
    if timed_out {
        kill_group(&child);
    }
    for task in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(ExecResult {
        exit_code: status.ok().and_then(|s| s.ok()).and_then(|s| s.code()),
        timed_out,
    })
}

/// Runs `argv` (no shell) in a running container, streaming its output.
async fn in_container(
    x: &Exec<'_>,
    container: &str,
    argv: &[String],
    env: Vec<(String, String)>,
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) -> Result<ExecResult> {
    let rt = x.runtimes.containers().await?;
    let mut stream = rt
        .exec_stream(container, argv.to_vec(), env, EXEC_TIMEOUT)
        .await?;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            // The client went away: dropping the stream kills the command.
            _ = async { let _ = hangup.wait_for(|gone| *gone).await; } => {
                return Ok(ExecResult { exit_code: None, timed_out: false });
            }
        };
        match event {
            Some(dockhand_runtime::ExecEvent::Line(stream, line)) => {
                let _ = tx.send(Frame::Output {
                    stream: wire::output_stream(stream),
                    data: format!("{}\n", x.redactor.redact(&line)),
                });
            }
            Some(dockhand_runtime::ExecEvent::Exit { code, timed_out }) => {
                return Ok(ExecResult {
                    exit_code: code,
                    timed_out,
                })
            }
            None => {
                return Ok(ExecResult {
                    exit_code: None,
                    timed_out: false,
                })
            }
        }
    }
}

/// SIGKILL to the command's whole process group (it runs in its own).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-(pid as i32)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn pump(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    stream: OutputStream,
    tx: mpsc::UnboundedSender<Frame>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let data = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let _ = tx.send(Frame::Output { stream, data });
                }
            }
        }
    })
}

/// Joins arguments into one `sh -c` command line, quoting each.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_join_quotes_what_the_shell_would_split() {
        let argv: Vec<String> = ["echo", "a b", "it's", "$HOME", "x=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            super::shell_join(&argv),
            r#"echo 'a b' 'it'\''s' '$HOME' x=1"#
        );
    }
}
