//! HTTPS through the real binary: an app with `https_listen` and a certificate generated
//! for the test serves over TLS (verified against that certificate, with
//! `X-Forwarded-Proto: https` reaching the app), `status` shows the certificate's names and
//! expiry and no key, and `check` refuses a key file other users can read.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::Request;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::{expect, sandbox, show, testapp_toml};

/// Writes `certs/site.pem` and `certs/site.key` (mode 0600) for `app.test`; returns the
/// certificate (to trust) and the key's PEM (to look for in output).
fn write_certificate(sb: &dockhand_test_support::Sandbox) -> (CertificateDer<'static>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    sb.write("certs/site.pem", &cert.pem());
    let key_pem = key.serialize_pem();
    let key_path = sb.write("certs/site.key", &key_pem);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert.der().clone(), key_pem)
}

/// GET `path` from `addr` over TLS as `app.test`, trusting only `cert`.
async fn https_get(addr: SocketAddr, cert: CertificateDer<'static>, path: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("app.test").unwrap(), tcp)
        .await
        .expect("TLS handshake with the proxy");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn an_app_with_https_listen_serves_over_tls_and_check_refuses_a_loose_key() {
    let sb = sandbox();
    let (cert, key_pem) = write_certificate(&sb);
    let toml = testapp_toml("VERSION = \"v1\"", 1, "20s").replace(
        "drain_timeout = \"10s\"\n",
        "drain_timeout = \"10s\"\nhttps_listen = \"127.0.0.1:0\"\ncertificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]\n",
    );
    sb.write("dockhand.toml", &toml);
    expect(&sb, &["check"], 0);
    let mut agent = sb.start_agent();

    let (_, status) = sb.json(&["status"]);
    let https: SocketAddr = status["agent"]["https_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("status has no https_listen: {status:#}"))
        .parse()
        .unwrap();
    let certs = &status["agent"]["certificates"];
    assert_eq!(
        certs[0]["names"],
        serde_json::json!(["app.test"]),
        "{status:#}"
    );
    assert!(certs[0]["not_after"].as_str().is_some(), "{status:#}");
    let key_line = key_pem.lines().nth(1).unwrap();
    assert!(!status.to_string().contains(key_line));
    assert!(status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == &serde_json::json!(format!("https://app.test:{}/", https.port()))));
    let human = expect(&sb, &["status"], 0);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("certificate app.test  expires"), "{text}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, body) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), https_get(https, cert.clone(), "/"))
            .await
            .expect("HTTPS request timed out")
    });
    assert_eq!((code, body.as_str()), (200, "v1"));
    let (code, headers) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), https_get(https, cert, "/headers"))
            .await
            .expect("HTTPS request timed out")
    });
    assert_eq!(code, 200);
    let headers: serde_json::Value = serde_json::from_str(&headers).unwrap();
    assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");

    // A key other users can read: `check` says where and what to do.
    let key_path = sb.path().join("certs/site.key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = expect(&sb, &["check"], 2);
    let text = show(&out);
    assert!(
        text.contains(&format!("run `chmod 600 {}`", key_path.display())),
        "{text}"
    );
    assert!(text.contains("dockhand.toml:7:"), "{text}");
    assert!(!text.contains(key_line), "{text}");
    assert_eq!(agent.terminate(), Some(0));
    assert!(!agent.output().contains(key_line));

    // Started again with that key, the agent serves HTTP and says the proxy is degraded.
    let mut agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let proxy = &status["agent"]["subsystems"][0];
    assert_eq!(proxy["name"], "proxy", "{status:#}");
    assert_eq!(proxy["state"], "degraded", "{status:#}");
    assert!(
        proxy["message"]
            .as_str()
            .is_some_and(|m| m.contains("site.pem is not served")),
        "{status:#}"
    );
    let human = expect(&sb, &["status"], 0);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("subsystem proxy degraded: certificate"),
        "{text}"
    );
    assert!(!text.contains(key_line), "{text}");
    assert_eq!(
        crate::crash::http_get(&sb.proxy_addr(), "app.test", "/version"),
        "v1"
    );
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_certificate_ending_within_two_weeks_is_warned_about_when_the_agent_starts() {
    let sb = sandbox();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.test".to_string()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    let cert = params.self_signed(&key).unwrap();
    sb.write("certs/site.pem", &cert.pem());
    let key_path = sb.write("certs/site.key", &key.serialize_pem());
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let toml = testapp_toml("VERSION = \"v1\"", 1, "20s").replace(
        "drain_timeout = \"10s\"\n",
        "drain_timeout = \"10s\"\nhttps_listen = \"127.0.0.1:0\"\ncertificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]\n",
    );
    sb.write("dockhand.toml", &toml);
    let _agent = sb.start_agent();
    // The scheduler's expiry check runs at the first start, then twice a day.
    let mut warning = serde_json::Value::Null;
    dockhand_test_support::wait_until("the expiry warning", Duration::from_secs(20), || {
        let (_, events) = sb.json(&["events"]);
        warning = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("expires in"))
            })
            .cloned()
            .unwrap_or_default();
        !warning.is_null()
    });
    assert_eq!(warning["level"], "warn", "{warning}");
    assert_eq!(warning["kind"], "certificate", "{warning}");
    let message = warning["message"].as_str().unwrap();
    assert!(
        (message.contains("site.pem expires in 4 day(s)")
            || message.contains("site.pem expires in 5 day(s)"))
            && message.contains("replace the file"),
        "{message}"
    );
}
