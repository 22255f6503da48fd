//! Per-route policies: rate limits (burst, then 429 with Retry-After; X-Forwarded-For only from
//! trusted proxies), allow/deny lists, and response headers (security headers unless the app
//! sets its own).

use std::sync::Arc;

use dockhand_proxy::{security_headers, Cidr, RateLimit, RoutePolicy};
use http::StatusCode;

use crate::static_site::raw;
use crate::support::*;

fn limited(up: std::net::SocketAddr, burst: u32) -> dockhand_proxy::Route {
    let mut r = route("/", vec![backend(up)]);
    r.policy = Arc::new(RoutePolicy::new(
        Vec::new(),
        Vec::new(),
        Some(RateLimit {
            per_second: 0.01, // no refill within the test
            burst,
        }),
        Vec::new(),
    ));
    r
}

fn req(xff: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_and_a_spoofed_forwarded_for_changes_nothing() {
    let up = named_upstream("up").await;
    let proxy = start(config(), vec![limited(up, 3)]);
    let addr = proxy.local_addr();
    // Each request claims another client; the peer (127.0.0.1) is not a trusted proxy.
    for i in 0..3 {
        let (status, _, _) = raw(addr, &req(&format!("203.0.113.{i}"))).await;
        assert_eq!(status, 200, "request {i} of the burst");
    }
    let (status, head, body) = raw(addr, &req("203.0.113.99")).await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    assert_eq!(body, b"429 too many requests\n");
    // The hyper path (a request with a body) shares the bucket.
    let (status, _, _) = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let up = named_upstream("up").await;
    let mut cfg = config();
    cfg.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()];
    let proxy = start(cfg, vec![limited(up, 1)]);
    let addr = proxy.local_addr();
    for i in 0..5 {
        let (status, _, _) = raw(addr, &req(&format!("6.6.6.6, 203.0.113.{i}"))).await;
        assert_eq!(status, 200, "client {i}: its first request");
    }
    // The same client again: limited (the spoofable leftmost entry is not the identity).
    let (status, _, _) = raw(addr, &req("1.1.1.1, 203.0.113.0")).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn deny_and_allow_lists_answer_403() {
    let up = named_upstream("up").await;
    let mut denied = route("/admin", vec![backend(up)]);
    denied.policy = Arc::new(RoutePolicy::new(
        Vec::new(),
        vec![Cidr::parse("127.0.0.0/8").unwrap()],
        None,
        Vec::new(),
    ));
    let mut allowed = route("/", vec![backend(up)]);
    allowed.policy = Arc::new(RoutePolicy::new(
        vec![Cidr::parse("127.0.0.1/32").unwrap()],
        Vec::new(),
        None,
        Vec::new(),
    ));
    let mut elsewhere = route("/office", vec![backend(up)]);
    elsewhere.policy = Arc::new(RoutePolicy::new(
        vec![Cidr::parse("10.0.0.0/8").unwrap()],
        Vec::new(),
        None,
        Vec::new(),
    ));
    let proxy = start(config(), vec![denied, allowed, elsewhere]);
    let a = get(proxy.local_addr(), "a", "/admin/x").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(!a.body.contains("up"));
    assert_eq!(
        get(proxy.local_addr(), "a", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(proxy.local_addr(), "a", "/office").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn security_headers_are_added_unless_the_app_sets_its_own() {
    let up = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let mut r = text(StatusCode::OK, "ok");
        if req.uri().path() == "/framed" {
            r.headers_mut()
                .insert("x-frame-options", "DENY".parse().unwrap());
        }
        r
    })
    .await;
    let mut r = route("/", vec![backend(up)]);
    let mut headers = vec![(
        http::HeaderName::from_static("permissions-policy"),
        http::HeaderValue::from_static("camera=()"),
    )];
    headers.extend(security_headers());
    r.policy = Arc::new(RoutePolicy::new(Vec::new(), Vec::new(), None, headers));
    let proxy = start(config(), vec![r]);
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
    assert_eq!(
        a.headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    assert_eq!(a.headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(a.headers["permissions-policy"], "camera=()");
    let a = get(proxy.local_addr(), "a", "/framed").await;
    assert_eq!(
        a.headers["x-frame-options"], "DENY",
        "the app's own header wins"
    );
}

#[tokio::test]
async fn maintenance_mode_answers_503_with_retry_after_and_the_page_for_its_services() {
    let up = named_upstream("up").await;
    let mut api = route("/api", vec![backend(up)]);
    api.service = "api".into();
    let proxy = start(config(), vec![route("/", vec![backend(up)]), api]);
    proxy.set_maintenance(Some(dockhand_proxy::Maintenance {
        services: vec!["api".into()],
        retry_after: 120,
        page: Some("<p>back soon</p>".into()),
    }));
    let a = get(proxy.local_addr(), "a", "/api/x").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "120");
    assert_eq!(a.body, "<p>back soon</p>");
    assert_eq!(
        get(proxy.local_addr(), "a", "/").await.status,
        StatusCode::OK
    );
    proxy.set_maintenance(Some(dockhand_proxy::Maintenance {
        retry_after: 60,
        ..Default::default()
    }));
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.body.contains("maintenance"));
    proxy.set_maintenance(None);
    assert_eq!(
        get(proxy.local_addr(), "a", "/api/x").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_access_log_writes_one_json_line_per_request_on_both_paths() {
    let up = named_upstream("up").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut cfg = config();
    cfg.access_log = Some(dockhand_proxy::AccessLogConfig {
        path: Some(path.clone()),
        format: dockhand_proxy::AccessFormat::Json,
        max_bytes: 1 << 20,
        keep: 2,
    });
    let mut r = route("/", vec![backend(up)]);
    r.service = "api".into();
    let proxy = start(cfg, vec![r]);
    let a = get(proxy.local_addr(), "shop.test", "/x?y=1").await;
    assert_eq!(a.status, StatusCode::OK);
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST /form HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!(status, 200);
    let mut lines = Vec::new();
    eventually("two access log lines", || {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= 2
    })
    .await;
    let get_line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(get_line["method"], "GET");
    assert_eq!(get_line["path"], "/x?y=1");
    assert_eq!(get_line["host"], "shop.test");
    assert_eq!(get_line["status"], 200);
    assert_eq!(get_line["service"], "api");
    assert_eq!(get_line["client"], "127.0.0.1");
    assert_eq!(get_line["bytes"], 2);
    assert!(get_line["backend"].is_u64());
    assert_eq!(
        get_line["request_id"].as_str().unwrap(),
        a.headers["x-request-id"].to_str().unwrap()
    );
    let post_line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (post_line["method"].as_str(), post_line["path"].as_str()),
        (Some("POST"), Some("/form"))
    );
}

#[tokio::test]
async fn custom_error_pages_replace_the_proxys_own_text_for_their_status() {
    let dead = dead_addr().await;
    let mut cfg = config();
    cfg.error_pages = vec![(502, bytes::Bytes::from_static(b"<h1>our 502</h1>"))];
    let mut r = route("/", vec![backend(dead)]);
    r.service = "web".into();
    let mut empty = route("/none", Vec::new());
    empty.service = "none".into();
    let proxy = start(cfg, vec![r, empty]);
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.body, "<h1>our 502</h1>");
    assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    let a = get(proxy.local_addr(), "a", "/none").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        a.body.starts_with("503 service unavailable"),
        "no page for 503: {}",
        a.body
    );
}
