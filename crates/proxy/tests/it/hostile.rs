//! Hostile HTTP/1.1 input, one raw-bytes test per form: the client's answer, and what the
//! upstream received (a recording upstream that logs every byte), so nothing is smuggled
//! past the proxy.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::static_site::raw;
use crate::support::*;

/// An upstream that records every byte it receives and answers each read with one
/// `200 ok` (enough for the requests here, which carry small bodies).
async fn recording() -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // One answer per request head in this read.
                    for _ in 0..text.matches("HTTP/1.1\r\n").count() {
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn setup() -> (dockhand_proxy::ProxyHandle, Arc<Mutex<Vec<u8>>>) {
    let (up, seen) = recording().await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    (proxy, seen)
}

fn upstream_text(seen: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&seen.lock().unwrap()).into_owned()
}

#[tokio::test]
async fn a_request_without_host_is_400_and_never_forwarded() {
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    assert_eq!(status, 400, "the hyper path too");
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn an_http10_request_without_host_is_forwarded_with_the_upstreams_address_as_host() {
    // Found by the proxy_request fuzz target (fuzz/regressions/proxy_request): HTTP/1.0 may
    // omit Host, but the proxy forwards HTTP/1.1, which must carry exactly one.
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(proxy.local_addr(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx",
    )
    .await;
    assert_eq!(status, 200, "the hyper path too");
    let text = upstream_text(&seen);
    let heads: Vec<&str> = text
        .split("\r\n\r\n")
        .filter(|h| h.contains("HTTP/1.1"))
        .collect();
    assert_eq!(heads.len(), 2, "{text:?}");
    for head in heads {
        let hosts: Vec<&str> = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts.len(), 1, "{head:?}");
        assert!(hosts[0].contains("127.0.0.1:"), "{head:?}");
    }
}

#[tokio::test]
async fn several_host_headers_are_400_and_never_forwarded() {
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    assert_eq!(status, 400, "the hyper path too");
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn differing_content_lengths_are_refused() {
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nxGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    assert!(!upstream_text(&seen).contains("smuggled"));
}

#[tokio::test]
async fn content_length_with_chunked_is_framed_by_chunked_alone() {
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    // Either refused, or forwarded with one framing (never both headers).
    let up = upstream_text(&seen).to_ascii_lowercase();
    if status == 200 {
        assert!(
            !(up.contains("content-length: 40") && up.contains("transfer-encoding")),
            "{up}"
        );
    } else {
        assert_eq!(status, 400);
        assert_eq!(up, "");
    }
}

#[tokio::test]
async fn a_transfer_encoding_other_than_chunked_is_refused() {
    let (proxy, seen) = setup().await;
    for te in ["gzip", "chunked, gzip", "identity"] {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let (status, _, _) = raw(proxy.local_addr(), req.as_bytes()).await;
        assert!(status == 400 || status == 501, "{te}: {status}");
    }
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn obs_fold_bare_cr_and_invalid_header_bytes_are_refused() {
    let (proxy, seen) = setup().await;
    for (form, req) in [
        (
            "obs-fold",
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\nConnection: close\r\n\r\n"[..],
        ),
        (
            "bare CR",
            b"GET / HTTP/1.1\r\nHost: a\rX-B: 2\r\nConnection: close\r\n\r\n",
        ),
        (
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-C: a\0b\r\nConnection: close\r\n\r\n",
        ),
        (
            "space before the colon",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-D : 1\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let (status, head, _) = raw(proxy.local_addr(), req).await;
        assert_eq!(status, 400, "{form}: {head}");
    }
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn an_absolute_form_target_disagreeing_with_host_goes_by_the_target() {
    let (proxy, seen) = setup().await;
    let (status, _, _) = raw(
        proxy.local_addr(),
        b"GET http://a/x HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    // RFC 9112 §3.2.2: the target's authority wins; the upstream gets one Host, the target's.
    assert!(status == 200 || status == 400, "{status}");
    let up = upstream_text(&seen).to_ascii_lowercase();
    if status == 200 {
        assert_eq!(up.matches("\r\nhost:").count(), 1, "{up}");
        assert!(up.contains("\r\nhost: a\r\n"), "{up}");
        assert!(up.starts_with("get /x http/1.1\r\n"), "{up}");
    }
}
