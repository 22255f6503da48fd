//! `logs`: reading and following instance log files of a service (or all services).
//!
//! Each instance writes its own file under `logs/<service>/<instance>.log` (rotated by the
//! runtime). Reading merges the files of a service by timestamp, so the lines of the old and
//! new release of a deploy interleave as they happened. Following polls the directories,
//! picking up the files of instances started later (a deploy while following).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dockhand_api::{Frame, LogEntry, LogsRequest};
use dockhand_config::AppConfig;
use dockhand_runtime::{Level, LogLine, LogQuery};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::layout::StateLayout;
use crate::secrets::Redactor;
use crate::wire;

const DEFAULT_TAIL: usize = 100;
/// Log files of finished instances kept per service (with their rotations).
const KEEP_FINISHED_LOGS: usize = 20;
const RESCAN: Duration = Duration::from_millis(500);

/// Parsed filters of a logs request.
pub struct Filter {
    services: Vec<String>,
    since: Option<SystemTime>,
    level: Option<Level>,
    tail: usize,
}

/// The filter of `req`; `serving`: the serving release's configuration, whose services and
/// databases are the ones known (else every directory with logs).
pub fn filter(
    layout: &StateLayout,
    serving: Option<&AppConfig>,
    req: &LogsRequest,
) -> Result<Filter> {
    let root = layout.logs();
    let known: Vec<String> = match serving {
        Some(c) => c
            .services
            .keys()
            .chain(c.databases.keys())
            .cloned()
            .collect(),
        None => list_dirs(&root),
    };
    let services = match &req.service {
        Some(s) if known.contains(s) || layout.service_logs(s).is_dir() => vec![s.clone()],
        Some(s) => {
            return Err(AgentError::not_found(format!(
                "no service `{s}`; services: {}",
                if known.is_empty() {
                    "(none deployed)".into()
                } else {
                    known.join(", ")
                }
            )))
        }
        None => known,
    };
    let since = match &req.since {
        None => None,
        Some(s) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| {
                    AgentError::usage(format!("`since` must be an RFC 3339 time, got {s:?}"))
                })?,
        ),
    };
    Ok(Filter {
        services,
        since,
        level: req.level.map(wire::runtime_level),
        tail: req.tail.unwrap_or(DEFAULT_TAIL),
    })
}

/// The last lines matching the filter, oldest first.
pub fn read(layout: &StateLayout, redactor: &Redactor, f: &Filter) -> Vec<LogEntry> {
    let query = LogQuery {
        tail: Some(f.tail),
        since: f.since,
        level: f.level,
    };
    let mut all = Vec::new();
    for svc in &f.services {
        for file in log_files(&layout.service_logs(svc)) {
            let instance = instance_name(&file);
            for line in dockhand_runtime::read_log(&file, &query).unwrap_or_default() {
                all.push(entry(redactor, svc, &instance, line));
            }
        }
    }
    all.sort_by(|a, b| a.ts.cmp(&b.ts));
    let skip = all.len().saturating_sub(f.tail);
    all.split_off(skip)
}

/// Streams lines appended after now until the client goes away: one runtime follower per
/// instance log file (each handles its file's rotations), and a rescan of the service
/// directories that picks up instances started later (a deploy while following).
pub async fn follow(
    layout: &StateLayout,
    redactor: &Redactor,
    f: &Filter,
    tx: &mpsc::UnboundedSender<Frame>,
    mut hangup: watch::Receiver<bool>,
) {
    let (line_tx, mut line_rx) = mpsc::channel::<(String, String, LogLine)>(1024);
    let mut followers = tokio::task::JoinSet::new();
    let mut followed: HashSet<PathBuf> = HashSet::new();
    let mut first_scan = true;
    let mut rescan = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = rescan.tick() => {
                for svc in &f.services {
                    for file in log_files(&layout.service_logs(svc)) {
                        if !followed.insert(file.clone()) {
                            continue;
                        }
                        // Files that exist now are followed from their end, later ones whole.
                        spawn_follower(&mut followers, file, svc.clone(), first_scan, line_tx.clone());
                    }
                }
                first_scan = false;
            }
            Some((service, instance, line)) = line_rx.recv() => {
                if let Some(min) = f.level {
                    if line.level().is_none_or(|l| l > min) {
                        continue;
                    }
                }
                if tx.send(Frame::Log(entry(redactor, &service, &instance, line))).is_err() {
                    return;
                }
            }
            _ = hangup.changed() => return,
        }
    }
}

fn spawn_follower(
    set: &mut tokio::task::JoinSet<()>,
    file: PathBuf,
    service: String,
    from_end: bool,
    out: mpsc::Sender<(String, String, LogLine)>,
) {
    set.spawn(async move {
        let instance = instance_name(&file);
        let (tx, mut rx) = mpsc::channel(256);
        let reader = tokio::spawn(async move {
            let _ = dockhand_runtime::follow_log(&file, from_end, tx).await;
        });
        while let Some(line) = rx.recv().await {
            if out
                .send((service.clone(), instance.clone(), line))
                .await
                .is_err()
            {
                break;
            }
        }
        reader.abort();
    });
}

/// Deletes the log files of all but the newest finished instances of each service of
/// `config` (`live`: the instances running), so a server that deploys often does not fill
/// its disk with logs. Returns how many instances' files were deleted.
pub fn prune(layout: &StateLayout, live: &HashSet<String>, config: &AppConfig) -> usize {
    let mut removed = 0;
    for svc in config.services.keys() {
        let mut finished: Vec<(SystemTime, PathBuf)> = log_files(&layout.service_logs(svc))
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
            if std::fs::remove_file(&file).is_ok() {
                removed += 1;
            }
            for n in 1..10 {
                let mut rotated = file.clone().into_os_string();
                rotated.push(format!(".{n}"));
                if std::fs::remove_file(&rotated).is_err() {
                    break;
                }
            }
        }
    }
    removed
}

fn entry(redactor: &Redactor, service: &str, instance: &str, line: LogLine) -> LogEntry {
    LogEntry {
        level: line.level().map(wire::log_level),
        ts: line.ts,
        service: service.to_string(),
        instance: instance.to_string(),
        stream: wire::log_stream(line.stream),
        text: redactor.redact(&line.text),
    }
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
