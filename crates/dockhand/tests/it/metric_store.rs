//! The metric store on a full disk: the state directory is a small tmpfs that is filled up.
//! The agent keeps serving requests and `/metrics`, `status` says the monitor cannot write
//! its store, a disk alert reaches a real webhook receiver, and once space is freed the store
//! is written again.

use std::time::Duration;

use dockhand_test_support::wait_until;

use crate::crash::http_get;
use crate::disk::SmallDisk;
use crate::monitoring::Receiver;
use crate::{sandbox, testapp_toml};

fn monitor_state(sb: &dockhand_test_support::Sandbox) -> serde_json::Value {
    let status = sb.json(&["status"]).1;
    status["agent"]["subsystems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "monitor").cloned())
        .unwrap_or_default()
}

#[test]
fn a_full_disk_leaves_the_agent_serving_and_says_the_metric_store_cannot_be_written() {
    let sb = sandbox();
    let disk = SmallDisk::mount(&sb.state_dir(), "8M");
    let receiver = Receiver::start();
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[monitor]\ninterval = \"500ms\"\n\n[alerts]\nwebhook = \"http://{}/hook\"\ngroup_wait = \"0s\"\n\n[alerts.rules.disk]\nfor = \"0s\"\n",
            testapp_toml("VERSION = \"v1\"", 1, "20s"),
            receiver.addr
        ),
    );
    let _agent = sb.start_agent_with_env(&[("DOCKHAND_METRICS_PERSIST_MS", "500")]);
    let addr = sb.proxy_addr();
    let metrics = sb.state_dir().join("metrics.json");
    wait_until(
        "the metric store is written",
        Duration::from_secs(30),
        || metrics.exists(),
    );

    let filler = disk.fill();
    wait_until(
        "status says the monitor cannot write its store",
        Duration::from_secs(30),
        || {
            let m = monitor_state(&sb);
            m["message"]
                .as_str()
                .is_some_and(|s| s.contains("cannot write the metric store"))
        },
    );
    // Still serving: the app through the proxy, and the figures.
    for _ in 0..20 {
        assert_eq!(http_get(&addr, "app.test", "/version"), "v1");
    }
    let status = sb.json(&["status"]).1;
    let metrics_addr = status["agent"]["metrics_listen"]
        .as_str()
        .unwrap()
        .to_string();
    let text = http_get(&metrics_addr, "localhost", "/metrics");
    assert!(text.contains("dockhand_proxy_requests_total"), "{text}");
    // The full disk alerts (the webhook needs no disk).
    wait_until(
        "a disk alert reaches the receiver",
        Duration::from_secs(30),
        || {
            receiver
                .bodies("/hook")
                .iter()
                .any(|b| b.contains("disk") && b.contains(&*sb.state_dir().to_string_lossy()))
        },
    );
    // The store stays whole (an atomic rename never half-writes it).
    let before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metrics).unwrap()).expect("metrics.json is whole");
    assert!(before.is_object());

    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "the monitor is ready again",
        Duration::from_secs(30),
        || monitor_state(&sb)["state"] == "ready",
    );
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metrics).unwrap()).expect("metrics.json is whole");
    assert!(after.is_object());
}
