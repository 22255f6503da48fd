//! `[cluster] engine = "swarm"` through the real binary, on a real swarm of three namespaced
//! engines (test-support's fixture: a manager and two workers, each reachable over SSH):
//! the images are only in the manager's Engine, and `dockhand deploy` sends each node what it
//! may run and lacks (once: a second deploy sends nothing), refusing before any change when
//! a node cannot be reached; it spreads an app of two web services, a worker and a
//! PostgreSQL database pinned by a node label across the nodes, gated on health, behind an
//! ingress on two nodes; a release whose new image fails its health check is
//! rolled back by Swarm and the whole app stays on the previous release; `dockhand rollback`
//! returns every service to the release before; `dockhand status` shows the nodes and what
//! runs where, and a worker whose engine is killed as down while its tasks run elsewhere. A secret reaches the task as a file and appears in no spec, no node's disk
//! outside Swarm's own store, no output, no Docker event. A route with `basic_auth` answers
//! 401 without its credentials and 200 with them on every ingress node, its users secret in no
//! process argument, log, event, Swarm config or node's disk.
//! The seed-style Swarm stack of the compose corpus, imported with `--cluster`, deploys with its
//! placement kept.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Output;
use std::time::Duration;

use dockhand_test_support::docker::{
    ensure_test_images, unique_app, POSTGRES_IMAGE, TESTAPP_SHELL_IMAGE,
};
use dockhand_test_support::swarm::{destinations_toml, Cluster, TESTAPP_SWARM_HEALTH};
use dockhand_test_support::Load;

use crate::sandbox;

const API_TOKEN: &str = "swarm-api-t0ken-5e1f";
const DB_PASSWORD: &str = "swarm-db-pw-77a0c";
/// The users of web's `staff.test` route (`staff` with [`STAFF_PASSWORD`], as `htpasswd -s`
/// writes it): its hash is the secret value the checks look for.
const STAFF_USERS: &str = "staff:{SHA}Gsogvp6FrqlBPGUFsY6A1rjmZiI=";
const STAFF_HASH: &str = "Gsogvp6FrqlBPGUFsY6A1rjmZiI";
const STAFF_PASSWORD: &str = "swarm-staff-pw-4d21";
/// The port the ingress proxy publishes on the ingress nodes (each node has an address of its
/// own, so it cannot collide with another test's).
const INGRESS_PORT: u16 = 18080;

/// `GET path` through the ingress at `addr`: the status and the body, or why not.
fn ingress_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    get_host(addr, "shop.test", path)
}

/// Waits until the ingress at `addr` answers `/version` with `version`; on failure, says
/// what Swarm and the ingress task said.
fn wait_ingress(cluster: &Cluster, app: &str, addr: &str, version: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut last = Err(String::from("not asked yet"));
    while std::time::Instant::now() < deadline {
        last = ingress_get(addr, "/version");
        if matches!(&last, Ok((200, body)) if body.trim() == version) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let name = format!("{app}-ingress");
    let m1 = cluster.manager();
    let ps = m1.docker(&["service", "ps", "--no-trunc", &name]);
    let logs = m1.docker(&["service", "logs", "--raw", &name]);
    panic!(
        "the ingress at {addr} never served {version}: last {last:?}\n{}\n{}\n{}",
        String::from_utf8_lossy(&ps.stdout),
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
}

/// The app at `version`; `web_healthy = false` makes web's `/health` answer 503. The health
/// command keeps nc's input open a second: hyper drops an HTTP/1.0 request whose client
/// half-closed before the request was read. The test image of PostgreSQL predates the
/// official image's `POSTGRES_PASSWORD_FILE`, so it trusts the overlay; the password still
/// reaches its task as a Swarm secret.
fn toml(app: &str, version: &str, web_healthy: bool) -> String {
    let health = TESTAPP_SWARM_HEALTH;
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
ingress = ["m1", "w1"]
placement = {{ db = ["node.labels.db == main"] }}
[cluster.labels.w2]
db = "main"

[databases.db]
engine = "postgres"
image = "{POSTGRES_IMAGE}"
password = "${{secret.db_password}}"
env = {{ POSTGRES_HOST_AUTH_METHOD = "trust" }}

[proxy]
listen = "0.0.0.0:{INGRESS_PORT}"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
route = [{{ path = "/" }}, {{ host = "staff.test", basic_auth = {{ realm = "Staff", users = "${{secret.staff_users}}" }} }}]
replicas = 2
env = {{ VERSION = "{version}", HEALTHY = "{web_healthy}", API_TOKEN = "${{secret.api_token}}" }}
{health}

[services.api]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
replicas = 2
env = {{ VERSION = "{version}", DB_PASSWORD = "${{secret.db_password}}" }}
{health}

[services.worker]
image = "{TESTAPP_SHELL_IMAGE}"
env = {{ VERSION = "{version}" }}
"#
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `dockhand ARGS --json` with room for a rolling update of every service.
pub(crate) fn json(
    sb: &dockhand_test_support::Sandbox,
    args: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = sb.run_for(&all, Duration::from_secs(600));
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dockhand {all:?}: stdout is not JSON ({e})\n{}", text(&out)));
    (out.status.code(), value, text(&out))
}

/// The `dockhand.release` of each running task of `service`, sorted.
fn releases(cluster: &Cluster, service: &str) -> Vec<String> {
    let m1 = cluster.manager();
    let ids = m1.docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ]);
    let mut out = Vec::new();
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let line = m1.docker_ok(&[
            "inspect",
            "--format",
            "{{index .Spec.ContainerSpec.Labels \"dockhand.release\"}} {{.Status.State}}",
            id,
        ]);
        if let Some(release) = line.strip_suffix(" running") {
            out.push(release.to_string());
        }
    }
    out.sort();
    out
}

/// Waits until every running task of each service runs `release` (`replicas` of them).
pub(crate) fn wait_releases(cluster: &Cluster, services: &[(&str, usize)], release: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let now: Vec<Vec<String>> = services.iter().map(|(s, _)| releases(cluster, s)).collect();
        if services
            .iter()
            .zip(&now)
            .all(|((_, n), r)| r.len() == *n && r.iter().all(|x| x == release))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "services {services:?} not all on release {release}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A swarm of one manager and two workers reachable over SSH, with the test images in the
/// manager's Engine only (a deploy brings the workers theirs), and a sandbox pointed at it.
pub(crate) fn swarm_sandbox(prefix: &str) -> (Cluster, dockhand_test_support::Sandbox, String) {
    ensure_test_images();
    let mut cluster = Cluster::start(1, 2);
    cluster.load_images_into(&["m1"], &[TESTAPP_SHELL_IMAGE, POSTGRES_IMAGE]);
    let ssh_config = cluster.start_ssh(std::path::Path::new(env!("CARGO_BIN_EXE_dockhand")));
    let app = unique_app(prefix);
    let sb = sandbox()
        .with_env("DOCKER_HOST", &cluster.manager().docker_host())
        .with_env("DOCKHAND_SSH_CONFIG", ssh_config.to_str().unwrap());
    (cluster, sb, app)
}

#[test]
fn an_app_across_the_nodes_deploys_rolls_back_and_outlives_a_lost_worker() {
    let (mut cluster, sb, app) = swarm_sandbox("sw");
    sb.write("dockhand.toml", &toml(&app, "v1", true));
    let secrets = sb.write(
        ".dockhand/secrets.env",
        &format!("api_token={API_TOKEN}\ndb_password={DB_PASSWORD}\nstaff_users={STAFF_USERS}\n"),
    );
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let web = format!("{app}-web");
    let api = format!("{app}-api");
    let worker = format!("{app}-worker");
    let db = format!("{app}-db");
    let all = [(web.as_str(), 2), (api.as_str(), 2), (worker.as_str(), 1)];
    let mut outputs = String::new();

    // Release 1 across the nodes.
    let (code, report, out) = json(&sb, &["deploy"]);
    outputs += &out;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["release"], 1, "{report:#}");
    wait_releases(&cluster, &all, "1");

    // The images went from the manager to the workers over SSH, each node getting what may
    // run there: the app's image to both, PostgreSQL only to w2 (the database is pinned to
    // it), the ingress image only to w1 (the other ingress node). m1 was the source.
    let sent = |report: &serde_json::Value, node: &str| -> Vec<(String, bool, u64)> {
        report["images"]
            .as_array()
            .unwrap_or_else(|| panic!("no images in {report:#}"))
            .iter()
            .filter(|n| n["node"] == node)
            .flat_map(|n| n["images"].as_array().unwrap().clone())
            .map(|p| {
                (
                    p["image"].as_str().unwrap().to_string(),
                    p["already_there"].as_bool().unwrap(),
                    p["bytes_sent"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert!(sent(&report, "m1").is_empty(), "{report:#}");
    let w1_got = sent(&report, "w1");
    let w2_got = sent(&report, "w2");
    let names = |got: &[(String, bool, u64)]| -> Vec<String> {
        let mut n: Vec<String> = got.iter().map(|(i, _, _)| i.clone()).collect();
        n.sort();
        n
    };
    let ingress_image = w1_got
        .iter()
        .map(|(i, _, _)| i.clone())
        .find(|i| i.starts_with("dockhand-ingress:"))
        .unwrap_or_else(|| panic!("the ingress image went to w1: {report:#}"));
    assert_eq!(
        names(&w1_got),
        {
            let mut n = vec![ingress_image.clone(), TESTAPP_SHELL_IMAGE.to_string()];
            n.sort();
            n
        },
        "{report:#}"
    );
    assert_eq!(
        names(&w2_got),
        {
            let mut n = vec![POSTGRES_IMAGE.to_string(), TESTAPP_SHELL_IMAGE.to_string()];
            n.sort();
            n
        },
        "{report:#}"
    );
    for (image, there, bytes) in w1_got.iter().chain(&w2_got) {
        assert!(!there && *bytes > 0, "{image} was sent: {report:#}");
    }
    for (node, image, present) in [
        ("w1", TESTAPP_SHELL_IMAGE, true),
        ("w1", ingress_image.as_str(), true),
        ("w1", POSTGRES_IMAGE, false),
        ("w2", TESTAPP_SHELL_IMAGE, true),
        ("w2", POSTGRES_IMAGE, true),
        ("w2", ingress_image.as_str(), false),
    ] {
        let found = cluster.node(node).docker(&["image", "inspect", image]);
        assert_eq!(found.status.success(), present, "{image} on {node}");
    }

    // The ingress proxy: a task on each ingress node (m1 and w1), publishing the proxy's port
    // there; from this host, web's route answers through either.
    let ingress = format!("{}:{INGRESS_PORT}", cluster.manager().addr());
    let ingress_w1 = format!("{}:{INGRESS_PORT}", cluster.node("w1").addr());
    wait_ingress(&cluster, &app, &ingress, "v1");
    wait_ingress(&cluster, &app, &ingress_w1, "v1");
    let ingress_tasks = cluster.manager().docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &format!("{app}-ingress"),
    ]);
    assert_eq!(ingress_tasks.lines().count(), 2, "{ingress_tasks}");

    // The route with basic auth, on every ingress node: a challenge without credentials or
    // with a wrong password, the service with the user's password.
    let staff = format!(
        "Authorization: Basic {}\r\n",
        basic(&format!("staff:{STAFF_PASSWORD}"))
    );
    let wrong = format!(
        "Authorization: Basic {}\r\n",
        basic("staff:not-the-password")
    );
    for addr in [&ingress, &ingress_w1] {
        let (status, head, _) = request(addr, "staff.test", "/version", "").unwrap();
        assert_eq!(status, 401, "{addr}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"staff\""),
            "{addr}: {head}"
        );
        let (status, head, _) = request(addr, "staff.test", "/version", &wrong).unwrap();
        assert_eq!(status, 401, "{addr}: {head}");
        let (status, _, body) = request(addr, "staff.test", "/version", &staff).unwrap();
        assert_eq!((status, body.trim()), (200, "v1"), "{addr}");
        // The other route asks for nothing.
        assert_eq!(ingress_get(addr, "/version"), Ok((200, "v1".into())));
    }

    // `status`: three ready nodes, the database on the labelled one, every task running.
    let (code, status, out) = json(&sb, &["status"]);
    outputs += &out;
    assert_eq!(code, Some(0), "{out}");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status:#}");
    assert!(nodes.iter().all(|n| n["state"] == "ready"), "{status:#}");
    let w2 = nodes.iter().find(|n| n["hostname"] == "w2").unwrap();
    assert_eq!(w2["labels"]["db"], "main", "{status:#}");
    assert_eq!(w2["labels"]["dockhand.node"], "w2", "{status:#}");
    let placement = &status["placement"];
    let on = |node: &str| -> Vec<String> {
        placement[node]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[0].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        on("w2").iter().filter(|s| *s == "db").count(),
        1,
        "{status:#}"
    );
    assert!(!on("m1").contains(&"db".to_string()), "{status:#}");
    let tasks: usize = ["m1", "w1", "w2"].iter().map(|n| on(n).len()).sum();
    assert_eq!(
        tasks, 8,
        "two web, two api, a worker, the database and two ingress tasks: {status:#}"
    );
    assert!(on("m1").contains(&"ingress".to_string()), "{status:#}");
    assert!(on("w1").contains(&"ingress".to_string()), "{status:#}");
    assert!(!on("w2").contains(&"ingress".to_string()), "{status:#}");
    let human = sb.run(&["status"]);
    let human_text = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(human.status.success(), "{}", text(&human));
    for word in [
        "node m1",
        "node w1",
        "node w2",
        "leader",
        "db  running",
        "web  running",
    ] {
        assert!(human_text.contains(word), "`{word}` in:\n{human_text}");
    }

    // The secret: a file in the task named by API_TOKEN_FILE, in no spec and no env.
    let (node, container) = cluster
        .nodes()
        .iter()
        .find_map(|n| {
            let ids = n.docker_ok(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={web}"),
            ]);
            ids.lines().next().map(|c| (n, c.to_string()))
        })
        .expect("a task of web on some node");
    assert_eq!(
        node.docker_ok(&["exec", &container, "sh", "-c", "cat \"$API_TOKEN_FILE\""]),
        API_TOKEN
    );
    let env = node.docker_ok(&["exec", &container, "env"]);
    assert!(!env.contains(API_TOKEN), "{env}");
    let inspect = cluster.manager().docker_ok(&[
        "service",
        "inspect",
        &web,
        &api,
        &db,
        &format!("{app}-ingress"),
    ]);
    assert!(
        !inspect.contains(API_TOKEN) && !inspect.contains(DB_PASSWORD),
        "{inspect}"
    );
    assert!(!inspect.contains(STAFF_HASH), "{inspect}");
    // The users of the route reach the ingress as a Swarm secret, mounted 0400 in its tmpfs;
    // the configuration it reads (a Swarm config) only names the secret.
    assert!(inspect.contains("ingress-auth-staff_users"), "{inspect}");
    let configs = cluster.manager().docker_ok(&["config", "ls", "-q"]);
    for id in configs.lines() {
        let data =
            cluster
                .manager()
                .docker_ok(&["config", "inspect", "--format", "{{.Spec.Data}}", id]);
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        assert!(!decoded.contains(STAFF_HASH), "config {id}: {decoded}");
    }
    // No process of any node (they share this host's process table) has it in its arguments.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !args.contains(STAFF_HASH) && !args.contains(STAFF_PASSWORD),
                "{args}"
            );
        }
    }

    // A finished deploy gave its lock back; one held by another deploy refuses this one
    // (exit 4, saying who holds it and how to clear it) without touching a service.
    let m1 = cluster.manager();
    let lock = format!("dockhand-{app}-lock");
    assert_eq!(
        m1.docker_ok(&["config", "ls", "-q", "--filter", &format!("name={lock}")]),
        ""
    );
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    m1.docker_ok(&[
        "config",
        "create",
        "--label",
        &format!("dockhand.lock={app}"),
        "--label",
        "dockhand.holder=ci@builder, pid 4242",
        "--label",
        &format!("dockhand.since={since}"),
        &lock,
        "/etc/hostname",
    ]);
    sb.write("dockhand.toml", &toml(&app, "v2", true));
    let (code, refused, out) = json(&sb, &["deploy"]);
    outputs += &out;
    assert_eq!(code, Some(4), "{out}");
    assert_eq!(refused["error"]["code"], "conflict", "{refused:#}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ci@builder, pid 4242")
            && message.contains(&format!("docker config rm {lock}")),
        "{message}"
    );
    wait_releases(&cluster, &all, "1");
    m1.docker_ok(&["config", "rm", &lock]);

    // Release 2: every service replaced, under load through the ingress: the proxy moves
    // to the new tasks as they pass their probes and off the old ones as Swarm's DNS drops
    // them, so no request fails. The ingress itself is left alone (routing did not change).
    let load = Load::start(&ingress, "shop.test", "/version", 4);
    let (code, report, out) = json(&sb, &["deploy"]);
    outputs += &out;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["release"], 2, "{report:#}");
    wait_releases(&cluster, &all, "2");
    wait_ingress(&cluster, &app, &ingress, "v2");
    wait_ingress(&cluster, &app, &ingress_w1, "v2");
    let seen = load.finish();
    assert_eq!(
        seen.failures(),
        0,
        "through the ingress during the update: {seen:?}"
    );
    assert!(
        seen.by_version.contains_key("v1") && seen.by_version.contains_key("v2"),
        "{seen:?}"
    );
    // Every node had every image already: the second deploy sent nothing.
    for node in ["w1", "w2"] {
        let got = sent(&report, node);
        assert!(!got.is_empty(), "{node} was asked: {report:#}");
        assert!(
            got.iter().all(|(_, there, bytes)| *there && *bytes == 0),
            "nothing sent to {node} again: {report:#}"
        );
    }

    // A node that cannot be reached over SSH stops the deploy before any change: exit 3,
    // naming the node and what to do; the app stays on release 2, the lock is given back and
    // the release number is not used up (the next deploy is release 3).
    sb.write(
        "dockhand.toml",
        &toml(&app, "v3", true).replace("ssh://root@w2.invalid", "ssh://root@w2-gone.invalid"),
    );
    let (code, refused, out) = json(&sb, &["deploy"]);
    outputs += &out;
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(refused["error"]["code"], "unreachable", "{refused:#}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node `w2`")
            && message.contains("w2-gone.invalid")
            && message.contains("no service was changed"),
        "{message}"
    );
    wait_releases(&cluster, &all, "2");
    assert_eq!(
        m1.docker_ok(&["config", "ls", "-q", "--filter", &format!("name={lock}")]),
        ""
    );
    let after = cluster.manager().docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &format!("{app}-ingress"),
    ]);
    assert_eq!(after, ingress_tasks, "the ingress task was not replaced");

    // Release 3's web fails its health check: Swarm rolls web back by itself, and api and
    // the worker, which converged, go back too: the whole app stays on release 2 — and no
    // request through the ingress fails meanwhile.
    sb.write("dockhand.toml", &toml(&app, "v3", false));
    let load = Load::start(&ingress, "shop.test", "/version", 4);
    let (code, report, out) = json(&sb, &["deploy"]);
    outputs += &out;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["release"], 3, "{report:#}");
    assert_eq!(report["previous"], 2, "{report:#}");
    let outcome = |name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .map(|s| s["outcome"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(outcome("web"), "rolled_back_by_swarm", "{report:#}");
    assert_eq!(outcome("api"), "reverted", "{report:#}");
    assert_eq!(outcome("worker"), "reverted", "{report:#}");
    wait_releases(&cluster, &all, "2");
    wait_ingress(&cluster, &app, &ingress, "v2");
    let seen = load.finish();
    assert_eq!(
        seen.failures(),
        0,
        "through the ingress during the failed update and its rollback: {seen:?}"
    );
    assert!(seen.by_version.contains_key("v2"), "{seen:?}");

    // `dockhand rollback`: every service back on release 1, the database left alone.
    let db_task = cluster.manager().docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &db,
    ]);
    let (code, report, out) = json(&sb, &["rollback"]);
    outputs += &out;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["release"], 1, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    wait_releases(&cluster, &all, "1");
    assert_eq!(
        cluster.manager().docker_ok(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &db
        ]),
        db_task,
        "the database's task was replaced"
    );

    // Nothing the commands printed, no Docker event and no file of any node outside the
    // task's tmpfs and Swarm's encrypted store holds a secret value.
    let ingress_logs =
        cluster
            .manager()
            .docker(&["service", "logs", "--raw", &format!("{app}-ingress")]);
    outputs += &text(&ingress_logs);
    for secret in [API_TOKEN, DB_PASSWORD, STAFF_HASH, STAFF_PASSWORD] {
        assert!(!outputs.contains(secret), "{outputs}");
    }
    for node in cluster.nodes() {
        let events = node.docker_ok(&["events", "--since", "0", "--until", "0s"]);
        assert!(
            !events.contains(API_TOKEN)
                && !events.contains(DB_PASSWORD)
                && !events.contains(STAFF_HASH),
            "{events}"
        );
        let found = std::process::Command::new("grep")
            .args([
                "-rlsI",
                "--devices=skip",
                "-e",
                API_TOKEN,
                "-e",
                DB_PASSWORD,
                "-e",
                STAFF_HASH,
            ])
            .arg(node.dir())
            .output()
            .unwrap();
        let files = String::from_utf8_lossy(&found.stdout).to_string();
        // The secret files of running tasks are tmpfs mounts (not the node's disk): only
        // files on the file system of the node's directory count.
        let disk = std::fs::metadata(node.dir()).unwrap().dev();
        let on_disk: Vec<&str> = files
            .lines()
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.dev() == disk))
            .collect();
        assert!(on_disk.is_empty(), "{}: {on_disk:?}", node.hostname());
    }

    // A worker lost (its Docker Engine killed): the managers mark it down, its tasks run on
    // the other nodes, and `status` says so and exits 1.
    let w1_tasks = status_on(&sb, "w1");
    assert!(
        !w1_tasks.is_empty(),
        "Swarm spreads six tasks over three nodes"
    );
    cluster.node_mut("w1").kill_dockerd();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        let (code, status, out) = json(&sb, &["status"]);
        let running: usize = ["m1", "w2"]
            .iter()
            .map(|n| {
                status["placement"][*n]
                    .as_array()
                    .map(|tasks| tasks.iter().filter(|t| t[1] == "running").count())
                    .unwrap_or(0)
            })
            .sum();
        // The app's six tasks and m1's ingress (w1's stays with w1: the ingress is global).
        if code == Some(1) && status["down"] == serde_json::json!(["w1"]) && running == 7 {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "w1 down and its tasks {w1_tasks:?} elsewhere within 180s: {out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(status["ok"], false, "{status:#}");
    let human = sb.run(&["status"]);
    assert_eq!(human.status.code(), Some(1), "{}", text(&human));
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("node w1 is not ready"),
        "{}",
        text(&human)
    );
    drop(cluster);
}

/// The app's services with a running task on `node`, by `status --json`.
fn status_on(sb: &dockhand_test_support::Sandbox, node: &str) -> Vec<String> {
    let (_, status, _) = json(sb, &["status"]);
    status["placement"][node]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t[0].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A database without a placement cannot run on a cluster (its volume lives on one node):
/// `deploy` says which, and how to pin it, before reaching any swarm.
#[test]
fn an_unpinned_database_is_refused_with_how_to_pin_it() {
    let sb = sandbox().with_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let text = toml("unpinned", "v1", true)
        .replace("placement = { db = [\"node.labels.db == main\"] }\n", "");
    sb.write("dockhand.toml", &text);
    let secrets = sb.write(
        ".dockhand/secrets.env",
        &format!("api_token=x\ndb_password=y\nstaff_users={STAFF_USERS}\n"),
    );
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sb.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", self::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database `db` is not pinned to a node")
            && stderr.contains("node.labels.db == yes"),
        "{stderr}"
    );
}

/// A route's basic auth whose users secret the ingress could not use (a plaintext password)
/// is refused by `deploy` before reaching any swarm, naming the secret and not its value.
#[test]
fn a_basic_auth_route_the_ingress_cannot_build_is_refused_before_the_swarm() {
    let sb = sandbox().with_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    sb.write("dockhand.toml", &toml("authcheck", "v1", true));
    let secrets = sb.write(
        ".dockhand/secrets.env",
        "api_token=x\ndb_password=y\nstaff_users=staff:plain-pw-31f9\n",
    );
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sb.run(&["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", self::text(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("staff_users") && message.contains("plaintext"),
        "{message}"
    );
    assert!(
        !self::text(&out).contains("plain-pw-31f9"),
        "{}",
        self::text(&out)
    );
}

/// The seed-style Swarm stack of the compose corpus (two web replicas updated start-first
/// with rollback, a worker placed on the workers, PostgreSQL placed on `node.labels.db ==
/// main`, health checks, secrets from `.env`).
const SWARM_STACK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../compose/tests/corpus/dockhand/swarm-stack/docker-stack.yml"
);
/// The port the stack's ingress publishes (another than the other test's).
const STACK_INGRESS_PORT: u16 = 18081;

/// `dockhand import compose --cluster` of a Swarm stack, done the way a user does it: the
/// nodes named on the command line (`--manager`, `--worker`), `--check` passing, the
/// commented `[cluster.labels.NODE]` hint given to the node that is to hold the database, and
/// `[proxy] listen` set; then `dockhand deploy` puts the database on the labelled node, runs
/// web's two replicas and answers through the ingress.
#[test]
fn a_swarm_stack_imported_with_cluster_deploys_where_its_placement_says() {
    let (cluster, sb, app) = swarm_sandbox("stk");
    let sb = sb.with_env("COMPOSE_PROJECT_NAME", &app);
    // The stack as written, on the test images (the test PostgreSQL image predates
    // POSTGRES_PASSWORD_FILE, so it trusts the overlay; the password still reaches it as a
    // Swarm secret).
    let stack = std::fs::read_to_string(SWARM_STACK)
        .unwrap()
        .replace("ghcr.io/example/shop-web:1.4.2", TESTAPP_SHELL_IMAGE)
        .replace("postgres:16", POSTGRES_IMAGE)
        .replace(
            "      POSTGRES_USER: shop\n",
            "      POSTGRES_USER: shop\n      POSTGRES_HOST_AUTH_METHOD: trust\n",
        );
    assert!(stack.contains(TESTAPP_SHELL_IMAGE) && stack.contains("HOST_AUTH_METHOD"));
    sb.write("docker-stack.yml", &stack);
    let env = sb.write(
        ".env",
        &format!("DB_PASSWORD={DB_PASSWORD}\nAPI_TOKEN={API_TOKEN}\n"),
    );
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = sb.run(&[
        "import",
        "compose",
        "-f",
        "docker-stack.yml",
        "--cluster",
        "--manager",
        "m1=ssh://root@m1.invalid",
        "--worker",
        "w1=ssh://root@w1.invalid",
        "--worker",
        "w2=ssh://root@w2.invalid",
        "--check",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("db=main"),
        "the label is in the to-do list: {}",
        text(&out)
    );
    let imported = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    for line in [
        "managers = [\"m1\"]\nworkers = [\"w1\", \"w2\"]\n",
        "db = [\"node.labels.db == main\"]\n",
        "worker = [\"node.role == worker\"]\n",
        "# [cluster.labels.NODE]\n# db = \"main\"\n",
    ] {
        assert!(imported.contains(line), "no {line:?} in\n{imported}");
    }
    // What the user does next: the label to the node that keeps the database, and the
    // proxy's public address.
    let edited = imported.replace(
        "# [cluster.labels.NODE]\n# db = \"main\"\n",
        "[cluster.labels.w2]\ndb = \"main\"\n",
    ) + &format!("\n[proxy]\nlisten = \"0.0.0.0:{STACK_INGRESS_PORT}\"\n");
    sb.write("dockhand.toml", &edited);

    let (code, report, out) = json(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}\n{edited}");
    assert_eq!(report["ok"], true, "{report:#}");
    let web = format!("{app}-web");
    let worker = format!("{app}-worker");
    wait_releases(&cluster, &[(web.as_str(), 2), (worker.as_str(), 1)], "1");

    // The database runs on the labelled node, the worker on a worker, web twice.
    let (code, status, out) = json(&sb, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    let on = |node: &str| -> Vec<String> {
        status["placement"][node]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t[0].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        on("w2").iter().filter(|s| *s == "db").count(),
        1,
        "{status:#}"
    );
    assert!(
        !on("m1").contains(&"db".into()) && !on("w1").contains(&"db".into()),
        "{status:#}"
    );
    assert!(!on("m1").contains(&"worker".into()), "{status:#}");
    let webs: usize = ["m1", "w1", "w2"]
        .iter()
        .map(|n| on(n).iter().filter(|s| *s == "web").count())
        .sum();
    assert_eq!(webs, 2, "{status:#}");
    let running = cluster.manager().docker_ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &web,
    ]);
    assert_eq!(running.lines().count(), 2, "{running}");

    // A request through the ingress (on the manager) reaches web.
    let addr = format!("{}:{STACK_INGRESS_PORT}", cluster.manager().addr());
    let host = format!("{app}.localhost");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut last = Err(String::from("not asked yet"));
    while std::time::Instant::now() < deadline {
        last = get_host(&addr, &host, "/version");
        if matches!(&last, Ok((200, body)) if body.trim() == "1.4.2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        matches!(&last, Ok((200, body)) if body.trim() == "1.4.2"),
        "the ingress at {addr} never answered {host}/version: {last:?}"
    );
    drop(cluster);
}

/// `GET path` with `Host: host` at `addr`: the status and the body, or why not.
pub(crate) fn get_host(addr: &str, host: &str, path: &str) -> Result<(u16, String), String> {
    request(addr, host, path, "").map(|(status, _, body)| (status, body))
}

/// `Authorization: Basic` of `user_password`, base64.
fn basic(user_password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(user_password)
}

/// `GET path` to `host` at `addr` with the header lines `extra`: the status, the head and
/// the body, or why not.
fn request(
    addr: &str,
    host: &str,
    path: &str,
    extra: &str,
) -> Result<(u16, String, String), String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {answer:?}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Ok((status, head.to_string(), body.to_string()))
}
