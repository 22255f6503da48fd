//! `dockhand_loadtest`: the HTTP/1.1 load generator behind `dockhand loadtest`.
//!
//! A run is a [`Plan`] (where, what, how hard, how long) executed by [`run`]: keep-alive
//! connections on hyper's connection-level client, one current-thread Tokio runtime per
//! thread, latencies in per-thread HDR histograms merged at the end ([`Measurements`]).
//! [`report::Report`] turns measurements and [`Thresholds`] into numbers, a verdict
//! (PASS / WARN / FAIL) and its markdown or JSON rendering.
//!
//! The decisions are pure functions with plain-data tests: percentiles ([`summary`]),
//! verdicts ([`verdict`]), which endpoint each request goes to ([`picker`]), whether a target
//! is this machine ([`target`]), scenario files ([`scenario`]) and login tokens ([`auth`]).

pub mod auth;
mod conn;
mod engine;
mod pacer;
pub mod picker;
pub mod report;
pub mod scenario;
pub mod summary;
pub mod target;
pub mod verdict;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};

pub use engine::{run, EndpointMeasure, ErrorCounts, ErrorKind, Measurements};
pub use report::Report;
pub use target::Origin;
pub use verdict::{Thresholds, Verdict};

/// The HTTP/1.1 client's wire, for the fuzz targets in `fuzz/` only: not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::conn::Stream;
    pub use crate::wire::{Encoded, Wire, WireError};
}

/// The exit code of a run whose verdict is WARN (PASS is 0, FAIL is 1). Distinct from
/// every other code of the CLI (2 usage, 3 unreachable, 4 conflict, 5 not found), so CI can
/// tell "passed with warnings" from both success and failure.
pub const EXIT_WARN: u8 = 6;

/// One kind of request of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// How reports name it.
    pub name: String,
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Its share of the requests, relative to the other endpoints' weights.
    pub weight: u32,
}

/// A request sent once before the load, whose answer holds the token the load carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A secret: never printed.
    pub body: Bytes,
    pub token: TokenSource,
}

/// Where a login answer holds its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A dotted path into the JSON body (`token`, `data.access_token`, `items.0.token`).
    JsonField(String),
    /// A response header.
    Header(HeaderName),
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long; requests still in flight then are not counted (as wrk does).
    Duration(Duration),
    /// After exactly this many requests (attempts, failed ones included).
    Requests(u64),
}

/// Everything a run needs, checked and resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub origin: Origin,
    /// The addresses to connect to (already checked by the caller), tried in order.
    pub addrs: Vec<SocketAddr>,
    pub endpoints: Vec<Endpoint>,
    pub login: Option<Login>,
    /// Sent as `Authorization: Bearer …` with every request (a secret: never printed).
    pub bearer: Option<String>,
    pub connections: usize,
    /// Threads (each with its own runtime); 0: one per core, at most one per connection.
    pub threads: usize,
    pub stop: Stop,
    /// Open-loop requests per second over all connections, timed from their intended send
    /// time; `None`: closed loop (each connection sends its next request when the answer
    /// to the previous one is in).
    pub rate: Option<f64>,
    /// Per request, from send to the last byte of the answer.
    pub timeout: Duration,
    /// Per connection attempt (TCP, then TLS).
    pub connect_timeout: Duration,
    /// Accept any TLS certificate (self-signed test servers).
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("invalid load test: {0}")]
    Invalid(String),
    #[error(transparent)]
    Picker(#[from] picker::PickerError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("login request {method} {path} failed: {why}")]
    Login {
        method: String,
        path: String,
        why: String,
    },
    #[error("failed to start the load threads: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Requests finished so far, readable from another thread while a run goes on (for a
/// progress bar). Each load thread counts in its own cache line.
#[derive(Debug)]
pub struct Progress {
    slots: [Slot; PROGRESS_SLOTS],
}

const PROGRESS_SLOTS: usize = 64;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl Progress {
    /// Requests finished (answered or failed) by all threads.
    pub fn done(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    fn add(&self, thread: usize, n: u64) {
        self.slots[thread % PROGRESS_SLOTS]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }
}
