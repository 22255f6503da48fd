//! Request routing and the plain (non-streaming) endpoints.
//!
//! Every route exists to let an integration test observe one proxy behaviour: which release
//! answered (`/`, `/version`, `x-version` on every response), what headers were forwarded
//! (`/headers`), that bodies stream both ways (`/upload`, `/sse`), timeouts and draining
//! (`/slow`), status passthrough (`/status/<code>`) and upgrades (`/ws`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::{say, sse, ws};

/// The response body every route returns.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the handlers share, fixed at startup.
#[derive(Debug)]
pub struct AppState {
    pub version: String,
    pub health_status: StatusCode,
    /// `REQUIRE_TABLE`: healthy only once this table exists in this SQLite file.
    pub require_table: Option<(std::path::PathBuf, String)>,
    /// `FAIL_PERCENT`: the share of requests answered with an injected 500.
    pub fail_percent: u64,
    /// Requests counted for `fail_percent` (all but `/health`).
    pub served: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// Whether the next counted request is one of the injected failures: request `n` fails
    /// when `n * p / 100` steps up, so every 100 requests in a row hold exactly `p` failures.
    fn inject_failure(&self) -> bool {
        let p = self.fail_percent;
        if p == 0 {
            return false;
        }
        let n = self
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (n + 1) * p / 100 > n * p / 100
    }
}

/// Routes one request. Never fails: problems become 4xx responses.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<AppState>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path != "/health" {
        say(format_args!("request {} {}", req.method(), path));
    }
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut response = if path != "/health" && state.inject_failure() {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (FAIL_PERCENT)\n",
        )
    } else {
        route(req, &path, get, &state).await
    };
    if let Ok(value) = HeaderValue::from_str(&state.version) {
        response.headers_mut().insert("x-version", value);
    }
    Ok(response)
}

async fn route(req: Request<Incoming>, path: &str, get: bool, state: &AppState) -> Response<Body> {
    match path {
        "/health" if get => health(state),
        "/" | "/version" if get => text(StatusCode::OK, state.version.clone()),
        "/headers" if get => headers(&req),
        "/upload" if req.method() == Method::POST => upload(req).await,
        "/sse" if get => sse::respond(req.uri().query()),
        "/slow" if get => slow(req.uri().query()).await,
        "/ws" if get => ws::upgrade(req),
        _ => match path.strip_prefix("/status/") {
            Some(code) => status(code),
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not found"}),
            ),
        },
    }
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An `application/json` response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The value of query parameter `name`, undecoded (the testapp only takes numbers).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Parses numeric query parameter `name`, falling back to `default` when absent.
pub fn number_param(query: Option<&str>, name: &str, default: u64) -> Result<u64, String> {
    match query_param(query, name) {
        None | Some("") => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| format!("query parameter {name} must be a number, got {raw:?}")),
    }
}

fn health(state: &AppState) -> Response<Body> {
    if let Some((db, table)) = &state.require_table {
        if let Err(why) = table_exists(db, table) {
            return text(StatusCode::SERVICE_UNAVAILABLE, why);
        }
    }
    let body = if state.health_status.is_success() {
        "ok"
    } else {
        "unhealthy"
    };
    text(state.health_status, body)
}

/// Whether `table` exists in the SQLite database `db` (opened read-only, never created).
pub fn table_exists(db: &std::path::Path, table: &str) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("database {}: {e}", db.display()))?;
    let found: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(|e| format!("database {}: {e}", db.display()))?;
    if found == 0 {
        return Err(format!("table {table} is missing: has the migration run?"));
    }
    Ok(())
}

fn headers(req: &Request<Incoming>) -> Response<Body> {
    let mut map = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    json(StatusCode::OK, &serde_json::Value::Object(map))
}

/// Hashes the body frame by frame, so a multi-gigabyte upload costs no memory.
async fn upload(req: Request<Incoming>) -> Response<Body> {
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    bytes += data.len() as u64;
                    hasher.update(&data);
                }
            }
            Err(err) => {
                let message = format!("failed to read the request body: {err}");
                return text(StatusCode::BAD_REQUEST, message);
            }
        }
    }
    let digest = hex::encode(hasher.finalize());
    json(
        StatusCode::OK,
        &serde_json::json!({"bytes": bytes, "sha256": digest}),
    )
}

async fn slow(query: Option<&str>) -> Response<Body> {
    match number_param(query, "ms", 1000) {
        Ok(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, "slow")
        }
        Err(message) => text(StatusCode::BAD_REQUEST, message),
    }
}

fn status(code: &str) -> Response<Body> {
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|status| !status.is_informational());
    match status {
        // These two must not carry a body.
        Some(status @ (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)) => {
            text(status, Bytes::new())
        }
        Some(status) => text(status, format!("status {}", status.as_u16())),
        None => text(
            StatusCode::BAD_REQUEST,
            format!("expected a status code 200-999, got {code:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let query = Some("n=3&interval_ms=50&flag");
        assert_eq!(query_param(query, "n"), Some("3"));
        assert_eq!(query_param(query, "interval_ms"), Some("50"));
        assert_eq!(query_param(query, "flag"), Some(""));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param(None, "n"), None);
    }

    #[test]
    fn number_params() {
        assert_eq!(number_param(Some("ms=20"), "ms", 1000), Ok(20));
        assert_eq!(number_param(Some("other=1"), "ms", 1000), Ok(1000));
        assert_eq!(number_param(Some("ms="), "ms", 1000), Ok(1000));
        assert!(number_param(Some("ms=-1"), "ms", 1000).is_err());
    }
}
