//! `dockhand top`: the monitor's latest figures per service, as JSON and as the text screen a
//! pipe gets once.

use std::time::Duration;

use dockhand_test_support::wait_until;

use crate::crash::http_get;
use crate::{expect, sandbox, testapp_toml};

#[test]
fn top_shows_each_service_s_requests_errors_and_resources() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[monitor]\ninterval = \"500ms\"\nmetrics_listen = false\n",
            testapp_toml("VERSION = \"v1\"", 2, "20s")
        ),
    );
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    // Keep requests coming (one in ten a 500) until top has counted both kinds.
    let mut top = serde_json::Value::Null;
    wait_until(
        "top counts the requests and the errors",
        Duration::from_secs(30),
        || {
            for i in 0..20 {
                let path = if i % 10 == 0 {
                    "/status/500"
                } else {
                    "/version"
                };
                http_get(&addr, "app.test", path);
            }
            let (code, report) = sb.json(&["top"]);
            assert_eq!(code, Some(0), "{report}");
            top = report;
            let web = &top["services"][0];
            web["requests_per_second"].as_f64().unwrap_or(0.0) > 0.0
                && web["error_ratio"].as_f64().unwrap_or(0.0) > 0.0
                && web["memory_bytes"].as_u64().unwrap_or(0) > 0
        },
    );
    let web = &top["services"][0];
    assert_eq!(web["name"], "web", "{top}");
    assert_eq!(web["instances"], 2, "{top}");
    assert_eq!(web["up"], 2, "{top}");
    let ratio = web["error_ratio"].as_f64().unwrap();
    assert!(ratio < 0.5, "about one in ten failed, not most: {top}");
    assert!(web["p99_ms"].as_f64().is_some(), "{top}");
    assert!(top["host"]["memory_used_ratio"].as_f64().is_some(), "{top}");

    // Piped, the text screen once, with the service's row, and no colour codes.
    let out = expect(&sb, &["top"], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SERVICE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("web") && l.contains("2/2")),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes in a pipe: {text:?}"
    );
}
