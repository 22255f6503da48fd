//! Request counters. Each worker owns its own cache-line-aligned set of atomics
//! (no sharing on the request path); [`crate::ProxyHandle::metrics`] sums them.
//!
//! Per backend (one instance of one release of one service), [`BackendStats`] counts
//! the forwarded requests by status class and their latency (until the response head
//! arrived) in fixed buckets: the agent's monitor reads them to tell routes, services
//! and releases apart (per-route figures, the rollback watch, canaries). They sit on
//! the `Backend`, whose cache line the request's in-flight count already touches, so
//! the cost is a few relaxed additions and two clock reads per request, with no
//! allocation and no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

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

/// Upper bounds (inclusive, in milliseconds) of the latency buckets; a last bucket
/// holds everything slower.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000];

/// One backend's request counters since it was created.
#[derive(Debug, Default)]
pub struct BackendStats {
    enabled: AtomicBool,
    status: [AtomicU64; 5],
    upstream_errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// A copy of [`BackendStats`] at one moment. Counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// Responses by status class, 1xx to 5xx (an upstream error counts as the 502 or
    /// 504 the client got).
    pub status: [u64; 5],
    /// Requests that failed because of the upstream (connect, timeout, protocol).
    pub upstream_errors: u64,
    /// Requests per latency bucket (not cumulative): `latency[i]` took at most
    /// `LATENCY_BUCKETS_MS[i]` and more than the bound before it; the last, more.
    pub latency: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of the latencies, in microseconds.
    pub latency_sum_us: u64,
}

impl BackendSnapshot {
    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }

    /// What happened between `earlier` and `self` (saturating: a counter never shrinks,
    /// but a snapshot of another backend must not underflow).
    pub fn since(&self, earlier: &BackendSnapshot) -> BackendSnapshot {
        let mut out = *self;
        for (o, e) in out.status.iter_mut().zip(earlier.status) {
            *o = o.saturating_sub(e);
        }
        for (o, e) in out.latency.iter_mut().zip(earlier.latency) {
            *o = o.saturating_sub(e);
        }
        out.upstream_errors = out.upstream_errors.saturating_sub(earlier.upstream_errors);
        out.latency_sum_us = out.latency_sum_us.saturating_sub(earlier.latency_sum_us);
        out
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &BackendSnapshot) {
        for (o, e) in self.status.iter_mut().zip(other.status) {
            *o += e;
        }
        for (o, e) in self.latency.iter_mut().zip(other.latency) {
            *o += e;
        }
        self.upstream_errors += other.upstream_errors;
        self.latency_sum_us += other.latency_sum_us;
    }
}

impl BackendStats {
    pub(crate) fn new() -> BackendStats {
        let stats = BackendStats::default();
        stats.enabled.store(true, Ordering::Relaxed);
        stats
    }

    /// Counting on or off (off: the request path skips the clock reads too).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BackendSnapshot {
        let mut out = BackendSnapshot::default();
        for (o, a) in out.status.iter_mut().zip(&self.status) {
            *o = a.load(Ordering::Relaxed);
        }
        for (o, a) in out.latency.iter_mut().zip(&self.latency) {
            *o = a.load(Ordering::Relaxed);
        }
        out.upstream_errors = self.upstream_errors.load(Ordering::Relaxed);
        out.latency_sum_us = self.latency_sum_us.load(Ordering::Relaxed);
        out
    }

    /// Starts timing one forwarded request (`None` while counting is off).
    pub(crate) fn start(&self) -> Option<Observation<'_>> {
        self.enabled.load(Ordering::Relaxed).then(|| Observation {
            stats: self,
            started: Instant::now(),
            done: false,
        })
    }

    fn record(&self, status: u16, upstream_error: bool, micros: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status[class].fetch_add(1, Ordering::Relaxed);
        if upstream_error {
            self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| micros <= b * 1000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

/// One forwarded request being timed. Dropped without [`Observation::done`] (the fast
/// path's response deadline passed, or the client left while the upstream was still
/// thinking), it counts as the 504 a timeout answers.
pub(crate) struct Observation<'a> {
    stats: &'a BackendStats,
    started: Instant,
    done: bool,
}

impl Observation<'_> {
    /// The upstream answered with `status` (or failed: `upstream_error`).
    pub(crate) fn done(mut self, status: StatusCode, upstream_error: bool) {
        self.done = true;
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.record(status.as_u16(), upstream_error, micros);
    }
}

impl Drop for Observation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats.record(504, true, micros);
        }
    }
}

/// Records the outcome of sending a request upstream on `obs`, if timed.
pub(crate) fn observe<T>(
    obs: Option<Observation<'_>>,
    result: &Result<T, crate::ProxyError>,
    status: impl Fn(&T) -> StatusCode,
) {
    if let Some(obs) = obs {
        match result {
            Ok(r) => obs.done(status(r), false),
            Err(e) => obs.done(e.status(), e.is_upstream()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_stats_count_classes_and_latency_buckets() {
        let s = BackendStats::new();
        s.record(200, false, 800); // 0.8 ms: first bucket
        s.record(200, false, 1000); // exactly 1 ms: first bucket
        s.record(503, false, 1001); // just over: second
        s.record(502, true, 20_000_000); // 20 s: the last
        let snap = s.snapshot();
        assert_eq!(snap.status, [0, 2, 0, 0, 2]);
        assert_eq!(snap.upstream_errors, 1);
        assert_eq!(snap.latency[0], 2);
        assert_eq!(snap.latency[1], 1);
        assert_eq!(snap.latency[LATENCY_BUCKETS_MS.len()], 1);
        assert_eq!(snap.requests(), 4);
        assert_eq!(snap.latency_sum_us, 800 + 1000 + 1001 + 20_000_000);
        let later = {
            s.record(404, false, 3000);
            s.snapshot()
        };
        let delta = later.since(&snap);
        assert_eq!(delta.status, [0, 0, 0, 1, 0]);
        assert_eq!(delta.latency[2], 1);
    }

    #[test]
    fn an_abandoned_observation_counts_as_a_timeout_and_off_means_off() {
        let s = BackendStats::new();
        drop(s.start());
        assert_eq!(s.snapshot().status[4], 1);
        assert_eq!(s.snapshot().upstream_errors, 1);
        s.set_enabled(false);
        assert!(s.start().is_none());
    }

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
