//! README command 1: `dockhand up` on the bundled example serves it on localhost, and the
//! other commands run from the same folder reach it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use dockhand_test_support::{free_port, processes_with_env, signal_and_wait, wait_until};
use nix::sys::signal::Signal;

use crate::{expect, sandbox, show};

#[test]
fn up_serves_the_bundled_example_and_stops_cleanly_on_ctrl_c() {
    let sb = sandbox();
    let port = free_port();
    let https_port = free_port();
    let mut child = sb
        .cmd(&["up", "--json"])
        .env("DOCKHAND_LISTEN", format!("127.0.0.1:{port}"))
        .env("DOCKHAND_HTTPS_LISTEN", format!("127.0.0.1:{https_port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "up did not print its ready line ({e}): {line}\n{}",
                show(&out)
            )
        }
    };
    assert_eq!(ready["ready"], true);
    let urls: Vec<&str> = ready["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&format!("http://localhost:{port}/").as_str()),
        "{urls:?}"
    );

    let addr = format!("127.0.0.1:{port}");
    let page = crate::crash::http_get(&addr, "localhost", "/");
    assert!(page.contains("Dockhand"), "{page}");
    // Every URL `up` prints answers with a page (the web page is static files the proxy
    // serves; `/api` is the API's index page).
    for url in urls.iter().filter(|u| u.starts_with("http://")) {
        let path = url.splitn(4, '/').nth(3).unwrap_or("");
        let page = crate::crash::http_get(&addr, "localhost", &format!("/{path}"));
        assert!(
            page.to_ascii_lowercase().contains("<!doctype html>"),
            "{url}: {page}"
        );
    }
    let health = crate::crash::http_get(&addr, "localhost", "/api/health");
    assert!(health.contains("\"ok\""), "{health}");
    let visits = crate::crash::http_get(&addr, "localhost", "/api/visits");
    assert!(visits.contains("count"), "{visits}");

    // Local HTTPS: the example is served over TLS with the local CA's certificate, which a
    // client that trusts that CA (as `certs trust` prints it) accepts.
    assert!(
        urls.contains(&format!("https://localhost:{https_port}/").as_str()),
        "{urls:?}"
    );
    let mut ca = serde_json::Value::Null;
    dockhand_test_support::wait_until("the local certificate", Duration::from_secs(30), || {
        let (_, report) = sb.json(&["certs"]);
        let valid = report["certificates"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["host"] == "localhost" && r["state"] == "valid")
        });
        ca = report["local_ca"].clone();
        valid && ca.is_object()
    });
    let (code, trust) = sb.json(&["certs", "trust"]);
    assert_eq!(code, Some(0), "{trust}");
    assert_eq!(trust["pem"], ca["pem"]);
    assert!(
        trust["instructions"]
            .to_string()
            .contains("update-ca-certificates"),
        "{trust}"
    );
    let page = crate::acme::https_get_trusting(
        ca["pem"].as_str().unwrap(),
        format!("127.0.0.1:{https_port}").parse().unwrap(),
        "localhost",
        "/api/health",
    );
    assert!(page.contains("\"ok\""), "{page}");
    // Plain HTTP on localhost is not redirected (the local CA is trusted only once told).
    let page = crate::crash::http_get(&addr, "localhost", "/api/health");
    assert!(page.contains("\"ok\""), "{page}");

    // The example was written where the user can edit it; commands from here reach the agent.
    assert!(sb.path().join(".dockhand/example/dockhand.toml").exists());
    let (code, status) = sb.json(&["status"]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["app"], "hello");
    let marker = format!("{}/", status["agent"]["id"].as_str().unwrap());
    let out = sb.run(&["deploy"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sb.run(&["rollback"]);
    assert!(out.status.success(), "{}", show(&out));

    // Local backups work out of the box: the visit counter's database and the app's files,
    // encrypted to the key pair `up` made, and a restore drill of them passes.
    let (code, backup) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{backup}");
    let (code, drill) = sb.json(&["backup", "verify"]);
    assert_eq!(code, Some(0), "{drill}");
    let drilled = drill.to_string();
    assert!(
        drilled.contains("visits") && drilled.contains("app"),
        "{drill}"
    );

    // Ctrl-C: everything stops, nothing is left behind.
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(0));
    assert!(processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty());
    assert!(!sb.path().join(".dockhand/agent.sock").exists());
}

#[test]
fn ctrl_c_during_the_first_deploy_stops_cleanly_without_leftovers() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &crate::testapp_toml("VERSION = \"v1\", STARTUP_DELAY_MS = \"2000\"", 1, "20s"),
    );
    let mut child = sb
        .cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut marker = String::new();
    wait_until(
        "the first deploy to be under way",
        Duration::from_secs(30),
        || {
            let (code, s) = sb.json(&["status"]);
            if code != Some(3) && !s["deploying"].is_null() {
                marker = format!("{}/", s["agent"]["id"].as_str().unwrap());
                return true;
            }
            false
        },
    );
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(0));
    assert!(processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty());
}

#[test]
fn up_of_an_app_that_never_gets_healthy_says_why_and_exits_1() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &crate::testapp_toml("VERSION = \"v1\", HEALTHY = \"false\"", 1, "2s"),
    );
    let out = expect(&sb, &["up"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed its health gate") && err.contains("503"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("the app is up"),
        "{}",
        show(&out)
    );
    assert!(!sb.state_dir().join("agent.sock").exists());
}
