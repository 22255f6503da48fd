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

use crate::acme;
use crate::backend::{Backend, InflightGuard};
use crate::body::{BodyTimeout, BodyTooLarge, DownstreamBodyError, RequestBody, ResponseBody};
use crate::compress;
use crate::error::{ErrorKind, ErrorSource, ProxyError};
use crate::h1::{self, DirectBody, Framing, SendError};
use crate::headers;
use crate::policy::{self, RoutePolicy};
use crate::pool::{self, Pooled, Sender};
use crate::server::{ActiveGuard, RequestGuard, WorkerCtx};
use crate::static_files::{self, StaticRequest, StaticSite};

/// Serves one client request; never fails (errors become small text responses).
pub(crate) async fn handle(
    ctx: Arc<WorkerCtx>,
    mut req: Request<Incoming>,
    client_ip: HeaderValue,
    scheme: headers::Scheme,
    active: ActiveGuard,
) -> Result<Response<ResponseBody>, Infallible> {
    if let Some(problem) = host_problem(&mut req) {
        let err = ProxyError::new(ErrorKind::BadRequest, ErrorSource::Downstream, problem);
        return Ok(finish(&ctx, Err(err), headers::new_request_id()));
    }
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let compression = ctx.shared.config.compression;
    let coding = match compression {
        Some(_) => compress::choose(
            req.headers()
                .get(header::ACCEPT_ENCODING)
                .map(HeaderValue::as_bytes),
        ),
        None => None,
    };
    let head_request = req.method() == Method::HEAD;
    let pending = ctx.shared.access_log.as_ref().map(|_| {
        crate::access_log::Pending::new(
            client_ip.as_bytes(),
            req.method().as_str().as_bytes(),
            req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .chain(
                    req.uri()
                        .authority()
                        .map(|a| (&b"host"[..], a.as_str().as_bytes())),
                ),
        )
    });
    let (host, request_id) = prepare(&mut req, &client_ip, scheme, upgrade);
    let result = forward(
        &ctx,
        req,
        host,
        upgrade,
        scheme,
        &request_id,
        active,
        &client_ip,
    )
    .await;
    let response = finish(&ctx, result, request_id);
    let response = compress::apply(response, coding, compression, head_request);
    if let (Some(p), Some(log)) = (pending, ctx.shared.access_log.as_ref()) {
        p.answered(&response).record(log);
    }
    Ok(response)
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host (any request at most one); an
/// absolute-form target's authority replaces the Host the client sent (§3.2.2), so routing
/// and the upstream see one host.
fn host_problem<B>(req: &mut Request<B>) -> Option<&'static str> {
    if req.version() != Version::HTTP_11 && req.version() != Version::HTTP_10 {
        return None;
    }
    let count = req.headers().get_all(header::HOST).iter().count();
    if count > 1 {
        return Some("more than one Host header");
    }
    if count == 0 && req.version() == Version::HTTP_11 {
        return Some("an HTTP/1.1 request needs a Host header");
    }
    if let Some(authority) = req.uri().authority() {
        match HeaderValue::from_str(authority.as_str()) {
            Ok(v) => {
                req.headers_mut().insert(header::HOST, v);
            }
            Err(_) => return Some("invalid request target"),
        }
    }
    None
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
            let status = err.status().as_u16();
            match ctx
                .shared
                .config
                .error_pages
                .iter()
                .find(|(s, _)| *s == status)
            {
                Some((_, page)) => {
                    let mut r = Response::new(ResponseBody::full(page.clone()));
                    *r.status_mut() = err.status();
                    let h = r.headers_mut();
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    h.insert(headers::X_REQUEST_ID.clone(), request_id);
                    r
                }
                None => error_response(&err, request_id),
            }
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

#[allow(clippy::too_many_arguments)]
async fn forward(
    ctx: &WorkerCtx,
    mut req: Request<Incoming>,
    host: Option<HeaderValue>,
    upgrade: bool,
    scheme: headers::Scheme,
    request_id: &HeaderValue,
    active: ActiveGuard,
    peer: &HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError> {
    if let Some(answer) = acme::http01_response(&ctx.shared.challenges, req.uri().path()) {
        return Ok(answer);
    }
    let config = &ctx.shared.config;
    if !upgrade && req.body().is_end_stream() {
        return forward_bodiless(ctx, req, host, scheme, request_id, Some(active), true, peer)
            .await;
    }
    let (inflight, hsts, limits) = match select(ctx, &mut req, host, scheme, peer)? {
        Selected::Backend(inflight, hsts, limits) => (inflight, hsts, limits),
        Selected::Answer(response) => return Ok(response),
    };
    let max_body = limits.max_body.unwrap_or(config.max_request_body);
    if let Some(len) = content_length(&req) {
        if len > max_body {
            return Err(ProxyError::new(
                ErrorKind::BodyTooLarge,
                ErrorSource::Downstream,
                format!("request body of {len} bytes is larger than the limit of {max_body} bytes"),
            ));
        }
    }
    let backend = inflight.backend().clone();
    let guard = RequestGuard {
        _active: Some(active),
        inflight,
    };

    if upgrade {
        return crate::upgrade::forward(ctx, req, guard, request_id).await;
    }

    // A client that sends nothing of its body for the header timeout is cut (408).
    let req = req.map(|b| RequestBody::new(b, max_body, config.client_header_timeout));
    let obs = backend.stats().start(); // metrics hook (metrics.rs)
    let timeout = limits.timeout.unwrap_or(config.upstream_response_timeout);
    let sent = send(ctx, backend.id(), backend.addr(), req, timeout).await;
    crate::metrics::observe(obs, &sent, |(r, _)| r.status());
    if let Err(e) = &sent {
        eject_if_unreachable(ctx, &backend, e);
    }
    let (mut response, sender) = sent?;
    headers::prepare_response(response.headers_mut(), false, request_id.clone());
    add_hsts(&mut response, hsts);
    let pooled = Pooled::new(backend.id(), sender);
    Ok(response.map(|body| ResponseBody::upstream(body, Some(pooled), guard)))
}

/// Forwards a request that has no body over a direct connection (`h1.rs`).
/// `timed`: bound the wait for the response head here (the hyper-served path);
/// `h1server.rs` bounds it with its connection watchdog instead.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_bodiless<B>(
    ctx: &WorkerCtx,
    mut req: Request<B>,
    host: Option<HeaderValue>,
    scheme: headers::Scheme,
    request_id: &HeaderValue,
    active: Option<ActiveGuard>,
    timed: bool,
    peer: &HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (inflight, hsts, limits) = match select(ctx, &mut req, host, scheme, peer)? {
        Selected::Backend(inflight, hsts, limits) => (inflight, hsts, limits),
        Selected::Answer(response) => return Ok(response),
    };
    let head_request = req.method() == Method::HEAD;
    let encode = |out: &mut Vec<u8>| h1::encode_head(&req, out);
    let timeout = timed.then(|| {
        limits
            .timeout
            .unwrap_or(ctx.shared.config.upstream_response_timeout)
    });
    forward_direct(
        ctx,
        inflight,
        active,
        encode,
        head_request,
        request_id,
        timeout,
        hsts,
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
    /// Where the route's response timeout is written (nanoseconds) for the caller's
    /// watchdog, when the route has its own.
    pub(crate) timeout: &'a std::sync::atomic::AtomicU64,
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
    if let Some(answer) = acme::http01_response(&ctx.shared.challenges, req.uri.path()) {
        return Ok(answer);
    }
    let get_or_head = matches!(req.method, b"GET" | b"HEAD");
    let find = |name: &[u8]| {
        req.lines
            .clone()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let client = Client {
        peer: req.client_ip,
        forwarded_for: find(b"x-forwarded-for"),
        authorization: find(b"authorization"),
    };
    let (inflight, new_path, hsts, limits) =
        match route(ctx, host, req.uri, req.scheme, get_or_head, client)? {
            Routed::Backend {
                inflight,
                new_path,
                hsts,
                limits,
            } => (inflight, new_path, hsts, limits),
            Routed::Answer(response) => return Ok(response),
            Routed::Static { site, strip, hsts } => {
                let mut sreq = static_request(req.method, req.uri, strip);
                for (name, value) in req.lines.clone() {
                    sreq.header(name, value);
                }
                let mut response = static_files::serve(&site, &sreq);
                add_hsts(&mut response, hsts);
                add_request_id(&mut response, request_id);
                return Ok(response);
            }
        };
    let path = match &new_path {
        Some(p) => p.as_bytes(),
        None => req
            .uri
            .path_and_query()
            .map_or(&b"/"[..], |pq| pq.as_str().as_bytes()),
    };
    if let Some(timeout) = limits.timeout {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        req.timeout
            .store(nanos, std::sync::atomic::Ordering::Relaxed);
    }
    let head_request = req.method == b"HEAD";
    let upstream = inflight.backend().addr();
    // The route's request headers: the client's lines of those names are left out and
    // the route's values appended.
    let policy = hsts.policy.clone();
    let set = &policy.request_headers;
    let lines = req
        .lines
        .clone()
        .filter(|(n, _)| {
            !set.iter()
                .any(|(h, _)| n.eq_ignore_ascii_case(h.as_str().as_bytes()))
        })
        .map(shorten)
        .chain(
            set.iter()
                .filter_map(|(n, v)| Some((n.as_str().as_bytes(), v.as_ref()?.as_bytes()))),
        );
    let encode = |out: &mut Vec<u8>| {
        headers::encode_request(
            out,
            (req.method, path),
            lines.clone(),
            req.client_ip,
            req.scheme,
            req.host,
            upstream,
            request_id,
        )
    };
    forward_direct(
        ctx,
        inflight,
        None,
        encode,
        head_request,
        request_id,
        None,
        hsts,
    )
    .await
}

/// A header line borrowed for a shorter time (to chain the client's lines with a route's).
fn shorten<'s, 'l: 's>(line: (&'l [u8], &'l [u8])) -> (&'s [u8], &'s [u8]) {
    line
}

/// Sends a bodiless request written by `encode` to the picked backend and
/// wraps the response for the client.
#[allow(clippy::too_many_arguments)]
async fn forward_direct(
    ctx: &WorkerCtx,
    inflight: InflightGuard,
    active: Option<ActiveGuard>,
    encode: impl Fn(&mut Vec<u8>),
    head_request: bool,
    request_id: &HeaderValue,
    timeout: Option<Duration>,
    hsts: Rules,
) -> Result<Response<ResponseBody>, ProxyError> {
    let backend = inflight.backend().clone();
    let guard = RequestGuard {
        _active: active,
        inflight,
    };
    let obs = backend.stats().start(); // metrics hook (metrics.rs)
    let sent = send_direct(
        ctx,
        backend.id(),
        backend.addr(),
        encode,
        head_request,
        timeout,
    )
    .await;
    crate::metrics::observe(obs, &sent, |(r, _, _)| r.status());
    if let Err(e) = &sent {
        eject_if_unreachable(ctx, &backend, e);
    }
    let (mut response, framing, conn) = sent?;
    headers::prepare_response(response.headers_mut(), false, request_id.clone());
    add_hsts(&mut response, hsts);
    let body = DirectBody::new(conn, framing);
    Ok(response.map(|()| ResponseBody::direct(body, guard)))
}

/// With [`crate::ProxyConfig::eject_unreachable`]: a backend that could not be connected
/// to is picked no more (until its owner's probes mark it healthy again), so the requests
/// after this one go to the others instead of failing the same way.
fn eject_if_unreachable(ctx: &WorkerCtx, backend: &Backend, err: &ProxyError) {
    let unreachable = matches!(
        err.kind,
        ErrorKind::ConnectRefused | ErrorKind::ConnectTimeout | ErrorKind::ConnectFailed
    );
    if unreachable && ctx.shared.config.eject_unreachable && backend.is_healthy() {
        backend.set_healthy(false);
        tracing::warn!(upstream = %backend.addr(), "{}: not picked until a probe passes", err.detail);
    }
}

/// Routes the request and picks a backend (see [`route`]), then rewrites the
/// request for the upstream: origin-form URI (prefix stripped if the route says
/// so), HTTP/1.1, and the original Host.
fn select<B>(
    ctx: &WorkerCtx,
    req: &mut Request<B>,
    host: Option<HeaderValue>,
    scheme: headers::Scheme,
    peer: &HeaderValue,
) -> Result<Selected, ProxyError> {
    let get_or_head = req.method() == Method::GET || req.method() == Method::HEAD;
    let client = Client {
        peer,
        forwarded_for: req
            .headers()
            .get(&headers::X_FORWARDED_FOR)
            .map(HeaderValue::as_bytes),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    };
    let routed = route(
        ctx,
        host.as_ref().and_then(|h| h.to_str().ok()),
        req.uri(),
        scheme,
        get_or_head,
        client,
    )?;
    let (inflight, new_path, hsts, limits) = match routed {
        Routed::Backend {
            inflight,
            new_path,
            hsts,
            limits,
        } => (inflight, new_path, hsts, limits),
        Routed::Answer(response) => return Ok(Selected::Answer(response)),
        Routed::Static { site, strip, hsts } => {
            let method = req.method().as_str().as_bytes();
            let mut sreq = static_request(method, req.uri(), strip);
            for (name, value) in req.headers() {
                sreq.header(name.as_str().as_bytes(), value.as_bytes());
            }
            let mut response = static_files::serve(&site, &sreq);
            add_hsts(&mut response, hsts);
            if let Some(id) = req.headers().get(&headers::X_REQUEST_ID) {
                add_request_id(&mut response, id);
            }
            return Ok(Selected::Answer(response));
        }
    };
    set_origin_uri(req, new_path)?;
    *req.version_mut() = Version::HTTP_11;
    if hsts.policy.rewrites_request() {
        hsts.policy.apply_request(req.headers_mut());
    }
    if !req.headers().contains_key(header::HOST) {
        // An HTTP/1.0 request may come without a Host; forwarded as HTTP/1.1 it needs one:
        // the original host when the target named it, else the upstream's address (as
        // nginx's `$proxy_host`).
        let host =
            host.or_else(|| HeaderValue::from_str(&inflight.backend().addr().to_string()).ok());
        if let Some(host) = host {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    Ok(Selected::Backend(inflight, hsts, limits))
}

/// A route's own limits (`None`: the proxy's).
#[derive(Clone, Copy, Default)]
pub(crate) struct Limits {
    pub(crate) max_body: Option<u64>,
    pub(crate) timeout: Option<Duration>,
}

/// What [`select`] decided.
enum Selected {
    /// Forward to this backend (adding the route's headers to the response).
    Backend(InflightGuard, Rules, Limits),
    /// Answer with this (the HTTPS redirect).
    Answer(Response<ResponseBody>),
}

/// Who sent a request, as far as the route's policy needs to know.
#[derive(Clone, Copy)]
pub(crate) struct Client<'a> {
    /// The connection's peer address (an `X-Forwarded-For` element).
    pub(crate) peer: &'a HeaderValue,
    /// The request's `X-Forwarded-For`, if any.
    pub(crate) forwarded_for: Option<&'a [u8]>,
    /// The request's `Authorization`, if any (checked against the route's users).
    pub(crate) authorization: Option<&'a [u8]>,
}

/// What [`route`] decided.
enum Routed {
    Backend {
        inflight: InflightGuard,
        /// The upstream path when the route strips or adds a prefix.
        new_path: Option<String>,
        hsts: Rules,
        limits: Limits,
    },
    Answer(Response<ResponseBody>),
    /// Served from a static site: the route's prefix is removed from the path first.
    Static {
        site: Arc<StaticSite>,
        /// Bytes of the path that are the route's prefix (0 for `/`).
        strip: usize,
        hsts: Rules,
    },
}

/// The parts of a request a static site's answer depends on, but its headers.
fn static_request<'a>(method: &[u8], uri: &'a Uri, strip: usize) -> StaticRequest<'a> {
    let path = uri.path();
    let rest = path.get(strip..).unwrap_or(path);
    StaticRequest {
        get: method == b"GET",
        head: method == b"HEAD",
        path: rest,
        full_path: path,
        query: uri.query(),
        ..StaticRequest::default()
    }
}

fn add_request_id<B>(response: &mut Response<B>, id: &HeaderValue) {
    response
        .headers_mut()
        .insert(headers::X_REQUEST_ID.clone(), id.clone());
}

/// What a route adds to its responses: HSTS (on HTTPS, while a certificate covers the host)
/// and its policy's headers.
pub(crate) struct Rules {
    hsts: Option<HeaderValue>,
    policy: Arc<RoutePolicy>,
    /// For the access log (only when it is on): the route's service and the backend.
    served: Option<ServedBy>,
}

/// Which service and backend answered: a response extension the access log reads.
#[derive(Debug, Clone)]
pub(crate) struct ServedBy {
    pub(crate) service: String,
    pub(crate) backend: Option<u64>,
}

fn add_hsts<B>(response: &mut Response<B>, rules: Rules) {
    if let Some(value) = rules.hsts {
        response
            .headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(value);
    }
    rules.policy.apply(response.headers_mut());
    if let Some(served) = rules.served {
        response.extensions_mut().insert(served);
    }
}

/// A plain-HTTP request for an HTTPS-only route that cannot be redirected (no certificate
/// names its host yet, or no HTTPS listener): answered as if nothing were routed there.
fn https_only_refusal() -> ProxyError {
    ProxyError::new(
        ErrorKind::NoRoute,
        ErrorSource::Downstream,
        "this route is served over HTTPS only",
    )
}

/// Routes by host and path and picks a backend (the only place the routing
/// table is held, see `server::Active`), or answers a plain-HTTP request for a
/// route that redirects to HTTPS.
fn route(
    ctx: &WorkerCtx,
    host: Option<&str>,
    uri: &Uri,
    scheme: headers::Scheme,
    get_or_head: bool,
    client: Client<'_>,
) -> Result<Routed, ProxyError> {
    let active_table = ctx.shared.table.load();
    let table = &active_table.table;
    if let Some(rule) = crate::redirect::find(table.redirects(), host, uri.path()) {
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        return Ok(Routed::Answer(rule.response(pq)));
    }
    let index = table.lookup_index(host, uri.path()).ok_or_else(|| {
        ProxyError::new(
            ErrorKind::NoRoute,
            ErrorSource::Downstream,
            "no route matches",
        )
    })?;
    if let Some(m) = ctx.shared.maintenance.load().as_deref() {
        if m.covers(&table.routes()[index].service) {
            return Ok(Routed::Answer(m.response()));
        }
    }
    let route_policy = &table.routes()[index].policy;
    let canary = table.has_canary(index);
    let mut client_ip = None;
    if route_policy.needs_client() || canary {
        let peer = std::str::from_utf8(client.peer.as_bytes())
            .ok()
            .and_then(|p| p.parse::<std::net::IpAddr>().ok())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let addr = policy::client_addr(
            peer,
            client.forwarded_for,
            &ctx.shared.config.trusted_proxies,
        );
        if let Some(answer) = route_policy.check(addr, client.authorization) {
            return Ok(Routed::Answer(answer));
        }
        client_ip = Some(addr);
    }
    let policy = &active_table.https[index];
    let hsts = match scheme {
        headers::Scheme::Https => policy.hsts.clone(),
        headers::Scheme::Http => {
            if let (true, Some(host), Some(port)) = (policy.redirect, host, ctx.shared.https_port) {
                let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
                return Ok(Routed::Answer(acme::redirect_response(
                    host,
                    pq,
                    get_or_head,
                    port,
                )));
            }
            if policy.https_only {
                return Err(https_only_refusal());
            }
            None
        }
    };
    let route = &table.routes()[index];
    let mut hsts = Rules {
        hsts,
        policy: route.policy.clone(),
        served: ctx.shared.access_log.as_ref().map(|_| ServedBy {
            service: route.service.clone(),
            backend: None,
        }),
    };
    if let Some(site) = &route.site {
        return Ok(Routed::Static {
            site: site.clone(),
            strip: if route.path_prefix == "/" {
                0
            } else {
                route.path_prefix.len()
            },
            hsts,
        });
    }
    let backend = table.pick_backend(index, client_ip).ok_or_else(|| {
        ProxyError::new(
            ErrorKind::NoHealthyBackend,
            ErrorSource::Upstream,
            format!("no healthy backend for service {}", route.service),
        )
    })?;
    let inflight = InflightGuard::new(backend.clone());
    if let Some(served) = hsts.served.as_mut() {
        served.backend = Some(backend.id());
    }
    let new_path = if route.strip_prefix || route.add_prefix.is_some() {
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        crate::table::rewrite_path(
            pq,
            &route.path_prefix,
            route.strip_prefix,
            route.add_prefix.as_deref(),
        )
    } else {
        None
    };
    Ok(Routed::Backend {
        inflight,
        new_path,
        hsts,
        limits: Limits {
            max_body: route.max_body,
            timeout: route.upstream_response_timeout,
        },
    })
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
    timeout: Option<Duration>,
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
    let Some(timeout) = timeout else {
        return attempt.await;
    };
    match tokio::time::timeout(timeout, attempt).await {
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
    timeout: Duration,
) -> Result<(Response<Incoming>, Sender), ProxyError> {
    let config = &ctx.shared.config;
    if let Some(mut sender) = checkout_ready(backend_id, config.upstream_idle_timeout).await {
        match tokio::time::timeout(timeout, sender.try_send_request(req)).await {
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
    match tokio::time::timeout(timeout, sender.send_request(req)).await {
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
        if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
            return ProxyError::new(
                ErrorKind::ClientTimeout,
                ErrorSource::Downstream,
                timeout.to_string(),
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
