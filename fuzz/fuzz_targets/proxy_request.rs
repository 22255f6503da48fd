//! The proxy's request path, end to end: whatever bytes a client sends, what the upstream
//! receives on each connection is one well-formed HTTP/1.1 request — a head `httparse`
//! accepts, exactly one `Host`, never both `Content-Length` and `Transfer-Encoding`, a
//! `Transfer-Encoding` that is only `chunked` — and nothing after it: no second request
//! smuggled behind the first. The upstream answers `Connection: close`, so the proxy may
//! never send a second request on the same connection; any byte after the first request's
//! body is a request the proxy did not see.
//!
//! And every request the upstream receives is one the client sent: the input is also read
//! by a strict reference (a head `httparse` accepts, framed by its one `Content-Length` or its
//! chunked body, up to the first head that is malformed or ambiguous), and the methods the
//! upstream receives must be among the reference's, no more of them than it found. Body bytes
//! that the proxy mistook for a head (`helloGET /2` after a body it did not frame) fail this
//! even when each request on its own looks well formed.
//!
//! The input is sent on a new connection from a loopback address of its own (which the
//! upstream sees in `X-Forwarded-For`, so a late arrival of an earlier input is never counted
//! as this one's), the client's side is then half-closed, and the target waits until the
//! proxy has answered and every upstream connection has ended. When the proxy outlasts the
//! client's patience, only the reference count is skipped, never the checks of each request.
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
    /// Each request the upstream received: its `X-Forwarded-For` (the client's address,
    /// one loopback address per input) and its method.
    received: Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let upstream = listener.local_addr().expect("upstream address");
        let open = Arc::new(AtomicUsize::new(0));
        let findings = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        {
            let (open, findings, received) = (open.clone(), findings.clone(), received.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, findings, received) =
                        (open.clone(), findings.clone(), received.clone());
                    std::thread::spawn(move || {
                        if let Err(finding) = upstream_connection(stream, &received) {
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
            received,
        }
    })
}

/// Reads one request as the upstream sees it, answers it, and checks nothing follows.
fn upstream_connection(
    mut stream: TcpStream,
    received: &Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
) -> Result<(), String> {
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
            Ok(httparse::Status::Complete(len)) => {
                if let Some(method) = req.method {
                    let from = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                        .map(|h| h.value.to_vec())
                        .unwrap_or_default();
                    received
                        .lock()
                        .unwrap()
                        .push((from, method.as_bytes().to_vec()));
                }
                break (len, framing_of(&req)?);
            }
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
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts != 1 {
        return Err(format!("the upstream got {hosts} Host headers"));
    }
    body_framing(req)
}

/// How the body of `req` is framed; `Err` when that is ambiguous.
fn body_framing(req: &httparse::Request<'_, '_>) -> Result<Framing, String> {
    let named = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
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

/// The methods of the requests in the client's bytes, read strictly: one head after another,
/// each framed by its body, up to the first head that is incomplete, malformed or ambiguous
/// (that one counts: a proxy may not forward it, but if it did the upstream says so).
fn client_methods(mut input: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return out,
        };
        if let Some(m) = req.method {
            out.push(m.as_bytes().to_vec());
        }
        let body = &input[len..];
        let used = match body_framing(&req) {
            Err(_) => return out,
            Ok(Framing::None) => 0,
            Ok(Framing::Length(n)) if n <= body.len() => n,
            Ok(Framing::Length(_)) => return out,
            Ok(Framing::Chunked) => match chunked_end(body) {
                Some(end) => end,
                None => return out,
            },
        };
        input = &body[used..];
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

/// Sends `data` and reads until the proxy closes the connection: `true` when it did, so
/// every request of this input reached the upstream (or never will) before the return;
/// `false` when the proxy was slower than the client's patience.
fn send(addr: SocketAddr, from: std::net::Ipv4Addr, data: &[u8]) -> bool {
    let Ok(socket) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
    else {
        return false;
    };
    let bound = socket.bind(&SocketAddr::from((from, 0)).into());
    if bound.is_err() || socket.connect(&addr.into()).is_err() {
        return false;
    }
    let mut client: TcpStream = socket.into();
    // Longer than the proxy's own timeouts, so the proxy is the side that gives up.
    client.set_read_timeout(Some(PATIENCE * 2)).ok();
    let _ = client.write_all(data);
    let _ = client.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    client.read_to_end(&mut sink).is_ok()
}

fn settle(h: &Harness) {
    let deadline = Instant::now() + PATIENCE * 3;
    while h.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A loopback address of its own for each input (127.1.0.1 onwards), so that what the
/// upstream receives is told apart by input even when an earlier one's arrives late.
fn next_source() -> std::net::Ipv4Addr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (254 * 254 * 254);
    std::net::Ipv4Addr::new(
        127,
        (n / (254 * 254)) as u8 + 1,
        (n / 254 % 254) as u8,
        (n % 254) as u8 + 1,
    )
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let from = next_source();
    let complete = send(h.proxy.local_addr(), from, data);
    settle(h);
    let mut findings = std::mem::take(&mut *h.findings.lock().unwrap());
    let tag = from.to_string().into_bytes();
    // Another address's requests are an earlier input's, arriving late: that input is over.
    let mut received: Vec<Vec<u8>> = std::mem::take(&mut *h.received.lock().unwrap())
        .into_iter()
        .filter(|(f, _)| *f == tag)
        .map(|(_, method)| method)
        .collect();
    if !complete {
        // The proxy may still forward part of this input: no count to compare with.
        received.clear();
    }
    let mut sent = client_methods(data);
    for method in &received {
        match sent.iter().position(|m| m == method) {
            Some(i) => {
                sent.remove(i);
            }
            None => findings.push(format!(
                "the upstream got a request the client never sent (method {:?}; the client's: {:?})",
                show(method),
                client_methods(data).iter().map(|m| show(m)).collect::<Vec<_>>()
            )),
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
});
