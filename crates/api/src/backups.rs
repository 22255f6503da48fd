//! The wire types of `dockhand backup …`: requests' answers and their states.

use serde::{Deserialize, Serialize};

/// What `dockhand backup …` asks the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BackupRequest {
    /// Take a backup now (of one source, or all).
    Run {
        source: Option<String>,
        requested_by: String,
    },
    /// The catalog, newest first.
    List,
    /// One backup's manifest.
    Show { id: String },
    /// A restore drill of one backup (default: the newest complete one).
    Verify {
        id: Option<String>,
        /// An age identity file on the agent's machine (default: `[backups] identity`).
        #[serde(default)]
        identity: Option<String>,
    },
    /// Restore a backup (all its sources, or one) into the running app.
    Restore {
        id: String,
        source: Option<String>,
        #[serde(default)]
        identity: Option<String>,
        requested_by: String,
    },
    /// Write a backup's sources (all, or one) into a directory on the agent's machine instead
    /// of the live app (`backup restore ID --to DIR`): checked and decrypted like a restore,
    /// nothing live touched.
    Extract {
        id: String,
        source: Option<String>,
        /// An absolute directory (created if missing).
        to: String,
        #[serde(default)]
        identity: Option<String>,
        requested_by: String,
    },
    /// Apply the retention policy (or say what it would delete).
    Prune { dry_run: bool },
    /// Restore a PostgreSQL database with point-in-time recovery to a moment: a base backup
    /// and the archived WAL replayed up to `at`.
    RestoreAt {
        /// The database (default: the only one with `pitr`).
        database: Option<String>,
        /// RFC 3339 (`2026-12-06T10:15:00Z`).
        at: String,
        #[serde(default)]
        identity: Option<String>,
        requested_by: String,
    },
}

/// A backup's state in the catalog.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum BackupState {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "complete")]
    Complete,
    #[serde(rename = "failed")]
    Failed,
}

impl BackupState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Running => "running",
            BackupState::Complete => "complete",
            BackupState::Failed => "failed",
        }
    }
}

/// The last restore drill of a backup.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum VerifyState {
    /// Never drilled.
    #[serde(rename = "never")]
    Never,
    #[serde(rename = "passed")]
    Passed,
    #[serde(rename = "failed")]
    Failed,
}

impl VerifyState {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyState::Never => "never",
            VerifyState::Passed => "passed",
            VerifyState::Failed => "failed",
        }
    }
}

/// One backup of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupSummary {
    pub id: String,
    pub state: BackupState,
    pub trigger: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The sources it holds.
    pub sources: Vec<String>,
    pub stored_bytes: u64,
    pub verify: VerifyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Why it failed, or what the last drill said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One backup with its manifest (see `dockhand_backup::manifest::Manifest`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupDetail {
    pub summary: BackupSummary,
    pub manifest: serde_json::Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verify_message: String,
}

/// One object's drill on one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillLine {
    pub source: String,
    pub object: String,
    pub target: String,
    pub passed: bool,
    pub message: String,
}

/// The outcome of `backup verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyReport {
    pub id: String,
    pub passed: bool,
    pub results: Vec<DrillLine>,
}

/// One backup's fate under retention.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PruneLine {
    pub id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The outcome of `backup prune`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PruneReport {
    pub dry_run: bool,
    pub backups: Vec<PruneLine>,
    /// The ids deleted (or that would be).
    pub deleted: Vec<String>,
}

/// The outcome of `backup restore`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestoreReport {
    pub id: String,
    /// The sources restored.
    pub restored: Vec<String>,
    /// The backup taken just before, of what was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_backup: Option<String>,
    pub message: String,
}

/// The outcome of `backup restore ID --to DIR`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtractReport {
    pub id: String,
    /// What was written: each item's source and the path it is at.
    pub extracted: Vec<ExtractedItem>,
    pub message: String,
}

/// One item written by `backup restore ID --to DIR`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtractedItem {
    pub source: String,
    /// The item's kind (`postgres`, `directory`, …).
    pub kind: String,
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_states_on_the_wire() {
        for (s, w) in [
            (BackupState::Running, "running"),
            (BackupState::Complete, "complete"),
            (BackupState::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{w}\""));
            assert_eq!(s.as_str(), w);
        }
        for (s, w) in [
            (VerifyState::Never, "never"),
            (VerifyState::Passed, "passed"),
            (VerifyState::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{w}\""));
            assert_eq!(
                serde_json::from_str::<VerifyState>(&format!("\"{w}\"")).unwrap(),
                s
            );
        }
    }
}
