//! The agent's wall clock: [`dockhand_state::clock`] (one clock for the records and the
//! decisions), in the forms the agent's subsystems use. **Every wall-clock read of the agent
//! goes through here** — schedules, update windows, certificate renewal and expiry, alert
//! timers, metric timestamps, retention; durations and timeouts stay on the monotonic
//! `std::time::Instant` / `tokio::time`, which a stepped wall clock does not move. In a debug
//! build a test can step it (`DOCKHAND_CLOCK_OFFSET_FILE`, see the state crate's module).

use std::time::UNIX_EPOCH;

pub use dockhand_state::clock::{now, recheck, OFFSET_FILE_ENV};

/// [`now`] in UTC, for `chrono` (the scheduler, tasks, updates, alerts, backups).
pub fn utc() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from(now())
}

/// [`now`] in the server's time zone (update windows, local cron schedules).
pub fn local() -> chrono::DateTime<chrono::Local> {
    chrono::DateTime::<chrono::Local>::from(now())
}

/// [`now`] for `time` (certificate validity).
pub fn offset_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::from(now())
}

/// [`now`] as seconds since the Unix epoch (0 before it).
pub fn unix_secs() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
