//! Response framing on the bodiless-request path (`h1.rs`): an upstream written
//! as raw bytes answers each request with a scripted response, and the tests
//! check what the client receives and whether the upstream connection was reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What the scripted upstream does for one request.
struct Reply {
    bytes: Vec<u8>,
    /// Close the connection after writing.
    close: bool,
}

fn reply(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: false,
    }
}

fn reply_then_close(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: true,
    }
}

/// A raw upstream: for the n-th request it sees (over all connections), writes
/// `script(n, request_head)`. Counts accepted connections.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
}

async fn scripted(script: fn(usize, &str) -> Reply) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let requests = requests.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut s).await {
                    let n = requests.fetch_add(1, Ordering::SeqCst);
                    let r = script(n, &head);
                    if s.write_all(&r.bytes).await.is_err() || r.close {
                        return;
                    }
                }
            });
        }
    });
    Scripted { addr, connections }
}

async fn read_request_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn one_worker(up: &Scripted) -> dockhand_proxy::ProxyHandle {
    let mut config = config();
    config.workers = 1; // one pool, so reuse is observable
    start(config, vec![route("/", vec![backend(up.addr)])])
}

async fn request(proxy: &dockhand_proxy::ProxyHandle, method: Method) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "x")
        .body(empty())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, send(proxy.local_addr(), req))
        .await
        .expect("request timed out")
        .unwrap();
    read(response).await
}

#[tokio::test]
async fn chunked_responses_are_decoded_and_the_connection_reused() {
    let up = scripted(|_, _| {
        reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n")
    })
    .await;
    let proxy = one_worker(&up);
    for _ in 0..3 {
        let a = request(&proxy, Method::GET).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "hello world");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn content_length_beside_chunked_coding_is_ignored_and_not_passed_on() {
    let up = scripted(|_, _| {
        reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    })
    .await;
    let proxy = one_worker(&up);
    for _ in 0..2 {
        let a = request(&proxy, Method::GET).await;
        assert_eq!(a.body, "ok");
        assert_ne!(
            a.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"99"[..])
        );
    }
    // A response with both is suspect: its connection is not reused (RFC 9112 §6.3).
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_delimited_by_close_is_passed_through_and_not_reused() {
    let up =
        scripted(|n, _| reply_then_close(format!("HTTP/1.1 200 OK\r\n\r\nuntil close {n}"))).await;
    let proxy = one_worker(&up);
    assert_eq!(request(&proxy, Method::GET).await.body, "until close 0");
    assert_eq!(request(&proxy, Method::GET).await.body, "until close 1");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let up = scripted(|n, head| {
        assert!(n % 3 != 0 || head.starts_with("HEAD "), "{head}");
        // Content-Length on HEAD and 304 describes the body a GET would get.
        reply(match n % 3 {
            0 => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            1 => "HTTP/1.1 204 No Content\r\n\r\n",
            _ => "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        })
    })
    .await;
    let proxy = one_worker(&up);
    for round in 0..2 {
        let head = request(&proxy, Method::HEAD).await;
        assert_eq!(head.status, StatusCode::OK, "round {round}");
        assert_eq!(head.headers["content-length"], "5");
        assert_eq!(head.body, "");
        let no_content = request(&proxy, Method::GET).await;
        assert_eq!(no_content.status, StatusCode::NO_CONTENT);
        assert_eq!(no_content.body, "");
        let not_modified = request(&proxy, Method::GET).await;
        assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.body, "");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.metrics().upstream_errors, 0);
}

#[tokio::test]
async fn informational_responses_before_the_answer_are_skipped() {
    let up = scripted(|_, _| {
        reply("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
    })
    .await;
    let proxy = one_worker(&up);
    let a = request(&proxy, Method::GET).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "real");
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let up = scripted(|_, _| {
        reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
    })
    .await;
    let proxy = one_worker(&up);
    for _ in 0..2 {
        let a = request(&proxy, Method::GET).await;
        assert_eq!(a.body, "bye");
        assert!(
            !a.headers.contains_key("connection"),
            "hop-by-hop header leaked"
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_after_a_complete_response_keep_the_connection_out_of_the_pool() {
    let up = scripted(|_, _| reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE")).await;
    let proxy = one_worker(&up);
    for _ in 0..2 {
        assert_eq!(request(&proxy, Method::GET).await.body, "ok");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_responses_are_502() {
    let cases: [fn(usize, &str) -> Reply; 4] = [
        |_, _| reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
        |_, _| reply("NOT HTTP AT ALL\r\n\r\n"),
        |_, _| {
            let big = "x".repeat(70 * 1024);
            reply(format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\n\r\n"))
        },
        |_, _| reply_then_close("HTTP/1.1 200 OK\r\nContent-"),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let up = scripted(case).await;
        let proxy = one_worker(&up);
        let a = request(&proxy, Method::GET).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "case {i}: {}", a.body);
        assert!(a.body.contains("upstream"), "case {i}: {}", a.body);
        assert_eq!(proxy.metrics().upstream_errors, 1, "case {i}");
    }
}

#[tokio::test]
async fn a_truncated_body_aborts_the_client_response() {
    let up = scripted(|n, _| match n {
        0 => reply_then_close("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly4"),
        _ => reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let proxy = one_worker(&up);
    let req = Request::get("/").header("host", "x").body(empty()).unwrap();
    // The head may or may not have reached the client before the abort; either
    // way the response must not look complete.
    if let Ok(response) = send(proxy.local_addr(), req).await {
        let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
            .await
            .expect("body read timed out");
        assert!(body.is_err(), "a truncated body must not look complete");
    }
    // The proxy itself is fine, and so is the next response.
    assert_eq!(request(&proxy, Method::GET).await.body, "ok");
}

#[tokio::test]
async fn large_bodies_stream_intact() {
    let up = scripted(|_, _| {
        let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        reply(out)
    })
    .await;
    let proxy = one_worker(&up);
    for _ in 0..2 {
        let req = Request::get("/").header("host", "x").body(empty()).unwrap();
        let response = send(proxy.local_addr(), req).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 3 * 1024 * 1024);
        assert!(
            body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "body corrupted"
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_head_is_origin_form_with_the_original_host() {
    let up = scripted(|_, head| {
        let body = head.replace("\r\n", "|");
        reply(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    let proxy = one_worker(&up);
    let req = Request::get("/a/b?c=d")
        .header("host", "Shop.Example")
        .header("x-custom", "1")
        .body(empty())
        .unwrap();
    let response = send(proxy.local_addr(), req).await.unwrap();
    let head = read(response).await.body;
    assert!(head.starts_with("GET /a/b?c=d HTTP/1.1|"), "{head}");
    assert!(head.contains("|host: Shop.Example|"), "{head}");
    assert!(head.contains("|x-custom: 1|"), "{head}");
    assert!(head.contains("|x-forwarded-host: Shop.Example|"), "{head}");
    assert!(head.ends_with("||"), "{head}");
}
