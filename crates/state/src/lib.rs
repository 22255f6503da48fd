//! The agent's durable record: releases, deployments, instances and events in one SQLite
//! database.
//!
//! Desired state is committed here before the agent acts on it, so that after a crash at any
//! instant the agent can tell what was serving (the `current` release) from what was being
//! attempted (a `pending` release and its `running` deployment) and clean up the latter.
//! Every multi-row change is one transaction. Only the agent opens this database for writing.

mod backups;
pub mod clock;
mod model;
mod schema;
mod tasks;
mod update;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub use backups::{BackupRecord, BackupStatus};
pub use model::{
    DeploymentKind, DeploymentOutcome, Event, EventLevel, InstanceRecord, JobRun, Recovery,
    Release, ReleaseStatus,
};
pub use tasks::{OnceRecord, TaskRunRecord, TaskRunStatus, TaskTrigger};
pub use update::{RevisionRecord, RevisionStatus};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database schema version {found} is newer than this dockhand understands ({supported}); upgrade dockhand")]
    TooNew { found: i64, supported: i64 },
    #[error("release {0} does not exist")]
    NoSuchRelease(i64),
}

impl StateError {
    /// Whether the failure comes from the machine (disk full, read-only or failing disk, a
    /// lock held too long) rather than from a bug: the caller reports it as such.
    pub fn is_environmental(&self) -> bool {
        let e = match self {
            StateError::Sqlite(e) | StateError::Open { source: e, .. } => e,
            _ => return false,
        };
        matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
            )
        )
    }
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The state store. Cheap operations on a local file; callers may use it from async code
/// without `spawn_blocking` but must not hold it across an `.await`.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        schema::prepare(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        schema::prepare(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn)
    }

    fn tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Records a new release (pending) and a running deployment of it, in one transaction.
    /// Returns `(release_id, deployment_id)`.
    pub fn begin_deploy(
        &self,
        config_json: &str,
        requested_by: &str,
        note: &str,
    ) -> Result<(i64, i64)> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO releases (created_at, status, config, note) VALUES (?1, 'pending', ?2, ?3)",
                params![now(), config_json, note],
            )?;
            let release = tx.last_insert_rowid();
            let deployment = insert_deployment(tx, release, DeploymentKind::Deploy, requested_by)?;
            Ok((release, deployment))
        })
    }

    /// Records a running rollback deployment of an existing release. Returns the deployment id.
    pub fn begin_rollback(&self, release: i64, requested_by: &str) -> Result<i64> {
        self.tx(|tx| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM releases WHERE id = ?1",
                    params![release],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(StateError::NoSuchRelease(release));
            }
            insert_deployment(tx, release, DeploymentKind::Rollback, requested_by)
        })
    }

    /// Marks a deployment finished. On success its release becomes the one `current` release
    /// and the previously current one becomes `retired`; on failure a pending release becomes
    /// `failed` and the current release is untouched.
    pub fn finish_deployment(
        &self,
        deployment: i64,
        outcome: DeploymentOutcome,
        message: &str,
    ) -> Result<()> {
        self.tx(|tx| {
            let release: i64 = tx.query_row(
                "SELECT release_id FROM deployments WHERE id = ?1",
                params![deployment],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE deployments SET finished_at = ?1, outcome = ?2, message = ?3 WHERE id = ?4",
                params![now(), outcome.as_str(), message, deployment],
            )?;
            match outcome {
                DeploymentOutcome::Succeeded => {
                    tx.execute(
                        "UPDATE releases SET status = 'retired' WHERE status = 'current' AND id != ?1",
                        params![release],
                    )?;
                    tx.execute(
                        "UPDATE releases SET status = 'current', activated_at = ?1 WHERE id = ?2",
                        params![now(), release],
                    )?;
                }
                _ => {
                    tx.execute(
                        "UPDATE releases SET status = 'failed' WHERE id = ?1 AND status = 'pending'",
                        params![release],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// After an unclean stop: every deployment still `running` becomes `aborted`, every
    /// `pending` release `failed`, and every instance record not of the current release is
    /// dropped. Returns what was found, for the event log.
    pub fn recover(&self) -> Result<Recovery> {
        self.tx(|tx| {
            let aborted_deployments = tx.execute(
                "UPDATE deployments SET outcome = 'aborted', finished_at = ?1, \
                 message = 'the agent stopped during this deployment' WHERE outcome = 'running'",
                params![now()],
            )?;
            let failed_releases = tx.execute(
                "UPDATE releases SET status = 'failed', note = note || ' (aborted)' WHERE status = 'pending'",
                [],
            )?;
            let stale_instances = tx.execute("DELETE FROM instances", [])?;
            Ok(Recovery {
                aborted_deployments,
                failed_releases,
                stale_instances,
            })
        })
    }

    /// The release that serves, if any.
    pub fn current_release(&self) -> Result<Option<Release>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("{RELEASE_SELECT} WHERE status = 'current'"),
                [],
                model::release_from_row,
            )
            .optional()?)
        })
    }

    pub fn release(&self, id: i64) -> Result<Option<Release>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("{RELEASE_SELECT} WHERE id = ?1"),
                params![id],
                model::release_from_row,
            )
            .optional()?)
        })
    }

    /// The newest releases first.
    pub fn releases(&self, limit: usize) -> Result<Vec<Release>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{RELEASE_SELECT} ORDER BY id DESC LIMIT ?1"))?;
            let rows = stmt.query_map(params![limit as i64], model::release_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The newest retained release before `current` that can be rolled back to: the most
    /// recently activated `retired` release.
    pub fn previous_release(&self) -> Result<Option<Release>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!(
                    "{RELEASE_SELECT} WHERE status = 'retired' ORDER BY activated_at DESC, id DESC LIMIT 1"
                ),
                [],
                model::release_from_row,
            )
            .optional()?)
        })
    }

    /// Marks a release the watch after the deploy rejected (and rolled back from) as `failed`,
    /// so that a plain `dockhand rollback` never returns to it: the rollback left it `retired`
    /// with the newest activation time, which makes it the "previous" release otherwise. It
    /// can still be named (`rollback --to`). Returns whether a retired release was marked.
    pub fn fail_rolled_back_release(&self, release: i64) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE releases SET status = 'failed' WHERE id = ?1 AND status = 'retired'",
                params![release],
            )? == 1)
        })
    }

    /// Records the revision a release was made from.
    pub fn set_release_revision(
        &self,
        release: i64,
        revision: &str,
        author: &str,
        message: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE releases SET revision = ?2, revision_author = ?3, revision_message = ?4 WHERE id = ?1",
                params![release, revision, author, message],
            )?;
            Ok(())
        })
    }

    /// The ids of the releases that are not pruned (their builds and code are kept).
    pub fn retained_releases(&self) -> Result<Vec<i64>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id FROM releases WHERE status != 'pruned'")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
    }

    /// Deletes the configuration of releases beyond the newest `keep` activated ones (never
    /// the current release). Returns the ids pruned.
    pub fn prune_releases(&self, keep: usize) -> Result<Vec<i64>> {
        self.tx(|tx| {
            let mut stmt = tx.prepare(
                "SELECT id FROM releases WHERE status IN ('retired', 'failed') ORDER BY id DESC LIMIT -1 OFFSET ?1",
            )?;
            let ids = stmt
                .query_map(params![keep as i64], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            for id in &ids {
                tx.execute(
                    "UPDATE releases SET status = 'pruned', config = '' WHERE id = ?1",
                    params![id],
                )?;
            }
            Ok(ids)
        })
    }

    /// Appends an event and returns it as stored (with its id and time).
    pub fn record_event(
        &self,
        level: EventLevel,
        kind: &str,
        release: Option<i64>,
        service: Option<&str>,
        message: &str,
    ) -> Result<Event> {
        let ts = now();
        self.with(|c| {
            c.execute(
                "INSERT INTO events (ts, level, kind, release_id, service, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ts, level.as_str(), kind, release, service, message],
            )?;
            Ok(Event {
                id: c.last_insert_rowid(),
                ts,
                level,
                kind: kind.to_string(),
                release,
                service: service.map(str::to_string),
                message: message.to_string(),
            })
        })
    }

    /// Deletes all but the newest `keep` events. Returns how many were deleted.
    pub fn prune_events(&self, keep: usize) -> Result<usize> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                params![keep as i64],
            )?)
        })
    }

    /// When the scheduled job `job` last ran (RFC 3339), if it ever did.
    pub fn job_last_run(&self, job: &str) -> Result<Option<JobRun>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT job, ran_at, succeeded, message FROM job_runs WHERE job = ?1",
                params![job],
                model::job_run_from_row,
            )
            .optional()?)
        })
    }

    /// Records a run of the scheduled job `job` (replacing the previous record).
    pub fn record_job_run(&self, run: &JobRun) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO job_runs (job, ran_at, succeeded, message) VALUES (?1, ?2, ?3, ?4)",
                params![run.job, run.ran_at, run.succeeded, run.message],
            )?;
            Ok(())
        })
    }

    /// The newest `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, ts, level, kind, release_id, service, message FROM \
                 (SELECT * FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id ASC",
            )?;
            let rows = stmt.query_map(params![limit as i64], model::event_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn put_instance(&self, rec: &InstanceRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO instances (id, release_id, deployment_id, service, idx, port, pid, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    rec.id,
                    rec.release,
                    rec.deployment,
                    rec.service,
                    rec.index,
                    rec.port,
                    rec.pid,
                    rec.started_at
                ],
            )?;
            Ok(())
        })
    }

    pub fn remove_instance(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM instances WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    pub fn instances(&self) -> Result<Vec<InstanceRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, release_id, deployment_id, service, idx, port, pid, started_at FROM instances ORDER BY id",
            )?;
            let rows = stmt.query_map([], model::instance_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The number of deployments in each outcome, for tests and status.
    pub fn deployment_outcomes(&self) -> Result<Vec<(i64, i64, String, String)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, release_id, kind, outcome FROM deployments ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

const RELEASE_SELECT: &str =
    "SELECT id, created_at, activated_at, status, config, note, revision, revision_author, revision_message FROM releases";

fn insert_deployment(
    tx: &Transaction<'_>,
    release: i64,
    kind: DeploymentKind,
    requested_by: &str,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO deployments (release_id, kind, requested_by, started_at, outcome) VALUES (?1, ?2, ?3, ?4, 'running')",
        params![release, kind.as_str(), requested_by, now()],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The current time ([`clock::now`]) as an RFC 3339 UTC string with milliseconds, the format
/// of every timestamp in the database.
pub fn now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(clock::now())
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
