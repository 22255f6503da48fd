//! Losing a node of a `[cluster]`, on a real swarm of three namespaced engines (the fixture of
//! `cluster.rs`): a worker is lost — its `dockerd` killed and its containers with it, as when
//! the machine goes — while load runs through the ingress on the manager. Swarm marks the
//! worker down and runs its replica elsewhere, the ingress stops routing to the lost task,
//! requests keep succeeding (those sent to the lost task before the ingress dropped it are
//! counted and printed; none fails after), and the agent watching the swarm sends one
//! `node_down` alert naming the worker and what moved where. The worker's engine started
//! again: the node rejoins by itself, the alert resolves, and it takes tasks again at the next
//! rebalance, all under load without a failed request.

use std::time::{Duration, Instant};

use dockhand_test_support::docker::TESTAPP_SHELL_IMAGE;
use dockhand_test_support::swarm::{destinations_toml, TESTAPP_SWARM_HEALTH};
use dockhand_test_support::{Load, LoadReport};

use crate::cluster::{get_host, json, swarm_sandbox, wait_releases};
use crate::monitoring::Receiver;

/// The ingress's port on the manager (each cluster has addresses of its own).
const INGRESS_PORT: u16 = 18080;
/// Load clients, each sending one request at a time.
const CLIENTS: usize = 4;

/// One web service of three replicas (Swarm spreads them one per node), answering with the
/// hostname of the node its task runs on (a Swarm template), so the load tells which node
/// served each request. The agent watching the swarm alerts through a webhook at `receiver`.
fn toml(app: &str, receiver: &str) -> String {
    let health = TESTAPP_SWARM_HEALTH;
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
ingress = ["m1"]

[proxy]
listen = "0.0.0.0:{INGRESS_PORT}"
upstream_response_timeout = "5s"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
route = {{ path = "/" }}
replicas = 3
env = {{ VERSION = "{{{{.Node.Hostname}}}}" }}
{health}

[alerts]
webhook = "http://{receiver}/hook"
group_wait = "0s"

[alerts.rules.node_down]
for = "4s"

[dashboard]
enabled = false
"#
    )
}

/// The `node_down` notices the webhook received for `node`, as (kind, summary).
fn node_notices(receiver: &Receiver, node: &str) -> Vec<(String, String)> {
    receiver
        .bodies("/hook")
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["rule"] == "node_down" && a["subject"] == node)
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["summary"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits up to `limit` for `cond`; panics with `what` and `why()` otherwise.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The nodes web's running tasks are on, by `dockhand status --json`.
fn web_nodes(sb: &dockhand_test_support::Sandbox) -> (serde_json::Value, Vec<String>) {
    let (_, status, _) = json(sb, &["status"]);
    let mut on = Vec::new();
    if let Some(placement) = status["placement"].as_object() {
        for (node, tasks) in placement {
            for t in tasks.as_array().into_iter().flatten() {
                if t[0] == "web" && t[1] == "running" {
                    on.push(node.clone());
                }
            }
        }
    }
    on.sort();
    (status, on)
}

fn served_by(report: &LoadReport, node: &str) -> u64 {
    report.by_version.get(node).copied().unwrap_or(0)
}

#[test]
fn a_lost_worker_moves_its_task_the_ingress_drops_it_an_alert_names_it_and_it_rejoins() {
    let (mut cluster, sb, app) = swarm_sandbox("nl");
    let receiver = Receiver::start();
    sb.write("dockhand.toml", &toml(&app, &receiver.addr));
    let web = format!("{app}-web");

    let (code, report, out) = json(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");
    wait_releases(&cluster, &[(web.as_str(), 3)], "1");
    let ingress = format!("{}:{INGRESS_PORT}", cluster.manager().addr());
    wait_for(
        "the ingress serves web",
        Duration::from_secs(180),
        || matches!(get_host(&ingress, "shop.test", "/version"), Ok((200, _))),
        || format!("{:?}", get_host(&ingress, "shop.test", "/version")),
    );
    // Swarm spreads a service's replicas over the nodes: one on each.
    let (status, on) = web_nodes(&sb);
    assert_eq!(on, ["m1", "w1", "w2"], "{status:#}");

    // The agent on the manager's host, with the project: it deploys nothing itself, watches
    // the swarm's nodes and alerts.
    let agent_log = sb.path().join("agent.log");
    let log = std::fs::File::create(&agent_log).unwrap();
    let mut agent = sb
        .cmd(&["agent"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dockhand agent");
    let agent_output = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    wait_for(
        "the agent answers with the node_down rule",
        Duration::from_secs(60),
        || {
            let (code, alerts) = sb.json(&["alerts"]);
            code == Some(0)
                && alerts["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "node_down"))
        },
        agent_output,
    );

    // Load through the ingress on m1, every node serving some of it.
    let load = Load::start(&ingress, "shop.test", "/version", CLIENTS);
    wait_for(
        "each node serves some of the load",
        Duration::from_secs(30),
        || {
            let seen = load.snapshot();
            ["m1", "w1", "w2"].iter().all(|n| served_by(&seen, n) > 0)
        },
        || format!("{:?}", load.snapshot()),
    );

    // w1 lost: its engine killed and its containers with it (a machine gone).
    let before_loss = load.snapshot().failures();
    let lost = Instant::now();
    cluster.node_mut("w1").lose();

    // Swarm marks it down and runs its replica on m1 or w2; the ingress stops routing to the
    // lost task (its probes time out, or Swarm's DNS drops it). Requests sent to the lost task
    // before that fail once `upstream_response_timeout` (5 s) passes; when nothing more has
    // failed for longer than that, and nothing was served by w1 (nothing of it answers), the
    // ingress no longer routes to it.
    let mut last_failure = (before_loss, lost);
    let mut moved_after = None;
    wait_for(
        "w1 down, web's three replicas running on m1 and w2, and no request failing for 8 s",
        Duration::from_secs(180),
        || {
            let failures = load.snapshot().failures();
            if failures != last_failure.0 {
                last_failure = (failures, Instant::now());
            }
            if moved_after.is_none() {
                let (status, on) = web_nodes(&sb);
                if status["down"] == serde_json::json!(["w1"])
                    && on.len() == 3
                    && !on.contains(&"w1".to_string())
                {
                    moved_after = Some(lost.elapsed());
                }
            }
            moved_after.is_some() && last_failure.1.elapsed() >= Duration::from_secs(8)
        },
        || format!("{:#}\n{:?}", web_nodes(&sb).0, load.snapshot()),
    );
    let moved_after = moved_after.unwrap();
    let last_failed_after = last_failure.1.duration_since(lost);
    let settled = load.snapshot();
    // How the ingress let go of w1's task, from its log.
    let ingress_log =
        cluster
            .manager()
            .docker(&["service", "logs", "--raw", &format!("{app}-ingress")]);
    let dropped: Vec<String> = String::from_utf8_lossy(&ingress_log.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&ingress_log.stderr).lines())
        .filter(|l| l.contains("no longer routed to"))
        .map(str::to_string)
        .collect();
    assert!(!dropped.is_empty(), "the ingress logged the drop");
    // What failed was in flight on w1 as it went, or sent there before the ingress's first
    // failed connection to it took it out of the picking: at most one of each per client.
    assert!(
        settled.failures() - before_loss <= 2 * CLIENTS as u64,
        "only requests in flight on w1 failed: {settled:?}"
    );

    // The alert: which node, and where its replica runs now.
    wait_for(
        "a node_down alert for w1",
        Duration::from_secs(60),
        || {
            node_notices(&receiver, "w1")
                .iter()
                .any(|(k, _)| k == "firing")
        },
        || format!("{:?}\n{}", receiver.bodies("/hook"), agent_output()),
    );
    let alerted_after = lost.elapsed();
    let notices = node_notices(&receiver, "w1");
    let (_, summary) = notices.iter().find(|(k, _)| k == "firing").unwrap();
    assert!(
        summary.starts_with("node w1 (worker, ") && summary.contains(" is down"),
        "{summary}"
    );
    assert!(
        summary.contains("moved: web.") && (summary.contains("→ m1") || summary.contains("→ w2")),
        "{summary}"
    );
    assert_eq!(
        notices.iter().filter(|(k, _)| k == "firing").count(),
        1,
        "one notice, not one per look: {notices:?}"
    );
    for other in ["m1", "w2"] {
        assert!(node_notices(&receiver, other).is_empty(), "{other}");
    }

    // Ten more seconds of load: every request answered, none by w1.
    std::thread::sleep(Duration::from_secs(10));
    let after = load.snapshot();
    assert_eq!(
        after.failures(),
        settled.failures(),
        "no failure once the ingress dropped w1: {settled:?} then {after:?}"
    );
    assert_eq!(
        served_by(&after, "w1"),
        served_by(&settled, "w1"),
        "{after:?}"
    );
    assert!(after.ok > settled.ok + 10, "{after:?}");
    println!(
        "node loss: w1's replica replaced after {moved_after:?}, the alert after \
         {alerted_after:?}; {} request(s) failed, all sent to w1 before the ingress dropped it \
         (the last {last_failed_after:?} after the loss: {:?} {:?}); {} answered; the \
         ingress: {dropped:?}",
        settled.failures() - before_loss,
        settled.non_2xx,
        settled.failed_requests(),
        after.ok
    );

    // w1's engine back: the node rejoins by itself, the alert resolves.
    let back = Instant::now();
    cluster.node_mut("w1").restart_dockerd();
    wait_for(
        "w1 ready again",
        Duration::from_secs(120),
        || {
            let (code, status, _) = json(&sb, &["status"]);
            code == Some(0)
                && status["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["state"] == "ready"))
        },
        || format!("{:#}", web_nodes(&sb).0),
    );
    wait_for(
        "the node_down alert for w1 resolved",
        Duration::from_secs(60),
        || {
            node_notices(&receiver, "w1")
                .iter()
                .any(|(k, _)| k == "resolved")
        },
        || format!("{:?}\n{}", receiver.bodies("/hook"), agent_output()),
    );
    let notices = node_notices(&receiver, "w1");
    let (_, resolved) = notices.iter().find(|(k, _)| k == "resolved").unwrap();
    assert!(resolved.contains("node w1 (worker) is ready"), "{resolved}");
    let resolved_after = back.elapsed();

    // It takes tasks again: a rebalance (Swarm does not move running tasks by itself; a
    // forced update replaces each, start-first, and places the new ones where the service
    // has fewest) gives w1 a replica again, under load, failing nothing.
    let before_rebalance = load.snapshot();
    let m1 = cluster.manager();
    m1.docker_ok(&["service", "update", "--detach", "--force", &web]);
    wait_for(
        "the rebalance done and w1 serving web again",
        Duration::from_secs(240),
        || {
            let state = m1.docker_ok(&[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                &web,
            ]);
            let (_, on) = web_nodes(&sb);
            state == "completed"
                && on.len() == 3
                && on.contains(&"w1".to_string())
                && served_by(&load.snapshot(), "w1") > served_by(&before_rebalance, "w1")
        },
        || format!("{:#}\n{:?}", web_nodes(&sb).0, load.snapshot()),
    );
    let seen = load.finish();
    println!(
        "node back: ready and the alert resolved {resolved_after:?} after its engine started; \
         its return and the rebalance under load: {} failed of {}",
        seen.failures() - settled.failures(),
        seen.ok - settled.ok
    );
    assert_eq!(
        seen.failures(),
        settled.failures(),
        "w1's return and the rebalance fail no request: {settled:?} then {seen:?}"
    );

    let _ = dockhand_test_support::signal_and_wait(&mut agent, nix::sys::signal::Signal::SIGTERM);
    drop(cluster);
}
