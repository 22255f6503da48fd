//! A real ACME server for tests: Debian's `pebble` with `pebble-challtestsrv` as its DNS
//! (every name resolves to 127.0.0.1; TXT records are set through its management API).
//! Each test starts its own pair on its own ports, pointing pebble's HTTP-01 and TLS-ALPN-01
//! validation at the proxy's listeners, and stops them when dropped. Validation is real
//! (`PEBBLE_VA_NOSLEEP` only removes pebble's random sleeps).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Options of one pebble.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// Seconds each issued certificate is valid (pebble's default is five years).
    pub validity_secs: Option<u64>,
    /// Names pebble refuses to issue for (`rejectedIdentifier`).
    pub blocklist: Vec<String>,
    /// Require external account binding with this key id and base64url MAC key.
    pub eab: Option<(String, String)>,
    /// Listen for ACME requests on this address instead of 127.0.0.1 (a swarm's bridge
    /// address, which the nodes' containers reach); pebble's own certificate names it.
    pub listen_ip: Option<std::net::Ipv4Addr>,
}

/// A running pebble and challtestsrv.
pub struct Pebble {
    dir: tempfile::TempDir,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    /// The ACME directory URL.
    pub directory: String,
    /// The root certificate of pebble's own HTTPS listener (`[proxy.acme] ca`).
    pub api_ca: PathBuf,
    pub management: u16,
    /// challtestsrv's DNS (`[proxy.acme.dns] nameservers`) and management ports.
    pub dns: u16,
    pub dns_management: u16,
    listen: u16,
    http_port: u16,
    tls_port: u16,
    options: PebbleOptions,
}

/// Fails with an install hint when pebble is missing.
pub fn require_pebble() {
    for bin in ["pebble", "pebble-challtestsrv", "curl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "`{bin}` is not installed: the ACME tests need a real ACME server; install Debian's `pebble` (it ships pebble-challtestsrv) and `curl` (scripts/test does)"
        );
    }
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on 127.0.0.1:`http_port` and TLS-ALPN-01 on
    /// 127.0.0.1:`tls_port` (the proxy's listeners).
    pub fn start(http_port: u16, tls_port: u16, options: PebbleOptions) -> Pebble {
        require_pebble();
        let dir = tempfile::Builder::new()
            .prefix("dockhand-pebble-")
            .tempdir()
            .expect("temp dir");
        // pebble's own HTTPS certificate, from a CA the agent is told to trust.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test API CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let listen_ip = options.listen_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let params = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            listen_ip.to_string(),
        ])
        .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("api.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("api.key"), key.serialize_pem()).unwrap();
        let api_ca = dir.path().join("api-ca.pem");
        std::fs::write(&api_ca, ca_cert.pem()).unwrap();
        let listen = free_port();
        let mut pebble = Pebble {
            directory: format!("https://{listen_ip}:{listen}/dir"),
            api_ca,
            management: free_port(),
            dns: free_udp_port(),
            dns_management: free_port(),
            listen,
            http_port,
            tls_port,
            options,
            pebble: None,
            challtestsrv: None,
            dir,
        };
        pebble.start_challtestsrv();
        pebble.start_pebble();
        pebble
    }

    fn start_challtestsrv(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("challtestsrv.log")).unwrap();
        let child = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{}", self.dns),
                "-management",
                &format!("127.0.0.1:{}", self.dns_management),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pebble-challtestsrv");
        self.challtestsrv = Some(child);
        wait_for_port(self.dns_management, "pebble-challtestsrv");
    }

    fn start_pebble(&mut self) {
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!(
                    "{}:{}",
                    self.options.listen_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST),
                    self.listen
                ),
                "managementListenAddress": format!("127.0.0.1:{}", self.management),
                "certificate": self.dir.path().join("api.pem"),
                "privateKey": self.dir.path().join("api.key"),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self.options.eab.is_some(),
                "externalAccountMACKeys": self.options.eab.iter().map(|(kid, key)| (kid.clone(), serde_json::json!(key))).collect::<serde_json::Map<String, serde_json::Value>>(),
                "domainBlocklist": self.options.blocklist,
                "certificateValidityPeriod": self.options.validity_secs.unwrap_or(0),
            }
        });
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        // Appended across restarts, so the order count covers every run.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args([
                "-dnsserver",
                &format!("127.0.0.1:{}", self.dns),
                "-strict=false",
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pebble");
        self.pebble = Some(child);
        wait_for_addr(
            (
                self.options
                    .listen_ip
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
                self.listen,
            )
                .into(),
            "pebble",
        );
        wait_for_port(self.management, "pebble's management interface");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pebble.log")
    }

    /// pebble's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many orders pebble was sent, over every run of it.
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// Stops pebble (challtestsrv keeps answering DNS); `resume` starts it again on the same
    /// ports, with a new CA and no memory of accounts or orders, like any pebble restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn resume(&mut self) {
        assert!(self.pebble.is_none(), "pebble is running");
        self.start_pebble();
    }

    /// The root certificate pebble issues under now (PEM), to verify served certificates.
    pub fn root_pem(&self) -> String {
        curl(&[
            "--cacert",
            &self.api_ca.display().to_string(),
            &format!("https://127.0.0.1:{}/roots/0", self.management),
        ])
    }

    /// Sets a TXT record in challtestsrv's DNS.
    pub fn set_txt(&self, host: &str, value: &str) {
        curl(&[
            "-X",
            "POST",
            "-d",
            &serde_json::json!({ "host": format!("{host}."), "value": value }).to_string(),
            &format!("http://127.0.0.1:{}/set-txt", self.dns_management),
        ]);
    }

    /// Makes challtestsrv's DNS answer `addr` for `host` (instead of 127.0.0.1).
    pub fn set_a(&self, host: &str, addr: std::net::Ipv4Addr) {
        curl(&[
            "-X",
            "POST",
            "-d",
            &serde_json::json!({ "host": format!("{host}."), "addresses": [addr.to_string()] })
                .to_string(),
            &format!("http://127.0.0.1:{}/add-a", self.dns_management),
        ]);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [self.pebble.take(), self.challtestsrv.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP port")
}

fn wait_for_port(port: u16, what: &str) {
    wait_for_addr(([127, 0, 0, 1], port).into(), what);
}

fn wait_for_addr(addr: std::net::SocketAddr, what: &str) {
    let port = addr.port();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {}:{port} within 20s",
            addr.ip()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
