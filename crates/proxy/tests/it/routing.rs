//! Route lookup through the public `RouteTable` API.

use dockhand_proxy::{strip_prefix, Route, RouteError, RouteTable};

fn r(host: Option<&str>, prefix: &str, service: &str) -> Route {
    Route {
        host: host.map(str::to_owned),
        path_prefix: prefix.to_owned(),
        strip_prefix: false,
        add_prefix: None,
        max_body: None,
        upstream_response_timeout: None,
        service: service.to_owned(),
        backends: Vec::new(),
        https: Default::default(),
        site: None,
        policy: Default::default(),
    }
}

fn service<'a>(t: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a str> {
    t.lookup(host, path).map(|r| r.service.as_str())
}

#[test]
fn host_routes_win_over_hostless_routes() {
    let t = RouteTable::new(vec![
        r(None, "/", "default"),
        r(Some("API.Example.com"), "/", "api"),
    ])
    .unwrap();
    assert_eq!(service(&t, Some("api.example.com"), "/x"), Some("api"));
    assert_eq!(service(&t, Some("API.example.COM:8080"), "/x"), Some("api"));
    assert_eq!(
        service(&t, Some("other.example.com"), "/x"),
        Some("default")
    );
    assert_eq!(service(&t, None, "/x"), Some("default"));
    assert_eq!(t.routes()[1].host.as_deref(), Some("api.example.com"));
}

#[test]
fn host_without_matching_prefix_falls_back_to_hostless_routes() {
    let t = RouteTable::new(vec![
        r(None, "/", "default"),
        r(Some("a.test"), "/admin", "admin"),
    ])
    .unwrap();
    assert_eq!(service(&t, Some("a.test"), "/admin/x"), Some("admin"));
    assert_eq!(service(&t, Some("a.test"), "/other"), Some("default"));
}

#[test]
fn longest_prefix_on_segment_boundary_wins() {
    let t = RouteTable::new(vec![
        r(None, "/", "root"),
        r(None, "/api", "api"),
        r(None, "/api/v2/", "v2"),
    ])
    .unwrap();
    assert_eq!(service(&t, None, "/api"), Some("api"));
    assert_eq!(service(&t, None, "/api/x"), Some("api"));
    assert_eq!(service(&t, None, "/apix"), Some("root"));
    assert_eq!(service(&t, None, "/api/v2"), Some("v2"));
    assert_eq!(service(&t, None, "/api/v2/users"), Some("v2"));
    assert_eq!(service(&t, None, "/api/v20"), Some("api"));
}

#[test]
fn no_route_without_catch_all() {
    let t = RouteTable::new(vec![r(None, "/api", "api")]).unwrap();
    assert_eq!(service(&t, None, "/"), None);
    assert_eq!(service(&t, None, "/apix"), None);
    assert!(RouteTable::empty().lookup(Some("x"), "/").is_none());
}

#[test]
fn duplicate_host_and_prefix_is_rejected() {
    let err = RouteTable::new(vec![
        r(Some("A.test"), "/api", "a"),
        r(Some("a.test"), "/api/", "b"),
    ])
    .unwrap_err();
    assert!(matches!(err, RouteError::Duplicate { .. }), "{err}");
    // Same prefix on different hosts is fine.
    RouteTable::new(vec![r(Some("a.test"), "/api", "a"), r(None, "/api", "b")]).unwrap();
    let err = RouteTable::new(vec![r(None, "api", "a")]).unwrap_err();
    assert!(matches!(err, RouteError::InvalidPrefix { .. }), "{err}");
}

#[test]
fn strip_prefix_keeps_query() {
    assert_eq!(strip_prefix("/api/users?page=2", "/api"), "/users?page=2");
    assert_eq!(strip_prefix("/api?page=2", "/api"), "/?page=2");
    assert_eq!(strip_prefix("/api", "/api"), "/");
    assert_eq!(strip_prefix("/api/", "/api"), "/");
}
