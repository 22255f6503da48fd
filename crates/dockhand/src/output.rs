//! Rendering shared by every command: colours (off when not a terminal, `NO_COLOR`, or
//! `--color never`), JSON output, and the mapping of failures to exit codes.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 usage or configuration error; 3 the agent
//! is unreachable; 4 conflict (another deploy holds the lock); 5 not found.

use std::process::ExitCode;

use console::style;
use dockhand_api::{
    ClientError, DatabaseState, ErrorCode, EventLevel, InstanceHealth, InstanceState,
    ReleaseStatus, SubsystemState,
};

use crate::ColorChoice;

pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNREACHABLE: u8 = 3;
pub const CONFLICT: u8 = 4;
pub const NOT_FOUND: u8 = 5;

pub fn init_color(choice: ColorChoice) {
    match choice {
        ColorChoice::Always => {
            console::set_colors_enabled(true);
            console::set_colors_enabled_stderr(true);
        }
        ColorChoice::Never => {
            console::set_colors_enabled(false);
            console::set_colors_enabled_stderr(false);
        }
        ColorChoice::Auto => {}
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode output as JSON: {e}"),
    }
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
    pub json: Option<serde_json::Value>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub fn exit_code_of(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Failed | ErrorCode::Internal => FAILED,
        ErrorCode::InvalidConfig | ErrorCode::BadRequest => USAGE,
        ErrorCode::Conflict => CONFLICT,
        ErrorCode::NotFound => NOT_FOUND,
    }
}

/// Turns a client error into an `Exit` with the right code.
pub fn from_client(err: ClientError, json: bool) -> anyhow::Error {
    let code = match &err {
        ClientError::NotFound { .. }
        | ClientError::Connect { .. }
        | ClientError::Transport { .. } => UNREACHABLE,
        ClientError::Io { .. } | ClientError::NoAnswer | ClientError::Protocol(_) => FAILED,
        ClientError::Api(api) => exit_code_of(api.code),
    };
    let json = json.then(|| match &err {
        ClientError::Api(api) => serde_json::json!({ "error": api }),
        other => {
            serde_json::json!({ "error": { "code": "unreachable", "message": other.to_string() } })
        }
    });
    anyhow::Error::new(Exit {
        code,
        message: err.to_string(),
        json,
    })
}

/// The exit code and the `--json` error code of a failure on the way to (or on) a server.
pub fn remote_code(class: dockhand_remote::ErrorClass) -> (u8, &'static str) {
    use dockhand_remote::ErrorClass;
    match class {
        ErrorClass::Unreachable => (UNREACHABLE, "unreachable"),
        ErrorClass::Usage => (USAGE, "usage"),
        ErrorClass::Failed => (FAILED, "failed"),
    }
}

/// Turns a failure on the way to (or on) a server into an `Exit` with the right code.
pub fn from_remote(err: dockhand_remote::RemoteError, json: bool) -> anyhow::Error {
    let (code, word) = remote_code(err.class());
    let message = err.to_string();
    anyhow::Error::new(Exit {
        code,
        json: json.then(|| serde_json::json!({ "error": { "code": word, "message": message } })),
        message,
    })
}

/// A usage error (exit 2) with `message`.
pub fn usage(message: impl Into<String>, json: bool) -> anyhow::Error {
    let message = message.into();
    anyhow::Error::new(Exit {
        code: USAGE,
        json: json.then(|| serde_json::json!({ "error": { "code": "usage", "message": message } })),
        message,
    })
}

/// Prints a failure on stderr (or its JSON on stdout) and returns its exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        if let Some(json) = &exit.json {
            print_json(json);
        } else if exit.message.starts_with("error:") || exit.message.starts_with("warning:") {
            // Already rendered diagnostics (a configuration error).
            eprintln!("{}", exit.message);
        } else if !exit.message.is_empty() {
            eprintln!("{} {}", style("error:").red().bold(), exit.message);
        }
        return ExitCode::from(exit.code);
    }
    eprintln!("{} {err:#}", style("error:").red().bold());
    ExitCode::from(FAILED)
}

/// How a state word is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Green: working as it should (`running`, `healthy`, `current`).
    Good,
    /// Red: broken (`crash_loop`, `unhealthy`, `failed`).
    Bad,
    /// Yellow: in between, or not known yet (`backoff`, `unknown`, `pending`).
    Warning,
    /// Dim: nothing to look at (`stopped`, `retired`, no health check).
    Quiet,
}

/// `word` in the colour of `tone`.
pub fn paint(word: &str, tone: Tone) -> String {
    let word = style(word);
    match tone {
        Tone::Good => word.green(),
        Tone::Bad => word.red(),
        Tone::Warning => word.yellow(),
        Tone::Quiet => word.dim(),
    }
    .to_string()
}

/// A state from the agent's answer, shown as its wire word in its colour.
pub trait StateWord {
    fn word(&self) -> &str;
    fn tone(&self) -> Tone;
}

/// The state's word, coloured by its tone.
pub fn paint_state(state: &impl StateWord) -> String {
    paint(state.word(), state.tone())
}

impl StateWord for SubsystemState {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            SubsystemState::Ready => Tone::Good,
            SubsystemState::Failed => Tone::Bad,
            SubsystemState::Degraded | SubsystemState::Starting => Tone::Warning,
            SubsystemState::Stopped => Tone::Quiet,
        }
    }
}

impl StateWord for InstanceState {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            InstanceState::Running => Tone::Good,
            InstanceState::CrashLoop | InstanceState::Exited => Tone::Bad,
            InstanceState::Backoff | InstanceState::Stopping => Tone::Warning,
            InstanceState::Stopped => Tone::Quiet,
        }
    }
}

impl StateWord for InstanceHealth {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            InstanceHealth::Healthy => Tone::Good,
            InstanceHealth::Unhealthy => Tone::Bad,
            InstanceHealth::Unknown => Tone::Warning,
            InstanceHealth::NoCheck => Tone::Quiet,
        }
    }
}

impl StateWord for ReleaseStatus {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            ReleaseStatus::Current => Tone::Good,
            ReleaseStatus::Failed => Tone::Bad,
            ReleaseStatus::Pending => Tone::Warning,
            ReleaseStatus::Retired | ReleaseStatus::Pruned => Tone::Quiet,
        }
    }
}

impl StateWord for DatabaseState {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            DatabaseState::Running => Tone::Good,
            DatabaseState::Exited => Tone::Bad,
            DatabaseState::Stopping | DatabaseState::Unknown => Tone::Warning,
            DatabaseState::Created
            | DatabaseState::Paused
            | DatabaseState::Restarting
            | DatabaseState::Removing
            | DatabaseState::Dead
            | DatabaseState::Missing
            | DatabaseState::Other(_) => Tone::Quiet,
        }
    }
}

impl StateWord for EventLevel {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            EventLevel::Error => Tone::Bad,
            EventLevel::Warn => Tone::Warning,
            EventLevel::Info => Tone::Quiet,
        }
    }
}

/// A duration in seconds as `3d4h`, `2h5m`, `4m3s` or `12s`.
pub fn short_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

impl StateWord for dockhand_api::TaskRunState {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        use dockhand_api::TaskRunState as S;
        match self {
            S::Succeeded => Tone::Good,
            S::Failed | S::TimedOut | S::Interrupted => Tone::Bad,
            S::Running | S::Skipped => Tone::Warning,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_durations() {
        assert_eq!(super::short_duration(5), "5s");
        assert_eq!(super::short_duration(65), "1m5s");
        assert_eq!(super::short_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(super::short_duration(2 * 86400 + 3600), "2d1h");
    }
}
