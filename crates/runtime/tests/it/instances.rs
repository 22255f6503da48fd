//! Starting instances: output capture, environment, restarts, crash loops, memory limits.

use std::time::Duration;

use dockhand_runtime::{InstanceState, RestartPolicy, RuntimeError, Stream};

use crate::*;

#[tokio::test]
async fn stdout_and_stderr_lines_land_in_the_log_with_their_stream() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("streams");
    let spec = spec(
        dir.path(),
        "streams-0",
        "echo to-stdout; echo to-stderr >&2",
    );
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    assert_eq!(inst.id(), "streams-0");
    let status = wait_state(&inst, InstanceState::Exited).await;
    assert_eq!(status.last_exit.as_ref().unwrap().code, Some(0));
    inst.stop().await;

    let lines = log_lines(&log);
    let find = |text: &str| lines.iter().find(|l| l.text == text).cloned();
    assert_eq!(find("to-stdout").expect("stdout line").stream, Stream::Out);
    assert_eq!(find("to-stderr").expect("stderr line").stream, Stream::Err);
    let started = lines
        .iter()
        .find(|l| l.text.starts_with("started pid "))
        .unwrap();
    assert_eq!(started.stream, Stream::System);
    assert!(lines.iter().all(|l| l.time().is_some()), "{lines:?}");
    assert_eq!(lines.last().unwrap().text, "stopped");
}

#[tokio::test]
async fn env_workdir_port_and_markers_reach_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("app");
    std::fs::create_dir(&work).unwrap();
    let rt = runtime("env");
    let mut spec = spec(
        dir.path(),
        "env-0",
        r#"echo "port=$PORT greeting=$GREETING pwd=$(pwd) svc=$DOCKHAND_SERVICE inst=$DOCKHAND_INSTANCE""#,
    );
    spec.workdir = work.clone();
    spec.env = vec![
        ("PORT".into(), "4321".into()),
        ("GREETING".into(), "hello world".into()),
    ];
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    wait_state(&inst, InstanceState::Exited).await;
    inst.stop().await;

    let expected = format!(
        "port=4321 greeting=hello world pwd={} svc=web inst={}/env-0",
        work.canonicalize().unwrap().display(),
        agent_id("env")
    );
    assert!(has_line(&log, &expected), "{:?}", log_lines(&log));
}

#[tokio::test]
async fn a_missing_workdir_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("noworkdir");
    let mut spec = spec(dir.path(), "nowd-0", "true");
    spec.workdir = dir.path().join("missing");
    let err = rt.start(spec).err().expect("start must fail");
    assert!(matches!(err, RuntimeError::Workdir { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"));
}

#[tokio::test]
async fn a_crashing_command_is_restarted_and_reaches_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("crash");
    let mut spec = spec(dir.path(), "crash-0", "echo boom; exit 3");
    spec.restart = RestartPolicy::Always;
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();

    let status = wait_state(&inst, InstanceState::CrashLoop).await;
    assert!(status.restarts >= 4, "{status:?}");
    assert_eq!(status.last_exit.as_ref().unwrap().code, Some(3));
    assert!(status.pid.is_none());
    assert!(has_line(&log, "exited with code 3, restarting in 200ms"));
    assert!(has_line(&log, "crash loop: exited with code 3"));

    within("stop", inst.stop()).await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
}

#[tokio::test]
async fn on_failure_does_not_restart_after_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("onfailure0");
    let mut spec = spec(dir.path(), "of0-0", "exit 0");
    spec.restart = RestartPolicy::OnFailure;
    let inst = rt.start(spec).unwrap();
    let status = wait_state(&inst, InstanceState::Exited).await;
    assert_eq!(status.restarts, 0);
    assert!(status.last_exit.unwrap().success());
    inst.stop().await;
    assert_eq!(inst.status().restarts, 0);
}

#[tokio::test]
async fn on_failure_restarts_after_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("onfailure1");
    let mut spec = spec(dir.path(), "of1-0", "exit 1");
    spec.restart = RestartPolicy::OnFailure;
    let inst = rt.start(spec).unwrap();
    wait_status(&inst, "a restart", |s| s.restarts >= 1).await;
    inst.stop().await;
}

#[tokio::test]
async fn memory_limit_stops_a_process_allocating_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("memlimit");
    let mut spec = spec(
        dir.path(),
        "mem-0",
        "command -v python3 >/dev/null || exit 99; \
         python3 -c 'x = bytearray(400 * 1024 * 1024); print(\"allocated\")'",
    );
    spec.memory_limit = Some(128 * 1024 * 1024);
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    let status = wait_state(&inst, InstanceState::Exited).await;
    inst.stop().await;
    let exit = status.last_exit.unwrap();
    assert_ne!(
        exit.code,
        Some(99),
        "python3 is required by this test: apt-get install python3"
    );
    assert!(!exit.success());
    assert!(!has_line(&log, "allocated"), "{:?}", log_lines(&log));
    // RLIMIT_DATA makes the allocation fail; a cgroup gets python OOM-killed (sh: 128 + 9).
    let oom_killed = exit.code == Some(137) || exit.signal == Some(9);
    assert!(
        has_line(&log, "MemoryError") || oom_killed,
        "{:?}",
        log_lines(&log)
    );
}

#[tokio::test]
async fn status_serializes_with_snake_case_state_and_rfc3339_times() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("serde");
    let mut spec = spec(dir.path(), "serde-0", "sleep 1000");
    spec.stop_grace = Duration::from_secs(2);
    let inst = rt.start(spec).unwrap();
    let pid = inst.pid().expect("pid after start");
    let json = serde_json::to_value(inst.status()).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["pid"], pid);
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
    inst.stop().await;
    let json = serde_json::to_value(inst.status()).unwrap();
    assert_eq!(json["state"], "stopped");
    assert!(json["last_exit"]["at"].as_str().is_some());
}
