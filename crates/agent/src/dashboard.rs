//! The web dashboard as one of the agent's subsystems (the dashboard itself is the
//! `dockhand_dashboard` crate). Its [`Backend`] is the socket server's dispatch, called in
//! process: a page reads and an action performs exactly the request a client would send,
//! with the same checks, locks, redaction and events.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

use dockhand_api::{ApiError, Frame, Request};
use dockhand_dashboard::{
    Backend, BoxFuture as DashFuture, DashboardHandle, PublicRoute, Settings,
};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::{server, Agent};

/// The proxy backend id of the dashboard's route listener.
const ROUTE_BACKEND_ID: u64 = crate::routes::backend_ids::DASHBOARD;

/// The `[dashboard]` settings the agent starts with: the committed release's (like
/// `[proxy]`). In debug builds `DOCKHAND_DASHBOARD_LISTEN` replaces `listen`, so parallel
/// tests each listen on a port of their own; release builds never read it. `https` is the
/// proxy's bound HTTPS address (the port of a route's login links).
pub fn settings(
    config: &dockhand_config::AppConfig,
    https: Option<SocketAddr>,
) -> (bool, Settings) {
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
            route: match (&config.dashboard.route, https) {
                (Some(r), Some(https)) => Some(PublicRoute {
                    host: r.host.clone(),
                    https_port: https.port(),
                }),
                _ => None,
            },
        },
    )
}

/// The loopback listener the proxy's `[dashboard] route` forwards to, and its backend: bound
/// at the agent's start when the dashboard is on and has a route (else `None`).
pub fn bind_route(
    config: &dockhand_config::AppConfig,
) -> Result<Option<(std::net::TcpListener, Arc<dockhand_proxy::Backend>)>> {
    if !config.dashboard.enabled
        || config.dashboard.route.is_none()
        || config.proxy.https_listen.is_none()
    {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
        AgentError::environment(format!(
            "could not listen on a loopback port for the dashboard's route: {e}"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::environment(format!("dashboard route listener: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::environment(format!("dashboard route listener: {e}")))?;
    Ok(Some((
        listener,
        dockhand_proxy::Backend::new(ROUTE_BACKEND_ID, addr),
    )))
}

/// The subsystem: listens on the configured address and serves until the agent stops.
pub struct DashboardService {
    agent: Weak<Agent>,
    handle: DashboardHandle,
    /// The listener of `[dashboard] route` (see [`bind_route`]), taken when it starts.
    route: Mutex<Option<std::net::TcpListener>>,
}

impl DashboardService {
    pub fn new(
        agent: &Arc<Agent>,
        handle: DashboardHandle,
        route: Option<std::net::TcpListener>,
    ) -> DashboardService {
        DashboardService {
            agent: Arc::downgrade(agent),
            handle,
            route: Mutex::new(route),
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
            let route = self
                .route
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .filter(|_| self.handle.settings().route.is_some());
            // Served beside the local listener, and awaited with it at the stop.
            let mut route_task = None;
            if let Some(std_listener) = route {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        let (handle, backend) = (self.handle.clone(), backend.clone());
                        let mut stop = ctx.shutdown.clone();
                        route_task = Some(tokio::spawn(async move {
                            let served =
                                dockhand_dashboard::serve_route(handle, backend, l, async move {
                                    stop.wait().await
                                })
                                .await;
                            if let Err(e) = served {
                                tracing::warn!("the dashboard's route stopped serving: {e}");
                            }
                        }));
                    }
                    Err(e) => ctx.degraded(format!("cannot serve the dashboard's route: {e}")),
                }
            }
            let mut stop = ctx.shutdown.clone();
            let served =
                dockhand_dashboard::serve(self.handle.clone(), backend, listener, async move {
                    stop.wait().await
                })
                .await;
            if let Some(task) = route_task {
                let _ = task.await;
            }
            served.map_err(|e| AgentError::runtime(format!("the dashboard stopped serving: {e}")))
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
