//! Building the proxy's routing table from a release's configuration and its instances.
//! Pure: no I/O, tested with plain data.

use std::collections::BTreeMap;
use std::sync::Arc;

use dockhand_config::AppConfig;
use dockhand_proxy::{Backend, Route, RouteError, RouteTable};

/// One route per routed service, pointing at that service's backends.
pub fn build_table(
    config: &AppConfig,
    backends: &BTreeMap<String, Vec<Arc<Backend>>>,
) -> Result<RouteTable, RouteError> {
    let routes = config
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
            })
        })
        .collect();
    RouteTable::new(routes)
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
        let table = build_table(&c, &backends).unwrap();
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
