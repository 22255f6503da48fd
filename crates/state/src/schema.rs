//! The database schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! A migration is appended to `MIGRATIONS`, never edited once released: the index plus one is
//! the schema version it produces.

use rusqlite::Connection;

use crate::{Result, StateError};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE releases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   TEXT NOT NULL,
    activated_at TEXT,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'current', 'retired', 'failed', 'pruned')),
    config       TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX one_current_release ON releases (status) WHERE status = 'current';
CREATE TABLE deployments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id   INTEGER NOT NULL REFERENCES releases (id),
    kind         TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    outcome      TEXT NOT NULL,
    message      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    release_id    INTEGER NOT NULL,
    deployment_id INTEGER NOT NULL,
    service       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    port          INTEGER,
    pid           INTEGER,
    started_at    TEXT NOT NULL
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         TEXT NOT NULL,
    level      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    release_id INTEGER,
    service    TEXT,
    message    TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE job_runs (
    job       TEXT PRIMARY KEY,
    ran_at    TEXT NOT NULL,
    succeeded INTEGER NOT NULL,
    message   TEXT NOT NULL DEFAULT ''
);
"#,
    r#"
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    status         TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    trigger        TEXT NOT NULL,
    message        TEXT NOT NULL DEFAULT '',
    manifest       TEXT NOT NULL DEFAULT '',
    verified_at    TEXT,
    verify_ok      INTEGER,
    verify_message TEXT NOT NULL DEFAULT ''
);
"#,
    r#"
CREATE TABLE task_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task        TEXT NOT NULL,
    trigger     TEXT NOT NULL CHECK (trigger IN ('once', 'schedule', 'manual')),
    release_id  INTEGER,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'timed_out', 'skipped', 'interrupted')),
    exit_code   INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER,
    message     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX task_runs_by_task ON task_runs (task, id);
ALTER TABLE releases ADD COLUMN revision TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN revision_author TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN revision_message TEXT NOT NULL DEFAULT '';
CREATE TABLE update_revisions (
    commit_id  TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('deploying', 'deployed', 'failed')),
    release_id INTEGER,
    at         TEXT NOT NULL,
    message    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tasks_once (
    task       TEXT PRIMARY KEY,
    run_id     INTEGER NOT NULL,
    release_id INTEGER,
    ran_at     TEXT NOT NULL
);
"#,
];

pub(crate) fn prepare(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StateError::TooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}
