//! An open WebSocket through the proxy survives a deploy for the drain window, then the old
//! instance stops; new connections reach the new release.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{sandbox, show, testapp_toml};

#[test]
fn an_open_websocket_gets_the_drain_window_during_a_deploy() {
    let sb = sandbox();
    let toml = |v: &str| {
        testapp_toml(&format!("VERSION = \"{v}\""), 1, "20s")
            .replace("drain_timeout = \"10s\"", "drain_timeout = \"2s\"")
    };
    sb.write("dockhand.toml", &toml("v1"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let req = tokio_tungstenite::tungstenite::http::Request::get(format!("ws://{addr}/ws"))
            .header("Host", "app.test")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket through the proxy");
        ws.send(Message::text("before")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

        sb.write("dockhand.toml", &toml("v2"));
        let mut deploy = sb
            .cmd(&["deploy", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // While the deploy drains, the old connection still echoes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ws.send(Message::text("during")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("during"));

        let out = tokio::task::spawn_blocking(move || {
            let _ = deploy.wait();
            deploy
        })
        .await
        .unwrap();
        let out = out.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            report["warnings"]
                .to_string()
                .contains("still open after the drain timeout"),
            "{report}"
        );

        // The old instance is gone after the drain window: the tunnel is closed.
        let next = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = ws.send(Message::text("after")).await;
            ws.next().await
        })
        .await
        .expect("the tunnel closes once the old instance stops");
        assert!(!matches!(next, Some(Ok(Message::Text(_)))), "{next:?}");
    });
    assert_eq!(crate::crash::http_get(&addr, "app.test", "/version"), "v2");
}
