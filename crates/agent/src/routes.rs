//! Building the proxy's routing table from a release's configuration and its instances.
//! Pure: no I/O, tested with plain data.

use std::collections::BTreeMap;
use std::sync::Arc;

use dockhand_config::{AppConfig, HostKind, Hsts};
use dockhand_proxy::{
    security_headers, Backend, Cidr, RateLimit, Route, RouteError, RouteHttps, RoutePolicy,
    RouteTable, StaticSite,
};

/// One route per routed service, pointing at that service's backends.
/// A static service's route serves its site from `sites` (no site: 503, like a service
/// without a healthy backend). With `[update] webhook`, its path is routed (on its host, else
/// on each routed host) to the backends under `webhook::ROUTE_NAME` (the agent's hook).
pub fn build_table(
    config: &AppConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
    sites: &BTreeMap<String, Arc<StaticSite>>,
) -> Result<RouteTable, RouteError> {
    let mut routes: Vec<Route> = config
        .services
        .values()
        .filter_map(|svc| {
            let route = svc.route.as_ref()?;
            Some(Route {
                host: route.host.clone(),
                path_prefix: route.path.clone(),
                strip_prefix: route.strip_prefix,
                service: svc.name.clone(),
                backends: backends.get(&svc.name).cloned().unwrap_or_default(),
                https: https_policy(config, route),
                site: sites.get(&svc.name).cloned(),
                policy: Arc::new(policy(config, route)),
            })
        })
        .collect();
    if let Some(hook) = config.update.as_ref().and_then(|u| u.webhook.as_ref()) {
        routes.extend(webhook_routes(config, hook, backends));
    }
    RouteTable::new(routes)
}

/// The webhook's routes: on its host, or on every host a service is routed on (a request
/// picks its host's routes first, so a route without a host would not be reached there).
fn webhook_routes(
    config: &AppConfig,
    hook: &dockhand_config::WebhookConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
) -> Vec<Route> {
    let name = crate::update::webhook::ROUTE_NAME;
    let mut hosts: Vec<Option<String>> = match &hook.host {
        Some(h) => vec![Some(h.clone())],
        None => config
            .services
            .values()
            .filter_map(|s| Some(s.route.as_ref()?.host.clone()))
            .collect(),
    };
    if hosts.is_empty() {
        hosts.push(None);
    }
    hosts.sort();
    hosts.dedup();
    // A host a service is routed on lends the hook its HTTPS and client rules.
    let of_host = |host: &Option<String>| {
        config
            .services
            .values()
            .filter_map(|s| s.route.as_ref())
            .find(|r| r.host == *host)
    };
    hosts
        .into_iter()
        .map(|host| {
            let (https, rules) = match of_host(&host) {
                Some(r) => (https_policy(config, r), policy(config, r)),
                None => (
                    RouteHttps::default(),
                    RoutePolicy::new(Vec::new(), Vec::new(), None, Vec::new()),
                ),
            };
            Route {
                host,
                path_prefix: hook.path.clone(),
                strip_prefix: false,
                service: name.to_string(),
                backends: backends.get(name).cloned().unwrap_or_default(),
                https,
                site: None,
                policy: Arc::new(rules),
            }
        })
        .collect()
}

/// A route's allow/deny lists, rate limit and response headers (its own, then the security
/// headers unless turned off for it or for the proxy).
pub fn policy(config: &AppConfig, route: &dockhand_config::Route) -> RoutePolicy {
    let ranges = |list: &[String]| list.iter().filter_map(|c| Cidr::parse(c)).collect();
    let mut headers: Vec<_> = route
        .headers
        .iter()
        .filter_map(|(n, v)| {
            Some((
                http::HeaderName::from_bytes(n.as_bytes()).ok()?,
                http::HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    if route
        .security_headers
        .unwrap_or(config.proxy.security_headers)
    {
        for (name, value) in security_headers() {
            if !headers.iter().any(|(n, _)| *n == name) {
                headers.push((name, value));
            }
        }
    }
    RoutePolicy::new(
        ranges(&route.allow),
        ranges(&route.deny),
        route.rate_limit.map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }),
        headers,
    )
}

/// A route's redirect and HSTS: its own settings, else `[proxy]`'s. Both are off by default
/// for preview hosts (`localhost`, `*.localhost`, IP addresses: served by the local CA, which
/// a browser trusts only once told to), so plain HTTP keeps working on a laptop and its
/// browser does not remember HTTPS-only for them.
pub fn https_policy(config: &AppConfig, route: &dockhand_config::Route) -> RouteHttps {
    let local = route
        .host
        .as_deref()
        .is_some_and(|h| dockhand_config::host_kind(h) == HostKind::Local);
    let hsts = match (route.hsts, local) {
        (Some(h), _) => h,
        (None, true) => Hsts::Off,
        (None, false) => config.proxy.hsts,
    };
    RouteHttps {
        redirect: route
            .https_redirect
            .unwrap_or(config.proxy.https_redirect && !local),
        hsts_max_age: match hsts {
            Hsts::Off => None,
            Hsts::MaxAge(d) => Some(d.as_secs()),
        },
    }
}

/// The URLs at which a release's routes are reachable through the proxy at `listen`
/// (and, with HTTPS, at `https`).
pub fn urls(
    config: &AppConfig,
    listen: std::net::SocketAddr,
    https: Option<std::net::SocketAddr>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (scheme, addr, default_port) in [("http", Some(listen), 80), ("https", https, 443)] {
        let Some(addr) = addr else { continue };
        let default_host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
            "localhost".to_string()
        } else {
            addr.ip().to_string()
        };
        let port = if addr.port() == default_port {
            String::new()
        } else {
            format!(":{}", addr.port())
        };
        for svc in config.services.values() {
            let Some(route) = svc.route.as_ref() else {
                continue;
            };
            let host = route.host.clone().unwrap_or_else(|| default_host.clone());
            out.push(format!("{scheme}://{host}{port}{}", route.path));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_config::{LoadOptions, Loaded};

    fn config(text: &str) -> AppConfig {
        let dir = std::env::temp_dir();
        let Loaded { config, .. } =
            dockhand_config::load_str(&dir.join("dockhand.toml"), text, &LoadOptions::default())
                .expect("valid config");
        config
    }

    const TWO: &str = r#"
app = "shop"
[services.api]
command = "x"
port = 1
health = { path = "/h" }
route = { host = "Shop.Example.org", path = "/api", strip_prefix = true }
[services.web]
command = "x"
port = 2
health = { path = "/h" }
route = { path = "/" }
[services.worker]
command = "x"
"#;

    #[test]
    fn one_route_per_routed_service_with_its_backends() {
        let c = config(TWO);
        let mut backends = BTreeMap::new();
        let b = Backend::new(7, "127.0.0.1:4000".parse().unwrap());
        backends.insert("api".to_string(), vec![b]);
        let table = build_table(&c, &backends, &BTreeMap::new()).unwrap();
        assert_eq!(table.routes().len(), 2);
        let api = table.lookup(Some("shop.example.org"), "/api/x").unwrap();
        assert_eq!(api.service, "api");
        assert!(api.strip_prefix);
        assert_eq!(api.backends[0].id(), 7);
        let web = table.lookup(Some("other.host"), "/api/x").unwrap();
        assert_eq!(web.service, "web");
        assert!(web.backends.is_empty());
    }

    #[test]
    fn urls_use_the_route_host_or_localhost_and_the_listen_port() {
        let c = config(TWO);
        assert_eq!(
            urls(&c, "127.0.0.1:8080".parse().unwrap(), None),
            ["http://localhost:8080/", "http://shop.example.org:8080/api"]
        );
        assert_eq!(
            urls(&c, "0.0.0.0:80".parse().unwrap(), None),
            ["http://localhost/", "http://shop.example.org/api"]
        );
        assert_eq!(
            urls(
                &c,
                "0.0.0.0:80".parse().unwrap(),
                Some("0.0.0.0:443".parse().unwrap())
            ),
            [
                "http://localhost/",
                "http://shop.example.org/api",
                "https://localhost/",
                "https://shop.example.org/api"
            ]
        );
        assert_eq!(
            urls(
                &c,
                "127.0.0.1:8080".parse().unwrap(),
                Some("127.0.0.1:8443".parse().unwrap())
            )[2],
            "https://localhost:8443/"
        );
    }
}
