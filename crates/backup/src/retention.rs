//! Retention, as a pure function: which backups to keep under a `keep` policy of
//! last / hourly / daily / weekly / monthly / yearly counts (the "grandfather-father-son"
//! scheme, with restic's `forget --keep-*` rules), and which to delete.
//!
//! restic's rules: backups are taken newest first; `last = n` keeps the n newest; `hourly = n`
//! keeps the newest backup of each of the n most recent hours that have one (and likewise
//! for days, ISO weeks, months and years); a backup kept by any rule is kept. Buckets are
//! counted in the server's time zone (the caller passes local times). Two more rules of our
//! own: only *complete* backups are candidates (a failed one is deleted whatever the policy,
//! a running one is never touched), and nothing older than the newest verified backup is
//! deleted unless a newer verified backup exists — so pruning can never remove the last
//! backup known to restore.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};

/// How many backups of each period to keep. All zero keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Keep {
    /// Whether the policy keeps everything (no count set).
    pub fn keeps_all(&self) -> bool {
        *self == Keep::default()
    }
}

/// What retention knows of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// When it was taken, in the time zone buckets are counted in.
    pub time: NaiveDateTime,
    pub state: CandidateState,
    /// A restore drill of it succeeded.
    pub verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateState {
    Complete,
    Failed,
    /// Being taken: never deleted.
    Running,
}

/// One backup's fate and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: String,
    pub keep: bool,
    /// The rules that keep it (`last`, `daily`, …, `newest verified`), or why it goes.
    pub reasons: Vec<String>,
}

/// Decides every backup's fate, newest first in the answer.
pub fn apply(keep: &Keep, backups: &[Candidate]) -> Vec<Verdict> {
    let mut sorted: Vec<&Candidate> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let complete: Vec<&Candidate> = sorted
        .iter()
        .copied()
        .filter(|c| c.state == CandidateState::Complete)
        .collect();

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); complete.len()];
    if keep.keeps_all() {
        for r in &mut reasons {
            r.push("no keep policy".to_string());
        }
    }
    for (i, _) in complete.iter().enumerate().take(keep.last as usize) {
        reasons[i].push("last".to_string());
    }
    type Bucket = fn(&NaiveDateTime) -> i64;
    let rules: [(&str, u32, Bucket); 5] = [
        ("hourly", keep.hourly, |t| {
            (t.date().num_days_from_ce() as i64) * 24 + t.hour() as i64
        }),
        ("daily", keep.daily, |t| t.date().num_days_from_ce() as i64),
        ("weekly", keep.weekly, |t| {
            let w = t.date().iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        ("monthly", keep.monthly, |t| {
            t.year() as i64 * 100 + t.month() as i64
        }),
        ("yearly", keep.yearly, |t| t.year() as i64),
    ];
    for (name, count, bucket) in rules {
        let mut seen = BTreeSet::new();
        for (i, c) in complete.iter().enumerate() {
            if seen.len() >= count as usize {
                break;
            }
            // Newest first: the first backup of a bucket is the newest of it.
            if seen.insert(bucket(&c.time)) {
                reasons[i].push(name.to_string());
            }
        }
    }
    // Never delete the newest verified backup, nor anything newer than it: a backup that
    // was never restored is only deleted once a newer verified one exists.
    let newest_verified = complete.iter().position(|c| c.verified);
    match newest_verified {
        Some(v) => {
            if reasons[v].is_empty() {
                reasons[v].push("newest verified".to_string());
            }
            for r in reasons.iter_mut().take(v) {
                if r.is_empty() {
                    r.push("newer than the newest verified backup".to_string());
                }
            }
        }
        None => {
            for r in &mut reasons {
                if r.is_empty() {
                    r.push("no verified backup yet".to_string());
                }
            }
        }
    }

    let mut out = Vec::with_capacity(sorted.len());
    let mut next_complete = 0;
    for c in sorted {
        match c.state {
            CandidateState::Running => out.push(Verdict {
                id: c.id.clone(),
                keep: true,
                reasons: vec!["running".to_string()],
            }),
            CandidateState::Failed => out.push(Verdict {
                id: c.id.clone(),
                keep: false,
                reasons: vec!["failed".to_string()],
            }),
            CandidateState::Complete => {
                let r = std::mem::take(&mut reasons[next_complete]);
                next_complete += 1;
                out.push(Verdict {
                    id: c.id.clone(),
                    keep: !r.is_empty(),
                    reasons: if r.is_empty() {
                        vec!["beyond the keep policy".to_string()]
                    } else {
                        r
                    },
                });
            }
        }
    }
    out
}

/// A local time from an RFC 3339 timestamp, in the time zone `tz`.
pub fn local_time<Tz: chrono::TimeZone>(ts: &str, tz: &Tz) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(tz).naive_local())
}

#[cfg(test)]
mod tests;
