//! `/metrics` published through the app's proxy behind a bearer token from the secrets file:
//! curl without or with a wrong token gets 401, with the token the exposition, which
//! Prometheus' `promtool check metrics` accepts.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::monitoring::require_promtool;
use crate::{sandbox, testapp_toml};

const TOKEN: &str = "scrape-me-8841";

fn curl(addr: &str, auth: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-w",
        "\n%{http_code}",
        "-H",
        "Host: app.test",
    ]);
    if let Some(a) = auth {
        cmd.args(["-H", &format!("Authorization: {a}")]);
    }
    let out = cmd
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl is installed (apt install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

#[test]
fn metrics_on_a_proxy_route_need_the_bearer_token_and_pass_promtool() {
    require_promtool();
    let sb = sandbox();
    sb.write(".dockhand/secrets.env", &format!("METRICS_TOKEN={TOKEN}\n"));
    std::fs::set_permissions(
        sb.path().join(".dockhand/secrets.env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[monitor]\ninterval = \"500ms\"\nmetrics_route = {{ host = \"app.test\", path = \"/metrics\", token = \"${{secret.METRICS_TOKEN}}\" }}\n",
            testapp_toml("VERSION = \"v1\"", 1, "20s")
        ),
    );
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    // Traffic for the counters.
    for _ in 0..5 {
        crate::crash::http_get(&addr, "app.test", "/");
    }
    let (code, body) = curl(&addr, None);
    assert_eq!(code, "401", "{body}");
    let (code, _) = curl(&addr, Some("Bearer wrong-token-0000"));
    assert_eq!(code, "401");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (code, text) = curl(&addr, Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, "200", "{text}");
    assert!(
        text.contains("dockhand_proxy_requests_total{service=\"web\""),
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
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The token never shows in what the agent reports.
    let events = String::from_utf8_lossy(&sb.run(&["events", "-n", "500"]).stdout).into_owned();
    assert!(!events.contains(TOKEN), "{events}");
}
