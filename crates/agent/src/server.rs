//! The agent's Unix socket: one request per connection, answered with JSON-line frames.
//!
//! Every connection is its own task, so a slow or broken client cannot hold up another; a
//! client that disconnects does not cancel the operation it started (a deploy always runs to
//! its end, success or rollback).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use dockhand_api::{ApiError, ErrorCode, Frame, Pong, Progress, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::{logs, state_error, status, wire, Agent};

const MAX_REQUEST: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails if another agent answers on `path`; removes a stale socket file otherwise.
pub fn refuse_if_running(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "another dockhand agent is already running on {}; stop it first, or use `dockhand status` to talk to it",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("failed to remove the stale socket {}", path.display()))
}

/// Binds the socket with owner-only (or root:group) permissions and serves it until the
/// agent shuts down.
pub async fn spawn(agent: Arc<Agent>) -> anyhow::Result<()> {
    let path = agent.opts.socket_path.clone();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("failed to listen on {}", path.display()))?;
    let mode = match &agent.opts.socket_group {
        None => 0o600,
        Some(group) => {
            let gid = nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .map(|g| g.gid)
                .with_context(|| {
                    format!("the group `{group}` does not exist; create it with `groupadd {group}`")
                })?;
            nix::unistd::chown(&path, None, Some(gid))
                .with_context(|| format!("failed to give {} to group {group}", path.display()))?;
            0o660
        }
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set permissions of {}", path.display()))?;
    let mut stopped = agent.shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = async { let _ = stopped.wait_for(|s| *s).await; } => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let agent = agent.clone();
                        tokio::spawn(async move { handle(agent, stream).await });
                    }
                    Err(e) => {
                        tracing::warn!("socket accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
    Ok(())
}

async fn handle(agent: Arc<Agent>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut line = String::new();
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => serde_json::from_str::<Request>(&line).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("malformed request: {e}; are the client and agent the same version?"),
            )
        }),
        _ => return,
    };
    // The client sends nothing after its request: EOF means it hung up (Ctrl-C on
    // `logs -f` or `exec`), which ends a follow and kills an exec'd command.
    let (hangup_tx, hangup) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        let mut sink = [0u8; 64];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        let _ = hangup_tx.send(true);
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let mut bytes = serde_json::to_vec(&frame).unwrap_or_default();
            bytes.push(b'\n');
            let write = tokio::time::timeout(Duration::from_secs(30), write.write_all(&bytes));
            if !matches!(write.await, Ok(Ok(()))) {
                return;
            }
        }
    });
    let final_frame = match request {
        Ok(req) => match dispatch(&agent, req, &tx, hangup).await {
            Ok(data) => Frame::Result { data },
            Err(e) => Frame::Error(e),
        },
        Err(e) => Frame::Error(e),
    };
    let _ = tx.send(final_frame);
    drop(tx);
    let _ = writer.await;
    watcher.abort();
}

async fn dispatch(
    agent: &Arc<Agent>,
    req: Request,
    tx: &mpsc::UnboundedSender<Frame>,
    hangup: watch::Receiver<bool>,
) -> Result<serde_json::Value, ApiError> {
    let sink = |p: Progress| {
        let _ = tx.send(Frame::Progress(p));
    };
    let value = match req {
        Request::Ping => to_value(Pong {
            app: agent.live_config().map(|c| c.app).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        }),
        Request::Status => {
            let mut report = status::report(agent)?;
            report.databases = crate::containers::database_status(agent).await;
            to_value(report)
        }
        Request::DbUpgrade {
            database,
            requested_by,
        } => to_value(agent.db_upgrade(&database, &requested_by, &sink).await?),
        Request::Deploy { requested_by } => to_value(agent.deploy(&requested_by, &sink).await?),
        Request::Rollback {
            release,
            requested_by,
        } => to_value(agent.rollback(release, &requested_by, &sink).await?),
        Request::Reload { requested_by } => to_value(agent.reload(&requested_by, &sink).await?),
        Request::Releases => {
            let releases = agent.store.releases(100).map_err(state_error)?;
            to_value(
                releases
                    .iter()
                    .map(status::release_info)
                    .collect::<Vec<_>>(),
            )
        }
        Request::Events { limit } => {
            let mut events = agent.store.events(limit).map_err(state_error)?;
            for e in &mut events {
                e.message = agent.redact(&e.message);
            }
            to_value(events.into_iter().map(wire::event).collect::<Vec<_>>())
        }
        Request::Logs(req) => {
            let filter = logs::filter(agent, &req)?;
            for entry in logs::read(agent, &filter) {
                let _ = tx.send(Frame::Log(entry));
            }
            if req.follow {
                logs::follow(agent, &filter, tx, hangup).await;
            }
            serde_json::Value::Null
        }
        Request::Exec { service, argv } => {
            to_value(crate::exec::run(agent, &service, &argv, tx, hangup).await?)
        }
    };
    Ok(value)
}

fn to_value(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
