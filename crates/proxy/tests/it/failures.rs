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

/// With `eject_unreachable` (the cluster's ingress), a backend that refuses a connection is
/// picked no more until its owner marks it healthy again: one request fails, the next ones go
/// to the live backend. Without it, round robin keeps sending every other request there.
#[tokio::test]
async fn an_unreachable_backend_is_ejected_only_when_asked() {
    let live = named_upstream("live").await;
    let dead = dead_addr().await;
    for eject in [false, true] {
        let lost = backend(dead);
        let mut config = config();
        config.eject_unreachable = eject;
        let proxy = start(config, vec![route("/", vec![backend(live), lost.clone()])]);
        let mut failed = 0;
        for _ in 0..10 {
            if get(proxy.local_addr(), "a", "/").await.status != StatusCode::OK {
                failed += 1;
            }
        }
        assert_eq!(
            failed,
            if eject { 1 } else { 5 },
            "eject_unreachable {eject}"
        );
        assert_eq!(lost.is_healthy(), !eject);
        if eject {
            // Marked healthy again (a passed probe): picked again.
            lost.set_healthy(true);
            let mut failed = 0;
            for _ in 0..4 {
                if get(proxy.local_addr(), "a", "/").await.status != StatusCode::OK {
                    failed += 1;
                }
            }
            assert_eq!(failed, 1);
        }
    }
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
