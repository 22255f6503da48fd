//! Backends (one running instance behind a route) and the guard a request holds
//! on its backend. The `inflight` count is what draining waits on: a request or
//! upgraded tunnel keeps its [`InflightGuard`] until it is completely finished.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::BackendStats;

/// One upstream instance. Shared (`Arc`) between routing tables, requests and the agent.
#[derive(Debug)]
pub struct Backend {
    id: u64,
    addr: SocketAddr,
    healthy: AtomicBool,
    inflight: AtomicUsize,
    /// Requests and latencies (`metrics.rs`), read by the agent's monitor.
    stats: BackendStats,
}

impl Backend {
    /// A new backend; it starts healthy. `id` must be unique per instance (the
    /// upstream connection pool is keyed by it, not by address).
    pub fn new(id: u64, addr: SocketAddr) -> Arc<Backend> {
        Arc::new(Backend {
            id,
            addr,
            healthy: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
            stats: BackendStats::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// What this backend served: requests by status class and their latency.
    pub fn stats(&self) -> &BackendStats {
        &self.stats
    }

    /// Requests and upgraded connections currently using this backend.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
}

/// Counts one request (or tunnel) against a backend until dropped.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    backend: Arc<Backend>,
}

impl InflightGuard {
    pub(crate) fn new(backend: Arc<Backend>) -> InflightGuard {
        backend.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard { backend }
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.backend.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_inflight() {
        let b = Backend::new(1, "127.0.0.1:1".parse().unwrap());
        assert!(b.is_healthy());
        let g1 = InflightGuard::new(b.clone());
        let g2 = InflightGuard::new(b.clone());
        assert_eq!(b.inflight(), 2);
        drop(g1);
        assert_eq!(b.inflight(), 1);
        drop(g2);
        assert_eq!(b.inflight(), 0);
        b.set_healthy(false);
        assert!(!b.is_healthy());
    }
}
