//! The deploy invariant: under continuous keep-alive load, deploys, a failing release and a
//! rollback drop no request, and the failing release never receives one.

use dockhand_test_support::Load;

use crate::{expect, sandbox, service_logs, show, testapp_toml};

#[test]
fn deploys_failed_release_and_rollback_under_load_drop_nothing() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"a\"", 2, "20s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();

    let load = Load::start(&addr, "app.test", "/version", 50);
    dockhand_test_support::wait_until(
        "the first answers",
        std::time::Duration::from_secs(20),
        || load.snapshot().ok > 100,
    );

    for i in 0..20 {
        let version = if i % 2 == 0 { "b" } else { "a" };
        sb.write(
            "dockhand.toml",
            &testapp_toml(&format!("VERSION = \"{version}\""), 2, "20s"),
        );
        let out = sb.run(&["deploy"]);
        assert_eq!(out.status.code(), Some(0), "deploy {i}: {}", show(&out));
        let seen = load.snapshot().ok;
        // Traffic must keep flowing to the new release before the next deploy.
        dockhand_test_support::wait_until(
            "requests after the deploy",
            std::time::Duration::from_secs(20),
            || load.snapshot().ok > seen + 50,
        );
    }

    // A release whose health never passes: the deploy fails, the old one keeps serving.
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"broken\", HEALTHY = \"false\"", 2, "2s"),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("health"), "{err}");
    assert!(
        err.contains("503"),
        "the CLI shows the last health answers: {err}"
    );
    assert!(
        err.contains("listening on"),
        "the CLI shows the last log lines: {err}"
    );
    let (_, releases) = sb.json(&["releases"]);
    let broken_release = releases[0]["id"].as_i64().unwrap();
    assert_eq!(releases[0]["status"], "failed", "{releases}");

    let seen = load.snapshot().ok;
    dockhand_test_support::wait_until(
        "requests after the failed deploy",
        std::time::Duration::from_secs(20),
        || load.snapshot().ok > seen + 50,
    );

    // Roll back to the previous release (version "b" after 20 alternating deploys).
    expect(&sb, &["rollback"], 0);
    let seen = load.snapshot().ok;
    dockhand_test_support::wait_until(
        "requests after the rollback",
        std::time::Duration::from_secs(20),
        || load.snapshot().ok > seen + 50,
    );

    let report = load.finish();
    assert_eq!(
        report.failures(),
        0,
        "non-2xx: {:?}, errors (first 10): {:?}",
        report.non_2xx,
        &report.errors[..report.errors.len().min(10)]
    );
    assert!(
        report.by_version.contains_key("a") && report.by_version.contains_key("b"),
        "{:?}",
        report.by_version
    );
    assert!(
        !report.by_version.contains_key("broken"),
        "{:?}",
        report.by_version
    );

    // The failing release's instances never received a request.
    let broken: Vec<_> = service_logs(&sb, "web")
        .into_iter()
        .filter(|(name, _)| name.contains(&format!("r{broken_release}-")))
        .collect();
    assert_eq!(
        broken.len(),
        2,
        "two instances of the failed release logged"
    );
    for (name, text) in broken {
        assert!(text.contains("listening on"), "{name}: {text}");
        assert!(
            !text.contains("request GET"),
            "{name} served a request:\n{text}"
        );
    }
    let (_, status) = sb.json(&["status"]);
    assert_eq!(
        status["services"][0]["instances"].as_array().unwrap().len(),
        2,
        "{status}"
    );
}
