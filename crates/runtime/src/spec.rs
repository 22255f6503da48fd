//! The vocabulary of instances: what to run ([`InstanceSpec`]), when to restart it
//! ([`RestartPolicy`]) and what it is doing now ([`InstanceStatus`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize, Serializer};

/// Everything needed to run one instance of a service.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Unique among the instances of this agent, e.g. `r12-api-0`.
    pub instance_id: String,
    pub service: String,
    /// Run as `/bin/sh -c <command>`.
    pub command: String,
    pub workdir: PathBuf,
    /// Added to the agent's own environment; the caller includes `PORT`.
    pub env: Vec<(String, String)>,
    pub log_path: PathBuf,
    pub restart: RestartPolicy,
    /// Bytes; enforced with a cgroup v2 `memory.max` when possible, else `RLIMIT_DATA`.
    pub memory_limit: Option<u64>,
    /// How long to wait after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

/// When an exited process is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// On any exit.
    Always,
    /// Only on a non-zero exit code or a signal.
    #[serde(alias = "on-failure")]
    OnFailure,
    /// Never: the instance ends in [`InstanceState::Exited`].
    Never,
}

impl RestartPolicy {
    /// The serialized name: `always`, `on_failure`, `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Never => "never",
        }
    }

    /// Whether an exit with this outcome is followed by a restart.
    pub fn restarts_after(self, exit: &ExitInfo) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !exit.success(),
            RestartPolicy::Never => false,
        }
    }
}

/// Size-based rotation of log files: `log` → `log.1` → `log.2` …
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate when the current file would grow past this many bytes.
    pub max_bytes: u64,
    /// How many rotated files to keep.
    pub keep: usize,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// What an instance is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Running,
    /// Waiting to restart.
    Backoff,
    /// At least 5 consecutive exits, each within 10s of its start: still retried, at the
    /// maximum back-off.
    CrashLoop,
    /// Exited and the policy says no restart.
    Exited,
    Stopping,
    Stopped,
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i32>,
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
}

impl ExitInfo {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exited with code 1` or `killed by signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
                Err(_) => format!("killed by signal {sig}"),
            },
            (None, None) => "exited".to_string(),
        }
    }
}

/// A snapshot of an instance, published through [`crate::Instance::watch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceStatus {
    pub state: InstanceState,
    pub pid: Option<u32>,
    /// How many times the process was started again after the first start.
    pub restarts: u32,
    #[serde(serialize_with = "ser_opt_time")]
    pub started_at: Option<SystemTime>,
    pub last_exit: Option<ExitInfo>,
}

/// Formats a time as UTC RFC 3339 with microseconds, the one timestamp format of the runtime.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_string())
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}
