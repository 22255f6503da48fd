//! Forwarding: headers, HTTP/2 clients, streaming responses, balancing, table
//! swaps, stale pooled connections and shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Upstream answering with the request line and the headers it received.
async fn echo_upstream() -> std::net::SocketAddr {
    serve(|req: Request<hyper::body::Incoming>| async move {
        let mut out = format!("{} {}\n", req.method(), req.uri());
        for (k, v) in req.headers() {
            out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        text(StatusCode::OK, out)
    })
    .await
}

fn header_line<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn forwards_with_forwarded_headers_and_request_id() {
    let up = echo_upstream().await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let addr = proxy.local_addr();

    let req = Request::get("/hello?x=1")
        .header("host", "Example.test:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(empty())
        .unwrap();
    let a = read(send(addr, req).await.unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.starts_with("GET /hello?x=1\n"), "{}", a.body);
    assert_eq!(header_line(&a.body, "host"), Some("Example.test:8080"));
    assert_eq!(
        header_line(&a.body, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(header_line(&a.body, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header_line(&a.body, "x-forwarded-host"),
        Some("Example.test:8080")
    );
    assert_eq!(header_line(&a.body, "x-hop"), None);
    let id = header_line(&a.body, "x-request-id").expect("request id at upstream");
    assert_eq!(id.len(), 16);
    assert_eq!(a.headers["x-request-id"], id);

    // A valid incoming id is kept.
    let req = Request::get("/")
        .header("host", "a")
        .header("x-request-id", "abc-123")
        .body(empty())
        .unwrap();
    let a = read(send(addr, req).await.unwrap()).await;
    assert_eq!(header_line(&a.body, "x-request-id"), Some("abc-123"));
    assert_eq!(a.headers["x-request-id"], "abc-123");

    let m = proxy.metrics();
    assert_eq!(m.requests, 2);
    assert_eq!(m.status_2xx, 2);
    proxy.shutdown(Duration::from_secs(1)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn strip_prefix_rewrites_path_keeping_query() {
    let up = echo_upstream().await;
    let mut r = route("/api", vec![backend(up)]);
    r.strip_prefix = true;
    let proxy = start(config(), vec![r]);
    let a = get(proxy.local_addr(), "a", "/api/users?page=2").await;
    assert!(a.body.starts_with("GET /users?page=2\n"), "{}", a.body);
    let a = get(proxy.local_addr(), "a", "/api?page=2").await;
    assert!(a.body.starts_with("GET /?page=2\n"), "{}", a.body);
    let a = get(proxy.local_addr(), "a", "/apix").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let up = echo_upstream().await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("http://h2.test/over/h2")
            .body(empty())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let a = read(response).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.starts_with("GET /over/h2\n"), "{}", a.body);
        assert_eq!(header_line(&a.body, "host"), Some("h2.test"));
        assert_eq!(header_line(&a.body, "x-forwarded-host"), Some("h2.test"));
    }
}

#[tokio::test]
async fn server_sent_events_stream_without_buffering() {
    let last_sent = Arc::new(AtomicBool::new(false));
    let flag = last_sent.clone();
    let up = serve(move |_req| {
        let flag = flag.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            tokio::spawn(async move {
                for i in 1..=3 {
                    if i == 3 {
                        flag.store(true, Ordering::SeqCst);
                    }
                    let event = format!("data: event {i}\n\n");
                    if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                        return;
                    }
                    if i < 3 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            });
            let body = StreamBody::new(tokio_stream(rx)).boxed();
            let mut r = http::Response::new(body);
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let req = Request::get("/events")
        .header("host", "a")
        .body(empty())
        .unwrap();
    let response = send(proxy.local_addr(), req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: event 1\n\n");
    assert!(
        !last_sent.load(Ordering::SeqCst),
        "first event arrived only after the last was sent"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "data: event 2\n\ndata: event 3\n\n");
}

/// Adapts an mpsc receiver into a `Stream` without extra crates.
fn tokio_stream<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn round_robin_over_two_backends() {
    let a = named_upstream("a").await;
    let b = named_upstream("b").await;
    let proxy = start(config(), vec![route("/", vec![backend(a), backend(b)])]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(get(proxy.local_addr(), "x", "/").await.body);
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 2, "{seen:?}");
}

#[tokio::test]
async fn unhealthy_backends_are_skipped() {
    let a = named_upstream("a").await;
    let b = named_upstream("b").await;
    let (ba, bb) = (backend(a), backend(b));
    let proxy = start(config(), vec![route("/", vec![ba.clone(), bb])]);
    ba.set_healthy(false);
    for _ in 0..3 {
        assert_eq!(get(proxy.local_addr(), "x", "/").await.body, "b");
    }
}

#[tokio::test]
async fn swapping_the_table_switches_traffic() {
    let old = named_upstream("old").await;
    let new = named_upstream("new").await;
    let proxy = start(config(), vec![route("/", vec![backend(old)])]);
    assert_eq!(get(proxy.local_addr(), "x", "/").await.body, "old");
    let previous = proxy
        .set_routes(dockhand_proxy::RouteTable::new(vec![route("/", vec![backend(new)])]).unwrap());
    assert_eq!(previous.routes()[0].backends[0].addr(), old);
    assert_eq!(proxy.routes().routes()[0].backends[0].addr(), new);
    for _ in 0..4 {
        assert_eq!(get(proxy.local_addr(), "x", "/").await.body, "new");
    }
}

/// Regression: an upstream that closes an idle keep-alive connection while the
/// proxy reuses it must not surface as a 502.
#[tokio::test]
async fn stale_pooled_connection_is_retried_on_a_fresh_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // Answer one request with keep-alive, then close the connection as
                // soon as the next request starts arriving, without answering.
                read_head(&mut s).await;
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf).await;
                drop(s);
            });
        }
    });
    let mut config = config();
    config.workers = 1; // one worker, so both requests use the same pool
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    for i in 0..3 {
        let a = get(proxy.local_addr(), "x", "/").await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.body);
        assert_eq!(a.body, "ok");
    }
    assert!(connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(proxy.metrics().upstream_errors, 0);
}

async fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "upstream saw eof before a request");
        head.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn upstream_closing_right_after_a_response_is_not_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                read_head(&mut s).await;
                // No `connection: close`: the proxy believes it can reuse this.
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                drop(s);
            });
        }
    });
    let mut config = config();
    config.workers = 1;
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    for i in 0..5 {
        let a = get(proxy.local_addr(), "x", "/").await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.body);
    }
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(text(StatusCode::OK, "pooled"))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let mut config = config();
    config.workers = 1;
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    for _ in 0..5 {
        assert_eq!(get(proxy.local_addr(), "x", "/").await.body, "pooled");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn proxy_keeps_serving_after_every_handle_is_dropped() {
    let up = named_upstream("still here").await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let addr = proxy.local_addr();
    drop(proxy);
    assert_eq!(get(addr, "x", "/").await.body, "still here");
}

#[tokio::test]
async fn http2_request_bodies_are_forwarded() {
    let up = serve(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        text(StatusCode::OK, format!("got {} bytes", body.len()))
    })
    .await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://h2.test/upload")
        .body(full(vec![7u8; 100_000]))
        .unwrap();
    let a = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(a.body, "got 100000 bytes");
}

#[tokio::test]
async fn client_keep_alive_connection_serves_several_requests() {
    let up = named_upstream("ka").await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        sender.ready().await.unwrap();
        let req = Request::get("/").header("host", "a").body(empty()).unwrap();
        let a = read(sender.send_request(req).await.unwrap()).await;
        assert_eq!(a.body, "ka");
    }
}
