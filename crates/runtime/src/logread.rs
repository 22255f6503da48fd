//! Reading instance logs back: parsing the on-disk line format, walking rotated files oldest
//! first, filtering by time and by a log level detected from the text of common formats.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::logs::rotated;

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Out,
    Err,
    /// Written by the runtime itself (started, exited, stopping …).
    System,
}

impl Stream {
    /// The tag on disk: `out`, `err`, `sys`.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::System => "sys",
        }
    }

    fn from_tag(tag: &str) -> Option<Stream> {
        match tag {
            "out" => Some(Stream::Out),
            "err" => Some(Stream::Err),
            "sys" => Some(Stream::System),
            _ => None,
        }
    }
}

/// One captured line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// UTC RFC 3339 with microseconds; empty for a line the runtime did not write.
    pub ts: String,
    pub stream: Stream,
    pub text: String,
}

impl LogLine {
    /// Parses `<ts> <out|err|sys> <text>`; anything else becomes an `out` line without time.
    pub fn parse(line: &str) -> LogLine {
        let mut parts = line.splitn(3, ' ');
        if let (Some(ts), Some(tag)) = (parts.next(), parts.next()) {
            if let Some(stream) = Stream::from_tag(tag) {
                if OffsetDateTime::parse(ts, &Rfc3339).is_ok() {
                    return LogLine {
                        ts: ts.to_string(),
                        stream,
                        text: parts.next().unwrap_or("").to_string(),
                    };
                }
            }
        }
        LogLine {
            ts: String::new(),
            stream: Stream::Out,
            text: line.to_string(),
        }
    }

    /// The time of the line, if it has one.
    pub fn time(&self) -> Option<SystemTime> {
        OffsetDateTime::parse(&self.ts, &Rfc3339)
            .ok()
            .map(SystemTime::from)
    }

    /// The level detected from the text.
    pub fn level(&self) -> Option<Level> {
        detect_level(&self.text)
    }
}

/// Log severity, most severe first: `Error < Warn < Info < Debug`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// Which lines [`read_log`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last `n` matching lines.
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Only lines whose detected level is this one or more severe (`Warn` keeps warnings and
    /// errors); lines without a detectable level are left out.
    pub level: Option<Level>,
}

/// Reads a log and its rotated files (oldest first, then the current file) and returns the
/// lines matching `query`. A missing file is no error: it has no lines.
pub fn read_log(path: &Path, query: &LogQuery) -> io::Result<Vec<LogLine>> {
    let mut files = Vec::new();
    let mut n = 1;
    loop {
        let p = rotated(path, n);
        if !p.exists() {
            break;
        }
        files.push(p);
        n += 1;
    }
    files.reverse();
    files.push(path.to_path_buf());

    let since = query.since.map(OffsetDateTime::from);
    let mut out = VecDeque::new();
    for file in files {
        let f = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(f);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            if reader.read_until(b'\n', &mut raw)? == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&raw);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let line = LogLine::parse(text);
            if let Some(since) = since {
                match OffsetDateTime::parse(&line.ts, &Rfc3339) {
                    Ok(ts) if ts >= since => {}
                    _ => continue,
                }
            }
            if let Some(level) = query.level {
                match line.level() {
                    Some(l) if l <= level => {}
                    _ => continue,
                }
            }
            out.push_back(line);
            if let Some(tail) = query.tail {
                if out.len() > tail {
                    out.pop_front();
                }
            }
        }
    }
    Ok(out.into())
}

/// Detects the level of a log line in the formats seen in practice: `ERROR`, `[error]`,
/// `<warn>`, `level=error`, `"level":"error"`, Python's `ERROR:root:` and `WARNING`,
/// uvicorn's `INFO:`, a Python `Traceback (most recent call last)` and a Rust `panicked at`.
/// Bare lowercase words (`no error found`) are not taken as a level.
pub fn detect_level(text: &str) -> Option<Level> {
    if let Some(level) = structured_level(text) {
        return Some(level);
    }
    if text.starts_with("Traceback (most recent call last)") || text.contains("panicked at") {
        return Some(Level::Error);
    }
    for (i, token) in text.split_whitespace().take(6).enumerate() {
        let bracketed = token.starts_with(['[', '<', '(']);
        let trimmed = token.trim_matches(|c: char| "[]<>():,|".contains(c));
        // `ERROR:root:message`, `INFO:`.
        let word = trimmed.split(':').next().unwrap_or("");
        let upper = word.chars().all(|c| c.is_ascii_uppercase());
        // Node-style `Error: message` as the first word of a line.
        let first_titled = i == 0 && token.ends_with(':') && word.len() > 1;
        if upper || bracketed || first_titled {
            if let Some(level) = level_word(word) {
                return Some(level);
            }
        }
    }
    None
}

/// `level=error`, `lvl=warn`, `"level":"error"`, `"severity": "WARNING"`.
fn structured_level(text: &str) -> Option<Level> {
    let lower = text.to_ascii_lowercase();
    for key in ["level", "lvl", "severity"] {
        for (pos, _) in lower.match_indices(key) {
            let before = lower[..pos].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &lower[pos + key.len()..];
            let rest = rest.strip_prefix('"').unwrap_or(rest);
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix(['=', ':']) else {
                continue;
            };
            let rest = rest.trim_start().trim_start_matches('"');
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if let Some(level) = level_word(&word) {
                return Some(level);
            }
        }
    }
    None
}

fn level_word(word: &str) -> Option<Level> {
    match word.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "critical" | "crit" | "panic" | "emerg" | "alert" => {
            Some(Level::Error)
        }
        "warn" | "warning" => Some(Level::Warn),
        "info" | "notice" => Some(Level::Info),
        "debug" | "trace" => Some(Level::Debug),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_on_disk_format() {
        let l = LogLine::parse("2024-05-01T10:00:00.123456Z err boom: it broke");
        assert_eq!(l.stream, Stream::Err);
        assert_eq!(l.text, "boom: it broke");
        assert!(l.time().is_some());
        let l = LogLine::parse("garbage line");
        assert_eq!(l.ts, "");
        assert_eq!(l.text, "garbage line");
    }
}
