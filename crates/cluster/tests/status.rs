//! The status of a real swarm (the test-support fixture: three namespaced engines): its
//! nodes with their roles, state and labels, and which node runs which task.

use std::time::Duration;

use dockhand_cluster::{NodeState, Role, Swarm, SwarmTimeouts, TaskState};
use dockhand_test_support::docker::{ensure_test_images, TESTAPP_IMAGE};
use dockhand_test_support::swarm::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_nodes_and_where_each_task_runs() {
    ensure_test_images();
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = Cluster::start(1, 2);
        cluster.label("w2", "db", "main");
        cluster.load_images(&[TESTAPP_IMAGE]);
        cluster.manager().docker_ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "shop-web",
            "--replicas",
            "3",
            "--endpoint-mode",
            "dnsrr",
            "--no-resolve-image",
            TESTAPP_IMAGE,
        ]);
        cluster
    })
    .await
    .unwrap();

    let swarm = Swarm::connect(&cluster.manager().docker_host(), SwarmTimeouts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = swarm.status().await.unwrap_or_else(|e| panic!("{e}"));
        let running = status
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .count();
        if running == 3 {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three running tasks within 120s: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    let nodes: Vec<(&str, Role, NodeState, bool)> = status
        .nodes
        .iter()
        .map(|n| (n.hostname.as_str(), n.role, n.state, n.leader))
        .collect();
    assert_eq!(
        nodes,
        [
            ("m1", Role::Manager, NodeState::Ready, true),
            ("w1", Role::Worker, NodeState::Ready, false),
            ("w2", Role::Worker, NodeState::Ready, false),
        ]
    );
    let w2 = &status.nodes[2];
    assert_eq!(w2.labels.get("db").map(String::as_str), Some("main"));
    assert!(
        w2.addr.starts_with(&cluster.node("w2").addr().to_string()),
        "{w2:?}"
    );

    let placement = status.placement();
    for node in ["m1", "w1", "w2"] {
        assert_eq!(
            placement[node],
            [("shop-web".to_string(), TaskState::Running)],
            "{node} runs one task of shop-web: {placement:?}"
        );
    }

    // A worker is no manager: the handle refuses it with what to do.
    let err = Swarm::connect(&cluster.node("w1").docker_host(), SwarmTimeouts::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a swarm manager"), "{err}");
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
