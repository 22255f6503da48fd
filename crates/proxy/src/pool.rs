//! Upstream HTTP/1.1 connections: connecting with a timeout, and a per-worker
//! (thread-local, lock-free) pool of idle keep-alive connections keyed by backend
//! id. Ids, not addresses: a later instance may reuse a port of a stopped one.
//!
//! A pooled connection has no task of its own: the request using it drives hyper's
//! connection future from its own task (while waiting for the response headers, and
//! from the response body as the client reads it). That saves the wake-ups and task
//! switches between a request and a separate connection task on every request; an
//! idle connection is polled once, with a no-op waker, when it is returned and when
//! it is checked out, which is when a close by the upstream is noticed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::error::{ErrorKind, ProxyError};

/// Idle connections kept per backend and worker.
const MAX_IDLE_PER_BACKEND: usize = 256;

type Connection = http1::Connection<TokioIo<TcpStream>, RequestBody>;

thread_local! {
    static POOL: RefCell<IdlePool> = RefCell::new(IdlePool::default());
}

#[derive(Default)]
struct IdlePool {
    idle: HashMap<u64, Vec<(Upstream, Instant)>>,
}

/// One upstream connection: the request half and the connection future, driven by
/// whoever holds it. [`Upstream::release`] returns it to the pool.
pub(crate) struct Upstream {
    backend_id: u64,
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    conn: Connection,
    /// The connection future finished: closed by either side, or failed.
    done: bool,
}

/// How a request on an upstream connection ended before its response headers.
pub(crate) enum SendError {
    /// hyper's error; the request comes back when it was never written.
    Hyper(TrySendError<Request<RequestBody>>),
    /// The connection ended without answering (closed while the request was in flight).
    Closed,
}

impl Upstream {
    /// Drives the connection; `Ready` once it has ended (it is then unusable).
    pub(crate) fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match self.conn.poll_without_shutdown(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(upstream = %self.addr, error = %e, "upstream connection ended with an error");
                }
                self.done = true;
                Poll::Ready(())
            }
        }
    }

    /// Sends one request and drives the connection until its response headers arrive.
    pub(crate) async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut response = pin!(self.sender.try_send_request(req));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = response.as_mut().poll(cx) {
                return Poll::Ready(r.map_err(SendError::Hyper));
            }
            if self.poll_conn(cx).is_ready() {
                // The dispatcher answers a request it could not finish before it ends.
                return match response.as_mut().poll(cx) {
                    Poll::Ready(r) => Poll::Ready(r.map_err(SendError::Hyper)),
                    Poll::Pending => Poll::Ready(Err(SendError::Closed)),
                };
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the connection can take a request now. Polls it once without a
    /// waker, so a finished exchange becomes idle and a close by the upstream is seen.
    fn ready_for_reuse(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.poll_conn(&mut cx);
        !self.done && !self.sender.is_closed() && self.sender.is_ready()
    }

    /// Puts the connection back into this worker's pool if it is still usable.
    pub(crate) fn release(mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        if self.poll_conn(&mut cx).is_ready() || self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.idle.entry(self.backend_id).or_default();
            if list.len() < MAX_IDLE_PER_BACKEND {
                list.push((self, now));
            }
        });
    }
}

/// Takes the most recently used idle connection to `backend_id` that is ready for a
/// request, dropping expired, closed and busy ones on the way.
pub(crate) fn checkout(backend_id: u64, idle_timeout: Duration) -> Option<Upstream> {
    let now = Instant::now();
    loop {
        // Out of the pool first: polling a connection may run arbitrary code.
        let (mut up, since) =
            POOL.with(|pool| pool.borrow_mut().idle.get_mut(&backend_id)?.pop())?;
        if now.duration_since(since) < idle_timeout && up.ready_for_reuse() {
            return Some(up);
        }
    }
}

/// Closes idle connections older than `idle_timeout` on this worker.
pub(crate) fn sweep(idle_timeout: Duration) {
    let now = Instant::now();
    let expired: Vec<Upstream> = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let mut out = Vec::new();
        for list in pool.idle.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if now.duration_since(list[i].1) >= idle_timeout || list[i].0.sender.is_closed() {
                    out.push(list.swap_remove(i).0);
                } else {
                    i += 1;
                }
            }
        }
        pool.idle.retain(|_, list| !list.is_empty());
        out
    });
    drop(expired);
}

/// Drops every idle connection of this worker (used at shutdown).
pub(crate) fn clear() {
    let all = POOL.with(|pool| std::mem::take(&mut pool.borrow_mut().idle));
    drop(all);
}

/// Opens a TCP connection to `addr` within `timeout`.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(ProxyError::upstream(
            ErrorKind::ConnectRefused,
            addr,
            "refused the connection",
        )),
        Ok(Err(e)) => Err(ProxyError::upstream(
            ErrorKind::ConnectFailed,
            addr,
            &format!("could not be reached: {}", e.kind()),
        )),
        Err(_) => Err(ProxyError::upstream(
            ErrorKind::ConnectTimeout,
            addr,
            "did not accept the connection in time",
        )),
    }
}

/// Opens a new HTTP/1.1 connection for the pool (no upgrades); its future is driven
/// by the requests that use it.
pub(crate) async fn connect(
    backend_id: u64,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Upstream, ProxyError> {
    let stream = connect_tcp(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::upstream(ErrorKind::UpstreamProtocol, addr, "handshake failed"))?;
    Ok(Upstream {
        backend_id,
        addr,
        sender,
        conn,
        done: false,
    })
}
