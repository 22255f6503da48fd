//! `follow_log`: lines appended after the start, across a rotation.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use dockhand_runtime::{follow_log, LogLine, Stream};
use tokio::sync::mpsc;

use crate::*;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "2024-05-01T10:00:00.000000Z out {text}").unwrap();
}

async fn next(rx: &mut mpsc::Receiver<LogLine>) -> LogLine {
    within("a followed line", rx.recv())
        .await
        .expect("follower ended")
}

#[tokio::test]
async fn follow_log_delivers_new_lines_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "before");
    let (tx, mut rx) = mpsc::channel(16);
    let follower = tokio::spawn({
        let log = log.clone();
        async move { follow_log(&log, false, tx).await }
    });

    assert_eq!(next(&mut rx).await.text, "before");
    append(&log, "first");
    assert_eq!(next(&mut rx).await.text, "first");

    // Rotate the way the writer does: the line lands in the old file, which is renamed.
    append(&log, "last of old file");
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "first of new file");
    let a = next(&mut rx).await;
    let b = next(&mut rx).await;
    assert_eq!(a.text, "last of old file");
    assert_eq!(a.stream, Stream::Out);
    assert_eq!(b.text, "first of new file");

    drop(rx);
    within("follower to end", follower).await.unwrap().unwrap();
}

#[tokio::test]
async fn follow_log_from_end_skips_existing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "old");
    let (tx, mut rx) = mpsc::channel(16);
    let follower = tokio::spawn({
        let log = log.clone();
        async move { follow_log(&log, true, tx).await }
    });

    // The follower's start is not observable: append until a line arrives.
    let mut n = 0;
    let first = within("a new line", async {
        loop {
            n += 1;
            append(&log, &format!("tick {n}"));
            if let Ok(line) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                break line.unwrap();
            }
        }
    })
    .await;
    assert!(first.text.starts_with("tick "), "{first:?}");
    drop(rx);
    within("follower to end", follower).await.unwrap().unwrap();
}
