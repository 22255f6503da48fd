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
