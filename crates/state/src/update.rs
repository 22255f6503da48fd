//! What the update watcher knows of the commits it saw: deploying, deployed or failed (a
//! failed commit is not tried again until a newer one arrives), and the agent's persistent
//! settings (`update.paused`).

use rusqlite::{params, OptionalExtension};

use crate::{now, Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionStatus {
    Deploying,
    Deployed,
    Failed,
}

impl RevisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionStatus::Deploying => "deploying",
            RevisionStatus::Deployed => "deployed",
            RevisionStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> RevisionStatus {
        match s {
            "deploying" => RevisionStatus::Deploying,
            "deployed" => RevisionStatus::Deployed,
            _ => RevisionStatus::Failed,
        }
    }
}

/// One commit the watcher acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub commit: String,
    pub status: RevisionStatus,
    pub release_id: Option<i64>,
    pub at: String,
    pub message: String,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionRecord> {
    Ok(RevisionRecord {
        commit: r.get(0)?,
        status: RevisionStatus::parse(&r.get::<_, String>(1)?),
        release_id: r.get(2)?,
        at: r.get(3)?,
        message: r.get(4)?,
    })
}

impl Store {
    /// Records what happened to `commit` (replacing what was known).
    pub fn record_revision(
        &self,
        commit: &str,
        status: RevisionStatus,
        release: Option<i64>,
        message: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO update_revisions (commit_id, status, release_id, at, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![commit, status.as_str(), release, now(), message],
            )?;
            Ok(())
        })
    }

    pub fn revision(&self, commit: &str) -> Result<Option<RevisionRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT commit_id, status, release_id, at, message FROM update_revisions WHERE commit_id = ?1",
                params![commit],
                from_row,
            )
            .optional()?)
        })
    }

    /// The commits that failed, newest first.
    pub fn failed_revisions(&self, limit: usize) -> Result<Vec<RevisionRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT commit_id, status, release_id, at, message FROM update_revisions WHERE status = 'failed' ORDER BY at DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map(params![limit as i64], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_keeps_its_last_status_and_settings_persist() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.revision("abc").unwrap(), None);
        s.record_revision("abc", RevisionStatus::Deploying, None, "")
            .unwrap();
        s.record_revision("abc", RevisionStatus::Failed, Some(3), "gate failed")
            .unwrap();
        let r = s.revision("abc").unwrap().unwrap();
        assert_eq!((r.status, r.release_id), (RevisionStatus::Failed, Some(3)));
        assert_eq!(s.failed_revisions(5).unwrap().len(), 1);
        assert_eq!(s.setting("update.paused").unwrap(), None);
        s.set_setting("update.paused", "true").unwrap();
        assert_eq!(s.setting("update.paused").unwrap().as_deref(), Some("true"));
    }
}
