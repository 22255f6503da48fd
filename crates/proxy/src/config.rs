//! Proxy settings: where to listen, how many worker threads, and every limit and
//! timeout the proxy enforces. Plain data; the agent fills it from `dockhand.toml`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::AccessLogConfig;
use crate::compress::Compression;
use crate::policy::Cidr;
use crate::tls::CertStore;

/// Settings for [`crate::Proxy::start`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on; port 0 picks a free port (see `ProxyHandle::local_addr`).
    pub listen: SocketAddr,
    /// HTTPS: a second listener whose connections are TLS (absent: plain HTTP only).
    pub https: Option<HttpsConfig>,
    /// Worker threads, each with its own runtime, listener and upstream pool (at least 1).
    pub workers: usize,
    /// Largest request body forwarded, in bytes; larger bodies get 413.
    pub max_request_body: u64,
    /// A client must send complete request headers within this time.
    pub client_header_timeout: Duration,
    /// Connecting to a backend must finish within this time (else 504).
    pub upstream_connect_timeout: Duration,
    /// A backend must send response headers within this time (else 504).
    pub upstream_response_timeout: Duration,
    /// A client keep-alive connection with no request in flight is closed after this time,
    /// and so is one that accepts no bytes of a response for this long (fast path).
    pub client_idle_timeout: Duration,
    /// A pooled backend connection unused for this long is closed.
    pub upstream_idle_timeout: Duration,
    /// Compression of text responses for clients that accept it (`None`: off).
    pub compression: Option<Compression>,
    /// Peers whose `X-Forwarded-For` names the client (a CDN, a load balancer in front).
    pub trusted_proxies: Vec<Cidr>,
    /// One line per request (`None`: off).
    pub access_log: Option<AccessLogConfig>,
    /// HTML pages answered instead of the proxy's own text for these statuses (502, 503, 504).
    pub error_pages: Vec<(u16, bytes::Bytes)>,
    /// Bind the listeners but accept nothing until [`crate::ProxyHandle::open`]: connections
    /// wait in the kernel's backlog meanwhile (for a server that restores its routes first).
    pub start_closed: bool,
    /// A backend the proxy could not connect to (refused, timed out, unreachable) is no longer
    /// picked from that moment (`Backend::set_healthy(false)`) until its owner's probes put it
    /// back: for an owner that marks each backend healthy at every passed probe (the cluster's
    /// ingress), so that a lost node's tasks fail only the requests already sent to them.
    pub eject_unreachable: bool,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_request_body: 10 * 1024 * 1024,
            client_header_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::from_secs(75),
            upstream_idle_timeout: Duration::from_secs(30),
            compression: Some(Compression::default()),
            trusted_proxies: Vec::new(),
            access_log: None,
            error_pages: Vec::new(),
            start_closed: false,
            eject_unreachable: false,
        }
    }
}

/// The HTTPS listener: where, and the certificates it serves.
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    /// Address of the TLS listener; port 0 picks a free port (see `ProxyHandle::https_addr`).
    pub listen: SocketAddr,
    /// The certificates; the proxy keeps this store, so replacing its contents (for
    /// example through `ProxyHandle::set_certificates`) takes effect on a running proxy.
    pub certificates: Arc<CertStore>,
}
