//! The HTTP side: routes, the login flow, sessions and CSRF checks on actions, security
//! headers on every answer, and the server-sent event streams. Pages are rendered by
//! `pages.rs` from API answers; this file decides who may see and do what.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Form, Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use dockhand_api::{
    ApiError, BackupRequest, DashboardRole, Frame, LogsRequest, Request, TaskRequest,
};
use futures_util::stream::{self, Stream};
use maud::Markup;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::{same_secret, Flash, LoginRefused, Session};
use crate::chart::Window;
use crate::{assets, now, pages, Backend, DashboardHandle};

const COOKIE: &str = "dockhand_session";
/// How often an open page is told to refresh its figures when nothing happened.
const TICK: Duration = Duration::from_secs(10);

/// Every page is sent with these.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) struct App {
    pub handle: DashboardHandle,
    pub backend: Arc<dyn Backend>,
    /// Turns true when the dashboard stops: open event streams end, so the graceful
    /// shutdown does not wait for browsers to go away.
    stopping: watch::Receiver<bool>,
    /// Served over HTTPS (through the proxy's route): the session cookie is `Secure`.
    secure: bool,
}

/// What a page handler knows about the browser asking.
pub(crate) struct Viewer {
    pub session: Session,
    /// Only the main content (a live refresh), not the whole page.
    pub partial: bool,
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    handle: DashboardHandle,
    backend: Arc<dyn Backend>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    handle.set_bound(Some(addr));
    let served = run(
        handle.clone(),
        backend,
        listener,
        Origin::Local(addr),
        shutdown,
    )
    .await;
    handle.set_bound(None);
    served
}

/// Serves the dashboard to the app's proxy on `listener` (a loopback port the proxy's
/// `[dashboard] route` forwards to) until `shutdown` resolves: only for the route's host,
/// only what the proxy received over HTTPS, with `Secure` session cookies.
pub async fn serve_route(
    handle: DashboardHandle,
    backend: Arc<dyn Backend>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(route) = handle.settings().route.clone() else {
        return Err(std::io::Error::other("the dashboard has no route"));
    };
    run(
        handle,
        backend,
        listener,
        Origin::Route(route.host),
        shutdown,
    )
    .await
}

/// Who a listener serves: browsers on this machine (by its address), or the proxy's route.
#[derive(Clone)]
enum Origin {
    Local(SocketAddr),
    /// The route's host.
    Route(String),
}

async fn run(
    handle: DashboardHandle,
    backend: Arc<dyn Backend>,
    listener: TcpListener,
    origin: Origin,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let app = Arc::new(App {
        handle,
        backend,
        stopping,
        secure: matches!(origin, Origin::Route(_)),
    });
    let router = Router::new()
        .route("/", get(overview))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/deploys", get(deploys))
        .route("/deploys/rollback", get(rollback_confirm).post(rollback))
        .route("/deploys/deploy", post(deploy))
        .route("/deploys/diff", get(diff))
        .route("/config", get(config))
        .route("/backups", get(backups))
        .route("/backups/run", post(backup_run))
        .route("/backups/verify", post(backup_verify))
        .route("/backups/restore", get(restore_confirm).post(restore))
        .route("/services/{name}", get(service))
        .route("/services/{name}/logs", get(service_logs))
        .route("/alerts", get(alerts))
        .route("/alerts/silence", post(alerts_silence))
        .route("/alerts/test", post(alerts_test))
        .route("/tasks", get(tasks))
        .route("/tasks/run", post(task_run))
        .route("/certificates", get(certificates))
        .route("/events", get(events))
        .route("/live", get(live))
        .route("/assets/{file}", get(asset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(origin, guard))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
}

/// Refuses a request for another host name (DNS rebinding: a page of another site resolved
/// to this address), on the route's listener one the proxy did not receive over HTTPS, and
/// adds the security headers to every answer.
async fn guard(State(origin): State<Origin>, req: HttpRequest, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let host_ok = match &origin {
        Origin::Local(addr) => host.is_some_and(|h| host_allowed(h, *addr)),
        Origin::Route(name) => {
            // The proxy sets X-Forwarded-Proto itself, whatever the client sent.
            let https = req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
            https && host.is_some_and(|h| host_name(h).eq_ignore_ascii_case(name))
        }
    };
    let mut resp = if host_ok {
        next.run(req).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "unknown host name; open the dashboard by its address",
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The login link carries its token in the URL: never send it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// `localhost`, a loopback or the listening address, with or without a port.
fn host_allowed(host: &str, addr: SocketAddr) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == addr.ip() || addr.ip().is_unspecified())
}

/// A `Host` header's name: without its port, an IPv6 address without its brackets.
fn host_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((n, port))
            if !n.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.ends_with(']') =>
        {
            n
        }
        _ => host,
    };
    name.trim_start_matches('[').trim_end_matches(']')
}

// ---- the session ----

fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

/// The browser's session (its flash message taken), or the page that says how to log in.
// The error is the answer itself, built once per request: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn viewer(app: &App, headers: &HeaderMap, partial: bool) -> Result<Viewer, Response> {
    let id = cookie_id(headers).ok_or_else(logged_out)?;
    let mut auth = app.handle.auth();
    let s = auth.session(&id, now()).ok_or_else(logged_out)?;
    let session = Session {
        flash: if partial { None } else { s.flash.take() },
        ..s.clone()
    };
    Ok(Viewer { session, partial })
}

fn logged_out() -> Response {
    (StatusCode::UNAUTHORIZED, pages::logged_out()).into_response()
}

/// An action's checks: a session, its CSRF token, and the operator role.
#[allow(clippy::result_large_err)]
fn operator(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
    let Viewer { session, .. } = viewer(app, headers, true)?;
    if !same_secret(csrf, &session.csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            pages::refused("This form is stale or did not come from the dashboard (no valid CSRF token). Reload the page and try again."),
        )
            .into_response());
    }
    if session.role != DashboardRole::Operator {
        return Err((
            StatusCode::FORBIDDEN,
            pages::refused("Your session is a viewer's: it can read every page but perform no action. Ask for an operator's link: dockhand dashboard --role operator."),
        )
            .into_response());
    }
    Ok(session)
}

/// Who an action is recorded as.
fn requested_by(s: &Session) -> String {
    format!("{} (dashboard)", s.who)
}

/// Keeps the outcome of an action for the next page, and sends the browser there.
fn finish(app: &App, headers: &HeaderMap, to: &str, ok: bool, text: String) -> Response {
    if let Some(id) = cookie_id(headers) {
        if let Some(s) = app.handle.auth().session(&id, now()) {
            s.flash = Some(Flash { ok, text });
        }
    }
    Redirect::to(to).into_response()
}

// ---- calling the agent ----

impl App {
    /// One request through the backend, its frames dropped.
    pub async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T, ApiError> {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_hangup, hangup) = watch::channel(false);
        let value = self.backend.call(req, tx, hangup).await?;
        serde_json::from_value(value).map_err(|e| {
            ApiError::new(
                dockhand_api::ErrorCode::Internal,
                format!("the agent's answer did not read as expected ({e}); this is a bug"),
            )
        })
    }
}

fn page(v: &Viewer, body: Markup) -> Response {
    let mut resp = Html(body.into_string()).into_response();
    if v.partial {
        resp.headers_mut()
            .insert("x-dockhand-partial", HeaderValue::from_static("1"));
    }
    resp
}

struct Html(String);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.0).into_response()
    }
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    partial: Option<String>,
    /// The charts' span: `1h`, `24h` or `7d`.
    #[serde(default)]
    window: Option<String>,
}

impl PageQuery {
    fn partial(&self) -> bool {
        self.partial.is_some()
    }

    fn window(&self) -> Window {
        Window::parse(self.window.as_deref())
    }
}

// ---- pages ----

#[derive(Deserialize)]
struct LoginQuery {
    token: String,
}

async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    let secs = app.handle.settings().session.as_secs();
    let outcome = app.handle.auth().login(&q.token, secs, now());
    match outcome {
        Ok(id) => {
            let secure = if app.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={secs}{secure}"
            );
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(LoginRefused::Invalid) => (
            StatusCode::UNAUTHORIZED,
            pages::refused("This login link is unknown, used or expired: each link opens one session, within ten minutes. Run dockhand dashboard for a new one."),
        )
            .into_response(),
        Err(LoginRefused::RateLimited { retry_after }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after.to_string())],
            pages::refused(&format!("Too many failed logins: every login is refused for {retry_after} more seconds.")),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Ok(Viewer { session, .. }) = viewer(&app, &headers, true) {
        if same_secret(&f.csrf, &session.csrf) {
            if let Some(id) = cookie_id(&headers) {
                app.handle.auth().end(&id);
            }
        }
    }
    let mut resp = (StatusCode::OK, pages::refused("You are logged out.")).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(if app.secure {
            "dockhand_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        } else {
            "dockhand_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        }),
    );
    resp
}

macro_rules! viewer_or_return {
    ($app:expr, $headers:expr, $q:expr) => {
        match viewer(&$app, &$headers, $q.partial()) {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

async fn overview(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::overview(&app, &v, q.window()).await)
}

async fn deploys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::deploys(&app, &v).await)
}

#[derive(Deserialize)]
struct ReleaseQuery {
    release: i64,
}

async fn rollback_confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(r): Query<ReleaseQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, PageQuery::default());
    page(&v, pages::rollback_confirm(&app, &v, r.release).await)
}

#[derive(Deserialize)]
struct RollbackForm {
    #[serde(default)]
    csrf: String,
    release: i64,
}

async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<RollbackForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Rollback {
        release: Some(f.release),
        requested_by: requested_by(&s),
    };
    let (ok, text) = match app.call::<dockhand_api::DeployReport>(req).await {
        Ok(r) if r.succeeded => (true, format!("Rolled back: release {} serves.", r.release)),
        Ok(r) => (
            false,
            format!(
                "The rollback to release {} failed: {}",
                r.release, r.message
            ),
        ),
        Err(e) => (false, format!("The rollback failed: {}", e.message)),
    };
    finish(&app, &headers, "/deploys", ok, text)
}

async fn deploy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Deploy {
        requested_by: requested_by(&s),
        images: Default::default(),
        revision: None,
        canary: None,
    };
    let (ok, text) = match app.call::<dockhand_api::DeployReport>(req).await {
        Ok(r) if r.succeeded => (true, format!("Deployed: release {} serves.", r.release)),
        Ok(r) => (
            false,
            format!("The deploy of release {} failed: {}", r.release, r.message),
        ),
        Err(e) => (false, format!("The deploy failed: {}", e.message)),
    };
    finish(&app, &headers, "/deploys", ok, text)
}

#[derive(Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

async fn diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(d): Query<DiffQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, PageQuery::default());
    page(&v, pages::diff(&app, &v, d.from, d.to).await)
}

async fn config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::config(&app, &v).await)
}

async fn backups(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::backups(&app, &v).await)
}

async fn backup_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Backup(BackupRequest::Run {
        source: None,
        requested_by: requested_by(&s),
    });
    let (ok, text) = match app.call::<serde_json::Value>(req).await {
        Ok(r) => (
            true,
            format!("Backup {} taken.", r["id"].as_str().unwrap_or("?")),
        ),
        Err(e) => (false, format!("The backup failed: {}", e.message)),
    };
    finish(&app, &headers, "/backups", ok, text)
}

#[derive(Deserialize)]
struct BackupForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

async fn backup_verify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<BackupForm>,
) -> Response {
    if let Err(resp) = operator(&app, &headers, &f.csrf) {
        return resp;
    }
    let req = Request::Backup(BackupRequest::Verify {
        id: Some(f.id.clone()),
        identity: None,
    });
    let (ok, text) = match app.call::<serde_json::Value>(req).await {
        Ok(r) if r["passed"].as_bool() == Some(true) => (
            true,
            format!("Backup {} restored in a drill and checked.", f.id),
        ),
        Ok(_) => (
            false,
            format!(
                "The drill of backup {} failed; see its details below.",
                f.id
            ),
        ),
        Err(e) => (false, format!("The drill failed: {}", e.message)),
    };
    finish(&app, &headers, "/backups", ok, text)
}

#[derive(Deserialize)]
struct IdQuery {
    id: String,
}

async fn restore_confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<IdQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, PageQuery::default());
    page(&v, pages::restore_confirm(&app, &v, &q.id, None).await)
}

#[derive(Deserialize)]
struct RestoreForm {
    #[serde(default)]
    csrf: String,
    id: String,
    confirm: String,
}

async fn restore(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<RestoreForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let status: Result<dockhand_api::StatusReport, _> = app.call(Request::Status).await;
    let app_name = status.map(|s| s.app).unwrap_or_default();
    if app_name.is_empty() || f.confirm.trim() != app_name {
        let v = Viewer {
            session: s,
            partial: false,
        };
        let body = pages::restore_confirm(
            &app,
            &v,
            &f.id,
            Some("The name typed is not the app's: nothing was restored."),
        )
        .await;
        return (StatusCode::UNPROCESSABLE_ENTITY, page(&v, body)).into_response();
    }
    let req = Request::Backup(BackupRequest::Restore {
        id: f.id.clone(),
        source: None,
        identity: None,
        requested_by: requested_by(&s),
    });
    let (ok, text) = match app.call::<serde_json::Value>(req).await {
        Ok(_) => (true, format!("Backup {} restored.", f.id)),
        Err(e) => (false, format!("The restore failed: {}", e.message)),
    };
    finish(&app, &headers, "/backups", ok, text)
}

async fn service(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::service(&app, &v, &name, q.window()).await)
}

async fn alerts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::alerts(&app, &v).await)
}

#[derive(Deserialize)]
struct SilenceForm {
    #[serde(default)]
    csrf: String,
    rule: String,
    minutes: u64,
}

async fn alerts_silence(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<SilenceForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Alerts(dockhand_api::AlertsRequest::Silence {
        rule: f.rule.clone(),
        seconds: f.minutes.saturating_mul(60),
        requested_by: requested_by(&s),
    });
    let (ok, text) = match app.call::<serde_json::Value>(req).await {
        Ok(_) if f.minutes == 0 => (true, format!("The silence of {} is lifted.", f.rule)),
        Ok(_) => (
            true,
            format!("{} is silenced for {} minutes.", f.rule, f.minutes),
        ),
        Err(e) => (false, format!("Silencing failed: {}", e.message)),
    };
    finish(&app, &headers, "/alerts", ok, text)
}

async fn alerts_test(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Alerts(dockhand_api::AlertsRequest::Test {
        requested_by: requested_by(&s),
    });
    let (ok, text) = match app.call::<dockhand_api::AlertsReport>(req).await {
        Ok(r) if r.test.iter().all(|c| c.error.is_none()) => (
            true,
            format!("A test notice went to {} channel(s).", r.test.len()),
        ),
        Ok(r) => (
            false,
            format!(
                "The test notice failed on: {}",
                r.test
                    .iter()
                    .filter(|c| c.error.is_some())
                    .map(|c| c.channel.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => (false, format!("The test failed: {}", e.message)),
    };
    finish(&app, &headers, "/alerts", ok, text)
}

async fn tasks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::tasks(&app, &v).await)
}

#[derive(Deserialize)]
struct TaskForm {
    #[serde(default)]
    csrf: String,
    task: String,
}

async fn task_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<TaskForm>,
) -> Response {
    let s = match operator(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let req = Request::Tasks(TaskRequest::Run {
        task: f.task.clone(),
        force: false,
        requested_by: requested_by(&s),
    });
    let (ok, text) = match app.call::<dockhand_api::RunResult>(req).await {
        Ok(r) if r.exit_code == Some(0) => (true, format!("Task {} ran and succeeded.", f.task)),
        Ok(r) => (
            false,
            format!(
                "Task {} failed (exit code {}).",
                f.task,
                r.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
        ),
        Err(e) => (
            false,
            format!("Task {} could not run: {}", f.task, e.message),
        ),
    };
    finish(&app, &headers, "/tasks", ok, text)
}

async fn certificates(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::certificates(&app, &v).await)
}

async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = viewer_or_return!(app, headers, q);
    page(&v, pages::events(&app, &v).await)
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((mime, body)) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, pages::refused("No such page.")).into_response()
}

// ---- server-sent events ----

/// The live feed of a page: every event the agent records (`event`), and a `tick` now and
/// then so figures refresh when nothing happens.
async fn live(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(resp) = viewer(&app, &headers, true) {
        return resp;
    }
    let frames = follow(
        &app,
        Request::Events {
            limit: 0,
            follow: true,
        },
    );
    sse(&app, frames, |frame| match frame {
        Frame::Event(e) => Some((
            "event",
            serde_json::json!({
                "id": e.id, "ts": e.ts, "level": e.level.as_str(), "kind": e.kind,
                "service": e.service, "release": e.release, "message": e.message,
            }),
        )),
        _ => None,
    })
}

/// A service's log lines as they are written (after the last 100 of each instance).
async fn service_logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(resp) = viewer(&app, &headers, true) {
        return resp;
    }
    let frames = follow(
        &app,
        Request::Logs(LogsRequest {
            service: Some(name),
            tail: Some(100),
            follow: true,
            ..Default::default()
        }),
    );
    sse(&app, frames, |frame| match frame {
        Frame::Log(l) => Some((
            "log",
            serde_json::json!({
                "ts": l.ts, "instance": l.instance, "stream": l.stream.as_str(),
                "level": l.level.map(|l| l.as_str()), "text": l.text,
            }),
        )),
        _ => None,
    })
}

/// Starts a following request; its frames arrive on the receiver until it is dropped (the
/// browser went away), which hangs the request up.
fn follow(app: &Arc<App>, req: Request) -> Follow {
    let (tx, rx) = mpsc::unbounded_channel();
    let (hangup_tx, hangup) = watch::channel(false);
    let call = app.backend.call(req, tx, hangup);
    tokio::spawn(async move {
        if let Err(e) = call.await {
            tracing::debug!("dashboard follow ended: {}", e.message);
        }
    });
    Follow {
        rx,
        _hangup: hangup_tx,
    }
}

struct Follow {
    rx: mpsc::UnboundedReceiver<Frame>,
    /// Dropped with the stream: the request sees the client hang up.
    _hangup: watch::Sender<bool>,
}

fn sse(
    app: &App,
    follow: Follow,
    pick: impl Fn(Frame) -> Option<(&'static str, serde_json::Value)> + Send + 'static,
) -> Response {
    let ticks = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    let stream = events_stream(follow, ticks, app.stopping.clone(), pick);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn events_stream(
    follow: Follow,
    ticks: tokio::time::Interval,
    stopping: watch::Receiver<bool>,
    pick: impl Fn(Frame) -> Option<(&'static str, serde_json::Value)> + Send + 'static,
) -> impl Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
    // The first message opens the stream at once (the browser's `open` event).
    let state = (follow, ticks, stopping, pick, true);
    stream::unfold(
        state,
        |(mut follow, mut ticks, mut stopping, pick, first)| async move {
            if first {
                let msg = bytes::Bytes::from_static(b": open\n\nevent: hello\ndata: {}\n\n");
                return Some((Ok(msg), (follow, ticks, stopping, pick, false)));
            }
            loop {
                let msg = tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return None,
                    frame = follow.rx.recv() => match pick(frame?) {
                        Some((name, data)) => {
                            bytes::Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
                        }
                        None => continue,
                    },
                    _ = ticks.tick() => bytes::Bytes::from_static(b"event: tick\ndata: {}\n\n"),
                };
                return Some((Ok(msg), (follow, ticks, stopping, pick, false)));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_host_names_are_served() {
        let addr: SocketAddr = "127.0.0.1:9465".parse().unwrap();
        for ok in [
            "127.0.0.1:9465",
            "localhost:9465",
            "LOCALHOST",
            "[::1]:9465",
            "127.0.0.1",
        ] {
            assert!(host_allowed(ok, addr), "{ok}");
        }
        for bad in ["evil.example:9465", "example.org", "10.0.0.1:9465", ""] {
            assert!(!host_allowed(bad, addr), "{bad}");
        }
    }

    #[test]
    fn a_host_headers_name_is_without_its_port() {
        assert_eq!(host_name("ops.example.com:8443"), "ops.example.com");
        assert_eq!(host_name("ops.example.com"), "ops.example.com");
        assert_eq!(host_name("[::1]:9465"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dockhand_session=abc; b=2"),
        );
        assert_eq!(cookie_id(&h).as_deref(), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("dockhand_sessionx=abc"),
        );
        assert_eq!(cookie_id(&h), None);
    }
}
