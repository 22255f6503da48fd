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

/// The URLs at which a release's routes are reachable through the proxy at `listen`.
pub fn urls(config: &AppConfig, listen: std::net::SocketAddr) -> Vec<String> {
    let port = listen.port();
    let default_host = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        "localhost".to_string()
    } else {
        listen.ip().to_string()
    };
    let mut out: Vec<String> = config
        .services
        .values()
        .filter_map(|svc| {
            let route = svc.route.as_ref()?;
            let host = route.host.clone().unwrap_or_else(|| default_host.clone());
            let port = if port == 80 {
                String::new()
            } else {
                format!(":{port}")
            };
            Some(format!("http://{host}{port}{}", route.path))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
