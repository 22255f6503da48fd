//! Crash safety: kill -9 of the agent in the middle of a deploy, then a restart, leaves
//! exactly one release serving, no orphan process, and a consistent record — at a random
//! moment, and right after each step of a deploy's plan (the agent's
//! `DOCKHAND_CRASH_AFTER=<step>@<release>` failpoint, in debug builds).

use std::time::Duration;

use dockhand_test_support::{processes_with_env, wait_until};

use crate::{sandbox, show, testapp_toml};

#[test]
fn kill_9_during_a_deploy_then_restart_serves_the_committed_release_without_orphans() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"one\"", 2, "30s"),
    );
    let mut agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let committed = status["current_release"]["id"].as_i64().unwrap();
    let marker = format!("{}/", status["agent"]["id"].as_str().unwrap());
    let ours = || processes_with_env("DOCKHAND_INSTANCE", &marker);

    // A release that takes long to become healthy, so the deploy is surely in progress.
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"two\", STARTUP_DELAY_MS = \"60000\"", 2, "30s"),
    );
    let mut deploy = sb.spawn_quiet(&["deploy"]);
    // Wait until the new instances exist (four processes of the app: two old, two new).
    wait_until(
        "the new release's processes",
        Duration::from_secs(20),
        || ours().len() >= 4,
    );
    let before = ours();
    assert!(before.len() >= 4, "{before:?}");

    agent.kill9();
    let _ = deploy.wait();
    // The children outlived the agent: that is what the restart must clean up.
    assert!(before
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{}", p.pid)).exists()));

    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    assert_eq!(
        status["current_release"]["id"].as_i64(),
        Some(committed),
        "{status}"
    );
    let (_, releases) = sb.json(&["releases"]);
    let statuses: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "current").count(),
        1,
        "{releases}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "pending").count(),
        0,
        "{releases}"
    );

    // Every process of the previous agent is gone; only the restarted release's run.
    for p in &before {
        wait_until(
            &format!("old process {} to be gone", p.pid),
            Duration::from_secs(10),
            || !alive(p.pid),
        );
    }
    wait_until("both instances healthy", Duration::from_secs(20), || {
        let (_, s) = sb.json(&["status"]);
        s["services"][0]["instances"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|i| i["health"] == "healthy"))
    });
    let (_, status) = sb.json(&["status"]);
    let live_pids: Vec<u64> = status["services"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_u64().unwrap())
        .collect();
    let now = ours();
    let mut instances: Vec<&str> = now.iter().map(|p| p.value.as_str()).collect();
    instances.sort();
    instances.dedup();
    assert_eq!(
        instances.len(),
        2,
        "exactly the two restarted instances run: {now:?}"
    );
    for p in &now {
        assert!(
            live_pids.contains(&(p.pid as u64)) || parent_in(p.pid, &live_pids),
            "{p:?} not in {live_pids:?}"
        );
    }

    // And it serves the committed version.
    let out = sb.run(&["status"]);
    assert!(out.status.success(), "{}", show(&out));
    let body = http_get(&sb.proxy_addr(), "app.test", "/version");
    assert_eq!(body, "one");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn parent_in(pid: u32, pids: &[u64]) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().nth(1).map(str::to_string))
        })
        .flatten()
        .and_then(|pp| pp.parse::<u64>().ok())
        .is_some_and(|pp| pids.contains(&pp))
}

pub fn http_get(addr: &str, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Web (two replicas, with migration and post-deploy hooks) and a worker, at `version`.
fn web_and_worker(version: &str) -> String {
    format!(
        "{}hooks = {{ pre_deploy = \"true\", post_deploy = \"true\" }}\n\n[services.worker]\ncommand = \"sleep 600\"\n",
        testapp_toml(&format!("VERSION = \"{version}\""), 2, "30s")
    )
}

/// Kills the agent with SIGKILL right after `step` of the deploy of release 2, starts it
/// again, and checks the server is on the last committed release — release 2 once its
/// `commit` step ran, else release 1 — with exactly its instances running and nothing else.
fn killed_right_after(step: &str, committed: bool) {
    use std::os::unix::process::ExitStatusExt;

    let sb = sandbox();
    sb.write("dockhand.toml", &web_and_worker("one"));
    let failpoint = format!("{step}@2");
    let mut agent = sb.start_agent_with_env(&[("DOCKHAND_CRASH_AFTER", &failpoint)]);
    let (_, status) = sb.json(&["status"]);
    let marker = format!("{}/", status["agent"]["id"].as_str().unwrap());

    sb.write("dockhand.toml", &web_and_worker("two"));
    let out = sb.run(&["deploy"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let ended = agent.wait_exit(Duration::from_secs(60));
    assert_eq!(
        ended.signal(),
        Some(9),
        "killed after `{step}`: {}",
        agent.output()
    );

    let _agent = sb.start_agent();
    let (want, version) = if committed { (2, "two") } else { (1, "one") };
    let (_, status) = sb.json(&["status"]);
    assert_eq!(
        status["current_release"]["id"], want,
        "after `{step}`: {status:#}"
    );
    let (_, releases) = sb.json(&["releases"]);
    let by_id = |id: i64| {
        releases
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(by_id(want).as_deref(), Some("current"), "{releases:#}");
    let other = if committed { 1 } else { 2 };
    let expected_other = if committed { "retired" } else { "failed" };
    assert_eq!(
        by_id(other).as_deref(),
        Some(expected_other),
        "{releases:#}"
    );

    // Exactly the restarted instances of the committed release run: three (web ×2, worker).
    wait_until(
        "the restarted release to be healthy",
        Duration::from_secs(30),
        || {
            let (_, s) = sb.json(&["status"]);
            s["services"].as_array().is_some_and(|svcs| {
                svcs.iter()
                    .flat_map(|s| s["instances"].as_array().cloned().unwrap_or_default())
                    .all(|i| {
                        i["health"] == "healthy"
                            || (i["health"] == "none" && i["state"] == "running")
                    })
            })
        },
    );
    wait_until(
        "leftover processes to be gone",
        Duration::from_secs(10),
        || {
            let mut running: Vec<String> = processes_with_env("DOCKHAND_INSTANCE", &marker)
                .into_iter()
                .map(|p| p.value)
                .collect();
            running.sort();
            running.dedup();
            running
                == [
                    format!("{marker}d0r{want}-web-0"),
                    format!("{marker}d0r{want}-web-1"),
                    format!("{marker}d0r{want}-worker-0"),
                ]
        },
    );
    assert_eq!(http_get(&sb.proxy_addr(), "app.test", "/version"), version);
}

macro_rules! crash_after {
    ($($name:ident: $step:literal, $committed:literal;)*) => {$(
        #[test]
        fn $name() {
            killed_right_after($step, $committed);
        }
    )*};
}

crash_after! {
    kill_9_after_pre_deploy_keeps_release_1: "pre_deploy", false;
    kill_9_after_start_keeps_release_1: "start", false;
    kill_9_after_gate_keeps_release_1: "gate", false;
    kill_9_after_commit_serves_release_2: "commit", true;
    kill_9_after_swap_serves_release_2: "swap", true;
    kill_9_after_drain_serves_release_2: "drain", true;
    kill_9_after_stop_serves_release_2: "stop", true;
    kill_9_after_post_deploy_serves_release_2: "post_deploy", true;
    kill_9_after_prune_serves_release_2: "prune", true;
}
