//! Rendering shared by every command: colours (off when not a terminal, `NO_COLOR`, or
//! `--color never`), JSON output, and the mapping of failures to exit codes.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 usage or configuration error; 3 the agent
//! is unreachable; 4 conflict (another deploy holds the lock); 5 not found.

use std::process::ExitCode;

use console::style;
use dockhand_api::{ClientError, ErrorCode};

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
        ClientError::NotFound { .. } | ClientError::Connect { .. } => UNREACHABLE,
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

/// Colour for a health or state word.
pub fn paint_state(word: &str) -> String {
    match word {
        "healthy" | "running" | "current" | "succeeded" => style(word).green().to_string(),
        "unhealthy" | "crash_loop" | "failed" | "exited" | "error" => style(word).red().to_string(),
        "unknown" | "backoff" | "stopping" | "pending" | "warn" => style(word).yellow().to_string(),
        _ => style(word).dim().to_string(),
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
