//! Upstream HTTP/1.1 connections: connecting with a timeout, and per-worker
//! (thread-local, lock-free) pools of idle keep-alive connections keyed by backend
//! id. Ids, not addresses: a later instance may reuse a port of a stopped one.
//! Two kinds are pooled: [`h1::Conn`]s for requests without a body (the common
//! case, see `h1.rs`) and hyper client connections for requests with one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::error::{ErrorKind, ProxyError};
use crate::h1;

/// Idle connections kept per backend and worker.
const MAX_IDLE_PER_BACKEND: usize = 256;

pub(crate) type Sender = SendRequest<RequestBody>;

thread_local! {
    static POOL: RefCell<IdlePool> = RefCell::new(IdlePool::default());
}

#[derive(Default)]
struct IdlePool {
    idle: HashMap<u64, Vec<(Sender, Duration)>>,
    direct: HashMap<u64, Vec<(h1::Conn, Duration)>>,
}

/// Returns a connection whose last response is complete to this worker's pool.
pub(crate) fn release_direct(conn: h1::Conn) {
    let now = crate::clock::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.direct.entry(conn.backend_id).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push((conn, now));
        }
    });
}

/// Takes the most recently used idle direct connection to `backend_id`, dropping
/// expired ones on the way. One the upstream closed meanwhile is found out by
/// the request that uses it, which then retries on a new connection.
pub(crate) fn checkout_direct(backend_id: u64, idle_timeout: Duration) -> Option<h1::Conn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.direct.get_mut(&backend_id)?;
        let now = crate::clock::now();
        while let Some((conn, since)) = list.pop() {
            if now.saturating_sub(since) < idle_timeout {
                return Some(conn);
            }
        }
        None
    })
}

/// Opens a new direct connection to `addr` within `timeout`.
pub(crate) async fn connect_direct(
    backend_id: u64,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<h1::Conn, ProxyError> {
    let stream = connect_tcp(addr, timeout).await?;
    Ok(h1::Conn::new(backend_id, stream))
}

/// A connection lent to one request; [`Pooled::release`] returns it to the pool.
pub(crate) struct Pooled {
    backend_id: u64,
    sender: Sender,
}

impl Pooled {
    pub(crate) fn new(backend_id: u64, sender: Sender) -> Pooled {
        Pooled { backend_id, sender }
    }

    /// Puts the connection back into this worker's pool if it is still usable.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = crate::clock::now();
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.idle.entry(self.backend_id).or_default();
            if list.len() < MAX_IDLE_PER_BACKEND {
                list.push((self.sender, now));
            }
        });
    }
}

/// Takes the most recently used idle connection to `backend_id`, dropping expired
/// and closed ones on the way.
pub(crate) fn checkout(backend_id: u64, idle_timeout: Duration) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.idle.get_mut(&backend_id)?;
        let now = crate::clock::now();
        while let Some((sender, since)) = list.pop() {
            if now.saturating_sub(since) < idle_timeout && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    })
}

/// Closes idle connections older than `idle_timeout` on this worker.
pub(crate) fn sweep(idle_timeout: Duration) {
    let now = crate::clock::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.idle.retain(|_, list| {
            list.retain(|(sender, since)| {
                now.saturating_sub(*since) < idle_timeout && !sender.is_closed()
            });
            !list.is_empty()
        });
        pool.direct.retain(|_, list| {
            list.retain(|(_, since)| now.saturating_sub(*since) < idle_timeout);
            !list.is_empty()
        });
    });
}

/// Drops every idle connection of this worker (used at shutdown).
pub(crate) fn clear() {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.idle.clear();
        pool.direct.clear();
    });
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

/// Opens a new pooled-style (no upgrades) HTTP/1.1 connection; the connection task
/// runs on the current worker.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ProxyError> {
    let stream = connect_tcp(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::upstream(ErrorKind::UpstreamProtocol, addr, "handshake failed"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
