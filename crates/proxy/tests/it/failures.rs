//! Upstream failures and missing routes map to the right status.

use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn dead_upstream_gets_502() {
    let dead = dead_addr().await;
    let proxy = start(config(), vec![route("/", vec![backend(dead)])]);
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        a.body, "502 bad gateway: the upstream refused the connection\n",
        "the body never names the upstream ({dead})"
    );
    assert!(a.headers.contains_key("x-request-id"));
    let m = proxy.metrics();
    assert_eq!((m.status_5xx, m.upstream_errors), (1, 1));
}

#[tokio::test]
async fn slow_upstream_gets_504() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accept, read nothing, answer nothing
        }
    });
    let mut config = config();
    config.upstream_response_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.body);
}

#[tokio::test]
async fn no_healthy_backend_gets_503() {
    let up = named_upstream("up").await;
    let b = backend(up);
    b.set_healthy(false);
    let proxy = start(config(), vec![route("/", vec![b])]);
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        a.body.contains("no healthy backend for service web"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn unknown_route_gets_404() {
    let proxy =
        dockhand_proxy::Proxy::start(config(), dockhand_proxy::RouteTable::empty()).unwrap();
    let a = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn address_in_use_is_reported_by_start() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = config();
    config.listen = taken.local_addr().unwrap();
    let err = dockhand_proxy::Proxy::start(config, dockhand_proxy::RouteTable::empty())
        .err()
        .expect("bind to a taken port succeeded");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn second_proxy_on_the_same_port_is_refused() {
    let first =
        dockhand_proxy::Proxy::start(config(), dockhand_proxy::RouteTable::empty()).unwrap();
    let mut config = config();
    config.listen = first.local_addr();
    let err = dockhand_proxy::Proxy::start(config, dockhand_proxy::RouteTable::empty())
        .err()
        .expect("second proxy joined the reuse-port group");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
