//! The request loop's HTTP/1.1 client: a request encoded once per endpoint is
//! written as bytes, the answer's head parsed with `httparse` (only the status and
//! the framing headers are looked at) and its body counted, not kept. One buffer
//! per connection and nothing else per request, so the load generator costs the
//! target machine as little as wrk does. Framing follows RFC 9112 §6.3: no body
//! for `HEAD`, 1xx, 204 and 304; chunked; `Content-Length`; else until close.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::Stream;

const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// A request as the bytes sent for it.
#[derive(Clone)]
pub struct Encoded {
    bytes: Bytes,
    head: bool,
}

impl Encoded {
    pub fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Encoded {
        let mut out = Vec::with_capacity(128 + body.len());
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        out.extend_from_slice(pq.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let needs_length =
            !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        if needs_length && !headers.contains_key(http::header::CONTENT_LENGTH) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Encoded {
            bytes: out.into(),
            head: *method == Method::HEAD,
        }
    }
}

/// How an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Nothing came back: the connection was closed or reset before any byte of
    /// an answer (a kept-alive connection the server closed may be retried).
    #[error("the server closed the connection before answering: {0}")]
    Closed(#[source] io::Error),
    /// Reading or writing failed in the middle of an answer.
    #[error("the connection failed in the middle of an answer: {0}")]
    Io(#[source] io::Error),
    /// The answer is not valid HTTP/1.1.
    #[error("{0}")]
    Protocol(&'static str),
}

impl WireError {
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            WireError::Closed(e) | WireError::Io(e) => Some(e),
            WireError::Protocol(_) => None,
        }
    }
}

/// One keep-alive connection.
pub struct Wire {
    stream: Stream,
    buf: BytesMut,
    open: bool,
}

impl Wire {
    pub fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            buf: BytesMut::new(),
            open: true,
        }
    }

    /// Whether another request may be sent on it.
    pub fn reusable(&self) -> bool {
        self.open
    }

    /// Sends `req` and reads the whole answer: (status, body bytes).
    pub async fn exchange(&mut self, req: &Encoded) -> Result<(u16, u64), WireError> {
        self.open = false; // until an answer completes cleanly
        if let Err(e) = self.stream.write_all(&req.bytes).await {
            return Err(WireError::Closed(e));
        }
        if let Err(e) = self.stream.flush().await {
            return Err(WireError::Closed(e));
        }
        let mut read_any = false;
        let (status, framing) = loop {
            let (status, framing) = self.read_head(&mut read_any, req.head).await?;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(WireError::Protocol("the server switched protocols"));
                }
                continue;
            }
            break (status, framing);
        };
        let body = self.read_body(framing).await?;
        Ok((status, body))
    }

    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.buf).await
    }

    async fn read_head(
        &mut self,
        read_any: &mut bool,
        head_request: bool,
    ) -> Result<(u16, Framing), WireError> {
        loop {
            if !self.buf.is_empty() {
                if let Some(parsed) = parse_head(&mut self.buf, head_request)? {
                    return Ok(parsed);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(WireError::Protocol(
                        "the answer's head is larger than 64 KiB",
                    ));
                }
            }
            match self.fill().await {
                Ok(0) if !*read_any => {
                    return Err(WireError::Closed(io::ErrorKind::UnexpectedEof.into()))
                }
                Err(e) if !*read_any => return Err(WireError::Closed(e)),
                Ok(0) => return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into())),
                Err(e) => return Err(WireError::Io(e)),
                Ok(_) => *read_any = true,
            }
        }
    }

    async fn read_body(&mut self, framing: Framing) -> Result<u64, WireError> {
        let eof = || WireError::Io(io::ErrorKind::UnexpectedEof.into());
        match framing {
            Framing::Empty { keep } => {
                self.open = keep;
                Ok(0)
            }
            Framing::Length { len, keep } => {
                let mut left = len;
                loop {
                    let n = (self.buf.len() as u64).min(left);
                    self.buf.advance(n as usize);
                    left -= n;
                    if left == 0 {
                        break;
                    }
                    if self.fill().await.map_err(WireError::Io)? == 0 {
                        return Err(eof());
                    }
                }
                self.open = keep && self.buf.is_empty();
                Ok(len)
            }
            Framing::UntilClose => {
                let mut total = self.buf.len() as u64;
                self.buf.clear();
                loop {
                    let n = self.fill().await.map_err(WireError::Io)?;
                    if n == 0 {
                        return Ok(total);
                    }
                    total += n as u64;
                    self.buf.clear();
                }
            }
            Framing::Chunked { keep } => {
                let mut total = 0u64;
                loop {
                    // chunk-size line
                    let size = loop {
                        match httparse::parse_chunk_size(&self.buf) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                self.buf.advance(used);
                                break size;
                            }
                            Ok(httparse::Status::Partial) if self.buf.len() < 1024 => {
                                if self.fill().await.map_err(WireError::Io)? == 0 {
                                    return Err(eof());
                                }
                            }
                            _ => return Err(WireError::Protocol("invalid chunked body")),
                        }
                    };
                    if size == 0 {
                        break;
                    }
                    let mut left = size;
                    while left > 0 {
                        if self.buf.is_empty() && self.fill().await.map_err(WireError::Io)? == 0 {
                            return Err(eof());
                        }
                        let n = (self.buf.len() as u64).min(left);
                        self.buf.advance(n as usize);
                        left -= n;
                    }
                    total += size;
                    self.expect_crlf().await?;
                }
                // Trailers, up to the empty line.
                loop {
                    match self.buf.windows(2).position(|w| w == b"\r\n") {
                        Some(at) => {
                            self.buf.advance(at + 2);
                            if at == 0 {
                                break;
                            }
                        }
                        None if self.buf.len() > MAX_HEAD => {
                            return Err(WireError::Protocol("trailers larger than 64 KiB"))
                        }
                        None => {
                            if self.fill().await.map_err(WireError::Io)? == 0 {
                                return Err(eof());
                            }
                        }
                    }
                }
                self.open = keep && self.buf.is_empty();
                Ok(total)
            }
        }
    }

    async fn expect_crlf(&mut self) -> Result<(), WireError> {
        while self.buf.len() < 2 {
            if self.fill().await.map_err(WireError::Io)? == 0 {
                return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        if &self.buf[..2] != b"\r\n" {
            return Err(WireError::Protocol("invalid chunked body"));
        }
        self.buf.advance(2);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty { keep: bool },
    Length { len: u64, keep: bool },
    Chunked { keep: bool },
    UntilClose,
}

/// Parses an answer's head from the front of `buf` (removing it): the status and
/// how its body is framed; `None` while incomplete.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<(u16, Framing)>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WireError::Protocol("the answer is not valid HTTP/1.1")),
    };
    let status = resp.code.unwrap_or(0);
    if status < 100 {
        // httparse takes any three digits; 000-099 are no HTTP status.
        return Err(WireError::Protocol("the answer's status code is below 100"));
    }
    let mut keep = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coding = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(WireError::Protocol("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Protocol("conflicting Content-Length values"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_coding = true;
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    keep = true;
                }
            }
        }
    }
    buf.advance(len);
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty { keep }
    } else if transfer_coding {
        if chunked {
            Framing::Chunked {
                keep: keep && length.is_none(),
            }
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty { keep },
            Some(len) => Framing::Length { len, keep },
            None => Framing::UntilClose,
        }
    };
    Ok(Some((status, framing)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn head(raw: &str, head_request: bool) -> (u16, Framing, usize) {
        let mut buf = BytesMut::from(raw.as_bytes());
        let (status, framing) = parse_head(&mut buf, head_request).unwrap().unwrap();
        (status, framing, buf.len())
    }

    #[test]
    fn a_status_below_100_is_no_answer() {
        // Found by the loadtest_response fuzz target (fuzz/regressions/loadtest_response).
        for raw in [
            "HTTP/1.1 000 OK\r\n\r\n",
            "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(raw);
            assert!(
                matches!(parse_head(&mut buf, false), Err(WireError::Protocol(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn framing_of_answers() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (200, Framing::Length { len: 2, keep: true }, 2)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true),
            (200, Framing::Empty { keep: true }, 0)
        );
        assert_eq!(
            head(
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                false
            )
            .1,
            Framing::Empty { keep: false }
        );
        assert_eq!(
            head(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .1,
            Framing::Chunked { keep: true }
        );
        assert_eq!(
            head("HTTP/1.0 200 OK\r\n\r\n", false).1,
            Framing::UntilClose
        );
        assert_eq!(
            head(
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false
            )
            .1,
            Framing::Length { len: 1, keep: true }
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        );
        assert!(matches!(
            parse_head(&mut buf, false),
            Err(WireError::Protocol(_))
        ));
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
        assert!(matches!(parse_head(&mut buf, false), Ok(None)));
    }

    #[test]
    fn requests_are_encoded_with_their_length() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "x".parse().unwrap());
        let uri: Uri = "/a?b".parse().unwrap();
        let get = Encoded::new(&Method::GET, &uri, &headers, b"");
        assert_eq!(&get.bytes[..], b"GET /a?b HTTP/1.1\r\nhost: x\r\n\r\n");
        let post = Encoded::new(&Method::POST, &uri, &headers, b"hi");
        assert_eq!(
            &post.bytes[..],
            b"POST /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
        );
        assert!(Encoded::new(&Method::HEAD, &uri, &headers, b"").head);
    }

    /// Reads one request head from `s`.
    async fn read_request(s: &mut tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "eof before a request");
            head.push(byte[0]);
        }
    }

    #[tokio::test]
    async fn bodies_are_counted_by_their_framing_and_reuse_follows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            s.write_all(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n3\r\n!!!\r\n0\r\nT: x\r\n\r\n")
                .await
                .unwrap();
            read_request(&mut s).await;
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
                .await
                .unwrap();
            read_request(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
                .await
                .unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut wire = Wire::new(Stream::Plain(tcp));
        let mut headers = HeaderMap::new();
        headers.insert("host", "x".parse().unwrap());
        let get = Encoded::new(&Method::GET, &"/".parse().unwrap(), &headers, b"");
        assert_eq!(wire.exchange(&get).await.unwrap(), (200, 8));
        assert!(wire.reusable());
        assert_eq!(wire.exchange(&get).await.unwrap(), (404, 4));
        assert!(wire.reusable());
        assert_eq!(wire.exchange(&get).await.unwrap(), (200, 11));
        assert!(
            !wire.reusable(),
            "a body delimited by close ends the connection"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_before_any_answer_is_retryable_and_a_cut_body_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            drop(s); // no answer at all
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
                .await
                .unwrap();
        });
        let mut headers = HeaderMap::new();
        headers.insert("host", "x".parse().unwrap());
        let get = Encoded::new(&Method::GET, &"/".parse().unwrap(), &headers, b"");
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut wire = Wire::new(Stream::Plain(tcp));
        assert!(matches!(
            wire.exchange(&get).await,
            Err(WireError::Closed(_))
        ));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut wire = Wire::new(Stream::Plain(tcp));
        assert!(matches!(wire.exchange(&get).await, Err(WireError::Io(_))));
        assert!(!wire.reusable());
    }
}
