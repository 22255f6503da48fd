//! The wire types of `dockhand tasks` and `dockhand run`.

use serde::{Deserialize, Serialize};

/// What `dockhand tasks` and `dockhand run` ask the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TaskRequest {
    /// Every task of the serving release with its last run.
    List,
    /// One task's runs, newest first.
    History { task: String, limit: usize },
    /// Run a task now, its output streamed; `force` runs a once task that already ran.
    Run {
        task: String,
        #[serde(default)]
        force: bool,
        requested_by: String,
    },
    /// A one-off command in a service's environment (a new process, or a new container of
    /// the release's image), its output streamed.
    Command {
        service: String,
        argv: Vec<String>,
        requested_by: String,
    },
}

/// When a task runs by itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TaskWhen {
    #[serde(rename = "once")]
    Once,
    #[serde(rename = "schedule")]
    Schedule,
    #[serde(rename = "manual")]
    Manual,
}

impl TaskWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskWhen::Once => "once",
            TaskWhen::Schedule => "schedule",
            TaskWhen::Manual => "manual",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TaskTrigger {
    #[serde(rename = "once")]
    Once,
    #[serde(rename = "schedule")]
    Schedule,
    #[serde(rename = "manual")]
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
}

/// How a run ended, or that it runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TaskRunState {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "timed_out")]
    TimedOut,
    #[serde(rename = "skipped")]
    Skipped,
    #[serde(rename = "interrupted")]
    Interrupted,
}

impl TaskRunState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunState::Running => "running",
            TaskRunState::Succeeded => "succeeded",
            TaskRunState::Failed => "failed",
            TaskRunState::TimedOut => "timed_out",
            TaskRunState::Skipped => "skipped",
            TaskRunState::Interrupted => "interrupted",
        }
    }

    /// Whether the run ended badly (what a user should look at).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            TaskRunState::Failed | TaskRunState::TimedOut | TaskRunState::Interrupted
        )
    }
}

/// One run of a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRun {
    pub id: i64,
    pub task: String,
    pub trigger: TaskTrigger,
    pub release: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub state: TaskRunState,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
    pub message: String,
    /// The run's output log on the agent's machine.
    #[serde(default)]
    pub log: Option<String>,
}

/// One task, as `dockhand tasks` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskInfo {
    pub name: String,
    pub service: String,
    pub command: String,
    pub when: TaskWhen,
    /// The cron expression of a scheduled task.
    pub schedule: Option<String>,
    /// The next time a scheduled task runs (RFC 3339, UTC).
    pub next_run: Option<String>,
    /// When a once task succeeded (it does not run again by itself).
    pub once_done_at: Option<String>,
    /// Runs in progress.
    pub running: u32,
    pub last_run: Option<TaskRun>,
}

/// The answer to `dockhand tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TasksReport {
    /// The release whose tasks these are.
    pub release: Option<i64>,
    pub tasks: Vec<TaskInfo>,
}

/// The answer to `dockhand run`: the run (a named task) and how the command ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// The recorded run, for a named task.
    pub run: Option<TaskRun>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_trigger_has_a_fixed_word() {
        for s in [
            TaskRunState::Running,
            TaskRunState::Succeeded,
            TaskRunState::Failed,
            TaskRunState::TimedOut,
            TaskRunState::Skipped,
            TaskRunState::Interrupted,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<TaskRunState>(&json).unwrap(), s);
        }
        for t in [
            TaskTrigger::Once,
            TaskTrigger::Schedule,
            TaskTrigger::Manual,
        ] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<TaskTrigger>(&json).unwrap(), t);
        }
        for w in [TaskWhen::Once, TaskWhen::Schedule, TaskWhen::Manual] {
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.as_str()));
            assert_eq!(serde_json::from_str::<TaskWhen>(&json).unwrap(), w);
        }
    }
}
