//! The agent's Unix socket: one request per connection, answered with JSON-line frames. The
//! boundary between the agent and the wire: requests are dispatched to the agent here, and
//! its errors and reports become wire types here (`wire.rs` holds the conversions).
//!
//! Every connection is its own task, so a slow or broken client cannot hold up another; a
//! client that disconnects does not cancel the operation it started (a deploy always runs to
//! its end, success or rollback). Started last, after the committed release runs; stopped
//! first, and then the socket file is removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dockhand_api::{ApiError, ErrorCode, Frame, Pong, Progress, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::{logs, status, wire, Agent};

const MAX_REQUEST: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails if another agent answers on `path`; removes a stale socket file otherwise.
pub fn refuse_if_running(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(AgentError::usage(format!(
            "another dockhand agent is already running on {}; stop it first, or use `dockhand status` to talk to it",
            path.display()
        )));
    }
    std::fs::remove_file(path).map_err(|e| {
        AgentError::environment(format!(
            "failed to remove the stale socket {}: {e}",
            path.display()
        ))
    })
}

/// The socket server subsystem.
pub struct Server {
    agent: Weak<Agent>,
    path: PathBuf,
    listener: Mutex<Option<UnixListener>>,
}

impl Server {
    /// Binds the socket with owner-only (or root:`group` 0660) permissions.
    pub fn bind(agent: &Arc<Agent>, path: &Path, group: Option<&str>) -> Result<Server> {
        let env = |what: String| AgentError::environment(what);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| env(format!("failed to create {}: {e}", dir.display())))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| env(format!("failed to listen on {}: {e}", path.display())))?;
        let mode = match group {
            None => 0o600,
            Some(group) => {
                let gid = nix::unistd::Group::from_name(group)
                    .ok()
                    .flatten()
                    .map(|g| g.gid)
                    .ok_or_else(|| {
                        AgentError::usage(format!(
                            "the group `{group}` does not exist; create it with `groupadd {group}`"
                        ))
                    })?;
                nix::unistd::chown(path, None, Some(gid)).map_err(|e| {
                    env(format!(
                        "failed to give {} to group {group}: {e}",
                        path.display()
                    ))
                })?;
                0o660
            }
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            env(format!(
                "failed to set permissions of {}: {e}",
                path.display()
            ))
        })?;
        Ok(Server {
            agent: Arc::downgrade(agent),
            path: path.to_path_buf(),
            listener: Mutex::new(Some(listener)),
        })
    }
}

impl Subsystem for Server {
    fn name(&self) -> &'static str {
        "socket server"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let listener = self
                .listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let listener = match listener {
                Some(l) => l,
                // Run again after a failure: bind anew on the same path.
                None => {
                    let _ = std::fs::remove_file(&self.path);
                    UnixListener::bind(&self.path).map_err(|e| {
                        AgentError::environment(format!(
                            "failed to listen on {}: {e}",
                            self.path.display()
                        ))
                    })?
                }
            };
            ctx.ready();
            loop {
                tokio::select! {
                    _ = ctx.shutdown.wait() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let Some(agent) = self.agent.upgrade() else { break };
                            tokio::spawn(async move { handle(agent, stream).await });
                        }
                        Err(e) => {
                            tracing::warn!("socket accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            let _ = std::fs::remove_file(&self.path);
            Ok(())
        })
    }
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
            Err(e) => Frame::Error(e.into_api()),
        },
        Err(e) => Frame::Error(e),
    };
    let _ = tx.send(final_frame);
    drop(tx);
    let _ = writer.await;
    watcher.abort();
}

pub(crate) async fn dispatch(
    agent: &Arc<Agent>,
    req: Request,
    tx: &mpsc::UnboundedSender<Frame>,
    hangup: watch::Receiver<bool>,
) -> Result<serde_json::Value> {
    let sink = |p: Progress| {
        let _ = tx.send(Frame::Progress(p));
    };
    let value = match req {
        Request::Ping => to_value(Pong {
            app: agent
                .deployer
                .fleet
                .serving_config()
                .map(|c| c.app.clone())
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        }),
        Request::Status => to_value(status::report(agent).await?),
        Request::Top => to_value(status::top(agent)),
        Request::Certs => to_value(agent.certs.report()),
        Request::CertsRenew { host, requested_by } => {
            agent.deployer.events.info(
                crate::events::EventKind::Certificate,
                None,
                None,
                &format!(
                    "renewal of {} requested by {requested_by}",
                    host.as_deref().unwrap_or("every managed certificate")
                ),
            );
            sink(Progress {
                step: "renew".into(),
                message: format!(
                    "renewing {} (requested by {requested_by})",
                    host.as_deref().unwrap_or("every managed certificate")
                ),
                service: None,
            });
            to_value(agent.certs.renew(host.as_deref()).await?)
        }
        Request::Backup(req) => agent.backup(req, &sink).await?,
        Request::Maintenance {
            enable,
            service,
            requested_by,
        } => to_value(agent.maintenance(enable, service.as_deref(), &requested_by)?),
        Request::Alerts(req) => to_value(match req {
            dockhand_api::AlertsRequest::List => agent.alerts.report(),
            dockhand_api::AlertsRequest::Test { .. } => agent.alerts.test().await?,
            dockhand_api::AlertsRequest::Silence {
                rule,
                seconds,
                requested_by,
            } => agent.alerts.silence(
                &rule,
                std::time::Duration::from_secs(seconds),
                &requested_by,
            )?,
        }),
        Request::Dashboard(dockhand_api::DashboardRequest::Login { role, requested_by }) => {
            let Some(dashboard) = &agent.dashboard else {
                return Err(AgentError::usage(
                    "the dashboard is off ([dashboard] enabled = false); turn it on in dockhand.toml, deploy, and restart the agent",
                ));
            };
            let login = dashboard
                .login(role, &requested_by)
                .map_err(AgentError::runtime)?;
            agent.deployer.events.info(
                crate::events::EventKind::Dashboard,
                None,
                None,
                &format!(
                    "a dashboard login link ({}) was made for {requested_by}",
                    role.as_str()
                ),
            );
            to_value(login)
        }
        Request::Metrics(req) => to_value(dockhand_api::MetricsReport {
            series: agent
                .monitor
                .series(&req.series, Duration::from_secs(req.window_secs))
                .into_iter()
                .map(|(name, points)| dockhand_api::SeriesPoints { name, points })
                .collect(),
        }),
        Request::DbUpgrade {
            database,
            requested_by,
        } => to_value(agent.db_upgrade(&database, &requested_by, &sink).await?),
        Request::Deploy {
            requested_by,
            images,
            revision,
            canary,
        } => to_value(wire::deploy_report(
            agent
                .deploy(
                    &requested_by,
                    &images,
                    revision.as_deref(),
                    canary.as_ref(),
                    &sink,
                )
                .await?,
        )),
        Request::Rollback {
            release,
            requested_by,
        } => to_value(wire::deploy_report(
            agent.rollback(release, &requested_by, &sink).await?,
        )),
        Request::Reload { requested_by } => to_value(
            agent
                .reload(&requested_by, &sink)
                .await?
                .map(wire::deploy_report),
        ),
        Request::ReleaseConfig { release } => {
            let store = &agent.deployer.store;
            let found = match release {
                Some(id) => store.release(id)?,
                None => store.current_release()?,
            };
            let Some(r) = found else {
                return Err(AgentError::not_found(match release {
                    Some(id) => format!("no release {id}; `dockhand releases` lists them"),
                    None => "nothing is deployed yet".to_string(),
                }));
            };
            if r.config.is_empty() {
                return Err(AgentError::not_found(format!(
                    "release {} was pruned: its configuration is no longer kept",
                    r.id
                )));
            }
            // Kept without secret values; redacted all the same, as every answer is.
            let text = agent.deployer.events.redactor().redact(&r.config);
            let config = serde_json::from_str(&text).map_err(|e| {
                AgentError::internal(format!(
                    "the configuration of release {} does not read as JSON ({e})",
                    r.id
                ))
            })?;
            to_value(dockhand_api::ReleaseConfig {
                release: r.id,
                config,
            })
        }
        Request::Releases => {
            let releases = agent.deployer.store.releases(100)?;
            to_value(releases.iter().map(wire::release_info).collect::<Vec<_>>())
        }
        Request::Events { limit, follow } => {
            let events = &agent.deployer.events;
            // Subscribed before the history is read, so nothing recorded in between is lost.
            let live = follow.then(|| events.subscribe());
            let history: Vec<_> = agent
                .deployer
                .store
                .events(limit)?
                .into_iter()
                .map(|mut e| {
                    e.message = events.redactor().redact(&e.message);
                    wire::event(e)
                })
                .collect();
            match live {
                None => to_value(history),
                Some(live) => {
                    follow_events(history, live, tx, hangup).await;
                    serde_json::Value::Null
                }
            }
        }
        Request::Logs(req) if req.access => {
            let layout = &agent.deployer.layout;
            let (lines, end) = crate::access::read(layout, &req);
            for entry in lines {
                let _ = tx.send(Frame::Log(entry));
            }
            if req.follow {
                crate::access::follow(layout, &req, end, tx, hangup).await;
            }
            serde_json::Value::Null
        }
        Request::Logs(req) => {
            let filter = logs::filter(
                &agent.deployer.layout,
                agent.deployer.fleet.serving_config().as_deref(),
                &req,
            )?;
            let redactor = agent.deployer.events.redactor();
            for entry in logs::read(&agent.deployer.layout, redactor, &filter) {
                let _ = tx.send(Frame::Log(entry));
            }
            if req.follow {
                logs::follow(&agent.deployer.layout, redactor, &filter, tx, hangup).await;
            }
            serde_json::Value::Null
        }
        Request::Exec { service, argv } => {
            let d = &agent.deployer;
            let x = crate::exec::Exec {
                fleet: &d.fleet,
                runtimes: &d.runtimes,
                redactor: d.events.redactor(),
                layout: &d.layout,
            };
            to_value(crate::exec::run(x, &service, &argv, tx, hangup).await?)
        }
        Request::Tasks(req) => tasks(agent, req, tx).await?,
        Request::Update(req) => {
            use dockhand_api::UpdateRequest as U;
            let u = &agent.updater;
            match req {
                U::Status => to_value(u.status()?),
                U::Pause { requested_by } => to_value(u.set_paused(true, &requested_by)?),
                U::Resume { requested_by } => to_value(u.set_paused(false, &requested_by)?),
                U::Now { requested_by } => {
                    sink(Progress {
                        step: "check".into(),
                        message: "checking the remote for a new commit".into(),
                        service: None,
                    });
                    to_value(u.check(&requested_by, true).await?)
                }
            }
        }
    };
    Ok(value)
}

/// `dockhand tasks` and `dockhand run`.
async fn tasks(
    agent: &Arc<Agent>,
    req: dockhand_api::TaskRequest,
    tx: &mpsc::UnboundedSender<Frame>,
) -> Result<serde_json::Value> {
    use dockhand_api::TaskRequest as T;
    let tasks = &agent.tasks;
    Ok(match req {
        T::List => to_value(tasks.list()?),
        T::History { task, limit } => to_value(tasks.history(&task, limit)?),
        T::Run {
            task,
            force,
            requested_by,
        } => {
            tracing::info!(task = %task, requested_by = %requested_by, "task run requested");
            let trigger = crate::tasks::Trigger {
                kind: dockhand_state::TaskTrigger::Manual,
                force,
                stream: Some(tx),
            };
            to_value(tasks.run(&task, trigger).await?)
        }
        T::Command {
            service,
            argv,
            requested_by,
        } => to_value(tasks.command(&service, &argv, &requested_by, tx).await?),
    })
}

/// Sends `history`, then every event recorded after it, until the client hangs up.
async fn follow_events(
    history: Vec<dockhand_api::Event>,
    mut live: tokio::sync::broadcast::Receiver<dockhand_state::Event>,
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut last = history.last().map(|e| e.id).unwrap_or(0);
    for e in history {
        let _ = tx.send(Frame::Event(e));
    }
    loop {
        tokio::select! {
            _ = hangup.wait_for(|gone| *gone) => return,
            got = live.recv() => match got {
                // Recorded events are redacted already.
                Ok(e) if e.id > last => {
                    last = e.id;
                    if tx.send(Frame::Event(wire::event(e))).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let _ = tx.send(Frame::Progress(Progress {
                        step: "lagged".into(),
                        message: format!("{n} event(s) were recorded faster than they were read and are not shown here; `dockhand events` lists them"),
                        service: None,
                    }));
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn to_value(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
