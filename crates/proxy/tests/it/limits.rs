//! Request size limits, streamed uploads and the client header timeout.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Upstream that reads the whole body and answers "<bytes> <checksum>"; records
/// requests seen and bytes received.
async fn counting_upstream(
    requests: Arc<AtomicUsize>,
    received: Arc<AtomicU64>,
) -> std::net::SocketAddr {
    serve(move |req: Request<hyper::body::Incoming>| {
        let requests = requests.clone();
        let received = received.clone();
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let mut body = req.into_body();
            let mut sum = Checksum::default();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return text(StatusCode::BAD_REQUEST, "body failed");
                };
                if let Some(data) = frame.data_ref() {
                    received.fetch_add(data.len() as u64, Ordering::SeqCst);
                    sum.update(data);
                }
            }
            text(StatusCode::OK, format!("{} {}", sum.len, sum.value()))
        }
    })
    .await
}

/// Adler-32 style checksum.
#[derive(Default)]
struct Checksum {
    a: u64,
    b: u64,
    len: u64,
}

impl Checksum {
    fn update(&mut self, data: &[u8]) {
        for &byte in data {
            self.a = (self.a + byte as u64 + 1) % 65521;
            self.b = (self.b + self.a) % 65521;
        }
        self.len += data.len() as u64;
    }

    fn value(&self) -> u64 {
        (self.b << 16) | self.a
    }
}

/// A chunked body of `chunks` pieces of `size` pseudo-random bytes.
fn chunked_body(chunks: usize, size: usize, seed: u64) -> (TestBody, Checksum) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sum = Checksum::default();
    let mut pieces = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        let mut piece = vec![0u8; size];
        rng.fill(&mut piece);
        sum.update(&piece);
        pieces.push(Ok::<_, BoxError>(Frame::data(Bytes::from(piece))));
    }
    let stream = futures_util::stream::iter(pieces);
    (StreamBody::new(stream).boxed(), sum)
}

#[tokio::test]
async fn content_length_over_limit_gets_413_without_contacting_upstream() {
    let requests = Arc::new(AtomicUsize::new(0));
    let up = counting_upstream(requests.clone(), Arc::default()).await;
    let mut config = config();
    config.max_request_body = 1024;
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let req = Request::post("/upload")
        .header("host", "a")
        .header("content-length", "4096")
        .body(full(vec![b'x'; 4096]))
        .unwrap();
    let a = read(send(proxy.local_addr(), req).await.unwrap()).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert!(a.body.starts_with("413 payload too large"), "{}", a.body);
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    assert_eq!(proxy.metrics().status_4xx, 1);
}

#[tokio::test]
async fn chunked_upload_over_limit_is_cut_off() {
    let received = Arc::new(AtomicU64::new(0));
    let up = counting_upstream(Arc::default(), received.clone()).await;
    let mut config = config();
    config.max_request_body = 64 * 1024;
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let (body, _) = chunked_body(64, 16 * 1024, 7); // 1 MiB, no content-length
    let req = Request::post("/upload")
        .header("host", "a")
        .body(body)
        .unwrap();
    match tokio::time::timeout(PATIENCE, send(proxy.local_addr(), req))
        .await
        .unwrap()
    {
        Ok(response) => {
            let status = response.status();
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(_reset) => {} // the proxy may reset the connection instead
    }
    assert!(received.load(Ordering::SeqCst) < 1024 * 1024);
    // Whether the client saw the answer or a reset, the proxy answered 413.
    eventually("proxy answered 413", || proxy.metrics().status_4xx == 1).await;
    assert_eq!(proxy.metrics().upstream_errors, 0);
}

#[tokio::test]
async fn five_megabyte_streamed_upload_arrives_intact() {
    let up = counting_upstream(Arc::default(), Arc::default()).await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let (body, sum) = chunked_body(80, 64 * 1024, 42); // 5 MiB
    let req = Request::post("/upload")
        .header("host", "a")
        .body(body)
        .unwrap();
    let a = read(send(proxy.local_addr(), req).await.unwrap()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, format!("{} {}", 5 * 1024 * 1024, sum.value()));
}

#[tokio::test]
async fn client_that_stalls_in_headers_is_disconnected() {
    let up = named_upstream("up").await;
    let mut config = config();
    config.client_header_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let mut buf = Vec::new();
    // EOF (or a reset) ends the read; hyper may write a 408 first.
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("connection was not closed");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}

#[tokio::test]
async fn client_that_sends_nothing_is_disconnected() {
    let up = named_upstream("up").await;
    let mut config = config();
    config.client_header_timeout = Duration::from_millis(300);
    let proxy = start(config, vec![route("/", vec![backend(up)])]);
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("connection was not closed");
}
