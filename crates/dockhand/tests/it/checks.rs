//! `[monitor.checks]` against real peers: an HTTP server (Python's `http.server`) whose page
//! loses the wanted text, a TCP listener that goes away, and a command whose file is removed.
//! Each check shows in `status`, fails after its threshold, alerts once on a real webhook
//! receiver, and recovers.

use std::time::Duration;

use dockhand_test_support::{free_port, wait_until};

use crate::monitoring::Receiver;
use crate::sandbox;

/// Python's HTTP server on `port`, serving `dir`; killed on drop.
struct HttpPeer(std::process::Child);

impl HttpPeer {
    fn start(port: u16, dir: &std::path::Path) -> HttpPeer {
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 is installed (apt install python3)");
        wait_until("the HTTP peer listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        HttpPeer(child)
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every notice the webhook received: (rule, subject, kind).
fn notices(receiver: &Receiver) -> Vec<(String, String, String)> {
    receiver
        .bodies("/hook")
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .flat_map(|v| v["alerts"].as_array().cloned().unwrap_or_default())
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("rule"), s("subject"), s("kind"))
        })
        .collect()
}

fn count(receiver: &Receiver, subject: &str, kind: &str) -> usize {
    notices(receiver)
        .iter()
        .filter(|(r, s, k)| r == "check" && s == subject && k == kind)
        .count()
}

fn checks(sb: &dockhand_test_support::Sandbox) -> serde_json::Value {
    sb.json(&["status"]).1["checks"].clone()
}

fn state(checks: &serde_json::Value, name: &str) -> String {
    checks
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .map(|c| c["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn http_tcp_and_command_checks_fail_alert_and_recover() {
    let sb = sandbox();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<h1>Welcome to the shop</h1>\n",
    )
    .unwrap();
    let http_port = free_port();
    let _http = HttpPeer::start(http_port, site.path());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let flag = sb.path().join("queue-ok");
    std::fs::write(&flag, "").unwrap();
    let receiver = Receiver::start();
    sb.write(
        "dockhand.toml",
        &format!(
            r#"{}
[monitor]
interval = "500ms"

[monitor.checks.home]
http = "http://127.0.0.1:{http_port}/"
body = "Welcome"
interval = "200ms"
timeout = "2s"

[monitor.checks.db]
tcp = "{tcp_addr}"
interval = "200ms"
timeout = "2s"

[monitor.checks.queue]
command = "test -f {flag}"
interval = "200ms"
timeout = "2s"

[alerts]
webhook = "http://{receiver}/hook"
group_wait = "0s"
"#,
            crate::testapp_toml("VERSION = \"v1\"", 1, "20s"),
            flag = flag.display(),
            receiver = receiver.addr,
        ),
    );
    let _agent = sb.start_agent();
    wait_until("every check passes", Duration::from_secs(30), || {
        let c = checks(&sb);
        ["home", "db", "queue"]
            .iter()
            .all(|n| state(&c, n) == "passing")
    });
    let c = checks(&sb);
    let home = c
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "home")
        .unwrap();
    assert!(
        home["detail"].as_str().unwrap().contains("answered 200"),
        "{home}"
    );

    // Break all three: the page loses its text, the listener goes, the file goes.
    std::fs::write(
        site.path().join("index.html"),
        "<h1>Down for maintenance</h1>\n",
    )
    .unwrap();
    drop(tcp);
    std::fs::remove_file(&flag).unwrap();
    wait_until("every check fails", Duration::from_secs(30), || {
        let c = checks(&sb);
        ["home", "db", "queue"]
            .iter()
            .all(|n| state(&c, n) == "failing")
    });
    let c = checks(&sb);
    let detail = |name: &str| {
        c.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(detail("home").contains("without the text `Welcome`"), "{c}");
    assert!(detail("db").contains("cannot connect"), "{c}");
    assert!(detail("queue").contains("exited 1"), "{c}");
    let human = String::from_utf8_lossy(&sb.run(&["status"]).stdout).into_owned();
    assert!(human.contains("check home failing"), "{human}");
    wait_until("an alert per check", Duration::from_secs(30), || {
        ["home", "db", "queue"]
            .iter()
            .all(|n| count(&receiver, n, "firing") == 1)
    });

    // Mend them: passing again, and a recovery notice each.
    std::fs::write(site.path().join("index.html"), "<h1>Welcome back</h1>\n").unwrap();
    let _tcp = std::net::TcpListener::bind(tcp_addr).unwrap();
    std::fs::write(&flag, "").unwrap();
    wait_until("every check passes again", Duration::from_secs(30), || {
        let c = checks(&sb);
        ["home", "db", "queue"]
            .iter()
            .all(|n| state(&c, n) == "passing")
    });
    wait_until(
        "the recoveries reach the webhook",
        Duration::from_secs(30),
        || {
            ["home", "db", "queue"]
                .iter()
                .all(|n| count(&receiver, n, "resolved") == 1)
        },
    );
    for n in ["home", "db", "queue"] {
        assert_eq!(
            count(&receiver, n, "firing"),
            1,
            "one alert for check {n}, not one per result: {:?}",
            notices(&receiver)
        );
    }
}
