//! Draining: `drain` reports busy while a request holds an old backend and idle
//! once it finished.

use std::sync::Arc;
use std::time::Duration;

use dockhand_proxy::RouteTable;
use http::StatusCode;
use tokio::sync::Notify;

use crate::support::*;

#[tokio::test]
async fn drain_waits_for_an_inflight_request() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let slow = serve(move |_req| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            text(StatusCode::OK, "slow done")
        }
    })
    .await;
    let fresh = named_upstream("fresh").await;
    let old = backend(slow);
    let proxy = start(config(), vec![route("/", vec![old.clone()])]);
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "a", "/").await });
    eventually("slow request reached the backend", || old.inflight() == 1).await;

    proxy.set_routes(RouteTable::new(vec![route("/", vec![backend(fresh)])]).unwrap());
    assert_eq!(get(addr, "a", "/").await.body, "fresh");

    let busy = proxy
        .drain(std::slice::from_ref(&old), Duration::from_millis(100))
        .await;
    assert!(!busy.idle);
    assert_eq!(busy.remaining, 1);

    let drain = {
        let proxy = proxy.clone();
        let old = old.clone();
        tokio::spawn(async move { proxy.drain(&[old], PATIENCE).await })
    };
    release.notify_one();
    let answer = pending.await.unwrap();
    assert_eq!(answer.body, "slow done");
    let outcome = drain.await.unwrap();
    assert!(outcome.idle, "{outcome:?}");
    assert_eq!(outcome.remaining, 0);
    assert_eq!(old.inflight(), 0);
}

#[tokio::test]
async fn drain_of_unused_backends_is_idle_at_once() {
    let proxy = dockhand_proxy::Proxy::start(config(), RouteTable::empty()).unwrap();
    let b = backend("127.0.0.1:9".parse().unwrap());
    let outcome = proxy.drain(&[b], Duration::from_secs(5)).await;
    assert_eq!(
        outcome,
        dockhand_proxy::DrainOutcome {
            idle: true,
            remaining: 0
        }
    );
    proxy.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn shutdown_lets_inflight_requests_finish() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let slow = serve(move |_req| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            text(StatusCode::OK, "finished")
        }
    })
    .await;
    let b = backend(slow);
    let proxy = start(config(), vec![route("/", vec![b.clone()])]);
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "a", "/").await });
    eventually("request reached the backend", || b.inflight() == 1).await;
    let shutdown = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.shutdown(PATIENCE).await })
    };
    // New connections are refused once the workers stopped accepting.
    listener_closed(addr).await;
    release.notify_one();
    assert_eq!(pending.await.unwrap().body, "finished");
    shutdown.await.unwrap();
}

/// A proxy started closed holds a client that connected early until it opens: the request is
/// answered by the routes set meanwhile, never by the empty table it started with.
#[tokio::test]
async fn a_proxy_started_closed_answers_early_clients_once_opened() {
    let app = named_upstream("restored").await;
    let mut cfg = config();
    cfg.start_closed = true;
    let proxy = dockhand_proxy::Proxy::start(cfg, RouteTable::empty()).unwrap();
    let addr = proxy.local_addr();
    let early = tokio::spawn(async move { get(addr, "a", "/").await });
    // Time for the request to be sent (it waits in the backlog, unanswered).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!early.is_finished(), "answered before the proxy opened");
    proxy.set_routes(RouteTable::new(vec![route("/", vec![backend(app)])]).unwrap());
    proxy.open();
    let answer = early.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "restored")
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// At shutdown, a keep-alive connection between two requests is not cut at once: a request
/// the client sends just after the shutdown began (it could not know) is answered, with
/// `Connection: close`, and then the connection ends. Cutting it would fail that request.
#[tokio::test]
async fn a_keep_alive_client_that_sends_just_after_the_shutdown_began_is_answered_and_told_to_reconnect(
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = named_upstream("last").await;
    let proxy = start(config(), vec![route("/", vec![backend(app)])]);
    let addr = proxy.local_addr();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    conn.write_all(request).await.unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );

    let shutdown = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.shutdown(PATIENCE).await })
    };
    // The listener closing shows the shutdown has begun.
    listener_closed(addr).await;
    conn.write_all(request).await.unwrap();
    let mut rest = String::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_string(&mut rest)).await;
    assert!(
        rest.starts_with("HTTP/1.1 200"),
        "the late request: {rest:?}"
    );
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
    assert!(rest.ends_with("last"), "{rest}");
    shutdown.await.unwrap();
}

/// Waits until `addr` refuses connections (the workers stopped accepting).
async fn listener_closed(addr: std::net::SocketAddr) {
    eventually("listener closed", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
    })
    .await;
}

/// One response of a keep-alive connection (headers and a Content-Length body).
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}
