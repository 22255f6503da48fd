//! Per-route policies: rate limits (burst, then 429 with Retry-After; X-Forwarded-For only from
//! trusted proxies), allow/deny lists, and response headers (security headers unless the app
//! sets its own).

use std::sync::Arc;

use dockhand_proxy::{security_headers, BasicAuth, Cidr, RateLimit, Redirect, RoutePolicy};
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

// ---- basic auth, request headers, add_prefix, per-route limits, redirects ----

/// `Authorization: Basic …` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}\r\n")
}

/// `openssl passwd -apr1 -salt abcdefgh 'p@ss w0rd'`.
const ANN: &str = "ann:$apr1$abcdefgh$UkZoB0qp2g9KE9.krwnMP0\n";

/// An upstream that answers with the request line and headers it received.
async fn echo_upstream() -> std::net::SocketAddr {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let mut text = format!("{} {}\n", req.method(), req.uri());
        for (n, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", n, v.to_str().unwrap_or("?")));
        }
        text_response(text)
    })
    .await
}

fn text_response(text: String) -> http::Response<TestBody> {
    crate::support::text(StatusCode::OK, text)
}

fn get_with(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

fn post_with(path: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn basic_auth_asks_checks_on_both_paths_and_locks_out_repeated_failures() {
    let up = echo_upstream().await;
    let mut r = route("/", vec![backend(up)]);
    r.policy = Arc::new(
        RoutePolicy::new(Vec::new(), Vec::new(), None, Vec::new())
            .with_basic_auth(BasicAuth::from_htpasswd("Staff only", ANN).unwrap()),
    );
    let proxy = start(config(), vec![r]);
    let addr = proxy.local_addr();
    let good = basic("ann", "p@ss w0rd");

    // Without credentials: 401 with the challenge, nothing forwarded.
    let (status, head, _) = raw(addr, &get_with("/", "")).await;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.contains("www-authenticate: Basic realm=\"Staff only\""),
        "{head}"
    );
    // The right password passes on the fast path and on hyper's (a body).
    let (status, _, body) = raw(addr, &get_with("/x", &good)).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("GET /x"));
    let (status, _, body) = raw(addr, &post_with("/y", &good, "hello")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("POST /y"));
    // A wrong password or an unknown user: 401.
    let (status, _, _) = raw(addr, &get_with("/", &basic("ann", "nope"))).await;
    assert_eq!(status, 401);
    let (status, _, _) = raw(addr, &post_with("/", &basic("bob", "x"), "x")).await;
    assert_eq!(status, 401);
    // Repeated failures from this client: locked out with 429 and Retry-After, even with
    // the right password, on both paths.
    let mut locked = None;
    for i in 0..20 {
        let (status, head, _) =
            raw(addr, &get_with("/", &basic("ann", &format!("guess{i}")))).await;
        if status == 429 {
            locked = Some(head);
            break;
        }
        assert_eq!(status, 401);
    }
    let head = locked.expect("repeated failures are locked out");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    let (status, _, _) = raw(addr, &get_with("/", &good)).await;
    assert_eq!(status, 429);
    let (status, _, _) = raw(addr, &post_with("/", &good, "x")).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_wrong_password_never_reaches_the_access_log() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut cfg = config();
    cfg.access_log = Some(dockhand_proxy::AccessLogConfig {
        path: Some(log.clone()),
        format: dockhand_proxy::AccessFormat::Json,
        max_bytes: 1 << 20,
        keep: 1,
    });
    let mut r = route("/", vec![backend(up)]);
    r.policy = Arc::new(
        RoutePolicy::new(Vec::new(), Vec::new(), None, Vec::new())
            .with_basic_auth(BasicAuth::from_htpasswd("R", ANN).unwrap()),
    );
    let proxy = start(cfg, vec![r]);
    let addr = proxy.local_addr();
    let (status, _, _) = raw(addr, &get_with("/", &basic("ann", "Wr0ngPassw0rd"))).await;
    assert_eq!(status, 401);
    let (status, _, _) = raw(addr, &post_with("/", &basic("ann", "Wr0ngPassw0rd"), "x")).await;
    assert_eq!(status, 401);
    eventually("two access log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("Wr0ngPassw0rd"), "{text}");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode("ann:Wr0ngPassw0rd");
    assert!(!text.contains(&encoded), "{text}");
}

#[tokio::test]
async fn request_headers_are_set_and_removed_and_prefixes_rewritten_on_both_paths() {
    let up = echo_upstream().await;
    let mut r = route("/api", vec![backend(up)]);
    r.strip_prefix = true;
    r.add_prefix = Some("/v1".into());
    r.policy = Arc::new(
        RoutePolicy::new(Vec::new(), Vec::new(), None, Vec::new()).with_request_headers(vec![
            (
                http::HeaderName::from_static("x-forwarded-prefix"),
                Some(http::HeaderValue::from_static("/api")),
            ),
            (http::HeaderName::from_static("x-unwanted"), None),
        ]),
    );
    let proxy = start(config(), vec![r]);
    let addr = proxy.local_addr();
    let extra = "X-Unwanted: secret-ish\r\nX-Forwarded-Prefix: /spoofed\r\nX-Kept: yes\r\n";
    for (what, request, line) in [
        (
            "fast path",
            get_with("/api/users?page=2", extra),
            "GET /v1/users?page=2",
        ),
        (
            "hyper path",
            post_with("/api/users?page=2", extra, "b"),
            "POST /v1/users?page=2",
        ),
        ("prefix itself", get_with("/api", extra), "GET /v1/"),
    ] {
        let (status, _, body) = raw(addr, &request).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{what}: {body}");
        assert!(body.starts_with(line), "{what}: {body}");
        assert!(
            body.contains("x-forwarded-prefix: /api\n"),
            "{what}: {body}"
        );
        assert_eq!(
            body.matches("x-forwarded-prefix").count(),
            1,
            "{what}: {body}"
        );
        assert!(!body.contains("x-unwanted"), "{what}: {body}");
        assert!(body.contains("x-kept: yes"), "{what}: {body}");
    }
}

#[tokio::test]
async fn a_route_overrides_the_body_limit_and_the_response_timeout() {
    let up = serve(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path().ends_with("/slow") {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        let n = http_body_util::BodyExt::collect(req.into_body())
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0);
        text_response(format!("got {n}"))
    })
    .await;
    let mut cfg = config();
    cfg.max_request_body = 100;
    cfg.upstream_response_timeout = std::time::Duration::from_millis(300);
    let mut big = route("/big", vec![backend(up)]);
    big.max_body = Some(1000);
    big.upstream_response_timeout = Some(std::time::Duration::from_secs(10));
    let small = route("/", vec![backend(up)]);
    let proxy = start(cfg, vec![big, small]);
    let addr = proxy.local_addr();
    let body = "x".repeat(500);
    let (status, _, answer) = raw(addr, &post_with("/big/upload", "", &body)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(answer, b"got 500");
    let (status, _, _) = raw(addr, &post_with("/upload", "", &body)).await;
    assert_eq!(status, 413, "the proxy's limit elsewhere");
    // The route's longer timeout, on both paths; the proxy's elsewhere (504).
    let (status, _, _) = raw(addr, &get_with("/big/slow", "")).await;
    assert_eq!(status, 200, "fast path waits for the route's timeout");
    let (status, _, _) = raw(addr, &post_with("/big/slow", "", "x")).await;
    assert_eq!(status, 200, "hyper path waits for the route's timeout");
    let (status, _, _) = raw(addr, &get_with("/slow", "")).await;
    assert_eq!(status, 504);
    let (status, _, _) = raw(addr, &post_with("/slow", "", "x")).await;
    assert_eq!(status, 504);
}

fn redirect(from_host: &str, from_path: &str, to: &str, code: u16, keep_path: bool) -> Redirect {
    Redirect {
        from_host: from_host.into(),
        from_path: from_path.into(),
        to: to.into(),
        code,
        keep_path,
    }
}

fn location(head: &str) -> Option<&str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location").then(|| v.trim())
    })
}

#[tokio::test]
async fn redirects_are_answered_before_routing_but_never_for_acme_challenges() {
    let up = named_upstream("app").await;
    let mut apex = route("/", vec![backend(up)]);
    apex.host = Some("example.org".into());
    let table = dockhand_proxy::RouteTable::new(vec![apex])
        .unwrap()
        .with_redirects(vec![
            redirect("www.example.org", "/", "https://example.org", 301, true),
            redirect("example.org", "/old", "https://example.org/new", 308, true),
            redirect("example.org", "/gone", "https://example.org/", 302, false),
        ])
        .unwrap();
    let proxy = dockhand_proxy::Proxy::start(config(), table).unwrap();
    let addr = proxy.local_addr();
    proxy.challenges().add_http01("tok3n", "tok3n.key");
    let req = |host: &str, method: &str, target: &str| {
        let body = if method == "POST" {
            "Content-Length: 1\r\n"
        } else {
            ""
        };
        let tail = if method == "POST" { "x" } else { "" };
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{body}Connection: close\r\n\r\n{tail}"
        )
        .into_bytes()
    };
    // www → apex, path and query kept (no route for www at all: redirects come first).
    let (status, head, _) = raw(addr, &req("www.example.org", "GET", "/a/b?c=1")).await;
    assert_eq!(status, 301, "{head}");
    assert_eq!(location(&head), Some("https://example.org/a/b?c=1"));
    let (status, head, _) = raw(addr, &req("WWW.example.org:8080", "POST", "/form")).await;
    assert_eq!(status, 301, "the hyper path too: {head}");
    assert_eq!(location(&head), Some("https://example.org/form"));
    // A prefix move with its code; the rest of the path follows.
    let (status, head, _) = raw(addr, &req("example.org", "GET", "/old/x?y")).await;
    assert_eq!(status, 308, "{head}");
    assert_eq!(location(&head), Some("https://example.org/new/x?y"));
    let (status, head, _) = raw(addr, &req("example.org", "GET", "/gone/deep?q")).await;
    assert_eq!(status, 302, "{head}");
    assert_eq!(
        location(&head),
        Some("https://example.org/"),
        "keep_path = false"
    );
    // Other paths are routed as usual.
    let (status, _, body) = raw(addr, &req("example.org", "GET", "/older")).await;
    assert_eq!((status, body.as_slice()), (200, &b"app"[..]));
    // The ACME challenge of a redirected host is answered, not redirected.
    let (status, _, body) = raw(
        addr,
        &req(
            "www.example.org",
            "GET",
            "/.well-known/acme-challenge/tok3n",
        ),
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, &b"tok3n.key"[..]));
}
