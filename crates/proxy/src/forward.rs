//! The request path: rewrite headers, route, pick a backend, forward over a
//! pooled HTTP/1.1 connection (retrying once on a fresh connection when a reused
//! one turns out to be closed), and stream the response back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::backend::InflightGuard;
use crate::body::{BodyTooLarge, DownstreamBodyError, RequestBody, ResponseBody};
use crate::error::{ErrorKind, ErrorSource, ProxyError};
use crate::h1::{self, DirectBody, Framing, SendError};
use crate::headers;
use crate::pool::{self, Pooled, Sender};
use crate::server::{ActiveGuard, RequestGuard, WorkerCtx};

/// Serves one client request; never fails (errors become small text responses).
pub(crate) async fn handle(
    ctx: Arc<WorkerCtx>,
    mut req: Request<Incoming>,
    client_ip: HeaderValue,
    scheme: headers::Scheme,
    active: ActiveGuard,
) -> Result<Response<ResponseBody>, Infallible> {
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let (host, request_id) = prepare(&mut req, &client_ip, scheme, upgrade);
    let result = forward(&ctx, req, host, upgrade, &request_id, active).await;
    Ok(finish(&ctx, result, request_id))
}

/// Rewrites the request headers; returns the original host and the request id.
pub(crate) fn prepare<B>(
    req: &mut Request<B>,
    client_ip: &HeaderValue,
    scheme: headers::Scheme,
    upgrade: bool,
) -> (Option<HeaderValue>, HeaderValue) {
    let host = original_host(req);
    let request_id = headers::prepare_request(
        req.headers_mut(),
        client_ip,
        scheme,
        host.as_ref().and_then(|h| h.to_str().ok()),
        upgrade,
    );
    (host, request_id)
}

/// Counts the outcome and turns an error into its response.
pub(crate) fn finish(
    ctx: &WorkerCtx,
    result: Result<Response<ResponseBody>, ProxyError>,
    request_id: HeaderValue,
) -> Response<ResponseBody> {
    match result {
        Ok(response) => {
            ctx.counters.record(response.status(), false);
            response
        }
        Err(err) => {
            if err.is_upstream() {
                tracing::warn!(error = %err, "proxy request failed");
            } else {
                tracing::debug!(error = %err, "proxy request rejected");
            }
            ctx.counters.record(err.status(), err.is_upstream());
            error_response(&err, request_id)
        }
    }
}

/// The small text/plain answer for a proxy error.
pub fn error_response(err: &ProxyError, request_id: HeaderValue) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(err.body()));
    *response.status_mut() = err.status();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(headers::X_REQUEST_ID.clone(), request_id);
    response
}

async fn forward(
    ctx: &WorkerCtx,
    mut req: Request<Incoming>,
    host: Option<HeaderValue>,
    upgrade: bool,
    request_id: &HeaderValue,
    active: ActiveGuard,
) -> Result<Response<ResponseBody>, ProxyError> {
    let config = &ctx.shared.config;
    if let Some(len) = content_length(&req) {
        if len > config.max_request_body {
            return Err(ProxyError::new(
                ErrorKind::BodyTooLarge,
                ErrorSource::Downstream,
                format!(
                    "request body of {len} bytes is larger than the limit of {} bytes",
                    config.max_request_body
                ),
            ));
        }
    }
    if !upgrade && req.body().is_end_stream() {
        return forward_bodiless(ctx, req, host, request_id, Some(active), true).await;
    }
    let inflight = select(ctx, &mut req, host)?;
    let backend = inflight.backend().clone();
    let guard = RequestGuard {
        _active: Some(active),
        inflight,
    };

    if upgrade {
        return crate::upgrade::forward(ctx, req, guard, request_id).await;
    }

    let req = req.map(|b| RequestBody::new(b, config.max_request_body));
    let (mut response, sender) = send(ctx, backend.id(), backend.addr(), req).await?;
    headers::prepare_response(response.headers_mut(), false, request_id.clone());
    let pooled = Pooled::new(backend.id(), sender);
    Ok(response.map(|body| ResponseBody::upstream(body, Some(pooled), guard)))
}

/// Forwards a request that has no body over a direct connection (`h1.rs`).
/// `timed`: bound the wait for the response head here (the hyper-served path);
/// `h1server.rs` bounds it with its connection watchdog instead.
pub(crate) async fn forward_bodiless<B>(
    ctx: &WorkerCtx,
    mut req: Request<B>,
    host: Option<HeaderValue>,
    request_id: &HeaderValue,
    active: Option<ActiveGuard>,
    timed: bool,
) -> Result<Response<ResponseBody>, ProxyError> {
    let inflight = select(ctx, &mut req, host)?;
    let head_request = req.method() == Method::HEAD;
    let encode = |out: &mut Vec<u8>| h1::encode_head(&req, out);
    forward_direct(
        ctx,
        inflight,
        active,
        encode,
        head_request,
        request_id,
        timed,
    )
    .await
}

/// A bodiless request as the fast path (`h1server.rs`) parsed it: its request
/// line and header lines, borrowed from the client's head.
pub(crate) struct RawRequest<'a, I> {
    pub(crate) method: &'a [u8],
    /// The origin-form target, already validated as a URI.
    pub(crate) uri: &'a Uri,
    pub(crate) lines: I,
    /// The Host line's value.
    pub(crate) host: Option<&'a [u8]>,
    pub(crate) client_ip: &'a HeaderValue,
    pub(crate) scheme: headers::Scheme,
}

/// Forwards a fast-path request: routed on its Host and path, and its head
/// written for the upstream straight from the client's lines
/// ([`headers::encode_request`]), with no `HeaderMap` in between. The response
/// deadline is the caller's (its connection watchdog).
pub(crate) async fn forward_raw<'a, I>(
    ctx: &WorkerCtx,
    req: RawRequest<'a, I>,
    request_id: &HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let host = req
        .host
        .filter(|h| headers::visible_ascii(h))
        .and_then(|h| std::str::from_utf8(h).ok());
    let (inflight, new_path) = route(ctx, host, req.uri)?;
    let path = match &new_path {
        Some(p) => p.as_bytes(),
        None => req
            .uri
            .path_and_query()
            .map_or(&b"/"[..], |pq| pq.as_str().as_bytes()),
    };
    let head_request = req.method == b"HEAD";
    let encode = |out: &mut Vec<u8>| {
        headers::encode_request(
            out,
            (req.method, path),
            req.lines.clone(),
            req.client_ip,
            req.scheme,
            req.host,
            request_id,
        )
    };
    forward_direct(ctx, inflight, None, encode, head_request, request_id, false).await
}

/// Sends a bodiless request written by `encode` to the picked backend and
/// wraps the response for the client.
async fn forward_direct(
    ctx: &WorkerCtx,
    inflight: InflightGuard,
    active: Option<ActiveGuard>,
    encode: impl Fn(&mut Vec<u8>),
    head_request: bool,
    request_id: &HeaderValue,
    timed: bool,
) -> Result<Response<ResponseBody>, ProxyError> {
    let backend = inflight.backend().clone();
    let guard = RequestGuard {
        _active: active,
        inflight,
    };
    let (mut response, framing, conn) = send_direct(
        ctx,
        backend.id(),
        backend.addr(),
        encode,
        head_request,
        timed,
    )
    .await?;
    headers::prepare_response(response.headers_mut(), false, request_id.clone());
    let body = DirectBody::new(conn, framing);
    Ok(response.map(|()| ResponseBody::direct(body, guard)))
}

/// Routes the request and picks a backend (see [`route`]), then rewrites the
/// request for the upstream: origin-form URI (prefix stripped if the route says
/// so), HTTP/1.1, and the original Host.
fn select<B>(
    ctx: &WorkerCtx,
    req: &mut Request<B>,
    host: Option<HeaderValue>,
) -> Result<InflightGuard, ProxyError> {
    let (inflight, new_path) = route(ctx, host.as_ref().and_then(|h| h.to_str().ok()), req.uri())?;
    set_origin_uri(req, new_path)?;
    *req.version_mut() = Version::HTTP_11;
    if !req.headers().contains_key(header::HOST) {
        if let Some(host) = host {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    Ok(inflight)
}

/// Routes by host and path and picks a backend (the only place the routing
/// table is held, see `server::Active`); returns the upstream path when the
/// route strips its prefix.
fn route(
    ctx: &WorkerCtx,
    host: Option<&str>,
    uri: &Uri,
) -> Result<(InflightGuard, Option<String>), ProxyError> {
    let active_table = ctx.shared.table.load();
    let table = &active_table.table;
    let index = table.lookup_index(host, uri.path()).ok_or_else(|| {
        ProxyError::new(
            ErrorKind::NoRoute,
            ErrorSource::Downstream,
            "no route matches",
        )
    })?;
    let route = &table.routes()[index];
    let backend = table.pick_backend(index).ok_or_else(|| {
        ProxyError::new(
            ErrorKind::NoHealthyBackend,
            ErrorSource::Upstream,
            format!("no healthy backend for service {}", route.service),
        )
    })?;
    let inflight = InflightGuard::new(backend.clone());
    let new_path = if route.strip_prefix && route.path_prefix != "/" {
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        Some(crate::table::strip_prefix(pq, &route.path_prefix))
    } else {
        None
    };
    Ok((inflight, new_path))
}

/// Sends a request without a body on a pooled direct connection when one is
/// idle, else on a new one; a reused connection that turns out to be closed
/// before answering is replaced once (the request has no body to lose).
async fn send_direct(
    ctx: &WorkerCtx,
    backend_id: u64,
    addr: SocketAddr,
    encode: impl Fn(&mut Vec<u8>),
    head_request: bool,
    timed: bool,
) -> Result<(Response<()>, Framing, h1::Conn), ProxyError> {
    let config = &ctx.shared.config;
    let attempt = async {
        if let Some(conn) = pool::checkout_direct(backend_id, config.upstream_idle_timeout) {
            match conn.send(&encode, head_request).await {
                Ok(sent) => return Ok(sent),
                Err(SendError::Closed(e)) => {
                    tracing::debug!(upstream = %addr, error = %e, "pooled upstream connection was closed, retrying on a new one");
                }
                Err(e) => return Err(e.into_proxy_error(addr)),
            }
        }
        let conn = pool::connect_direct(backend_id, addr, config.upstream_connect_timeout).await?;
        conn.send(&encode, head_request)
            .await
            .map_err(|e| e.into_proxy_error(addr))
    };
    if !timed {
        return attempt.await;
    }
    match tokio::time::timeout(config.upstream_response_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(response_timeout(addr)),
    }
}

/// Sends a request with a body on a pooled connection when one is idle; if that
/// reused connection turns out to be closed before hyper wrote the request, retries
/// once on a fresh connection (bodiless requests take `send_direct` instead).
async fn send(
    ctx: &WorkerCtx,
    backend_id: u64,
    addr: SocketAddr,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Sender), ProxyError> {
    let config = &ctx.shared.config;
    if let Some(mut sender) = checkout_ready(backend_id, config.upstream_idle_timeout).await {
        match tokio::time::timeout(
            config.upstream_response_timeout,
            sender.try_send_request(req),
        )
        .await
        {
            Err(_) => return Err(response_timeout(addr)),
            Ok(Ok(response)) => return Ok((response, sender)),
            Ok(Err(mut e)) => {
                req = match e.take_message() {
                    Some(req) => req,
                    None => return Err(classify(&e.into_error(), addr)),
                };
                tracing::debug!(upstream = %addr, "pooled upstream connection was closed, retrying on a new one");
            }
        }
    }
    let mut sender = pool::connect(addr, config.upstream_connect_timeout).await?;
    match tokio::time::timeout(config.upstream_response_timeout, sender.send_request(req)).await {
        Err(_) => Err(response_timeout(addr)),
        Ok(Ok(response)) => Ok((response, sender)),
        Ok(Err(e)) => Err(classify(&e, addr)),
    }
}

/// A pooled connection that is ready for a request. A connection whose previous
/// response just ended may need a moment before its task marks it ready.
async fn checkout_ready(backend_id: u64, idle_timeout: Duration) -> Option<Sender> {
    while let Some(mut sender) = pool::checkout(backend_id, idle_timeout) {
        if sender.is_ready() {
            return Some(sender);
        }
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(250), sender.ready()).await {
            return Some(sender);
        }
    }
    None
}

pub(crate) fn response_timeout(addr: SocketAddr) -> ProxyError {
    ProxyError::upstream(
        ErrorKind::ResponseTimeout,
        addr,
        "did not send response headers in time",
    )
}

/// Maps a hyper client error to a proxy error, finding our own body errors.
pub(crate) fn classify(err: &hyper::Error, addr: SocketAddr) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(too_large) = e.downcast_ref::<BodyTooLarge>() {
            return ProxyError::new(
                ErrorKind::BodyTooLarge,
                ErrorSource::Downstream,
                too_large.to_string(),
            );
        }
        if e.downcast_ref::<DownstreamBodyError>().is_some() {
            return ProxyError::new(
                ErrorKind::BadRequest,
                ErrorSource::Downstream,
                "reading the request body from the client failed",
            );
        }
        source = e.source();
    }
    if err.is_parse() {
        ProxyError::upstream(
            ErrorKind::UpstreamProtocol,
            addr,
            "sent an invalid response",
        )
    } else {
        ProxyError::upstream(
            ErrorKind::UpstreamProtocol,
            addr,
            "closed the connection before responding",
        )
    }
}

/// The original host: the Host header, else the URI authority (HTTP/2 `:authority`).
fn original_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(h) = req.headers().get(header::HOST) {
        return Some(h.clone());
    }
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn set_origin_uri<B>(req: &mut Request<B>, new_path: Option<String>) -> Result<(), ProxyError> {
    let uri = req.uri();
    if new_path.is_none() && uri.scheme().is_none() && uri.authority().is_none() {
        return Ok(());
    }
    let pq = match new_path {
        Some(p) => PathAndQuery::try_from(p),
        None => Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))),
    };
    let bad = |_| {
        ProxyError::new(
            ErrorKind::BadRequest,
            ErrorSource::Downstream,
            "invalid request path",
        )
    };
    let pq = pq.map_err(bad)?;
    *req.uri_mut() = Uri::from(pq);
    Ok(())
}
