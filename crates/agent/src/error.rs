//! The agent's own error type: what went wrong, classified by what the person reading it can
//! do about it, with the message that says so.
//!
//! Everything inside the agent returns [`AgentError`]; it becomes the wire's `ApiError` only
//! at the socket server ([`AgentError::into_api`]), so no internal code deals in wire codes.

use std::fmt;

use dockhand_api::{ApiError, ErrorCode};

/// What kind of failure an [`AgentError`] is, by who can fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration file is invalid (the details hold its diagnostics).
    Config,
    /// The request cannot be done as asked (rolling back to the current release, say).
    Usage,
    /// Another operation holds the deploy lock.
    Conflict,
    /// No such release, service or database.
    NotFound,
    /// The operation ran and failed: a process or container would not start, a build or a
    /// hook failed, a release did not pass its health gate.
    Runtime,
    /// The machine stopped it: the disk is full, a permission is missing, the Docker Engine
    /// does not answer. The message says what to fix on the machine.
    Environment,
    /// A bug in dockhand.
    Internal,
}

/// A failure inside the agent: its kind, a message for a person (lowercase, no trailing
/// period, saying what to do next), optional structured details for `--json`, and the
/// underlying error when there is one.
#[derive(Debug)]
pub struct AgentError {
    kind: ErrorKind,
    message: String,
    details: Option<serde_json::Value>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> AgentError {
        AgentError {
            kind,
            message: message.into(),
            details: None,
            source: None,
        }
    }

    pub fn config(message: impl Into<String>) -> AgentError {
        AgentError::new(ErrorKind::Config, message)
    }

    pub fn usage(message: impl Into<String>) -> AgentError {
        AgentError::new(ErrorKind::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> AgentError {
        AgentError::new(ErrorKind::NotFound, message)
    }

    pub fn runtime(message: impl Into<String>) -> AgentError {
        AgentError::new(ErrorKind::Runtime, message)
    }

    pub fn environment(message: impl Into<String>) -> AgentError {
        AgentError::new(ErrorKind::Environment, message)
    }

    /// A bug: the message says so and how to report it.
    pub fn internal(what: impl fmt::Display) -> AgentError {
        AgentError::new(
            ErrorKind::Internal,
            format!("internal error: {what} (this is a bug in dockhand; please report it)"),
        )
    }

    /// Structured details for `--json` (config diagnostics, the lock holder).
    pub fn with_details(mut self, details: impl serde::Serialize) -> AgentError {
        self.details = serde_json::to_value(details).ok();
        self
    }

    /// Keeps the underlying error (for logs and `source()` chains).
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> AgentError {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> AgentError {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Replaces the message (redaction of secret values, say), keeping kind and details.
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> AgentError {
        self.message = f(&self.message);
        self
    }

    /// The wire form, for the socket server only.
    pub fn into_api(self) -> ApiError {
        let code = match self.kind {
            ErrorKind::Config => ErrorCode::InvalidConfig,
            ErrorKind::Usage => ErrorCode::BadRequest,
            ErrorKind::Conflict => ErrorCode::Conflict,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Runtime | ErrorKind::Environment => ErrorCode::Failed,
            ErrorKind::Internal => ErrorCode::Internal,
        };
        let mut api = ApiError::new(code, self.message);
        if let Some(details) = self.details {
            api.details = details;
        }
        api
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A state database failure: the machine's fault (disk full…) is said as such, anything else
/// is a bug.
impl From<dockhand_state::StateError> for AgentError {
    fn from(e: dockhand_state::StateError) -> AgentError {
        if e.is_environmental() {
            AgentError::environment(format!(
                "{e}; free space on the disk holding the state directory (or fix its permissions) and try again"
            ))
            .with_source(e)
        } else {
            AgentError::internal(&e).with_source(e)
        }
    }
}

/// A runtime failure: the machine's (Docker down, disk full) or the operation's.
impl From<dockhand_runtime::RuntimeError> for AgentError {
    fn from(e: dockhand_runtime::RuntimeError) -> AgentError {
        let kind = if e.is_environmental() {
            ErrorKind::Environment
        } else {
            ErrorKind::Runtime
        };
        AgentError::new(kind, e.to_string()).with_source(e)
    }
}

/// An invalid configuration file: the rendered diagnostics, and the diagnostics as details.
impl From<dockhand_config::ConfigError> for AgentError {
    fn from(e: dockhand_config::ConfigError) -> AgentError {
        AgentError::config(e.to_string()).with_details(&e.diagnostics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_wire_codes_at_the_boundary_only() {
        let cases = [
            (ErrorKind::Config, ErrorCode::InvalidConfig),
            (ErrorKind::Usage, ErrorCode::BadRequest),
            (ErrorKind::Conflict, ErrorCode::Conflict),
            (ErrorKind::NotFound, ErrorCode::NotFound),
            (ErrorKind::Runtime, ErrorCode::Failed),
            (ErrorKind::Environment, ErrorCode::Failed),
            (ErrorKind::Internal, ErrorCode::Internal),
        ];
        for (kind, code) in cases {
            let api = AgentError::new(kind, "m").with_details(3).into_api();
            assert_eq!(api.code, code, "{kind:?}");
            assert_eq!(api.message, "m");
            assert_eq!(api.details, serde_json::json!(3));
        }
    }

    #[test]
    fn context_prefixes_and_keeps_the_kind() {
        let e = AgentError::runtime("exit code 3").context("pre_deploy hook of api");
        assert_eq!(e.to_string(), "pre_deploy hook of api: exit code 3");
        assert_eq!(e.kind(), ErrorKind::Runtime);
    }

    #[test]
    fn a_docker_outage_is_the_environments_fault() {
        let e: AgentError = dockhand_runtime::RuntimeError::DockerUnreachable {
            host: "unix:///var/run/docker.sock".into(),
            reason: "connection refused".into(),
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::Environment);
        assert!(e.message().contains("is dockerd running"), "{e}");
        let e: AgentError = dockhand_runtime::RuntimeError::InvalidSpec("bad".into()).into();
        assert_eq!(e.kind(), ErrorKind::Runtime);
    }
}
