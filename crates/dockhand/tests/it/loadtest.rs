//! `dockhand loadtest` against real local servers: the testapp with injected 500s (verdict,
//! exit code, status breakdown), a small login-protected server for scenario files, the
//! running app's route through the agent, and the refusal to load a machine that is not this
//! one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dockhand_test_support::{free_port, testapp_bin, wait_until};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};

use crate::{expect, sandbox, show, testapp_toml};

/// The testapp on loopback, killed when dropped.
struct Testapp {
    child: Child,
    port: u16,
}

impl Testapp {
    fn start(env: &[(&str, &str)]) -> Testapp {
        let port = free_port();
        let child = Command::new(testapp_bin())
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dockhand-testapp");
        wait_until("the testapp to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Testapp { child, port }
    }
}

impl Drop for Testapp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", show(out)))
}

#[test]
fn ten_percent_of_500s_is_a_warn_with_exit_code_6() {
    let app = Testapp::start(&[("FAIL_PERCENT", "10")]);
    let sb = sandbox();
    let url = format!("http://127.0.0.1:{}/", app.port);
    let out = expect(
        &sb,
        &[
            "loadtest",
            &url,
            "-n",
            "200",
            "-c",
            "4",
            "--json",
            "--out",
            "report.md",
        ],
        6,
    );
    let report = json_of(&out);
    assert_eq!(report["verdict"], "warn", "{report:#}");
    assert_eq!(report["exit_code"], 6);
    let totals = &report["totals"];
    assert_eq!(totals["requests"], 200);
    assert_eq!(totals["succeeded"], 180);
    assert_eq!(totals["failed"], 20);
    assert_eq!(totals["success_rate"], 90.0);
    assert_eq!(
        totals["status"],
        serde_json::json!({ "200": 180, "500": 20 })
    );
    assert_eq!(
        totals["errors"],
        serde_json::json!({ "connect": 0, "timeout": 0, "reset": 0, "other": 0 })
    );
    assert_eq!(totals["latency_us"]["count"], 200);
    assert!(totals["latency_us"]["p50_us"].as_u64().unwrap() > 0);
    assert!(
        totals["latency_us"]["p99_us"].as_u64() <= totals["latency_us"]["max_us"].as_u64(),
        "{totals:#}"
    );
    assert_eq!(report["checks"][0]["name"], "success_rate");

    let md = std::fs::read_to_string(sb.path().join("report.md")).expect("the markdown report");
    assert!(md.starts_with("# Load test: WARN"), "{md}");
    assert!(md.contains("| 500 | 20 |"), "{md}");
    assert!(
        md.contains("- WARN success rate 90.00% (180 of 200)"),
        "{md}"
    );
}

#[test]
fn stricter_levels_turn_the_same_failures_into_a_fail() {
    let app = Testapp::start(&[("FAIL_PERCENT", "10")]);
    let sb = sandbox();
    let url = format!("http://127.0.0.1:{}/", app.port);
    let out = expect(
        &sb,
        &[
            "loadtest",
            &url,
            "-n",
            "100",
            "-c",
            "2",
            "--success-warn",
            "95",
        ],
        1,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("# Load test: FAIL"), "{}", show(&out));
    // And a clean server with a latency limit it meets passes with 0.
    let clean = Testapp::start(&[]);
    let url = format!("http://127.0.0.1:{}/", clean.port);
    let out = expect(
        &sb,
        &[
            "loadtest", &url, "-n", "100", "-c", "2", "--p99", "10s", "--report", "json",
        ],
        0,
    );
    let report = json_of(&out);
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["checks"][1]["name"], "p99");
}

#[test]
fn a_target_that_is_not_this_machine_is_refused_without_a_terminal() {
    let sb = sandbox();
    // TEST-NET-1: nobody's server. The refusal comes before anything is resolved or sent.
    let out = expect(&sb, &["loadtest", "http://192.0.2.1/", "-n", "1"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to send load to http://192.0.2.1: it is not this machine"),
        "{}",
        show(&out)
    );
    assert!(err.contains("pass --yes to confirm"), "{err}");
    assert!(out.stdout.is_empty(), "{}", show(&out));
}

#[test]
fn usage_mistakes_exit_2_with_what_to_do() {
    let sb = sandbox();
    let out = expect(&sb, &["loadtest", "-n", "1"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("say what to load"),
        "{}",
        show(&out)
    );
    let out = expect(
        &sb,
        &[
            "loadtest",
            "http://127.0.0.1:1/",
            "--success-pass",
            "80",
            "--success-warn",
            "90",
        ],
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warn level must be at or below"),
        "{}",
        show(&out)
    );
}

/// What the login-protected server saw.
#[derive(Default)]
struct Hits {
    login: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
    unauthorized: AtomicU64,
}

const TOKEN: &str = "tok-4f9a-SECRET";
const PASSWORD: &str = "hunter2-SECRET";

/// A server whose `/a` and `/b` need the bearer token that `POST /login` hands out for the
/// right password; stopped when the returned runtime is dropped.
fn login_server() -> (SocketAddr, Arc<Hits>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(Hits::default());
    let h = Arc::clone(&hits);
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&h)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits, rt)
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    hits: Arc<Hits>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        Ok(r)
    };
    let path = req.uri().path().to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if path == "/login" && req.method() == hyper::Method::POST {
        hits.login.fetch_add(1, Ordering::SeqCst);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let creds: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if creds["password"] != PASSWORD {
            return reply(StatusCode::UNAUTHORIZED, "{}".into());
        }
        return reply(
            StatusCode::OK,
            serde_json::json!({ "data": { "access_token": TOKEN } }).to_string(),
        );
    }
    if !authorized {
        hits.unauthorized.fetch_add(1, Ordering::SeqCst);
        return reply(StatusCode::UNAUTHORIZED, "no token".into());
    }
    match path.as_str() {
        "/a" => hits.a.fetch_add(1, Ordering::SeqCst),
        "/b" => hits.b.fetch_add(1, Ordering::SeqCst),
        _ => return reply(StatusCode::NOT_FOUND, String::new()),
    };
    reply(StatusCode::OK, "ok".into())
}

#[test]
fn a_scenario_with_two_weighted_endpoints_and_a_login() {
    let (addr, hits, _server) = login_server();
    let sb = sandbox();
    sb.write(
        "login.json",
        &format!(r#"{{"user":"ci","password":"{PASSWORD}"}}"#),
    );
    sb.write(
        "scenario.toml",
        &format!(
            r#"url = "http://{addr}"
headers = {{ accept = "application/json" }}

[login]
path = "/login"
headers = {{ content-type = "application/json" }}
body_file = "login.json"
token = "data.access_token"

[[endpoints]]
name = "list"
path = "/a"
weight = 3

[[endpoints]]
name = "detail"
path = "/b"
"#
        ),
    );
    let out = expect(
        &sb,
        &[
            "loadtest",
            "--scenario",
            "scenario.toml",
            "-n",
            "400",
            "-c",
            "4",
            "--json",
        ],
        0,
    );
    assert_eq!(
        hits.login.load(Ordering::SeqCst),
        1,
        "the token is fetched once"
    );
    assert_eq!(
        hits.unauthorized.load(Ordering::SeqCst),
        0,
        "every request carries the token"
    );
    assert_eq!(hits.a.load(Ordering::SeqCst), 300);
    assert_eq!(hits.b.load(Ordering::SeqCst), 100);
    let report = json_of(&out);
    assert_eq!(report["verdict"], "pass");
    let endpoints = report["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["name"], "list");
    assert_eq!(endpoints[0]["weight"], 3);
    assert_eq!(endpoints[0]["stats"]["requests"], 300);
    assert_eq!(
        endpoints[0]["stats"]["status"],
        serde_json::json!({ "200": 300 })
    );
    assert_eq!(endpoints[1]["stats"]["requests"], 100);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(TOKEN) && !all.contains(PASSWORD),
        "a secret leaked: {all}"
    );

    // A wrong password stops the run before any load, without quoting the body.
    sb.write("login.json", r#"{"user":"ci","password":"wrong-SECRET"}"#);
    let out = expect(
        &sb,
        &["loadtest", "--scenario", "scenario.toml", "-n", "10"],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("login request POST /login failed: the server answered 401"),
        "{}",
        show(&out)
    );
    assert!(!err.contains("wrong-SECRET"), "{err}");
    assert_eq!(
        hits.a.load(Ordering::SeqCst),
        300,
        "no load after a failed login"
    );
}

#[test]
fn route_loads_the_running_apps_service_through_the_proxy() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "60s"));
    let _agent = sb.start_agent();
    let out = expect(
        &sb,
        &[
            "loadtest", "--route", "web", "-n", "50", "-c", "2", "--json",
        ],
        0,
    );
    let report = json_of(&out);
    assert_eq!(
        report["totals"]["status"],
        serde_json::json!({ "200": 50 }),
        "{report:#}"
    );
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("http://app.test:"),
        "{report:#}"
    );
    let out = expect(&sb, &["loadtest", "--route", "nope", "-n", "1"], 5);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no service \"nope\""),
        "{}",
        show(&out)
    );
}

#[test]
fn failures_without_an_answer_are_counted_by_kind() {
    let app = Testapp::start(&[]);
    let sb = sandbox();
    let slow = format!("http://127.0.0.1:{}/slow?ms=5000", app.port);
    let out = expect(
        &sb,
        &[
            "loadtest",
            &slow,
            "-n",
            "4",
            "-c",
            "2",
            "--timeout",
            "300ms",
            "--json",
        ],
        1,
    );
    let report = json_of(&out);
    assert_eq!(
        report["totals"]["errors"],
        serde_json::json!({ "connect": 0, "timeout": 4, "reset": 0, "other": 0 }),
        "{report:#}"
    );
    assert_eq!(report["totals"]["completed"], 0);
    assert_eq!(
        report["totals"]["error_samples"]["timeout"],
        "no complete answer within 300ms"
    );

    let port = free_port();
    let closed = format!("http://127.0.0.1:{port}/");
    let out = expect(
        &sb,
        &["loadtest", &closed, "-n", "3", "-c", "1", "--json"],
        1,
    );
    let report = json_of(&out);
    assert_eq!(report["totals"]["errors"]["connect"], 3, "{report:#}");
    let why = report["totals"]["error_samples"]["connect"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.starts_with(&format!("connect to 127.0.0.1:{port} failed")),
        "{report:#}"
    );
    assert_eq!(report["verdict"], "fail");
}

/// An HTTPS server on loopback with the self-signed test certificate in `fixtures/`; stopped
/// when the returned runtime is dropped.
fn tls_server() -> (u16, tokio::runtime::Runtime) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let certs = CertificateDer::pem_file_iter(dir.join("test-only-cert.pem"))
        .expect("read the test certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse the test certificate");
    let key = PrivateKeyDer::from_pem_file(dir.join("test-only-key.pem")).expect("the test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"secure"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, rt)
}

#[test]
fn https_with_insecure_accepts_a_self_signed_certificate_and_without_it_says_why_not() {
    let (port, _server) = tls_server();
    let sb = sandbox();
    let url = format!("https://localhost:{port}/");
    let out = expect(
        &sb,
        &[
            "loadtest",
            &url,
            "--insecure",
            "-n",
            "50",
            "-c",
            "2",
            "--json",
        ],
        0,
    );
    let report = json_of(&out);
    assert_eq!(report["totals"]["status"], serde_json::json!({ "200": 50 }));
    assert_eq!(report["totals"]["response_body_bytes"], 50 * 6);

    let out = expect(&sb, &["loadtest", &url, "-n", "2", "-c", "1", "--json"], 1);
    let report = json_of(&out);
    assert_eq!(report["totals"]["errors"]["connect"], 2, "{report:#}");
    let why = report["totals"]["error_samples"]["connect"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("TLS handshake") && why.contains("certificate"),
        "{why}"
    );
}

#[test]
fn open_loop_sends_the_requested_count_at_a_rate() {
    let app = Testapp::start(&[]);
    let sb = sandbox();
    let url = format!("http://127.0.0.1:{}/", app.port);
    let out = expect(
        &sb,
        &[
            "loadtest", &url, "--rate", "400", "-n", "100", "-c", "4", "--json",
        ],
        0,
    );
    let report = json_of(&out);
    assert_eq!(report["mode"], "open");
    assert_eq!(report["rate"], 400.0);
    assert_eq!(report["request_limit"], 100);
    assert_eq!(
        report["totals"]["status"],
        serde_json::json!({ "200": 100 })
    );
    // Paced, not sent at once: request 99 is not due before 99/400 s.
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    assert!(
        elapsed >= 0.2475,
        "100 requests at 400/s ended after {elapsed} s"
    );
}
