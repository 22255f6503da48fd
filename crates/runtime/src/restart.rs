//! The restart rules every driver shares: exponential back-off from 200ms to 30s, reset after
//! a minute of running, and the crash-loop state after 5 consecutive exits each within 10s of
//! its start (still retried, at the maximum back-off).

use std::time::Duration;

/// First restart delay; doubled on every consecutive restart.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest restart delay, also used in the crash-loop state.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An instance that ran this long resets the back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// An exit this soon after the start counts towards a crash loop.
pub(crate) const QUICK_EXIT: Duration = Duration::from_secs(10);
/// Consecutive quick exits that make a crash loop.
const CRASH_LOOP_EXITS: u32 = 5;

/// The restart delay after `attempt` consecutive restarts: 200ms doubling up to 30s.
pub(crate) fn backoff_delay(attempt: u32) -> Duration {
    BACKOFF_START
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

/// Where an instance is in its restart history.
#[derive(Debug, Default)]
pub(crate) struct RestartTracker {
    attempt: u32,
    quick_exits: u32,
}

/// The next restart: how long to wait and whether the instance is crash-looping.
pub(crate) struct NextRestart {
    pub delay: Duration,
    pub crash_loop: bool,
    pub quick_exits: u32,
}

impl RestartTracker {
    /// Records an exit after the instance ran for `ran`.
    pub(crate) fn exited_after(&mut self, ran: Duration) {
        if ran >= BACKOFF_RESET_AFTER {
            self.attempt = 0;
        }
        self.quick_exits = if ran < QUICK_EXIT {
            self.quick_exits + 1
        } else {
            0
        };
    }

    /// Records a failed start, which counts as a quick exit.
    pub(crate) fn failed_start(&mut self) {
        self.quick_exits += 1;
    }

    /// The delay before the next start (and counts it).
    pub(crate) fn next(&mut self) -> NextRestart {
        let crash_loop = self.quick_exits >= CRASH_LOOP_EXITS;
        let delay = if crash_loop {
            BACKOFF_MAX
        } else {
            backoff_delay(self.attempt)
        };
        self.attempt = self.attempt.saturating_add(1);
        NextRestart {
            delay,
            crash_loop,
            quick_exits: self.quick_exits,
        }
    }
}

impl NextRestart {
    /// The `sys` log line announcing this restart after `reason`.
    pub(crate) fn describe(&self, reason: &str) -> String {
        let delay = humantime::format_duration(self.delay);
        if self.crash_loop {
            format!(
                "crash loop: {reason}, {} consecutive exits within {}s of start, restarting in {delay}",
                self.quick_exits,
                QUICK_EXIT.as_secs()
            )
        } else {
            format!("{reason}, restarting in {delay}")
        }
    }

    /// The state to publish while waiting.
    pub(crate) fn state(&self) -> crate::InstanceState {
        if self.crash_loop {
            crate::InstanceState::CrashLoop
        } else {
            crate::InstanceState::Backoff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let ms: Vec<u128> = (0..10).map(|a| backoff_delay(a).as_millis()).collect();
        assert_eq!(
            ms,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(backoff_delay(40), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn five_quick_exits_make_a_crash_loop_and_a_long_run_resets() {
        let mut t = RestartTracker::default();
        for _ in 0..4 {
            t.exited_after(Duration::from_millis(10));
            assert!(!t.next().crash_loop);
        }
        t.exited_after(Duration::from_millis(10));
        let n = t.next();
        assert!(n.crash_loop);
        assert_eq!(n.delay, BACKOFF_MAX);
        t.exited_after(Duration::from_secs(61));
        let n = t.next();
        assert!(!n.crash_loop);
        assert_eq!(n.delay, Duration::from_millis(200));
    }
}
