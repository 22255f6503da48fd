//! Automatic HTTPS in the proxy: HTTP-01 answers before routing (for any host, with no
//! route or no healthy backend, on the fast path and hyper's), TLS-ALPN-01 certificates for
//! `acme-tls/1` handshakes, and the redirect and HSTS of routes whose host has a
//! certificate — never for the challenge path.

use std::time::Duration;

use dockhand_proxy::{RouteHttps, ACME_TLS_ALPN};
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;
use crate::tls::{
    certificate, connect, get_over, https_addr, https_config, negotiated_alpn, served_names,
};

/// Sends raw bytes and reads the whole answer (the proxy closes after it).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("answer timed out")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn http01_is_answered_before_routing_for_any_host() {
    // No route at all, and a route whose only backend is dead: the challenge is answered.
    let proxy = start(config(), vec![]);
    proxy.challenges().add_http01("tok-1", "tok-1.thumbprint");
    let a = get(
        proxy.local_addr(),
        "new.example",
        "/.well-known/acme-challenge/tok-1",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "tok-1.thumbprint");
    let a = get(
        proxy.local_addr(),
        "new.example",
        "/.well-known/acme-challenge/other",
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Everything else still gets the router's answer.
    assert_eq!(
        get(proxy.local_addr(), "new.example", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // hyper's path (a request with a body is handed over) answers it too.
    let answer = raw(
        proxy.local_addr(),
        "GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("tok-1.thumbprint"), "{answer}");
    proxy.challenges().remove_http01("tok-1");
    let a = get(proxy.local_addr(), "x", "/.well-known/acme-challenge/tok-1").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn tls_alpn01_gets_the_challenge_certificate_and_others_the_served_one() {
    let proxy = start(https_config(vec![certificate(&["shop.test"])]), vec![]);
    let addr = https_addr(&proxy);
    let challenge = certificate(&["shop.test", "challenge.invalid"]);
    proxy
        .challenges()
        .add_tls_alpn01("shop.test", challenge.certified_key().clone());
    let mut validation = connect(addr, "shop.test", &[ACME_TLS_ALPN]).await;
    assert_eq!(negotiated_alpn(&validation).as_deref(), Some(ACME_TLS_ALPN));
    assert_eq!(
        served_names(&validation),
        ["shop.test", "challenge.invalid"]
    );
    // The proxy closes the connection after the handshake (RFC 8737).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, validation.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // A browser never offers acme-tls/1 and gets the real certificate.
    let normal = connect(addr, "shop.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(served_names(&normal), ["shop.test"]);
    assert_eq!(negotiated_alpn(&normal).as_deref(), Some(&b"h2"[..]));
    proxy.challenges().remove_tls_alpn01("shop.test");
    assert_eq!(proxy.challenges().pending(), 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

fn secure_route(host: &str, up: std::net::SocketAddr) -> dockhand_proxy::Route {
    let mut r = route("/", vec![backend(up)]);
    r.host = Some(host.into());
    r.https = RouteHttps {
        redirect: true,
        hsts_max_age: Some(86_400),
        ..Default::default()
    };
    r
}

#[tokio::test]
async fn a_host_with_a_certificate_redirects_to_https_except_the_challenge_path() {
    let up = named_upstream("up").await;
    let proxy = start(
        https_config(vec![certificate(&["shop.test"])]),
        vec![
            secure_route("shop.test", up),
            secure_route("pending.test", up),
        ],
    );
    let port = https_addr(&proxy).port();
    let a = get(proxy.local_addr(), "Shop.Test", "/a?b=1").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        a.headers["location"],
        format!("https://shop.test:{port}/a?b=1").as_str()
    );
    let post = Request::post("/form")
        .header("host", "shop.test")
        .body(full("x=1"))
        .unwrap();
    let a = read(send(proxy.local_addr(), post).await.unwrap()).await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    // The challenge path is never redirected.
    proxy.challenges().add_http01("t", "t.k");
    let a = get(
        proxy.local_addr(),
        "shop.test",
        "/.well-known/acme-challenge/t",
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "t.k"));
    // A host still waiting for its certificate keeps serving plain HTTP, without HSTS.
    let a = get(proxy.local_addr(), "pending.test", "/").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "up"));
    // Over HTTPS the response carries HSTS.
    let stream = connect(https_addr(&proxy), "shop.test", &[b"http/1.1"]).await;
    let a = get_over(stream, "shop.test", "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["strict-transport-security"], "max-age=86400");
    // Once the pending host's certificate arrives, it redirects too.
    proxy.set_certificates(vec![
        certificate(&["shop.test"]),
        certificate(&["pending.test"]),
    ]);
    let a = get(proxy.local_addr(), "pending.test", "/").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    proxy.shutdown(Duration::from_secs(1)).await;
}
