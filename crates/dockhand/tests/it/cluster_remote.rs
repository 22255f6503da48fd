//! A `[cluster]` project worked on from a machine that is not a node (a laptop, CI): no
//! `$DOCKER_HOST`, this machine's Engine in no swarm, so `dockhand deploy`, `status` and
//! `rollback` reach the first manager over SSH (test-support's swarm, each node's sshd in its
//! namespace) and talk to its Engine through a socket forwarded over the session. `-d`
//! picks a manager and refuses a worker; a manager SSH cannot reach, and one whose Engine is in
//! no swarm, are refused saying which and what to do.

use std::process::{Output, Stdio};
use std::time::Duration;

use dockhand_test_support::docker::{ensure_test_images, unique_app, TESTAPP_SHELL_IMAGE};
use dockhand_test_support::swarm::{destinations_toml, Cluster, TESTAPP_SWARM_HEALTH};

use crate::cluster::wait_releases;
use crate::sandbox;

/// An app of one service with two replicas and no route (so no ingress), release `version`.
fn toml(app: &str, version: &str) -> String {
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]

[services.worker]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
replicas = 2
env = {{ VERSION = "{version}" }}
{TESTAPP_SWARM_HEALTH}
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

/// `dockhand ARGS --json` without `$DOCKER_HOST` (whatever the test process has).
fn run(
    sb: &dockhand_test_support::Sandbox,
    args: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = sb
        .cmd(&all)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKHAND_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run dockhand");
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dockhand {all:?}: stdout is not JSON ({e})\n{}", text(&out)));
    (out.status.code(), value, text(&out))
}

/// This machine's Engine must not manage a swarm, or the commands would rightly use it.
fn assert_host_engine_in_no_swarm() {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
        .output()
        .expect("docker is missing: apt-get install docker.io");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "false",
        "this machine's Docker Engine manages a swarm: the test needs one that does not"
    );
}

#[test]
fn cluster_deploy_status_and_rollback_reach_the_first_manager_over_ssh() {
    ensure_test_images();
    assert_host_engine_in_no_swarm();
    let mut cluster = Cluster::start(1, 2);
    cluster.load_images_into(&["m1"], &[TESTAPP_SHELL_IMAGE]);
    let ssh_config = cluster.start_ssh(std::path::Path::new(env!("CARGO_BIN_EXE_dockhand")));
    let app = unique_app("swr");
    let sb = sandbox().with_env("DOCKHAND_SSH_CONFIG", ssh_config.to_str().unwrap());
    let service = format!("{app}-worker");

    // Release 1, from here: the swarm on m1 gets the service, the workers their image from m1.
    sb.write("dockhand.toml", &toml(&app, "v1"));
    let (code, report, out) = run(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["release"], 1, "{report:#}");
    wait_releases(&cluster, &[(service.as_str(), 2)], "1");
    let listed = cluster
        .manager()
        .docker_ok(&["service", "ls", "--format", "{{.Name}}"]);
    assert!(listed.lines().any(|l| l == service), "{listed}");
    let nodes_sent: Vec<&str> = report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in {report:#}"))
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert!(
        !nodes_sent.contains(&"m1"),
        "m1 is the source of the images, found through the forwarded Engine: {report:#}"
    );

    // Release 2, then status: the nodes and what runs where.
    sb.write("dockhand.toml", &toml(&app, "v2"));
    let (code, report, out) = run(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["release"], 2, "{report:#}");
    wait_releases(&cluster, &[(service.as_str(), 2)], "2");
    let (code, status, out) = run(&sb, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(status["ok"], true, "{status:#}");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status:#}");
    assert!(nodes.iter().all(|n| n["state"] == "ready"), "{status:#}");
    let running = status["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["service"] == service.as_str() && t["state"] == "running")
        .count();
    assert_eq!(running, 2, "{status:#}");

    // Rollback, still from here: back to release 1.
    let (code, report, out) = run(&sb, &["rollback"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["release"], 1, "{report:#}");
    wait_releases(&cluster, &[(service.as_str(), 2)], "1");

    // -d picks a manager; a worker is refused before anything is reached.
    let (code, status, out) = run(&sb, &["status", "-d", "m1"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3), "{out}");
    let (code, err, out) = run(&sb, &["deploy", "-d", "w1"]);
    assert_eq!(code, Some(2), "{out}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node `w1` is a worker") && message.contains("managers are m1"),
        "{out}"
    );
    // The refused deploy changed nothing: still release 1.
    wait_releases(&cluster, &[(service.as_str(), 2)], "1");
}

#[test]
fn cluster_status_on_a_manager_in_no_swarm_says_to_run_setup_first() {
    ensure_test_images();
    assert_host_engine_in_no_swarm();
    let mut cluster = Cluster::engines(1, 0);
    let ssh_config = cluster.start_ssh(std::path::Path::new(env!("CARGO_BIN_EXE_dockhand")));
    let app = unique_app("swr");
    let sb = sandbox().with_env("DOCKHAND_SSH_CONFIG", ssh_config.to_str().unwrap());
    sb.write(
        "dockhand.toml",
        &format!(
            "app = \"{app}\"\n\n{}\n[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n\n[services.web]\nimage = \"{TESTAPP_SHELL_IMAGE}\"\nport = 8080\n",
            destinations_toml(&["m1"])
        ),
    );
    let (code, err, out) = run(&sb, &["status"]);
    assert_eq!(code, Some(3), "{out}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("manager `m1` (root@m1.invalid, over SSH) is not a swarm manager")
            && message.contains("run `dockhand setup` first"),
        "{out}"
    );
}

#[test]
fn cluster_deploy_to_an_unreachable_manager_names_it_and_what_to_check() {
    let app = unique_app("swr");
    let sb = sandbox();
    // Nothing listens on port 1 of this machine.
    sb.write(
        "dockhand.toml",
        &format!(
            "app = \"{app}\"\n\n[destinations.m1]\nhost = \"ssh://root@127.0.0.1:1\"\n\n[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n\n[services.web]\nimage = \"{TESTAPP_SHELL_IMAGE}\"\nport = 8080\n"
        ),
    );
    let (code, err, out) = run(&sb, &["deploy"]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(err["error"]["node"], "m1", "{out}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot reach manager `m1` of [cluster] over SSH (root@127.0.0.1)")
            && message.contains("pick another manager with -d NAME"),
        "{out}"
    );
}

/// `dockhand setup` of a `[cluster]` whose one manager is a whole host (the remote tests'
/// systemd target, Docker installed by setup): the host is set up, the swarm created on it,
/// then the watch-only agent installed there (the project 0600, the unit running); the agent
/// answers through SSH with the cluster's `node_down` rule, `dockhand status` from here
/// reaches the swarm over SSH, and a second setup changes nothing.
#[test]
fn cluster_setup_installs_the_watch_only_agent_on_the_first_manager_once() {
    use dockhand_test_support::target::Target;
    let target = Target::start("clagent");
    let sb = sandbox().with_env(
        "DOCKHAND_SSH_CONFIG",
        target.ssh_config().to_str().expect("utf-8 path"),
    );
    let app = unique_app("swa");
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "{app}"

[destinations.m1]
host = "ssh://root@{alias}"

[cluster]
engine = "swarm"
managers = ["m1"]

[proxy]
listen = "0.0.0.0:80"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
route = {{ path = "/" }}

[alerts.rules.node_down]
for = "4s"

[dashboard]
enabled = false
"#,
            alias = target.alias()
        ),
    );
    let setup = |what: &str| {
        let out = sb.run_for(
            &["setup", "--yes", "--no-harden-ssh", "--json"],
            Duration::from_secs(900),
        );
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text(&out)));
        v
    };

    let first = setup("the first setup");
    assert!(first["changed"].as_u64().unwrap_or(0) > 0, "{first:#}");
    let agent_steps: Vec<&str> = first["agent"]["plan"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no agent plan in {first:#}"))
        .iter()
        .filter(|s| s["state"] == "change")
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        agent_steps.contains(&"project") && agent_steps.contains(&"agent"),
        "{first:#}"
    );
    assert_eq!(
        target
            .exec_ok("docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'")
            .trim(),
        "active true"
    );
    assert_eq!(
        target.exec_ok("systemctl is-active dockhand").trim(),
        "active"
    );
    assert_eq!(
        target
            .exec_ok("stat -c '%a %U' /srv/dockhand/dockhand.toml")
            .trim(),
        "600 dockhand",
        "the project's dockhand.toml on the manager"
    );
    // No socket unit holds [proxy] listen: the port is the ingress's on this node.
    assert!(
        !target
            .exec("systemctl cat dockhand.socket")
            .status
            .success(),
        "a socket unit holds the ingress's port"
    );

    // The agent answers through SSH, watching the swarm.
    let out = sb.run_for(&["alerts", "-d", "m1", "--json"], Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let alerts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        alerts["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "node_down")),
        "{alerts:#}"
    );
    // `dockhand status` from here: the swarm's one node, ready, over SSH.
    let (code, status, out) = run(&sb, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(status["nodes"][0]["state"], "ready", "{out}");

    // A second setup changes nothing: host, swarm and agent.
    let again = setup("the second setup");
    assert_eq!(again["changed"], 0, "{again:#}");
    assert_eq!(again["agent"]["changed"], 0, "{again:#}");
}
