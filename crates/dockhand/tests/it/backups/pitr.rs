//! Point-in-time recovery on the real PostgreSQL image: WAL archived continuously through the
//! spool, a base backup with every backup, `backup restore db --at TIME` replaying to exactly
//! that moment (rows written and a table dropped after it are not there; rows before it are),
//! back to an earlier moment on the first timeline after a restore started a second one, the
//! chain drilled in a scratch container, and the agent killed after every step of a restore:
//! at its next start the database holds either the data before the restore or the restored
//! data, whole, and nothing of the restore is left behind.

use std::time::Duration;

use dockhand_test_support::docker::{docker, ensure_test_images, unique_app, AppCleanup};
use dockhand_test_support::{wait_until, Sandbox};

use super::postgres::{config, psql};
use super::{events, keygen, secrets};
use crate::{expect, sandbox, show};

/// The config of `postgres::config` with `pitr` on for `db`.
fn pitr_config(app: &str, sb: &Sandbox, recipient: &str) -> String {
    let rest = format!(
        "pitr = [\"db\"]\narchive_timeout = \"5s\"\n\n[backups.targets.local]\ndir = \"{}/backups\"\n",
        sb.path().display()
    );
    config(app, sb, recipient, &rest)
}

/// `psql` that may fail (the database restarts once to turn archiving on).
fn try_psql(app: &str, sql: &str) -> Option<String> {
    let container = format!("{app}-db");
    let out = docker(&[
        "exec", "-u", "postgres", &container, "psql", "-U", app, "-d", app, "-tA", "-c", sql,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The database's clock, now, to the microsecond (RFC 3339, UTC).
fn db_now(app: &str) -> String {
    psql(
        app,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
}

/// `count:min:max` of the items.
fn items(app: &str) -> String {
    psql(
        app,
        "SELECT count(*) || ':' || min(id) || ':' || max(id) FROM items",
    )
}

fn has_table(app: &str, table: &str) -> bool {
    psql(
        app,
        &format!("SELECT to_regclass('public.{table}') IS NOT NULL"),
    ) == "t"
}

/// What a restore may leave in the data directory: nothing.
fn leftovers(app: &str) -> Vec<String> {
    let out = docker(&[
        "exec",
        "-u",
        "postgres",
        &format!("{app}-db"),
        "ls",
        "-a",
        "/var/lib/postgresql/data",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(".dockhand-") || *l == "dockhand_wal_restore")
        .map(str::to_string)
        .collect()
}

/// Starts the agent and waits until archiving is on.
fn start(sb: &Sandbox, app: &str) -> dockhand_test_support::AgentProc {
    let agent = sb.start_agent();
    wait_until("WAL archiving on", Duration::from_secs(90), || {
        try_psql(app, "SHOW archive_mode").as_deref() == Some("on")
            && try_psql(app, "SHOW archive_command")
                .is_some_and(|c| c.contains("dockhand_wal_spool"))
    });
    agent
}

/// Seeds `items` 1..=100 and table `keepme`, takes a backup (with its base backup).
fn seed_and_back_up(sb: &Sandbox, app: &str) -> String {
    psql(
        app,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(app, "CREATE TABLE keepme (x int)");
    psql(
        app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g",
    );
    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let base = shown["manifest"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "postgres_base")
        .unwrap_or_else(|| panic!("a base backup item: {shown}"))
        .clone();
    assert_eq!(base["source"], "db", "{base}");
    assert!(
        base["wal_start"].as_str().is_some_and(|w| w.len() == 24),
        "{base}"
    );
    id
}

#[test]
fn postgres_is_restored_to_the_moment_asked_for_from_a_base_backup_and_the_archived_wal() {
    ensure_test_images();
    let app = unique_app("pitr");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    secrets(&sb, "DB_PASSWORD=pw-for-pitr-7171\n");
    let (_, recipient) = keygen(&sb);
    sb.write("files/a.txt", "x\n");
    sb.write("dockhand.toml", &pitr_config(&app, &sb, &recipient));
    let _agent = start(&sb, &app);

    // Before the first base backup there is nothing to restore from: refused, untouched.
    psql(&app, "CREATE TABLE early (x int)");
    let out = expect(
        &sb,
        &["backup", "restore", "db", "--at", "2020-01-01T00:00:00Z"],
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no base backup"),
        "{}",
        show(&out)
    );
    psql(&app, "DROP TABLE early");

    let backup = seed_and_back_up(&sb, &app);
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = db_now(&app);
    std::thread::sleep(Duration::from_millis(1100));
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(101, 200) g",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let t1 = db_now(&app);
    std::thread::sleep(Duration::from_millis(1100));
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(201, 300) g",
    );
    psql(&app, "DROP TABLE keepme");
    assert_eq!(items(&app), "300:1:300");

    // To t1: the rows written before it, the table dropped after it, nothing later.
    let out = expect(&sb, &["backup", "restore", "db", "--at", &t1], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored database `db`"),
        "{}",
        show(&out)
    );
    assert_eq!(items(&app), "200:1:200");
    assert!(has_table(&app, "keepme"));
    assert_eq!(leftovers(&app), Vec::<String>::new());
    // The app serves again, on the restored database; and keeps archiving (a new timeline).
    psql(&app, "INSERT INTO items VALUES (5000, 'after the restore')");

    // To t0, before the second hundred: on the first timeline again.
    let (code, r) = sb.json(&["backup", "restore", "db", "--at", &t0]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["id"], backup.as_str(), "{r}");
    assert!(r["safety_backup"].is_string(), "{r}");
    assert_eq!(items(&app), "100:1:100");
    assert!(has_table(&app, "keepme"));

    // The chain (base backup + every archived segment) replays in a scratch container.
    let (code, drill) = sb.json(&["backup", "verify", &backup]);
    assert_eq!(code, Some(0), "{drill}");
    let lines = drill["results"].as_array().unwrap();
    let chain = lines
        .iter()
        .find(|l| l["object"].as_str().unwrap_or("").contains("base.tar"))
        .unwrap_or_else(|| panic!("a drill of the base backup: {drill}"));
    assert_eq!(chain["passed"], true, "{drill}");
    assert!(
        chain["message"].as_str().unwrap().contains("replayed"),
        "{drill}"
    );

    // The WAL is on the target, encrypted, with its records.
    let wal = sb.path().join("backups").join(&app).join("wal").join("db");
    let names = super::entries(&wal);
    assert!(names.iter().any(|n| n.ends_with(".zst.age")), "{names:?}");
    assert!(
        names.iter().any(|n| n == "00000002.history.json"),
        "{names:?}"
    );
    let text = events(&sb);
    assert!(
        text.contains("WAL archiving of database `db` is on"),
        "{text}"
    );
    assert!(!text.contains("pw-for-pitr-7171"));
}

#[test]
fn an_agent_killed_after_any_step_of_a_point_in_time_restore_leaves_the_old_or_the_restored_data() {
    ensure_test_images();
    let app = unique_app("pitrk");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    secrets(&sb, "DB_PASSWORD=pw-for-pitr-crash\n");
    let (_, recipient) = keygen(&sb);
    sb.write("files/a.txt", "x\n");
    sb.write("dockhand.toml", &pitr_config(&app, &sb, &recipient));
    let agent = start(&sb, &app);
    seed_and_back_up(&sb, &app);
    std::thread::sleep(Duration::from_millis(1100));
    let t1 = db_now(&app);
    std::thread::sleep(Duration::from_millis(1100));
    drop(agent);

    // (point, whether the data is the restored one after it)
    let points = [
        ("pitr-staged", false),
        ("pitr-maintenance", false),
        ("pitr-stopped", false),
        ("pitr-swapped", false),
        ("pitr-recovered", true),
        ("pitr-finished", true),
        ("pitr-restarted", true),
    ];
    let listed: Vec<&str> = dockhand_agent::backups::CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("pitr-"))
        .collect();
    assert_eq!(
        listed,
        points.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        "every crash point of a point-in-time restore is tested"
    );
    for (i, (point, restored)) in points.iter().enumerate() {
        // A row after t1 that only the data before the restore holds.
        let marker = 1000 + i;
        let mut agent =
            sb.start_agent_with_env(&[("DOCKHAND_CRASH_AFTER", &format!("{point}@restore"))]);
        psql(
            &app,
            &format!("INSERT INTO items VALUES ({marker}, 'after t1')"),
        );
        let out = sb.run(&["backup", "restore", "db", "--at", &t1]);
        assert_ne!(out.status.code(), Some(0), "{point}: {}", show(&out));
        agent.wait_exit(Duration::from_secs(120));

        let _agent = sb.start_agent();
        let journal = sb.state_dir().join("backup-restore.json");
        assert!(!journal.exists(), "{point}: the journal is left");
        let got = items(&app);
        if *restored {
            assert_eq!(got, "100:1:100", "{point}: the restored data");
        } else {
            assert_eq!(
                psql(
                    &app,
                    &format!("SELECT count(*) FROM items WHERE id = {marker}")
                ),
                "1",
                "{point}: the data before the restore ({got})"
            );
        }
        assert_eq!(leftovers(&app), Vec::<String>::new(), "{point}");
        // Either way the database takes writes and the app serves.
        psql(
            &app,
            &format!("INSERT INTO items VALUES ({}, 'x')", 2000 + i),
        );
        let (_, status) = sb.json(&["status"]);
        assert!(!status["current_release"].is_null(), "{point}: {status}");
        let text = events(&sb);
        if *point != "pitr-restarted" && *point != "pitr-finished" {
            assert!(
                text.contains("was interrupted (the agent stopped during it)"),
                "{point}: {text}"
            );
        }
        // Leave the database as the restore left it for the next point: the safety backups
        // keep what each restore replaced.
        let (_, list) = sb.json(&["backup", "list"]);
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|b| b["trigger"] == "safety"),
            "{point}: {list}"
        );
        drop(_agent);
    }
}
