//! MariaDB and MySQL judged by restores, on the real Docker Engine: `mariadb-dump`
//! (`mysqldump`) `--single-transaction` in the database's container, a drill in a scratch
//! server of the same image comparing every table's row count, and a restore that brings the
//! rows back as they were backed up. One body, two engines: they differ in Dockhand only by
//! the client programs' names, the official image's variables and MySQL's dump options.

use dockhand_test_support::docker::{
    docker, ensure_test_images, unique_app, AppCleanup, MARIADB_IMAGE, MYSQL_STANDIN_IMAGE,
    TESTAPP_SHELL_IMAGE,
};

use super::{keygen, secrets};
use crate::sandbox;

/// What differs between the two engines in these tests.
struct Engine {
    /// `engine` in dockhand.toml, and the item's `kind`.
    name: &'static str,
    image: &'static str,
    /// The SQL client inside the image.
    client: &'static str,
    /// What the recorded server version starts with.
    version: &'static str,
}

fn config(engine: &Engine, app: &str, recipient: &str, dir: &std::path::Path) -> String {
    app_config(engine.name, engine.image, app, recipient, dir)
}

/// The app of the database backup tests: `[databases.db]` of `engine` from `image`, a web
/// service using it, and backups to a local directory (also the MongoDB test's).
pub(super) fn app_config(
    name: &str,
    image: &str,
    app: &str,
    recipient: &str,
    dir: &std::path::Path,
) -> String {
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.db]
engine = "{name}"
image = "{image}"

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
identity = "{key}"
keep = {{ last = 5 }}

[backups.targets.local]
dir = "{backups}"
"#,
        key = dir.join("backup.key").display(),
        backups = dir.join("backups").display(),
    )
}

/// The SQL client as the app's account in its container (the password from the environment).
fn sql(engine: &Engine, app: &str, password: &str, query: &str) -> String {
    let out = docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={password}"),
        &format!("{app}-db"),
        engine.client,
        "-h",
        "127.0.0.1",
        "-u",
        app,
        "-N",
        "-B",
        "-e",
        query,
        app,
    ]);
    assert!(
        out.status.success(),
        "{} {query:?}: {}",
        engine.client,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const PASSWORD: &str = "maria-pw-6161";

fn rows(engine: &Engine, app: &str) -> String {
    sql(
        engine,
        app,
        PASSWORD,
        "SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(id, '/', name ORDER BY id SEPARATOR ','))) FROM items",
    )
}

#[test]
fn a_mariadb_backup_is_drilled_with_row_counts_restores_row_by_row_and_a_wrong_password_fails_it() {
    round_trip(&Engine {
        name: "mariadb",
        image: MARIADB_IMAGE,
        client: "mariadb",
        version: "10.11",
    });
}

/// The MySQL code path (`engine = "mysql"`: `mysqldump` with MySQL's options, `mysql` for
/// counts and restores, the `MYSQL_*` variables for the drill's scratch server) against a
/// **stand-in**: MySQL's server is not in Debian and no registry is reachable, so the image
/// runs Debian's MariaDB 10.11 server, speaking the MySQL protocol, with only the MySQL client
/// names inside (Debian's `mysql`, `mysqldump` and `mysqladmin`, which are MariaDB's clients).
///
/// It proves that Dockhand drives the MySQL image's contract end to end: the client names and
/// the `MYSQL_*` variables (a `mariadb*` name or a `MARIADB_*` variable would fail here), a
/// `mysqldump` command line a MariaDB-built `mysqldump` accepts (MySQL 8's extra options are
/// `--loose-` ones), the `-- MySQL dump`/`-- MariaDB dump` header check, the drill and the
/// restore. It does not prove what only Oracle's MySQL 8 does: its `mysqldump` applying
/// `--set-gtid-purged=OFF` and `--column-statistics=0`, its reading of `MYSQL_PWD` (deprecated
/// there, still read by 8.4), its dump's exact SQL dialect, or its entry point's timing.
#[test]
fn a_mysql_backup_against_the_mysql_standin_is_drilled_restores_row_by_row_and_a_wrong_password_fails_it(
) {
    round_trip(&Engine {
        name: "mysql",
        image: MYSQL_STANDIN_IMAGE,
        client: "mysql",
        version: "10.11",
    });
}

fn round_trip(engine: &Engine) {
    ensure_test_images();
    let app = unique_app(&format!("bk{}", engine.name));
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let (_, recipient) = keygen(&sb);
    secrets(&sb, &format!("DB_PASSWORD={PASSWORD}\n"));
    sb.write(
        "dockhand.toml",
        &config(engine, &app, &recipient, sb.path()),
    );
    let (code, checked) = sb.json(&["check"]);
    assert_eq!(code, Some(0), "{checked}");
    let _agent = sb.start_agent();

    // The database answers once its first start (system tables, the account) is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={PASSWORD}"),
        &format!("{app}-db"),
        engine.client,
        "-h",
        "127.0.0.1",
        "-u",
        &app,
        "-e",
        "SELECT 1",
        &app,
    ])
    .status
    .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not answer",
            engine.name
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // A recursive CTE seeds in both dialects (MariaDB's `seq_1_to_N` is not MySQL's).
    sql(
        engine,
        &app,
        PASSWORD,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB; \
         CREATE TABLE empty_one (id INT PRIMARY KEY) ENGINE=InnoDB; \
         INSERT INTO items (id, name) WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 800) \
         SELECT n, CONCAT('item ', n) FROM s",
    );
    let seeded = rows(engine, &app);
    assert!(seeded.starts_with("800:"), "{seeded}");

    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    assert_eq!(taken["state"], "complete", "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let item = shown["manifest"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == engine.name)
        .unwrap_or_else(|| panic!("no {} item: {shown:#}", engine.name))
        .clone();
    assert_eq!(item["counts"]["items"], 800, "{item:#}");
    assert_eq!(item["counts"]["empty_one"], 0, "{item:#}");
    assert!(
        item["version"]
            .as_str()
            .unwrap()
            .starts_with(engine.version),
        "{item:#}"
    );
    assert_eq!(item["object"], "db.sql.zst.age", "{item:#}");

    // The drill restores into a scratch server and compares every table's count.
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    assert_eq!(drill["passed"], true, "{drill}");
    assert!(
        drill
            .to_string()
            .contains("compared 2 table(s), 800 row(s)"),
        "{drill}"
    );

    // The data changes; the restore brings back the backed-up rows exactly.
    sql(
        engine,
        &app,
        PASSWORD,
        "DELETE FROM items WHERE id > 100; UPDATE items SET name = 'changed' WHERE id = 1; DROP TABLE empty_one",
    );
    assert_ne!(rows(engine, &app), seeded);
    let (code, restored) = sb.json(&["backup", "restore", &id, "--source", "db"]);
    assert_eq!(code, Some(0), "{restored}");
    assert_eq!(rows(engine, &app), seeded);
    assert_eq!(
        sql(engine, &app, PASSWORD, "SELECT COUNT(*) FROM empty_one"),
        "0"
    );

    // A dump that cannot log in fails the backup, saying why, and keeps nothing.
    secrets(&sb, "DB_PASSWORD=not-the-password-5757\n");
    let (code, failed) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(1), "{failed}");
    let text = failed.to_string();
    assert!(
        text.contains(engine.client) && text.contains("Access denied"),
        "{text}"
    );
    assert!(!text.contains("not-the-password-5757"), "{text}");
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
}
