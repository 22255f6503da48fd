//! MongoDB backups against a **stand-in**, not MongoDB: MongoDB cannot be installed here (not in
//! Debian, its download host unreachable), so `dockhand-test/mongo-standin` replays the
//! documented behaviour Dockhand relies on (`scripts/mongo-standin/`): the official image's
//! `MONGO_INITDB_ROOT_USERNAME`/`PASSWORD`/`DATABASE`, `mongodump --archive` to stdout and
//! `mongorestore --archive --drop` from stdin with their options, `--config` files, exit codes
//! and `Failed: …` lines, `mongosh --eval` answering the scripts Dockhand sends, and
//! authentication failures. Collections are files of one JSON document per line.
//!
//! It proves Dockhand's orchestration: the commands, how the password travels (never an
//! argument), the archive's magic-number check, counts recorded and compared by the drill in a
//! scratch container, the restore, and the failures seen. It does not prove that MongoDB's
//! own tools accept these command lines or that `mongosh` runs the script as the stand-in
//! answers it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockhand_test_support::docker::{
    docker, docker_ok, ensure_test_images, unique_app, AppCleanup, MONGO_STANDIN_IMAGE,
};

use super::{keygen, secrets};
use crate::sandbox;

const PASSWORD: &str = "mongo-pw-'quoted'-7171";
const WRONG: &str = "not-the-mongo-password-3131";

fn config(app: &str, recipient: &str, dir: &std::path::Path) -> String {
    super::mariadb::app_config("mongodb", MONGO_STANDIN_IMAGE, app, recipient, dir)
}

/// A shell script in the database's container (the stand-in keeps collections as files).
fn sh(app: &str, script: &str) -> String {
    docker_ok(&["exec", &format!("{app}-db"), "sh", "-c", script])
        .trim()
        .to_string()
}

/// Every collection of the app's database: its name, document count and checksum.
fn collections(app: &str) -> String {
    sh(
        app,
        &format!("cd /data/db/{app} && for f in *.jsonl; do echo \"$f $(wc -l <\"$f\") $(md5sum <\"$f\")\"; done"),
    )
}

/// Watches every process's arguments on this machine (the containers' included) for `needles`
/// until finished.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start(needles: &[&str]) -> ArgvWatch {
        let needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if needles.iter().any(|n| line.contains(n.as_str())) {
                        v.lock().unwrap().insert(line);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        ArgvWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn a_mongodb_backup_against_the_mongo_standin_is_drilled_restored_and_its_failures_are_seen() {
    ensure_test_images();
    let app = unique_app("bkmongo");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let (_, recipient) = keygen(&sb);
    secrets(&sb, &format!("DB_PASSWORD={PASSWORD}\n"));
    sb.write("dockhand.toml", &config(&app, &recipient, sb.path()));
    let (code, checked) = sb.json(&["check"]);
    assert_eq!(code, Some(0), "{checked}");
    let watch = ArgvWatch::start(&[PASSWORD, WRONG]);
    let _agent = sb.start_agent();

    // The server is up once its first start is done and `mongod` is PID 1.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !docker(&[
        "exec",
        &format!("{app}-db"),
        "sh",
        "-c",
        "[ \"$(cat /proc/1/comm)\" = mongod ] && [ -e /tmp/mongod-standin.ready ]",
    ])
    .status
    .success()
    {
        assert!(
            Instant::now() < deadline,
            "the mongo stand-in did not start"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // 800 items, an empty collection, and one called `errors`, a word the tools' progress
    // lines then carry without anything having failed.
    sh(
        &app,
        &format!(
            "cd /data/db/{app} && for i in $(seq 1 800); do echo \"{{\\\"_id\\\":$i,\\\"name\\\":\\\"item $i\\\"}}\"; done >items.jsonl \
             && : >empty_one.jsonl && printf '{{\"_id\":1}}\\n{{\"_id\":2}}\\n{{\"_id\":3}}\\n' >errors.jsonl"
        ),
    );
    let seeded = collections(&app);
    assert!(seeded.contains("items.jsonl 800 "), "{seeded}");

    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    assert_eq!(taken["state"], "complete", "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let item = shown["manifest"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "mongodb")
        .unwrap_or_else(|| panic!("no mongodb item: {shown:#}"))
        .clone();
    assert_eq!(item["counts"]["items"], 800, "{item:#}");
    assert_eq!(item["counts"]["errors"], 3, "{item:#}");
    assert_eq!(item["counts"]["empty_one"], 0, "{item:#}");
    assert_eq!(item["version"], "7.0.0-standin", "{item:#}");
    assert_eq!(item["object"], "db.archive.zst.age", "{item:#}");
    assert_eq!(item["user"], app.as_str(), "{item:#}");

    // The drill restores into a scratch stand-in of the same image and compares the counts.
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    assert_eq!(drill["passed"], true, "{drill}");
    assert!(
        drill
            .to_string()
            .contains("compared 3 collection(s), 803 document(s)"),
        "{drill}"
    );

    // The data changes (documents gone, one changed, a collection added); the restore brings
    // back exactly the backed-up collections.
    sh(
        &app,
        &format!(
            "cd /data/db/{app} && head -n 100 items.jsonl >x && sed 's/item 1\"/changed\"/' x >items.jsonl && rm x \
             && echo '{{\"_id\":9}}' >later.jsonl"
        ),
    );
    assert_ne!(collections(&app), seeded);
    let (code, restored) = sb.json(&["backup", "restore", &id, "--source", "db"]);
    assert_eq!(code, Some(0), "{restored}");
    assert_eq!(collections(&app), seeded);

    // A dump that "succeeds" with nothing in it is recognised and kept nowhere.
    sh(&app, "touch /data/db/.standin/empty-dump");
    let (code, failed) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(1), "{failed}");
    let text = failed.to_string();
    assert!(
        text.contains("the dump is empty while the source holds 803 row(s)"),
        "{text}"
    );
    sh(&app, "rm /data/db/.standin/empty-dump");

    // A wrong password fails the backup, saying why, without the password anywhere.
    secrets(&sb, &format!("DB_PASSWORD={WRONG}\n"));
    let (code, failed) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(1), "{failed}");
    let text = failed.to_string();
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(!text.contains(WRONG) && !text.contains(PASSWORD), "{text}");
    let (_, list) = sb.json(&["backup", "list"]);
    let complete = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "complete")
        .count();
    assert_eq!(
        complete, 2,
        "the backup and the restore's safety backup: {list}"
    );
    // No process ever had a password in its arguments: not the dumps, restores and counts in
    // the containers, nor anything on this machine.
    let seen = watch.finish();
    assert!(
        seen.is_empty(),
        "a password in a process's arguments: {seen:?}"
    );
}
