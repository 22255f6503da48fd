//! `exec`: run a command in a service's environment and working directory, streaming its
//! output back to the client.

use std::time::Duration;

use dockhand_api::{ApiError, ErrorCode, ExecResult, Frame};
use dockhand_runtime::OneShot;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::{instances, internal, Agent};

/// The longest an `exec` may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

pub async fn run(
    agent: &Agent,
    service: &str,
    argv: &[String],
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) -> Result<ExecResult, ApiError> {
    if argv.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "no command given: use `dockhand exec SERVICE -- COMMAND [ARGS…]`",
        ));
    }
    let (config, release) = {
        let live = agent.live_lock();
        let active = live.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "nothing is deployed yet; run `dockhand deploy` first",
            )
        })?;
        (active.config.clone(), active.id)
    };
    let svc = config.services.get(service).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no service `{service}`; services: {}",
                config
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let secrets = instances::secrets_for(agent, &config)?;
    let env = instances::service_env(&config, svc, release, secrets.as_ref())?;
    let mut child = agent
        .runtime
        .spawn_attached(OneShot {
            command: shell_join(argv),
            workdir: svc.workdir.clone(),
            env,
            timeout: EXEC_TIMEOUT,
            log_path: None,
        })
        .map_err(internal)?;
    drop(child.stdin.take());
    let out = child.stdout.take().map(|s| pump(s, "out", tx.clone()));
    let err = child.stderr.take().map(|s| pump(s, "err", tx.clone()));
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
    stream: &'static str,
    tx: mpsc::UnboundedSender<Frame>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let data = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let _ = tx.send(Frame::Output {
                        stream: stream.into(),
                        data,
                    });
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
