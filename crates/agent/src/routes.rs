//! Building the proxy's routing table from a release's configuration and its instances.
//! Pure: no I/O, tested with plain data.

use std::collections::BTreeMap;
use std::sync::Arc;

use dockhand_config::{AppConfig, HostKind, Hsts, Secrets};
use dockhand_proxy::{
    security_headers, Backend, BasicAuth, Cidr, RateLimit, Redirect, Route, RouteError, RouteHttps,
    RoutePolicy, RouteTable, StaticSite,
};

/// The service name of the route to the agent's metrics (`[monitor] metrics_route`); its
/// backend is the monitor's token-protected listener.
pub const METRICS_SERVICE: &str = "dockhand-metrics";

/// The service name of the route to the dashboard (`[dashboard] route`); its backend is the
/// dashboard's loopback listener for the proxy.
pub const DASHBOARD_SERVICE: &str = "dockhand-dashboard";

/// The proxy backend ids of the agent's own listeners behind routes. The proxy pools its
/// upstream connections by backend id, so each listener needs an id of its own; they count
/// down from the top, instances' ids count up from 1.
pub mod backend_ids {
    /// `[update] webhook`.
    pub const UPDATE_WEBHOOK: u64 = u64::MAX;
    /// `[dashboard] route`.
    pub const DASHBOARD: u64 = u64::MAX - 1;
    /// `[monitor] metrics_route`.
    pub const METRICS: u64 = u64::MAX - 2;
}

/// The routes of every routed service (one per entry of its `route`), pointing at that
/// service's backends, and the `[[redirects]]`. A static service's routes serve its site
/// from `sites` (no site: 503, like a service without a healthy backend). `secrets` gives
/// the users of routes with basic auth; a missing or invalid users secret is an error
/// (never a route without its authentication). With `[update] webhook`, its path is routed
/// (on its host, else on each routed host) to the backends under `webhook::ROUTE_NAME`.
pub fn build_table(
    config: &AppConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
    sites: &BTreeMap<String, Arc<StaticSite>>,
    secrets: &Secrets,
) -> Result<RouteTable, RouteError> {
    let mut routes = Vec::new();
    for svc in config.services.values() {
        for route in &svc.routes {
            routes.push(Route {
                host: route.host.clone(),
                path_prefix: route.path.clone(),
                strip_prefix: route.strip_prefix,
                add_prefix: route.add_prefix.clone(),
                max_body: route.max_body,
                upstream_response_timeout: route.upstream_response_timeout,
                service: svc.name.clone(),
                backends: backends.get(&svc.name).cloned().unwrap_or_default(),
                https: https_policy(config, route),
                site: sites.get(&svc.name).cloned(),
                policy: Arc::new(policy(config, &svc.name, route, secrets)?),
            });
        }
    }
    if let Some(m) = &config.monitor.metrics_route {
        let local = m
            .host
            .as_deref()
            .is_some_and(|h| dockhand_config::host_kind(h) == HostKind::Local);
        routes.push(Route {
            host: m.host.clone(),
            path_prefix: m.path.clone(),
            strip_prefix: false,
            add_prefix: None,
            max_body: None,
            upstream_response_timeout: None,
            service: METRICS_SERVICE.into(),
            backends: backends.get(METRICS_SERVICE).cloned().unwrap_or_default(),
            // The token must not cross the network in the clear.
            https: RouteHttps {
                redirect: config.proxy.https_redirect && !local,
                hsts_max_age: None,
                https_only: false,
            },
            site: None,
            policy: Arc::new(RoutePolicy::default()),
        });
    }
    if let Some(r) = dashboard_route(config, backends) {
        routes.push(r);
    }
    let redirects = config
        .redirects
        .iter()
        .map(|r| Redirect {
            from_host: r.from_host.clone(),
            from_path: r.from_path.clone(),
            to: r.to.clone(),
            code: r.code,
            keep_path: r.keep_path,
        })
        .collect();
    if let Some(hook) = config.update.as_ref().and_then(|u| u.webhook.as_ref()) {
        routes.extend(webhook_routes(config, hook, backends, secrets)?);
    }
    RouteTable::new(routes)?.with_redirects(redirects)
}

/// `[dashboard] route`: its host's root to the dashboard, over HTTPS only (plain HTTP is
/// redirected, or 404 while no certificate names the host). `None` without the key or while
/// the dashboard does not serve the proxy (off, or not bound at the agent's start).
fn dashboard_route(
    config: &AppConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
) -> Option<Route> {
    let route = config.dashboard.route.as_ref()?;
    let backends = backends.get(DASHBOARD_SERVICE)?.clone();
    let local = dockhand_config::host_kind(&route.host) == HostKind::Local;
    Some(Route {
        host: Some(route.host.clone()),
        path_prefix: "/".into(),
        strip_prefix: false,
        add_prefix: None,
        max_body: None,
        upstream_response_timeout: None,
        service: DASHBOARD_SERVICE.into(),
        backends,
        https: RouteHttps {
            redirect: true,
            hsts_max_age: match config.proxy.hsts {
                Hsts::MaxAge(d) if !local => Some(d.as_secs()),
                _ => None,
            },
            https_only: true,
        },
        site: None,
        policy: Arc::new(RoutePolicy::default()),
    })
}

/// The webhook's routes: on its host, or on every host a service is routed on (a request
/// picks its host's routes first, so a route without a host would not be reached there).
/// A host's first route lends the hook its HTTPS and client rules (allow, deny, rate limit),
/// never its basic auth or request headers: a forge signs its request, it has no password.
fn webhook_routes(
    config: &AppConfig,
    hook: &dockhand_config::WebhookConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
    secrets: &Secrets,
) -> Result<Vec<Route>, RouteError> {
    let name = crate::update::webhook::ROUTE_NAME;
    let routed = || config.services.values().flat_map(|s| s.routes.iter());
    let mut hosts: Vec<Option<String>> = match &hook.host {
        Some(h) => vec![Some(h.clone())],
        None => routed().map(|r| r.host.clone()).collect(),
    };
    if hosts.is_empty() {
        hosts.push(None);
    }
    hosts.sort();
    hosts.dedup();
    let mut out = Vec::new();
    for host in hosts {
        let (https, rules) = match routed().find(|r| r.host == host) {
            Some(r) => {
                let mut lent = r.clone();
                lent.basic_auth = None;
                lent.request_headers.clear();
                (
                    https_policy(config, r),
                    policy(config, name, &lent, secrets)?,
                )
            }
            None => (RouteHttps::default(), RoutePolicy::default()),
        };
        out.push(Route {
            host,
            path_prefix: hook.path.clone(),
            strip_prefix: false,
            add_prefix: None,
            max_body: None,
            upstream_response_timeout: None,
            service: name.to_string(),
            backends: backends.get(name).cloned().unwrap_or_default(),
            https,
            site: None,
            policy: Arc::new(rules),
        });
    }
    Ok(out)
}

/// A route's allow/deny lists, rate limit, response headers (its own, then the security
/// headers unless turned off for it or for the proxy), request headers and basic auth.
pub fn policy(
    config: &AppConfig,
    service: &str,
    route: &dockhand_config::Route,
    secrets: &Secrets,
) -> Result<RoutePolicy, RouteError> {
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
    let request_headers = route
        .request_headers
        .iter()
        .filter_map(|(n, v)| {
            let name = http::HeaderName::from_bytes(n.as_bytes()).ok()?;
            if v.is_empty() {
                return Some((name, None));
            }
            Some((name, Some(http::HeaderValue::from_str(v).ok()?)))
        })
        .collect();
    let mut policy = RoutePolicy::new(
        ranges(&route.allow),
        ranges(&route.deny),
        route.rate_limit.map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }),
        headers,
    )
    .with_request_headers(request_headers);
    if let Some(auth) = &route.basic_auth {
        let problem = |problem: String| RouteError::BasicAuth {
            service: service.to_string(),
            problem,
        };
        // The error names the secret, never its value.
        let users = auth.users.resolve(secrets).map_err(|_| {
            problem(format!(
                "the users secret {} is not set; set it with `dockhand secrets set {}`",
                auth.users.secret_names().join(", "),
                auth.users.secret_names().join(", ")
            ))
        })?;
        let parsed = BasicAuth::from_htpasswd(&auth.realm, &users).map_err(|e| {
            problem(format!(
                "the users secret {}: {e}",
                auth.users.secret_names().join(", ")
            ))
        })?;
        policy = policy.with_basic_auth(parsed);
    }
    Ok(policy)
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
        https_only: false,
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
        for route in config.services.values().flat_map(|svc| &svc.routes) {
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

    /// The config in a project of its own whose secrets file defines every secret the
    /// tests name (`check` reads it), with a value `build_table` is never given here.
    fn config(text: &str) -> AppConfig {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        std::fs::write(&secrets, "STAFF=ann:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let Loaded { config, .. } = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            text,
            &LoadOptions::default(),
        )
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
        let table = build_table(&c, &backends, &BTreeMap::new(), &Secrets::empty()).unwrap();
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
    fn the_dashboard_route_is_its_hosts_root_https_only_once_its_listener_is_bound() {
        let text = format!(
            "{TWO}[proxy]\nhttps_listen = \"127.0.0.1:0\"\n[dashboard]\nroute = {{ host = \"ops.localhost\" }}\n"
        );
        let c = config(&text);
        // Not bound (the dashboard is off): no route, the host answers nothing.
        let table = build_table(&c, &BTreeMap::new(), &BTreeMap::new(), &Secrets::empty()).unwrap();
        assert!(table
            .routes()
            .iter()
            .all(|r| r.service != DASHBOARD_SERVICE));
        let mut backends = BTreeMap::new();
        let b = Backend::new(9, "127.0.0.1:4001".parse().unwrap());
        backends.insert(DASHBOARD_SERVICE.to_string(), vec![b]);
        let table = build_table(&c, &backends, &BTreeMap::new(), &Secrets::empty()).unwrap();
        let dash = table.lookup(Some("ops.localhost"), "/deploys").unwrap();
        assert_eq!(dash.service, DASHBOARD_SERVICE);
        assert!(dash.https.https_only && dash.https.redirect);
        // A local host: no HSTS, as for a service's local route.
        assert_eq!(dash.https.hsts_max_age, None);
        assert_eq!(dash.backends[0].id(), 9);
        // The app's routes are as before.
        let web = table.lookup(Some("other.host"), "/").unwrap();
        assert_eq!(web.service, "web");
        assert!(!web.https.https_only);
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

    const EDGE: &str = r#"
app = "shop"
[services.api]
command = "x"
port = 1
health = { path = "/h" }
route = [
  { host = "a.example.org" },
  { host = "b.example.org", path = "/api", strip_prefix = true, add_prefix = "/v1", max_body = "50MB", upstream_response_timeout = "120s", basic_auth = { users = "${secret.STAFF}" } },
]
[[redirects]]
from = "www.example.org"
to = "https://example.org"
"#;

    fn secrets(text: &str) -> Secrets {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.env");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Secrets::load(&path).unwrap()
    }

    #[test]
    fn every_route_of_a_service_and_the_redirects_are_in_the_table() {
        let c = config(EDGE);
        let s = secrets("STAFF=ann:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
        let table = build_table(&c, &BTreeMap::new(), &BTreeMap::new(), &s).unwrap();
        assert_eq!(table.routes().len(), 2);
        let b = table.lookup(Some("b.example.org"), "/api/x").unwrap();
        assert_eq!(b.service, "api");
        assert_eq!(b.add_prefix.as_deref(), Some("/v1"));
        assert_eq!(b.max_body, Some(50_000_000));
        assert_eq!(
            b.upstream_response_timeout,
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            b.policy.basic_auth.as_ref().map(|a| a.realm()),
            Some("Restricted")
        );
        let a = table.lookup(Some("a.example.org"), "/").unwrap();
        assert!(a.policy.basic_auth.is_none());
        assert_eq!(table.redirects().len(), 1);
        assert_eq!(
            urls(&c, "0.0.0.0:80".parse().unwrap(), None),
            ["http://a.example.org/", "http://b.example.org/api"]
        );
    }

    #[test]
    fn a_missing_or_plaintext_users_secret_fails_without_showing_it() {
        let c = config(EDGE);
        let err = build_table(&c, &BTreeMap::new(), &BTreeMap::new(), &Secrets::empty())
            .unwrap_err()
            .to_string();
        assert!(err.contains("dockhand secrets set STAFF"), "{err}");
        let err = build_table(
            &c,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &secrets("STAFF=ann:hunter2\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("plaintext"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
