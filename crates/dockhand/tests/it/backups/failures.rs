//! What goes wrong around a backup, through the real binary: the target's disk fills up, the
//! S3 server stops answering, the agent is killed in the middle of an upload, and a scheduled
//! run falls due while the agent is down. Each is seen (an event, a failed backup), and none
//! leaves a partial object behind or damages an older backup.

use std::time::{Duration, Instant};

use dockhand_test_support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use dockhand_test_support::wait_until;

use super::{entries, events, keygen, process_app, secrets};
use crate::disk::SmallDisk;
use crate::{expect, sandbox, show};

/// Writes `n` bytes that do not compress.
fn random_file(path: &std::path::Path, n: usize) {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

fn backups_table(recipient: &str, key: &std::path::Path, extra: &str) -> String {
    format!(
        r#"[backups]
recipients = ["{recipient}"]
identity = "{key}"
directories = {{ files = "files" }}
include = ["files"]
{extra}
"#,
        key = key.display()
    )
}

fn s3_target(s3: &S3Server, retries: u32) -> String {
    s3_target_at(&s3.endpoint(), retries)
}

fn s3_target_at(endpoint: &str, retries: u32) -> String {
    format!(
        r#"[backups.targets.offsite]
s3 = "s3://dockhand-it/site"
endpoint = "{endpoint}"
access_key_id = "${{secret.S3_KEY_ID}}"
secret_access_key = "${{secret.S3_SECRET}}"
retries = {retries}
timeout = "5s"
"#
    )
}

#[test]
fn a_full_target_disk_fails_the_backup_leaving_no_partial_object_and_the_older_backup_intact() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    let target = sb.path().join("backups");
    let _disk = SmallDisk::mount(&target, "3M");
    sb.write("files/small.txt", "small\n");
    let app = "bkfull";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                "{}\n[backups.targets.local]\ndir = \"backups\"\n",
                backups_table(&recipient, &key, "")
            ),
        ),
    );
    let _agent = sb.start_agent();
    let (code, first) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{first}");
    let first = first["id"].as_str().unwrap().to_string();

    // 6 MiB that zstd cannot shrink, for a 3 MiB disk.
    random_file(&sb.path().join("files/big.bin"), 6 << 20);
    let out = expect(&sb, &["backup", "run"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk is full"), "{}", show(&out));
    let (_, list) = sb.json(&["backup", "list"]);
    let failed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["state"] == "failed")
        .unwrap_or_else(|| panic!("no failed backup in {list}"));
    assert!(
        failed["message"].as_str().unwrap().contains("disk is full"),
        "{failed}"
    );
    // Nothing of the failed backup is left, not even a staging file.
    assert_eq!(entries(&target.join(app)), std::slice::from_ref(&first));
    let ev = events(&sb);
    let said = format!("backup {} (manual", failed["id"].as_str().unwrap());
    assert!(
        ev.contains(&said) && ev.contains("failed: files: no target took the backup"),
        "{ev}"
    );
    // The older backup is whole: its drill passes.
    let (code, drill) = sb.json(&["backup", "verify", &first]);
    assert_eq!(code, Some(0), "{drill}");
}

#[test]
fn an_s3_server_that_stops_answering_is_retried_then_its_failure_is_an_event() {
    let mut s3 = S3Server::start();
    s3.create_bucket("dockhand-it");
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    secrets(
        &sb,
        &format!("S3_KEY_ID={ACCESS_KEY}\nS3_SECRET={SECRET_KEY}\n"),
    );
    sb.write("files/a.txt", "data\n");
    let app = "bks3down";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                "{}\n{}",
                backups_table(&recipient, &key, ""),
                s3_target(&s3, 2)
            ),
        ),
    );
    let _agent = sb.start_agent();
    let (code, first) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{first}");

    // The server goes away: its port refuses every connection.
    s3.stop();
    let out = expect(&sb, &["backup", "run"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target `offsite`") && err.contains("after 2 retries"),
        "{}",
        show(&out)
    );
    let ev = events(&sb);
    assert!(
        ev.contains("failed: files: no target took the backup") && ev.contains("after 2 retries"),
        "{ev}"
    );
    assert!(!ev.contains(SECRET_KEY));
}

#[test]
fn the_agent_killed_mid_upload_leaves_no_half_object_in_the_catalog_or_the_targets() {
    let s3 = S3Server::start();
    s3.create_bucket("dockhand-it");
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    secrets(
        &sb,
        &format!("S3_KEY_ID={ACCESS_KEY}\nS3_SECRET={SECRET_KEY}\n"),
    );
    random_file(&sb.path().join("files/big.bin"), 48 << 20);
    let app = "bkkill";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                "{}\n[backups.targets.local]\ndir = \"backups\"\n\n{}",
                backups_table(&recipient, &key, ""),
                s3_target(&s3, 2)
            ),
        ),
    );
    let mut agent = sb.start_agent();
    let mut run = sb.spawn_quiet(&["backup", "run"]);

    // Wait until the local object is being written (its staging file holds bytes), freeze
    // the S3 server so the upload cannot finish, and kill the agent.
    let dir = sb.path().join("backups").join(app);
    let start = Instant::now();
    let id = loop {
        let found = entries(&dir).into_iter().find(|id| {
            std::fs::read_dir(dir.join(id))
                .map(|rd| {
                    rd.flatten()
                        .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
                })
                .unwrap_or(false)
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backup never started writing:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    s3.pause();
    agent.kill9();
    let _ = run.wait();
    s3.resume();
    // Mid-upload: no manifest, an object staged but not complete.
    let left = entries(&dir.join(&id));
    assert!(!left.contains(&"manifest.json".to_string()), "{left:?}");
    assert!(
        !left.contains(&"files.tar.zst.age".to_string()),
        "the object was complete before the kill: {left:?}"
    );

    let _agent = sb.start_agent();
    wait_until(
        "the interrupted backup's files to be removed",
        Duration::from_secs(30),
        || !dir.join(&id).exists(),
    );
    let (_, list) = sb.json(&["backup", "list"]);
    let rec = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} is not in {list}"));
    assert_eq!(rec["state"], "failed", "{rec}");
    assert!(
        s3.keys("dockhand-it", &format!("site/{app}/{id}"))
            .is_empty(),
        "an object of the killed backup is on S3"
    );
    assert!(events(&sb).contains(&format!("backup {id} was interrupted")));
    // And the next backup works.
    let (code, next) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{next}");
}

#[test]
fn a_scheduled_backup_missed_while_the_agent_was_down_runs_at_start_with_an_event() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    sb.write("files/a.txt", "data\n");
    let app = "bkmissed";
    // Every three seconds (six fields: seconds first).
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                "{}\n[backups.targets.local]\ndir = \"backups\"\n",
                backups_table(&recipient, &key, "schedule = \"*/3 * * * * *\"")
            ),
        ),
    );
    // Scheduled backups that completed, with when they started.
    let scheduled = |sb: &dockhand_test_support::Sandbox| -> Vec<String> {
        let (_, list) = sb.json(&["backup", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|b| b["trigger"] == "schedule" && b["state"] == "complete")
            .map(|b| b["started_at"].as_str().unwrap().to_string())
            .collect()
    };
    let mut agent = sb.start_agent();
    wait_until("a scheduled backup", Duration::from_secs(30), || {
        !scheduled(&sb).is_empty()
    });
    agent.terminate();
    // At least one due time passes while the agent is down.
    std::thread::sleep(Duration::from_secs(4));
    let restarted = now_rfc3339();
    let _agent = sb.start_agent();
    wait_until(
        "the missed run to be reported",
        Duration::from_secs(30),
        || events(&sb).contains("scheduled job `backup`"),
    );
    let ev = events(&sb);
    assert!(
        ev.contains("while the agent was not running; running it now"),
        "{ev}"
    );
    wait_until(
        "a scheduled backup after the restart",
        Duration::from_secs(30),
        || {
            scheduled(&sb)
                .iter()
                .any(|t| t.as_str() > restarted.as_str())
        },
    );
}

/// The current UTC time as the agent writes it (RFC 3339, milliseconds, `Z`).
fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn check_probes_every_backup_target_and_the_identity_with_file_line_column() {
    let s3 = S3Server::start();
    s3.create_bucket("dockhand-it");
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    secrets(
        &sb,
        &format!("S3_KEY_ID={ACCESS_KEY}\nS3_SECRET={SECRET_KEY}\n"),
    );
    sb.write("files/a.txt", "data\n");
    let closed = dockhand_test_support::free_port();
    let table = |endpoint: &str, recipient: &str| {
        process_app(
            "bkcheck",
            &format!(
                "{}\n[backups.targets.local]\ndir = \"backups\"\n\n{}",
                backups_table(recipient, &key, ""),
                s3_target_at(endpoint, 1)
            ),
        )
    };
    // Both targets answer and the identity opens what the recipient encrypts.
    sb.write("dockhand.toml", &table(&s3.endpoint(), &recipient));
    let (code, json) = sb.json(&["check"]);
    assert_eq!(code, Some(0), "{json}");

    // An S3 endpoint where nothing listens: refused, pointing at its table.
    sb.write(
        "dockhand.toml",
        &table(&format!("http://127.0.0.1:{closed}"), &recipient),
    );
    let (code, json) = sb.json(&["check"]);
    assert_eq!(code, Some(2), "{json}");
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json}");
    let text = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l == "[backups.targets.offsite]")
        .unwrap()
        + 1;
    assert_eq!(errors[0]["line"], line, "{json}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("target `offsite`"),
        "{json}"
    );
    assert!(!json.to_string().contains(SECRET_KEY));

    // A recipient the identity does not belong to.
    let other = {
        let other = sandbox();
        keygen(&other).1
    };
    sb.write("dockhand.toml", &table(&s3.endpoint(), &other));
    let out = expect(&sb, &["check"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("decrypts none of the `recipients`") && err.contains("dockhand.toml:"),
        "{}",
        show(&out)
    );

    // A schedule that never fires (there is no 30 February): refused at its value.
    let text = table(&s3.endpoint(), &recipient).replacen(
        "[backups]\n",
        "[backups]\nschedule = \"0 3 30 2 *\"\n",
        1,
    );
    sb.write("dockhand.toml", &text);
    let (code, json) = sb.json(&["check"]);
    assert_eq!(code, Some(2), "{json}");
    let errors = json["errors"].as_array().unwrap();
    let cron = errors
        .iter()
        .find(|e| e["message"].as_str().unwrap_or("").contains("never fires"))
        .unwrap_or_else(|| panic!("a never-firing schedule is an error: {json}"));
    let line = text
        .lines()
        .position(|l| l.starts_with("schedule = "))
        .unwrap()
        + 1;
    assert_eq!(cron["line"], line, "{json}");
    assert_eq!(cron["column"], "schedule = ".len() + 1, "{json}");
    assert!(
        cron["message"].as_str().unwrap().contains("0 3 30 2 *"),
        "{json}"
    );
    assert!(
        cron["help"].as_str().unwrap_or("").contains("30 February"),
        "{json}"
    );
}
