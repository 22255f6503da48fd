//! The client side as raw bytes: keep-alive rules, pipelining, the hand-over
//! to hyper in the middle of a connection, and timeouts on later requests.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// An upstream that echoes method, path and body length, chunked when the path
/// says so.
async fn echo() -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let line = format!("{} {}", req.method(), req.uri());
        let chunked = req.uri().path() == "/chunked";
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let line_and_len = format!("{line} {}", body.len());
        if chunked {
            let stream = futures_util::stream::iter(vec![
                Ok::<_, BoxError>(hyper::body::Frame::data(bytes::Bytes::from("part1 "))),
                Ok(hyper::body::Frame::data(bytes::Bytes::from(line_and_len))),
            ]);
            let body = http_body_util::StreamBody::new(stream).boxed();
            return http::Response::new(body);
        }
        text(StatusCode::OK, line_and_len)
    })
    .await
}

/// Reads responses until `count` complete ones arrived (by Content-Length or
/// chunked), or EOF; returns the raw text and whether EOF was seen.
async fn read_responses(s: &mut TcpStream, count: usize) -> (String, bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if complete_responses(&raw) >= count {
            return (String::from_utf8_lossy(&raw).into_owned(), false);
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("response timed out")
            .unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&raw).into_owned(), true);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Counts complete responses in `raw` (enough framing for these tests).
fn complete_responses(raw: &[u8]) -> usize {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    let mut count = 0;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end].to_ascii_lowercase();
        let body = &rest[end + 4..];
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if body.len() < len {
                return count;
            }
            rest = &body[len..];
        } else if head.contains("transfer-encoding: chunked") {
            let Some(at) = body.find("\r\n0\r\n\r\n") else {
                return count;
            };
            rest = &body[at + 7..];
        } else {
            rest = body;
        }
        count += 1;
    }
    count
}

async fn connect(proxy: &dockhand_proxy::ProxyHandle) -> TcpStream {
    TcpStream::connect(proxy.local_addr()).await.unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let proxy = start(config(), vec![route("/", vec![backend(echo().await)])]);
    let mut s = connect(&proxy).await;
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nHEAD /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, eof) = read_responses(&mut s, 3).await;
    assert!(!eof, "{text}");
    let one = text.find("GET /one 0").expect(&text);
    let three = text.find("GET /three 0").expect(&text);
    assert!(one < three, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert!(
        !text.contains("HEAD /two"),
        "HEAD response carried a body: {text}"
    );
    assert!(text.to_ascii_lowercase().contains("date: "), "{text}");
}

#[tokio::test]
async fn a_body_in_the_middle_of_a_connection_is_handed_to_hyper() {
    let proxy = start(config(), vec![route("/", vec![backend(echo().await)])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_responses(&mut s, 1).await;
    assert!(text.contains("GET /first 0"), "{text}");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, eof) = read_responses(&mut s, 2).await;
    assert!(!eof, "{text}");
    assert!(text.contains("POST /upload 5"), "{text}");
    assert!(text.contains("GET /after 0"), "{text}");
}

#[tokio::test]
async fn connection_close_and_http10_are_honoured() {
    let proxy = start(config(), vec![route("/", vec![backend(echo().await)])]);

    let mut s = connect(&proxy).await;
    s.write_all(b"GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_responses(&mut s, 2).await;
    assert!(text.contains("GET /bye 0"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).await.unwrap(),
        0,
        "closed after the response"
    );

    // HTTP/1.0 without keep-alive: closed after the response.
    let mut s = connect(&proxy).await;
    s.write_all(b"GET /old HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
        .await
        .expect("HTTP/1.0 connection was not closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("GET /old 0"));

    // HTTP/1.0 with keep-alive, and a chunked upstream body: no chunked coding
    // for a 1.0 client, so the body is delimited by closing.
    let mut s = connect(&proxy).await;
    s.write_all(b"GET /one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (text, eof) = read_responses(&mut s, 1).await;
    assert!(
        !eof && text.to_ascii_lowercase().contains("connection: keep-alive"),
        "{text}"
    );
    s.write_all(b"GET /chunked HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
        .await
        .expect("close-delimited response did not end")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.ends_with("part1 GET /chunked 0"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
}

#[tokio::test]
async fn chunked_upstream_bodies_are_rechunked_for_http11_clients() {
    let proxy = start(config(), vec![route("/", vec![backend(echo().await)])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, eof) = read_responses(&mut s, 2).await;
    assert!(!eof, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(text.contains("part1 "), "{text}");
    assert!(text.contains("GET /next 0"), "{text}");
}

#[tokio::test]
async fn a_later_request_that_stalls_in_its_head_is_disconnected() {
    let up = named_upstream("up").await;
    let mut config = config();
    config.client_header_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_responses(&mut s, 1).await;
    assert!(text.contains("200 OK"), "{text}");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let (text, eof) = read_responses(&mut s, 1).await;
    assert!(eof, "a stalled head was answered: {text}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let up = named_upstream("up").await;
    let mut config = config();
    config.client_idle_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_responses(&mut s, 1).await;
    assert!(text.contains("200 OK"), "{text}");
    let (_, eof) = read_responses(&mut s, 1).await;
    assert!(eof, "idle connection stayed open");
}

#[tokio::test]
async fn malformed_requests_get_hyper_answers() {
    let up = named_upstream("up").await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
        .await
        .expect("connection was not closed");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    // And the proxy keeps serving.
    assert_eq!(get(proxy.local_addr(), "a", "/").await.body, "up");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_dropped() {
    // 64 MiB: more than the socket buffers on both sides can absorb.
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 64;
    let up = serve(|_req| async move {
        use http_body_util::BodyExt;
        let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
        let stream = futures_util::stream::iter(
            (0..CHUNKS).map(move |_| Ok::<_, BoxError>(hyper::body::Frame::data(chunk.clone()))),
        );
        let mut response = http::Response::new(http_body_util::StreamBody::new(stream).boxed());
        response.headers_mut().insert(
            "content-length",
            (CHUNK * CHUNKS).to_string().parse().unwrap(),
        );
        response
    })
    .await;
    let b = backend(up);
    let mut config = config();
    config.client_idle_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![b.clone()])]);
    let mut s = connect(&proxy).await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    eventually("the request reached the backend", || b.inflight() == 1).await;
    // The client reads nothing; the proxy gives up on it and releases the backend.
    let outcome = proxy.drain(std::slice::from_ref(&b), PATIENCE).await;
    assert!(
        outcome.idle,
        "a stalled client kept its request alive: {outcome:?}"
    );
    // What the client can still read ends before the whole body.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the connection was left open"),
        }
    }
    assert!(total < CHUNK * CHUNKS, "the whole body arrived");
}
