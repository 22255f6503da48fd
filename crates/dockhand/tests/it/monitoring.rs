//! Monitoring through the real binary: `/metrics` validated by Prometheus' own `promtool`,
//! alerts delivered to real receivers (an HTTP server here, `aiosmtpd` for mail), and the
//! watch after a deploy that puts the previous release back.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use dockhand_test_support::{wait_until, Sandbox};

use crate::crash::http_get;
use crate::{sandbox, testapp_toml};

/// `GET path` on `addr` (no Host needed); the body.
fn get_plain(addr: &str, path: &str) -> String {
    http_get(addr, "localhost", path)
}

fn metrics_addr(sb: &Sandbox) -> String {
    let (_, status) = sb.json(&["status"]);
    status["agent"]["metrics_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("status names no metrics address: {status}"))
        .to_string()
}

/// The value of the exposition line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn require_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!("promtool not found: install Debian's `prometheus` package (scripts/test does)");
    }
}

#[test]
fn metrics_count_proxied_requests_and_pass_promtool() {
    require_promtool();
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[monitor]\ninterval = \"500ms\"\n",
            testapp_toml("VERSION = \"v1\", FAIL_PERCENT = \"20\"", 1, "20s")
        ),
    );
    let _agent = sb.start_agent();
    let proxy = sb.proxy_addr();
    for _ in 0..50 {
        http_get(&proxy, "app.test", "/");
    }
    let addr = metrics_addr(&sb);
    let mut text = String::new();
    wait_until(
        "the monitor counts 50 requests",
        Duration::from_secs(20),
        || {
            text = get_plain(&addr, "/metrics");
            let ok = metric(
                &text,
                "dockhand_proxy_requests_total{service=\"web\",route=\"app.test/\",code=\"2xx\"}",
            );
            let err = metric(
                &text,
                "dockhand_proxy_requests_total{service=\"web\",route=\"app.test/\",code=\"5xx\"}",
            );
            ok == Some(40.0) && err == Some(10.0)
        },
    );
    assert_eq!(
        metric(
            &text,
            "dockhand_proxy_request_duration_seconds_count{service=\"web\",route=\"app.test/\"}"
        ),
        Some(50.0),
        "{text}"
    );
    assert!(
        text.contains("dockhand_instance_up{service=\"web\""),
        "{text}"
    );
    assert!(
        text.contains("dockhand_instance_memory_bytes{service=\"web\""),
        "{text}"
    );
    assert!(
        text.contains("dockhand_host_disk_bytes{mount=\"/\",kind=\"total\"}"),
        "{text}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get_plain(&addr, "/other").contains("/metrics"));

    // `status` shows the same figures: 50 requests, a fifth of them 5xx, and the host.
    let (_, status) = sb.json(&["status"]);
    let traffic = &status["services"][0]["traffic"];
    assert_eq!(traffic["requests"], 50, "{status}");
    assert!(
        (traffic["error_ratio"].as_f64().unwrap() - 0.2).abs() < 1e-9,
        "{status}"
    );
    assert!(traffic["p99_ms"].as_f64().is_some(), "{status}");
    assert!(
        status["host"]["memory_used_ratio"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    let human = String::from_utf8_lossy(&sb.run(&["status"]).stdout).into_owned();
    assert!(human.contains("5xx 20.0 %"), "{human}");
}

/// A local HTTP receiver: every request's path and body, answered 200.
pub(crate) struct Receiver {
    pub(crate) addr: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                sink.lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { addr, got }
    }

    pub(crate) fn bodies(&self, path: &str) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// A real SMTP server (Python's aiosmtpd) writing each message into a Maildir.
struct Smtp {
    child: std::process::Child,
    maildir: std::path::PathBuf,
}

impl Smtp {
    fn start(port: u16, dir: &std::path::Path) -> Smtp {
        if Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .map_or(true, |s| !s.success())
        {
            panic!("aiosmtpd not found: `python3 -m pip install aiosmtpd` (scripts/test does)");
        }
        let maildir = dir.to_path_buf();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        wait_until("aiosmtpd listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Smtp { child, maildir }
    }

    /// Every message received, as text.
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.join("mail").join("new");
        let mut out: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        (
                            e.path(),
                            std::fs::read_to_string(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.into_iter().map(|(_, m)| m).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alerting_toml(receiver: &str, smtp_port: u16) -> String {
    format!(
        r#"app = "it"

[proxy]
listen = "127.0.0.1:0"

[services.web]
command = "{bin}"
port = 8000
env = {{ VERSION = "v1" }}
health = {{ path = "/health", interval = "100ms", timeout = "300ms", healthy_threshold = 1, unhealthy_threshold = 2, deploy_timeout = "5s" }}
route = {{ host = "app.test", path = "/" }}

[monitor]
interval = "500ms"

[alerts]
webhook = "http://{receiver}/hook"
slack = "http://{receiver}/slack"
discord = "http://{receiver}/discord"
ntfy = "http://{receiver}/ntfy"
telegram = {{ token = "${{secret.TELEGRAM_TOKEN}}", chat_id = "42", api = "http://{receiver}" }}
email = "ops@example.org"
smtp = {{ host = "127.0.0.1", port = {smtp_port}, security = "none", from = "dockhand@example.org", timeout = "3s" }}
group_wait = "0s"

[alerts.rules.service_down]
for = "1s"
"#,
        bin = dockhand_test_support::testapp_bin().display()
    )
}

const TOKEN: &str = "tg-token-7731";

#[test]
fn a_service_kept_down_alerts_once_and_recovers_once_on_every_channel() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let receiver = Receiver::start();
    let smtp_port = dockhand_test_support::free_port();
    let sb = sandbox();
    let smtp = Smtp::start(smtp_port, sb.path());
    sb.write(
        ".dockhand/secrets.env",
        &format!("TELEGRAM_TOKEN={TOKEN}\n"),
    );
    std::fs::set_permissions(
        sb.path().join(".dockhand/secrets.env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    sb.write("dockhand.toml", &alerting_toml(&receiver.addr, smtp_port));
    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let pid = status["services"][0]["instances"][0]["pid"]
        .as_u64()
        .unwrap() as i32;

    // Kept down: its process group stopped, it answers no probe (and is not restarted: it
    // did not exit).
    kill(Pid::from_raw(-pid), Signal::SIGSTOP).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.bodies("/hook").is_empty() {
        if std::time::Instant::now() > deadline {
            let events = sb.run(&["events"]);
            panic!(
                "no down alert within 30s; events:\n{}\nstatus: {}",
                String::from_utf8_lossy(&events.stdout),
                sb.json(&["status"]).1
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, listed) = sb.json(&["alerts"]);
    assert_eq!(listed["firing"][0]["rule"], "service_down", "{listed}");
    kill(Pid::from_raw(-pid), Signal::SIGCONT).unwrap();
    wait_until(
        "the recovery reaches the webhook",
        Duration::from_secs(30),
        || receiver.bodies("/hook").len() >= 2,
    );
    wait_until("both mails arrive", Duration::from_secs(30), || {
        smtp.messages().len() >= 2
    });
    // Nothing more comes: exactly one down alert and one recovery.
    std::thread::sleep(Duration::from_secs(3));
    let hooks = receiver.bodies("/hook");
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let first: serde_json::Value = serde_json::from_str(&hooks[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(&hooks[1]).unwrap();
    assert_eq!(first["alerts"][0]["kind"], "firing", "{first}");
    assert_eq!(first["alerts"][0]["rule"], "service_down");
    assert_eq!(first["alerts"][0]["subject"], "web");
    assert_eq!(second["alerts"][0]["kind"], "resolved", "{second}");

    // Each shape, once per notice.
    let slack = receiver.bodies("/slack");
    assert_eq!(slack.len(), 2, "{slack:?}");
    let s: serde_json::Value = serde_json::from_str(&slack[0]).unwrap();
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .starts_with("[it] FIRING: web: 0 of 1 instances up"),
        "{s}"
    );
    let d: serde_json::Value = serde_json::from_str(&receiver.bodies("/discord")[1]).unwrap();
    assert!(
        d["content"].as_str().unwrap().starts_with("[it] RESOLVED"),
        "{d}"
    );
    assert_eq!(receiver.bodies("/ntfy").len(), 2);
    assert!(receiver.bodies("/ntfy")[0].contains("[firing] service_down (web)"));
    let tg = receiver.bodies(&format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(tg.len(), 2, "the token is in the Bot API's path");
    assert!(tg[0].contains("\"chat_id\":\"42\""), "{tg:?}");

    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0].contains("Subject: [it] FIRING: web: 0 of 1 instances up")
            || mails[1].contains("Subject: [it] FIRING: web: 0 of 1 instances up"),
        "{mails:?}"
    );
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: [it] RESOLVED")
                && m.contains("[resolved] service_down (web)")),
        "{mails:?}"
    );
    assert!(mails.iter().all(|m| m.contains("To: ops@example.org")));

    // The token never reaches the event log.
    let events = sb.run(&["events", "--json"]);
    assert!(!String::from_utf8_lossy(&events.stdout).contains(TOKEN));
}

#[test]
fn alerts_wait_for_a_dead_smtp_server_across_an_agent_restart() {
    let receiver = Receiver::start();
    let smtp_port = dockhand_test_support::free_port();
    let sb = sandbox();
    sb.write(
        ".dockhand/secrets.env",
        &format!("TELEGRAM_TOKEN={TOKEN}\n"),
    );
    std::fs::set_permissions(
        sb.path().join(".dockhand/secrets.env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    sb.write("dockhand.toml", &alerting_toml(&receiver.addr, smtp_port));
    let mut agent = sb.start_agent();
    // A failed deploy alerts (the new release never gets healthy).
    sb.write(
        "dockhand.toml",
        &alerting_toml(&receiver.addr, smtp_port)
            .replace("VERSION = \"v1\"", "VERSION = \"v2\", HEALTHY = \"false\""),
    );
    crate::expect(&sb, &["deploy"], 1);
    wait_until(
        "the webhook gets the deploy alert",
        Duration::from_secs(30),
        || {
            receiver
                .bodies("/hook")
                .iter()
                .any(|b| b.contains("\"rule\":\"deploy\""))
        },
    );
    let mut listed = serde_json::Value::Null;
    wait_until(
        "the mail waits for another attempt",
        Duration::from_secs(30),
        || {
            listed = sb.json(&["alerts"]).1;
            listed["undelivered"].as_u64() == Some(1) && listed["last_error"].is_string()
        },
    );
    assert!(
        listed["last_error"]
            .as_str()
            .unwrap()
            .contains(&smtp_port.to_string()),
        "{listed}"
    );
    agent.terminate();

    let smtp = Smtp::start(smtp_port, sb.path());
    let _agent = sb.start_agent();
    wait_until(
        "the mail is delivered after the restart",
        Duration::from_secs(60),
        || !smtp.messages().is_empty(),
    );
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].contains("Subject: [it] ALERT: release 2"),
        "{mails:?}"
    );
    // The webhook got it once, not again after the restart.
    let hooks = receiver.bodies("/hook");
    assert_eq!(
        hooks
            .iter()
            .filter(|b| b.contains("\"rule\":\"deploy\""))
            .count(),
        1,
        "{hooks:?}"
    );
}

#[test]
fn a_release_failing_requests_after_its_gate_is_rolled_back_by_the_watch() {
    let sb = sandbox();
    let toml = |env: &str| {
        format!(
            "{}\n[monitor]\ninterval = \"500ms\"\n\n[monitor.watch]\nwindow = \"1m\"\n",
            testapp_toml(env, 2, "20s")
        )
    };
    sb.write("dockhand.toml", &toml("VERSION = \"v1\""));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let load = dockhand_test_support::Load::start(&addr, "app.test", "/", 4);
    // A baseline for release 1.
    std::thread::sleep(Duration::from_secs(2));
    // Release 2 passes its health gate but answers 500 to a third of the requests.
    sb.write(
        "dockhand.toml",
        &toml("VERSION = \"v2\", FAIL_PERCENT = \"33\""),
    );
    crate::expect(&sb, &["deploy"], 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = sb.json(&["status"]).1;
        if status["current_release"]["id"] == 1
            && status["services"][0]["instances"]
                .as_array()
                .is_some_and(|a| a.iter().all(|i| i["release"] == 1))
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            let events = sb.run(&["events"]);
            panic!(
                "release 1 is not back within 60s; events:\n{}\nstatus: {status}",
                String::from_utf8_lossy(&events.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let after_rollback = load.snapshot();
    std::thread::sleep(Duration::from_secs(2));
    let end = load.finish();
    assert!(
        after_rollback.failures() > 0,
        "release 2 failed some requests before the rollback: {after_rollback:?}"
    );
    assert_eq!(
        end.failures(),
        after_rollback.failures(),
        "no request fails once the rollback completed: {end:?}"
    );
    assert!(end.ok > after_rollback.ok, "{end:?}");
    let events = String::from_utf8_lossy(&sb.run(&["events"]).stdout).into_owned();
    assert!(
        events.contains(
            "release 2 failed its watch after the cutover and is rolled back to release 1: web:"
        ) && events.contains("answered 5xx since the cutover"),
        "{events}"
    );
    assert!(
        events.contains("alert: deploy"),
        "the alert says why: {events}"
    );
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");
    // The rejected release is recorded as failed, so a plain rollback never returns to it
    // (it was `retired` and activated last, the "previous" release, until the fix).
    let releases = sb.json(&["releases"]).1;
    let two = releases
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == 2))
        .unwrap_or_else(|| panic!("release 2 is listed: {releases}"));
    assert_eq!(two["status"], "failed", "{releases}");
    let out = sb.run(&["rollback"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no earlier release"), "{err}");
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");
}
