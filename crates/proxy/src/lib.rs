//! Dockhand's reverse proxy: terminates HTTPS (certificates chosen by SNI from a
//! replaceable store) and routes HTTP/1.1, h2, h2c and WebSocket traffic to
//! backends by host and path prefix, streams bodies both ways, swaps its routing
//! table atomically and can report when old backends are drained.
//!
//! One current-thread Tokio runtime per worker thread, each with its own
//! `SO_REUSEPORT` listener and upstream connection pool; the routing table is
//! shared through an `ArcSwap`. Bodiless HTTP/1 requests take a fast path of our
//! own (`h1server.rs`, `h1.rs`); everything else is served by hyper. See
//! `ARCHITECTURE.md`.

mod access_log;
mod acme;
mod auth;
mod backend;
mod body;
mod clock;
mod compress;
mod config;
mod date;
mod error;
mod forward;
mod h1;
mod h1server;
mod handle;
mod headers;
mod metrics;
mod policy;
mod pool;
mod redirect;
mod rewind;
mod server;
mod static_files;
mod table;
mod tls;
mod upgrade;

pub use access_log::{AccessFormat, AccessLogConfig};
pub use acme::{Challenges, RouteHttps, ACME_TLS_ALPN, HTTP01_PREFIX};
pub use auth::{BasicAuth, HtpasswdError};
pub use backend::Backend;
pub use compress::{Coding, Compression};
pub use config::{HttpsConfig, ProxyConfig};
pub use error::{ErrorKind, ErrorSource, ProxyError, RouteError};
pub use handle::{DrainOutcome, Inherited, Proxy, ProxyHandle};
pub use metrics::{BackendSnapshot, BackendStats, ProxyMetrics, LATENCY_BUCKETS_MS};
pub use policy::{security_headers, Cidr, Maintenance, RateLimit, RoutePolicy, MAINTENANCE_PAGE};
pub use redirect::Redirect;
pub use static_files::{CacheRules, StaticError, StaticOptions, StaticSite};
pub use table::{
    client_slot, normalize_host, prefix_matches, strip_prefix, Canary, Route, RouteTable,
};
pub use tls::{CertStore, TlsCertificate};

/// The TLS library, so callers build [`TlsCertificate`]s from the same version.
pub use rustls;
