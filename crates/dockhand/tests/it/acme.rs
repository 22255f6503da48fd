//! Automatic HTTPS against a real ACME server (Debian's pebble, validating against the
//! proxy's own listeners; its DNS is pebble-challtestsrv): issuance through HTTP-01,
//! TLS-ALPN-01 and DNS-01 (a command hook, and Cloudflare's API replayed by a local fake),
//! renewal served live to a client under load, a CA that goes away and comes back, a restart
//! that places no order, and each bad input as a clear error while the last good certificate
//! keeps serving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dockhand_test_support::pebble::{Pebble, PebbleOptions};
use dockhand_test_support::{free_port, testapp_bin, Sandbox};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::{sandbox, show};

/// The hosts of the two-service apps below (one order: they share `shop-it.dev`).
pub(crate) const A: &str = "a.shop-it.dev";
pub(crate) const B: &str = "b.shop-it.dev";

pub(crate) struct Site {
    pub(crate) sb: Sandbox,
    pub(crate) pebble: Pebble,
    http: u16,
    https: u16,
}

/// A sandbox with two testapp services on hosts A and B, its proxy on fresh ports that a
/// fresh pebble validates against; `acme` is added to `[proxy.acme]`.
pub(crate) fn site(acme: &str, options: PebbleOptions) -> Site {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, options);
    let sb = sandbox();
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    sb.write(
        "dockhand.toml",
        &app_toml(http, https, &pebble, acme, &[A, B]),
    );
    Site {
        sb,
        pebble,
        http,
        https,
    }
}

fn app_toml(http: u16, https: u16, pebble: &Pebble, acme: &str, hosts: &[&str]) -> String {
    let mut toml = format!(
        r#"app = "acme"

[proxy]
listen = "127.0.0.1:{http}"
https_listen = "127.0.0.1:{https}"
drain_timeout = "5s"

[proxy.acme]
directory = "{directory}"
ca = "pebble-api-ca.pem"
email = "ops@shop-it.dev"
{acme}
"#,
        directory = pebble.directory
    );
    for (i, host) in hosts.iter().enumerate() {
        toml.push_str(&format!(
            r#"
[services.s{i}]
command = "{bin}"
port = 8000
env = {{ VERSION = "{host}" }}
health = {{ path = "/health", interval = "100ms", timeout = "5s", deploy_timeout = "30s" }}
route = {{ host = "{host}" }}
stop_timeout = "5s"
"#,
            bin = testapp_bin().display()
        ));
    }
    toml
}

/// `dockhand certs --json` rows.
fn certs(sb: &Sandbox) -> Vec<serde_json::Value> {
    let (_, report) = sb.json(&["certs"]);
    report["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn row(sb: &Sandbox, host: &str) -> serde_json::Value {
    certs(sb)
        .into_iter()
        .find(|r| r["host"] == host)
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until every host's certificate is valid.
pub(crate) fn wait_valid(sb: &Sandbox, hosts: &[&str], timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let rows = certs(sb);
        if hosts.iter().all(|h| {
            rows.iter()
                .any(|r| r["host"] == *h && r["state"] == "valid")
        }) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificates not valid in time: {rows:#?}\nevents: {}",
            events(sb)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for `cond`, showing the certificates and events if it never holds.
fn wait_for(sb: &Sandbox, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}\nevents:\n{}",
            certs(sb),
            events(sb)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn events(sb: &Sandbox) -> String {
    let out = sb.run(&["events", "-n", "200"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TLS client trusting only `root_pem`. No session resumption: a resumed session reports
/// the certificate of the handshake it resumes, and these tests look at what is served now.
pub(crate) fn client(root_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A keep-alive HTTPS connection to the proxy as `host`, verified against `config`.
pub(crate) struct Conn {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl Conn {
    pub(crate) fn open(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        host: &str,
    ) -> std::io::Result<Conn> {
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::try_from(host.to_string()).unwrap();
        let conn =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Conn { stream })
    }

    /// The serial number of the certificate the server presented.
    pub(crate) fn serial(&self) -> String {
        let der = &self.stream.conn.peer_certificates().unwrap()[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        cert.tbs_certificate.raw_serial_as_string()
    }

    /// GET `path`; the status and body.
    pub(crate) fn get(&mut self, host: &str, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
        self.stream.flush()?;
        // Read the head, then Content-Length bytes.
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let status: u16 = head[9..12].parse().unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One verified HTTPS GET as `host`, trusting only `root_pem`; the body of a 200.
pub fn https_get_trusting(root_pem: &str, addr: SocketAddr, host: &str, path: &str) -> String {
    let mut conn = Conn::open(&client(root_pem), addr, host).expect("verified TLS handshake");
    let (status, body) = conn.get(host, path).expect("HTTPS request");
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) fn https_addr(site: &Site) -> SocketAddr {
    format!("127.0.0.1:{}", site.https).parse().unwrap()
}

/// A plain-HTTP GET's status line and Location.
fn http_head(port: u16, host: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let location = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .to_string();
    (status, location)
}

#[test]
fn http01_issues_one_certificate_for_two_hosts_redirects_and_a_restart_places_no_order() {
    let s = site("challenge = \"http-01\"", PebbleOptions::default());
    let mut agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    assert_eq!(
        s.pebble.orders(),
        1,
        "one order for the two hosts:\n{}",
        s.pebble.log()
    );
    let a = row(&s.sb, A);
    assert_eq!(a["source"], "acme");
    assert_eq!(a["names"], serde_json::json!([A, B]));
    assert!(
        a["issuer"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("pebble"),
        "{a}"
    );
    // Served and verified against pebble's root, for both names.
    let config = client(&s.pebble.root_pem());
    for host in [A, B] {
        let mut conn = Conn::open(&config, https_addr(&s), host).expect("verified TLS");
        let (status, body) = conn.get(host, "/").unwrap();
        assert_eq!((status, body.as_str()), (200, host));
    }
    // Plain HTTP now redirects, except the challenge path.
    let (status, location) = http_head(s.http, A, "/x?y=1");
    assert_eq!(status, 301);
    assert_eq!(location, format!("https://{A}:{}/x?y=1", s.https));
    let (status, _) = http_head(s.http, A, "/.well-known/acme-challenge/unknown");
    assert_eq!(status, 404);
    // The files are private; status shows the soonest expiry.
    let state = s.sb.state_dir().join("certs");
    let bundle = state.join("acme/shop-it.dev/bundle.pem");
    assert_eq!(crate::mode_of(&bundle), 0o600);
    let text = String::from_utf8_lossy(&crate::expect(&s.sb, &["status"], 0).stdout).into_owned();
    assert!(text.contains("soonest expiry"), "{text}");
    assert!(events(&s.sb).contains(&format!("certificate for {A}, {B} issued")));

    // A restart serves the stored certificate and places no new order.
    let serial = Conn::open(&config, https_addr(&s), A).unwrap().serial();
    agent.terminate();
    let _agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(30));
    let again = Conn::open(&config, https_addr(&s), A).unwrap();
    assert_eq!(again.serial(), serial);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.pebble.orders(), 1, "{}", s.pebble.log());
}

#[test]
fn tls_alpn01_issues_for_two_hosts() {
    let s = site("challenge = \"tls-alpn-01\"", PebbleOptions::default());
    let _agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    let log = s.pebble.log();
    assert_eq!(s.pebble.orders(), 1, "{log}");
    let config = client(&s.pebble.root_pem());
    let mut conn = Conn::open(&config, https_addr(&s), B).expect("verified TLS");
    assert_eq!(conn.get(B, "/").unwrap(), (200, B.to_string()));
}

#[test]
fn a_host_whose_service_never_got_healthy_still_gets_its_certificate() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, PebbleOptions::default());
    let sb = sandbox();
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    // The service listens on no port: its first deploy fails, nothing serves the host.
    let toml = app_toml(http, https, &pebble, "challenge = \"http-01\"", &[A])
        .replace(
            &format!("command = \"{}\"", testapp_bin().display()),
            "command = \"sleep 600\"",
        )
        .replace("deploy_timeout = \"30s\"", "deploy_timeout = \"2s\"");
    sb.write("dockhand.toml", &toml);
    let agent = sb.spawn_quiet(&["agent"]);
    let _stop = Stop(agent);
    wait_for(&sb, "the agent's socket", Duration::from_secs(60), || {
        sb.state_dir().join("agent.sock").exists()
    });
    wait_valid(&sb, &[A], Duration::from_secs(90));
    let (_, status) = sb.json(&["status"]);
    assert!(status["current_release"].is_null(), "{status:#}");
}

/// Stops an agent started without waiting for its first deploy.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        dockhand_test_support::signal_and_wait(&mut self.0, nix::sys::signal::Signal::SIGTERM);
    }
}

/// Requests over new HTTPS connections and one kept-alive connection until stopped;
/// counts failures.
struct HttpsLoad {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    serials: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HttpsLoad {
    fn start(config: Arc<rustls::ClientConfig>, addr: SocketAddr, host: &'static str) -> HttpsLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let serials = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for keep_alive in [true, false, false] {
            let (stop, failures, done, serials, config) = (
                stop.clone(),
                failures.clone(),
                done.clone(),
                serials.clone(),
                config.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        match Conn::open(&config, addr, host) {
                            Ok(c) => {
                                serials.lock().unwrap().push(c.serial());
                                conn = Some(c);
                            }
                            Err(e) => {
                                eprintln!("connect failed: {e}");
                                failures.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                    match conn.as_mut().unwrap().get(host, "/") {
                        Ok((200, _)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            eprintln!("request failed: {other:?}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !keep_alive {
                        conn = None;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        HttpsLoad {
            stop,
            failures,
            done,
            serials,
            threads,
        }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.done.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn a_short_lived_certificate_is_renewed_live_without_a_failed_request() {
    // 30 s certificates: renewed at two thirds of their life, about every 20 s.
    let s = site(
        "challenge = \"http-01\"",
        PebbleOptions {
            validity_secs: Some(30),
            ..PebbleOptions::default()
        },
    );
    let _agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    let config = client(&s.pebble.root_pem());
    let first = Conn::open(&config, https_addr(&s), A).unwrap().serial();
    let load = HttpsLoad::start(config.clone(), https_addr(&s), A);
    let serials = load.serials.clone();
    wait_for(
        &s.sb,
        "a renewed certificate to be served",
        Duration::from_secs(90),
        || serials.lock().unwrap().iter().any(|s| *s != first),
    );
    // Keep going a little past the swap.
    std::thread::sleep(Duration::from_secs(1));
    let (done, failures) = load.finish();
    assert_eq!(failures, 0, "{done} requests succeeded\n{}", events(&s.sb));
    assert!(done > 0);
    assert!(events(&s.sb).contains("renewed"), "{}", events(&s.sb));
}

#[test]
fn the_ca_going_away_keeps_the_old_certificate_serving_and_the_retry_succeeds_when_it_returns() {
    let mut s = site("challenge = \"http-01\"", PebbleOptions::default());
    let _agent =
        s.sb.start_agent_with_env(&[("DOCKHAND_ACME_RETRY_BASE_MS", "1000")]);
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    let config = client(&s.pebble.root_pem());
    let serial = Conn::open(&config, https_addr(&s), A).unwrap().serial();

    s.pebble.stop();
    let out = s.sb.run(&["certs", "renew", A]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let a = row(&s.sb, A);
    assert_eq!(a["state"], "failing", "{a}");
    let error = a["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("cannot reach") && error.contains("/dir"),
        "{error}"
    );
    let log = events(&s.sb);
    assert!(
        log.contains("failed to renew the certificate") && log.contains("keeps serving"),
        "{log}"
    );
    // The old certificate keeps serving.
    let mut conn = Conn::open(&config, https_addr(&s), A).unwrap();
    assert_eq!(conn.serial(), serial);
    assert_eq!(conn.get(A, "/").unwrap().0, 200);

    // pebble returns (a new CA that forgot the account): the next retry renews.
    s.pebble.resume();
    let config = client(&s.pebble.root_pem());
    wait_for(&s.sb, "the retry to renew", Duration::from_secs(90), || {
        row(&s.sb, A)["state"] == "valid"
    });
    let renewed = Conn::open(&config, https_addr(&s), A).expect("verified against the new CA");
    assert_ne!(renewed.serial(), serial);
}

#[test]
fn dns01_gets_a_wildcard_through_a_command_hook() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, PebbleOptions::default());
    let sb = sandbox();
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    // The hook a user would write: set or clear the TXT record through the DNS's API.
    let hook = format!(
        r#"#!/bin/sh
set -e
echo "$@" >> hook-calls.log
case "$1" in
  set) curl -sS --fail --max-time 10 -X POST -d "{{\"host\":\"$2.\",\"value\":\"$3\"}}" http://127.0.0.1:{m}/set-txt ;;
  unset) curl -sS --fail --max-time 10 -X POST -d "{{\"host\":\"$2.\"}}" http://127.0.0.1:{m}/clear-txt ;;
esac
"#,
        m = pebble.dns_management
    );
    let path = sb.write("dns-hook.sh", &hook);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let acme = format!(
        "domains = [\"*.wild-it.dev\"]\n[proxy.acme.dns]\nprovider = \"command\"\ncommand = \"./dns-hook.sh\"\nnameservers = [\"127.0.0.1:{}\"]\npropagation_timeout = \"30s\"\n",
        pebble.dns
    );
    sb.write(
        "dockhand.toml",
        &app_toml(http, https, &pebble, &acme, &["shop.wild-it.dev"]),
    );
    let _agent = sb.start_agent();
    wait_valid(&sb, &["*.wild-it.dev"], Duration::from_secs(90));
    let calls = std::fs::read_to_string(sb.path().join("hook-calls.log")).unwrap();
    assert!(
        calls.starts_with("set _acme-challenge.wild-it.dev "),
        "{calls}"
    );
    assert!(
        calls.contains("\nunset _acme-challenge.wild-it.dev "),
        "{calls}"
    );
    // The route host under the wildcard is served by it.
    let config = client(&pebble.root_pem());
    let mut conn = Conn::open(
        &config,
        format!("127.0.0.1:{https}").parse().unwrap(),
        "shop.wild-it.dev",
    )
    .expect("the wildcard covers the route host");
    assert_eq!(conn.get("shop.wild-it.dev", "/").unwrap().0, 200);
}

#[test]
fn bad_inputs_are_clear_errors_and_the_last_good_certificate_keeps_serving() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(
        http,
        https,
        PebbleOptions {
            blocklist: vec!["blocked-it.dev".into()],
            ..PebbleOptions::default()
        },
    );
    let sb = sandbox();
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    let hook = sb.write(
        "fail-hook.sh",
        "#!/bin/sh\necho 'zone not found' >&2\nexit 7\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let acme = format!(
        "domains = [\"*.hook-it.dev\"]\n[proxy.acme.dns]\nprovider = \"command\"\ncommand = \"./fail-hook.sh\"\nnameservers = [\"127.0.0.1:{}\"]\n",
        pebble.dns
    );
    sb.write(
        "dockhand.toml",
        &app_toml(http, https, &pebble, &acme, &[A, "www.blocked-it.dev"]),
    );
    let _agent = sb.start_agent();
    wait_valid(&sb, &[A], Duration::from_secs(90));
    // The CA refuses the blocked name: said as the CA's problem.
    wait_for(
        &sb,
        "the refused order's error",
        Duration::from_secs(60),
        || row(&sb, "www.blocked-it.dev")["last_error"].is_string(),
    );
    let blocked = row(&sb, "www.blocked-it.dev");
    assert_eq!(blocked["state"], "pending");
    let e = blocked["last_error"].as_str().unwrap();
    assert!(
        e.contains("rejectedIdentifier") || e.contains("refused"),
        "{e}"
    );
    // The DNS hook exits 7: its exit code and its stderr are in the error.
    wait_for(
        &sb,
        "the failed hook's error",
        Duration::from_secs(60),
        || row(&sb, "*.hook-it.dev")["last_error"].is_string(),
    );
    let e = row(&sb, "*.hook-it.dev")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("exit code 7") && e.contains("zone not found"),
        "{e}"
    );
    // `certs` exits 1 while something is failing? Pending ones are not failing yet; the
    // account file with loose permissions makes A's renewal fail.
    let config = client(&pebble.root_pem());
    let serial = Conn::open(&config, format!("127.0.0.1:{https}").parse().unwrap(), A)
        .unwrap()
        .serial();
    let accounts = sb.state_dir().join("certs/acme/accounts");
    let account = std::fs::read_dir(&accounts)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("account.json"))
        .next()
        .unwrap();
    std::fs::set_permissions(&account, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run(&["certs", "renew", A]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let e = row(&sb, A)["last_error"].as_str().unwrap_or("").to_string();
    assert!(e.contains("chmod 600") && e.contains("account.json"), "{e}");
    assert_eq!(row(&sb, A)["state"], "failing");
    let out = sb.run(&["certs"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let mut conn = Conn::open(&config, format!("127.0.0.1:{https}").parse().unwrap(), A).unwrap();
    assert_eq!(
        conn.serial(),
        serial,
        "the last good certificate keeps serving"
    );
    assert_eq!(conn.get(A, "/").unwrap().0, 200);
}

#[test]
fn an_unreachable_directory_is_a_clear_error() {
    let sb = sandbox();
    let (http, https) = (free_port(), free_port());
    let dead = free_port();
    sb.write(
        "dockhand.toml",
        &format!(
            "app = \"acme\"\n[proxy]\nlisten = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\n[proxy.acme]\ndirectory = \"https://127.0.0.1:{dead}/dir\"\n[services.web]\ncommand = \"{bin}\"\nport = 8000\nhealth = {{ path = \"/health\" }}\nroute = {{ host = \"{A}\" }}\n",
            bin = testapp_bin().display()
        ),
    );
    let _agent = sb.start_agent();
    wait_for(&sb, "the failed attempt", Duration::from_secs(60), || {
        row(&sb, A)["last_error"].is_string()
    });
    let a = row(&sb, A);
    assert_eq!(a["state"], "pending");
    let e = a["last_error"].as_str().unwrap();
    assert!(
        e.contains(&format!("cannot reach https://127.0.0.1:{dead}/dir")),
        "{e}"
    );
    assert!(a["next_renewal"].is_string(), "{a}");
    // The app keeps serving over plain HTTP meanwhile.
    let (status, _) = http_head(http, A, "/");
    assert_eq!(status, 200);
}

/// A local stand-in for Cloudflare's v4 API, replaying its documented requests and answers
/// (zones by name, creating, listing and deleting a TXT record; bearer-token auth). A record
/// it creates is published in challtestsrv's DNS, as Cloudflare's nameservers would.
struct FakeCloudflare {
    addr: SocketAddr,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeCloudflare {
    fn start(token: &'static str, dns_management: u16) -> FakeCloudflare {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            let mut records: Vec<(String, String, String)> = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((method, target, auth, body)) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(format!("{method} {target}"));
                let ok = |result: serde_json::Value| serde_json::json!({ "success": true, "errors": [], "messages": [], "result": result });
                let failed = |message: &str| serde_json::json!({ "success": false, "errors": [{ "code": 1000, "message": message }], "messages": [], "result": null });
                let (status, answer) = if auth != format!("Bearer {token}") {
                    (
                        403,
                        serde_json::json!({ "success": false, "errors": [{ "code": 10000, "message": "Authentication error" }], "messages": [], "result": null }),
                    )
                } else if method == "GET" && target.starts_with("/client/v4/zones?name=") {
                    let name = &target["/client/v4/zones?name=".len()..];
                    let zones = if name == "cf-it.dev" {
                        serde_json::json!([{ "id": "023e105f4ecef8ad9ca31a8372d0c353", "name": "cf-it.dev", "status": "active" }])
                    } else {
                        serde_json::json!([])
                    };
                    (200, ok(zones))
                } else if method == "POST"
                    && target == "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records"
                {
                    let rec: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let name = rec["name"].as_str().unwrap_or("").to_string();
                    let content = rec["content"].as_str().unwrap_or("").to_string();
                    let id = format!("372e67954025e0ba6aaa6d586b9e0b5{}", records.len());
                    match publish(
                        dns_management,
                        "set-txt",
                        &serde_json::json!({ "host": format!("{name}."), "value": content }),
                    ) {
                        Ok(()) => {
                            records.push((id.clone(), name.clone(), content.clone()));
                            (
                                200,
                                ok(
                                    serde_json::json!({ "id": id, "type": "TXT", "name": name, "content": content, "ttl": 120 }),
                                ),
                            )
                        }
                        Err(e) => (500, failed(&e)),
                    }
                } else if method == "GET"
                    && target.starts_with(
                        "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records?",
                    )
                {
                    let list: Vec<serde_json::Value> = records
                        .iter()
                        .filter(|(_, n, _)| target.contains(&format!("name={n}")))
                        .map(|(id, n, c)| serde_json::json!({ "id": id, "type": "TXT", "name": n, "content": c }))
                        .collect();
                    (200, ok(serde_json::json!(list)))
                } else if method == "DELETE" {
                    let id = target.rsplit('/').next().unwrap_or("").to_string();
                    if let Some(pos) = records.iter().position(|(i, _, _)| *i == id) {
                        let (_, name, _) = records.remove(pos);
                        if let Err(e) = publish(
                            dns_management,
                            "clear-txt",
                            &serde_json::json!({ "host": format!("{name}.") }),
                        ) {
                            eprintln!("fake Cloudflare: {e}");
                        }
                    }
                    (200, ok(serde_json::json!({ "id": id })))
                } else {
                    (
                        404,
                        serde_json::json!({ "success": false, "errors": [{ "code": 7003, "message": "Could not route to /, perhaps your object identifier is invalid?" }], "messages": [], "result": null }),
                    )
                };
                let body = answer.to_string();
                use std::io::Write;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeCloudflare { addr, requests }
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, String, String, String)> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let mut auth = String::new();
    let mut len = 0;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = v.trim().to_string();
            } else if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some((
        method,
        target,
        auth,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Calls challtestsrv's management API. A failure is printed and answered as Cloudflare's
/// 500 (rather than a panic that would take the fake API down with it), so the agent's
/// error and this output both say what went wrong.
fn publish(port: u16, call: &str, body: &serde_json::Value) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{port}/{call}"))
            .output()
            .map_err(|e| format!("running curl: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("fake Cloudflare: challtestsrv /{call} failed: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("challtestsrv /{call}: {last}"))
}

#[test]
fn dns01_through_cloudflares_api_gets_a_wildcard_and_never_shows_the_token() {
    const TOKEN: &str = "cf-token-Yx9q2LmN7vW3";
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, PebbleOptions::default());
    let fake = FakeCloudflare::start(TOKEN, pebble.dns_management);
    let sb = sandbox();
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    let secrets = sb.write(".dockhand/secrets.env", &format!("CF_TOKEN={TOKEN}\n"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let acme = format!(
        "domains = [\"*.cf-it.dev\"]\n[proxy.acme.dns]\nprovider = \"cloudflare\"\napi_token = \"${{secret.CF_TOKEN}}\"\napi = \"http://{}/client/v4\"\nnameservers = [\"127.0.0.1:{}\"]\npropagation_timeout = \"30s\"\n",
        fake.addr, pebble.dns
    );
    sb.write(
        "dockhand.toml",
        &app_toml(http, https, &pebble, &acme, &["shop.cf-it.dev"]),
    );
    crate::expect(&sb, &["check"], 0);
    let agent = sb.start_agent();
    wait_valid(&sb, &["*.cf-it.dev"], Duration::from_secs(90));
    let requests = fake.requests.lock().unwrap().clone();
    let zone = "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records";
    assert!(
        requests.contains(&"GET /client/v4/zones?name=cf-it.dev".to_string()),
        "{requests:?}"
    );
    assert!(requests.contains(&format!("POST {zone}")), "{requests:?}");
    assert!(
        requests.iter().any(|r| r.starts_with("DELETE ")),
        "{requests:?}"
    );
    let config = client(&pebble.root_pem());
    let mut conn = Conn::open(
        &config,
        format!("127.0.0.1:{https}").parse().unwrap(),
        "shop.cf-it.dev",
    )
    .expect("the wildcard covers the route host");
    assert_eq!(conn.get("shop.cf-it.dev", "/").unwrap().0, 200);
    // The token reaches the API only: not events, `certs`, status or the agent's log.
    let (_, certs) = sb.json(&["certs"]);
    let (_, status) = sb.json(&["status"]);
    for text in [
        events(&sb),
        certs.to_string(),
        status.to_string(),
        agent.output(),
    ] {
        assert!(!text.contains(TOKEN), "{text}");
    }
}

#[test]
fn external_account_binding_registers_with_the_cas_key_id_and_keeps_the_key_secret() {
    const MAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let s = site(
        "eab = { kid = \"kid-1\", hmac_key = \"${secret.ACME_EAB_HMAC}\" }",
        PebbleOptions {
            eab: Some(("kid-1".into(), MAC.into())),
            ..PebbleOptions::default()
        },
    );
    let secrets =
        s.sb.write(".dockhand/secrets.env", &format!("ACME_EAB_HMAC={MAC}\n"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    let (_, certs) = s.sb.json(&["certs"]);
    for text in [events(&s.sb), certs.to_string(), agent.output()] {
        assert!(!text.contains(MAC), "{text}");
    }
}
