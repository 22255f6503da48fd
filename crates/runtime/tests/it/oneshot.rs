//! One-shot jobs (`run_once`) and interactive jobs (`spawn_attached`).

use std::time::Duration;

use dockhand_runtime::{OneShot, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

fn job(dir: &std::path::Path, command: &str) -> OneShot {
    OneShot {
        command: command.to_string(),
        workdir: dir.to_path_buf(),
        env: vec![("GREETING".into(), "hi".into())],
        timeout: Duration::from_secs(20),
        log_path: None,
    }
}

#[tokio::test]
async fn run_once_captures_output_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("oneshot");
    let mut job = job(
        dir.path(),
        "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 7",
    );
    job.log_path = Some(dir.path().join("hooks.log"));
    let out = within("job", rt.run_once(job)).await.unwrap();
    assert_eq!(out.exit_code, Some(7));
    assert!(!out.timed_out);
    let pwd = dir.path().canonicalize().unwrap();
    assert!(
        out.output.contains(&format!("hi from {}\n", pwd.display())),
        "{out:?}"
    );
    assert!(out.output.contains("oops\n"));

    let lines = log_lines(&dir.path().join("hooks.log"));
    assert!(lines
        .iter()
        .any(|l| l.stream == Stream::Err && l.text == "oops"));
    assert!(lines
        .iter()
        .any(|l| l.stream == Stream::System && l.text == "exited with code 7"));
}

#[tokio::test]
async fn run_once_keeps_the_last_64_kib_of_output() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("oneshot-big");
    let job = job(
        dir.path(),
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo \"line $i\"; done",
    );
    let out = within("job", rt.run_once(job)).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(out.output.len() <= 64 * 1024);
    assert!(out.output.ends_with("line 20000\n"));
    assert!(!out.output.contains("line 1\n"));
}

#[tokio::test]
async fn run_once_times_out_and_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("oneshot-timeout");
    let agent = agent_id("oneshot-timeout");
    let mut job = job(dir.path(), "echo begun; sleep 1000 & sleep 1000; wait");
    job.timeout = Duration::from_millis(500);
    let out = within("job", rt.run_once(job)).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(out.output.contains("begun"));
    assert_eq!(marked_by_agent(&agent), Vec::<u32>::new());
}

#[tokio::test]
async fn run_once_with_a_missing_workdir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("oneshot-nowd");
    let job = job(&dir.path().join("missing"), "true");
    assert!(rt.run_once(job).await.is_err());
}

#[tokio::test]
async fn spawn_attached_pipes_stdin_and_carries_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime("attached");
    let agent = agent_id("attached");
    let mut child = rt
        .spawn_attached(job(
            dir.path(),
            "read name; echo \"got $name $DOCKHAND_INSTANCE\"",
        ))
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"alice\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    within("output", stdout.read_to_string(&mut out))
        .await
        .unwrap();
    let status = within("exit", child.wait()).await.unwrap();
    assert!(status.success());
    assert!(
        out.starts_with(&format!("got alice {agent}/exec-")),
        "{out}"
    );
}
