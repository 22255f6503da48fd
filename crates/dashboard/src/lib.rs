//! The web dashboard: the app at a glance in a browser, with its actions (deploy, rollback,
//! backups, tasks, alerts) — served by the agent on a local address.
//!
//! Pages are HTML rendered on the server (`maud`), with a little plain JavaScript for live
//! updates over server-sent events and the assets embedded in the binary (`assets.rs`). The
//! dashboard has no logic of the agent's: every page reads, and every action performs, one
//! request of the agent's API through a [`Backend`] — in the agent, the same dispatch the
//! Unix socket uses — so an action in the browser is exactly a request a CLI could make, and
//! is recorded in the event log with who made it.
//!
//! Access (`auth.rs`): `dockhand dashboard` asks the agent for a one-time login link
//! ([`DashboardHandle::login`]); using it opens a session (an `HttpOnly`, `SameSite=Strict`
//! cookie) with a role, viewer or operator; every action is a POST carrying the session's
//! CSRF token; failed logins are rate-limited. Pages are sent with a strict
//! `Content-Security-Policy` and never hold a secret value: what they show comes from the
//! API, which redacts secrets.
//!
//! Published on a route of the app's proxy (`[dashboard] route`), it is also served on a
//! second loopback listener that only the proxy forwards to ([`serve_route`]): there it
//! answers only to the route's host, only to requests the proxy received over HTTPS, and its
//! session cookie is `Secure`. A login link then names the public host too.

mod assets;
mod auth;
pub mod chart;
mod pages;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dockhand_api::{ApiError, DashboardLogin, DashboardRole, Frame, Request};
use tokio::sync::{mpsc, watch};

pub use server::{serve, serve_route};

/// A boxed future, as [`Backend::call`] returns.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Performs API requests for the dashboard: in the agent, the socket server's dispatch.
pub trait Backend: Send + Sync + 'static {
    /// Answers `request` as the socket would: frames (progress, events, log lines) on
    /// `frames`, then the result. A follow (`events`/`logs` with `follow`) runs until
    /// `hangup` turns true.
    fn call(
        &self,
        request: Request,
        frames: mpsc::UnboundedSender<Frame>,
        hangup: watch::Receiver<bool>,
    ) -> BoxFuture<Result<serde_json::Value, ApiError>>;
}

/// What the dashboard is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// How long a session lasts.
    pub session: Duration,
    /// Also published through the app's proxy.
    pub route: Option<PublicRoute>,
}

/// Where the proxy publishes the dashboard: `https://HOST[:PORT]/`.
#[derive(Debug, Clone)]
pub struct PublicRoute {
    pub host: String,
    /// The proxy's HTTPS port (left out of URLs when 443).
    pub https_port: u16,
}

impl PublicRoute {
    /// `https://HOST[:PORT]`.
    pub fn origin(&self) -> String {
        if self.https_port == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, self.https_port)
        }
    }
}

/// What the agent keeps of the dashboard: login links are made here. Cheap to clone.
#[derive(Clone)]
pub struct DashboardHandle {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    auth: Mutex<auth::Auth>,
    /// The address it listens on, once bound.
    bound: Mutex<Option<SocketAddr>>,
}

impl DashboardHandle {
    pub fn new(settings: Settings) -> DashboardHandle {
        DashboardHandle {
            shared: Arc::new(Shared {
                settings,
                auth: Mutex::new(auth::Auth::default()),
                bound: Mutex::new(None),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The address it listens on, once it does.
    pub fn bound(&self) -> Option<SocketAddr> {
        *self.shared.bound.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A one-time login link for `role` in the name of `who`; an error while the dashboard
    /// does not listen.
    pub fn login(&self, role: DashboardRole, who: &str) -> Result<DashboardLogin, String> {
        let Some(addr) = self.bound() else {
            return Err("the dashboard is not listening; see `dockhand status` for why (off in [dashboard], or its address is taken)".into());
        };
        let token = self.auth().issue(role, who, now());
        Ok(DashboardLogin {
            url: format!("http://{addr}/login?token={token}"),
            route_url: self
                .shared
                .settings
                .route
                .as_ref()
                .map(|r| format!("{}/login?token={token}", r.origin())),
            listen: addr.to_string(),
            role,
            expires_in_secs: auth::LOGIN_TTL_SECS,
        })
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, auth::Auth> {
        self.shared.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_bound(&self, addr: Option<SocketAddr>) {
        *self.shared.bound.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}

/// Unix seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
