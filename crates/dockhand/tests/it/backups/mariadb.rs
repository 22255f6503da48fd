//! MariaDB judged by restores, on the real Docker Engine: `mariadb-dump --single-transaction`
//! in the database's container, a drill in a scratch server of the same image comparing every
//! table's row count, and a restore that brings the rows back as they were backed up.

use dockhand_test_support::docker::{
    docker, ensure_test_images, unique_app, AppCleanup, MARIADB_IMAGE, TESTAPP_SHELL_IMAGE,
};

use super::{keygen, secrets};
use crate::sandbox;

fn config(app: &str, recipient: &str, dir: &std::path::Path) -> String {
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.db]
engine = "mariadb"
image = "{MARIADB_IMAGE}"

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

/// `mariadb` as the app's account in its container (the password from the environment).
fn sql(app: &str, password: &str, query: &str) -> String {
    let out = docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={password}"),
        &format!("{app}-db"),
        "mariadb",
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
        "mariadb {query:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const PASSWORD: &str = "maria-pw-6161";

fn rows(app: &str) -> String {
    sql(
        app,
        PASSWORD,
        "SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(id, '/', name ORDER BY id SEPARATOR ','))) FROM items",
    )
}

#[test]
fn a_mariadb_backup_is_drilled_with_row_counts_restores_row_by_row_and_a_wrong_password_fails_it() {
    ensure_test_images();
    let app = unique_app("bkmaria");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let (_, recipient) = keygen(&sb);
    secrets(&sb, &format!("DB_PASSWORD={PASSWORD}\n"));
    sb.write("dockhand.toml", &config(&app, &recipient, sb.path()));
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
        "mariadb",
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
            "MariaDB did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    sql(
        &app,
        PASSWORD,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB; \
         CREATE TABLE empty_one (id INT PRIMARY KEY) ENGINE=InnoDB; \
         INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_800",
    );
    let seeded = rows(&app);
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
        .find(|i| i["kind"] == "mariadb")
        .unwrap_or_else(|| panic!("no mariadb item: {shown:#}"))
        .clone();
    assert_eq!(item["counts"]["items"], 800, "{item:#}");
    assert_eq!(item["counts"]["empty_one"], 0, "{item:#}");
    assert!(
        item["version"].as_str().unwrap().starts_with("10.11"),
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
        &app,
        PASSWORD,
        "DELETE FROM items WHERE id > 100; UPDATE items SET name = 'changed' WHERE id = 1; DROP TABLE empty_one",
    );
    assert_ne!(rows(&app), seeded);
    let (code, restored) = sb.json(&["backup", "restore", &id, "--source", "db"]);
    assert_eq!(code, Some(0), "{restored}");
    assert_eq!(rows(&app), seeded);
    assert_eq!(sql(&app, PASSWORD, "SELECT COUNT(*) FROM empty_one"), "0");

    // A dump that cannot log in fails the backup, saying why, and keeps nothing.
    secrets(&sb, "DB_PASSWORD=not-the-password-5757\n");
    let (code, failed) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(1), "{failed}");
    let text = failed.to_string();
    assert!(
        text.contains("mariadb") && text.contains("Access denied"),
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
