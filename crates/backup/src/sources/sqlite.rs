//! SQLite files of process services: copied with the online backup API (never a copy of the
//! live file: the copy is consistent and includes what is still in the WAL), checked with
//! `PRAGMA integrity_check`, counted table by table, then streamed through the pipeline.
//!
//! The backup API writes a database, so the copy is staged in a private scratch file (mode
//! 0600, beside the agent's state) and deleted once streamed — the one source staged on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{ChannelWriter, Dump, Ending, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

/// Copies `live` into `copy` with the online backup API (pages in steps, so writers are not
/// blocked for long), then checks and counts the copy.
pub fn snapshot(live: &Path, copy: &Path) -> Result<Facts> {
    if !live.exists() {
        return Err(BackupError::source(format!(
            "SQLite file {} does not exist: fix `[backups] sqlite` or create the database",
            live.display()
        )));
    }
    let _ = std::fs::remove_file(copy);
    let src = Connection::open_with_flags(live, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::source(format!("cannot open {}: {e}", live.display())))?;
    src.busy_timeout(Duration::from_secs(30))
        .map_err(|e| BackupError::source(e.to_string()))?;
    {
        let mut dst = open_private(copy)?;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .map_err(|e| BackupError::source(format!("cannot back up {}: {e}", live.display())))?;
        backup
            .run_to_completion(256, Duration::from_millis(10), None)
            .map_err(|e| {
                BackupError::source(format!("backing up {} failed: {e}", live.display()))
            })?;
    }
    let version = rusqlite::version().to_string();
    let counts = check(copy)?;
    let source_bytes = std::fs::metadata(live).ok().map(|m| m.len());
    Ok(Facts {
        version,
        image: String::new(),
        source_bytes,
        counts,
    })
}

/// Removes a staged copy that failed, with the rollback journal SQLite leaves beside it when
/// the copy failed mid-write (a full disk).
pub fn discard(copy: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = copy.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// `PRAGMA integrity_check` and the row count of every table of a database file.
pub fn check(path: &Path) -> Result<BTreeMap<String, u64>> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::restore(format!("cannot open {}: {e}", path.display())))?;
    let verdict: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| {
            BackupError::restore(format!("integrity check of {} failed: {e}", path.display()))
        })?;
    if verdict != "ok" {
        return Err(BackupError::restore(format!(
            "integrity check of {}: {verdict}",
            path.display()
        )));
    }
    let mut stmt = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(|e| BackupError::restore(e.to_string()))?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| BackupError::restore(e.to_string()))?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: i64 = db
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .map_err(|e| BackupError::restore(e.to_string()))?;
        counts.insert(t, n as u64);
    }
    Ok(counts)
}

fn open_private(path: &Path) -> Result<Connection> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::error::io(format_args!("failed to create {}", path.display()), e))?;
    Connection::open(path)
        .map_err(|e| BackupError::environment(format!("cannot open {}: {e}", path.display())))
}

/// Streams the staged copy (deleted afterwards) as a dump.
pub fn dump(copy: PathBuf) -> Dump {
    let (tx, rx) = crate::pipeline::feed();
    let task = tokio::task::spawn_blocking(move || {
        let result = std::fs::File::open(&copy).and_then(|mut f| {
            let mut w = ChannelWriter::new(tx);
            std::io::copy(&mut f, &mut w)?;
            std::io::Write::flush(&mut w)
        });
        let _ = std::fs::remove_file(&copy);
        result.map_err(|e| format!("reading the SQLite copy failed: {e}"))
    });
    let ending: Ending = Box::pin(async move { task.await.map_err(|e| e.to_string())? });
    Dump {
        kind: SourceKind::Sqlite,
        bytes: rx,
        ending,
    }
}

/// Replaces `live` with the database file at `restored` (already checked): renamed over it,
/// its `-wal` and `-shm` files removed (the services using it are stopped).
pub fn replace(restored: &Path, live: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = live.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(restored, live)
        .map_err(|e| crate::error::io(format_args!("failed to replace {}", live.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_database_in_wal_mode_is_copied_with_what_the_wal_holds() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.db");
        let db = Connection::open(&live).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE empty (x);",
        )
        .unwrap();
        for i in 0..500 {
            db.execute(
                "INSERT INTO items (name) VALUES (?1)",
                [format!("item {i}")],
            )
            .unwrap();
        }
        // Still open, rows in the WAL: a plain file copy would miss them.
        let copy = dir.path().join("copy.db");
        let facts = snapshot(&live, &copy).unwrap();
        assert_eq!(
            facts.counts,
            BTreeMap::from([("empty".into(), 0), ("items".into(), 500)])
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A damaged file fails the check.
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, b"SQLite format 3\0garbage garbage garbage").unwrap();
        assert!(check(&bad).is_err());
    }
}
