//! Containers on the real Docker Engine: the zero-downtime invariant with container
//! services, a PostgreSQL database that app deploys and agent restarts never touch, builds
//! from a context with rollback to an earlier build, deploy hooks and health commands in
//! containers, `exec`, and the engine-dependent preflight of `dockhand check`.

use std::time::Duration;

use dockhand_test_support::docker::{
    docker, docker_ok, ensure_test_images, unique_app, AppCleanup, BUSYBOX_IMAGE, POSTGRES_IMAGE,
    TESTAPP_IMAGE, TESTAPP_SHELL_IMAGE,
};
use dockhand_test_support::{wait_until, Load, Sandbox};

use crate::{expect, sandbox, show};

/// A web service `web` of `replicas` testapp containers behind host `app.test`.
pub(crate) fn web_toml(
    app: &str,
    image: &str,
    env: &str,
    replicas: u32,
    deploy_timeout: &str,
) -> String {
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "10s"

[services.web]
image = "{image}"
port = 8080
env = {{ {env} }}
health = {{ path = "/health", interval = "200ms", timeout = "5s", unhealthy_threshold = 5, deploy_timeout = "{deploy_timeout}" }}
route = {{ host = "app.test", path = "/" }}
replicas = {replicas}
stop_timeout = "5s"
"#
    )
}

/// The ids of the app's running containers of `kind`.
pub(crate) fn running(app: &str, kind: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=dockhand.app={app}"),
        "--filter",
        &format!("label=dockhand.kind={kind}"),
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// Writes the sandbox's secrets file, mode 0600.
fn write_secrets(sb: &Sandbox, text: &str) {
    let path = sb.write(".dockhand/secrets.env", text);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

pub(crate) fn get(sb: &Sandbox, path: &str) -> String {
    let addr = sb.proxy_addr();
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-H", "Host: app.test"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn container_deploys_failed_release_and_rollback_under_load_drop_nothing() {
    ensure_test_images();
    let app = unique_app("zd");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"a\"", 2, "30s"),
    );
    let _agent = sb.start_agent();
    let load = Load::start(&sb.proxy_addr(), "app.test", "/version", 50);
    wait_until("the first answers", Duration::from_secs(30), || {
        load.snapshot().ok > 100
    });

    for i in 0..20 {
        let version = if i % 2 == 0 { "b" } else { "a" };
        sb.write(
            "dockhand.toml",
            &web_toml(
                &app,
                TESTAPP_IMAGE,
                &format!("VERSION = \"{version}\""),
                2,
                "30s",
            ),
        );
        let out = sb.run(&["deploy"]);
        assert_eq!(out.status.code(), Some(0), "deploy {i}: {}", show(&out));
        let seen = load.snapshot().ok;
        wait_until("requests after the deploy", Duration::from_secs(30), || {
            load.snapshot().ok > seen + 50
        });
        // The old release's containers are gone, not just stopped.
        assert_eq!(running(&app, "service").len(), 2, "after deploy {i}");
    }

    // A release that never turns healthy: the deploy fails, the old one keeps serving.
    sb.write(
        "dockhand.toml",
        &web_toml(
            &app,
            TESTAPP_IMAGE,
            "VERSION = \"broken\", HEALTHY = \"false\"",
            2,
            "3s",
        ),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("503"),
        "the last health answers are shown: {err}"
    );
    let seen = load.snapshot().ok;
    wait_until(
        "requests after the failed deploy",
        Duration::from_secs(30),
        || load.snapshot().ok > seen + 50,
    );
    let all = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dockhand.app={app}"),
    ]);
    assert_eq!(
        all.split_whitespace().count(),
        2,
        "the failed release's containers were removed"
    );

    expect(&sb, &["rollback"], 0);
    let seen = load.snapshot().ok;
    wait_until(
        "requests after the rollback",
        Duration::from_secs(30),
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
        !report.by_version.contains_key("broken"),
        "{:?}",
        report.by_version
    );
    assert!(report.by_version.contains_key("a") && report.by_version.contains_key("b"));
}

/// An app with a PostgreSQL database and a web service that reaches it on the app network.
fn db_toml(app: &str, version: &str, db_extra: &str) -> String {
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.db]
engine = "postgres"
image = "{POSTGRES_IMAGE}"
{db_extra}

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
env = {{ VERSION = "{version}", DATABASE_URL = "${{databases.db.url}}" }}
health = {{ path = "/health", interval = "200ms", timeout = "5s", deploy_timeout = "60s" }}
route = {{ host = "app.test" }}
depends_on = ["db"]
stop_timeout = "5s"
"#
    )
}

fn psql(app: &str, sql: &str) -> String {
    let container = format!("{app}-db");
    let out = docker(&[
        "exec", "-u", "postgres", &container, "psql", "-U", app, "-d", app, "-tA", "-c", sql,
    ]);
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn started_at(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", container])
}

#[test]
fn database_survives_app_deploys_and_agent_restarts() {
    ensure_test_images();
    let app = unique_app("pg");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    write_secrets(&sb, "DB_PASSWORD=pg-secret-4711\n");
    sb.write("dockhand.toml", &db_toml(&app, "one", ""));
    let mut agent = sb.start_agent();
    let db = format!("{app}-db");
    let before = started_at(&db);
    psql(
        &app,
        "create table notes (body text); insert into notes values ('kept')",
    );

    // The web container reaches the database by name, with the password from the secret.
    let out = expect(
        &sb,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "nc -w 2 db 5432 </dev/null && echo $DATABASE_URL",
        ],
        0,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("postgres://{app}:******@db:5432/{app}")),
        "the url is there and redacted in what the agent reports: {stdout}"
    );

    // An app deploy does not restart the database.
    sb.write("dockhand.toml", &db_toml(&app, "two", ""));
    expect(&sb, &["deploy"], 0);
    assert_eq!(get(&sb, "/version").trim(), "two");
    assert_eq!(started_at(&db), before, "the deploy restarted the database");

    // A changed database table is not applied by a deploy: a warning says how.
    sb.write(
        "dockhand.toml",
        &db_toml(&app, "three", "shm_size = \"128MB\""),
    );
    let out = expect(&sb, &["deploy"], 0);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("dockhand db upgrade db"), "{text}");
    assert_eq!(started_at(&db), before);

    // kill -9 of the agent, then a new agent: the database was never stopped, the app's
    // containers of the old run are replaced, the data is there.
    agent.kill9();
    let mut agent = sb.start_agent();
    wait_until("the app serves again", Duration::from_secs(60), || {
        get(&sb, "/version").trim() == "three"
    });
    assert_eq!(
        started_at(&db),
        before,
        "the agent restart restarted the database"
    );
    assert_eq!(
        running(&app, "service").len(),
        1,
        "no orphan container of the old run"
    );
    assert_eq!(psql(&app, "select body from notes"), "kept");
    let (code, status) = sb.json(&["status"]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["databases"][0]["state"], "running", "{status}");

    // The explicit upgrade recreates the container on the same volume.
    expect(&sb, &["db", "upgrade", "db"], 0);
    assert_ne!(started_at(&db), before);
    assert_eq!(psql(&app, "select body from notes"), "kept");
    let shm = docker_ok(&["inspect", "-f", "{{.HostConfig.ShmSize}}", &db]);
    assert_eq!(shm, "128000000");

    // The secret never reached the agent's own output or the state database.
    agent.terminate();
    assert!(!agent.output().contains("pg-secret-4711"));
    let state = std::fs::read(sb.state_dir().join("state.db")).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains("pg-secret-4711"));
    // Stopping the agent stops the app, not the database.
    assert!(running(&app, "service").is_empty());
    assert_eq!(running(&app, "database").len(), 1);
}

#[test]
fn builds_hooks_and_rollback_to_an_earlier_build() {
    ensure_test_images();
    let app = unique_app("build");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let dockerfile = |version: &str| {
        format!("FROM {TESTAPP_SHELL_IMAGE} AS base\nFROM base AS runtime\nENV VERSION={version}\nFROM base AS other\nENV VERSION=wrong-stage\n")
    };
    sb.write("web/Dockerfile", &dockerfile("built-1"));
    let toml = format!(
        r#"app = "{app}"
[proxy]
listen = "127.0.0.1:0"
[services.web]
build = {{ context = "web", target = "runtime" }}
port = 8080
health = {{ path = "/health", interval = "200ms", deploy_timeout = "60s" }}
route = {{ host = "app.test" }}
hooks = {{ pre_deploy = "echo migrating $VERSION" }}
[services.worker]
image = "{BUSYBOX_IMAGE}"
command = ["sleep", "3600"]
health = {{ command = "test -d /proc/1", interval = "200ms" }}
stop_timeout = "1s"
"#
    );
    sb.write("dockhand.toml", &toml);
    let _agent = sb.start_agent();
    assert_eq!(get(&sb, "/version").trim(), "built-1");
    let hook_log =
        std::fs::read_to_string(sb.state_dir().join("logs/web/pre_deploy-r1.log")).unwrap();
    assert!(hook_log.contains("migrating built-1"), "{hook_log}");

    sb.write("web/Dockerfile", &dockerfile("built-2"));
    expect(&sb, &["deploy"], 0);
    assert_eq!(get(&sb, "/version").trim(), "built-2");
    // The rollback runs release 1's build, not a rebuild of today's context.
    expect(&sb, &["rollback"], 0);
    assert_eq!(get(&sb, "/version").trim(), "built-1");

    // A worker whose health command fails does not pass the gate.
    let toml_failing = toml.replace("test -d /proc/1", "test -f /nope").replace(
        "interval = \"200ms\" }\nstop",
        "interval = \"200ms\", deploy_timeout = \"3s\" }\nstop",
    );
    sb.write("dockhand.toml", &toml_failing);
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("test -f /nope"), "{err}");
    assert_eq!(get(&sb, "/version").trim(), "built-1");
}

#[test]
fn health_route_that_answers_404_fails_with_the_route_that_exists() {
    ensure_test_images();
    let app = unique_app("h404");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"a\"", 1, "30s")
            .replace("path = \"/health\"", "path = \"/api/health\"")
            .replace("deploy_timeout = \"30s\"", "deploy_timeout = \"3s\""),
    );
    let out = sb.run(&["up"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("is the route `/health`?"), "{text}");
    assert!(
        running(&app, "service").is_empty(),
        "the failed instance was removed"
    );
}

#[test]
fn check_finds_missing_programs_in_images_and_taken_ports() {
    ensure_test_images();
    let sb = sandbox();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write_secrets(&sb, "DB_PASSWORD=x\n");
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "chk"
[proxy]
listen = "127.0.0.1:0"
[databases.db]
engine = "postgres"
image = "{POSTGRES_IMAGE}"
publish = "127.0.0.1:{port}"
[services.worker]
image = "{TESTAPP_IMAGE}"
health = {{ command = "curl -f http://localhost:8080/health" }}
"#
        ),
    );
    let (code, report) = sb.json(&["check"]);
    assert_eq!(code, Some(2), "{report}");
    let errors = report["errors"].as_array().unwrap();
    let curl = errors
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("`curl`"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(curl["key"], "services.worker.health.command");
    assert_eq!(
        (curl["line"].as_u64(), curl["column"].as_u64()),
        (Some(10), Some(12))
    );
    assert!(curl["help"].as_str().unwrap().contains("health = { path"));
    let port_error = errors
        .iter()
        .find(|d| d["key"] == "databases.db.publish")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(port_error["message"]
        .as_str()
        .unwrap()
        .contains("already in use"));
    assert_eq!(port_error["line"].as_u64(), Some(7));
    // The database image does contain its readiness program.
    assert!(
        !errors
            .iter()
            .any(|d| d["message"].as_str().unwrap().contains("pg_isready")),
        "{report}"
    );
    drop(taken);
}

/// Restarts the Docker Engine under a running app: scripts/test runs this test alone, after
/// every other one (its name holds `daemon_restart`).
#[test]
fn app_and_database_come_back_after_a_daemon_restart() {
    ensure_test_images();
    let app = unique_app("dr");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    write_secrets(&sb, "DB_PASSWORD=pw\n");
    sb.write("dockhand.toml", &db_toml(&app, "one", ""));
    let _agent = sb.start_agent();
    psql(
        &app,
        "create table notes (body text); insert into notes values ('kept')",
    );
    let db = format!("{app}-db");
    let db_id = docker_ok(&["inspect", "-f", "{{.Id}}", &db]);

    let script = dockhand_test_support::docker::workspace_root().join("scripts/dockerd");
    let out = std::process::Command::new(&script)
        .arg("restart")
        .output()
        .expect("scripts/dockerd");
    assert!(
        out.status.success(),
        "scripts/dockerd restart: {}",
        show(&out)
    );

    wait_until("the app serves again", Duration::from_secs(120), || {
        get(&sb, "/version").trim() == "one"
    });
    wait_until("the database runs again", Duration::from_secs(60), || {
        docker(&["inspect", "-f", "{{.State.Running}}", &db])
            .stdout
            .starts_with(b"true")
    });
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.Id}}", &db]),
        db_id,
        "the same database container"
    );
    wait_until("the database answers", Duration::from_secs(60), || {
        docker(&["exec", "-u", "postgres", &db, "pg_isready", "-q"])
            .status
            .success()
    });
    assert_eq!(psql(&app, "select body from notes"), "kept");
    assert_eq!(running(&app, "service").len(), 1);
    let (_, status) = sb.json(&["status"]);
    let restarts = status["services"][0]["instances"][0]["restarts"].as_u64();
    assert!(
        restarts >= Some(1),
        "the supervisor restarted the container: {status}"
    );
}

/// Regression: the secrets file was only read when a service referred to a secret, so a
/// database password that no service's env used could not be resolved.
#[test]
fn a_database_password_no_service_uses_still_reaches_the_database() {
    ensure_test_images();
    let app = unique_app("dbonly");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    write_secrets(&sb, "DB_PASSWORD=only-the-db-4242\n");
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"a\"", 1, "60s").replace(
            "[services.web]",
            &format!("[databases.db]\nengine = \"postgres\"\nimage = \"{POSTGRES_IMAGE}\"\n\n[services.web]"),
        ),
    );
    let _agent = sb.start_agent();
    let env = docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &format!("{app}-db"),
    ]);
    assert!(env.contains("POSTGRES_PASSWORD=only-the-db-4242"), "{env}");
    assert!(env.contains(&format!("POSTGRES_USER={app}")), "{env}");
    let (_, events) = sb.json(&["events"]);
    assert!(!events.to_string().contains("only-the-db-4242"));
}

/// A Docker Engine that does not answer fails the deploy that needs it, with the reason and
/// what to do; the release that serves keeps serving.
#[test]
fn a_dead_docker_engine_fails_the_deploy_and_the_release_keeps_serving() {
    let sb = sandbox();
    let toml = crate::testapp_toml("VERSION = \"native\"", 1, "20s");
    sb.write("dockhand.toml", &toml);
    let _agent = sb.start_agent_with_env(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(get(&sb, "/version").trim(), "native");

    sb.write(
        "dockhand.toml",
        &format!("{toml}\n[services.cache]\nimage = \"{BUSYBOX_IMAGE}\"\ncommand = [\"sleep\", \"3600\"]\n"),
    );
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    assert!(err.contains("is dockerd running?"), "{err}");
    assert_eq!(get(&sb, "/version").trim(), "native");
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["status"], "failed", "{releases}");
    assert_eq!(releases[1]["status"], "current", "{releases}");
}

/// kill -9 of the agent while a container release is in its health gate: after a restart
/// exactly the committed release's containers run, the pending release is failed, and the
/// app serves the committed version.
#[test]
fn kill_9_during_a_container_deploy_leaves_no_orphan_container() {
    ensure_test_images();
    let app = unique_app("k9");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"one\"", 2, "60s"),
    );
    let mut agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let committed = status["current_release"]["id"].as_i64().unwrap();

    sb.write(
        "dockhand.toml",
        &web_toml(
            &app,
            TESTAPP_IMAGE,
            "VERSION = \"two\", STARTUP_DELAY_MS = \"60000\"",
            2,
            "60s",
        ),
    );
    let mut deploy = sb.spawn_quiet(&["deploy"]);
    wait_until(
        "the new release's containers",
        Duration::from_secs(60),
        || running(&app, "service").len() >= 4,
    );
    agent.kill9();
    let _ = deploy.wait();
    assert_eq!(
        running(&app, "service").len(),
        4,
        "the containers outlived the agent"
    );

    let _agent = sb.start_agent();
    wait_until(
        "the committed version serves",
        Duration::from_secs(60),
        || get(&sb, "/version").trim() == "one",
    );
    let left = running(&app, "service");
    assert_eq!(left.len(), 2, "only the committed release's containers run");
    for id in &left {
        let release = docker_ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"dockhand.release\"}}",
            id,
        ]);
        assert_eq!(release, committed.to_string());
    }
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["status"], "failed", "{releases}");
    assert_eq!(releases[1]["id"].as_i64(), Some(committed), "{releases}");
    assert_eq!(releases[1]["status"], "current", "{releases}");
}

/// A static service whose files come out of a built image: copied per release (no container
/// of it keeps running), served by the proxy, and a rollback serves the earlier build's files.
#[test]
fn a_static_site_from_a_built_image_is_copied_per_release_and_rolls_back() {
    ensure_test_images();
    let app = unique_app("stat");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let write = |v: &str| {
        sb.write(
            "site/Dockerfile",
            &format!("FROM {BUSYBOX_IMAGE}\nCOPY html /usr/share/site\n"),
        );
        sb.write("site/html/index.html", &format!("<p>image {v}</p>"));
        sb.write("site/html/assets/app.css", "body{}");
    };
    write("one");
    sb.write(
        "dockhand.toml",
        &format!(
            "app = \"{app}\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n[services.web]\nbuild = \"site\"\nstatic = {{ path = \"/usr/share/site\", fallback = \"/index.html\" }}\nroute = {{ host = \"app.test\" }}\n"
        ),
    );
    let _agent = sb.start_agent();
    assert!(get(&sb, "/").contains("image one"));
    assert!(get(&sb, "/deep/link").contains("image one"), "the fallback");
    assert_eq!(get(&sb, "/assets/app.css"), "body{}");
    write("two");
    expect(&sb, &["deploy"], 0);
    assert!(get(&sb, "/").contains("image two"));
    expect(&sb, &["rollback"], 0);
    assert!(get(&sb, "/").contains("image one"));
    assert!(
        running(&app, "job").is_empty() && running(&app, "service").is_empty(),
        "nothing of a static service runs"
    );
}
