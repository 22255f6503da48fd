//! The history of task runs (`task_runs`: one row per run, `running` before the command
//! starts, so a run the agent was killed during is found at start) and the record of the
//! `once` tasks that succeeded (`tasks_once`), kept apart from the history so that pruning
//! runs never makes a once task run again.

use rusqlite::{params, OptionalExtension};

use crate::{now, Result, Store};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskTrigger {
    /// A `when = "once"` task after a deploy.
    Once,
    /// Its cron schedule.
    Schedule,
    /// `dockhand run NAME`.
    Manual,
}

impl TaskTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskTrigger::Once => "once",
            TaskTrigger::Schedule => "schedule",
            TaskTrigger::Manual => "manual",
        }
    }

    fn parse(s: &str) -> TaskTrigger {
        match s {
            "once" => TaskTrigger::Once,
            "schedule" => TaskTrigger::Schedule,
            _ => TaskTrigger::Manual,
        }
    }
}

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRunStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Not started: the previous run had not finished and the task does not overlap.
    Skipped,
    /// The agent stopped (or was killed) while it ran.
    Interrupted,
}

impl TaskRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunStatus::Running => "running",
            TaskRunStatus::Succeeded => "succeeded",
            TaskRunStatus::Failed => "failed",
            TaskRunStatus::TimedOut => "timed_out",
            TaskRunStatus::Skipped => "skipped",
            TaskRunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> TaskRunStatus {
        match s {
            "running" => TaskRunStatus::Running,
            "succeeded" => TaskRunStatus::Succeeded,
            "timed_out" => TaskRunStatus::TimedOut,
            "skipped" => TaskRunStatus::Skipped,
            "interrupted" => TaskRunStatus::Interrupted,
            _ => TaskRunStatus::Failed,
        }
    }
}

/// One run of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRunRecord {
    pub id: i64,
    pub task: String,
    pub trigger: TaskTrigger,
    pub release_id: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: TaskRunStatus,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
    pub message: String,
}

/// A once task that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceRecord {
    pub task: String,
    pub run_id: i64,
    pub release_id: Option<i64>,
    pub ran_at: String,
}

const SELECT: &str = "SELECT id, task, trigger, release_id, started_at, finished_at, status, exit_code, attempts, duration_ms, message FROM task_runs";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRunRecord> {
    Ok(TaskRunRecord {
        id: r.get(0)?,
        task: r.get(1)?,
        trigger: TaskTrigger::parse(&r.get::<_, String>(2)?),
        release_id: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        status: TaskRunStatus::parse(&r.get::<_, String>(6)?),
        exit_code: r.get(7)?,
        attempts: r.get::<_, i64>(8)?.max(0) as u32,
        duration_ms: r.get::<_, Option<i64>>(9)?.map(|d| d.max(0) as u64),
        message: r.get(10)?,
    })
}

impl Store {
    /// Records a run as started (or, with `Skipped`, as skipped and finished at once).
    pub fn begin_task_run(
        &self,
        task: &str,
        trigger: TaskTrigger,
        release: Option<i64>,
        status: TaskRunStatus,
        message: &str,
    ) -> Result<i64> {
        self.with(|c| {
            let ts = now();
            let finished = (status != TaskRunStatus::Running).then(|| ts.clone());
            c.execute(
                "INSERT INTO task_runs (task, trigger, release_id, started_at, finished_at, status, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![task, trigger.as_str(), release, ts, finished, status.as_str(), message],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records how a run ended; a succeeded once run is recorded as done in the same
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_task_run(
        &self,
        id: i64,
        status: TaskRunStatus,
        exit_code: Option<i32>,
        attempts: u32,
        duration_ms: u64,
        message: &str,
    ) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE task_runs SET finished_at = ?2, status = ?3, exit_code = ?4, attempts = ?5, duration_ms = ?6, message = ?7 WHERE id = ?1",
                params![id, now(), status.as_str(), exit_code, attempts, duration_ms as i64, message],
            )?;
            if status == TaskRunStatus::Succeeded {
                tx.execute(
                    "INSERT OR REPLACE INTO tasks_once (task, run_id, release_id, ran_at)
                     SELECT task, id, release_id, started_at FROM task_runs WHERE id = ?1 AND trigger = 'once'",
                    params![id],
                )?;
            }
            Ok(())
        })
    }

    /// Marks the runs a previous agent left `running` as interrupted; returns them.
    pub fn interrupt_task_runs(&self) -> Result<Vec<TaskRunRecord>> {
        self.tx(|tx| {
            let mut stmt = tx.prepare(&format!("{SELECT} WHERE status = 'running'"))?;
            let rows = stmt
                .query_map([], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            tx.execute(
                "UPDATE task_runs SET status = 'interrupted', finished_at = ?1, message = 'the agent stopped while it ran' WHERE status = 'running'",
                params![now()],
            )?;
            Ok(rows)
        })
    }

    /// When the once task `task` succeeded, if it did.
    pub fn task_once(&self, task: &str) -> Result<Option<OnceRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT task, run_id, release_id, ran_at FROM tasks_once WHERE task = ?1",
                params![task],
                |r| {
                    Ok(OnceRecord {
                        task: r.get(0)?,
                        run_id: r.get(1)?,
                        release_id: r.get(2)?,
                        ran_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// Records a once task as done without a run of the `once` trigger (a forced re-run that
    /// succeeded is also a run of it).
    pub fn mark_task_once(&self, run_id: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO tasks_once (task, run_id, release_id, ran_at)
                 SELECT task, id, release_id, started_at FROM task_runs WHERE id = ?1",
                params![run_id],
            )?;
            Ok(())
        })
    }

    /// The runs of `task` (every task: `None`), newest first.
    pub fn task_runs(&self, task: Option<&str>, limit: usize) -> Result<Vec<TaskRunRecord>> {
        self.with(|c| {
            let rows = match task {
                Some(t) => {
                    let mut stmt = c.prepare(&format!(
                        "{SELECT} WHERE task = ?1 ORDER BY id DESC LIMIT ?2"
                    ))?;
                    let rows = stmt
                        .query_map(params![t, limit as i64], from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    rows
                }
                None => {
                    let mut stmt = c.prepare(&format!("{SELECT} ORDER BY id DESC LIMIT ?1"))?;
                    let rows = stmt
                        .query_map(params![limit as i64], from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    rows
                }
            };
            Ok(rows)
        })
    }

    /// Keeps the newest `keep` runs of each task; returns how many were removed.
    pub fn prune_task_runs(&self, keep: usize) -> Result<usize> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM task_runs WHERE status != 'running' AND id NOT IN (
                    SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY task ORDER BY id DESC) AS n FROM task_runs) WHERE n <= ?1)",
                params![keep as i64],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_succeeded_once_run_is_recorded_and_survives_pruning() {
        let s = Store::open_in_memory().unwrap();
        let failed = s
            .begin_task_run(
                "seed",
                TaskTrigger::Once,
                Some(1),
                TaskRunStatus::Running,
                "",
            )
            .unwrap();
        s.finish_task_run(failed, TaskRunStatus::Failed, Some(1), 1, 10, "exit code 1")
            .unwrap();
        assert_eq!(s.task_once("seed").unwrap(), None);
        let ok = s
            .begin_task_run(
                "seed",
                TaskTrigger::Once,
                Some(2),
                TaskRunStatus::Running,
                "",
            )
            .unwrap();
        s.finish_task_run(ok, TaskRunStatus::Succeeded, Some(0), 1, 10, "")
            .unwrap();
        let once = s.task_once("seed").unwrap().unwrap();
        assert_eq!((once.run_id, once.release_id), (ok, Some(2)));
        // A manual run that succeeds is not a once record by itself.
        let manual = s
            .begin_task_run(
                "report",
                TaskTrigger::Manual,
                Some(2),
                TaskRunStatus::Running,
                "",
            )
            .unwrap();
        s.finish_task_run(manual, TaskRunStatus::Succeeded, Some(0), 1, 5, "")
            .unwrap();
        assert_eq!(s.task_once("report").unwrap(), None);
        assert_eq!(s.prune_task_runs(0).unwrap(), 3);
        assert!(s.task_runs(None, 10).unwrap().is_empty());
        assert!(s.task_once("seed").unwrap().is_some());
    }

    #[test]
    fn runs_left_running_are_interrupted_and_listed_newest_first() {
        let s = Store::open_in_memory().unwrap();
        let a = s
            .begin_task_run(
                "tick",
                TaskTrigger::Schedule,
                None,
                TaskRunStatus::Running,
                "",
            )
            .unwrap();
        let b = s
            .begin_task_run(
                "tick",
                TaskTrigger::Schedule,
                None,
                TaskRunStatus::Skipped,
                "busy",
            )
            .unwrap();
        let left = s.interrupt_task_runs().unwrap();
        assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a]);
        let runs = s.task_runs(Some("tick"), 10).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(runs[0].status, TaskRunStatus::Skipped);
        assert!(runs[0].finished_at.is_some());
        assert_eq!(runs[1].status, TaskRunStatus::Interrupted);
    }
}
