//! The agent of a `[cluster]` project is watch-only: it deploys nothing on its host, and
//! every path that would — the socket's deploy, reload and rollback, `db upgrade`, GitOps'
//! `update now` (the same check a webhook delivery runs), the dashboard's deploy and rollback
//! buttons — is refused with exit code 2 (the dashboard: its message), saying that the app runs
//! on the swarm and is deployed with `dockhand deploy` from the project. No swarm is needed:
//! the agent's watch of the swarm only degrades while no manager answers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dockhand_test_support::docker::{unique_app, TESTAPP_SHELL_IMAGE};

use crate::sandbox;

const REFUSAL: &str = "this app runs on the swarm: deploy with `dockhand deploy` from the project";

/// A free loopback port for the dashboard.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl` over plain HTTP: (status, headers, body).
fn curl(url: &str, cookie: Option<&str>, form: Option<&str>) -> (String, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "20", "-D", "-", "-w", "\n%{http_code}"]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    if let Some(f) = form {
        cmd.args(["--data", f]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (code.to_string(), headers.to_string(), body.to_string())
}

#[test]
fn a_watch_only_agent_refuses_every_path_that_would_deploy_the_app_on_its_host() {
    let app = unique_app("wo");
    let dashboard = free_port();
    let sb = sandbox().with_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "{app}"

[destinations.m1]
host = "ssh://root@m1.invalid"

[cluster]
engine = "swarm"
managers = ["m1"]
placement = {{ db = ["node.labels.db == main"] }}

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080

[databases.db]
engine = "postgres"

[dashboard]
listen = "127.0.0.1:{dashboard}"
"#
        ),
    );
    let secrets = sb.write(".dockhand/secrets.env", "DB_PASSWORD=watch-only-pw\n");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let log_path = sb.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut agent = sb
        .cmd(&["agent"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dockhand agent");
    let socket = sb.state_dir().join("agent.sock");
    let socket = socket.to_str().unwrap();
    // The requests come from a directory without the project (in it, `deploy` would go to
    // the swarm, not to this agent).
    let elsewhere = sandbox();
    let run = |args: &[&str]| {
        let mut all = vec!["--socket", socket];
        all.extend_from_slice(args);
        all.push("--json");
        let out = elsewhere
            .cmd(&all)
            .stdin(Stdio::null())
            .output()
            .expect("run dockhand");
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            value,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, alerts, _) = run(&["alerts"]);
        if code == Some(0)
            && alerts["rules"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "node_down"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch-only agent did not answer within 60s:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    for args in [
        &["deploy"][..],
        &["rollback"],
        &["rollback", "1"],
        &["reload"],
        &["db", "upgrade", "db"],
        &["update", "now"],
    ] {
        let (code, answer, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {answer:#} {stderr}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(REFUSAL), "{args:?}: {answer:#}");
    }

    // The dashboard's buttons: the same refusal, shown to the operator.
    let (code, login, _) = run(&["dashboard", "--role", "operator", "--no-open"]);
    assert_eq!(code, Some(0), "{login:#}");
    let url = login["url"].as_str().expect("a login url").to_string();
    let base = url.split("/login").next().unwrap().to_string();
    let (_, headers, _) = curl(&url, None, None);
    let cookie = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {headers}"))
        .to_string();
    let (code, _, page) = curl(&format!("{base}/deploys"), Some(&cookie), None);
    assert_eq!(code, "200", "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field on /deploys: {page}"))
        .to_string();
    for (path, form) in [
        ("/deploys/deploy", format!("csrf={csrf}")),
        ("/deploys/rollback", format!("csrf={csrf}&release=1")),
    ] {
        let (code, _, body) = curl(&format!("{base}{path}"), Some(&cookie), Some(&form));
        assert_eq!(code, "303", "{path}: {body}");
        let (_, _, page) = curl(&format!("{base}/deploys"), Some(&cookie), None);
        let shown = page.replace("&#96;", "`").replace("&#x60;", "`");
        assert!(
            shown.contains(REFUSAL),
            "{path}: the page does not say it:\n{page}"
        );
    }

    let _ = agent.kill();
    let _ = agent.wait();
}
