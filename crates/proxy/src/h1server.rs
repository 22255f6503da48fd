//! The client side for plain HTTP/1.x requests without a body: the connection
//! loop reads request heads with `httparse`, forwards them over a direct
//! upstream connection (`h1.rs`) and writes the response itself, so the usual
//! proxied `GET` runs in one task with one buffer per side and no timer set per
//! request. Anything else (a request body, an upgrade, `Expect`, HTTP/2's
//! preface, a head `httparse` rejects, absolute-form targets) hands the
//! connection, with the bytes read so far, to hyper for the rest of its life
//! (`server.rs`), which serves every case and answers malformed input.
//!
//! Timeouts are one `Sleep` per connection that wakes at least every `tick` (the
//! shortest configured timeout) and checks the deadline of the current phase:
//! the first head within `client_header_timeout` of accept, later ones within
//! `client_idle_timeout` of the previous response (then `client_header_timeout`
//! once their first bytes arrived), the upstream's response head within
//! `upstream_response_timeout` (else 504), and some progress writing the response
//! within `client_idle_timeout` (else the connection is dropped). The phase starts
//! come from the coarse clock (`clock.rs`): no precise clock read per request.

use std::future::poll_fn;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::body::ResponseBody;
use crate::clock;
use crate::compress;
use crate::error::{ErrorKind, ErrorSource, ProxyError};
use crate::forward;
use crate::headers::{self, has_token, put_header, Scheme};
use crate::server::WorkerCtx;

/// Request headers accepted on this path (more go to hyper, which answers 431).
pub(crate) const MAX_HEADERS: usize = 64;
/// A request head still incomplete at this size goes to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// Read buffer reserved per read (nginx's `client_header_buffer_size` is 1k).
const READ_CHUNK: usize = 2 * 1024;
/// At shutdown, how long a keep-alive connection between two requests stays open for one more
/// request, answered with `Connection: close`. Closing it at once would fail a request the
/// client sent just before it saw the close (keep-alive's race), which a busy client meets at
/// every restart; a client that sends within this window is told to reconnect instead.
const LAST_CALL: Duration = Duration::from_secs(1);
/// Bodies of up to this many bytes with a known length are written together
/// with the head, in one write.
const COALESCE: usize = 16 * 1024;
/// The most one sendfile(2) call is asked for (the socket takes what fits its buffer).
const SENDFILE_CHUNK: u64 = 1 << 21;

/// How the loop ended.
pub(crate) enum Outcome {
    /// The connection is done (closed by either side, timed out or drained).
    Closed,
    /// Serve the rest with hyper, starting with these bytes already read.
    Fallback(Bytes),
}

/// Per-connection settings and state the loop needs.
pub(crate) struct Conn<'a> {
    pub(crate) ctx: &'a Arc<WorkerCtx>,
    /// The client's address as an `X-Forwarded-For` element.
    pub(crate) client_ip: &'a HeaderValue,
    /// How the client reached us, for `X-Forwarded-Proto`.
    pub(crate) scheme: Scheme,
    pub(crate) shutdown: &'a mut watch::Receiver<Option<Duration>>,
}

/// What `parse` found at the front of the buffer.
enum Parsed {
    Partial,
    Fallback,
    Ready(Box<Head>),
}

/// A request head this path serves, kept as the client sent it: spans into its
/// bytes (a head is at most `MAX_HEAD` bytes, so `u16` offsets).
struct Head {
    bytes: Bytes,
    method: (u16, u16),
    uri: Uri,
    /// (name start, name end, value start, value end) per header line.
    lines: [(u16, u16, u16, u16); MAX_HEADERS],
    count: usize,
    /// The first Host line.
    host: Option<usize>,
    /// The client wants the connection closed after this response.
    close: bool,
    http10: bool,
}

impl Head {
    fn method(&self) -> &[u8] {
        &self.bytes[usize::from(self.method.0)..usize::from(self.method.1)]
    }

    fn line(&self, i: usize) -> (&[u8], &[u8]) {
        let (ns, ne, vs, ve) = self.lines[i];
        (
            &self.bytes[usize::from(ns)..usize::from(ne)],
            &self.bytes[usize::from(vs)..usize::from(ve)],
        )
    }

    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        (0..self.count).map(|i| self.line(i))
    }
}

/// What a client connection runs on: the plain TCP socket under it, if any, so a static
/// file can go out with `sendfile(2)`; TLS (and test streams) have none.
pub(crate) trait Socket {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

impl Socket for tokio::net::TcpStream {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }
}

impl<S> Socket for tokio_rustls::server::TlsStream<S> {}

impl Socket for tokio::io::DuplexStream {}

/// Serves requests until the connection ends or needs hyper.
pub(crate) async fn serve<S>(conn: Conn<'_>, io: &mut S) -> Outcome
where
    S: AsyncRead + AsyncWrite + Socket + Unpin,
{
    let ctx = conn.ctx;
    let config = &ctx.shared.config;
    let tick = config
        .client_header_timeout
        .min(config.client_idle_timeout)
        .min(config.upstream_response_timeout)
        .max(Duration::from_millis(10));
    let accepted = clock::now();
    let mut sleep = pin!(tokio::time::sleep(tick));
    // Resolves with `true` at shutdown, `false` once no handle is left (then the
    // proxy never shuts down).
    let mut rx = conn.shutdown.clone();
    let mut stopping = pin!(async move {
        loop {
            if rx.changed().await.is_err() {
                return false;
            }
            if rx.borrow().is_some() {
                return true;
            }
        }
    });
    let mut stoppable = true;
    let mut draining = conn.shutdown.borrow().is_some();
    // When this connection learnt of the shutdown.
    let mut drain_since = draining.then_some(accepted);
    if draining {
        sleep.as_mut().reset(Instant::now() + LAST_CALL.min(tick));
    }

    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    let mut served = false;
    // When the bytes of the current head started arriving (or, for the first
    // head, when the connection was accepted).
    let mut head_since = accepted;
    let mut idle_since = accepted;

    loop {
        // 1. A complete request head.
        let head = loop {
            if !buf.is_empty() {
                match parse(&mut buf) {
                    Parsed::Ready(head) => break head,
                    Parsed::Fallback => return Outcome::Fallback(buf.freeze()),
                    Parsed::Partial if buf.len() >= MAX_HEAD => {
                        return Outcome::Fallback(buf.freeze())
                    }
                    Parsed::Partial => {}
                }
            }
            let mut deadline = if buf.is_empty() && served {
                idle_since + config.client_idle_timeout
            } else {
                head_since + config.client_header_timeout
            };
            if let (Some(since), true) = (drain_since, buf.is_empty()) {
                deadline = deadline.min(since + LAST_CALL);
            }
            buf.reserve(READ_CHUNK);
            let was_empty = buf.is_empty();
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => {
                        if was_empty && served {
                            head_since = clock::now();
                        }
                    }
                },
                stop = stopping.as_mut(), if stoppable && !draining => {
                    draining = stop;
                    stoppable = stop;
                    if stop {
                        drain_since = Some(clock::now());
                        sleep.as_mut().reset(Instant::now() + LAST_CALL.min(tick));
                    }
                }
                // Too many connections: one waiting for a request head makes room.
                () = ctx.shared.load.shed.notified() => return Outcome::Closed,
                () = sleep.as_mut() => {
                    if expired(sleep.as_mut(), deadline, tick) {
                        return Outcome::Closed;
                    }
                }
            }
        };
        // 2. Forward it, bounded by the response timeout.
        let head_request = head.method() == b"HEAD";
        let http10 = head.http10;
        let close = head.close;
        let request_id = headers::raw_request_id(head.lines());
        let coding = match config.compression {
            Some(_) => compress::choose_raw(head.lines()),
            None => None,
        };
        let started = clock::now();
        let pending = ctx.shared.access_log.as_ref().map(|_| {
            crate::access_log::Pending::new(
                conn.client_ip.as_bytes(),
                head.method(),
                head.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                head.lines(),
            )
        });
        let result = {
            let route_timeout = AtomicU64::new(0);
            let raw = forward::RawRequest {
                method: head.method(),
                uri: &head.uri,
                lines: head.lines(),
                host: head.host.map(|i| head.line(i).1),
                client_ip: conn.client_ip,
                scheme: conn.scheme,
                timeout: &route_timeout,
            };
            let fwd = forward::forward_raw(ctx, raw, &request_id);
            let mut fwd = pin!(fwd);
            loop {
                tokio::select! {
                    biased;
                    result = fwd.as_mut() => break result,
                    () = sleep.as_mut() => {
                        // The route's own timeout once routing set it, else the proxy's.
                        let timeout = match route_timeout.load(Ordering::Relaxed) {
                            0 => config.upstream_response_timeout,
                            nanos => Duration::from_nanos(nanos),
                        };
                        let deadline = started + timeout;
                        if expired(sleep.as_mut(), deadline, tick) {
                            sleep.as_mut().reset(Instant::now() + tick);
                            break Err(ProxyError::new(
                                ErrorKind::ResponseTimeout,
                                ErrorSource::Upstream,
                                "upstream did not send response headers in time",
                            ));
                        }
                    }
                }
            }
        };
        drop(head);
        let response = forward::finish(ctx, result, request_id);
        let response = compress::apply(response, coding, config.compression, head_request);
        let answered = pending.map(|p| p.answered(&response));

        // 3. Write the response.
        if !draining && stoppable {
            draining = conn.shutdown.borrow().is_some();
        }
        let close = close || draining;
        // A client that accepts no bytes for the idle timeout is dropped.
        let progress = Progress::new();
        let written = {
            let write = write_response(
                io,
                &mut out,
                response,
                head_request,
                http10,
                close,
                &progress,
            );
            let mut write = pin!(write);
            loop {
                tokio::select! {
                    biased;
                    written = write.as_mut() => break written,
                    () = sleep.as_mut() => {
                        let deadline = progress.last() + config.client_idle_timeout;
                        if expired(sleep.as_mut(), deadline, tick) {
                            break Err(io::ErrorKind::TimedOut.into());
                        }
                    }
                }
            }
        };
        if let (Some(a), Some(log)) = (answered, ctx.shared.access_log.as_ref()) {
            a.record(log);
        }
        match written {
            Ok(true) if !close => {}
            _ => return Outcome::Closed,
        }
        served = true;
        idle_since = clock::now();
        head_since = idle_since;
        if out.capacity() > 4 * COALESCE {
            out = Vec::new(); // a large coalesced body: do not keep its buffer
        }
    }
}

/// When writing a response last made progress, on the coarse clock (a `Send`
/// cell: the connection's future is spawned).
struct Progress {
    nanos: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        let progress = Progress {
            nanos: AtomicU64::new(0),
        };
        progress.mark();
        progress
    }

    fn mark(&self) {
        let nanos = u64::try_from(clock::now().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// The watchdog fired: whether `deadline` (on the coarse clock) passed; if not,
/// it is re-armed for the deadline or the next tick, whichever comes first.
fn expired(sleep: Pin<&mut Sleep>, deadline: Duration, tick: Duration) -> bool {
    let now = clock::now();
    if now >= deadline {
        return true;
    }
    sleep.reset(Instant::now() + (deadline - now).min(tick));
    false
}

/// Parses a request head at the front of `buf`, consuming it when it is one this
/// path serves.
fn parse(buf: &mut BytesMut) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Fallback,
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if !path.starts_with('/') || method == "CONNECT" || method == "PRI" {
        return Parsed::Fallback;
    }
    if len >= MAX_HEAD {
        return Parsed::Fallback;
    }
    let http10 = version == 0;
    let base = buf.as_ptr() as usize;
    // Offsets fit in u16: a head this path takes is under MAX_HEAD bytes.
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u16;
    let span = |s: &[u8]| (offset(s), offset(s) + s.len() as u16);
    let path_span = span(path.as_bytes());
    let method_span = span(method.as_bytes());
    let mut lines = [(0u16, 0u16, 0u16, 0u16); MAX_HEADERS];
    let count = req.headers.len();
    let mut close = http10;
    let mut host = None;
    let mut hosts = 0;
    for (i, (h, line)) in req.headers.iter().zip(lines.iter_mut()).enumerate() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("transfer-encoding")
            || is("expect")
            || is("upgrade")
            || (is("content-length") && h.value.trim_ascii() != b"0")
        {
            return Parsed::Fallback;
        }
        if is("connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if http10 && has_token(h.value, b"keep-alive") {
                close = false;
            }
        } else if is("host") {
            hosts += 1;
            if host.is_none() {
                host = Some(i);
            }
        }
        let (n, v) = (span(name), span(h.value));
        *line = (n.0, n.1, v.0, v.1);
    }
    // A missing (HTTP/1.1) or repeated Host is answered 400 by the hyper path's check.
    if hosts > 1 || (hosts == 0 && !http10) {
        return Parsed::Fallback;
    }
    let bytes = buf.split_to(len).freeze();
    let range = usize::from(path_span.0)..usize::from(path_span.1);
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(range)) else {
        // Put the head back for hyper, which answers it properly.
        let mut restored = BytesMut::with_capacity(bytes.len() + buf.len());
        restored.extend_from_slice(&bytes);
        restored.extend_from_slice(buf);
        *buf = restored;
        return Parsed::Fallback;
    };
    Parsed::Ready(Box::new(Head {
        bytes,
        method: method_span,
        uri,
        lines,
        count,
        host,
        close,
        http10,
    }))
}

/// Writes the response; `Ok(false)` when the connection must close after it
/// (its body was delimited by closing).
async fn write_response<S>(
    io: &mut S,
    out: &mut Vec<u8>,
    response: Response<ResponseBody>,
    head_request: bool,
    http10: bool,
    close: bool,
    progress: &Progress,
) -> io::Result<bool>
where
    S: AsyncWrite + Socket + Unpin,
{
    // Writes all of `bytes` and flushes (a no-op on plain TCP; TLS holds records
    // back until flushed), then notes the progress for the send timeout.
    async fn send<S: AsyncWrite + Unpin>(
        io: &mut S,
        bytes: &[u8],
        progress: &Progress,
    ) -> io::Result<()> {
        io.write_all(bytes).await?;
        io.flush().await?;
        progress.mark();
        Ok(())
    }

    let (parts, body) = response.into_parts();
    let status = parts.status;
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let has_length = parts.headers.contains_key(header::CONTENT_LENGTH);
    let exact = body.size_hint().exact();
    #[derive(PartialEq)]
    enum Frame {
        None,
        Raw,
        Chunked,
        UntilClose,
    }
    let framing = if no_body {
        Frame::None
    } else if has_length || exact.is_some() {
        Frame::Raw
    } else if http10 {
        Frame::UntilClose
    } else {
        Frame::Chunked
    };

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !parts.headers.contains_key(header::DATE) {
        crate::date::with(|date| put_header(out, b"date", date));
    }
    if !has_length && !no_body {
        if let Some(n) = exact {
            put_header(
                out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
    } else if !has_length && head_request {
        if let Some(n) = exact.filter(|n| *n > 0) {
            put_header(
                out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
    }
    match framing {
        Frame::Chunked => put_header(out, b"transfer-encoding", b"chunked"),
        _ if close || framing == Frame::UntilClose => put_header(out, b"connection", b"close"),
        _ if http10 => put_header(out, b"connection", b"keep-alive"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");

    // A static file on plain TCP goes from the page cache to the socket with sendfile(2),
    // never through user space (nginx's `sendfile on`); a small one goes with the head.
    let mut body = body;
    let coalesce = framing == Frame::Raw && exact.is_some_and(|n| n as usize <= COALESCE);
    let file = if framing == Frame::Raw && !coalesce && io.tcp().is_some() {
        body.take_file()
    } else {
        None
    };
    // A larger body held in memory (a static file from the index) goes out with the head in
    // one vectored write.
    let whole = if framing == Frame::Raw && !coalesce {
        body.take_full()
    } else {
        None
    };
    let mut body = pin!(body);
    if framing == Frame::None {
        send(io, out, progress).await?;
        return Ok(true);
    }
    // A small body of known length goes out with the head.
    if coalesce {
        while let Some(frame) = next_frame(body.as_mut()).await {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        send(io, out, progress).await?;
        return Ok(true);
    }
    if let Some(data) = whole {
        send_two(io, out, &data, progress).await?;
        return Ok(true);
    }
    if let Some(file) = file {
        if let Some(tcp) = io.tcp() {
            send_head_more(tcp, out, progress).await?;
            send_file(tcp, file, progress).await?;
        }
        return Ok(true);
    }
    send(io, out, progress).await?;
    while let Some(frame) = next_frame(body.as_mut()).await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if framing == Frame::Chunked {
            out.clear();
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            if data.len() <= COALESCE {
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                send(io, out, progress).await?;
            } else {
                io.write_all(out).await?;
                send(io, &data, progress).await?;
                send(io, b"\r\n", progress).await?;
            }
        } else {
            send(io, &data, progress).await?;
        }
    }
    match framing {
        Frame::Chunked => send(io, b"0\r\n\r\n", progress).await?,
        Frame::UntilClose => return Ok(false),
        _ => {}
    }
    Ok(true)
}

/// Writes `head`, then `data`, in one vectored write as far as the stream takes both, and
/// flushes; the progress is noted for the send timeout.
async fn send_two<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: &[u8],
    data: &[u8],
    progress: &Progress,
) -> io::Result<()> {
    let n = io
        .write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(data)])
        .await?;
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    progress.mark();
    if n < head.len() {
        io.write_all(&head[n..]).await?;
        io.write_all(data).await?;
    } else {
        io.write_all(&data[n - head.len()..]).await?;
    }
    io.flush().await?;
    progress.mark();
    Ok(())
}

/// Writes a response head that a file follows with `MSG_MORE` (Linux's per-call TCP_CORK, what
/// nginx's `tcp_nopush` does with a cork): the kernel holds it and the first `sendfile(2)`
/// bytes go out with it in full segments, instead of the head as a packet of its own (the
/// socket has TCP_NODELAY), which the client must wake up for.
async fn send_head_more(
    tcp: &tokio::net::TcpStream,
    mut head: &[u8],
    progress: &Progress,
) -> io::Result<()> {
    while !head.is_empty() {
        let n = tcp
            .async_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(tcp).send_with_flags(head, nix::libc::MSG_MORE)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        head = &head[n..];
    }
    progress.mark();
    Ok(())
}

/// Sends a file range to `tcp` with sendfile(2) at its offset (the descriptor's own position
/// is neither used nor moved: the index shares it), waiting for the socket to take more as a
/// write does (its progress noted for the send timeout). The last call carries no "more"
/// flag, so it pushes out whatever the head left corked.
async fn send_file(
    tcp: &tokio::net::TcpStream,
    mut file: crate::body::FileSlice,
    progress: &Progress,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    while file.len > 0 {
        let count = file.len.min(SENDFILE_CHUNK) as usize;
        let mut offset = i64::try_from(file.offset).map_err(io::Error::other)?;
        let sent = tcp
            .async_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(
                    tcp.as_fd(),
                    file.file.as_fd(),
                    Some(&mut offset),
                    count,
                )
                .map_err(io::Error::from)
            })
            .await?;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "static file shrank while being served",
            ));
        }
        file.offset += sent as u64;
        file.len -= sent as u64;
        progress.mark();
    }
    Ok(())
}

/// The next body frame; a body error becomes an I/O error (the connection is
/// then closed, so the client sees an incomplete response).
async fn next_frame(
    mut body: Pin<&mut ResponseBody>,
) -> Option<io::Result<http_body::Frame<Bytes>>> {
    poll_fn(|cx| body.as_mut().poll_frame(cx))
        .await
        .map(|r| r.map_err(io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(raw: &str) -> (Parsed, usize) {
        let mut buf = BytesMut::from(raw.as_bytes());
        let parsed = parse(&mut buf);
        (parsed, buf.len())
    }

    #[test]
    fn simple_requests_are_served_here() {
        let (parsed, left) =
            parse_str("GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next");
        let Parsed::Ready(head) = parsed else {
            panic!("not ready")
        };
        assert_eq!(left, "GET /next".len(), "the next request stays buffered");
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.uri, "/a?b=c");
        assert_eq!(
            head.host.map(|i| head.line(i)),
            Some((&b"Host"[..], &b"x"[..]))
        );
        let lines: Vec<_> = head.lines().collect();
        assert_eq!(
            lines,
            [
                (&b"Host"[..], &b"x"[..]),
                (&b"X-A"[..], &b"1"[..]),
                (&b"x-a"[..], &b"2"[..])
            ]
        );
        assert!(!head.close && !head.http10);
    }

    #[test]
    fn keep_alive_rules() {
        let close = |raw: &str| match parse_str(raw).0 {
            Parsed::Ready(head) => head.close,
            _ => panic!("not ready: {raw}"),
        };
        assert!(close(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(close("GET / HTTP/1.0\r\n\r\n"));
        assert!(!close("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!close(
            "DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "NOT A REQUEST\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let (parsed, left) = parse_str(raw);
            assert!(matches!(parsed, Parsed::Fallback), "{raw:?} served here");
            assert_eq!(left, raw.len(), "{raw:?}: bytes consumed");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        assert!(matches!(
            parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")).0,
            Parsed::Fallback
        ));
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nHost: x\r\n").0,
            Parsed::Partial
        ));
    }
}
