//! `logs`: reading and following instance log files of a service (or all services).
//!
//! Each instance writes its own file under `logs/<service>/<instance>.log` (rotated by the
//! runtime). Reading merges the files of a service by timestamp, so the lines of the old and
//! new release of a deploy interleave as they happened. Following polls the directories,
//! picking up the files of instances started later (a deploy while following).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dockhand_api::{ApiError, ErrorCode, Frame, LogEntry, LogsRequest};
use dockhand_runtime::{Level, LogLine, LogQuery};
use tokio::sync::{mpsc, watch};

use crate::Agent;

const DEFAULT_TAIL: usize = 100;
/// Log files of finished instances kept per service (with their rotations).
const KEEP_FINISHED_LOGS: usize = 20;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Parsed filters of a logs request.
pub struct Filter {
    services: Vec<String>,
    since: Option<SystemTime>,
    level: Option<Level>,
    tail: usize,
}

pub fn filter(agent: &Agent, req: &LogsRequest) -> Result<Filter, ApiError> {
    let root = agent.opts.state_dir.join("logs");
    let known: Vec<String> = match agent.live_config() {
        Some(c) => c.services.keys().cloned().collect(),
        None => list_dirs(&root),
    };
    let services = match &req.service {
        Some(s) if known.contains(s) || root.join(s).is_dir() => vec![s.clone()],
        Some(s) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no service `{s}`; services: {}",
                    if known.is_empty() {
                        "(none deployed)".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ))
        }
        None => known,
    };
    let since = match &req.since {
        None => None,
        Some(s) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("`since` must be an RFC 3339 time, got {s:?}"),
                    )
                })?,
        ),
    };
    let level = match req.level.as_deref() {
        None => None,
        Some("error") => Some(Level::Error),
        Some("warn") | Some("warning") => Some(Level::Warn),
        Some("info") => Some(Level::Info),
        Some("debug") => Some(Level::Debug),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("unknown level {other:?}; use error, warn or info"),
            ))
        }
    };
    Ok(Filter {
        services,
        since,
        level,
        tail: req.tail.unwrap_or(DEFAULT_TAIL),
    })
}

/// The last lines matching the filter, oldest first.
pub fn read(agent: &Agent, f: &Filter) -> Vec<LogEntry> {
    let root = agent.opts.state_dir.join("logs");
    let query = LogQuery {
        tail: Some(f.tail),
        since: f.since,
        level: f.level,
    };
    let mut all = Vec::new();
    for svc in &f.services {
        for file in log_files(&root.join(svc)) {
            let instance = instance_name(&file);
            for line in dockhand_runtime::read_log(&file, &query).unwrap_or_default() {
                all.push(entry(agent, svc, &instance, line));
            }
        }
    }
    all.sort_by(|a, b| a.ts.cmp(&b.ts));
    let skip = all.len().saturating_sub(f.tail);
    all.split_off(skip)
}

/// Streams lines appended after now until the client goes away.
pub async fn follow(
    agent: &Agent,
    f: &Filter,
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) {
    let root = agent.opts.state_dir.join("logs");
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    for svc in &f.services {
        for file in log_files(&root.join(svc)) {
            let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            offsets.insert(file, len);
        }
    }
    loop {
        if tx.is_closed() || *hangup.borrow() {
            return;
        }
        let mut batch = Vec::new();
        for svc in &f.services {
            for file in log_files(&root.join(svc)) {
                let offset = offsets.entry(file.clone()).or_insert(0);
                let instance = instance_name(&file);
                for line in read_from(&file, offset) {
                    let line = LogLine::parse(&line);
                    if let Some(min) = f.level {
                        if line.level().is_none_or(|l| l > min) {
                            continue;
                        }
                    }
                    batch.push(entry(agent, svc, &instance, line));
                }
            }
        }
        batch.sort_by(|a, b| a.ts.cmp(&b.ts));
        for e in batch {
            if tx.send(Frame::Log(e)).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = hangup.changed() => return,
        }
    }
}

/// Deletes the log files of all but the newest finished instances of each service, so a
/// server that deploys often does not fill its disk with logs.
pub fn prune(agent: &Agent, config: &dockhand_config::AppConfig) {
    let live: Vec<String> = agent.registry_lock().keys().cloned().collect();
    let root = agent.opts.state_dir.join("logs");
    for svc in config.services.keys() {
        let mut finished: Vec<(SystemTime, PathBuf)> = log_files(&root.join(svc))
            .into_iter()
            .filter(|f| !live.contains(&instance_name(f)))
            .map(|f| {
                let t = std::fs::metadata(&f)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (t, f)
            })
            .collect();
        finished.sort();
        let excess = finished.len().saturating_sub(KEEP_FINISHED_LOGS);
        for (_, file) in finished.into_iter().take(excess) {
            let _ = std::fs::remove_file(&file);
            for n in 1..10 {
                let mut rotated = file.clone().into_os_string();
                rotated.push(format!(".{n}"));
                if std::fs::remove_file(&rotated).is_err() {
                    break;
                }
            }
        }
    }
}

fn entry(agent: &Agent, service: &str, instance: &str, line: LogLine) -> LogEntry {
    LogEntry {
        level: line.level().map(|l| {
            serde_json::to_value(l)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }),
        ts: line.ts,
        service: service.to_string(),
        instance: instance.to_string(),
        stream: line.stream.tag().to_string(),
        text: agent.redact(&line.text),
    }
}

/// Complete lines appended to `file` since `offset`; a file shorter than the offset was
/// rotated and is read from its start.
fn read_from(file: &Path, offset: &mut u64) -> Vec<String> {
    let Ok(mut fh) = std::fs::File::open(file) else {
        return Vec::new();
    };
    let len = fh.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    if len == *offset || fh.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if fh.take(len - *offset).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    String::from_utf8_lossy(&buf[..end])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The current (not rotated) log files in a service directory.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn list_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn instance_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
