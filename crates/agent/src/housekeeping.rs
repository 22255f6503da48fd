//! Housekeeping, the scheduler's own job: daily at 03:30 UTC (and at start when that run was
//! missed), the log files of finished instances beyond the newest per service, and events
//! beyond the newest [`KEEP_EVENTS`], are deleted, so a long-lived server does not fill its
//! disk with history. (Deploys prune logs too; events have no other limit.)

use std::sync::Arc;
use std::time::Duration;

use dockhand_state::Store;

use crate::deploy::Deployer;
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::scheduler::{Job, JobResult, Schedule, Scheduler};

/// Events kept in the state database.
pub const KEEP_EVENTS: usize = 20_000;
/// Daily, at a quiet hour.
const WHEN: &str = "30 3 * * *";

/// Adds the housekeeping job to `scheduler`.
pub fn register(scheduler: &Scheduler, d: &Deployer) {
    let (layout, store, fleet) = (d.layout.clone(), d.store.clone(), d.fleet.clone());
    scheduler.add(Job {
        name: "housekeeping".into(),
        schedule: Schedule::cron(WHEN)
            .expect("the housekeeping schedule is a valid cron expression"),
        catch_up: true,
        timeout: Duration::from_secs(300),
        run: Arc::new(move || {
            let (layout, store, fleet) = (layout.clone(), store.clone(), fleet.clone());
            Box::pin(async move { sweep(&layout, &store, &fleet, KEEP_EVENTS) })
        }),
    });
}

/// One housekeeping run; says what it removed.
fn sweep(layout: &StateLayout, store: &Store, fleet: &Fleet, keep_events: usize) -> JobResult {
    let logs = match fleet.serving_config() {
        Some(config) => crate::logs::prune(layout, &fleet.live_ids(), &config),
        None => 0,
    };
    let events = store.prune_events(keep_events).map_err(|e| e.to_string())?;
    Ok(format!(
        "removed the logs of {logs} finished instance(s) and {events} old event(s)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_daily_at_half_past_three_utc() {
        let s = Schedule::cron(WHEN).unwrap();
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert_eq!(
            s.next_after(at("2026-03-01T04:00:00Z"), None),
            Some(at("2026-03-02T03:30:00Z"))
        );
    }

    #[test]
    fn a_sweep_keeps_the_newest_events() {
        let store = Store::open_in_memory().unwrap();
        for i in 0..5 {
            store
                .record_event(
                    dockhand_state::EventLevel::Info,
                    "test",
                    None,
                    None,
                    &format!("e{i}"),
                )
                .unwrap();
        }
        let said = sweep(
            &StateLayout::at(std::path::Path::new("/nonexistent")),
            &store,
            &Fleet::default(),
            2,
        )
        .unwrap();
        assert_eq!(
            said,
            "removed the logs of 0 finished instance(s) and 3 old event(s)"
        );
        assert_eq!(store.events(10).unwrap().len(), 2);
    }
}
