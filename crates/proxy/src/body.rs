//! Streaming bodies. [`RequestBody`] passes the client's body to the upstream
//! frame by frame and fails once it grows past the size limit or the client sends
//! nothing of it for the body timeout (a slow-body client cannot hold a backend); [`ResponseBody`]
//! passes the upstream's body to the client and holds the request's backend
//! guard (and pooled connection) until the body is finished or dropped.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1::DirectBody;
use crate::pool::Pooled;
use crate::server::RequestGuard;

/// Boxed error type of both bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past `max_request_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client sent no byte of its request body for this long.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for {0:?}")]
pub struct BodyTimeout(pub std::time::Duration);

/// Reading the client's request body failed (the client went away or sent garbage).
#[derive(Debug, thiserror::Error)]
#[error("reading the request body from the client failed: {0}")]
pub struct DownstreamBodyError(#[source] pub hyper::Error);

/// The body forwarded upstream: the client's body with a size limit (nothing once it failed).
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    seen: u64,
    limit: u64,
    /// The longest wait for the next piece of the body.
    idle: std::time::Duration,
    /// Armed while waiting for the client (one timer per request with a body).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, idle: std::time::Duration) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            seen: 0,
            limit,
            idle,
            deadline: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline = None;
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                Poll::Ready(Some(Err(Box::new(DownstreamBodyError(e)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if deadline.as_mut().poll(cx).is_ready() {
                    this.inner = None;
                    this.deadline = None;
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout(idle)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// A range of a static file on disk, read by offset (`pread(2)`, or `sendfile(2)` with an
/// offset), never through the descriptor's own position: one descriptor kept open by the static
/// index serves any number of responses at once (nginx's `open_file_cache`).
pub(crate) struct FileSlice {
    pub(crate) file: Arc<std::fs::File>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// The body sent to the client.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Returned to the pool once the body ended cleanly.
        conn: Option<Pooled>,
        _guard: RequestGuard,
    },
    /// Another body (a compressed one, `compress.rs`).
    Boxed(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>),
    /// A static file read from disk (`static_files.rs`).
    File(FileSlice),
    /// A static file held in memory whose descriptor the index also keeps: plain TCP sends it
    /// from the page cache with `sendfile(2)` ([`ResponseBody::take_file`]), anything else
    /// (TLS, HTTP/2, compression) gets the bytes.
    Indexed {
        data: Option<Bytes>,
        file: FileSlice,
    },
    /// Read straight from the upstream socket (`h1.rs`).
    Direct {
        body: DirectBody,
        _guard: RequestGuard,
    },
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(None),
        }
    }

    pub(crate) fn boxed(
        body: impl Body<Data = Bytes, Error = BoxError> + Send + 'static,
    ) -> ResponseBody {
        ResponseBody {
            kind: Kind::Boxed(Box::pin(body)),
        }
    }

    pub(crate) fn file(file: FileSlice) -> ResponseBody {
        ResponseBody {
            kind: Kind::File(file),
        }
    }

    /// `data`, which is `file`'s bytes, held in memory.
    pub(crate) fn indexed(data: Bytes, file: FileSlice) -> ResponseBody {
        ResponseBody {
            kind: Kind::Indexed {
                data: Some(data),
                file,
            },
        }
    }

    /// The file range of a static file body, for `sendfile(2)`; the body is then empty.
    /// `None` (and the body unchanged) for any other.
    pub(crate) fn take_file(&mut self) -> Option<FileSlice> {
        if !matches!(self.kind, Kind::File(_) | Kind::Indexed { .. }) {
            return None;
        }
        match std::mem::replace(&mut self.kind, Kind::Full(None)) {
            Kind::File(file) | Kind::Indexed { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The bytes of a body held whole in memory; the body is then empty. `None` (and the
    /// body unchanged) for any other.
    pub(crate) fn take_full(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            Kind::Full(bytes) | Kind::Indexed { data: bytes, .. } => bytes.take(),
            _ => None,
        }
    }

    pub(crate) fn upstream(
        body: Incoming,
        conn: Option<Pooled>,
        guard: RequestGuard,
    ) -> ResponseBody {
        let mut out = ResponseBody {
            kind: Kind::Upstream {
                body,
                conn,
                _guard: guard,
            },
        };
        out.check_end();
        out
    }

    pub(crate) fn direct(body: DirectBody, guard: RequestGuard) -> ResponseBody {
        ResponseBody {
            kind: Kind::Direct {
                body,
                _guard: guard,
            },
        }
    }

    /// Once the upstream body is complete, the connection can serve another request.
    fn check_end(&mut self) {
        if let Kind::Upstream { body, conn, .. } = &mut self.kind {
            if body.is_end_stream() {
                if let Some(conn) = conn.take() {
                    conn.release();
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { body, conn, .. } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.check_end();
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    conn.take();
                    Poll::Ready(Some(Err(Box::new(e))))
                }
                Poll::Ready(None) => {
                    if let Some(conn) = conn.take() {
                        conn.release();
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::Boxed(body) => body.as_mut().poll_frame(cx),
            Kind::Indexed { data, .. } => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            Kind::File(file) => {
                if file.len == 0 {
                    return Poll::Ready(None);
                }
                match crate::static_files::read_chunk(file) {
                    Ok(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    Err(e) => {
                        file.len = 0;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                }
            }
            Kind::Direct { body, .. } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::File(file) => file.len == 0,
            Kind::Indexed { data, .. } => data.is_none(),
            Kind::Boxed(body) => body.is_end_stream(),
            Kind::Direct { body, .. } => body.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::File(file) => SizeHint::with_exact(file.len),
            Kind::Indexed { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Boxed(body) => body.size_hint(),
            Kind::Direct { body, .. } => body.hint(),
        }
    }
}
