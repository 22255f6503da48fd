//! `GET /ws`: a WebSocket echo endpoint.
//!
//! Proves the proxy passes upgrades through and keeps the tunnel open. The handshake is done
//! by hand (check the headers, answer 101 with `Sec-WebSocket-Accept`), then the upgraded
//! connection is handed to tungstenite, which echoes every text and binary message back and
//! answers pings and close frames itself.

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::routes::{text, Body};
use crate::say;

/// Answers the handshake and spawns the echo loop on the upgraded connection.
pub fn upgrade(req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    if !has_token(headers, &UPGRADE, "websocket") || !has_token(headers, &CONNECTION, "upgrade") {
        return text(StatusCode::BAD_REQUEST, "expected a websocket upgrade");
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported websocket version",
        );
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    let accept = derive_accept_key(key.as_bytes());

    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => echo(upgraded).await,
            Err(err) => say(format_args!("websocket upgrade failed: {err}")),
        }
    });

    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.remove(hyper::header::CONTENT_TYPE);
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

async fn echo(upgraded: Upgraded) {
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(message) = socket.next().await {
        match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            // Pings, pongs and close frames are answered by tungstenite; after a close the
            // stream ends on its own.
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// Whether the comma-separated header `name` contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(has_token(&headers, &CONNECTION, "upgrade"));
        assert!(has_token(&headers, &UPGRADE, "websocket"));
        assert!(!has_token(&headers, &CONNECTION, "close"));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
