//! WebSocket (HTTP/1.1 upgrade) tunnelling.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let b = backend(up);
    let proxy = start(config(), vec![route("/", vec![b.clone()])]);
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let url = format!("ws://{}/ws", proxy.local_addr());
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    assert!(response.headers().contains_key("x-request-id"));
    for i in 0..3 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    // The open tunnel holds the backend.
    assert_eq!(b.inflight(), 1);
    ws.close(None).await.unwrap();
    drop(ws);
    eventually("tunnel released its backend", || b.inflight() == 0).await;
}
