//! Request counters. Each worker owns its own cache-line-aligned set of atomics
//! (no sharing on the request path); [`crate::ProxyHandle::metrics`] sums them.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

/// Totals since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyMetrics {
    /// Requests answered (forwarded or answered by the proxy itself).
    pub requests: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Requests that failed because of the upstream (connect, timeout, protocol).
    pub upstream_errors: u64,
}

#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    upstream_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, status: StatusCode, upstream_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.status[class].fetch_add(1, Ordering::Relaxed);
        if upstream_error {
            self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_to(&self, m: &mut ProxyMetrics) {
        m.requests += self.requests.load(Ordering::Relaxed);
        m.status_1xx += self.status[0].load(Ordering::Relaxed);
        m.status_2xx += self.status[1].load(Ordering::Relaxed);
        m.status_3xx += self.status[2].load(Ordering::Relaxed);
        m.status_4xx += self.status[3].load(Ordering::Relaxed);
        m.status_5xx += self.status[4].load(Ordering::Relaxed);
        m.upstream_errors += self.upstream_errors.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class() {
        let c = Counters::default();
        c.record(StatusCode::OK, false);
        c.record(StatusCode::BAD_GATEWAY, true);
        c.record(StatusCode::NOT_FOUND, false);
        let mut m = ProxyMetrics::default();
        c.add_to(&mut m);
        assert_eq!(m.requests, 3);
        assert_eq!((m.status_2xx, m.status_4xx, m.status_5xx), (1, 1, 1));
        assert_eq!(m.upstream_errors, 1);
    }
}
