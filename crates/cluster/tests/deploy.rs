//! Deploying a service of the app to a real swarm (the test-support fixture: a manager and
//! two workers): the planned spec converges on every replica, an update replaces it, a
//! rollback returns the previous release, an update whose new image fails its health check
//! is rolled back by Swarm itself, and a `${secret.*}` value reaches the task as a file
//! while appearing in no spec.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dockhand_cluster::{network_name, plan_service, Swarm, SwarmTimeouts, UpdateOutcome};
use dockhand_test_support::docker::{ensure_test_images, TESTAPP_SHELL_IMAGE};
use dockhand_test_support::swarm::Cluster;

const LIMIT: Duration = Duration::from_secs(240);

/// The web service of `version`; `healthy = false` makes its `/health` answer 503. The
/// health command keeps nc's input open a second: hyper drops an HTTP/1.0 request whose
/// client half-closed before the request was read.
fn web(dir: &std::path::Path, version: &str, healthy: bool) -> dockhand_config::ServiceConfig {
    let secrets = dir.join(".dockhand/secrets.env");
    std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
    std::fs::write(&secrets, "api_token=s3cr3t-t0ken-value\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "app = \"shop\"\n[services.web]\nimage = \"{TESTAPP_SHELL_IMAGE}\"\nport = 8080\nreplicas = 3\n\
         env = {{ VERSION = \"{version}\", HEALTHY = \"{healthy}\", API_TOKEN = \"${{secret.api_token}}\" }}\n\
         health = {{ command = \"(printf 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n'; sleep 1) | nc -w 2 127.0.0.1 8080 | grep -q ' 200 '\", \
         interval = \"2s\", timeout = \"10s\", unhealthy_threshold = 3 }}\n"
    );
    let loaded = dockhand_config::load_str(
        &dir.join("dockhand.toml"),
        &text,
        &dockhand_config::LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    loaded.config.services["web"].clone()
}

async fn deploy(
    swarm: &Swarm,
    dir: &std::path::Path,
    release: &str,
    healthy: bool,
) -> UpdateOutcome {
    let service = web(dir, &format!("v{release}"), healthy);
    let plan = plan_service("shop", &service, release, TESTAPP_SHELL_IMAGE, &[]).unwrap();
    let mut ids = BTreeMap::new();
    for s in &plan.secrets {
        let id = swarm
            .ensure_secret("shop", &s.secret, "s3cr3t-t0ken-value")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ids.insert(s.secret.clone(), id);
    }
    swarm
        .apply(plan.to_spec(&ids))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    swarm
        .wait_update("shop-web", release, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_update_rollback_and_a_failed_health_check_rolled_back_by_swarm() {
    ensure_test_images();
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = Cluster::start(1, 2);
        cluster.load_images(&[TESTAPP_SHELL_IMAGE]);
        cluster
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::connect(&cluster.manager().docker_host(), SwarmTimeouts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    swarm
        .ensure_network(&network_name("shop"), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let outcome = deploy(&swarm, dir.path(), "1", true).await;
    assert_eq!(outcome, UpdateOutcome::Converged, "{}", tasks(&cluster));
    assert_eq!(
        swarm.running_releases("shop-web").await.unwrap(),
        ["1", "1", "1"]
    );

    let outcome = deploy(&swarm, dir.path(), "2", true).await;
    assert_eq!(outcome, UpdateOutcome::Converged, "{}", tasks(&cluster));
    assert_eq!(
        swarm.running_releases("shop-web").await.unwrap(),
        ["2", "2", "2"]
    );

    // The secret is a file in the task, named by API_TOKEN_FILE; its value is in no spec.
    // (On whichever node runs a task: a start-first update may leave none on a given node.)
    let (node, container) = cluster
        .nodes()
        .iter()
        .find_map(|node| {
            let on = node.docker_ok(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=shop-web",
            ]);
            on.lines().next().map(|c| (node, c.to_string()))
        })
        .expect("a task of shop-web on some node");
    assert_eq!(
        node.docker_ok(&["exec", &container, "sh", "-c", "cat \"$API_TOKEN_FILE\""]),
        "s3cr3t-t0ken-value"
    );
    let inspect = cluster
        .manager()
        .docker_ok(&["service", "inspect", "shop-web"]);
    assert!(!inspect.contains("s3cr3t"), "{inspect}");
    let env = node.docker_ok(&["exec", &container, "env"]);
    assert!(!env.contains("s3cr3t"), "{env}");

    // `dockhand rollback`'s path: the previous spec back on every replica.
    swarm
        .rollback("shop-web")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        swarm.wait_update("shop-web", "1", LIMIT).await.unwrap(),
        UpdateOutcome::Converged
    );
    assert_eq!(
        swarm.running_releases("shop-web").await.unwrap(),
        ["1", "1", "1"]
    );

    // A release whose health check fails: Swarm rolls it back by itself, release 1 serves.
    match deploy(&swarm, dir.path(), "3", false).await {
        UpdateOutcome::RolledBack { message } => {
            assert!(message.contains("rollback"), "{message}")
        }
        other => panic!("expected Swarm to roll release 3 back, got {other:?}"),
    }
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let releases = swarm.running_releases("shop-web").await.unwrap();
        if releases == ["1", "1", "1"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the rollback: {releases:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// The service's task history with errors, for failure messages.
fn tasks(cluster: &Cluster) -> String {
    let m1 = cluster.manager();
    let ids = m1.docker_ok(&["service", "ps", "-q", "shop-web"]);
    let mut out = String::new();
    for id in ids.lines() {
        out += &m1.docker_ok(&[
            "inspect",
            "--format",
            "{{.ID}} {{.Status.State}} {{.Status.Message}} {{json .Status}}",
            id,
        ]);
        out += "\n";
    }
    let c = m1.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        "label=com.docker.swarm.service.name=shop-web",
    ]);
    if let Some(c) = c.lines().next() {
        out += &m1.docker_ok(&["inspect", "--format", "{{json .State.Health}}", c]);
        out += "\n";
        out += &m1.docker_ok(&["logs", "--tail", "20", c]);
    }
    out + &cluster.manager().docker_ok(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.Name}} {{.Node}} {{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
        "shop-web",
    ])
}
