//! Response compression: gzip, brotli or zstd, chosen from the request's `Accept-Encoding`
//! (q-values honoured; zstd, then brotli, then gzip on a tie), for text types of at least a
//! minimum size, never for a response that already has a `Content-Encoding`, a range, no
//! body, or `Cache-Control: no-transform`. Every body frame is compressed and flushed as it
//! arrives, so a streamed response (server-sent events) stays incremental.
//!
//! Two hooks: [`choose`] reads the request's header before it is forwarded, [`apply`] wraps
//! the response that comes back.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ResponseBody};
use crate::static_files::q_value;

/// Settings; `None` in the proxy config turns compression off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Responses with a known length below this are sent as they are.
    pub min_size: u64,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression { min_size: 1024 }
    }
}

/// A content coding the proxy produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The coding to use for a request with this `Accept-Encoding`, if any.
pub(crate) fn choose(accept: Option<&[u8]>) -> Option<Coding> {
    let accept = accept?;
    let mut best: Option<(u16, Coding)> = None;
    for coding in [Coding::Zstd, Coding::Brotli, Coding::Gzip] {
        let q = q_value(accept, coding.token().as_bytes());
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, coding));
        }
    }
    best.map(|(_, c)| c)
}

/// The request's coding from its header lines (the fast path).
pub(crate) fn choose_raw<'a>(lines: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Coding> {
    let mut found = None;
    for (name, value) in lines {
        if name.eq_ignore_ascii_case(b"accept-encoding") {
            found = Some(value);
            break;
        }
    }
    choose(found)
}

/// Compresses `response` with `coding` when it qualifies.
pub(crate) fn apply(
    response: Response<ResponseBody>,
    coding: Option<Coding>,
    settings: Option<Compression>,
    head_request: bool,
) -> Response<ResponseBody> {
    let (Some(coding), Some(settings)) = (coding, settings) else {
        return response;
    };
    if head_request || !qualifies(&response, settings) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    add_vary(h);
    // The representation changed: a strong validator becomes weak.
    if let Some(etag) = h.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                h.insert(header::ETAG, v);
            }
        }
    }
    let body = CompressBody {
        inner: body,
        encoder: Some(Encoder::new(coding)),
    };
    Response::from_parts(parts, ResponseBody::boxed(body))
}

fn add_vary(h: &mut http::HeaderMap) {
    let listed = h.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding") || t.trim_ascii() == b"*"
        })
    });
    if !listed {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

fn qualifies(response: &Response<ResponseBody>, settings: Compression) -> bool {
    let status = response.status();
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return false;
    }
    let h = response.headers();
    if h.contains_key(header::CONTENT_ENCODING) || h.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    if h.get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| crate::headers::has_token(v.as_bytes(), b"no-transform"))
    {
        return false;
    }
    let Some(ct) = h.get(header::CONTENT_TYPE) else {
        return false;
    };
    if !compressible_type(ct.as_bytes()) {
        return false;
    }
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    length.is_none_or(|n| n >= settings.min_size)
}

/// Text-like media types worth compressing.
pub(crate) fn compressible_type(ct: &[u8]) -> bool {
    let ct = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let lower = ct.to_ascii_lowercase();
    let lower = lower.as_slice();
    lower.starts_with(b"text/")
        || lower.ends_with(b"+json")
        || lower.ends_with(b"+xml")
        || matches!(
            lower,
            b"application/json"
                | b"application/javascript"
                | b"application/x-javascript"
                | b"application/xml"
                | b"application/wasm"
                | b"application/manifest+json"
                | b"application/graphql-response+json"
                | b"image/svg+xml"
                | b"image/x-icon"
                | b"font/ttf"
                | b"font/otf"
        )
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> Encoder {
        match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(5),
            )),
            // Quality 4, a 4 MiB window: close to gzip's speed, smaller output.
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                4,
                22,
            ))),
            Coding::Zstd => match zstd::stream::write::Encoder::new(Vec::new(), 3) {
                Ok(e) => Encoder::Zstd(e),
                Err(_) => Encoder::Gzip(flate2::write::GzEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(5),
                )),
            },
        }
    }

    /// Compresses `data` and flushes; returns what is ready to send.
    fn chunk(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
        }
    }

    fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.finish().map(Bytes::from),
            Encoder::Brotli(e) => Ok(Bytes::from(e.into_inner())),
            Encoder::Zstd(e) => e.finish().map(Bytes::from),
        }
    }
}

/// A body compressed frame by frame.
pub(crate) struct CompressBody {
    inner: ResponseBody,
    /// `None` once the stream is finished.
    encoder: Option<Encoder>,
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are dropped
                    };
                    if data.is_empty() {
                        continue;
                    }
                    match encoder.chunk(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    }
                }
                Poll::Ready(None) => {
                    let encoder = this.encoder.take().expect("checked above");
                    return match encoder.finish() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_accepted_coding_wins() {
        assert_eq!(choose(Some(b"gzip, deflate, br, zstd")), Some(Coding::Zstd));
        assert_eq!(choose(Some(b"gzip, br")), Some(Coding::Brotli));
        assert_eq!(choose(Some(b"gzip;q=1, br;q=0.5")), Some(Coding::Gzip));
        assert_eq!(choose(Some(b"identity")), None);
        assert_eq!(choose(Some(b"gzip;q=0")), None);
        assert_eq!(choose(None), None);
        assert_eq!(choose(Some(b"*")), Some(Coding::Zstd));
    }

    #[test]
    fn only_text_types_are_compressed() {
        assert!(compressible_type(b"text/html; charset=utf-8"));
        assert!(compressible_type(b"application/json"));
        assert!(compressible_type(b"application/problem+json"));
        assert!(compressible_type(b"text/event-stream"));
        assert!(!compressible_type(b"image/png"));
        assert!(!compressible_type(b"application/gzip"));
        assert!(!compressible_type(b"application/octet-stream"));
    }

    #[test]
    fn every_coding_round_trips_frame_by_frame() {
        use std::io::Read;
        let text = "data: hello\n\n".repeat(200);
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let mut enc = Encoder::new(coding);
            let mut out = Vec::new();
            for part in text.as_bytes().chunks(100) {
                let chunk = enc.chunk(part).unwrap();
                assert!(!chunk.is_empty(), "{coding:?}: each frame is flushed");
                out.extend_from_slice(&chunk);
            }
            out.extend_from_slice(&enc.finish().unwrap());
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Brotli => {
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Zstd => back = zstd::decode_all(&out[..]).unwrap(),
            }
            assert_eq!(back, text.as_bytes(), "{coding:?}");
        }
    }
}
