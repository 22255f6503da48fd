//! The proxy's request path, end to end: whatever bytes a client sends, what the upstream
//! receives on each connection is one well-formed HTTP/1.1 request — a head `httparse`
//! accepts, exactly one `Host`, never both `Content-Length` and `Transfer-Encoding`, a
//! `Transfer-Encoding` that is only `chunked` — and nothing after it: no second request
//! smuggled behind the first. The upstream answers `Connection: close`, so the proxy may
//! never send a second request on the same connection; any byte after the first request's
//! body is a request the proxy did not see.
//!
//! The input is sent on a new connection, the client's side is then half-closed, and the
//! target waits until the proxy has answered and every upstream connection has ended.
#![no_main]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dockhand_proxy::{Backend, Proxy, ProxyConfig, ProxyHandle, Route, RouteTable};
use libfuzzer_sys::fuzz_target;

/// A read on either side that waits longer than this ends that side (not a finding: a
/// request whose body the client never finished).
const PATIENCE: Duration = Duration::from_secs(3);

struct Harness {
    proxy: ProxyHandle,
    /// Upstream connections accepted and not yet finished.
    open: Arc<AtomicUsize>,
    /// What the upstream found wrong, since the last input.
    findings: Arc<Mutex<Vec<String>>>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let upstream = listener.local_addr().expect("upstream address");
        let open = Arc::new(AtomicUsize::new(0));
        let findings = Arc::new(Mutex::new(Vec::new()));
        {
            let (open, findings) = (open.clone(), findings.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, findings) = (open.clone(), findings.clone());
                    std::thread::spawn(move || {
                        if let Err(finding) = upstream_connection(stream) {
                            findings.lock().unwrap().push(finding);
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        let config = ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            max_request_body: 64 * 1024,
            client_header_timeout: PATIENCE,
            upstream_response_timeout: PATIENCE,
            client_idle_timeout: PATIENCE,
            ..ProxyConfig::default()
        };
        let route = Route {
            host: None,
            path_prefix: "/".into(),
            strip_prefix: false,
            add_prefix: None,
            max_body: None,
            upstream_response_timeout: None,
            service: "web".into(),
            backends: vec![Backend::new(1, upstream)],
            https: Default::default(),
            site: None,
            policy: Default::default(),
        };
        let proxy = Proxy::start(config, RouteTable::new(vec![route]).unwrap()).expect("proxy");
        Harness {
            proxy,
            open,
            findings,
        }
    })
}

/// Reads one request as the upstream sees it, answers it, and checks nothing follows.
fn upstream_connection(mut stream: TcpStream) -> Result<(), String> {
    stream.set_read_timeout(Some(PATIENCE)).ok();
    let mut buf = Vec::new();
    let (head_len, framing) = loop {
        if !read_more(&mut stream, &mut buf) {
            if buf.is_empty() {
                return Ok(()); // a connection opened and closed unused
            }
            return Err(format!("the upstream got an incomplete head: {:?}", show(&buf)));
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => break (len, framing_of(&req)?),
            Ok(httparse::Status::Partial) => continue,
            Err(e) => {
                return Err(format!("the upstream got a malformed head ({e}): {:?}", show(&buf)))
            }
        }
    };
    let mut at = head_len;
    let complete = match framing {
        Framing::None => true,
        Framing::Length(n) => {
            while buf.len() < at + n {
                if !read_more(&mut stream, &mut buf) {
                    break;
                }
            }
            let done = buf.len() >= at + n;
            at = (at + n).min(buf.len());
            done
        }
        Framing::Chunked => loop {
            match chunked_end(&buf[at..]) {
                Some(end) => {
                    at += end;
                    break true;
                }
                None if !read_more(&mut stream, &mut buf) => break false,
                None => {}
            }
        },
    };
    if !complete {
        return Ok(()); // the client stopped sending the body; nothing to answer
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok");
    let _ = stream.shutdown(Shutdown::Write);
    // Whatever still arrives on this connection is a second request.
    while read_more(&mut stream, &mut buf) {}
    if buf.len() > at {
        return Err(format!(
            "a second request reached the upstream behind the first: {:?} then {:?}",
            show(&buf[..at]),
            show(&buf[at..])
        ));
    }
    Ok(())
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn framing_of(req: &httparse::Request<'_, '_>) -> Result<Framing, String> {
    let named = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let hosts = named("host");
    if hosts.len() != 1 {
        return Err(format!("the upstream got {} Host headers", hosts.len()));
    }
    let lengths = named("content-length");
    let codings = named("transfer-encoding");
    if !lengths.is_empty() && !codings.is_empty() {
        return Err("the upstream got both Content-Length and Transfer-Encoding".into());
    }
    if lengths.len() > 1 {
        return Err(format!("the upstream got {} Content-Length headers", lengths.len()));
    }
    if let Some(coding) = codings.first() {
        if codings.len() > 1 || !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(format!(
                "the upstream got Transfer-Encoding {:?}",
                codings.iter().map(|c| show(c)).collect::<Vec<_>>()
            ));
        }
        return Ok(Framing::Chunked);
    }
    match lengths.first() {
        None => Ok(Framing::None),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| format!("the upstream got Content-Length {:?}", show(raw))),
    }
}

/// Where a chunked body that starts `body` ends (after the last chunk and the trailers).
fn chunked_end(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&body[at..]) {
            Ok(httparse::Status::Complete(v)) => v,
            _ => return None,
        };
        at += used;
        if size == 0 {
            // Trailers: lines up to an empty one.
            loop {
                let line_end = body[at..].windows(2).position(|w| w == b"\r\n")?;
                at += line_end + 2;
                if line_end == 0 {
                    return Some(at);
                }
            }
        }
        let size = usize::try_from(size).ok()?;
        if body.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}

fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).into_owned()
}

fn send(addr: SocketAddr, data: &[u8]) {
    let Ok(mut client) = TcpStream::connect(addr) else {
        return;
    };
    client.set_read_timeout(Some(PATIENCE)).ok();
    let _ = client.write_all(data);
    let _ = client.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = client.read_to_end(&mut sink);
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    send(h.proxy.local_addr(), data);
    let deadline = Instant::now() + PATIENCE * 3;
    while h.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let findings = std::mem::take(&mut *h.findings.lock().unwrap());
    assert!(findings.is_empty(), "{}", findings.join("\n"));
});
