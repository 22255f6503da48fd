//! GitOps with real git: a local bare repository is the remote the agent follows. A new
//! commit is deployed on the next poll (after a backup); a commit whose app fails its health
//! check is rolled back, raises an event and is not tried again; a newer good commit deploys;
//! `update pause|now` and `deploy --revision` drive it by hand.

use std::path::Path;
use std::time::Duration;

use dockhand_test_support::wait_until;

use crate::backups::keygen;
use crate::revisions::{answer, git, APP};
use crate::{expect, sandbox};

fn toml(key: &Path, recipient: &str) -> String {
    format!(
        r#"app = "it"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = {{ path = "/", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 3, deploy_timeout = "5s" }}
route = {{ host = "app.test", path = "/" }}
stop_timeout = "5s"

[update]
git = {{ branch = "main" }}
poll = "1s"

[backups]
recipients = ["{recipient}"]
identity = "{key}"
directories = {{ files = "files" }}
include = ["files"]

[backups.targets.local]
dir = "backups"
"#,
        key = key.display()
    )
}

/// Commits `answer` as the app in the work clone and pushes it; returns the commit.
fn push(work: &Path, app: &str, message: &str) -> String {
    std::fs::write(work.join("app.py"), app).unwrap();
    git(work, &["commit", "-q", "-am", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn status(sb: &dockhand_test_support::Sandbox) -> serde_json::Value {
    sb.json(&["update", "status"]).1
}

#[test]
fn new_commits_deploy_a_failing_one_is_rolled_back_and_not_retried() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    let remotes = tempfile::tempdir().unwrap();
    let bare = remotes.path().join("app.git");
    let work = remotes.path().join("work");
    git(
        remotes.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::create_dir_all(work.join("files")).unwrap();
    std::fs::write(work.join("files/readme"), "data\n").unwrap();
    std::fs::write(
        work.join(".gitignore"),
        ".dockhand/\nagent-*.log\nbackup.key\nbackups/\n",
    )
    .unwrap();
    std::fs::write(work.join("dockhand.toml"), toml(&key, &recipient)).unwrap();
    std::fs::write(work.join("app.py"), APP.replace("{answer}", "one")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    // The server's project is a clone of the remote (the sandbox holds only the key yet).
    let clone = remotes.path().join("clone");
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    for entry in std::fs::read_dir(&clone).unwrap().flatten() {
        std::fs::rename(entry.path(), sb.path().join(entry.file_name())).unwrap();
    }
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");

    // A new commit is deployed on a following poll, after a backup.
    let two = push(&work, &APP.replace("{answer}", "two"), "second answer");
    wait_until("the new commit serves", Duration::from_secs(60), || {
        answer(&addr) == "two"
    });
    let st = status(&sb);
    assert_eq!(st["current_revision"], format!("git:{two}"), "{st}");
    let (_, backups) = sb.json(&["backup", "list"]);
    assert!(
        backups
            .as_array()
            .is_some_and(|bs| bs.iter().any(|b| b["trigger"]
                .as_str()
                .unwrap_or_default()
                .contains("before update to")
                && b["state"] == "complete")),
        "{backups}"
    );

    // A commit whose app never answers fails its gate: rolled back, an event, no retry.
    let bad = push(&work, "raise SystemExit('broken on purpose')\n", "broken");
    wait_until(
        "the bad commit is recorded as failed",
        Duration::from_secs(60),
        || {
            status(&sb)["failed"]
                .as_array()
                .is_some_and(|f| f.iter().any(|r| r["commit"] == bad.as_str()))
        },
    );
    assert_eq!(answer(&addr), "two");
    assert_eq!(
        git(sb.path(), &["rev-parse", "HEAD"]),
        two,
        "the checkout went back"
    );
    let (_, releases) = sb.json(&["releases"]);
    let count = releases.as_array().unwrap().len();
    wait_until(
        "a poll that sees the bad commit again",
        Duration::from_secs(30),
        || status(&sb)["last_check"]["result"] == "known_bad",
    );
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(
        releases.as_array().unwrap().len(),
        count,
        "the bad commit was tried again"
    );
    let (_, events) = sb.json(&["events", "-n", "500"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "update"
                && e["level"] == "error"
                && e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("will not be tried again")),
        "{events}"
    );

    // A newer good commit deploys.
    let four = push(&work, &APP.replace("{answer}", "four"), "fourth answer");
    wait_until("the newer commit serves", Duration::from_secs(60), || {
        answer(&addr) == "four"
    });
    assert_eq!(status(&sb)["current_revision"], format!("git:{four}"));

    // Paused: a new commit waits until `update now`.
    expect(&sb, &["update", "pause"], 0);
    let five = push(&work, &APP.replace("{answer}", "five"), "fifth answer");
    wait_until("a paused check", Duration::from_secs(30), || {
        status(&sb)["last_check"]["result"] == "paused"
    });
    assert_eq!(answer(&addr), "four");
    let (code, check) = sb.json(&["update", "now"]);
    assert_eq!(code, Some(0), "{check}");
    assert_eq!(check["result"], "deployed");
    assert_eq!(answer(&addr), "five");
    assert_eq!(status(&sb)["current_revision"], format!("git:{five}"));

    // By hand: an older commit.
    expect(&sb, &["deploy", "--revision", &two], 0);
    assert_eq!(answer(&addr), "two");
    expect(&sb, &["update", "resume"], 0);
}

const TIMED_TOML: &str = r#"app = "it"
pin_code = true

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = { path = "/", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 3, deploy_timeout = "10s" }
route = { host = "app.test", path = "/" }
stop_timeout = "5s"

[update]
git = { branch = "main" }
poll = "1h"
"#;

/// The kinds of a report's `steps`, in order.
fn step_kinds(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {report}"))
        .iter()
        .map(|s| s["step"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every step has a whole number of milliseconds, and together they fit in the total.
fn assert_steps_fit(report: &serde_json::Value) {
    let total = report["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no duration_ms: {report}"));
    let mut sum = 0;
    for s in report["steps"].as_array().unwrap() {
        sum += s["duration_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("a step without a non-negative duration_ms: {s}"));
    }
    assert!(
        sum <= total,
        "steps sum to {sum} ms, above the total {total} ms: {report}"
    );
}

/// Where `kind` first appears among `kinds`.
fn at(kinds: &[String], kind: &str) -> usize {
    kinds
        .iter()
        .position(|k| k == kind)
        .unwrap_or_else(|| panic!("no `{kind}` step in {kinds:?}"))
}

#[test]
fn an_update_and_a_deploy_report_how_long_each_step_took() {
    let sb = sandbox();
    let remotes = tempfile::tempdir().unwrap();
    let bare = remotes.path().join("app.git");
    let work = remotes.path().join("work");
    let (bare_s, work_s) = (bare.to_str().unwrap(), work.to_str().unwrap());
    git(
        remotes.path(),
        &["init", "-q", "--bare", "-b", "main", bare_s],
    );
    git(remotes.path(), &["clone", "-q", bare_s, work_s]);
    std::fs::write(work.join(".gitignore"), ".dockhand/\nagent-*.log\n").unwrap();
    std::fs::write(work.join("dockhand.toml"), TIMED_TOML).unwrap();
    std::fs::write(work.join("app.py"), APP.replace("{answer}", "one")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let clone = remotes.path().join("clone");
    git(
        remotes.path(),
        &["clone", "-q", bare_s, clone.to_str().unwrap()],
    );
    for entry in std::fs::read_dir(&clone).unwrap().flatten() {
        std::fs::rename(entry.path(), sb.path().join(entry.file_name())).unwrap();
    }
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");

    // An update: the look at the remote, the fetch, then the deploy's steps.
    push(&work, &APP.replace("{answer}", "two"), "second answer");
    let (code, check) = sb.json(&["update", "now"]);
    assert_eq!(code, Some(0), "{check}");
    assert_eq!(check["result"], "deployed", "{check}");
    assert_eq!(answer(&addr), "two");
    let kinds = step_kinds(&check);
    assert_eq!(kinds[..2], ["check", "fetch"], "{check}");
    // The release's code (pin_code) is what a process service builds.
    assert!(at(&kinds, "fetch") < at(&kinds, "build"), "{kinds:?}");
    assert!(at(&kinds, "build") < at(&kinds, "start"), "{kinds:?}");
    assert!(at(&kinds, "start") < at(&kinds, "gate"), "{kinds:?}");
    assert!(at(&kinds, "gate") < at(&kinds, "commit"), "{kinds:?}");
    assert!(at(&kinds, "commit") < at(&kinds, "swap"), "{kinds:?}");
    assert!(at(&kinds, "swap") < at(&kinds, "drain"), "{kinds:?}");
    assert_steps_fit(&check);
    let st = status(&sb);
    assert_eq!(st["last_check"]["steps"], check["steps"], "{st}");
    // The update's event says how the time split.
    let (_, events) = sb.json(&["events", "-n", "100"]);
    let live = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .find(|m| m.starts_with("updated to"))
        .unwrap_or_else(|| panic!("no update event: {events}"));
    for part in ["fetch ", "build ", "gate ", "swap "] {
        assert!(live.contains(part), "{part:?} missing from {live:?}");
    }
    // `update status` shows them to people.
    let text = String::from_utf8_lossy(&expect(&sb, &["update", "status"], 0).stdout).into_owned();
    assert!(text.contains("fetch ") && text.contains("gate "), "{text}");

    // A deploy by hand: no fetch, the same steps after it.
    let (code, report) = sb.json(&["deploy"]);
    assert_eq!(code, Some(0), "{report}");
    let kinds = step_kinds(&report);
    assert!(!kinds.iter().any(|k| k == "fetch"), "{kinds:?}");
    assert!(at(&kinds, "build") < at(&kinds, "gate"), "{kinds:?}");
    assert!(at(&kinds, "gate") < at(&kinds, "swap"), "{kinds:?}");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "start" && s["service"] == "web"),
        "{report}"
    );
    assert_steps_fit(&report);
    let text = String::from_utf8_lossy(&expect(&sb, &["deploy"], 0).stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("gate "))
        .unwrap_or_else(|| panic!("no step line in {text}"));
    for part in ["build ", "start ", "swap ", " ms"] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }

    // `deploy --revision`: the fetch and checkout come first.
    let one = git(&work, &["rev-parse", "HEAD~1"]);
    let (code, report) = sb.json(&["deploy", "--revision", &one]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(step_kinds(&report)[0], "fetch", "{report}");
    assert_steps_fit(&report);
    assert_eq!(answer(&addr), "one");

    // A failed deploy reports the steps it ran, then the clean-up.
    std::fs::write(
        sb.path().join("app.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    let (code, report) = sb.json(&["deploy"]);
    assert_eq!(code, Some(1), "{report}");
    let kinds = step_kinds(&report);
    assert!(at(&kinds, "gate") < at(&kinds, "abort"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "swap"), "{kinds:?}");
    assert_steps_fit(&report);
    assert_eq!(answer(&addr), "one");
}
