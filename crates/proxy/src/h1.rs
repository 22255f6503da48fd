//! The upstream side for requests without a body: a small HTTP/1.1 client that
//! runs inside the request's own task. It writes the request head, parses the
//! response head with `httparse` and streams the response body straight from the
//! upstream socket into the client connection ([`DirectBody`]), so a proxied
//! request costs one task and no channels. Requests with a body, and upgrades,
//! take hyper's client (`forward::send`), which streams request bodies.
//!
//! Framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; chunked
//! when it is the final transfer coding; else `Content-Length`; else until the
//! upstream closes. A connection goes back to the worker's pool only after a
//! response that was framed, complete and not followed by stray bytes, and that
//! did not ask to close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ErrorKind, ProxyError};
use crate::headers::{has_token, put_header, ADDED_RESPONSE_HEADERS};

/// Largest response head accepted from an upstream (hyper's default is 400 KiB
/// of buffer; nginx's `proxy_buffer_size` is 4–8 KiB). Larger heads are a 502.
const MAX_HEAD: usize = 64 * 1024;
/// Response headers accepted (hyper's default).
const MAX_HEADERS: usize = 100;
/// Read buffer reserved before each read; sized for a typical response head and
/// a small body in one `read`.
const READ_CHUNK: usize = 4 * 1024;
/// Reads of a large body use bigger chunks.
const BODY_CHUNK: usize = 16 * 1024;
/// Trailer bytes skipped after the last chunk before the response is rejected.
const MAX_TRAILERS: usize = 16 * 1024;

/// One keep-alive TCP connection to an upstream instance.
pub(crate) struct Conn {
    pub(crate) backend_id: u64,
    stream: TcpStream,
    buf: BytesMut,
    wbuf: Vec<u8>,
}

/// Why a request on a connection failed before any response byte arrived (the
/// request can be replayed on a new connection), or after (it cannot).
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing was read back: the connection was closed or reset, typically a
    /// keep-alive connection the upstream closed while it sat in the pool.
    Closed(io::Error),
    /// The upstream answered with something that is not a valid HTTP/1.1
    /// response, or closed in the middle of one.
    Protocol(&'static str),
}

impl SendError {
    pub(crate) fn into_proxy_error(self, addr: SocketAddr) -> ProxyError {
        match self {
            SendError::Closed(_) => ProxyError::upstream(
                ErrorKind::UpstreamProtocol,
                addr,
                "closed the connection before responding",
            ),
            SendError::Protocol(what) => {
                ProxyError::upstream(ErrorKind::UpstreamProtocol, addr, what)
            }
        }
    }
}

impl Conn {
    pub(crate) fn new(backend_id: u64, stream: TcpStream) -> Conn {
        Conn {
            backend_id,
            stream,
            buf: BytesMut::new(),
            wbuf: Vec::new(),
        }
    }

    /// Sends a request without a body, written by `encode` (see
    /// [`encode_head`]), and reads the response head. Informational (1xx)
    /// responses are skipped. The returned body streams the rest.
    pub(crate) async fn send(
        mut self,
        encode: impl Fn(&mut Vec<u8>),
        head_request: bool,
    ) -> Result<(Response<()>, Framing, Conn), SendError> {
        self.wbuf.clear();
        encode(&mut self.wbuf);
        if let Err(e) = self.stream.write_all(&self.wbuf).await {
            return Err(SendError::Closed(e));
        }
        let mut read_any = false;
        loop {
            let (response, close) = self.read_head(&mut read_any).await?;
            let status = response.status();
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(SendError::Protocol(
                        "switched protocols for a request that did not ask to",
                    ));
                }
                continue;
            }
            let framing = Framing::of(&response, head_request, close)?;
            let mut response = response;
            if response.headers().contains_key(header::TRANSFER_ENCODING) {
                // The body is decoded here; its length is not the one declared.
                response.headers_mut().remove(header::CONTENT_LENGTH);
            }
            return Ok((response, framing, self));
        }
    }

    /// Reads until one complete response head is buffered and parses it; returns
    /// it with whether the upstream asked to close the connection afterwards.
    async fn read_head(&mut self, read_any: &mut bool) -> Result<(Response<()>, bool), SendError> {
        loop {
            if !self.buf.is_empty() {
                if let Some(parsed) = parse_head(&mut self.buf)? {
                    return Ok(parsed);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(SendError::Protocol(
                        "sent a response head that is too large",
                    ));
                }
            }
            self.buf.reserve(READ_CHUNK);
            // Through `AsyncRead` rather than `readable()` + `try_read_buf`: tokio's
            // `poll_read` takes a short read as "drained" and clears the readiness, so the
            // next response is awaited without first trying a read that fails with EAGAIN
            // (one wasted syscall per request, seen with strace).
            let read = self.stream.read_buf(&mut self.buf).await;
            match read {
                Ok(0) | Err(_) if !*read_any => {
                    let e = read
                        .err()
                        .unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into());
                    return Err(SendError::Closed(e));
                }
                Ok(0) | Err(_) => {
                    return Err(SendError::Protocol(
                        "closed the connection in the middle of the response head",
                    ))
                }
                Ok(_) => *read_any = true,
            }
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.buf.reserve(want);
        // `read_buf`'s future holds only the two borrows, so polling a fresh one each time
        // is the same as keeping it; see `read_head` for why not `try_read_buf`.
        let read = self.stream.read_buf(&mut self.buf);
        std::pin::pin!(read).poll(cx)
    }
}

/// Writes `METHOD path HTTP/1.1`, the headers and the blank line.
pub(crate) fn encode_head<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(pq.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses one response head from the front of `buf`, removing it; `None` when
/// the head is not complete yet. Header values share the head's bytes.
fn parse_head(buf: &mut BytesMut) -> Result<Option<(Response<()>, bool)>, SendError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(SendError::Protocol("sent more than 100 response headers"))
        }
        Err(_) => return Err(SendError::Protocol("sent an invalid response")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| SendError::Protocol("sent an invalid response status"))?;
    let http10 = parsed.version == Some(0);
    let base = buf.as_ptr() as usize;
    // (name start, name end, value start, value end), as in `h1server::parse`.
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = parsed.headers.len();
    for (h, span) in parsed.headers.iter().zip(spans.iter_mut()) {
        let (n, v) = (
            h.name.as_ptr() as usize - base,
            h.value.as_ptr() as usize - base,
        );
        *span = (n, n + h.name.len(), v, v + h.value.len());
    }
    let head = buf.split_to(len).freeze();
    let mut map = HeaderMap::with_capacity(count + ADDED_RESPONSE_HEADERS);
    let mut close = http10;
    for &(name_start, name_end, start, end) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name_start..name_end])
            .map_err(|_| SendError::Protocol("sent an invalid response header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| SendError::Protocol("sent an invalid response header value"))?;
        if name == header::CONNECTION {
            if has_token(value.as_bytes(), b"close") {
                close = true;
            } else if http10 && has_token(value.as_bytes(), b"keep-alive") {
                close = false;
            }
        }
        map.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = map;
    Ok(Some((response, close)))
}

/// How the response body is delimited, and whether the connection can be reused
/// once it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body follows the head.
    Empty { reuse: bool },
    /// Exactly this many more bytes.
    Length { remaining: u64, reuse: bool },
    /// Chunked transfer coding.
    Chunked { state: Chunk, reuse: bool },
    /// Until the upstream closes the connection.
    Eof,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (skipped so far).
    Trailers(usize),
}

impl Framing {
    fn of(response: &Response<()>, head_request: bool, close: bool) -> Result<Framing, SendError> {
        let status = response.status();
        let reuse = !close;
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok(Framing::Empty { reuse });
        }
        let headers = response.headers();
        let mut te = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
        if te.peek().is_some() {
            let chunked_last = te.last().is_some_and(|v| {
                v.as_bytes()
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            });
            if !chunked_last {
                return Ok(Framing::Eof);
            }
            // Transfer-Encoding overrides Content-Length; a response with both
            // is suspicious, so do not reuse the connection after it.
            let reuse = reuse && !headers.contains_key(header::CONTENT_LENGTH);
            return Ok(Framing::Chunked {
                state: Chunk::Size,
                reuse,
            });
        }
        let mut length: Option<u64> = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            for part in v.as_bytes().split(|b| *b == b',') {
                let n = std::str::from_utf8(part.trim_ascii())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(SendError::Protocol("sent an invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(SendError::Protocol(
                        "sent conflicting Content-Length values",
                    ));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(0) => Framing::Empty { reuse },
            Some(n) => Framing::Length {
                remaining: n,
                reuse,
            },
            None => Framing::Eof,
        })
    }
}

/// The response body read from an upstream [`Conn`] as the client connection
/// polls for it; gives the connection back to the pool once complete.
pub(crate) struct DirectBody {
    conn: Option<Conn>,
    framing: Framing,
    /// A body that was complete in the head's read, sent as one frame.
    ready: Option<Bytes>,
}

impl DirectBody {
    /// Takes over `conn` after the head; a body already complete in the buffer
    /// is taken at once and the connection released without waiting for the
    /// client to read it.
    pub(crate) fn new(mut conn: Conn, mut framing: Framing) -> DirectBody {
        let mut ready = None;
        if let Framing::Length { remaining, reuse } = framing {
            if conn.buf.len() as u64 >= remaining {
                ready = Some(conn.buf.split_to(remaining as usize).freeze());
                framing = Framing::Empty { reuse };
            }
        }
        let mut body = DirectBody {
            conn: Some(conn),
            framing,
            ready,
        };
        if let Framing::Empty { reuse } = body.framing {
            body.finish(reuse);
        }
        body
    }

    /// The body is complete: reuse the connection if allowed and nothing stray
    /// followed the response.
    fn finish(&mut self, reuse: bool) {
        self.framing = Framing::Empty { reuse: false };
        if let Some(conn) = self.conn.take() {
            if reuse && conn.buf.is_empty() {
                crate::pool::release_direct(conn);
            }
        }
    }

    /// The remaining body bytes, when known.
    fn remaining(&self) -> Option<u64> {
        let ready = self.ready.as_ref().map_or(0, |b| b.len() as u64);
        match self.framing {
            Framing::Empty { .. } => Some(ready),
            Framing::Length { remaining, .. } => Some(ready + remaining),
            _ => None,
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        if let Some(bytes) = self.ready.take() {
            return Poll::Ready(Some(Ok(bytes)));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing {
                Framing::Empty { .. } => return Poll::Ready(None),
                Framing::Length { remaining, reuse } => {
                    if conn.buf.is_empty() {
                        let want = BODY_CHUNK.min(remaining as usize).max(READ_CHUNK);
                        match ready!(conn.poll_fill(cx, want)) {
                            Ok(0) => return Poll::Ready(Some(Err(BodyError::Truncated))),
                            Ok(_) => {}
                            Err(e) => return Poll::Ready(Some(Err(BodyError::Io(e)))),
                        }
                    }
                    let n = (conn.buf.len() as u64).min(remaining);
                    let bytes = conn.buf.split_to(n as usize).freeze();
                    let remaining = remaining - n;
                    if remaining == 0 {
                        self.finish(reuse);
                    } else {
                        self.framing = Framing::Length { remaining, reuse };
                    }
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Framing::Eof => {
                    if conn.buf.is_empty() {
                        match ready!(conn.poll_fill(cx, BODY_CHUNK)) {
                            Ok(0) => {
                                self.finish(false);
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(e) => return Poll::Ready(Some(Err(BodyError::Io(e)))),
                        }
                    }
                    let bytes = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Framing::Chunked { state, reuse } => match chunk_step(&mut conn.buf, state) {
                    Err(e) => return Poll::Ready(Some(Err(e))),
                    Ok(Step::Data(bytes, next)) => {
                        self.framing = Framing::Chunked { state: next, reuse };
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                    Ok(Step::Next(next)) => {
                        self.framing = Framing::Chunked { state: next, reuse };
                    }
                    Ok(Step::Done) => {
                        self.finish(reuse);
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => match ready!(conn.poll_fill(cx, READ_CHUNK)) {
                        Ok(0) => return Poll::Ready(Some(Err(BodyError::Truncated))),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(BodyError::Io(e)))),
                    },
                },
            }
        }
    }
}

enum Step {
    Data(Bytes, Chunk),
    Next(Chunk),
    NeedMore,
    Done,
}

/// One step of the chunked decoder over what is buffered.
fn chunk_step(buf: &mut BytesMut, state: Chunk) -> Result<Step, BodyError> {
    match state {
        Chunk::Size => match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, size))) => {
                buf.advance(used);
                Ok(Step::Next(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() > 1024 => Err(BodyError::Chunked),
            Ok(httparse::Status::Partial) => Ok(Step::NeedMore),
            Err(_) => Err(BodyError::Chunked),
        },
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = (buf.len() as u64).min(left);
            let bytes = buf.split_to(n as usize).freeze();
            let left = left - n;
            Ok(Step::Data(
                bytes,
                if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                },
            ))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::NeedMore);
            }
            if &buf[..2] != b"\r\n" {
                return Err(BodyError::Chunked);
            }
            buf.advance(2);
            Ok(Step::Next(Chunk::Size))
        }
        Chunk::Trailers(seen) => {
            let Some(at) = buf.windows(2).position(|w| w == b"\r\n") else {
                if seen + buf.len() > MAX_TRAILERS {
                    return Err(BodyError::Chunked);
                }
                return Ok(Step::NeedMore);
            };
            buf.advance(at + 2);
            if at == 0 {
                Ok(Step::Done)
            } else if seen + at > MAX_TRAILERS {
                Err(BodyError::Chunked)
            } else {
                Ok(Step::Next(Chunk::Trailers(seen + at + 2)))
            }
        }
    }
}

/// A response body from the upstream ended badly; the client connection is
/// aborted (the response head was already sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("upstream closed the connection before the response body was complete")]
    Truncated,
    #[error("upstream sent an invalid chunked body")]
    Chunked,
    #[error("reading the response body from the upstream failed: {0}")]
    Io(io::Error),
}

impl DirectBody {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.poll_data(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    pub(crate) fn is_end(&self) -> bool {
        self.ready.is_none() && matches!(self.framing, Framing::Empty { .. })
    }

    pub(crate) fn hint(&self) -> SizeHint {
        match self.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Response<()>, bool)>, SendError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf)
    }

    fn framing(raw: &str, head_request: bool) -> Framing {
        let (response, close) = head(raw).expect("valid").expect("complete head");
        Framing::of(&response, head_request, close).expect("valid framing")
    }

    #[test]
    fn parses_a_head_and_leaves_the_body() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nok"[..],
        );
        let (response, close) = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(response.status(), 201);
        assert!(!close);
        let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn partial_and_invalid_heads() {
        assert!(matches!(head("HTTP/1.1 200 OK\r\nContent-"), Ok(None)));
        assert!(matches!(
            head("HTTTP/1.1 200 OK\r\n\r\n"),
            Err(SendError::Protocol(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 99 Odd\r\n\r\n"),
            Err(SendError::Protocol(_))
        ));
        let many: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(matches!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Err(SendError::Protocol(m)) if m.contains("100")
        ));
    }

    #[test]
    fn connection_close_and_http10_keep_alive() {
        let (_, close) = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(close);
        let (_, close) = head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(close);
        let (_, close) = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close);
    }

    #[test]
    fn framing_rules() {
        let len = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            framing(len, false),
            Framing::Length {
                remaining: 5,
                reuse: true
            }
        );
        assert_eq!(framing(len, true), Framing::Empty { reuse: true });
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Framing::Empty { reuse: true }
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            Framing::Empty { reuse: true }
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", false), Framing::Eof);
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Framing::Chunked {
                state: Chunk::Size,
                reuse: true
            }
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false
            ),
            Framing::Chunked {
                state: Chunk::Size,
                reuse: false
            }
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Framing::Eof
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n", false),
            Framing::Length {
                remaining: 4,
                reuse: true
            }
        );
        for bad in ["4, 5", "-1", "", "0x10", "+3"] {
            let (response, close) =
                head(&format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n"))
                    .unwrap()
                    .unwrap();
            assert!(
                matches!(
                    Framing::of(&response, false, close),
                    Err(SendError::Protocol(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    /// Feeds `input` to the chunked decoder split at every position, so each
    /// state sees partial input, and returns the decoded body.
    fn dechunk(input: &[u8], split: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut state = Chunk::Size;
        let mut fed = 0;
        let feed = |buf: &mut BytesMut, fed: &mut usize| {
            let end = if *fed < split { split } else { input.len() };
            buf.extend_from_slice(&input[*fed..end]);
            *fed = end;
        };
        feed(&mut buf, &mut fed);
        loop {
            match chunk_step(&mut buf, state)? {
                Step::Data(bytes, next) => {
                    out.extend_from_slice(&bytes);
                    state = next;
                }
                Step::Next(next) => state = next,
                Step::NeedMore => {
                    if fed == input.len() {
                        return Err(BodyError::Truncated);
                    }
                    feed(&mut buf, &mut fed);
                }
                Step::Done => return Ok((out, buf.len() + input.len() - fed)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_at_every_split() {
        let input = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        for split in 0..input.len() {
            let (body, left) = dechunk(input, split).expect("decodes");
            assert_eq!(body, b"hello world!", "split at {split}");
            assert_eq!(
                left, 4,
                "bytes after the body are left alone (split at {split})"
            );
        }
    }

    #[test]
    fn bad_chunked_bodies() {
        assert!(matches!(dechunk(b"zz\r\n", 0), Err(BodyError::Chunked)));
        assert!(matches!(
            dechunk(b"2\r\nabX\r\n", 0),
            Err(BodyError::Chunked)
        ));
        assert!(matches!(dechunk(b"5\r\nab", 0), Err(BodyError::Truncated)));
    }
}
