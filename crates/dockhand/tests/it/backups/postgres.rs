//! Backups judged by restores, on the real Docker Engine and a real PostgreSQL: a round trip
//! (seed → backup → change → restore → the rows equal the backed-up state), a restore drill,
//! the same backup restored by hand with `age`, `zstd` and `pg_restore` (no Dockhand), and a
//! corrupted object caught by the drill and refused by the restore, the live data untouched; an
//! empty or truncated dump from a `pg_dump` that exited 0 fails its backup and stores nothing,
//! and an identity that decrypts nothing makes the restore refuse before it touches anything.

use std::process::Command;

use dockhand_test_support::docker::{
    docker, ensure_test_images, unique_app, AppCleanup, POSTGRES_IMAGE, TESTAPP_SHELL_IMAGE,
};
use dockhand_test_support::Sandbox;

use crate::{expect, sandbox, show};

/// A web container and a PostgreSQL database, backed up to `targets` (`[backups.targets.*]`
/// tables).
pub(super) fn config(app: &str, sb: &Sandbox, recipient: &str, targets: &str) -> String {
    let dir = sb.path().display();
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.db]
engine = "postgres"
image = "{POSTGRES_IMAGE}"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
env = {{ DATABASE_URL = "${{databases.db.url}}" }}
health = {{ path = "/health", interval = "200ms", timeout = "5s", deploy_timeout = "60s" }}
route = {{ host = "app.test" }}
depends_on = ["db"]
stop_timeout = "5s"

[backups]
recipients = ["{recipient}"]
identity = "{dir}/backup.key"
directories = {{ files = "files" }}
keep = {{ last = 5 }}

{targets}"#
    )
}

/// The local target of [`config`]'s first use.
fn local_target(sb: &Sandbox) -> String {
    format!(
        "[backups.targets.local]\ndir = \"{}/backups\"\n",
        sb.path().display()
    )
}

pub(super) fn psql(app: &str, sql: &str) -> String {
    let container = format!("{app}-db");
    let out = docker(&[
        "exec", "-u", "postgres", &container, "psql", "-U", app, "-d", app, "-tA", "-c", sql,
    ]);
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fingerprint of every row of the seeded table.
pub(super) fn rows(app: &str) -> String {
    psql(
        app,
        "SELECT count(*) || ':' || md5(string_agg(id || '/' || name, ',' ORDER BY id)) FROM items",
    )
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

#[test]
fn a_postgres_backup_restores_row_by_row_by_dockhand_and_by_hand_and_a_damaged_one_is_refused() {
    ensure_test_images();
    for tool in ["age", "zstd", "pg_restore"] {
        assert!(
            sh(&format!("command -v {tool}")).status.success(),
            "`{tool}` is missing: apt-get install age zstd postgresql-client"
        );
    }
    let app = unique_app("bk");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let path = sb.write(".dockhand/secrets.env", "DB_PASSWORD=pw-for-backups-4242\n");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key = sb.path().join("backup.key");
    let (code, made) = sb.json(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{made}");
    let recipient = made["recipient"].as_str().unwrap().to_string();
    sb.write("files/a.txt", "first version\n");
    sb.write(
        "dockhand.toml",
        &config(&app, &sb, &recipient, &local_target(&sb)),
    );
    let _agent = sb.start_agent();

    psql(
        &app,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g",
    );
    let seeded = rows(&app);
    assert!(seeded.starts_with("1000:"), "{seeded}");

    // Backup.
    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    assert_eq!(taken["state"], "complete", "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let items = shown["manifest"]["items"].as_array().unwrap().clone();
    let dump = items
        .iter()
        .find(|i| i["kind"] == "postgres")
        .expect("a postgres item");
    assert_eq!(dump["counts"]["public.items"], 1000, "{dump}");
    assert!(items.iter().any(|i| i["kind"] == "directory"), "{shown}");
    assert!(items.iter().any(|i| i["kind"] == "app"), "{shown}");
    let object = sb
        .path()
        .join("backups")
        .join(&app)
        .join(&id)
        .join(dump["object"].as_str().unwrap());
    // Nothing of it is readable without the identity; the secret never reached the manifest.
    assert!(!shown.to_string().contains("pw-for-backups-4242"));

    // A restore drill passes.
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    assert_eq!(drill["passed"], true, "{drill}");

    // By hand, with the README's commands: age -d | zstd -d | pg_restore.
    let listed = sh(&format!(
        "age -d -i {} {} | zstd -dc | pg_restore -l",
        key.display(),
        object.display()
    ));
    assert!(listed.status.success(), "{}", show(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public items"),
        "{}",
        show(&listed)
    );
    let sql = sh(&format!(
        "age -d -i {} {} | zstd -dc | pg_restore -f - --data-only -t items",
        key.display(),
        object.display()
    ));
    assert!(sql.status.success(), "{}", show(&sql));
    assert!(
        String::from_utf8_lossy(&sql.stdout).contains("1000\titem 1000"),
        "the rows are in the dump"
    );

    // Change the data, then restore: the rows are the backed-up ones again.
    psql(
        &app,
        "DELETE FROM items WHERE id > 500; INSERT INTO items VALUES (5000, 'after the backup')",
    );
    sb.write("files/a.txt", "second version\n");
    sb.write("files/b.txt", "new file\n");
    assert_ne!(rows(&app), seeded);
    let out = expect(&sb, &["backup", "restore", &id], 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("restored"), "{}", show(&out));
    assert_eq!(rows(&app), seeded);
    assert_eq!(
        std::fs::read_to_string(sb.path().join("files/a.txt")).unwrap(),
        "first version\n"
    );
    assert!(!sb.path().join("files/b.txt").exists());
    let (_, list) = sb.json(&["backup", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["trigger"] == "safety"),
        "{list}"
    );

    // A damaged object: the drill fails with an alert, the restore refuses, nothing changes.
    psql(&app, "INSERT INTO items VALUES (7000, 'live row')");
    let live = rows(&app);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let out = expect(&sb, &["backup", "verify", &id], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        show(&out)
    );
    let out = expect(&sb, &["backup", "restore", &id], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was touched"), "{}", show(&out));
    assert_eq!(rows(&app), live);
    let (_, events) = sb.json(&["events", "-n", "200"]);
    let text = events.to_string();
    assert!(
        text.contains("restore drill of backup") && text.contains("FAILED"),
        "{text}"
    );
    assert!(!text.contains("pw-for-backups-4242"));

    // A wrong password (the secrets file changed, the database did not): the dump fails and
    // says why, and nothing of it is stored.
    let path = sb.write(".dockhand/secrets.env", "DB_PASSWORD=not-the-password\n");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = expect(&sb, &["backup", "run", "db"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password authentication failed"),
        "{}",
        show(&out)
    );
    assert!(!err.contains("not-the-password"), "{}", show(&out));
    let (_, list) = sb.json(&["backup", "list"]);
    let newest = &list.as_array().unwrap()[0];
    assert_eq!(newest["state"], "failed", "{list}");
    let failed_id = newest["id"].as_str().unwrap();
    assert!(!sb
        .path()
        .join("backups")
        .join(&app)
        .join(failed_id)
        .exists());
}

/// Puts `script` in front of the database container's `pg_dump` (`/usr/local/bin` comes first
/// in its `PATH`): a broken client on the real server, as root; `None` takes it away again.
fn replace_pg_dump(app: &str, script: Option<&str>) {
    let container = format!("{app}-db");
    let cmd = match script {
        Some(s) => format!(
            "mkdir -p /usr/local/bin && printf '%s' '{s}' > /usr/local/bin/pg_dump && chmod 755 /usr/local/bin/pg_dump"
        ),
        None => "rm -f /usr/local/bin/pg_dump".to_string(),
    };
    let out = docker(&["exec", "-u", "root", &container, "sh", "-c", &cmd]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn an_empty_or_truncated_dump_of_a_non_empty_database_fails_the_backup_and_leaves_nothing() {
    ensure_test_images();
    let app = unique_app("bke");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    super::secrets(&sb, "DB_PASSWORD=pw-for-empty-dumps\n");
    let (_, recipient) = super::keygen(&sb);
    sb.write("files/a.txt", "x\n");
    sb.write(
        "dockhand.toml",
        &config(&app, &sb, &recipient, &local_target(&sb)),
    );
    let _agent = sb.start_agent();
    psql(
        &app,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g",
    );

    // A `pg_dump` that writes nothing and exits 0 (the nightly "success" that uploaded an empty
    // file), then one that writes only the format's magic and exits 0.
    let cases = [
        (
            "#!/bin/sh\nexit 0\n",
            "the dump is empty while the source holds 1000 row(s)",
        ),
        (
            "#!/bin/sh\nprintf PGDMP\nexit 0\n",
            "the dump is 5 bytes, smaller than any valid postgres dump",
        ),
    ];
    for (script, why) in cases {
        replace_pg_dump(&app, Some(script));
        let out = expect(&sb, &["backup", "run", "db"], 1);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{why}: {}", show(&out));
        let (_, list) = sb.json(&["backup", "list"]);
        let newest = list.as_array().unwrap()[0].clone();
        assert_eq!(newest["state"], "failed", "{why}: {list}");
        assert!(
            newest["message"].as_str().unwrap_or("").contains(why),
            "{why}: {newest}"
        );
        let failed = newest["id"].as_str().unwrap();
        // Nothing of it was stored: no object, no manifest, not even a directory.
        assert!(
            !sb.path().join("backups").join(&app).join(failed).exists(),
            "{why}: {:?}",
            super::entries(&sb.path().join("backups").join(&app))
        );
        let text = super::events(&sb);
        assert!(
            text.contains(&format!("backup {failed} (manual")) && text.contains(why),
            "{why}: {text}"
        );
    }

    // The real `pg_dump` again: the same database backs up, and its drill passes.
    replace_pg_dump(&app, None);
    let (code, taken) = sb.json(&["backup", "run", "db"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    assert!(
        sb.path().join("backups").join(&app).join(&id).exists(),
        "the good backup is stored"
    );
    // Written out with --to, the dump is one `pg_restore` reads, the globals plain SQL.
    let aside = sb.path().join("aside");
    let (code, r) = sb.json(&[
        "backup",
        "restore",
        &id,
        "--source",
        "db",
        "--to",
        aside.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        super::entries(&aside),
        vec!["db.globals.sql", "db.pgdump"],
        "{r}"
    );
    let listed = sh(&format!(
        "pg_restore -l {}",
        aside.join("db.pgdump").display()
    ));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public items"),
        "{}",
        show(&listed)
    );

    // An identity that is not the recipients' decrypts nothing: the restore refuses before it
    // touches anything (no safety backup, the live rows as they were).
    psql(&app, "INSERT INTO items VALUES (5000, 'after the backup')");
    let live = rows(&app);
    let other = sb.path().join("other.key");
    let (code, made) = sb.json(&["backup", "keygen", "--out", other.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{made}");
    let (_, before) = sb.json(&["backup", "list"]);
    let out = expect(
        &sb,
        &[
            "backup",
            "restore",
            &id,
            "--source",
            "db",
            "--identity",
            other.to_str().unwrap(),
        ],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was touched"), "{}", show(&out));
    assert_eq!(rows(&app), live);
    let (_, after) = sb.json(&["backup", "list"]);
    assert_eq!(
        before.as_array().unwrap().len(),
        after.as_array().unwrap().len(),
        "no safety backup was taken: {after}"
    );
    // With the right one, the backed-up rows come back.
    expect(&sb, &["backup", "restore", &id, "--source", "db"], 0);
    assert!(rows(&app).starts_with("1000:"), "{}", rows(&app));
}
