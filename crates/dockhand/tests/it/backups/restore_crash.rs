//! The chaos matrix of a restore from a dump: the agent killed (SIGKILL, the debug build's
//! `DOCKHAND_CRASH_AFTER=<point>@restore`) after each step in turn. At its next start the app
//! serves, the database holds either the data before the restore or the restored data — whole
//! —, the safety backup of what was replaced is complete in the catalog, and no backup is left
//! running. (The point-in-time restore's points are in `pitr.rs`.)

use std::time::Duration;

use dockhand_test_support::docker::{ensure_test_images, unique_app, AppCleanup};

use super::postgres::{config, psql, rows};
use super::{keygen, secrets};
use crate::{sandbox, show};

#[test]
fn an_agent_killed_after_any_step_of_a_restore_leaves_the_old_or_the_restored_data() {
    ensure_test_images();
    let app = unique_app("rstk");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    secrets(&sb, "DB_PASSWORD=pw-for-restore-crash\n");
    let (_, recipient) = keygen(&sb);
    sb.write("files/a.txt", "x\n");
    let target = format!(
        "[backups.targets.local]\ndir = \"{}/backups\"\n",
        sb.path().display()
    );
    sb.write("dockhand.toml", &config(&app, &sb, &recipient, &target));
    let agent = sb.start_agent();
    psql(
        &app,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g",
    );
    let backed_up = rows(&app);
    assert!(backed_up.starts_with("100:"), "{backed_up}");
    let (code, taken) = sb.json(&["backup", "run", "db"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    drop(agent);

    // (point, whether the data is the restored one after it)
    let points = [
        ("restore-fetched", false),
        ("restore-safety", false),
        ("restore-maintenance", false),
        ("restore-restored", true),
        ("restore-restarted", true),
    ];
    let listed: Vec<&str> = dockhand_agent::backups::CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("restore-"))
        .collect();
    assert_eq!(
        listed,
        points.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        "every crash point of a restore is tested"
    );
    for (i, (point, restored)) in points.iter().enumerate() {
        let marker = 1000 + i;
        let mut agent =
            sb.start_agent_with_env(&[("DOCKHAND_CRASH_AFTER", &format!("{point}@restore"))]);
        psql(
            &app,
            &format!("INSERT INTO items VALUES ({marker}, 'after the backup')"),
        );
        // Every row the table holds before the restore (the marker among them).
        let before = rows(&app);
        let out = sb.run(&["backup", "restore", &id, "--source", "db"]);
        assert_ne!(out.status.code(), Some(0), "{point}: {}", show(&out));
        agent.wait_exit(Duration::from_secs(120));

        let _agent = sb.start_agent();
        let (_, status) = sb.json(&["status"]);
        assert!(!status["current_release"].is_null(), "{point}: {status}");
        let got = rows(&app);
        if *restored {
            assert_eq!(got, backed_up, "{point}: the restored data, row by row");
        } else {
            assert_eq!(
                got, before,
                "{point}: the data before the restore, row by row"
            );
            assert_eq!(
                psql(
                    &app,
                    &format!("SELECT count(*) FROM items WHERE id = {marker}")
                ),
                "1",
                "{point}: the row written after the backup"
            );
        }
        let (_, list) = sb.json(&["backup", "list"]);
        let list = list.as_array().unwrap().clone();
        assert!(
            list.iter().all(|b| b["state"] != "running"),
            "{point}: {list:?}"
        );
        if *point != "restore-fetched" {
            let safety = list
                .iter()
                .find(|b| b["trigger"] == "safety")
                .unwrap_or_else(|| panic!("{point}: a safety backup: {list:?}"));
            assert_eq!(safety["state"], "complete", "{point}: {safety}");
        }
        // The database takes writes again.
        psql(
            &app,
            &format!("DELETE FROM items WHERE id > 100 AND id <> {marker}"),
        );
    }
}
