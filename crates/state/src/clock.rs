//! The agent's one wall clock. Every wall-clock read that a decision or a record depends on
//! (schedules, update windows, certificate expiry and renewal, alert timers, metric and
//! record timestamps) goes through [`now`]; durations and timeouts use the monotonic
//! `Instant` instead, which a stepped wall clock does not move.
//!
//! It lives here, in the leaf crate that owns the timestamps of the state database, so the
//! records and the agent's decisions read the same clock; `dockhand_agent::clock` re-exports
//! it with the `chrono` and `time` forms the agent needs.
//!
//! In a debug build, the chaos tests can step this clock while the agent runs: with
//! `DOCKHAND_CLOCK_OFFSET_FILE=<path>` in its environment, [`now`] adds the signed number of
//! seconds written in that file (re-read at most once a second; a missing or unreadable file
//! is an offset of zero). Release builds compile the offset away and never read the variable.

use std::time::{Duration, SystemTime};

/// The environment variable naming the offset file (debug builds only).
pub const OFFSET_FILE_ENV: &str = "DOCKHAND_CLOCK_OFFSET_FILE";

/// The wall-clock time, as the agent sees it.
pub fn now() -> SystemTime {
    debug::shift(SystemTime::now())
}

/// The longest a task should sleep before it reads the wall clock again when it waits for a
/// wall-clock time (a cron due time, an update window, a renewal time): a wall clock stepped
/// by NTP or a resumed VM is noticed within this. A minute normally; a second in a debug build
/// whose clock a test steps, so the tests see the step at once.
pub fn recheck() -> Duration {
    if debug::stepped() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(60)
    }
}

/// A release build: no offset, nothing read.
#[cfg(not(debug_assertions))]
mod debug {
    use std::time::SystemTime;

    pub(super) fn shift(real: SystemTime) -> SystemTime {
        real
    }

    pub(super) fn stepped() -> bool {
        false
    }
}

#[cfg(debug_assertions)]
mod debug {
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant, SystemTime};

    fn file() -> Option<&'static PathBuf> {
        static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
        FILE.get_or_init(|| std::env::var_os(super::OFFSET_FILE_ENV).map(PathBuf::from))
            .as_ref()
    }

    pub(super) fn shift(real: SystemTime) -> SystemTime {
        let offset = offset();
        let by = Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 {
            real + by
        } else {
            real - by
        }
    }

    pub(super) fn stepped() -> bool {
        file().is_some()
    }

    /// The offset in seconds, re-read from the file at most once a second.
    fn offset() -> i64 {
        static CACHE: Mutex<Option<(Instant, i64)>> = Mutex::new(None);
        let Some(path) = file() else {
            return 0;
        };
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        match *cache {
            Some((read, offset)) if read.elapsed() < Duration::from_secs(1) => offset,
            _ => {
                let offset = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                *cache = Some((Instant::now(), offset));
                offset
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_is_the_system_clock_without_an_offset_file() {
        // The test process has no offset file: the clock is the real one.
        let before = std::time::SystemTime::now();
        let now = super::now();
        let after = std::time::SystemTime::now();
        assert!(
            before <= now && now <= after,
            "{before:?} {now:?} {after:?}"
        );
    }
}
