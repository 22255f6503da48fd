//! Sources that need no Docker Engine — a live SQLite file in WAL mode and a directory — round
//! trip through a local directory and a real S3-compatible server (moto), and the keep policy
//! prunes through the CLI: `--dry-run` deletes nothing, and the newest verified backup stays;
//! `restore ID --to DIR` writes a backup out beside the live app, never over anything.

use dockhand_test_support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use rusqlite::Connection;

use super::{entries, events, keygen, process_app, secrets};
use crate::{expect, sandbox, show};

/// A fingerprint of every row of `notes`.
fn notes(db: &Connection) -> String {
    db.query_row(
        "SELECT count(*) || ':' || coalesce(group_concat(id || '/' || body, ','), '') FROM (SELECT * FROM notes ORDER BY id)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_live_sqlite_file_and_a_directory_restore_from_s3_once_the_local_copy_is_lost() {
    let s3 = S3Server::start();
    s3.create_bucket("dockhand-it");
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    secrets(
        &sb,
        &format!("S3_KEY_ID={ACCESS_KEY}\nS3_SECRET={SECRET_KEY}\n"),
    );
    sb.write("files/a.txt", "first version\n");
    sb.write("files/sub/b.txt", "nested\n");
    std::fs::create_dir_all(sb.path().join("data")).unwrap();
    let live = Connection::open(sb.path().join("data/notes.db")).unwrap();
    live.pragma_update(None, "journal_mode", "WAL").unwrap();
    live.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    for i in 0..300 {
        live.execute(
            "INSERT INTO notes (body) VALUES (?1)",
            [format!("note {i}")],
        )
        .unwrap();
    }
    let seeded = notes(&live);
    let app = "bkfiles";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                r#"[backups]
recipients = ["{recipient}"]
identity = "{key}"
sqlite = {{ notes = "data/notes.db" }}
directories = {{ files = "files" }}

[backups.targets.local]
dir = "backups"

[backups.targets.offsite]
s3 = "s3://dockhand-it/shop"
endpoint = "{endpoint}"
access_key_id = "${{secret.S3_KEY_ID}}"
secret_access_key = "${{secret.S3_SECRET}}"
"#,
                key = key.display(),
                endpoint = s3.endpoint()
            ),
        ),
    );
    let _agent = sb.start_agent();

    // The database stays open with its rows in the WAL, as a running service holds it.
    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    assert_eq!(taken["state"], "complete", "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let items = shown["manifest"]["items"].as_array().unwrap().clone();
    let sqlite = items.iter().find(|i| i["kind"] == "sqlite").unwrap();
    assert_eq!(sqlite["counts"]["notes"], 300, "{sqlite}");
    for item in &items {
        assert_eq!(
            item["targets"],
            serde_json::json!(["local", "offsite"]),
            "{item}"
        );
    }
    let keys = s3.keys("dockhand-it", &format!("shop/{app}/{id}/"));
    for object in [
        "notes.sqlite3.zst.age",
        "files.tar.zst.age",
        "manifest.json",
    ] {
        assert!(
            keys.contains(&format!("shop/{app}/{id}/{object}")),
            "{object} is not on S3: {keys:?}"
        );
    }

    // The drill restores every object from each target and counts what it finds.
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    let results = drill["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|r| r["target"] == "offsite" && r["source"] == "notes"),
        "{drill}"
    );
    assert!(results.iter().all(|r| r["passed"] == true), "{drill}");

    // Change everything, lose the local copy: the restore takes the S3 one.
    live.execute("DELETE FROM notes WHERE id % 2 = 0", [])
        .unwrap();
    live.execute("INSERT INTO notes (body) VALUES ('after the backup')", [])
        .unwrap();
    drop(live);
    sb.write("files/a.txt", "second version\n");
    sb.write("files/c.txt", "new file\n");
    std::fs::remove_dir_all(sb.path().join("backups").join(app)).unwrap();
    let out = expect(&sb, &["backup", "restore", &id], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored"),
        "{}",
        show(&out)
    );
    let back = Connection::open(sb.path().join("data/notes.db")).unwrap();
    assert_eq!(notes(&back), seeded);
    let ok: String = back
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("files/a.txt")).unwrap(),
        "first version\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path().join("files/sub/b.txt")).unwrap(),
        "nested\n"
    );
    assert!(!sb.path().join("files/c.txt").exists());

    // The S3 credentials never reach what the agent says.
    let text = format!("{}{}", events(&sb), sb.json(&["backup", "list"]).1);
    assert!(!text.contains(SECRET_KEY), "{text}");
}

#[test]
fn prune_dry_run_deletes_nothing_and_prune_keeps_the_newest_verified_backup() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    sb.write("files/a.txt", "data\n");
    let app = "bkprune";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                r#"[backups]
recipients = ["{recipient}"]
identity = "{key}"
directories = {{ files = "files" }}
include = ["files"]
keep = {{ last = 1 }}

[backups.targets.local]
dir = "backups"
"#,
                key = key.display()
            ),
        ),
    );
    let _agent = sb.start_agent();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (code, taken) = sb.json(&["backup", "run"]);
        assert_eq!(code, Some(0), "{taken}");
        ids.push(taken["id"].as_str().unwrap().to_string());
        // Ids are to the second: keep them apart.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let dir = sb.path().join("backups").join(app);
    assert_eq!(entries(&dir), ids);

    // Only the oldest is verified: nothing newer is verified, so nothing may go.
    expect(&sb, &["backup", "verify", &ids[0]], 0);
    let (code, plan) = sb.json(&["backup", "prune", "--dry-run"]);
    assert_eq!(code, Some(0), "{plan}");
    assert!(
        plan["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["keep"] == true),
        "{plan}"
    );

    // The newest verified: the two older would go; --dry-run leaves them.
    expect(&sb, &["backup", "verify", &ids[2]], 0);
    let (_, plan) = sb.json(&["backup", "prune", "--dry-run"]);
    let mut would: Vec<&str> = plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["keep"] == false)
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    would.sort();
    assert_eq!(would, [ids[0].as_str(), ids[1].as_str()], "{plan}");
    assert_eq!(entries(&dir), ids, "--dry-run deleted something");
    let out = expect(&sb, &["backup", "prune", "--dry-run"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would delete"),
        "{}",
        show(&out)
    );

    let (code, pruned) = sb.json(&["backup", "prune"]);
    assert_eq!(code, Some(0), "{pruned}");
    assert_eq!(entries(&dir), [ids[2].clone()]);
    let (_, list) = sb.json(&["backup", "list"]);
    let left: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [ids[2].as_str()]);
    assert!(events(&sb).contains("pruned 2 backup(s)"));
}

#[test]
fn restore_to_a_directory_writes_the_backed_up_data_aside_and_never_touches_the_live_app() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    sb.write("files/a.txt", "first version\n");
    sb.write("files/sub/b.txt", "nested\n");
    std::fs::create_dir_all(sb.path().join("data")).unwrap();
    let live = Connection::open(sb.path().join("data/notes.db")).unwrap();
    live.pragma_update(None, "journal_mode", "WAL").unwrap();
    live.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    for i in 0..50 {
        live.execute(
            "INSERT INTO notes (body) VALUES (?1)",
            [format!("note {i}")],
        )
        .unwrap();
    }
    let seeded = notes(&live);
    let app = "bkto";
    sb.write(
        "dockhand.toml",
        &process_app(
            app,
            &format!(
                r#"[backups]
recipients = ["{recipient}"]
identity = "{key}"
sqlite = {{ notes = "data/notes.db" }}
directories = {{ files = "files" }}

[backups.targets.local]
dir = "backups"
"#,
                key = key.display(),
            ),
        ),
    );
    let _agent = sb.start_agent();
    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();

    // The live data moves on; the backup is written out beside it.
    live.execute("DELETE FROM notes WHERE id > 10", []).unwrap();
    let changed = notes(&live);
    sb.write("files/a.txt", "second version\n");
    let out_dir = sb.path().join("restored");
    let (code, r) = sb.json(&["backup", "restore", &id, "--to", out_dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{r}");
    let extracted = r["extracted"].as_array().unwrap();
    let path_of = |source: &str| {
        extracted
            .iter()
            .find(|e| e["source"] == source)
            .unwrap_or_else(|| panic!("{source} was extracted: {r}"))["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The SQLite copy holds the backed-up rows; the directory its backed-up files.
    let copy = Connection::open(path_of("notes")).unwrap();
    assert_eq!(notes(&copy), seeded);
    drop(copy);
    let files = std::path::PathBuf::from(path_of("files"));
    assert_eq!(files, out_dir.join("files"));
    assert_eq!(
        std::fs::read_to_string(files.join("a.txt")).unwrap(),
        "first version\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("sub/b.txt")).unwrap(),
        "nested\n"
    );
    // The app's own files, unpacked.
    assert!(
        std::fs::read_to_string(std::path::PathBuf::from(path_of("app")).join("dockhand.toml"))
            .unwrap()
            .contains("[backups]"),
        "{r}"
    );
    // A new directory holding decrypted data is the owner's alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out_dir).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    // Nothing live was touched: no safety backup, the live rows and files as they were.
    assert_eq!(notes(&live), changed);
    assert_eq!(
        std::fs::read_to_string(sb.path().join("files/a.txt")).unwrap(),
        "second version\n"
    );
    let (_, list) = sb.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // No hidden leftovers of the writing.
    assert_eq!(entries(&out_dir), vec!["app", "files", "notes.sqlite3"]);

    // Never over what is there: refused, nothing changed.
    sb.write("restored/files/a.txt", "edited by hand\n");
    let out = expect(
        &sb,
        &[
            "backup",
            "restore",
            &id,
            "--source",
            "files",
            "--to",
            out_dir.to_str().unwrap(),
        ],
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        show(&out)
    );
    assert_eq!(
        std::fs::read_to_string(files.join("a.txt")).unwrap(),
        "edited by hand\n"
    );

    // A damaged object writes nothing.
    let object = sb
        .path()
        .join("backups")
        .join(app)
        .join(&id)
        .join("files.tar.zst.age");
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let other = sb.path().join("restored-2");
    let out = expect(
        &sb,
        &["backup", "restore", &id, "--to", other.to_str().unwrap()],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum") && err.contains("nothing was written"),
        "{}",
        show(&out)
    );
    assert!(!other.exists(), "{:?}", entries(&other));
    assert!(events(&sb).contains("extracting backup"));
}
