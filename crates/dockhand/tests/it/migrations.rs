//! The migration hook (`pre_deploy`) runs before any instance of the new release starts, in
//! the new release's environment: a release whose health reads a table its migration creates
//! deploys, and a failing migration stops the deploy before anything new runs — while 50
//! clients keep getting answers from the old release.

use std::time::Duration;

use dockhand_test_support::{wait_until, Load};

use crate::{expect, sandbox, service_logs, testapp_toml};

/// The migration the new release needs: creates table `orders_v2` in `app.db`.
const MIGRATE: &str = "import sqlite3\n\
db = sqlite3.connect('app.db')\n\
db.execute('CREATE TABLE IF NOT EXISTS orders_v2 (id INTEGER PRIMARY KEY)')\n\
db.commit()\n\
print('migrated')\n";

/// A migration that fails before it changes anything.
const BROKEN: &str =
    "import sys\nsys.exit('migration failed: orders has rows without a customer')\n";

#[test]
fn a_release_gets_its_migration_first_and_a_failed_migration_starts_nothing_under_load() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"a\"", 2, "20s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let load = Load::start(&addr, "app.test", "/version", 50);
    wait_until("the first answers", Duration::from_secs(20), || {
        load.snapshot().ok > 100
    });

    // Versions b and c are healthy only once the table exists.
    let db = sb.path().join("app.db");
    let needing = |version: &str, script: &str| {
        format!(
            "{}hooks = {{ pre_deploy = \"python3 {script}\" }}\n",
            testapp_toml(
                &format!(
                    "VERSION = \"{version}\", REQUIRE_TABLE = \"{}:orders_v2\"",
                    db.display()
                ),
                2,
                "20s"
            )
        )
    };

    // A failing migration: the deploy stops before any instance of release 2 exists.
    sb.write("broken.py", BROKEN);
    sb.write("dockhand.toml", &needing("b", "broken.py"));
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pre_deploy hook of web") && err.contains("migration failed"),
        "{err}"
    );
    assert!(!err.contains("starting release 2"), "{err}");
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["id"], 2, "{releases}");
    assert_eq!(releases[0]["status"], "failed", "{releases}");
    let logs = service_logs(&sb, "web");
    assert!(
        !logs.iter().any(|(name, _)| name.contains("r2-web")),
        "an instance of release 2 ran: {:?}",
        logs.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(logs.iter().any(|(name, _)| name == "pre_deploy-r2.log"));
    let seen = load.snapshot().ok;
    wait_until(
        "answers after the failed deploy",
        Duration::from_secs(20),
        || load.snapshot().ok > seen + 50,
    );

    // The migration that creates the table: the new release finds it from its first moment.
    sb.write("migrate.py", MIGRATE);
    sb.write("dockhand.toml", &needing("c", "migrate.py"));
    expect(&sb, &["deploy"], 0);
    let started: Vec<(String, String)> = service_logs(&sb, "web")
        .into_iter()
        .filter(|(name, _)| name.contains("r3-web"))
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    for (name, text) in &started {
        assert!(
            text.contains("table orders_v2 present at start"),
            "{name}: {text}"
        );
    }
    let seen = load.snapshot().ok;
    wait_until("answers from release 3", Duration::from_secs(20), || {
        load.snapshot().ok > seen + 50
    });

    let report = load.finish();
    assert_eq!(
        report.failures(),
        0,
        "non-2xx: {:?}, errors (first 10): {:?}",
        report.non_2xx,
        &report.errors[..report.errors.len().min(10)]
    );
    assert!(report.by_version.contains_key("a") && report.by_version.contains_key("c"));
    assert!(
        !report.by_version.contains_key("b"),
        "{:?}",
        report.by_version
    );
}
