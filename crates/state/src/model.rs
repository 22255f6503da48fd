//! Rows of the state database as Rust values.

use rusqlite::Row;
use serde::{Deserialize, Serialize};

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Being deployed.
    Pending,
    /// Serving traffic. At most one release is current.
    Current,
    /// Served before; retained for rollback.
    Retired,
    /// Never served: its deployment failed or was aborted.
    Failed,
    /// Beyond retention: its configuration was deleted.
    Pruned,
}

impl ReleaseStatus {
    fn parse(s: &str) -> ReleaseStatus {
        match s {
            "pending" => ReleaseStatus::Pending,
            "current" => ReleaseStatus::Current,
            "retired" => ReleaseStatus::Retired,
            "failed" => ReleaseStatus::Failed,
            _ => ReleaseStatus::Pruned,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Current => "current",
            ReleaseStatus::Retired => "retired",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Pruned => "pruned",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub id: i64,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub status: ReleaseStatus,
    /// The resolved configuration as JSON (never holds secret values). Empty once pruned.
    #[serde(skip)]
    pub config: String,
    pub note: String,
    /// Where the release's code came from: `git:<commit>[+dirty]`, `sha256:<hash>` of the
    /// project's files, or empty (no process service, or made before revisions were kept).
    pub revision: String,
    /// The commit's author and subject, for a git revision.
    pub revision_author: String,
    pub revision_message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentKind {
    Deploy,
    Rollback,
}

impl DeploymentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentKind::Deploy => "deploy",
            DeploymentKind::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentOutcome {
    Succeeded,
    Failed,
    Aborted,
}

impl DeploymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentOutcome::Succeeded => "succeeded",
            DeploymentOutcome::Failed => "failed",
            DeploymentOutcome::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventLevel {
    Info,
    Warn,
    Error,
}

impl EventLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            EventLevel::Info => "info",
            EventLevel::Warn => "warn",
            EventLevel::Error => "error",
        }
    }

    fn parse(s: &str) -> EventLevel {
        match s {
            "error" => EventLevel::Error,
            "warn" => EventLevel::Warn,
            _ => EventLevel::Info,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: i64,
    pub ts: String,
    pub level: EventLevel,
    pub kind: String,
    pub release: Option<i64>,
    pub service: Option<String>,
    pub message: String,
}

/// An instance the agent started, recorded so that a restarted agent knows what existed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceRecord {
    pub id: String,
    pub release: i64,
    pub deployment: i64,
    pub service: String,
    pub index: u32,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub started_at: String,
}

/// The last run of a scheduled job, kept so that a run missed while the agent was down is
/// noticed when it starts again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRun {
    pub job: String,
    /// RFC 3339, UTC: when the run started.
    pub ran_at: String,
    pub succeeded: bool,
    pub message: String,
}

/// What `Store::recover` found after an unclean stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub aborted_deployments: usize,
    pub failed_releases: usize,
    pub stale_instances: usize,
}

pub(crate) fn release_from_row(r: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: r.get(0)?,
        created_at: r.get(1)?,
        activated_at: r.get(2)?,
        status: ReleaseStatus::parse(&r.get::<_, String>(3)?),
        config: r.get(4)?,
        note: r.get(5)?,
        revision: r.get(6)?,
        revision_author: r.get(7)?,
        revision_message: r.get(8)?,
    })
}

pub(crate) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        ts: r.get(1)?,
        level: EventLevel::parse(&r.get::<_, String>(2)?),
        kind: r.get(3)?,
        release: r.get(4)?,
        service: r.get(5)?,
        message: r.get(6)?,
    })
}

pub(crate) fn job_run_from_row(r: &Row<'_>) -> rusqlite::Result<JobRun> {
    Ok(JobRun {
        job: r.get(0)?,
        ran_at: r.get(1)?,
        succeeded: r.get(2)?,
        message: r.get(3)?,
    })
}

pub(crate) fn instance_from_row(r: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        id: r.get(0)?,
        release: r.get(1)?,
        deployment: r.get(2)?,
        service: r.get(3)?,
        index: r.get(4)?,
        port: r.get(5)?,
        pid: r.get(6)?,
        started_at: r.get(7)?,
    })
}
