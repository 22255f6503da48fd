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
    /// One sample of the live figures per service (`dockhand top`).
    Top,
    /// Re-read the configuration and deploy it as a new release.
    Deploy {
        requested_by: String,
        /// Images built before the deploy (a remote deploy's local build), by service: the
        /// agent tags them as the release's builds instead of building.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        images: std::collections::BTreeMap<String, String>,
        /// Check this git revision out in the project first (`deploy --revision REF`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
        /// Deploy as a canary (`deploy --canary 10%`), whatever `[deploy]` says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary: Option<CanaryRequest>,
    },
    /// Return to a retained release (default: the one before the current).
    Rollback {
        release: Option<i64>,
        requested_by: String,
    },
    /// Re-read the configuration through the startup path; deploy it if it changed.
    Reload { requested_by: String },
    /// Releases, newest first.
    Releases,
    /// A release's configuration (the serving one's without `release`), as kept with it:
    /// secrets are `${secret.NAME}` references, never values.
    ReleaseConfig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<i64>,
    },
    /// Recent events, oldest first; with `follow`, then every new event as it is recorded
    /// (as `event` frames, until the client hangs up).
    Events {
        limit: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        follow: bool,
    },
    /// Service logs.
    Logs(LogsRequest),
    /// Run a command in a service's environment and working directory.
    Exec { service: String, argv: Vec<String> },
    /// Recreate a database container from its current table (the data volume stays).
    DbUpgrade {
        database: String,
        requested_by: String,
    },
    /// Every host's certificate (`dockhand certs`).
    Certs,
    /// Renew the certificate of `host` (every managed one without) now, and wait for it.
    CertsRenew {
        host: Option<String>,
        requested_by: String,
    },
    /// `dockhand backup …`.
    Backup(crate::BackupRequest),
    /// `dockhand tasks` and `dockhand run`.
    Tasks(crate::TaskRequest),
    /// `dockhand update …`.
    Update(crate::UpdateRequest),
    /// Turn maintenance mode on or off, for one service or all; `enable: None` only reports.
    Maintenance {
        enable: Option<bool>,
        service: Option<String>,
        requested_by: String,
    },
    /// `dockhand alerts …`.
    Alerts(crate::AlertsRequest),
    /// `dockhand dashboard`.
    Dashboard(crate::DashboardRequest),
    /// Points of the monitor's series (the dashboard's charts).
    Metrics(crate::MetricsRequest),
}

/// What is in maintenance mode (`dockhand maintenance`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceReport {
    /// Every route answers 503.
    pub all: bool,
    /// These services' routes answer 503.
    pub services: Vec<String>,
    pub retry_after_seconds: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogsRequest {
    pub service: Option<String>,
    /// Lines per instance before following (default 100).
    pub tail: Option<usize>,
    /// RFC 3339 timestamp or a duration ago (`10m`), resolved by the client to RFC 3339.
    pub since: Option<String>,
    /// Minimum level (`debug` keeps every line with a detected level).
    pub level: Option<LogLevel>,
    pub follow: bool,
    /// The proxy's access log instead of service logs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub access: bool,
}

/// One line of the agent's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Progress(Progress),
    Log(LogEntry),
    Output {
        stream: OutputStream,
        data: String,
    },
    /// An event, while following them.
    Event(Event),
    Result {
        data: serde_json::Value,
    },
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
    pub stream: LogStream,
    /// The level detected in the text, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
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
    /// The host (CPU, memory, load, disks), once the monitor sampled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostInfo>,
    /// Alerts firing now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::AlertInfo>,
    /// A canary deploy in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryProgress>,
    /// Days left of each served certificate, by host (the monitor's last sample).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_days: Vec<CertificateDays>,
    /// Per backup source: its last backup and last verified restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupSourceStatus>,
    /// `[monitor.checks]` and their state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateDays {
    pub host: String,
    pub days_left: i64,
}

/// One backup source (a database, volume, file or directory, or the app).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupSourceStatus {
    pub source: String,
    /// When the newest complete backup holding it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// When a restore drill of a backup holding it last passed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<String>,
    /// The newest drill of a backup holding it failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill_failed: bool,
}

/// A check of `[monitor.checks]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckStatus {
    pub name: String,
    /// The URL, `tcp ADDRESS` or the command.
    pub target: String,
    pub state: CheckState,
    /// What the last result saw.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Seconds since the state holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// No verdict yet (fewer results than its threshold).
    Unknown,
    Passing,
    Failing,
}

/// Where a canary deploy is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryProgress {
    /// The new release, and the serving one it is compared with.
    pub release: i64,
    pub serving: i64,
    /// Ten-thousandths of the requests it takes now.
    pub share: u32,
    /// The step it is at (from 1), of `steps`.
    pub step: usize,
    pub steps: usize,
    pub services: Vec<String>,
}

/// A database container as the Docker Engine reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseStatus {
    pub name: String,
    pub engine: String,
    pub image: String,
    pub state: DatabaseState,
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
    /// Where the agent serves `/metrics` (Prometheus' format), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The certificates the HTTPS listener serves, in order (the first is the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateInfo>,
    /// The agent's long-running parts (proxy, health prober, scheduler, socket server), in
    /// start order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsystems: Vec<SubsystemInfo>,
}

/// One of the agent's long-running parts and what it is doing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubsystemInfo {
    pub name: String,
    pub state: SubsystemState,
    /// What is wrong, when it is degraded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A certificate the proxy serves: its file, DNS names and validity (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateInfo {
    /// The file, or for an automatic certificate the set's name.
    pub cert: String,
    /// Where it comes from (older agents sent only files).
    #[serde(default = "file_source")]
    pub source: crate::CertSource,
    pub names: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
}

fn file_source() -> crate::CertSource {
    crate::CertSource::File
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
    /// The first of `routes` (`host/path`, `*` for any host), for older clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Every route of the service, as `host/path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    pub instances: Vec<InstanceStatus>,
    /// What the proxy counted over the last five minutes (absent before two samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficInfo>,
}

/// Requests through the proxy over a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrafficInfo {
    pub window_secs: u64,
    pub requests: u64,
    pub per_second: f64,
    /// 5xx responses over all responses.
    pub error_ratio: f64,
    /// The upper bound of the latency bucket holding the 99th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// `dockhand top`: the monitor's latest figures per service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopReport {
    /// RFC 3339.
    pub at: String,
    /// The window the request figures cover.
    pub window_secs: u64,
    pub services: Vec<TopService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopService {
    pub name: String,
    pub instances: usize,
    /// Instances running and not failing their health check.
    pub up: usize,
    pub requests_per_second: f64,
    /// 5xx over all responses.
    pub error_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// CPU of its instances, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Resident memory of its instances.
    pub memory_bytes: u64,
}

/// The host as the monitor last sampled it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ratio: Option<f64>,
    pub memory_used_ratio: f64,
    pub load1: f64,
    /// (mount, used ratio).
    pub disks: Vec<DiskInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskInfo {
    pub mount: String,
    pub used_ratio: f64,
    pub inodes_used_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    pub id: String,
    pub release: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub state: InstanceState,
    pub health: InstanceHealth,
    pub restarts: u32,
    pub uptime_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
}

impl InstanceStatus {
    /// Ready for traffic: healthy, or running when the service has no health check.
    pub fn is_ready(&self) -> bool {
        match self.health {
            InstanceHealth::Healthy => true,
            InstanceHealth::NoCheck => self.state == InstanceState::Running,
            InstanceHealth::Unhealthy | InstanceHealth::Unknown => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    pub id: i64,
    pub status: ReleaseStatus,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    pub note: String,
    /// Where the release's code came from: `git:<commit>[+dirty]` or `sha256:<hash>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The commit's author and subject, for a git revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_message: Option<String>,
}

/// The outcome of a deploy, rollback or reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployReport {
    pub release: i64,
    pub deployment: i64,
    pub kind: DeployKind,
    pub succeeded: bool,
    pub message: String,
    pub duration_ms: u64,
    /// Each step the deploy ran, in order, with how long it took (their sum is at most
    /// `duration_ms`).
    #[serde(default)]
    pub steps: Vec<crate::StepTiming>,
    /// Why the gate failed, per service, when it did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<GateFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the canary measured, step by step, when the deploy was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryReport>,
}

/// `deploy --canary SHARE [--canary-step DURATION]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryRequest {
    /// The first step's share of requests, in ten-thousandths (1000 = 10 %); the configured
    /// steps above it follow.
    pub share: u32,
    /// How long each step lasts (default: `[deploy.canary] step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<u64>,
}

/// A canary's verdict and figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryReport {
    /// The release it was compared with.
    pub serving: i64,
    pub promoted: bool,
    pub steps: Vec<CanaryStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryStep {
    /// Ten-thousandths of the requests sent to the canary.
    pub share: u32,
    pub duration_ms: u64,
    pub services: Vec<CanaryFigures>,
    /// Why the canary was aborted at this step; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// One service's requests on each side during a step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryFigures {
    pub service: String,
    pub canary: Option<TrafficFigures>,
    pub serving: Option<TrafficFigures>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TrafficFigures {
    pub requests: u64,
    pub error_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
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

/// One entry of the agent's event log (the answer to [`Request::Events`] is a list of them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: i64,
    /// RFC 3339, UTC.
    pub ts: String,
    pub level: EventLevel,
    /// What happened: `deploy`, `rollback`, `health`, `restart`, …
    pub kind: String,
    pub release: Option<i64>,
    pub service: Option<String>,
    pub message: String,
}

// The states and kinds on the wire. Each is a closed set with its JSON string pinned by the
// tests below; the agent converts its internal types into these in `wire.rs`.

/// What an instance's supervisor is doing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum InstanceState {
    #[serde(rename = "running")]
    Running,
    /// Waiting to restart.
    #[serde(rename = "backoff")]
    Backoff,
    /// Restarting again and again, each time soon after its start.
    #[serde(rename = "crash_loop")]
    CrashLoop,
    /// Exited, and the restart policy says no restart.
    #[serde(rename = "exited")]
    Exited,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Running => "running",
            InstanceState::Backoff => "backoff",
            InstanceState::CrashLoop => "crash_loop",
            InstanceState::Exited => "exited",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// An instance's health verdict.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum InstanceHealth {
    #[serde(rename = "healthy")]
    Healthy,
    #[serde(rename = "unhealthy")]
    Unhealthy,
    /// Not probed enough yet for a verdict.
    #[serde(rename = "unknown")]
    Unknown,
    /// The service has no health check (a worker).
    #[serde(rename = "none")]
    NoCheck,
}

impl InstanceHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceHealth::Healthy => "healthy",
            InstanceHealth::Unhealthy => "unhealthy",
            InstanceHealth::Unknown => "unknown",
            InstanceHealth::NoCheck => "none",
        }
    }
}

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReleaseStatus {
    /// Being deployed.
    #[serde(rename = "pending")]
    Pending,
    /// Serving traffic.
    #[serde(rename = "current")]
    Current,
    /// Served before; retained for rollback.
    #[serde(rename = "retired")]
    Retired,
    /// Never served: its deployment failed or was aborted.
    #[serde(rename = "failed")]
    Failed,
    /// Beyond retention: cannot be rolled back to.
    #[serde(rename = "pruned")]
    Pruned,
}

impl ReleaseStatus {
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

/// What a [`DeployReport`] reports on: a reload that deploys is a `deploy`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeployKind {
    #[serde(rename = "deploy")]
    Deploy,
    #[serde(rename = "rollback")]
    Rollback,
}

impl DeployKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Deploy => "deploy",
            DeployKind::Rollback => "rollback",
        }
    }
}

/// A database container's state: the Docker Engine's word for it, or `missing` (no
/// container) or `unknown` (the engine did not answer; [`DatabaseStatus::problem`] says why).
/// A word Docker may add later, or none (`""`), is kept as [`DatabaseState::Other`], so it
/// reaches the client unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
    Stopping,
    Missing,
    Unknown,
    Other(String),
}

impl DatabaseState {
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseState::Created => "created",
            DatabaseState::Running => "running",
            DatabaseState::Paused => "paused",
            DatabaseState::Restarting => "restarting",
            DatabaseState::Exited => "exited",
            DatabaseState::Removing => "removing",
            DatabaseState::Dead => "dead",
            DatabaseState::Stopping => "stopping",
            DatabaseState::Missing => "missing",
            DatabaseState::Unknown => "unknown",
            DatabaseState::Other(s) => s,
        }
    }

    /// The state named `word` (Docker's word, `missing` or `unknown`).
    pub fn from_word(word: &str) -> DatabaseState {
        match word {
            "created" => DatabaseState::Created,
            "running" => DatabaseState::Running,
            "paused" => DatabaseState::Paused,
            "restarting" => DatabaseState::Restarting,
            "exited" => DatabaseState::Exited,
            "removing" => DatabaseState::Removing,
            "dead" => DatabaseState::Dead,
            "stopping" => DatabaseState::Stopping,
            "missing" => DatabaseState::Missing,
            "unknown" => DatabaseState::Unknown,
            other => DatabaseState::Other(other.to_string()),
        }
    }
}

impl Serialize for DatabaseState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DatabaseState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(DatabaseState::from_word(&word))
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LogStream {
    #[serde(rename = "out")]
    Out,
    #[serde(rename = "err")]
    Err,
    /// Written by the supervisor (started, exited, restarting …).
    #[serde(rename = "sys")]
    Sys,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Out => "out",
            LogStream::Err => "err",
            LogStream::Sys => "sys",
        }
    }
}

/// A log line's severity, most severe first. `warning` is read as `warn`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LogLevel {
    #[serde(rename = "error")]
    Error,
    #[serde(rename = "warn", alias = "warning")]
    Warn,
    #[serde(rename = "info")]
    Info,
    #[serde(rename = "debug")]
    Debug,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Which output of an `exec`'d command a [`Frame::Output`] carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OutputStream {
    #[serde(rename = "out")]
    Out,
    #[serde(rename = "err")]
    Err,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Out => "out",
            OutputStream::Err => "err",
        }
    }
}

/// An event's severity.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum EventLevel {
    #[serde(rename = "info")]
    Info,
    #[serde(rename = "warn")]
    Warn,
    #[serde(rename = "error")]
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
}

/// What one of the agent's subsystems is doing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SubsystemState {
    #[serde(rename = "starting")]
    Starting,
    #[serde(rename = "ready")]
    Ready,
    /// Running, but something is wrong (the message says what).
    #[serde(rename = "degraded")]
    Degraded,
    #[serde(rename = "stopped")]
    Stopped,
    /// It failed and is started again after a back-off.
    #[serde(rename = "failed")]
    Failed,
}

impl SubsystemState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubsystemState::Starting => "starting",
            SubsystemState::Ready => "ready",
            SubsystemState::Degraded => "degraded",
            SubsystemState::Stopped => "stopped",
            SubsystemState::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsystem_states_on_the_wire() {
        use SubsystemState::*;
        pins(
            &[
                (Starting, "starting"),
                (Ready, "ready"),
                (Degraded, "degraded"),
                (Stopped, "stopped"),
                (Failed, "failed"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn an_events_request_without_follow_is_what_older_clients_send() {
        let plain = Request::Events {
            limit: 5,
            follow: false,
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"cmd":"events","limit":5}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"events","limit":5}"#).unwrap(),
            plain
        );
    }

    /// Serializes each value to its pinned JSON string, reads the string back to the same value,
    /// and checks `as_str` says the same: renaming a variant cannot change the wire silently.
    fn pins<T>(cases: &[(T, &str)], as_str: impl Fn(&T) -> String)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for (value, word) in cases {
            let json = format!("\"{word}\"");
            assert_eq!(serde_json::to_string(value).unwrap(), json, "{value:?}");
            assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value, "{json}");
            assert_eq!(as_str(value), *word, "{value:?}");
        }
    }

    #[test]
    fn instance_states_on_the_wire() {
        use InstanceState::*;
        pins(
            &[
                (Running, "running"),
                (Backoff, "backoff"),
                (CrashLoop, "crash_loop"),
                (Exited, "exited"),
                (Stopping, "stopping"),
                (Stopped, "stopped"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn instance_health_on_the_wire() {
        use InstanceHealth::*;
        pins(
            &[
                (Healthy, "healthy"),
                (Unhealthy, "unhealthy"),
                (Unknown, "unknown"),
                (NoCheck, "none"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn release_statuses_on_the_wire() {
        use ReleaseStatus::*;
        pins(
            &[
                (Pending, "pending"),
                (Current, "current"),
                (Retired, "retired"),
                (Failed, "failed"),
                (Pruned, "pruned"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn deploy_kinds_on_the_wire() {
        pins(
            &[
                (DeployKind::Deploy, "deploy"),
                (DeployKind::Rollback, "rollback"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn database_states_on_the_wire() {
        use DatabaseState::*;
        pins(
            &[
                (Created, "created"),
                (Running, "running"),
                (Paused, "paused"),
                (Restarting, "restarting"),
                (Exited, "exited"),
                (Removing, "removing"),
                (Dead, "dead"),
                (Stopping, "stopping"),
                (Missing, "missing"),
                (Unknown, "unknown"),
                // Words Docker may add, and no word at all, pass through unchanged.
                (Other("hibernating".into()), "hibernating"),
                (Other(String::new()), ""),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn log_streams_and_levels_on_the_wire() {
        pins(
            &[
                (LogStream::Out, "out"),
                (LogStream::Err, "err"),
                (LogStream::Sys, "sys"),
            ],
            |v| v.as_str().into(),
        );
        pins(
            &[
                (LogLevel::Error, "error"),
                (LogLevel::Warn, "warn"),
                (LogLevel::Info, "info"),
                (LogLevel::Debug, "debug"),
            ],
            |v| v.as_str().into(),
        );
        // The agent has always accepted `warning` in a logs request.
        assert_eq!(
            serde_json::from_str::<LogLevel>("\"warning\"").unwrap(),
            LogLevel::Warn
        );
        pins(
            &[(OutputStream::Out, "out"), (OutputStream::Err, "err")],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn event_levels_on_the_wire() {
        pins(
            &[
                (EventLevel::Info, "info"),
                (EventLevel::Warn, "warn"),
                (EventLevel::Error, "error"),
            ],
            |v| v.as_str().into(),
        );
    }

    #[test]
    fn an_event_keeps_its_fields_and_their_order() {
        let json = r#"{"id":7,"ts":"2026-01-31T12:00:00Z","level":"warn","kind":"deploy","release":3,"service":null,"message":"slow"}"#;
        let event: Event = serde_json::from_str(json).unwrap();
        assert_eq!(event.level, EventLevel::Warn);
        assert_eq!(serde_json::to_string(&event).unwrap(), json);
    }

    #[test]
    fn ready_means_healthy_or_running_without_a_health_check() {
        let instance = |state, health| InstanceStatus {
            id: "d1r1-web-0".into(),
            release: 1,
            pid: None,
            port: None,
            state,
            health,
            restarts: 0,
            uptime_secs: 0,
            last_probe: None,
        };
        use InstanceHealth::*;
        use InstanceState::*;
        assert!(instance(Running, Healthy).is_ready());
        assert!(instance(Running, NoCheck).is_ready());
        assert!(!instance(Backoff, NoCheck).is_ready());
        assert!(!instance(Running, Unknown).is_ready());
        assert!(!instance(Running, Unhealthy).is_ready());
    }

    #[test]
    fn wire_fields_carry_the_enums_as_strings() {
        let frame = Frame::Output {
            stream: OutputStream::Err,
            data: "x\n".into(),
        };
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"type":"output","stream":"err","data":"x\n"}"#
        );
        let req = Request::Logs(LogsRequest {
            level: Some(LogLevel::Warn),
            ..LogsRequest::default()
        });
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"cmd":"logs","service":null,"tail":null,"since":null,"level":"warn","follow":false}"#
        );
    }
}
