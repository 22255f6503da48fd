//! The web dashboard as one of the agent's subsystems (the dashboard itself is the
//! `dockhand_dashboard` crate). Its [`Backend`] is the socket server's dispatch, called in
//! process: a page reads and an action performs exactly the request a client would send,
//! with the same checks, locks, redaction and events.

use std::sync::{Arc, Weak};

use dockhand_api::{ApiError, Frame, Request};
use dockhand_dashboard::{Backend, BoxFuture as DashFuture, DashboardHandle, Settings};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::{server, Agent};

/// The `[dashboard]` settings the agent starts with: the committed release's (like
/// `[proxy]`). In debug builds `DOCKHAND_DASHBOARD_LISTEN` replaces `listen`, so parallel
/// tests each listen on a port of their own; release builds never read it.
pub fn settings(config: &dockhand_config::AppConfig) -> (bool, Settings) {
    let mut listen = config.dashboard.listen;
    if cfg!(debug_assertions) {
        if let Some(addr) = std::env::var("DOCKHAND_DASHBOARD_LISTEN")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            listen = addr;
        }
    }
    (
        config.dashboard.enabled,
        Settings {
            listen,
            session: config.dashboard.session,
        },
    )
}

/// The subsystem: listens on the configured address and serves until the agent stops.
pub struct DashboardService {
    agent: Weak<Agent>,
    handle: DashboardHandle,
}

impl DashboardService {
    pub fn new(agent: &Arc<Agent>, handle: DashboardHandle) -> DashboardService {
        DashboardService {
            agent: Arc::downgrade(agent),
            handle,
        }
    }
}

impl Subsystem for DashboardService {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let addr = self.handle.settings().listen;
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    // Not worth stopping the agent for: said in `status`, and in
                    // `dockhand dashboard`'s answer.
                    ctx.degraded(format!(
                        "cannot listen on {addr}: {e}; set another address in [dashboard] listen, or enabled = false"
                    ));
                    ctx.shutdown.wait().await;
                    return Ok(());
                }
            };
            ctx.ready();
            let backend: Arc<dyn Backend> = Arc::new(Dispatch {
                agent: self.agent.clone(),
            });
            let mut stop = ctx.shutdown.clone();
            dockhand_dashboard::serve(self.handle.clone(), backend, listener, async move {
                stop.wait().await
            })
            .await
            .map_err(|e| AgentError::runtime(format!("the dashboard stopped serving: {e}")))
        })
    }
}

/// The socket server's dispatch, in process.
struct Dispatch {
    agent: Weak<Agent>,
}

impl Backend for Dispatch {
    fn call(
        &self,
        request: Request,
        frames: mpsc::UnboundedSender<Frame>,
        hangup: watch::Receiver<bool>,
    ) -> DashFuture<std::result::Result<serde_json::Value, ApiError>> {
        let agent = self.agent.upgrade();
        Box::pin(async move {
            let Some(agent) = agent else {
                return Err(AgentError::runtime("the agent is stopping").into_api());
            };
            server::dispatch(&agent, request, &frames, hangup)
                .await
                .map_err(AgentError::into_api)
        })
    }
}
