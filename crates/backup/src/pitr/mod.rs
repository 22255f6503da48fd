//! Point-in-time recovery for PostgreSQL: continuous WAL archiving, base backups and replay
//! to a moment.
//!
//! The database's `archive_command` copies each finished WAL segment into a spool directory
//! inside its own data directory (`dockhand_wal_spool`, beside the files it archives: no mount,
//! no binary and no socket is added to the container — only its configuration changes, through
//! `ALTER SYSTEM`); the agent lists the spool, streams each file out through the same pipeline
//! as a backup (zstd, age, SHA-256, every target) to `<app>/wal/<db>/<name>.zst.age`, writes
//! its record beside it (`<name>.json`: checksum, sizes, when it was archived) and only then
//! removes it from the spool. Base backups (`pg_basebackup`, tar format, the WAL it needs
//! fetched into it) are items of the scheduled backups, so retention and drills treat them like
//! every other item.
//!
//! This module is the pure part: WAL file names, the records, which base backup and which WAL
//! files a restore to a time needs ([`plan`]), which WAL retention may delete ([`prunable`]),
//! and the recovery settings. [`live`] does it against the containers.

pub mod live;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The directory of a database's WAL on a target, under the app's.
pub fn wal_dir(app: &str, db: &str) -> String {
    format!("{app}/wal/{db}")
}

/// The stored object of a WAL file.
pub fn wal_object(app: &str, db: &str, name: &str) -> String {
    format!("{}/{name}.zst.age", wal_dir(app, db))
}

/// The record stored beside a WAL file's object.
pub fn wal_record_object(app: &str, db: &str, name: &str) -> String {
    format!("{}/{name}.json", wal_dir(app, db))
}

/// What a WAL file name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFile {
    /// A segment: timeline, and its number (16 MiB segments: 256 per log id).
    Segment { timeline: u32, segno: u64 },
    /// A timeline's history file (`00000002.history`), written when a recovery promotes.
    History { timeline: u32 },
    /// A backup history file (`….backup`) or a timeline's last, partial segment
    /// (`….partial`): shipped, never needed by a restore; the segment number they follow.
    Other { segno: u64 },
}

/// Segments per log id with PostgreSQL's default 16 MiB segments.
const SEGMENTS_PER_LOG: u64 = 0x100;

/// Reads a WAL file name; `None` for anything else.
pub fn parse_wal_name(name: &str) -> Option<WalFile> {
    let hex = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    if let Some(tl) = name.strip_suffix(".history") {
        if tl.len() == 8 {
            return Some(WalFile::History {
                timeline: hex(tl)? as u32,
            });
        }
        return None;
    }
    let head = name.get(..24)?;
    let timeline = hex(&head[..8])? as u32;
    let log = hex(&head[8..16])?;
    let seg = hex(&head[16..24])?;
    let segno = log * SEGMENTS_PER_LOG + seg;
    if name.len() == 24 {
        return Some(WalFile::Segment { timeline, segno });
    }
    (name.ends_with(".backup") || name.ends_with(".partial")).then_some(WalFile::Other { segno })
}

/// One archived WAL file, as recorded beside its object (`<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    pub name: String,
    /// SHA-256 of the stored object.
    pub sha256: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// When the agent shipped it (RFC 3339 UTC): everything in it was written before.
    pub archived_at: String,
}

impl WalRecord {
    fn time(&self) -> Option<DateTime<Utc>> {
        parse_time(&self.archived_at)
    }
}

/// A base backup a restore can start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRef {
    pub backup_id: String,
    /// When `pg_basebackup` finished: the earliest moment it can be restored to.
    pub finished_at: DateTime<Utc>,
    /// The WAL segment current when it started (replay needs it and every later one).
    pub wal_start: String,
}

/// What a restore to a moment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The base backup to start from (its backup id).
    pub base: String,
    /// The timeline to follow (`recovery_target_timeline`).
    pub timeline: u32,
    /// The WAL files to hand to the recovery, in order: every history file, then the
    /// segments from the base backup's on.
    pub files: Vec<String>,
    /// When the newest WAL file of the plan was archived.
    pub reaches: Option<DateTime<Utc>>,
}

/// Chooses the base backup and the WAL files for a restore to `at` (`None`: as far as the
/// archive reaches, which is what a drill replays). Refuses when no base backup finished
/// before `at`, when the archive does not reach `at`, or when a segment is missing.
pub fn plan(
    bases: &[BaseRef],
    wal: &[WalRecord],
    at: Option<DateTime<Utc>>,
) -> Result<Plan, String> {
    let usable = bases
        .iter()
        .filter(|b| at.is_none_or(|t| b.finished_at <= t));
    let Some(base) = usable.max_by_key(|b| b.finished_at) else {
        return Err(match (bases.iter().map(|b| b.finished_at).min(), at) {
            (None, _) => "there is no base backup yet: run `dockhand backup run` (base backups are taken with every backup)".to_string(),
            (Some(first), Some(t)) => format!(
                "no base backup had finished by {}; the oldest finished at {}",
                show_time(t),
                show_time(first)
            ),
            (Some(_), None) => unreachable!("without a time every base backup is usable"),
        });
    };
    let Some(WalFile::Segment {
        timeline: base_tl,
        segno: start,
    }) = parse_wal_name(&base.wal_start)
    else {
        return Err(format!(
            "base backup {} records no valid WAL start ({:?})",
            base.backup_id, base.wal_start
        ));
    };
    // The timeline that was live at `at`: the newest one whose history (written when a
    // recovery promoted) was archived by then.
    let mut timeline = base_tl;
    for r in wal {
        if let Some(WalFile::History { timeline: tl }) = parse_wal_name(&r.name) {
            let in_time = match (at, r.time()) {
                (None, _) => true,
                (Some(t), Some(when)) => when <= t,
                (Some(_), None) => false,
            };
            if in_time && tl > timeline {
                timeline = tl;
            }
        }
    }
    let mut histories = Vec::new();
    // Per segment number, the name on the highest timeline not above the target's.
    let mut segments: std::collections::BTreeMap<u64, (u32, &WalRecord)> = Default::default();
    for r in wal {
        match parse_wal_name(&r.name) {
            Some(WalFile::History { .. }) => histories.push(r.name.clone()),
            Some(WalFile::Segment {
                timeline: tl,
                segno,
            }) if tl <= timeline && segno >= start => {
                let better = segments.get(&segno).is_none_or(|(have, _)| tl > *have);
                if better {
                    segments.insert(segno, (tl, r));
                }
            }
            _ => {}
        }
    }
    histories.sort();
    for (expected, segno) in (start..).zip(segments.keys()) {
        if *segno != expected {
            return Err(format!(
                "WAL segment {} is missing from the archive: the chain from base backup {} has a gap",
                segment_name(segments.get(segno).map(|s| s.0).unwrap_or(timeline), expected),
                base.backup_id
            ));
        }
    }
    let reaches = segments.values().filter_map(|(_, r)| r.time()).max();
    if let Some(t) = at {
        match reaches {
            Some(r) if r >= t => {}
            Some(r) => {
                return Err(format!(
                    "the WAL archive reaches only to {} (its newest segment); pick an earlier time, or wait for the next segment (at most `archive_timeout`)",
                    show_time(r)
                ))
            }
            None => {
                return Err(format!(
                    "no WAL was archived after base backup {}: wait for the first segment (at most `archive_timeout`)",
                    base.backup_id
                ))
            }
        }
    }
    let mut files = histories;
    files.extend(segments.values().map(|(_, r)| r.name.clone()));
    Ok(Plan {
        base: base.backup_id.clone(),
        timeline,
        files,
        reaches,
    })
}

/// The WAL files retention may delete: those older than the oldest kept base backup's start
/// (history files are always kept: they are tiny and every later timeline needs them).
/// Without a kept base backup nothing is deleted.
pub fn prunable(wal: &[WalRecord], kept_bases: &[BaseRef]) -> Vec<String> {
    let Some(oldest) = kept_bases
        .iter()
        .filter_map(|b| match parse_wal_name(&b.wal_start) {
            Some(WalFile::Segment { segno, .. }) => Some(segno),
            _ => None,
        })
        .min()
    else {
        return Vec::new();
    };
    wal.iter()
        .filter(|r| match parse_wal_name(&r.name) {
            Some(WalFile::Segment { segno, .. }) | Some(WalFile::Other { segno }) => segno < oldest,
            _ => false,
        })
        .map(|r| r.name.clone())
        .collect()
}

/// A segment's file name.
pub fn segment_name(timeline: u32, segno: u64) -> String {
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / SEGMENTS_PER_LOG,
        segno % SEGMENTS_PER_LOG
    )
}

/// The settings appended to the restored `postgresql.auto.conf`: fetch WAL from the staged
/// directory, stop at `at` (or at the end of the WAL), on `timeline`, and promote.
pub fn recovery_settings(restore_dir: &str, at: Option<DateTime<Utc>>, timeline: u32) -> String {
    let mut s = format!(
        "\n# dockhand: point-in-time recovery (removed once it is done)\nrestore_command = 'cp {restore_dir}/%f %p'\nrecovery_target_timeline = '{timeline}'\n"
    );
    if let Some(t) = at {
        s.push_str(&format!(
            "recovery_target_time = '{}'\nrecovery_target_action = 'promote'\n",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ));
    }
    s
}

/// The settings a finished recovery resets (`ALTER SYSTEM RESET`).
pub const RECOVERY_SETTINGS: &[&str] = &[
    "restore_command",
    "recovery_target_timeline",
    "recovery_target_time",
    "recovery_target_action",
];

/// Reads an RFC 3339 time (`2026-12-06T10:15:00Z`, with an offset or fractions).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.to_utc())
}

fn show_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests;
