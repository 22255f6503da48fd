//! Shared helpers: starting the proxy, inline upstreams, and a small client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dockhand_proxy::{Backend, Proxy, ProxyConfig, ProxyHandle, Route, RouteTable};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Upper bound for any single wait in a test (not an assertion about speed).
pub const PATIENCE: Duration = Duration::from_secs(20);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn backend(addr: SocketAddr) -> Arc<Backend> {
    Backend::new(NEXT_ID.fetch_add(1, Ordering::Relaxed), addr)
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..ProxyConfig::default()
    }
}

pub fn route(prefix: &str, backends: Vec<Arc<Backend>>) -> Route {
    Route {
        host: None,
        path_prefix: prefix.to_owned(),
        strip_prefix: false,
        add_prefix: None,
        max_body: None,
        upstream_response_timeout: None,
        service: "web".to_owned(),
        backends,
        https: Default::default(),
        site: None,
        policy: Default::default(),
    }
}

pub fn start(config: ProxyConfig, routes: Vec<Route>) -> ProxyHandle {
    Proxy::start(config, RouteTable::new(routes).unwrap()).unwrap()
}

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

/// Serves `handler` over HTTP/1.1 on a fresh port; returns the address.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A port with nothing listening on it.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Sends one request over a new HTTP/1.1 connection.
pub async fn send(
    addr: SocketAddr,
    req: Request<TestBody>,
) -> Result<Response<Incoming>, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, send(addr, req))
        .await
        .expect("request timed out")
        .unwrap();
    read(response).await
}

/// Waits until `cond` holds, polling; panics after PATIENCE.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that answers every request with `name`.
pub async fn named_upstream(name: &'static str) -> SocketAddr {
    serve(move |_req| async move { text(StatusCode::OK, name) }).await
}
