//! Database containers and reconciliation against the real Docker Engine: PostgreSQL and Redis
//! from the test images, found again by their labels, never touched by a changed spec until
//! recreated on the same volume; orphan removal keeps them.

use std::time::Duration;

use dockhand_runtime::{
    ContainerKind, ContainerRuntime, ContainerSpec, InstanceState, Mount, RestartPolicy,
};
use dockhand_test_support::docker::{docker_ok, POSTGRES_IMAGE, REDIS_IMAGE};

use crate::container::{busybox, docker_runtime};
use crate::*;

fn postgres(app: &str, network: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(app, "db", "db", ContainerKind::Database, POSTGRES_IMAGE);
    spec.env = vec![
        ("POSTGRES_USER".into(), "shop".into()),
        ("POSTGRES_PASSWORD".into(), "pw-of-the-test".into()),
        ("POSTGRES_DB".into(), "shop".into()),
    ];
    spec.mounts = vec![Mount::Volume {
        name: "db-data".into(),
        target: "/var/lib/postgresql/data".into(),
        read_only: false,
    }];
    spec.network = Some(network.into());
    spec.aliases = vec!["db".into()];
    spec.stop_grace = Duration::from_secs(10);
    spec
}

/// Runs SQL through psql inside the database container, retrying while the server starts.
async fn psql(rt: &ContainerRuntime, container: &str, sql: &str) -> String {
    let cmd = vec![
        "psql".to_string(),
        "-U".into(),
        "shop".into(),
        "-d".into(),
        "shop".into(),
        "-tA".into(),
        "-c".into(),
        sql.into(),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = rt
            .exec(container, cmd.clone(), Vec::new(), Duration::from_secs(30))
            .await
            .expect("exec psql");
        if out.exit_code == Some(0) {
            return out.output.trim().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "psql kept failing: {}",
            out.output
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn ensure_database_is_idempotent_reports_a_changed_spec_and_recreate_keeps_the_data() {
    let (rt, cleanup) = docker_runtime("pg").await;
    let network = rt.ensure_network(&cleanup.app).await.unwrap();
    assert_eq!(network, format!("dockhand-{}", cleanup.app));
    let spec = postgres(&cleanup.app, &network);
    let name = spec.container_name();

    let first = rt.ensure_database(&spec).await.expect("create");
    assert!(first.created && !first.changed, "{first:?}");
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{ .HostConfig.RestartPolicy.Name }}",
            &name
        ]),
        "unless-stopped"
    );
    psql(
        &rt,
        &name,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("db.log");
    let logs = rt.follow_database_logs(&name, &log).unwrap();

    let again = rt.ensure_database(&spec).await.expect("find");
    assert_eq!(again.id, first.id);
    assert!(!again.created && !again.changed, "{again:?}");

    let started = docker_ok(&["inspect", "-f", "{{ .State.StartedAt }}", &name]);
    let mut changed_spec = spec.clone();
    changed_spec
        .env
        .push(("POSTGRES_INITDB_ARGS".into(), "--data-checksums".into()));
    let changed = rt.ensure_database(&changed_spec).await.expect("changed");
    assert_eq!(
        changed.id, first.id,
        "a changed spec leaves the container alone"
    );
    assert!(changed.changed && !changed.created);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{ .State.StartedAt }}", &name]),
        started,
        "the container was not restarted"
    );

    let recreated = rt.recreate_database(&changed_spec).await.expect("recreate");
    assert_ne!(recreated.id, first.id);
    assert_eq!(psql(&rt, &name, "SELECT v FROM kept").await, "survives");
    let after = rt.ensure_database(&changed_spec).await.unwrap();
    assert!(!after.changed, "the new container has the new spec");

    // A stopped database is started again.
    docker_ok(&["stop", &name]);
    let restarted = rt.ensure_database(&changed_spec).await.unwrap();
    assert_eq!(restarted.id, recreated.id);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{ .State.Running }}", &name]),
        "true"
    );

    wait_until("postgres output in the database log", || {
        has_line(&log, "database system is ready to accept connections")
    })
    .await;
    logs.stop();
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("pw-of-the-test"),
        "the password is not in the log"
    );
}

#[tokio::test]
async fn containers_on_the_app_network_reach_a_database_by_its_name() {
    let (rt, cleanup) = docker_runtime("redis").await;
    let network = rt.ensure_network(&cleanup.app).await.unwrap();
    let mut spec = ContainerSpec::new(
        &cleanup.app,
        "cache",
        "cache",
        ContainerKind::Database,
        REDIS_IMAGE,
    );
    spec.network = Some(network.clone());
    spec.aliases = vec!["cache".into()];
    rt.ensure_database(&spec).await.expect("redis");

    let mut job = ContainerSpec::new(
        &cleanup.app,
        "ping",
        "job-ping",
        ContainerKind::Job,
        REDIS_IMAGE,
    );
    job.network = Some(network);
    job.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "for i in $(seq 1 50); do redis-cli -h cache ping && exit 0; sleep 0.2; done; exit 1"
            .into(),
    ]);
    let out = rt
        .run_once(job, Duration::from_secs(60))
        .await
        .expect("run");
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(out.output.contains("PONG"), "{}", out.output);
}

#[tokio::test]
async fn remove_orphans_removes_this_agents_services_and_jobs_but_keeps_databases() {
    let (rt, cleanup) = docker_runtime("orphans").await;
    let dir = tempfile::tempdir().unwrap();
    let mut service = busybox(&cleanup.app, "d1r1-worker-0", dir.path(), "sleep 600");
    service.restart = RestartPolicy::Always;
    let inst = rt.start(service.clone()).await.expect("start");
    let mut db = ContainerSpec::new(
        &cleanup.app,
        "cache",
        "cache",
        ContainerKind::Database,
        REDIS_IMAGE,
    );
    db.stop_grace = Duration::from_secs(2);
    rt.ensure_database(&db).await.expect("database");

    let listed = rt.list(&cleanup.app).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let svc = listed
        .iter()
        .find(|c| c.kind == Some(ContainerKind::Service))
        .unwrap();
    assert_eq!(svc.name, service.container_name());
    assert_eq!(svc.instance, "d1r1-worker-0");
    assert!(svc.running);

    // An agent that crashed left the service container behind; a new runtime with the same
    // agent id removes it at start.
    let again = ContainerRuntime::connect(rt.agent_id(), dockhand_runtime::LogRotation::default())
        .await
        .unwrap();
    let removed = again.remove_orphans().await.unwrap();
    assert_eq!(removed, vec![service.container_name()]);
    let left = rt.list(&cleanup.app).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].kind, Some(ContainerKind::Database));
    // The old supervisor sees its container gone and makes a new one (policy always); stop it.
    wait_status(&inst, "a restart after the removal", |s| s.restarts >= 1).await;
    within("stop", inst.stop()).await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
}
