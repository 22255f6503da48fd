//! Per-route policies applied by the proxy before a request is served, and to its response:
//! IP allow and deny lists, per-client rate limits (a token bucket per route and client),
//! response headers (the security headers by default, unless the app sets its own), request
//! headers set or removed on the way upstream, and basic authentication (`auth.rs`).
//!
//! The client of a request is the connection's peer, unless that peer is a trusted proxy
//! (`ProxyConfig::trusted_proxies`, e.g. a CDN's ranges): then it is the rightmost address
//! of `X-Forwarded-For` that is not a trusted proxy. A spoofed `X-Forwarded-For` from an
//! untrusted peer changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::auth::{BasicAuth, Verdict};
use crate::body::ResponseBody;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `v6/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A token bucket: `rate` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// What a route does besides forwarding.
#[derive(Debug, Default)]
pub struct RoutePolicy {
    /// Only these clients (empty: everyone).
    pub allow: Vec<Cidr>,
    /// Never these clients.
    pub deny: Vec<Cidr>,
    pub rate_limit: Option<RateLimit>,
    /// Set on responses that lack them (the security headers, unless turned off, and the
    /// route's own).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Set on the request to the upstream (`None`: the header is removed).
    pub request_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Users who may pass (none: no authentication).
    pub basic_auth: Option<BasicAuth>,
    buckets: Buckets,
}

/// The security headers added by default (unless the app sets them).
pub fn security_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("SAMEORIGIN"),
        ),
    ]
}

impl RoutePolicy {
    pub fn new(
        allow: Vec<Cidr>,
        deny: Vec<Cidr>,
        rate_limit: Option<RateLimit>,
        response_headers: Vec<(HeaderName, HeaderValue)>,
    ) -> RoutePolicy {
        RoutePolicy {
            allow,
            deny,
            rate_limit,
            response_headers,
            request_headers: Vec::new(),
            basic_auth: None,
            buckets: Buckets::default(),
        }
    }

    /// Sets (or, with `None`, removes) these headers on requests to the upstream.
    pub fn with_request_headers(
        mut self,
        headers: Vec<(HeaderName, Option<HeaderValue>)>,
    ) -> RoutePolicy {
        self.request_headers = headers;
        self
    }

    /// Asks for one of these users' credentials.
    pub fn with_basic_auth(mut self, auth: BasicAuth) -> RoutePolicy {
        self.basic_auth = Some(auth);
        self
    }

    /// Whether checking a request needs its client's address.
    pub(crate) fn needs_client(&self) -> bool {
        !self.allow.is_empty()
            || !self.deny.is_empty()
            || self.rate_limit.is_some()
            || self.basic_auth.is_some()
    }

    /// Whether the request to the upstream gets headers changed.
    pub(crate) fn rewrites_request(&self) -> bool {
        !self.request_headers.is_empty()
    }

    /// Sets and removes the route's request headers.
    pub(crate) fn apply_request(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.request_headers {
            match value {
                Some(v) => {
                    headers.insert(name.clone(), v.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }

    /// `None` to let the request through, else the answer (403, 429 or 401).
    /// `authorization`: the request's `Authorization` header.
    pub(crate) fn check(
        &self,
        client: IpAddr,
        authorization: Option<&[u8]>,
    ) -> Option<Response<ResponseBody>> {
        let client = client.to_canonical();
        if self.deny.iter().any(|c| c.contains(client))
            || (!self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(client)))
        {
            return Some(plain(StatusCode::FORBIDDEN, "403 forbidden\n"));
        }
        if let Some(limit) = self.rate_limit {
            if let Err(wait) = self.buckets.take(client, limit, Instant::now()) {
                return Some(too_many(wait));
            }
        }
        if let Some(auth) = &self.basic_auth {
            match auth.check(authorization, client) {
                Verdict::Allowed => {}
                Verdict::Denied => return Some(auth.challenge()),
                Verdict::LockedOut(wait) => return Some(too_many(wait)),
            }
        }
        None
    }

    /// Adds the route's response headers the response does not already have.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.response_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Maintenance mode: the routes of `services` (every route when empty) answer 503 with
/// `Retry-After` and the page (HTML) instead of being served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The services in maintenance; empty: all of them.
    pub services: Vec<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: u64,
    /// The HTML page (a built-in one when `None`).
    pub page: Option<String>,
}

/// The page answered during maintenance when none is configured.
pub const MAINTENANCE_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>Down for maintenance</h1><p>We will be back shortly. Please try again in a few minutes.</p></body></html>\n";

impl Maintenance {
    pub(crate) fn covers(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }

    pub(crate) fn response(&self) -> Response<ResponseBody> {
        let page = self
            .page
            .clone()
            .unwrap_or_else(|| MAINTENANCE_PAGE.to_string());
        let mut r = Response::new(ResponseBody::full(page));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(self.retry_after.max(1)),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r
    }
}

/// The client address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not one (entries that do not parse end the walk).
pub(crate) fn client_addr(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &[Cidr]) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for entry in list.rsplit(|&b| b == b',') {
        let Some(ip) = std::str::from_utf8(entry)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
        else {
            break;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    client
}

const SHARDS: usize = 16;
/// Clients remembered per shard before full buckets are forgotten.
const SHARD_CLIENTS: usize = 4096;

/// Token buckets by client, in shards so workers rarely wait on one another.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    shards: [Mutex<HashMap<IpAddr, Bucket>>; SHARDS],
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    /// Whether `client` has a token now (without taking it), else how long until it has.
    pub(crate) fn peek(
        &self,
        client: IpAddr,
        limit: RateLimit,
        now: Instant,
    ) -> Result<(), Duration> {
        let map = self.shards[shard_of(client)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(b) = map.get(&client) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        let tokens = (b.tokens + elapsed * limit.per_second).min(f64::from(limit.burst.max(1)));
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / limit.per_second.max(1e-9),
            ))
        }
    }

    /// Takes a token for `client`, or says how long until one is there.
    pub(crate) fn take(
        &self,
        client: IpAddr,
        limit: RateLimit,
        now: Instant,
    ) -> Result<(), Duration> {
        let shard = shard_of(client);
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let burst = f64::from(limit.burst.max(1));
        if map.len() >= SHARD_CLIENTS && !map.contains_key(&client) {
            // Forget clients whose bucket has refilled (they are as new).
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * limit.per_second
                    < burst
            });
            if map.len() >= SHARD_CLIENTS {
                map.clear();
            }
        }
        let b = map.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - b.tokens;
            Err(Duration::from_secs_f64(
                missing / limit.per_second.max(1e-9),
            ))
        }
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let n = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    (n as usize ^ (n >> 64) as usize).wrapping_mul(0x9E37_79B9) % SHARDS
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration) -> Response<ResponseBody> {
    let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "429 too many requests\n");
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.9.9")),
            "v4-mapped addresses count"
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8::1")));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let cdn = [Cidr::parse("173.245.48.0/20").unwrap()];
        let xff = Some(&b"6.6.6.6, 203.0.113.9"[..]);
        // Untrusted peer: its X-Forwarded-For is ignored.
        assert_eq!(
            client_addr(ip("198.51.100.1"), xff, &cdn),
            ip("198.51.100.1")
        );
        // Trusted peer: the rightmost untrusted entry (not the spoofable leftmost).
        assert_eq!(
            client_addr(ip("173.245.48.5"), xff, &cdn),
            ip("203.0.113.9")
        );
        let chain = Some(&b"203.0.113.9, 173.245.48.7"[..]);
        assert_eq!(
            client_addr(ip("173.245.48.5"), chain, &cdn),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_addr(ip("173.245.48.5"), None, &cdn),
            ip("173.245.48.5")
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b = Buckets::default();
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let t0 = Instant::now();
        let c = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(b.take(c, limit, t0).is_ok());
        }
        let wait = b.take(c, limit, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(ip("192.0.2.2"), limit, t0).is_ok(), "per client");
        assert!(b.take(c, limit, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(c, limit, t0 + Duration::from_millis(500)).is_err());
    }
}
