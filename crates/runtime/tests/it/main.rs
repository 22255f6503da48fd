//! Integration tests of the runtime: real `/bin/sh` processes in temporary directories, and
//! real containers on the Docker Engine (`container*.rs`, see `dockhand_test_support::docker`).
//! No test asserts a duration; conditions are awaited with generous timeouts.

mod container;
mod container_db;
mod container_images;
mod follow;
mod instances;
mod logs;
mod oneshot;
mod reap;
mod stop;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use dockhand_runtime::{
    read_log, Instance, InstanceSpec, InstanceState, InstanceStatus, LogLine, LogQuery,
    LogRotation, ProcessRuntime, RestartPolicy, INSTANCE_ENV,
};

/// Outer limit for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A runtime with an agent id no other test uses (tests run in parallel and reap by agent id).
pub fn runtime(name: &str) -> ProcessRuntime {
    ProcessRuntime::new(&agent_id(name), LogRotation::default())
}

pub fn agent_id(name: &str) -> String {
    format!("test-{}-{name}", std::process::id())
}

/// A spec that runs `command` in `dir` once, logging to `dir/<id>.log`.
pub fn spec(dir: &Path, id: &str, command: &str) -> InstanceSpec {
    InstanceSpec {
        instance_id: id.to_string(),
        service: "web".to_string(),
        command: command.to_string(),
        workdir: dir.to_path_buf(),
        env: Vec::new(),
        log_path: dir.join(format!("{id}.log")),
        restart: RestartPolicy::Never,
        memory_limit: None,
        stop_grace: Duration::from_secs(5),
    }
}

/// Waits until the instance's status satisfies `pred`, failing the test after [`PATIENCE`].
pub async fn wait_status(
    instance: &Instance,
    what: &str,
    pred: impl FnMut(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let mut rx = instance.watch();
    let found = match tokio::time::timeout(PATIENCE, rx.wait_for(pred)).await {
        Ok(Ok(status)) => Some(status.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "timed out waiting for {what}; status: {:?}",
            instance.status()
        )
    })
}

pub async fn wait_state(instance: &Instance, state: InstanceState) -> InstanceStatus {
    wait_status(instance, &format!("{state:?}"), |s| s.state == state).await
}

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut`, failing the test after [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub fn log_lines(path: &Path) -> Vec<LogLine> {
    read_log(path, &LogQuery::default()).expect("read log")
}

pub fn has_line(path: &Path, text: &str) -> bool {
    log_lines(path).iter().any(|l| l.text.contains(text))
}

/// Live (non-zombie) processes whose marker satisfies `pred`.
pub fn marked(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let key = format!("{INSTANCE_ENV}=");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let hit = environ.split(|&b| b == 0).any(|var| {
            var.strip_prefix(key.as_bytes())
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(&pred)
        });
        if hit {
            pids.push(pid);
        }
    }
    pids
}

/// Live processes of one agent.
pub fn marked_by_agent(agent: &str) -> Vec<u32> {
    let prefix = format!("{agent}/");
    marked(|m| m.starts_with(&prefix))
}
