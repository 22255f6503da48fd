//! `GET /sse?n=N&interval_ms=M`: a server-sent event stream.
//!
//! Proves the proxy streams responses instead of buffering them: each event is its own body
//! frame, written by a task into a channel the response body reads from, `interval_ms` apart.
//! A client that goes away drops the body, which closes the channel and ends the task.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use crate::routes::{number_param, text, Body};

const DEFAULT_EVENTS: u64 = 5;
const DEFAULT_INTERVAL_MS: u64 = 100;

/// Starts the stream: events `data: event 1` … `data: event N`, the first one at once.
pub fn respond(query: Option<&str>) -> Response<Body> {
    let params = number_param(query, "n", DEFAULT_EVENTS)
        .and_then(|n| number_param(query, "interval_ms", DEFAULT_INTERVAL_MS).map(|ms| (n, ms)));
    let (events, interval) = match params {
        Ok((n, ms)) => (n, Duration::from_millis(ms)),
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };

    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for i in 1..=events {
            if i > 1 {
                tokio::time::sleep(interval).await;
            }
            if tx.send(event(i)).await.is_err() {
                return; // the client went away
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(data)), rx))
    });

    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn event(i: u64) -> Bytes {
    Bytes::from(format!("data: event {i}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_format() {
        assert_eq!(event(3), Bytes::from_static(b"data: event 3\n\n"));
    }
}
