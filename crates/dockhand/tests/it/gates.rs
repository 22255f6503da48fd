//! What stops a deploy before it takes traffic (a failing pre_deploy hook, a worker that does
//! not stay up, a process that never listens), and what a deploy applies on the way
//! (SIGHUP reload, post_deploy hooks).

use std::time::Duration;

use dockhand_test_support::wait_until;

use crate::crash::http_get;
use crate::{expect, sandbox, testapp_toml};

fn with_extra(base: &str, extra: &str) -> String {
    format!("{base}{extra}")
}

#[test]
fn a_failing_pre_deploy_hook_aborts_and_the_old_release_keeps_serving() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    sb.write(
        "dockhand.toml",
        &with_extra(
            &testapp_toml("VERSION = \"v2\"", 1, "20s"),
            "hooks = { pre_deploy = \"echo migrating $VERSION; exit 3\" }\n",
        ),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pre_deploy") && err.contains("exit code 3"),
        "{err}"
    );
    assert!(
        err.contains("migrating v2"),
        "the hook runs in the new release's env: {err}"
    );
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");

    // A hook that succeeds lets the deploy through; post_deploy runs after the swap.
    sb.write(
        "dockhand.toml",
        &with_extra(
            &testapp_toml("VERSION = \"v3\"", 1, "20s"),
            "hooks = { pre_deploy = \"true\", post_deploy = \"echo done > post.txt\" }\n",
        ),
    );
    expect(&sb, &["deploy"], 0);
    assert_eq!(http_get(&addr, "app.test", "/version"), "v3");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("post.txt"))
            .unwrap()
            .trim(),
        "done"
    );
}

#[test]
fn a_worker_that_exits_fails_its_gate_and_one_that_stays_up_passes() {
    let sb = sandbox();
    let base = testapp_toml("VERSION = \"v1\"", 1, "20s");
    sb.write(
        "dockhand.toml",
        &with_extra(&base, "\n[services.worker]\ncommand = \"sleep 600\"\n"),
    );
    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let worker = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "worker")
        .unwrap()
        .clone();
    assert_eq!(worker["instances"][0]["state"], "running", "{status}");
    assert_eq!(worker["instances"][0]["health"], "none", "{status}");

    sb.write(
        "dockhand.toml",
        &with_extra(
            &base,
            "\n[services.worker]\ncommand = \"echo cannot reach the queue >&2; exit 1\"\n",
        ),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not stay up"), "{err}");
    assert!(
        err.contains("cannot reach the queue"),
        "the last log lines are shown: {err}"
    );
}

#[test]
fn a_service_that_ignores_port_fails_with_a_hint() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"v1\"", 1, "1s").replace("command = \"", "command = \"PORT=1 "),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("$PORT"), "{err}");
}

#[test]
fn sighup_reloads_a_changed_configuration() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let agent = sb.start_agent();
    let addr = sb.proxy_addr();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v2\"", 1, "20s"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the reload to serve v2", Duration::from_secs(30), || {
        http_get(&addr, "app.test", "/version") == "v2"
    });
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["note"], "reload", "{releases}");
}

#[test]
fn a_taken_proxy_port_is_a_clear_startup_error() {
    let sb = sandbox();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"v1\"", 1, "20s")
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    );
    let out = expect(&sb, &["agent"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port.to_string()) && err.contains("[proxy] listen"),
        "{err}"
    );
}

#[test]
fn a_service_waiting_for_a_dependency_s_health_starts_after_it_passed_its_gate() {
    let sb = sandbox();
    let marker = sb.path().join("api-checked");
    // `web` refuses to start unless `api`'s health command has run (and passed) already:
    // only a deploy that gates `api` before starting `web` gets through.
    let config = format!(
        "{}depends_on = [{{ service = \"api\", condition = \"healthy\" }}]\n\n[services.api]\ncommand = \"sleep 600\"\nhealth = {{ command = \"touch {m}\", interval = \"100ms\", healthy_threshold = 1 }}\n",
        testapp_toml("VERSION = \"v1\"", 1, "20s").replace(
            &format!("command = \"{}\"", crate::testapp_bin().display()),
            &format!(
                "command = \"sh -c 'test -f {m} && exec {}'\"",
                crate::testapp_bin().display(),
                m = marker.display()
            ),
        ),
        m = marker.display()
    );
    sb.write("dockhand.toml", &config);
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    std::fs::remove_file(&marker).unwrap();
    sb.write("dockhand.toml", &config.replace("\"v1\"", "\"v2\""));
    let out = expect(&sb, &["deploy"], 0);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let healthy = text
        .find("-api-0 is healthy")
        .unwrap_or_else(|| panic!("{text}"));
    let started = text
        .find("-web-0 started")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        healthy < started,
        "api passed its gate before web started: {text}"
    );
    assert!(
        text.contains("waiting for api to pass its health check before starting"),
        "{text}"
    );
    assert_eq!(http_get(&addr, "app.test", "/version"), "v2");
}
