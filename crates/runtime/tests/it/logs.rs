//! Log files: rotation, reading back with tail / since / level, level detection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dockhand_runtime::{
    detect_level, read_log, InstanceState, Level, LogQuery, LogRotation, ProcessRuntime, Stream,
};

use crate::*;

#[tokio::test]
async fn rotation_happens_at_max_bytes_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = LogRotation {
        max_bytes: 2000,
        keep: 2,
    };
    let rt = ProcessRuntime::new(&agent_id("rotation"), rotation);
    let spec = spec(
        dir.path(),
        "rot-0",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"line $i with some padding text\"; done",
    );
    let log = spec.log_path.clone();
    let inst = rt.start(spec).unwrap();
    wait_state(&inst, InstanceState::Exited).await;
    inst.stop().await;

    let rotated = |n: usize| dir.path().join(format!("rot-0.log.{n}"));
    for path in [log.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size <= rotation.max_bytes,
            "{} is {size} bytes",
            path.display()
        );
    }
    assert!(std::fs::metadata(&log).unwrap().len() > 0);
    assert!(!rotated(3).exists(), "keep = 2 must leave no third file");

    // Oldest first, then current: the numbers read back are increasing and end at 300.
    let numbers: Vec<u32> = log_lines(&log)
        .iter()
        .filter(|l| l.stream == Stream::Out)
        .map(|l| l.text.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(numbers.last(), Some(&300));
    assert!(numbers[0] > 1, "older lines must have been rotated away");
}

fn ts(secs: u64) -> String {
    let t = time::OffsetDateTime::from(UNIX_EPOCH + Duration::from_secs(secs));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn read_log_filters_by_tail_since_and_level() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let base = 1_700_000_000;
    std::fs::write(
        format!("{}.2", log.display()),
        format!("{} out oldest INFO boot\n", ts(base)),
    )
    .unwrap();
    std::fs::write(
        format!("{}.1", log.display()),
        format!(
            "{} out ERROR: first failure\n{} err plain text\n",
            ts(base + 10),
            ts(base + 20)
        ),
    )
    .unwrap();
    std::fs::write(
        &log,
        format!(
            "{} sys started pid 42\n{} out level=warn msg=slow\n{} err Traceback (most recent call last):\n{} out [debug] detail\n",
            ts(base + 30),
            ts(base + 40),
            ts(base + 50),
            ts(base + 60)
        ),
    )
    .unwrap();

    let all = read_log(&log, &LogQuery::default()).unwrap();
    let texts: Vec<&str> = all.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "oldest INFO boot",
            "ERROR: first failure",
            "plain text",
            "started pid 42",
            "level=warn msg=slow",
            "Traceback (most recent call last):",
            "[debug] detail"
        ]
    );
    assert_eq!(all[3].stream, Stream::System);

    let tail = read_log(
        &log,
        &LogQuery {
            tail: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].text, "[debug] detail");

    let since = UNIX_EPOCH + Duration::from_secs(base + 40);
    let recent = read_log(
        &log,
        &LogQuery {
            since: Some(since),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].text, "level=warn msg=slow");
    assert!(recent.iter().all(|l| l.time().unwrap() >= since));

    let warn = read_log(
        &log,
        &LogQuery {
            level: Some(Level::Warn),
            ..Default::default()
        },
    )
    .unwrap();
    let texts: Vec<&str> = warn.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "ERROR: first failure",
            "level=warn msg=slow",
            "Traceback (most recent call last):"
        ]
    );

    let combined = LogQuery {
        tail: Some(1),
        since: Some(UNIX_EPOCH + Duration::from_secs(base + 15)),
        level: Some(Level::Error),
    };
    let last_error = read_log(&log, &combined).unwrap();
    assert_eq!(last_error.len(), 1);
    assert_eq!(last_error[0].text, "Traceback (most recent call last):");

    let future = SystemTime::now() + Duration::from_secs(3600);
    assert!(read_log(
        &log,
        &LogQuery {
            since: Some(future),
            ..Default::default()
        }
    )
    .unwrap()
    .is_empty());
    assert!(
        read_log(&dir.path().join("missing.log"), &LogQuery::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn detect_level_recognises_common_formats() {
    let table: &[(&str, Option<Level>)] = &[
        (
            "2024-05-01 10:00:00,123 ERROR app: boom",
            Some(Level::Error),
        ),
        ("[error] connection refused", Some(Level::Error)),
        ("[ERROR] connection refused", Some(Level::Error)),
        ("ts=2024 level=error msg=\"db down\"", Some(Level::Error)),
        ("time=x lvl=warn msg=slow", Some(Level::Warn)),
        (r#"{"level":"error","msg":"x"}"#, Some(Level::Error)),
        (r#"{"msg":"x", "level": "WARNING"}"#, Some(Level::Warn)),
        (r#"{"severity":"INFO","message":"ok"}"#, Some(Level::Info)),
        ("ERROR:root:something failed", Some(Level::Error)),
        ("WARNING:django.request:Not Found: /x", Some(Level::Warn)),
        ("WARNING: this is deprecated", Some(Level::Warn)),
        ("Traceback (most recent call last):", Some(Level::Error)),
        (
            "thread 'main' panicked at src/main.rs:2:5:",
            Some(Level::Error),
        ),
        (
            "INFO:     127.0.0.1:5000 - \"GET / HTTP/1.1\" 200 OK",
            Some(Level::Info),
        ),
        (
            "INFO:     Uvicorn running on http://0.0.0.0:8000",
            Some(Level::Info),
        ),
        (
            "2024/05/01 10:00:00 [warn] 12#12: upstream slow",
            Some(Level::Warn),
        ),
        ("<debug> cache miss", Some(Level::Debug)),
        ("DEBUG sql: select 1", Some(Level::Debug)),
        (
            "E, [2024-05-01T10:00:00] ERROR -- : failed",
            Some(Level::Error),
        ),
        ("Error: Cannot find module 'express'", Some(Level::Error)),
        ("FATAL: database is locked", Some(Level::Error)),
        ("CRITICAL:root:disk full", Some(Level::Error)),
        ("no errors found, all good", None),
        ("GET /error 500", None),
        ("listening on :8080", None),
        ("the severity of this is unclear", None),
        ("", None),
    ];
    for (text, want) in table {
        assert_eq!(detect_level(text), *want, "{text:?}");
    }
    assert!(Level::Error < Level::Warn && Level::Warn < Level::Info && Level::Info < Level::Debug);
}
