//! The routing table: which backends serve a request, chosen by host and then
//! by the longest path prefix on a segment boundary. Built once (validated and
//! indexed) and swapped whole; lookup is a pure function without allocation
//! for lowercase hosts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::acme::RouteHttps;
use crate::backend::Backend;
use crate::error::RouteError;
use crate::policy::RoutePolicy;
use crate::redirect::Redirect;
use crate::static_files::StaticSite;

/// One route: requests for `host` (any host when `None`) whose path starts with
/// `path_prefix` go to `backends` of `service`.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: Option<String>,
    pub path_prefix: String,
    /// Remove `path_prefix` from the path before forwarding.
    pub strip_prefix: bool,
    /// Put this in front of the path before forwarding (after `strip_prefix`); starts with
    /// '/', no trailing '/'.
    pub add_prefix: Option<String>,
    /// Largest request body for this route (`None`: `ProxyConfig::max_request_body`).
    pub max_body: Option<u64>,
    /// Wait this long for the response head (`None`: `ProxyConfig::upstream_response_timeout`).
    pub upstream_response_timeout: Option<std::time::Duration>,
    pub service: String,
    pub backends: Vec<Arc<Backend>>,
    /// HTTP → HTTPS redirect and HSTS, applied while a served certificate names `host`.
    pub https: RouteHttps,
    /// A static site the proxy serves itself (then `backends` is empty); mounted at
    /// `path_prefix`, which is always removed before the file lookup.
    pub site: Option<Arc<StaticSite>>,
    /// Allow/deny lists, rate limit and response headers.
    pub policy: Arc<RoutePolicy>,
}

/// An immutable, indexed set of routes.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Route indices per lowercase host, longest prefix first.
    by_host: HashMap<String, Vec<usize>>,
    /// Routes without host, longest prefix first.
    any_host: Vec<usize>,
    /// Round-robin counter per route.
    next: Vec<AtomicUsize>,
    /// A canary split per route (`None` on almost every route).
    canaries: Vec<Option<CanarySplit>>,
    /// Answered before routing.
    redirects: Vec<Redirect>,
}

/// A share of a route's requests sent to other backends (a canary release), chosen by the
/// client's address so that each client stays on its side: a client whose address hashes
/// below the share goes to the canary, and as the share grows the clients already on the
/// canary stay there.
#[derive(Debug, Clone)]
pub struct Canary {
    pub backends: Vec<Arc<Backend>>,
    /// Requests to the canary, in ten-thousandths (1000 = 10 %).
    pub share: u32,
}

#[derive(Debug)]
struct CanarySplit {
    canary: Canary,
    next: AtomicUsize,
}

impl RouteTable {
    /// Validates and indexes `routes`: hosts are lowercased (a trailing port or dot is
    /// removed), prefixes must start with '/' (a trailing '/' is dropped), and two
    /// routes may not share host and prefix.
    pub fn new(routes: Vec<Route>) -> Result<RouteTable, RouteError> {
        let mut routes = routes;
        for route in &mut routes {
            route.path_prefix =
                normalize_prefix(&route.path_prefix).ok_or_else(|| RouteError::InvalidPrefix {
                    service: route.service.clone(),
                    prefix: route.path_prefix.clone(),
                })?;
            if let Some(host) = &route.host {
                let normalized = normalize_host(host);
                if normalized.is_empty() || normalized.contains(['/', ' ']) {
                    return Err(RouteError::InvalidHost {
                        service: route.service.clone(),
                        host: host.clone(),
                    });
                }
                route.host = Some(normalized.into_owned());
            }
            if let Some(add) = &route.add_prefix {
                let normalized =
                    normalize_prefix(add).ok_or_else(|| RouteError::InvalidPrefix {
                        service: route.service.clone(),
                        prefix: add.clone(),
                    })?;
                route.add_prefix = (normalized != "/").then_some(normalized);
            }
        }
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_host = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let list = match &route.host {
                Some(h) => by_host.entry(h.clone()).or_default(),
                None => &mut any_host,
            };
            if list
                .iter()
                .any(|&j| routes[j].path_prefix == route.path_prefix)
            {
                return Err(RouteError::Duplicate {
                    host: route.host.clone(),
                    prefix: route.path_prefix.clone(),
                });
            }
            list.push(i);
        }
        let by_len = |a: &usize, b: &usize| {
            routes[*b]
                .path_prefix
                .len()
                .cmp(&routes[*a].path_prefix.len())
        };
        any_host.sort_by(by_len);
        for list in by_host.values_mut() {
            list.sort_by(by_len);
        }
        let next = routes.iter().map(|_| AtomicUsize::new(0)).collect();
        let canaries = routes.iter().map(|_| None).collect();
        Ok(RouteTable {
            routes,
            by_host,
            any_host,
            next,
            canaries,
            redirects: Vec::new(),
        })
    }

    /// The table with `redirects`, answered before routing (the first matching rule wins;
    /// rules are tried longest path prefix first).
    pub fn with_redirects(mut self, redirects: Vec<Redirect>) -> Result<RouteTable, RouteError> {
        let mut rules = redirects
            .into_iter()
            .map(Redirect::normalized)
            .collect::<Result<Vec<_>, _>>()?;
        rules.sort_by_key(|r| std::cmp::Reverse(r.from_path.len()));
        self.redirects = rules;
        Ok(self)
    }

    pub fn redirects(&self) -> &[Redirect] {
        &self.redirects
    }

    /// The same routes with `canaries` (by service) splitting their requests; a canary
    /// without backends, or with no share, is left out.
    pub fn with_canaries(mut self, canaries: &HashMap<String, Canary>) -> RouteTable {
        for (i, route) in self.routes.iter().enumerate() {
            self.canaries[i] = canaries
                .get(&route.service)
                .filter(|c| !c.backends.is_empty() && c.share > 0)
                .map(|c| CanarySplit {
                    canary: Canary {
                        backends: c.backends.clone(),
                        share: c.share.min(10_000),
                    },
                    next: AtomicUsize::new(0),
                });
        }
        self
    }

    /// The canary split of route `index`, if it has one.
    pub fn canary(&self, index: usize) -> Option<&Canary> {
        self.canaries.get(index)?.as_ref().map(|c| &c.canary)
    }

    /// The routes, without any canary split (what a canary that is aborted goes back to).
    pub fn without_canaries(&self) -> RouteTable {
        RouteTable::new(self.routes.clone())
            .and_then(|t| t.with_redirects(self.redirects.clone()))
            .unwrap_or_else(|_| RouteTable::empty())
    }

    /// Whether route `index` splits its requests (so routing needs the client's address).
    pub(crate) fn has_canary(&self, index: usize) -> bool {
        self.canaries.get(index).is_some_and(Option::is_some)
    }

    /// A table without routes: every request gets 404.
    pub fn empty() -> RouteTable {
        RouteTable {
            routes: Vec::new(),
            by_host: HashMap::new(),
            any_host: Vec::new(),
            next: Vec::new(),
            canaries: Vec::new(),
            redirects: Vec::new(),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request: routes for exactly this host first, then routes
    /// without host; within each, the longest prefix matching on a segment boundary.
    /// `host` may carry a port and any case; `path` excludes the query.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.lookup_index(host, path).map(|i| &self.routes[i])
    }

    pub(crate) fn lookup_index(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host {
            if !self.by_host.is_empty() {
                let host = normalize_host(host);
                if let Some(list) = self.by_host.get(host.as_ref()) {
                    if let Some(i) = self.first_match(list, path) {
                        return Some(i);
                    }
                }
            }
        }
        self.first_match(&self.any_host, path)
    }

    /// Round-robin over the healthy backends of route `index`; with a canary split, over
    /// the canary's when `client` falls within its share (and one of them is healthy).
    pub(crate) fn pick_backend(
        &self,
        index: usize,
        client: Option<std::net::IpAddr>,
    ) -> Option<&Arc<Backend>> {
        if let (Some(Some(split)), Some(client)) = (self.canaries.get(index), client) {
            if client_slot(client) < split.canary.share {
                if let Some(b) = round_robin(&split.canary.backends, &split.next) {
                    return Some(b);
                }
            }
        }
        round_robin(&self.routes[index].backends, &self.next[index])
    }

    fn first_match(&self, list: &[usize], path: &str) -> Option<usize> {
        list.iter()
            .copied()
            .find(|&i| prefix_matches(&self.routes[i].path_prefix, path))
    }
}

fn round_robin<'t>(backends: &'t [Arc<Backend>], next: &AtomicUsize) -> Option<&'t Arc<Backend>> {
    let n = backends.len();
    if n == 0 {
        return None;
    }
    let start = next.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|k| &backends[(start.wrapping_add(k)) % n])
        .find(|b| b.is_healthy())
}

/// Where a client falls in 0..10000: FNV-1a of its address, so the same client lands in the
/// same place in every table and every agent run.
pub fn client_slot(client: std::net::IpAddr) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let octets: &[u8] = match &client {
        std::net::IpAddr::V4(a) => &a.octets(),
        std::net::IpAddr::V6(a) => &a.octets(),
    };
    for b in octets {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for inputs differing in one byte: fold the high half in.
    hash ^= hash >> 29;
    (hash % 10_000) as u32
}

/// Whether `prefix` (normalized) matches `path` on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Removes `prefix` from the path of `path_and_query`, keeping the query; the
/// result always starts with '/'. Callers only pass a prefix that matched.
pub fn strip_prefix(path_and_query: &str, prefix: &str) -> String {
    if prefix == "/" {
        return path_and_query.to_owned();
    }
    let rest = path_and_query
        .strip_prefix(prefix)
        .unwrap_or(path_and_query);
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        let mut out = String::with_capacity(rest.len() + 1);
        out.push('/');
        out.push_str(rest);
        out
    }
}

/// The upstream path of a request whose route matched: `strip` removes the route's
/// prefix, then `add` goes in front. `None` when nothing changes.
pub(crate) fn rewrite_path(
    path_and_query: &str,
    prefix: &str,
    strip: bool,
    add: Option<&str>,
) -> Option<String> {
    let stripped = if strip && prefix != "/" {
        Some(strip_prefix(path_and_query, prefix))
    } else {
        None
    };
    let Some(add) = add else {
        return stripped;
    };
    let rest = stripped.as_deref().unwrap_or(path_and_query);
    let mut out = String::with_capacity(add.len() + rest.len());
    // `/v1` + `/x` is `/v1/x`, and `/v1` + `/` is `/v1/`, as nginx's
    // `proxy_pass http://backend/v1/` sends.
    out.push_str(add);
    out.push_str(rest);
    Some(out)
}

/// Lowercases a host and removes a port and a trailing dot; borrows when unchanged.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop the port.
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

fn normalize_prefix(prefix: &str) -> Option<String> {
    if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ']) {
        return None;
    }
    let trimmed = prefix.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_split_follows_the_share_and_keeps_each_client() {
        let stable = Backend::new(1, "127.0.0.1:1".parse().unwrap());
        let canary = Backend::new(2, "127.0.0.1:2".parse().unwrap());
        let route = Route {
            host: None,
            path_prefix: "/".into(),
            strip_prefix: false,
            add_prefix: None,
            max_body: None,
            upstream_response_timeout: None,
            service: "web".into(),
            backends: vec![stable],
            https: RouteHttps::default(),
            site: None,
            policy: Arc::new(RoutePolicy::default()),
        };
        let split = |share| {
            RouteTable::new(vec![route.clone()])
                .unwrap()
                .with_canaries(&HashMap::from([(
                    "web".to_string(),
                    Canary {
                        backends: vec![canary.clone()],
                        share,
                    },
                )]))
        };
        let ten = split(1000);
        let fifty = split(5000);
        let clients: Vec<std::net::IpAddr> = (0..4000u32)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
            .collect();
        let on_canary = |t: &RouteTable, c| t.pick_backend(0, Some(c)).unwrap().id() == 2;
        let at_ten = clients.iter().filter(|c| on_canary(&ten, **c)).count();
        assert!((300..=500).contains(&at_ten), "{at_ten} of 4000 at 10 %");
        // Sticky: the same client, the same side; and a client on the canary at 10 % stays
        // there at 50 %.
        for c in &clients {
            assert_eq!(on_canary(&ten, *c), on_canary(&ten, *c));
            if on_canary(&ten, *c) {
                assert!(on_canary(&fifty, *c));
            }
        }
        // An unhealthy canary: its clients fall back to the stable backends.
        canary.set_healthy(false);
        assert!(clients.iter().all(|c| !on_canary(&ten, *c)));
        // Without an address (never on the canary).
        assert_eq!(ten.pick_backend(0, None).unwrap().id(), 1);
        assert!(ten.has_canary(0));
        assert!(!ten.without_canaries().has_canary(0));
        // An aborted canary goes back to the same table: its redirects stay.
        let with_redirect = RouteTable::new(vec![route.clone()])
            .unwrap()
            .with_redirects(vec![crate::Redirect {
                from_host: "www.example.org".into(),
                from_path: "/".into(),
                to: "https://example.org".into(),
                code: 301,
                keep_path: true,
            }])
            .unwrap();
        assert_eq!(
            with_redirect.without_canaries().redirects(),
            with_redirect.redirects()
        );
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert!(matches!(
            normalize_host("example.com"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api", "/"));
    }

    #[test]
    fn adds_prefixes_after_stripping() {
        assert_eq!(
            rewrite_path("/api/x?y", "/api", true, Some("/v1")).as_deref(),
            Some("/v1/x?y")
        );
        assert_eq!(
            rewrite_path("/api", "/api", true, Some("/v1")).as_deref(),
            Some("/v1/")
        );
        assert_eq!(
            rewrite_path("/api/x", "/api", false, Some("/v1")).as_deref(),
            Some("/v1/api/x")
        );
        assert_eq!(
            rewrite_path("/api/x", "/api", true, None).as_deref(),
            Some("/x")
        );
        assert_eq!(rewrite_path("/x", "/", false, None), None);
    }

    #[test]
    fn strips_prefixes_keeping_query() {
        assert_eq!(strip_prefix("/api/x?y=1", "/api"), "/x?y=1");
        assert_eq!(strip_prefix("/api?y=1", "/api"), "/?y=1");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/x?q", "/"), "/x?q");
    }
}
