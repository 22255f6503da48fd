//! `dockhand logs --access`: the proxy's access log (`logs/access.log` and its rotations) read
//! with the filters of service logs — a service, the last N lines, `--since`, a minimum
//! "level" (error: status 5xx, warn: 4xx and 5xx) — and followed as it grows. Filters other
//! than the line count need the JSON format; combined lines are passed through.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use dockhand_api::{Frame, LogEntry, LogLevel, LogStream, LogsRequest};
use tokio::sync::{mpsc, watch};

use crate::layout::StateLayout;

const POLL: Duration = Duration::from_millis(250);
/// At most this much of the files is read for the first lines.
const READ_LIMIT: u64 = 64 * 1024 * 1024;

/// The entry for one line, if it passes the filter.
pub fn entry(line: &str, req: &LogsRequest) -> Option<LogEntry> {
    let json: Option<serde_json::Value> = serde_json::from_str(line).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let status = json
        .as_ref()
        .and_then(|j| j.get("status"))
        .and_then(|v| v.as_u64());
    let service = field("service").unwrap_or_default();
    let ts = field("time").unwrap_or_default();
    if let Some(want) = &req.service {
        if json.is_some() && &service != want {
            return None;
        }
    }
    if let (Some(since), false) = (&req.since, ts.is_empty()) {
        // Both RFC 3339 in UTC with `Z`: compared as instants through `time`.
        use time::format_description::well_known::Rfc3339;
        if let (Ok(a), Ok(b)) = (
            time::OffsetDateTime::parse(&ts, &Rfc3339),
            time::OffsetDateTime::parse(since, &Rfc3339),
        ) {
            if a < b {
                return None;
            }
        }
    }
    let level = match status {
        Some(s) if s >= 500 => Some(LogLevel::Error),
        Some(s) if s >= 400 => Some(LogLevel::Warn),
        Some(_) => Some(LogLevel::Info),
        None => None,
    };
    if let Some(min) = req.level {
        let rank = |l: LogLevel| match l {
            LogLevel::Error => 3,
            LogLevel::Warn => 2,
            LogLevel::Info => 1,
            _ => 0,
        };
        if level.is_none_or(|l| rank(l) < rank(min)) {
            return None;
        }
    }
    Some(LogEntry {
        ts,
        service: if service.is_empty() {
            "proxy".into()
        } else {
            service
        },
        instance: "access".into(),
        stream: LogStream::Out,
        level,
        text: line.to_string(),
    })
}

/// The last lines that pass the filter (from the rotated file too), oldest first; and the
/// current file's length, where following starts.
pub fn read(layout: &StateLayout, req: &LogsRequest) -> (Vec<LogEntry>, u64) {
    let path = layout.access_log();
    let mut text = String::new();
    let mut rotated = path.clone().into_os_string();
    rotated.push(".1");
    for p in [std::path::PathBuf::from(rotated), path.clone()] {
        if let Ok(mut f) = std::fs::File::open(&p) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len > READ_LIMIT {
                let _ = f.seek(SeekFrom::Start(len - READ_LIMIT));
            }
            let _ = f.take(READ_LIMIT).read_to_string(&mut text);
        }
    }
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let tail = req.tail.unwrap_or(100);
    let mut out: Vec<LogEntry> = text.lines().filter_map(|l| entry(l, req)).collect();
    if out.len() > tail {
        out.drain(..out.len() - tail);
    }
    (out, len)
}

/// Sends lines appended after `offset` until the client hangs up (a rotation starts over).
pub async fn follow(
    layout: &StateLayout,
    req: &LogsRequest,
    mut offset: u64,
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) {
    let path = layout.access_log();
    let mut partial = String::new();
    loop {
        tokio::select! {
            _ = hangup.wait_for(|gone| *gone) => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // rotated
            partial.clear();
        }
        if len == offset {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut chunk = String::new();
        let Ok(n) = f.take(len - offset).read_to_string(&mut chunk) else {
            continue;
        };
        offset += n as u64;
        partial.push_str(&chunk);
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            if let Some(e) = entry(line.trim_end(), req) {
                if tx.send(Frame::Log(e)).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_filtered_like_service_logs() {
        let line = r#"{"time":"2026-12-06T08:00:00.000Z","status":503,"service":"api","path":"/"}"#;
        let all = LogsRequest::default();
        let e = entry(line, &all).unwrap();
        assert_eq!(
            (e.service.as_str(), e.level),
            ("api", Some(LogLevel::Error))
        );
        let web = LogsRequest {
            service: Some("web".into()),
            ..Default::default()
        };
        assert!(entry(line, &web).is_none());
        let later = LogsRequest {
            since: Some("2026-12-06T09:00:00Z".into()),
            ..Default::default()
        };
        assert!(entry(line, &later).is_none());
        let warn = LogsRequest {
            level: Some(LogLevel::Warn),
            ..Default::default()
        };
        assert!(entry(line, &warn).is_some());
        let ok = line.replace("503", "200");
        assert!(entry(&ok, &warn).is_none());
        // A combined line passes through (its fields are not parsed).
        assert!(entry("1.2.3.4 - - [x] \"GET / HTTP/1.1\" 200 1", &all).is_some());
    }
}
