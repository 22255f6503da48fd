//! The multi-node swarm fixture does what the cluster tests rely on: a 3-replica `dnsrr`
//! service is spread over the three nodes, and its tasks reach each other over an overlay
//! network across nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use dockhand_test_support::docker::{ensure_test_images, TESTAPP_SHELL_IMAGE};
use dockhand_test_support::swarm::{Cluster, Role};
use dockhand_test_support::wait_until;

#[test]
fn a_three_node_swarm_spreads_a_dnsrr_service_and_carries_its_overlay_between_nodes() {
    ensure_test_images();
    let cluster = Cluster::start(1, 2);
    let roles: Vec<(&str, Role)> = cluster
        .nodes()
        .iter()
        .map(|n| (n.hostname(), n.role()))
        .collect();
    assert_eq!(
        roles,
        [
            ("m1", Role::Manager),
            ("w1", Role::Worker),
            ("w2", Role::Worker)
        ]
    );
    let m1 = cluster.manager();
    // Each node is its own engine with its own data root: it knows the swarm's three nodes.
    let listed = m1.docker_ok(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, ["m1 Ready", "w1 Ready", "w2 Ready"]);

    cluster.load_images(&[TESTAPP_SHELL_IMAGE]);
    m1.docker_ok(&["network", "create", "-d", "overlay", "spread-net"]);
    m1.docker_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--replicas",
        "3",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        "spread-net",
        "--no-resolve-image",
        // Each task answers `/` with the hostname of the node it runs on.
        "--env",
        "VERSION={{.Node.Hostname}}",
        TESTAPP_SHELL_IMAGE,
    ]);

    // node hostname → the task's overlay address.
    let mut tasks: BTreeMap<String, String> = BTreeMap::new();
    wait_until("three running tasks", Duration::from_secs(120), || {
        tasks = running_tasks(&cluster, "spread");
        tasks.len() == 3
    });
    assert_eq!(
        tasks.keys().map(String::as_str).collect::<Vec<_>>(),
        ["m1", "w1", "w2"],
        "the scheduler spreads three replicas over three empty nodes"
    );

    // From the task on each node, every task (on its own node and on the two others) answers
    // over the overlay with its node's name.
    for from in cluster.nodes() {
        let container = from.docker_ok(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=spread",
        ]);
        assert_eq!(
            container.lines().count(),
            1,
            "one task on {}",
            from.hostname()
        );
        for (node, addr) in &tasks {
            let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {addr} 8080");
            let mut answer = String::new();
            wait_until(
                &format!("{node}'s task at {addr} to answer from {}", from.hostname()),
                Duration::from_secs(30),
                || {
                    let out = from.docker(&["exec", &container, "sh", "-c", &script]);
                    answer = String::from_utf8_lossy(&out.stdout).into_owned();
                    answer.starts_with("HTTP/1")
                },
            );
            assert!(
                answer.contains(" 200 ") && answer.trim_end().ends_with(node.as_str()),
                "{addr} (on {node}) from {}: {answer}",
                from.hostname()
            );
        }
    }
}

/// The running tasks of `service`: node hostname → overlay address (without the prefix
/// length), read from the manager's task list.
fn running_tasks(cluster: &Cluster, service: &str) -> BTreeMap<String, String> {
    let m1 = cluster.manager();
    let ids = m1.docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ]);
    let mut out = BTreeMap::new();
    for id in ids.lines() {
        let text = m1.docker_ok(&["inspect", "--type", "task", id]);
        let task: serde_json::Value = serde_json::from_str(&text).expect("task JSON");
        let task = &task[0];
        if task["Status"]["State"] != "running" {
            continue;
        }
        let node_id = task["NodeID"].as_str().expect("NodeID");
        let hostname = m1.docker_ok(&[
            "node",
            "inspect",
            "--format",
            "{{.Description.Hostname}}",
            node_id,
        ]);
        let addr = task["NetworksAttachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["Network"]["Spec"]["Name"] == "spread-net")
            .and_then(|a| a["Addresses"][0].as_str())
            .and_then(|a| a.split('/').next())
            .expect("an address on spread-net")
            .to_string();
        out.insert(hostname, addr);
    }
    out
}
