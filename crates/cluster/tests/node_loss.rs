//! Losing a node: a worker's `dockerd` killed, the managers mark it down and Swarm runs its
//! tasks on the other nodes; the status says so.

use std::time::{Duration, Instant};

use dockhand_cluster::{NodeState, Swarm, SwarmTimeouts, TaskState};
use dockhand_test_support::docker::{ensure_test_images, TESTAPP_IMAGE};
use dockhand_test_support::swarm::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_workers_tasks_run_on_the_other_nodes() {
    ensure_test_images();
    let mut cluster = tokio::task::spawn_blocking(|| {
        let cluster = Cluster::start(1, 2);
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
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let placement = swarm.status().await.unwrap().placement();
        let spread = ["m1", "w1", "w2"].iter().all(|n| {
            placement[*n]
                .iter()
                .any(|(_, state)| *state == TaskState::Running)
        });
        if spread {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one task per node: {placement:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    cluster.node_mut("w2").kill_dockerd();

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        let status = swarm.status().await.unwrap();
        let w2_down = status
            .nodes
            .iter()
            .any(|n| n.hostname == "w2" && n.state == NodeState::Down);
        let placement = status.placement();
        let running_elsewhere: usize = ["m1", "w1"]
            .iter()
            .map(|n| {
                placement[*n]
                    .iter()
                    .filter(|(_, s)| *s == TaskState::Running)
                    .count()
            })
            .sum();
        if w2_down && running_elsewhere == 3 && placement["w2"].is_empty() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "w2 down and its task moved within 180s: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The task that ran on w2 is recorded as such (desired shutdown or orphaned), not running.
    assert!(
        status
            .tasks
            .iter()
            .filter(|t| t.node.as_deref() == Some("w2"))
            .all(|t| t.desired != TaskState::Running),
        "{status:#?}"
    );
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
