//! Housekeeping, the scheduler's own job: daily at 03:30 UTC (and at start when that run was
//! missed), the log files of finished instances beyond the newest per service, and events
//! beyond the newest [`KEEP_EVENTS`], are deleted, so a long-lived server does not fill its
//! disk with history. (Deploys prune logs too; events have no other limit.)

use std::sync::Arc;
use std::time::Duration;

use crate::deploy::Deployer;
use crate::scheduler::{Job, Schedule, Scheduler};

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
            Box::pin(async move {
                let logs = match fleet.serving_config() {
                    Some(config) => crate::logs::prune(&layout, &fleet.live_ids(), &config),
                    None => 0,
                };
                let events = store.prune_events(KEEP_EVENTS).map_err(|e| e.to_string())?;
                Ok(format!(
                    "removed the logs of {logs} finished instance(s) and {events} old event(s)"
                ))
            })
        }),
    });
}
