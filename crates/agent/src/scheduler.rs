//! The one scheduler for timed work, shared by every subsystem that has some (housekeeping
//! today; backups, restore drills, update checks and tasks as they arrive).
//!
//! A [`Job`] runs on a [`Schedule`] — a cron expression (five fields, or six with seconds,
//! evaluated in UTC, parsed by `croner`) or a fixed interval — one run at a time, each under
//! its own timeout. Every run is recorded in the state database; when the agent starts, a run
//! that fell due while it was down is noticed: an event says so and, if the job asks for it,
//! the job runs at once. The timing rules ([`Schedule::next_after`], [`missed`]) are pure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dockhand_state::{JobRun, Store};

use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// When a job runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// At the times a cron expression matches, in UTC or (`local`) in the server's time
    /// zone (`TZ`, else `/etc/localtime`), daylight saving time included: a time that does
    /// not exist on a spring-forward day runs once when the clock jumps, one that exists
    /// twice on a fall-back day runs once (croner's rules).
    Cron {
        expr: String,
        cron: croner::Cron,
        local: bool,
    },
    /// Every interval, counted from the last run; a job that never ran is due at once.
    Every(Duration),
}

impl Schedule {
    /// A cron expression: `min hour day month weekday`, or with seconds first.
    pub fn cron(expr: &str) -> Result<Schedule> {
        let cron = dockhand_config::parse_cron(expr)
            .map_err(|e| AgentError::config(format!("invalid cron expression {expr:?}: {e}")))?;
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            cron,
            local: false,
        })
    }

    /// A cron expression evaluated in the server's time zone.
    pub fn cron_local(expr: &str) -> Result<Schedule> {
        match Schedule::cron(expr)? {
            Schedule::Cron { expr, cron, .. } => Ok(Schedule::Cron {
                expr,
                cron,
                local: true,
            }),
            other => Ok(other),
        }
    }

    /// The first time after `after` the job is due; `last_run` anchors an interval.
    ///
    /// A wall clock stepped back (NTP correcting a fast clock, a restored VM) can put the last
    /// run after `after`: a cron job is then due at its first time after that run, not again
    /// at a time it already ran at, and an interval job waits at most one interval from now.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        last_run: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, local, .. } => {
                next_in(cron, *local, last_run.map_or(after, |last| last.max(after)))
            }
            Schedule::Every(every) => {
                let every = chrono::Duration::from_std(*every).ok()?;
                Some(match last_run {
                    Some(last) if last + every > after => (last + every).min(after + every),
                    Some(_) => after + every,
                    None => after,
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Schedule::Cron { expr, local, .. } => {
                format!(
                    "cron `{expr}` ({})",
                    if *local { "server time" } else { "UTC" }
                )
            }
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
        }
    }
}

/// The next match of `cron` after `after`, evaluated in UTC or the server's time zone.
fn next_in(cron: &croner::Cron, local: bool, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if local {
        next_in_zone(cron, &after.with_timezone(&chrono::Local))
    } else {
        cron.find_next_occurrence(&after, false).ok()
    }
}

/// The next match of `cron` after `after`, in `after`'s time zone.
pub fn next_in_zone<Tz: chrono::TimeZone>(
    cron: &croner::Cron,
    after: &DateTime<Tz>,
) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(after, false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The latest time the job fell due after its last run and up to `now`, if it did: a run
/// the agent missed. A job that never ran has missed nothing.
pub fn missed(
    schedule: &Schedule,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let last = last_run?;
    match schedule {
        Schedule::Cron { cron, local, .. } => {
            let due = if *local {
                cron.find_previous_occurrence(&now.with_timezone(&chrono::Local), true)
                    .ok()?
                    .with_timezone(&Utc)
            } else {
                cron.find_previous_occurrence(&now, true).ok()?
            };
            (due > last).then_some(due)
        }
        Schedule::Every(every) => {
            let due = last + chrono::Duration::from_std(*every).ok()?;
            (due <= now).then_some(due)
        }
    }
}

/// How late past a due time a job may wake before the scheduler says the clock jumped.
const LATE: Duration = Duration::from_secs(60);

/// What a job's run returns: a line for the record, or why it failed.
pub type JobResult = std::result::Result<String, String>;

/// Timed work.
#[derive(Clone)]
pub struct Job {
    /// Unique among jobs; the key of its run record.
    pub name: String,
    pub schedule: Schedule,
    /// A run missed while the agent was down runs as soon as the agent starts.
    pub catch_up: bool,
    /// The longest one run may take.
    pub timeout: Duration,
    pub run: Arc<dyn Fn() -> BoxFuture<JobResult> + Send + Sync>,
}

/// The scheduler: a handle to add jobs (before or after it started), and the subsystem that
/// runs them. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    store: Arc<Store>,
    events: Events,
    jobs: Arc<Mutex<BTreeMap<String, Job>>>,
    added: Arc<tokio::sync::Notify>,
}

impl Scheduler {
    pub fn new(store: Arc<Store>, events: Events) -> Scheduler {
        Scheduler {
            store,
            events,
            jobs: Arc::default(),
            added: Arc::default(),
        }
    }

    /// Adds (or replaces) a job.
    pub fn add(&self, job: Job) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.name.clone(), job);
        self.added.notify_one();
    }

    /// Removes a job (a task no longer configured); a run in progress finishes.
    pub fn remove(&self, name: &str) {
        let removed = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some();
        if removed {
            self.added.notify_one();
        }
    }

    /// Runs one job now and records the run.
    async fn run_job(&self, job: &Job, started: DateTime<Utc>) {
        let outcome = match tokio::time::timeout(job.timeout, (job.run)()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "did not finish within {}",
                humantime::format_duration(job.timeout)
            )),
        };
        let (succeeded, message) = match outcome {
            Ok(m) => (true, m),
            Err(m) => {
                self.events.error(
                    EventKind::Schedule,
                    None,
                    None,
                    &format!("scheduled job `{}` failed: {m}", job.name),
                );
                (false, m)
            }
        };
        let record = JobRun {
            job: job.name.clone(),
            ran_at: rfc3339(started),
            succeeded,
            message,
        };
        if let Err(e) = self.store.record_job_run(&record) {
            tracing::error!(job = %job.name, "failed to record the run: {e}");
        }
    }

    fn last_run(&self, job: &str) -> Option<DateTime<Utc>> {
        let run = self.store.job_last_run(job).ok().flatten()?;
        DateTime::parse_from_rfc3339(&run.ran_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// One job's life: report (and catch up) a missed run, then run at each due time.
    async fn drive(self, job: Job, mut shutdown: crate::subsystem::Shutdown) {
        let now = crate::clock::utc();
        let mut last = self.last_run(&job.name);
        if let Some(due) = missed(&job.schedule, last, now) {
            let what = if job.catch_up {
                "running it now"
            } else {
                "it runs at its next time"
            };
            self.events.warn(
                EventKind::Schedule,
                None,
                None,
                &format!(
                    "scheduled job `{}` ({}) was due at {} while the agent was not running; {what}",
                    job.name,
                    job.schedule.describe(),
                    rfc3339(due)
                ),
            );
            if job.catch_up {
                let started = crate::clock::utc();
                self.run_job(&job, started).await;
                last = Some(started);
            }
        }
        loop {
            let now = crate::clock::utc();
            let Some(due) = job.schedule.next_after(now, last) else {
                tracing::warn!(job = %job.name, "the schedule has no next time; the job will not run again");
                return;
            };
            // Sleep in short slices so a changed wall clock (NTP, a suspended VM) is noticed.
            let wait = (due - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(crate::clock::recheck());
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let started = crate::clock::utc();
            if started < due {
                continue;
            }
            // Woken more than a minute late with later due times passed too: the wall clock
            // jumped forward (or the machine was suspended). The job runs once for all of
            // them, and the event says so.
            let late = (started - due).to_std().unwrap_or_default() > LATE;
            if let Some(latest) = missed(&job.schedule, Some(due), started).filter(|_| late) {
                self.events.warn(
                    EventKind::Schedule,
                    None,
                    None,
                    &format!(
                        "scheduled job `{}` ({}) was due at {} and again up to {}: the wall clock jumped forward; it runs once now",
                        job.name,
                        job.schedule.describe(),
                        rfc3339(due),
                        rfc3339(latest)
                    ),
                );
            }
            self.run_job(&job, started).await;
            last = Some(started);
        }
    }
}

impl Subsystem for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut shutdown = ctx.shutdown.clone();
            let mut driving: BTreeMap<String, (String, tokio::task::JoinHandle<()>)> =
                BTreeMap::new();
            ctx.ready();
            loop {
                let jobs: Vec<Job> = self
                    .jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                driving.retain(|name, (_, task)| {
                    let keep = jobs.iter().any(|j| &j.name == name);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for job in jobs {
                    let when = job.schedule.describe();
                    if let Some((was, task)) = driving.get(&job.name) {
                        if *was == when && !task.is_finished() {
                            continue;
                        }
                        // Replaced with another schedule: drive the new one.
                        task.abort();
                    }
                    let name = job.name.clone();
                    let task = tokio::spawn((*self).clone().drive(job, ctx.shutdown.clone()));
                    driving.insert(name, (when, task));
                }
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = self.added.notified() => {}
                }
            }
            for (_, (_, task)) in driving {
                task.abort();
            }
            Ok(())
        })
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_accepts_steps_and_names_and_rejects_nonsense() {
        let s = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-03-01T10:02:00Z"), None),
            Some(at("2026-03-01T10:05:00Z"))
        );
        // Sunday is 0 (and 7), as in crontab(5).
        let s = Schedule::cron("0 3 * * SUN").unwrap();
        assert_eq!(
            s.next_after(at("2026-03-02T00:00:00Z"), None),
            Some(at("2026-03-08T03:00:00Z"))
        );
        let s = Schedule::cron("30 0 2 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-03-01T00:00:00Z"), None),
            Some(at("2026-03-01T02:00:30Z"))
        );
        let e = Schedule::cron("every day").unwrap_err();
        assert!(e.message().contains("invalid cron expression"), "{e}");
    }

    #[test]
    fn a_local_schedule_follows_daylight_saving_time() {
        // 02:30 every day in Paris: on 2026-03-29 the clocks jump from 02:00 to 03:00, so
        // there is no 02:30 that day; in UTC the run moves from 01:30 to 00:30.
        let Schedule::Cron { cron, .. } = Schedule::cron("30 2 * * *").unwrap() else {
            unreachable!()
        };
        let paris = chrono::FixedOffset::east_opt(3600).unwrap();
        let before = at("2026-03-27T12:00:00Z").with_timezone(&paris);
        assert_eq!(
            next_in_zone(&cron, &before),
            Some(at("2026-03-28T01:30:00Z"))
        );
        let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let sat = at("2026-03-28T12:00:00Z").with_timezone(&tz);
        let next = next_in_zone(&cron, &sat).unwrap();
        // 02:30 does not exist on the 29th: the run is not skipped but happens once, when the
        // clock jumps (03:00 CEST, 01:00 UTC); the next day it is 02:30 CEST, 00:30 UTC.
        assert_eq!(next, at("2026-03-29T01:00:00Z"));
        assert_eq!(
            next_in_zone(&cron, &next.with_timezone(&tz)),
            Some(at("2026-03-30T00:30:00Z"))
        );
        let summer = at("2026-07-01T12:00:00Z").with_timezone(&tz);
        assert_eq!(
            next_in_zone(&cron, &summer),
            Some(at("2026-07-02T00:30:00Z"))
        );
        assert!(Schedule::cron_local("30 2 * * *")
            .unwrap()
            .describe()
            .contains("server time"));
    }

    #[test]
    fn an_interval_counts_from_the_last_run() {
        let s = Schedule::Every(Duration::from_secs(3600));
        let now = at("2026-03-01T10:00:00Z");
        // Never ran: due at once (a check the agent starts with).
        assert_eq!(s.next_after(now, None), Some(now));
        assert_eq!(
            s.next_after(now, Some(at("2026-03-01T09:30:00Z"))),
            Some(at("2026-03-01T10:30:00Z"))
        );
    }

    #[test]
    fn a_clock_stepped_back_an_hour_does_not_run_a_job_twice() {
        // Ran at 03:00; then the clock is set back an hour (it was fast).
        let nightly = Schedule::cron("0 3 * * *").unwrap();
        let ran = at("2026-03-01T03:00:00.2Z");
        let back = at("2026-03-01T02:00:05Z");
        assert_eq!(
            nightly.next_after(back, Some(ran)),
            Some(at("2026-03-02T03:00:00Z")),
            "not 03:00 again the same day"
        );
        // An hourly interval: due an hour from the stepped-back now, not two.
        let hourly = Schedule::Every(Duration::from_secs(3600));
        assert_eq!(
            hourly.next_after(back, Some(ran)),
            Some(at("2026-03-01T03:00:05Z"))
        );
    }

    #[test]
    fn a_clock_stepped_forward_an_hour_runs_a_passed_time_once() {
        // Ran at 03:00; every half hour. The clock jumps from 03:10 to 04:10: 03:30 and 04:00
        // passed, the job runs once now (the scheduler sees a due time in the past), then at
        // 04:30.
        let s = Schedule::cron("0,30 * * * *").unwrap();
        let ran = at("2026-03-01T03:00:00.2Z");
        let due = s.next_after(at("2026-03-01T03:10:00Z"), Some(ran)).unwrap();
        assert_eq!(due, at("2026-03-01T03:30:00Z"));
        let jumped = at("2026-03-01T04:10:00Z");
        assert!(due <= jumped, "due: runs at once");
        assert_eq!(
            s.next_after(jumped, Some(jumped)),
            Some(at("2026-03-01T04:30:00Z"))
        );
        assert_eq!(
            missed(&s, Some(ran), jumped),
            Some(at("2026-03-01T04:00:00Z")),
            "one missed time, not two"
        );
    }

    #[test]
    fn a_run_due_while_the_agent_was_down_is_missed() {
        let nightly = Schedule::cron("0 2 * * *").unwrap();
        let now = at("2026-03-02T08:00:00Z");
        // Ran at 02:00 yesterday; today's 02:00 passed while down.
        assert_eq!(
            missed(&nightly, Some(at("2026-03-01T02:00:01Z")), now),
            Some(at("2026-03-02T02:00:00Z"))
        );
        // Ran today already.
        assert_eq!(
            missed(&nightly, Some(at("2026-03-02T02:00:00.5Z")), now),
            None
        );
        // Never ran: nothing was missed.
        assert_eq!(missed(&nightly, None, now), None);
        let hourly = Schedule::Every(Duration::from_secs(3600));
        assert_eq!(
            missed(&hourly, Some(at("2026-03-02T06:00:00Z")), now),
            Some(at("2026-03-02T07:00:00Z"))
        );
        assert_eq!(missed(&hourly, Some(at("2026-03-02T07:30:00Z")), now), None);
    }

    #[tokio::test]
    async fn a_missed_run_is_reported_and_caught_up_at_start_then_recorded() {
        use crate::secrets::Redactor;
        use crate::subsystem::Subsystems;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let store = Arc::new(Store::open_in_memory().unwrap());
        // The last run was two days ago; the job runs daily.
        let seeded = crate::clock::utc() - chrono::Duration::days(2);
        store
            .record_job_run(&JobRun {
                job: "nightly".into(),
                ran_at: rfc3339(seeded),
                succeeded: true,
                message: String::new(),
            })
            .unwrap();
        let events = Events::new(store.clone(), Redactor::default());
        let scheduler = Scheduler::new(store.clone(), events.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        scheduler.add(Job {
            name: "nightly".into(),
            schedule: Schedule::cron("0 2 * * *").unwrap(),
            catch_up: true,
            timeout: Duration::from_secs(5),
            run: Arc::new(move || {
                let counter = counter.clone();
                Box::pin(async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok("done".to_string())
                })
            }),
        });
        let mut subsystems = Subsystems::new(events);
        subsystems.start(Arc::new(scheduler)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the missed run was not caught up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        subsystems.stop_all().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let recorded = store.job_last_run("nightly").unwrap().unwrap();
        assert!(recorded.succeeded);
        assert_eq!(recorded.message, "done");
        // The record is of this run, not the seeded one two days ago.
        assert!(DateTime::parse_from_rfc3339(&recorded.ran_at).unwrap() > seeded);
        let warned = store.events(10).unwrap();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].kind, "schedule");
        assert!(
            warned[0].message.contains("was due at")
                && warned[0].message.contains("running it now"),
            "{warned:?}"
        );
    }
}
