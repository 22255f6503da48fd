//! `[update] images = true` with the real Docker Engine (no registry is reachable here, so the
//! tag is moved in the engine, as a pull by something else would): a new image behind the
//! service's tag is deployed through the gate; one that fails its health check is rolled back
//! and not tried again; the tag moving on to a good image deploys again.

use std::time::Duration;

use dockhand_test_support::docker::{
    docker, docker_ok, ensure_test_images, unique_app, AppCleanup, TESTAPP_IMAGE,
};
use dockhand_test_support::wait_until;

use crate::sandbox;

/// Builds an image FROM the testapp with `VERSION` (and `extra` Dockerfile lines) as `tag`.
fn build(tag: &str, version: &str, extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {TESTAPP_IMAGE}\nENV VERSION={version}\n{extra}"),
    )
    .unwrap();
    docker_ok(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
}

fn version(addr: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-H", "Host: app.test"])
        .arg(format!("http://{addr}/version"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_moved_image_tag_is_deployed_a_bad_one_rolled_back_and_not_retried() {
    ensure_test_images();
    let app = unique_app("imgwatch");
    let _cleanup = AppCleanup::new(&app);
    let tag = format!("dockhand-it/{app}:live");
    build(&tag, "one", "");
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
image = "{tag}"
pull = "never"
port = 8080
health = {{ path = "/health", interval = "200ms", timeout = "5s", unhealthy_threshold = 3, deploy_timeout = "10s" }}
route = {{ host = "app.test", path = "/" }}
stop_timeout = "5s"

[update]
images = true
poll = "1s"
"#
        ),
    );
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(version(&addr), "one");

    // The tag moves to a new image: deployed on a following check.
    build(&tag, "two", "");
    wait_until("the new image serves", Duration::from_secs(90), || {
        version(&addr) == "two"
    });
    let (_, st) = sb.json(&["update", "status"]);
    assert_eq!(st["images"], true, "{st}");

    // An image whose app never becomes healthy: rolled back, an error event, not retried.
    build(&tag, "bad", "ENV HEALTH_STATUS=500\n");
    wait_until(
        "the bad image is recorded as failed",
        Duration::from_secs(90),
        || {
            let (_, st) = sb.json(&["update", "status"]);
            st["last_check"]["result"] == "known_bad"
        },
    );
    assert_eq!(version(&addr), "two", "the old release kept serving");
    let (_, events) = sb.json(&["events", "-n", "500"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "update"
                && e["level"] == "error"
                && e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not be tried again until the tag moves")),
        "{events}"
    );

    // The tag moves on to a good image: deployed.
    build(&tag, "three", "");
    wait_until(
        "the next good image serves",
        Duration::from_secs(90),
        || version(&addr) == "three",
    );
    let _ = docker(&["image", "rm", "-f", &tag]);
}
