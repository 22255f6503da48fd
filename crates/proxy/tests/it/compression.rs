//! Compression checked with a real client (`curl --compressed`, which decodes gzip, brotli
//! and zstd): content and headers, every coding, what is never compressed, and server-sent
//! events arriving one by one through the compressor.

use std::process::Stdio;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

fn json_body() -> String {
    let rows: Vec<String> = (0..300)
        .map(|i| format!("{{\"id\":{i},\"name\":\"row {i}\",\"ok\":true}}"))
        .collect();
    format!("[{}]", rows.join(","))
}

/// An upstream with a JSON document, a small one, a PNG-typed one, one the app compressed,
/// and one marked no-transform.
async fn upstream() -> std::net::SocketAddr {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let (ct, body, extra): (&str, String, Option<(&str, &str)>) = match req.uri().path() {
            "/json" => ("application/json", json_body(), None),
            "/small" => ("application/json", "{\"a\":1}".into(), None),
            "/png" => ("image/png", "x".repeat(5000), None),
            "/encoded" => (
                "text/plain",
                "x".repeat(5000),
                Some(("content-encoding", "identity-by-app")),
            ),
            "/no-transform" => (
                "text/plain",
                "x".repeat(5000),
                Some(("cache-control", "no-transform")),
            ),
            _ => ("text/plain", "?".into(), None),
        };
        let mut r = text(StatusCode::OK, body);
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        if let Some((n, v)) = extra {
            r.headers_mut().insert(n, v.parse().unwrap());
        }
        r
    })
    .await
}

/// `curl -s -D - [--compressed] -H ...`: (head, body).
async fn curl(url: &str, args: &[&str]) -> (String, String) {
    let out = tokio::time::timeout(
        PATIENCE,
        Command::new("curl")
            .args(["-s", "-S", "-D", "-", "-o", "-", "--max-time", "20"])
            .args(args)
            .arg(url)
            .output(),
    )
    .await
    .expect("curl timed out")
    .expect("curl is installed (apt-get install curl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn curl_compressed_gets_each_coding_and_the_same_content() {
    let up = upstream().await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let url = format!("http://{}/json", proxy.local_addr());
    let expected = json_body();
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=0.5, br;q=0.9, zstd;q=0.1", "br"),
        ("gzip, br, zstd", "zstd"),
    ] {
        let header = format!("Accept-Encoding: {accept}");
        let (head, body) = curl(&url, &["--compressed", "-H", &header]).await;
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{accept}: {head}"
        );
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(body, expected, "{accept}");
    }
    // Plain curl (no Accept-Encoding): as the upstream sent it.
    let (head, body) = curl(&url, &[]).await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body, expected);
    // What is never compressed.
    for path in ["/small", "/png", "/encoded", "/no-transform"] {
        let url = format!("http://{}{path}", proxy.local_addr());
        // Asked for, but not decoded by curl (the app's own coding is not one it knows).
        let (head, _) = curl(&url, &["-H", "Accept-Encoding: gzip, br, zstd"]).await;
        assert!(
            !head.contains("content-encoding: gzip")
                && !head.contains("content-encoding: br")
                && !head.contains("content-encoding: zstd"),
            "{path}: {head}"
        );
    }
    // HTTP/2 (hyper's path) too.
    let (head, body) = curl(&url, &["--http2-prior-knowledge", "--compressed"]).await;
    assert!(head.contains("content-encoding: zstd"), "{head}");
    assert_eq!(body, expected);
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one_through_compression() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(0u32);
    let up = serve(move |_req| {
        let rx = release_rx.clone();
        async move {
            // Event n is sent once the test has seen event n-1 (so a buffering compressor
            // would hang the test instead of passing it).
            let stream = futures_util::stream::unfold(0u32, move |n| {
                let mut rx = rx.clone();
                async move {
                    if n == 3 {
                        return None;
                    }
                    if n > 0 {
                        rx.wait_for(|seen| *seen >= n).await.ok()?;
                    }
                    let frame =
                        hyper::body::Frame::data(Bytes::from(format!("data: event {n}\n\n")));
                    Some((Ok::<_, BoxError>(frame), n + 1))
                }
            });
            let mut r = http::Response::new(http_body_util::StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-N",
            "--compressed",
            "-D",
            "/dev/stderr",
            "--max-time",
            "20",
        ])
        .arg(format!("http://{}/events", proxy.local_addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for n in 0..3u32 {
        let line = tokio::time::timeout(PATIENCE, async {
            loop {
                let l = lines.next_line().await.unwrap().expect("an event line");
                if !l.is_empty() {
                    return l;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("event {n} did not arrive before the next was sent"));
        assert_eq!(line, format!("data: event {n}"));
        release_tx.send(n + 1).unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(
        head.contains("content-encoding: zstd"),
        "compressed: {head}"
    );
}

#[tokio::test]
async fn static_text_files_are_compressed_on_the_fly_and_precompressed_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let css = "body { color: red; }\n".repeat(200);
    std::fs::write(dir.path().join("app.css"), &css).unwrap();
    let site = dockhand_proxy::StaticSite::load(dir.path(), &Default::default()).unwrap();
    let mut r = route("/", Vec::new());
    r.site = Some(std::sync::Arc::new(site));
    let proxy = start(config(), vec![r]);
    let url = format!("http://{}/app.css", proxy.local_addr());
    let (head, body) = curl(&url, &["--compressed", "-H", "Accept-Encoding: gzip"]).await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(
        head.contains("etag: w/"),
        "the validator is weakened: {head}"
    );
    assert_eq!(body, css);
    // A range is never compressed.
    let (head, body) = curl(&url, &["--compressed", "-r", "0-9"]).await;
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body, &css[..10]);
}
