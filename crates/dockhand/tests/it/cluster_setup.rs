//! `dockhand setup --cluster-only` forms the swarm of `[cluster]` over SSH, through the real
//! binary, on three namespaced engines started without a swarm (test-support's
//! `Cluster::engines`, each reachable over SSH): a node already in another swarm is refused by
//! name before anything changes; once it left, setup creates the swarm on the first manager,
//! joins the workers, labels the nodes and closes the swarm's ports to all but the other
//! nodes (the nftables table read inside each node's namespace; the host, not a node, is
//! refused at 2377); `dockhand status` lists the nodes ready; a second setup changes nothing
//! (same node ids, nothing planned). The join tokens appear in no process argument seen
//! while setup ran, no output (text or `--json`), and no file under any node's directory or
//! the project.
//!
//! The full setup (packages, users, units, then the swarm) needs whole hosts: the namespaced
//! nodes share this machine's file system and have no systemd, so only the swarm part runs
//! here (`--cluster-only`).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_test_support::docker::{unique_app, TESTAPP_SHELL_IMAGE};
use dockhand_test_support::swarm::{destinations_toml, Cluster};

use crate::sandbox;

fn toml(app: &str) -> String {
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
[cluster.labels.w2]
db = "main"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
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

/// `docker info`'s swarm state of a node: local node state, whether it manages, node id.
fn swarm_info(cluster: &Cluster, node: &str) -> (String, bool, String) {
    let line = cluster.node(node).docker_ok(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}",
    ]);
    let mut words = line.split_whitespace();
    (
        words.next().unwrap_or_default().to_string(),
        words.next() == Some("true"),
        words.next().unwrap_or_default().to_string(),
    )
}

/// Watches every process's arguments for a Swarm join token (`SWMTKN-…`) until dropped.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start() -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(entries) = std::fs::read_dir("/proc") {
                    for e in entries.flatten() {
                        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                            continue;
                        };
                        let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if line.contains("SWMTKN-") {
                            v.lock().unwrap().push(line);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ArgvWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// Every regular file under `dir` (symlinks not followed) that contains one of `needles`.
fn files_containing(dir: &Path, needles: &[&str], out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_containing(&path, needles, out);
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes);
                if needles.iter().any(|n| text.contains(n)) {
                    out.push(path.display().to_string());
                }
            }
        }
    }
}

#[test]
fn cluster_setup_forms_the_swarm_over_ssh_once_and_never_moves_a_foreign_node() {
    let mut cluster = Cluster::engines(1, 2);
    let ssh_config = cluster.start_ssh(Path::new(env!("CARGO_BIN_EXE_dockhand")));
    let app = unique_app("swsetup");
    let sb = sandbox().with_env("DOCKHAND_SSH_CONFIG", ssh_config.to_str().unwrap());
    sb.write("dockhand.toml", &toml(&app));
    let addr = |n: &str| cluster.node(n).addr().to_string();
    let mut printed = String::new();
    let watch = ArgvWatch::start();

    // w2 is in a swarm of its own: refused by name, nothing changed anywhere.
    cluster
        .node("w2")
        .docker_ok(&["swarm", "init", "--advertise-addr", &addr("w2")]);
    let out = sb.run_for(
        &["setup", "--cluster-only", "--yes", "--json"],
        Duration::from_secs(300),
    );
    printed += &text(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node `w2` is already in another swarm")
            && message.contains("docker swarm leave --force")
            && message.contains("nothing was changed"),
        "{err:#}"
    );
    for node in ["m1", "w1"] {
        assert_eq!(swarm_info(&cluster, node).0, "inactive", "{node}");
        let nft = cluster
            .node(node)
            .in_netns("nft", &["list", "table", "inet", "dockhand-swarm"]);
        assert!(
            !nft.status.success(),
            "{node} got the firewall table: {nft:?}"
        );
    }
    cluster.node("w2").docker_ok(&["swarm", "leave", "--force"]);

    // The swarm formed: m1 manages it, w1 and w2 joined it as workers.
    let out = sb.run_for(
        &["setup", "--cluster-only", "--yes"],
        Duration::from_secs(300),
    );
    printed += &text(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("the swarm of 3 node(s) is formed"),
        "{}",
        text(&out)
    );
    let (m1_state, m1_manages, m1_id) = swarm_info(&cluster, "m1");
    assert_eq!((m1_state.as_str(), m1_manages), ("active", true));
    let mut ids = vec![m1_id.clone()];
    for node in ["w1", "w2"] {
        let (state, manages, id) = swarm_info(&cluster, node);
        assert_eq!((state.as_str(), manages), ("active", false), "{node}");
        ids.push(id);
    }
    let listed = cluster.manager().docker_ok(&[
        "node",
        "ls",
        "--format",
        "{{.ID}} {{.Hostname}} {{.ManagerStatus}}",
    ]);
    for id in &ids {
        assert!(
            listed.contains(id.as_str()),
            "{id} not in the swarm:\n{listed}"
        );
    }
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(&format!("{m1_id} m1 Leader")), "{listed}");

    // Labels: each node its dockhand.node, w2 its db=main.
    for (node, id) in ["m1", "w1", "w2"].iter().zip(&ids) {
        let labels = cluster.manager().docker_ok(&[
            "node",
            "inspect",
            "--format",
            "{{json .Spec.Labels}}",
            id,
        ]);
        let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
        assert_eq!(labels["dockhand.node"], *node, "{labels}");
        assert_eq!(
            labels.get("db").and_then(|v| v.as_str()),
            (*node == "w2").then_some("main"),
            "{node}: {labels}"
        );
    }

    // The swarm's ports: open to the other nodes only.
    for node in ["m1", "w1", "w2"] {
        let out = cluster
            .node(node)
            .in_netns("nft", &["list", "table", "inet", "dockhand-swarm"]);
        assert!(out.status.success(), "{node}: {out:?}");
        let rules = String::from_utf8_lossy(&out.stdout);
        for other in ["m1", "w1", "w2"] {
            assert_eq!(
                rules.contains(&format!("{} ", addr(other)))
                    || rules.contains(&format!("{},", addr(other))),
                other != node,
                "{node}'s table and {other}'s address:\n{rules}"
            );
        }
        for port in ["2377", "7946", "4789"] {
            assert!(rules.contains(port), "{node}: {port} not in\n{rules}");
        }
    }
    let m1_swarm: SocketAddr = format!("{}:2377", addr("m1")).parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&m1_swarm, Duration::from_secs(3)).is_err(),
        "this host, not a node, reached m1's swarm port"
    );

    // `dockhand status` on the manager lists the three nodes ready.
    let status_sb = sandbox().with_env("DOCKER_HOST", &cluster.manager().docker_host());
    status_sb.write("dockhand.toml", &toml(&app));
    let (code, status) = status_sb.json(&["status"]);
    assert_eq!(code, Some(0), "{status:#}");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status:#}");
    assert!(nodes.iter().all(|n| n["state"] == "ready"), "{status:#}");

    // A second setup changes nothing: same nodes, nothing planned.
    let out = sb.run_for(
        &["setup", "--cluster-only", "--yes", "--json"],
        Duration::from_secs(300),
    );
    printed += &text(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["changed"], 0, "{again:#}");
    let steps = again["swarm"]["plan"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9, "{again:#}");
    assert!(steps.iter().all(|s| s["change"] == false), "{again:#}");
    let out = sb.run_for(
        &["setup", "--cluster-only", "--yes"],
        Duration::from_secs(300),
    );
    printed += &text(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("nothing to change: the swarm of 3 node(s) is formed"),
        "{}",
        text(&out)
    );
    for (node, id) in ["m1", "w1", "w2"].iter().zip(&ids) {
        assert_eq!(
            &swarm_info(&cluster, node).2,
            id,
            "{node} changed its node id"
        );
    }

    // The join tokens: in no argument, no output, no file.
    let argv = watch.finish();
    assert!(
        argv.is_empty(),
        "a join token was in a process argument: {argv:?}"
    );
    let worker = cluster
        .manager()
        .docker_ok(&["swarm", "join-token", "-q", "worker"]);
    let manager = cluster
        .manager()
        .docker_ok(&["swarm", "join-token", "-q", "manager"]);
    assert!(worker.starts_with("SWMTKN-") && manager.starts_with("SWMTKN-"));
    let secret = |t: &str| t.rsplit('-').next().unwrap().to_string();
    let needles = [
        worker.as_str(),
        manager.as_str(),
        &secret(&worker),
        &secret(&manager),
    ]
    .map(str::to_string);
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    for n in &needles {
        assert!(!printed.contains(n), "a join token was printed:\n{printed}");
    }
    let mut found = Vec::new();
    let cluster_dir = cluster.manager().dir().parent().unwrap().to_path_buf();
    files_containing(&cluster_dir, &needles, &mut found);
    files_containing(sb.path(), &needles, &mut found);
    assert!(found.is_empty(), "a join token is in files: {found:?}");
}
