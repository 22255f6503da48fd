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

// ---- limits on the hyper path, slow clients, HTTP/2 floods ----

fn short_timeouts() -> dockhand_proxy::ProxyConfig {
    let mut cfg = config();
    cfg.client_header_timeout = std::time::Duration::from_millis(800);
    cfg
}

#[tokio::test]
async fn a_head_too_large_for_the_fast_path_is_431_on_hypers_and_never_forwarded() {
    let (proxy, seen) = setup().await;
    // 100 KiB of one header: past the fast path's 16 KiB, so hyper reads it, and past its
    // 64 KiB buffer (hyper's default would buffer about 400 KiB and forward it).
    let big = "a".repeat(100 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let (status, _, _) = raw(proxy.local_addr(), request.as_bytes()).await;
    assert_eq!(status, 431);
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn too_many_header_fields_are_431_on_both_paths() {
    let (proxy, seen) = setup().await;
    let many: String = (0..80).map(|i| format!("X-H{i}: v\r\n")).collect();
    for request in [
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}Connection: close\r\n\r\n"),
        format!(
            "POST / HTTP/1.1\r\nHost: a\r\n{many}Content-Length: 1\r\nConnection: close\r\n\r\nx"
        ),
    ] {
        let (status, _, _) = raw(proxy.local_addr(), request.as_bytes()).await;
        assert_eq!(status, 431);
    }
    assert_eq!(upstream_text(&seen), "");
}

/// Sends `head` one byte every 100 ms; returns whether the proxy closed the connection
/// before the head was complete.
async fn trickle(stream: &mut tokio::net::TcpStream, head: &[u8]) -> bool {
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            return true;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(std::time::Duration::from_millis(100), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (408): the close follows
            Err(_) => {}
        }
    }
    false
}

#[tokio::test]
async fn a_slow_header_client_is_dropped_on_the_fast_path() {
    let (up, seen) = recording().await;
    let proxy = start(short_timeouts(), vec![route("/", vec![backend(up)])]);
    let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    // 60 bytes at 10 per second would take 6 s; the header timeout is 0.8 s.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(30)
    );
    assert!(
        trickle(&mut s, head.as_bytes()).await,
        "the slow head was not cut"
    );
    assert_eq!(upstream_text(&seen), "");
}

#[tokio::test]
async fn a_slow_header_client_is_dropped_on_the_hyper_path() {
    let (up, seen) = recording().await;
    let proxy = start(short_timeouts(), vec![route("/", vec![backend(up)])]);
    let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    // A request with a body first: the connection is hyper's from then on.
    s.write_all(b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let head = format!(
        "GET /second HTTP/1.1\r\nHost: a\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(30)
    );
    assert!(
        trickle(&mut s, head.as_bytes()).await,
        "the slow head was not cut"
    );
    assert!(!upstream_text(&seen).contains("/second"));
}

#[tokio::test]
async fn a_slow_body_is_cut_with_408_and_never_completed_upstream() {
    let completed = Arc::new(Mutex::new(0usize));
    let done = completed.clone();
    let up = serve(move |req: http::Request<hyper::body::Incoming>| {
        let done = done.clone();
        async move {
            let ok = http_body_util::BodyExt::collect(req.into_body())
                .await
                .is_ok();
            if ok {
                *done.lock().unwrap() += 1;
            }
            text(http::StatusCode::OK, "ok")
        }
    })
    .await;
    let proxy = start(short_timeouts(), vec![route("/", vec![backend(up)])]);
    let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    // Then nothing: the proxy answers 408 once the body timeout passes.
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("the slow body was not cut");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(
        *completed.lock().unwrap(),
        0,
        "the upstream got a whole body"
    );
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /` for host `a`, HPACK-encoded from the static table.
const H2_GET: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'];

/// Writes `bytes` after the connection preface and an empty SETTINGS, then reads every
/// frame the proxy sends until it closes; returns the GOAWAY error code, if any.
async fn h2_goaway_after(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<u32> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut all = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    all.extend(frame(0x4, 0, 0, &[]));
    all.extend_from_slice(bytes);
    let _ = s.write_all(&all).await; // the proxy may close before reading it all
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut got))
        .await
        .expect("the proxy kept the connection open");
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = (usize::from(got[at]) << 16)
            | (usize::from(got[at + 1]) << 8)
            | usize::from(got[at + 2]);
        let kind = got[at + 3];
        let payload = got.get(at + 9..at + 9 + len)?;
        if kind == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
        at += 9 + len;
    }
    None
}

const ENHANCE_YOUR_CALM: u32 = 0xb;

#[tokio::test]
async fn an_h2_rapid_reset_flood_is_ended_with_goaway_and_the_proxy_keeps_serving() {
    let (proxy, _seen) = setup().await;
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        flood.extend(frame(0x1, 0x5, stream, H2_GET)); // HEADERS, END_STREAM | END_HEADERS
        flood.extend(frame(0x3, 0, stream, &0x8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    assert_eq!(
        h2_goaway_after(proxy.local_addr(), &flood).await,
        Some(ENHANCE_YOUR_CALM)
    );
    let answer = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(answer.status, http::StatusCode::OK);
}

#[tokio::test]
async fn an_h2_continuation_flood_is_ended_with_goaway() {
    let (proxy, seen) = setup().await;
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    let mut flood = frame(0x1, 0x1, 1, H2_GET);
    for _ in 0..2000 {
        flood.extend(frame(0x9, 0, 1, &[0x40, 0x01, b'x', 0x01, b'y']));
    }
    assert_eq!(
        h2_goaway_after(proxy.local_addr(), &flood).await,
        Some(ENHANCE_YOUR_CALM)
    );
    assert_eq!(upstream_text(&seen), "");
    let answer = get(proxy.local_addr(), "a", "/").await;
    assert_eq!(answer.status, http::StatusCode::OK);
}

/// Opens `argv[2]` connections to `argv[1]` and holds them; prints how many it opened.
const FLOOD: &str = r#"
import resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
socks = []
for _ in range(int(sys.argv[2])):
    try:
        socks.append(socket.create_connection((host, int(port)), timeout=3))
    except OSError:
        break
print(len(socks), flush=True)
time.sleep(120)
"#;

#[tokio::test]
async fn a_connection_flood_past_the_descriptor_limit_leaves_room_to_serve() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // This test's process only (nextest runs each test in its own): 512 descriptors, so the
    // flood below (more connections than that and the listen backlogs together) would
    // exhaust them.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 512, hard).unwrap();
    let up = named_upstream("up").await;
    let proxy = start(config(), vec![route("/", vec![backend(up)])]);
    let addr = proxy.local_addr();
    let mut flood = std::process::Command::new("python3")
        .args(["-c", FLOOD, &addr.to_string(), "3000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the flood client needs python3 (apt-get install -y python3)");
    let stdout = flood.stdout.take().unwrap();
    let opened = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line.trim().parse::<usize>().unwrap_or(0)
    });
    let opened = tokio::time::timeout(std::time::Duration::from_secs(60), opened)
        .await
        .expect("the flood client never finished connecting")
        .unwrap();
    // While the flood holds its connections, a normal request is served.
    let served = tokio::time::timeout(PATIENCE, get(addr, "a", "/")).await;
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(opened >= 2500, "the flood opened only {opened} connections");
    let answer = served.expect("a request during the flood was not served");
    assert_eq!(answer.status, http::StatusCode::OK);
    assert_eq!(answer.body, "up");
}
