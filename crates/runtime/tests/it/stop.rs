//! Stopping instances: SIGTERM, SIGKILL after the grace, the whole group and escaped
//! descendants.

use std::time::Duration;

use dockhand_runtime::InstanceState;

use crate::*;

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigterm_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("ignoreterm");
    let mut spec = spec(dir.path(), "it-0", "trap '' TERM; echo ready; sleep 1000");
    spec.stop_grace = Duration::from_millis(300);
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    wait_until("ready", || has_line(&log, "ready")).await;

    within("stop", inst.stop()).await;
    let status = inst.status();
    assert_eq!(status.state, InstanceState::Stopped);
    assert_eq!(status.last_exit.unwrap().signal, Some(9));
    assert!(has_line(&log, "stopping (SIGTERM)"));
    assert!(has_line(&log, "killed after 300ms grace"));
    assert!(marked_by_agent(&agent_id("ignoreterm")).is_empty());
}

#[tokio::test]
async fn stop_ends_a_cooperative_process_with_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("coop");
    let spec = spec(dir.path(), "coop-0", "exec sleep 1000");
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    within("stop", inst.stop()).await;
    assert_eq!(inst.status().last_exit.unwrap().signal, Some(15));
    assert!(!has_line(&log, "killed after"));
}

#[tokio::test]
async fn stop_kills_grandchildren_in_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("grandchildren");
    let agent = agent_id("grandchildren");
    let inst = rt
        .start(spec(dir.path(), "gc-0", "sleep 1000 & sleep 1000; wait"))
        .unwrap();
    wait_until("shell and two sleeps", || {
        marked_by_agent(&agent).len() >= 3
    })
    .await;

    within("stop", inst.stop()).await;
    assert_eq!(marked_by_agent(&agent), Vec::<u32>::new());
}

#[tokio::test]
async fn stop_kills_descendants_that_left_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("escaped");
    let agent = agent_id("escaped");
    let spec = spec(dir.path(), "esc-0", "setsid sleep 1000 & sleep 1000; wait");
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    // Wait until the escapee really left: it leads a session of its own.
    wait_until("a sleep that called setsid", || {
        marked_by_agent(&agent).into_iter().any(is_session_leader)
    })
    .await;

    within("stop", inst.stop()).await;
    assert_eq!(marked_by_agent(&agent), Vec::<u32>::new());
    assert!(has_line(&log, "leftover"), "{:?}", log_lines(&log));
}

#[tokio::test]
async fn stop_is_idempotent_and_concurrent_stops_all_return() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("idempotent");
    let inst = rt.start(spec(dir.path(), "idem-0", "sleep 1000")).unwrap();
    let other = inst.clone();
    within("two stops", async {
        tokio::join!(inst.stop(), other.stop())
    })
    .await;
    within("third stop", inst.stop()).await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
}

#[tokio::test]
async fn stop_during_backoff_prevents_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("stopbackoff");
    let mut spec = spec(dir.path(), "sb-0", "exit 1");
    spec.restart = dockhand_runtime::RestartPolicy::Always;
    let inst = rt.start(spec).unwrap();
    wait_status(&inst, "back-off", |s| {
        matches!(s.state, InstanceState::Backoff | InstanceState::CrashLoop)
    })
    .await;
    within("stop", inst.stop()).await;
    let restarts = inst.status().restarts;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = inst.status();
    assert_eq!(status.state, InstanceState::Stopped);
    assert_eq!(status.restarts, restarts);
}

/// Whether the process leads its own session (it called setsid).
fn is_session_leader(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name: state ppid pgrp session …
            let rest = stat.rsplit_once(')')?.1;
            rest.split_whitespace().nth(3)?.parse::<u32>().ok()
        })
        == Some(pid)
}
