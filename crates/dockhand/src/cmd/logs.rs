//! `dockhand logs`: the last lines of a service's (or every service's) instances, merged by
//! time, optionally filtered by time and level, and followed.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use console::style;
use dockhand_api::{Frame, LogEntry, LogLevel, LogStream, LogsRequest, Request};

use super::client::client;
use crate::output;
use crate::Global;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this service (default: all).
    pub service: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// How many lines to show first.
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    pub lines: usize,
    /// Only lines since this time: a duration ago (`10m`, `2h`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines of this level or more severe (detected in common log formats).
    #[arg(long, value_enum)]
    pub level: Option<MinLevel>,
    /// The proxy's access log (`[proxy] access_log`) instead: SERVICE, --since and --level
    /// (error: 5xx, warn: 4xx and 5xx) filter its JSON lines.
    #[arg(long)]
    pub access: bool,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

/// The levels `--level` accepts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinLevel {
    Error,
    Warn,
    Info,
}

pub fn run(g: &Global, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut client = client(g)?;
    if args.follow {
        client.read_timeout = None;
    }
    let req = Request::Logs(LogsRequest {
        service: args.service,
        tail: Some(args.lines),
        since,
        level: args.level.map(|l| match l {
            MinLevel::Error => LogLevel::Error,
            MinLevel::Warn => LogLevel::Warn,
            MinLevel::Info => LogLevel::Info,
        }),
        follow: args.follow,
        access: args.access,
    });
    let stdout = std::io::stdout();
    let result = client.call(&req, |f| {
        if let Frame::Log(entry) = f {
            let mut out = stdout.lock();
            let _ = if g.json {
                writeln!(out, "{}", serde_json::to_string(entry).unwrap_or_default())
            } else {
                writeln!(out, "{}", format_log(entry))
            };
            // Each line as it comes, also into a pipe (`logs -f | grep …`).
            let _ = out.flush();
        }
    });
    result.map_err(|e| output::from_client(e, g.json))?;
    Ok(ExitCode::SUCCESS)
}

fn format_log(e: &LogEntry) -> String {
    let text = match (e.level, e.stream) {
        (Some(LogLevel::Error), _) => style(&e.text).red().to_string(),
        (Some(LogLevel::Warn), _) => style(&e.text).yellow().to_string(),
        (Some(LogLevel::Debug), _) => style(&e.text).dim().to_string(),
        (_, LogStream::Sys) => style(&e.text).cyan().to_string(),
        (Some(LogLevel::Info) | None, LogStream::Out | LogStream::Err) => e.text.clone(),
    };
    let ts = e.ts.get(..19).unwrap_or(&e.ts).replace('T', " ");
    format!(
        "{} {} {}",
        style(ts).dim(),
        style(format!("{}|", e.instance)).blue(),
        text
    )
}

/// `10m` → RFC 3339 of ten minutes ago; an RFC 3339 time passes through.
fn parse_since(s: &str) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(s, &Rfc3339).is_ok() {
        return Ok(s.to_string());
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        anyhow::Error::new(output::Exit {
            code: output::USAGE,
            message: format!(
                "--since {s:?} is neither a duration (`10m`, `2h`) nor an RFC 3339 time (`2026-01-31T12:00:00Z`)"
            ),
            json: None,
        })
    })?;
    let at = time::OffsetDateTime::from(SystemTime::now() - ago);
    Ok(at.format(&Rfc3339)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_accepts_durations_and_times() {
        assert!(super::parse_since("10m").is_ok());
        assert_eq!(
            super::parse_since("2026-01-31T12:00:00Z").unwrap(),
            "2026-01-31T12:00:00Z"
        );
        assert!(super::parse_since("yesterday-ish").is_err());
    }
}
