//! The backup catalog: one row per backup (running, complete or failed), its manifest as
//! JSON (what each object holds, its checksum and targets) and the last restore drill's
//! verdict. A backup is recorded `running` before anything is written, so one the agent was
//! killed during is found at start and cleaned up.

use rusqlite::{params, OptionalExtension};

use crate::{now, Result, Store};

/// One backup of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: BackupStatus,
    pub trigger: String,
    pub message: String,
    /// The manifest (JSON), empty while running.
    pub manifest: String,
    pub verified_at: Option<String>,
    /// The last drill's verdict.
    pub verify_ok: Option<bool>,
    pub verify_message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    Running,
    Complete,
    Failed,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Complete => "complete",
            BackupStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> BackupStatus {
        match s {
            "running" => BackupStatus::Running,
            "complete" => BackupStatus::Complete,
            _ => BackupStatus::Failed,
        }
    }
}

const SELECT: &str = "SELECT id, started_at, finished_at, status, trigger, message, manifest, verified_at, verify_ok, verify_message FROM backups";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRecord> {
    Ok(BackupRecord {
        id: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        status: BackupStatus::parse(&r.get::<_, String>(3)?),
        trigger: r.get(4)?,
        message: r.get(5)?,
        manifest: r.get(6)?,
        verified_at: r.get(7)?,
        verify_ok: r.get::<_, Option<i64>>(8)?.map(|v| v != 0),
        verify_message: r.get(9)?,
    })
}

impl Store {
    /// Records a backup as running, before anything of it is written.
    pub fn begin_backup(&self, id: &str, trigger: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO backups (id, started_at, status, trigger) VALUES (?1, ?2, 'running', ?3)",
                params![id, now(), trigger],
            )?;
            Ok(())
        })
    }

    /// Records how a backup ended, with its manifest.
    pub fn finish_backup(
        &self,
        id: &str,
        status: BackupStatus,
        message: &str,
        manifest: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE backups SET finished_at = ?1, status = ?2, message = ?3, manifest = ?4 WHERE id = ?5",
                params![now(), status.as_str(), message, manifest, id],
            )?;
            Ok(())
        })
    }

    /// Records a restore drill's verdict.
    pub fn record_verify(&self, id: &str, ok: bool, message: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE backups SET verified_at = ?1, verify_ok = ?2, verify_message = ?3 WHERE id = ?4",
                params![now(), ok as i64, message, id],
            )?;
            Ok(())
        })
    }

    /// Backups, newest first.
    pub fn backups(&self, limit: usize) -> Result<Vec<BackupRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{SELECT} ORDER BY started_at DESC, id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map(params![limit as i64], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn backup(&self, id: &str) -> Result<Option<BackupRecord>> {
        self.with(|c| {
            Ok(
                c.query_row(&format!("{SELECT} WHERE id = ?1"), params![id], from_row)
                    .optional()?,
            )
        })
    }

    /// Removes a backup from the catalog (after its objects were deleted).
    pub fn delete_backup(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM backups WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    /// After an unclean stop: every backup still `running` becomes `failed`; their ids, so
    /// what they wrote can be removed from the targets.
    pub fn abort_running_backups(&self) -> Result<Vec<String>> {
        self.tx(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare("SELECT id FROM backups WHERE status = 'running'")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.execute(
                "UPDATE backups SET status = 'failed', finished_at = ?1, message = 'the agent stopped during this backup; nothing of it was kept' WHERE status = 'running'",
                params![now()],
            )?;
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_recorded_running_then_finished_then_verified() {
        let s = Store::open_in_memory().unwrap();
        s.begin_backup("b1", "manual").unwrap();
        s.begin_backup("b2", "schedule").unwrap();
        assert_eq!(
            s.backup("b1").unwrap().unwrap().status,
            BackupStatus::Running
        );
        s.finish_backup("b1", BackupStatus::Complete, "", "{}")
            .unwrap();
        s.record_verify("b1", true, "ok").unwrap();
        let b1 = s.backup("b1").unwrap().unwrap();
        assert_eq!(
            (b1.status, b1.verify_ok),
            (BackupStatus::Complete, Some(true))
        );
        // The agent died during b2.
        assert_eq!(s.abort_running_backups().unwrap(), ["b2"]);
        assert_eq!(
            s.backup("b2").unwrap().unwrap().status,
            BackupStatus::Failed
        );
        assert_eq!(s.backups(10).unwrap().len(), 2);
        s.delete_backup("b2").unwrap();
        assert!(s.backup("b2").unwrap().is_none());
    }
}
