//! Request, frame and report types shared by the agent and its clients.

use serde::{Deserialize, Serialize};

/// What a client asks of the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and identity.
    Ping,
    /// Services, instances, health and the current release.
    Status,
    /// Re-read the configuration and deploy it as a new release.
    Deploy { requested_by: String },
    /// Return to a retained release (default: the one before the current).
    Rollback {
        release: Option<i64>,
        requested_by: String,
    },
    /// Re-read the configuration through the startup path; deploy it if it changed.
    Reload { requested_by: String },
    /// Releases, newest first.
    Releases,
    /// Recent events, oldest first.
    Events { limit: usize },
    /// Service logs.
    Logs(LogsRequest),
    /// Run a command in a service's environment and working directory.
    Exec { service: String, argv: Vec<String> },
    /// Recreate a database container from its current table (the data volume stays).
    DbUpgrade {
        database: String,
        requested_by: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogsRequest {
    pub service: Option<String>,
    /// Lines per instance before following (default 100).
    pub tail: Option<usize>,
    /// RFC 3339 timestamp or a duration ago (`10m`), resolved by the client to RFC 3339.
    pub since: Option<String>,
    /// Minimum level: `error`, `warn` or `info`.
    pub level: Option<String>,
    pub follow: bool,
}

/// One line of the agent's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Progress(Progress),
    Log(LogEntry),
    Output { stream: String, data: String },
    Result { data: serde_json::Value },
    Error(ApiError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// A short machine-readable step name (`start`, `health`, `swap`, `drain`, `stop`, `hook`).
    pub step: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub ts: String,
    pub service: String,
    pub instance: String,
    /// `out`, `err` or `sys` (lines written by the supervisor).
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub text: String,
}

/// A failure reported by the agent. `code` maps to the CLI's exit code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The operation ran and failed (a deploy whose gate failed).
    Failed,
    /// The configuration is invalid.
    InvalidConfig,
    /// Another operation holds the deploy lock.
    Conflict,
    /// No such release or service.
    NotFound,
    /// The request itself is malformed.
    BadRequest,
    /// A bug in the agent.
    Internal,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn with_details(mut self, details: impl Serialize) -> ApiError {
        self.details = serde_json::to_value(details).unwrap_or(serde_json::Value::Null);
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pong {
    pub app: String,
    pub version: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub app: String,
    pub agent: AgentInfo,
    pub current_release: Option<ReleaseInfo>,
    /// Who holds the deploy lock, if anyone.
    pub deploying: Option<LockInfo>,
    pub services: Vec<ServiceStatus>,
    /// Where the app is reachable.
    pub urls: Vec<String>,
    /// The long-lived database containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseStatus>,
}

/// A database container as the Docker Engine reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseStatus {
    pub name: String,
    pub engine: String,
    pub image: String,
    /// `running`, `exited`, `restarting`, … or `missing` (no container).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The address it is published on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    /// Why the state is unknown (the Docker Engine is unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The outcome of `db upgrade`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbUpgradeReport {
    pub database: String,
    pub image: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentInfo {
    /// Carried by every process the agent starts, as `DOCKHAND_INSTANCE=<id>/<instance>`.
    pub id: String,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub uptime_secs: u64,
    pub state_dir: String,
    pub config_path: String,
    pub proxy_listen: String,
    /// The proxy's HTTPS address, when it serves HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_listen: Option<String>,
    /// The certificates the HTTPS listener serves, in order (the first is the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateInfo>,
}

/// A certificate the proxy serves: its file, DNS names and validity (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateInfo {
    pub cert: String,
    pub names: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub holder: String,
    pub operation: String,
    pub since: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    pub id: String,
    pub release: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The supervisor's state: `running`, `backoff`, `crash_loop`, `exited`, `stopping`, `stopped`.
    pub state: String,
    /// `healthy`, `unhealthy` or `unknown` (no probe yet, or no health check).
    pub health: String,
    pub restarts: u32,
    pub uptime_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    pub id: i64,
    pub status: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    pub note: String,
}

/// The outcome of a deploy, rollback or reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployReport {
    pub release: i64,
    pub deployment: i64,
    pub kind: String,
    pub succeeded: bool,
    pub message: String,
    pub duration_ms: u64,
    /// Why the gate failed, per service, when it did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<GateFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateFailure {
    pub service: String,
    pub instance: String,
    pub reason: String,
    /// The last health probe results, newest last.
    pub last_probes: Vec<String>,
    /// The instance's last log lines.
    pub last_logs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
}
