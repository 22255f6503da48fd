//! The client side: binding the `SO_REUSEPORT` listeners, one worker thread per
//! listener (plus, with HTTPS, one TLS listener) with its own current-thread
//! runtime, the TLS handshake, and the per-connection task: the fast path for
//! bodiless HTTP/1 requests first (`h1server.rs`), then, for a connection it
//! hands over, hyper-util's auto builder (HTTP/1.1 and h2 — h2c in plain text,
//! h2 by ALPN over TLS —, graceful shutdown, idle watchdog) with requests handed to
//! [`crate::forward::handle`].

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

use crate::acme::{Applied, Challenges, ACME_TLS_ALPN};
use crate::backend::InflightGuard;
use crate::config::ProxyConfig;
use crate::h1server;
use crate::headers::{self, Scheme};
use crate::metrics::Counters;
use crate::rewind::Rewind;
use crate::table::RouteTable;
use crate::tls::CertStore;

/// How long closing a connection's write side (TLS close_notify) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The routing table as published to workers. Requests hold it (through an
/// `arc_swap` guard) only between lookup and backend selection, so once every
/// retired `Active` is referenced by the handle alone, no request can still pick
/// one of its backends.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) table: Arc<RouteTable>,
    /// Each route's HTTPS policy as it applies now (by route index).
    pub(crate) https: Vec<Applied>,
}

impl Active {
    /// `table` with its routes' policies applied for the certificates of `store`.
    pub(crate) fn new(table: Arc<RouteTable>, store: Option<&CertStore>) -> Active {
        let https = table
            .routes()
            .iter()
            .map(|r| {
                let covered = match (store, &r.host) {
                    (Some(store), Some(host)) => store.covers(host),
                    _ => false,
                };
                Applied::new(&r.https, covered)
            })
            .collect();
        Active { table, https }
    }
}

/// State shared by all workers.
pub(crate) struct Shared {
    pub(crate) table: ArcSwap<Active>,
    pub(crate) config: ProxyConfig,
    /// The TLS side of the HTTPS listeners (`None` without HTTPS).
    pub(crate) tls: Option<TlsAcceptor>,
    /// The bound HTTPS port, for redirects (`None` without HTTPS).
    pub(crate) https_port: Option<u16>,
    /// ACME challenges answered before routing.
    pub(crate) challenges: Arc<Challenges>,
    /// Maintenance mode, when on.
    pub(crate) maintenance: arc_swap::ArcSwapOption<crate::policy::Maintenance>,
    /// The access log, when on.
    pub(crate) access_log: Option<crate::access_log::AccessLog>,
    /// Open client connections against the descriptor budget.
    pub(crate) load: Load,
}

/// Descriptors kept free of client connections: for upstream connections, files, the agent's
/// API and health probes. At least 32, at most 1,024, an eighth of the limit between.
fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 8).clamp(32, 1024)
}

/// How many client connections may be open before idle ones are shed: the process's
/// descriptor limit (`RLIMIT_NOFILE`, read at start) less the reserve.
pub(crate) fn connection_budget() -> usize {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    usize::try_from(limit.saturating_sub(descriptor_reserve(limit)).max(16)).unwrap_or(usize::MAX)
}

/// Open client connections across workers, and the signal to shed idle ones when there are
/// more than the budget: a connection waiting for a request head (a flood's idle or
/// half-sent connections, a keep-alive connection between requests) closes when told, so
/// the descriptors it frees serve the connection that just arrived. The reserve means the
/// proxy is never the one to exhaust the limit, so it can always accept.
pub(crate) struct Load {
    open: AtomicUsize,
    budget: usize,
    pub(crate) shed: Notify,
}

impl Load {
    pub(crate) fn new(budget: usize) -> Load {
        Load {
            open: AtomicUsize::new(0),
            budget,
            shed: Notify::new(),
        }
    }

    /// Counts a new connection (until the guard drops); past the budget, idle ones are shed.
    pub(crate) fn enter(shared: &Arc<Shared>) -> LoadGuard {
        let open = shared.load.open.fetch_add(1, Ordering::AcqRel) + 1;
        if open > shared.load.budget {
            shared.load.shed.notify_waiters();
        }
        LoadGuard {
            shared: shared.clone(),
        }
    }
}

/// One open client connection, for [`Load`].
pub(crate) struct LoadGuard {
    shared: Arc<Shared>,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.shared.load.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one worker's tasks share.
pub(crate) struct WorkerCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) tracker: Arc<Tracker>,
}

/// `count` listeners for `addr`: duplicates of `inherited` when a listening socket was handed
/// over (all workers accept on it), else bound by [`bind_listeners`].
pub(crate) fn listeners(
    addr: SocketAddr,
    count: usize,
    inherited: Option<StdTcpListener>,
) -> io::Result<Vec<StdTcpListener>> {
    let Some(socket) = inherited else {
        return bind_listeners(addr, count);
    };
    socket.set_nonblocking(true)?;
    let mut out = Vec::with_capacity(count);
    for _ in 1..count {
        out.push(socket.try_clone()?);
    }
    out.push(socket);
    Ok(out)
}

/// Binds `count` listeners to `addr` with `SO_REUSEPORT`. An explicit port is
/// first probed without `SO_REUSEPORT`, so a port already served by anyone
/// (even another reuse-port group of the same user) is reported as in use.
pub(crate) fn bind_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<StdTcpListener>> {
    if addr.port() != 0 {
        let probe = new_socket(addr, false)?;
        probe.bind(&addr.into())?;
        drop(probe);
    }
    let first = bind_one(addr)?;
    let resolved = first.local_addr()?;
    let mut out = vec![first];
    for _ in 1..count {
        out.push(bind_one(resolved)?);
    }
    Ok(out)
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    Ok(socket)
}

fn bind_one(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let socket = new_socket(addr, true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Runs one worker until shutdown; returns when its connections are done or the
/// grace period passed (the caller then drops the runtime, closing the rest).
pub(crate) async fn run_worker(
    listener: StdTcpListener,
    tls_listener: Option<StdTcpListener>,
    ctx: Arc<WorkerCtx>,
    mut shutdown: watch::Receiver<Option<Duration>>,
    mut open: watch::Receiver<bool>,
) {
    let registered = TcpListener::from_std(listener)
        .and_then(|l| Ok((l, tls_listener.map(TcpListener::from_std).transpose()?)));
    let (listener, tls) = match registered {
        // Start pairs a TLS listener with an acceptor; never one without the other.
        Ok((l, tls_listener)) => (l, tls_listener.zip(ctx.shared.tls.clone())),
        Err(e) => {
            tracing::error!(error = %e, "proxy worker could not register its listener");
            return;
        }
    };
    let config = &ctx.shared.config;
    let builder = Arc::new(server_builder(config));
    let sweep_every = (config.upstream_idle_timeout / 2).max(Duration::from_millis(100));
    let idle_timeout = config.upstream_idle_timeout;
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        loop {
            tick.tick().await;
            crate::pool::sweep(idle_timeout);
        }
    });

    // Started closed: accept nothing until the handle opens the proxy (or stops it); what
    // connects meanwhile waits in the listen backlog.
    while !*open.borrow_and_update() && shutdown.borrow().is_none() {
        tokio::select! {
            changed = open.changed() => if changed.is_err() { break },
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }

    // False once every handle is gone: nobody can stop us then, keep serving.
    let mut stoppable = true;
    loop {
        if shutdown.borrow().is_some() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed(), if stoppable => {
                stoppable = changed.is_ok();
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let load = Load::enter(&ctx.shared);
                    let task = serve_connection(
                        ctx.clone(),
                        builder.clone(),
                        stream,
                        peer,
                        Scheme::Http,
                        shutdown.clone(),
                        (ctx.tracker.enter(), load),
                    );
                    tokio::spawn(task);
                }
                Err(e) => accept_failed(&ctx, e).await,
            },
            accepted = accept_tls(tls.as_ref()) => match accepted {
                Ok((stream, peer, acceptor)) => {
                    let _ = stream.set_nodelay(true);
                    let track = (ctx.tracker.enter(), Load::enter(&ctx.shared));
                    let handshake = acceptor.accept(stream);
                    let (ctx, builder, shutdown) = (ctx.clone(), builder.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let timeout = ctx.shared.config.client_header_timeout;
                        let stream = match tokio::time::timeout(timeout, handshake).await {
                            // A TLS-ALPN-01 validation: the handshake was the answer.
                            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => return,
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(client = %peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        serve_connection(ctx, builder, stream, peer, Scheme::Https, shutdown, track).await;
                    });
                }
                Err(e) => accept_failed(&ctx, e).await,
            },
        }
    }
    drop(listener);
    drop(tls);
    sweeper.abort();
    crate::pool::clear();
    let grace = shutdown.borrow().unwrap_or_default();
    let _ = tokio::time::timeout(grace, ctx.tracker.wait_idle()).await;
}

/// Accepts on the TLS listener (returning the acceptor for the handshake), or never
/// when there is none.
async fn accept_tls(
    tls: Option<&(TcpListener, TlsAcceptor)>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr, &TlsAcceptor)> {
    match tls {
        Some((listener, acceptor)) => {
            let (stream, peer) = listener.accept().await?;
            Ok((stream, peer, acceptor))
        }
        None => std::future::pending().await,
    }
}

/// Out of file descriptors and the like: shed idle connections and back off instead of
/// spinning.
async fn accept_failed(ctx: &WorkerCtx, e: io::Error) {
    ctx.shared.load.shed.notify_waiters();
    tracing::warn!(error = %e, "proxy accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The most a hyper-served HTTP/1 connection buffers: its request head must fit (else 431).
pub(crate) const HYPER_MAX_BUF: usize = 64 * 1024;
/// The most header fields of a hyper-served HTTP/1 request (else 431): the fast path's
/// limit too (a head with more is handed over, and refused here).
pub(crate) const HYPER_MAX_HEADERS: usize = h1server::MAX_HEADERS;
/// HTTP/2: streams a client may have open at once.
const H2_MAX_STREAMS: u32 = 128;
/// HTTP/2: the largest header list (HPACK-decoded, with CONTINUATION frames), in bytes.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2: streams reset by the client before they were answered, at most at once (rapid
/// reset, CVE-2023-44487); past it the connection is closed with GOAWAY.
const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: streams the server may reset for a client's protocol errors before it closes the
/// connection.
const H2_MAX_ERROR_RESETS: usize = 256;

fn server_builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.client_header_timeout)
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_ERROR_RESETS);
    builder
}

/// Serves one client connection, plain or TLS (`scheme` says which, for
/// `X-Forwarded-Proto`): the fast path first (`h1server.rs`), then hyper for
/// whatever it hands over.
async fn serve_connection<S>(
    ctx: Arc<WorkerCtx>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stream: S,
    peer: SocketAddr,
    scheme: Scheme,
    mut shutdown: watch::Receiver<Option<Duration>>,
    _track: (TrackGuard, LoadGuard),
) where
    S: AsyncRead + AsyncWrite + h1server::Socket + Unpin + Send + 'static,
{
    let client_ip = headers::client_ip_value(peer.ip());
    let fast = h1server::Conn {
        ctx: &ctx,
        client_ip: &client_ip,
        scheme,
        shutdown: &mut shutdown,
    };
    let prefix = match h1server::serve(fast, &mut stream).await {
        h1server::Outcome::Closed => {
            // Close the write side: over TLS this sends close_notify, without which clients
            // see an unexpected EOF (OpenSSL 3 then refuses to resume the session). Bounded:
            // a client that reads nothing must not hold the connection.
            let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
            return;
        }
        h1server::Outcome::Fallback(prefix) => prefix,
    };
    let io = TokioIo::new(Rewind::new(prefix, stream));
    let state = Arc::new(ConnState::new());
    let header_timeout = ctx.shared.config.client_header_timeout;
    let idle_timeout = ctx.shared.config.client_idle_timeout;
    let svc_state = state.clone();
    let svc_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let active = ActiveGuard::new(svc_state.clone());
        crate::forward::handle(svc_ctx.clone(), req, client_ip.clone(), scheme, active)
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let watchdog = tokio::time::sleep(header_timeout);
    tokio::pin!(watchdog);
    let mut draining = false;
    let mut stoppable = true;
    loop {
        if !draining && shutdown.borrow().is_some() {
            conn.as_mut().graceful_shutdown();
            draining = true;
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if stoppable && !draining => {
                stoppable = changed.is_ok(); // no handle left: never shut down
            }
            // Too many connections: an idle one makes room.
            () = ctx.shared.load.shed.notified(), if state.idle_for().is_some() => return,
            () = watchdog.as_mut() => {
                let limit = if state.used.load(Ordering::Relaxed) { idle_timeout } else { header_timeout };
                match state.idle_for() {
                    Some(idle) if idle >= limit => return,
                    Some(idle) => watchdog.as_mut().reset(tokio::time::Instant::now() + (limit - idle)),
                    None => watchdog.as_mut().reset(tokio::time::Instant::now() + limit),
                }
            }
        }
    }
}

/// Per client connection: requests in flight and when the last one finished.
pub(crate) struct ConnState {
    active: AtomicUsize,
    used: AtomicBool,
    epoch: Instant,
    last_ms: AtomicU64,
}

impl ConnState {
    pub(crate) fn new() -> ConnState {
        ConnState {
            active: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// How long the connection has had no request in flight, `None` when busy.
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.epoch.elapsed().saturating_sub(last))
    }
}

/// Marks one request active on its client connection until dropped.
pub(crate) struct ActiveGuard {
    conn: Arc<ConnState>,
}

impl ActiveGuard {
    pub(crate) fn new(conn: Arc<ConnState>) -> ActiveGuard {
        conn.active.fetch_add(1, Ordering::AcqRel);
        conn.used.store(true, Ordering::Relaxed);
        ActiveGuard { conn }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let now = self.conn.epoch.elapsed().as_millis() as u64;
        self.conn.last_ms.store(now, Ordering::Relaxed);
        self.conn.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a forwarded request holds until its response body is finished.
pub(crate) struct RequestGuard {
    /// Only for hyper-served connections, whose watchdog needs to know.
    pub(crate) _active: Option<ActiveGuard>,
    pub(crate) inflight: InflightGuard,
}

impl RequestGuard {
    pub(crate) fn backend_addr(&self) -> SocketAddr {
        self.inflight.backend().addr()
    }
}

/// Counts a worker's open connections and tunnels so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> TrackGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        TrackGuard {
            tracker: self.clone(),
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) struct TrackGuard {
    tracker: Arc<Tracker>,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.tracker.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}
