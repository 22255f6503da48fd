//! The watch after a deploy: a [`Subsystem`] that, for `[monitor.watch] window` after each
//! deploy's cutover, compares the new release's traffic with the previous release's baseline
//! (measured over the same window before the cutover) after every monitor sample. When the 5xx
//! ratio exceeds the baseline by `error_ratio`, p99 exceeds it `p99_factor` times, or every
//! instance of a web service is down, it records why (an error event, which the alerter sends)
//! and puts the previous release back through `Deployer::rollback` under the deploy lock — the
//! same gated way as `dockhand rollback`. The verdict itself (`judge`) is pure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockhand_config::WatchConfig;
use tokio::sync::broadcast::error::RecvError;

use crate::deploy::Deployer;
use crate::error::Result;
use crate::events::EventKind;
use crate::lock::DeployLock;
use crate::monitor::{MonitorHandle, Traffic};
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// What a web service showed since the cutover, next to its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub service: String,
    pub now: Option<Traffic>,
    pub baseline: Option<Traffic>,
    /// Instances of the new release, and how many are up.
    pub instances: usize,
    pub up: usize,
}

/// The thresholds of a comparison: the watch's after a cutover, or a canary's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub error_ratio: f64,
    pub p99_factor: f64,
    pub min_requests: u64,
}

impl From<&WatchConfig> for Thresholds {
    fn from(c: &WatchConfig) -> Thresholds {
        Thresholds {
            error_ratio: c.error_ratio,
            p99_factor: c.p99_factor,
            min_requests: c.min_requests,
        }
    }
}

impl From<&dockhand_config::CanaryConfig> for Thresholds {
    fn from(c: &dockhand_config::CanaryConfig) -> Thresholds {
        Thresholds {
            error_ratio: c.error_ratio,
            p99_factor: c.p99_factor,
            min_requests: c.min_requests,
        }
    }
}

/// How a verdict names what it compared: "since the cutover" beside "previous release", or
/// "on the canary" beside "serving release".
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    pub when: &'static str,
    pub other: &'static str,
}

/// The watch after a cutover.
pub const AFTER_CUTOVER: Wording = Wording {
    when: "since the cutover",
    other: "previous release",
};

/// What a comparison found wrong, and why in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub why: String,
    /// Only latency was worse: the watch acts on it only when it holds for
    /// [`LATENCY_SAMPLES`] samples in a row, since a slow spell of the whole machine (a build,
    /// a backup, the deploy's own start-up) slows any release alike.
    pub latency: bool,
}

/// Consecutive monitor samples a latency-only breach must hold before the watch rolls back.
/// Errors and instances down act at the first sample.
pub const LATENCY_SAMPLES: u32 = 3;

/// Why the release must go, if it must.
pub fn judge(cfg: &WatchConfig, seen: &[Seen]) -> Option<Breach> {
    breach(&Thresholds::from(cfg), seen, AFTER_CUTOVER)
}

/// Why the release seen in `seen` (`now`) is worse than the other (`baseline`), if it is.
pub fn compare(cfg: &Thresholds, seen: &[Seen], words: Wording) -> Option<String> {
    breach(cfg, seen, words).map(|b| b.why)
}

/// [`compare`], telling a latency-only breach apart.
pub fn breach(cfg: &Thresholds, seen: &[Seen], words: Wording) -> Option<Breach> {
    let mut slow = None;
    for s in seen {
        if s.instances > 0 && s.up == 0 {
            return Some(Breach {
                why: format!("{}: none of its {} instances is up", s.service, s.instances),
                latency: false,
            });
        }
        let Some(now) = s.now.filter(|t| t.requests >= cfg.min_requests) else {
            continue;
        };
        let base_ratio = s.baseline.map_or(0.0, |b| b.error_ratio);
        if now.error_ratio > base_ratio + cfg.error_ratio {
            return Some(Breach {
                why: format!(
                    "{}: {:.1} % of {} requests answered 5xx {} ({}: {:.1} %)",
                    s.service,
                    now.error_ratio * 100.0,
                    now.requests,
                    words.when,
                    words.other,
                    base_ratio * 100.0
                ),
                latency: false,
            });
        }
        if let (Some(p99), Some(base)) = (now.p99_ms, s.baseline.and_then(|b| b.p99_ms)) {
            // Below 50 ms a bucket step is not a regression worth a rollback.
            if slow.is_none() && p99 > 50.0 && p99 > base * cfg.p99_factor {
                slow = Some(Breach {
                    why: format!(
                        "{}: p99 latency {p99} ms {} ({}: {base} ms)",
                        s.service, words.when, words.other
                    ),
                    latency: true,
                });
            }
        }
    }
    slow
}

/// The subsystem.
pub struct ReleaseWatch {
    deployer: Deployer,
    lock: DeployLock,
    monitor: MonitorHandle,
}

impl ReleaseWatch {
    pub fn new(deployer: Deployer, lock: DeployLock, monitor: MonitorHandle) -> ReleaseWatch {
        ReleaseWatch {
            deployer,
            lock,
            monitor,
        }
    }

    /// Watches `new` (which replaced `previous`) until its window ends or it is rolled back.
    async fn watch(&self, new: i64, previous: i64, shutdown: &mut crate::subsystem::Shutdown) {
        let Some(config) = self.deployer.fleet.serving_config() else {
            return;
        };
        let cfg = config.monitor.watch.clone();
        if !cfg.enabled {
            return;
        }
        let started = Instant::now();
        let services: Vec<String> = config.web_services().map(|s| s.name.clone()).collect();
        let baselines: Vec<Option<Traffic>> = services
            .iter()
            .map(|s| self.monitor.traffic(s, Some(previous), cfg.window))
            .collect();
        let mut ticks = self.monitor.ticks();
        let mut slow_samples = 0;
        loop {
            tokio::select! {
                changed = ticks.changed() => if changed.is_err() { return },
                () = shutdown.wait() => return,
            }
            if started.elapsed() > cfg.window || self.deployer.fleet.serving_release() != Some(new)
            {
                return;
            }
            let since = started.elapsed().max(Duration::from_secs(1));
            let instances = self.monitor.instances();
            let seen: Vec<Seen> = services
                .iter()
                .zip(&baselines)
                .map(|(s, b)| {
                    let mine: Vec<_> = instances
                        .iter()
                        .filter(|i| i.release == new && &i.service == s)
                        .collect();
                    Seen {
                        service: s.clone(),
                        now: self
                            .monitor
                            .traffic(s, Some(new), since + Duration::from_secs(1)),
                        baseline: *b,
                        instances: mine.len(),
                        up: mine
                            .iter()
                            .filter(|i| i.running && i.healthy != Some(false))
                            .count(),
                    }
                })
                .collect();
            let Some(breach) = judge(&cfg, &seen) else {
                slow_samples = 0;
                continue;
            };
            if breach.latency {
                slow_samples += 1;
                if slow_samples < LATENCY_SAMPLES {
                    continue;
                }
            }
            let why = breach.why;
            self.mark_failed(new, &why);
            self.deployer.events.error(
                EventKind::Rollback,
                Some(new),
                None,
                &format!(
                    "release {new} failed its watch after the cutover and is rolled back to release {previous}: {why}"
                ),
            );
            let _guard = match self.lock.acquire("rollback", "the watch after the deploy") {
                Ok(g) => g,
                Err(e) => {
                    self.deployer.events.warn(
                        EventKind::Rollback,
                        Some(new),
                        None,
                        &format!("the watch could not roll back release {new}: {e}"),
                    );
                    return;
                }
            };
            let sink = |_: dockhand_api::Progress| {};
            match self
                .deployer
                .rollback(Some(previous), "the watch after the deploy", &sink)
                .await
            {
                // The rejected release is `retired` now, and activated last: a plain
                // `dockhand rollback` would return to it. It failed: say so in the store.
                Ok(outcome) if outcome.succeeded => {
                    if let Err(e) = self.deployer.store.fail_rolled_back_release(new) {
                        tracing::warn!("could not mark release {new} as failed: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => self.deployer.events.error(
                    EventKind::Rollback,
                    Some(new),
                    None,
                    &format!("rolling back release {new} failed: {e}"),
                ),
            }
            return;
        }
    }
}

impl ReleaseWatch {
    /// Records the commit of a release the watch rolls back as failed for the update
    /// watcher, which then skips it until a newer commit arrives (instead of deploying the
    /// same revision again at every check).
    fn mark_failed(&self, release: i64, why: &str) {
        let store = &self.deployer.store;
        let Ok(Some(r)) = store.release(release) else {
            return;
        };
        let Some(commit) = crate::update::git::revision_commit(&r.revision) else {
            return;
        };
        if let Err(e) = store.record_revision(
            commit,
            dockhand_state::RevisionStatus::Failed,
            Some(release),
            &format!("rolled back by the watch after the deploy: {why}"),
        ) {
            tracing::warn!("could not record commit {commit} as rolled back: {e}");
        }
    }
}

impl Subsystem for ReleaseWatch {
    fn name(&self) -> &'static str {
        "release watch"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut events = self.deployer.events.subscribe();
            // The release that serves, as the deploy events say (the fleet may already show
            // the next one by the time an event is read).
            let mut serving = self
                .deployer
                .store
                .current_release()
                .ok()
                .flatten()
                .map(|r| r.id);
            ctx.ready();
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    () = ctx.shutdown.wait() => return Ok(()),
                };
                let e = match event {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return Ok(()),
                };
                let live =
                    e.level == dockhand_state::EventLevel::Info && e.message.contains("is live");
                if !live {
                    continue;
                }
                if e.kind == EventKind::Rollback.as_str() {
                    serving = e.release;
                    continue;
                }
                if e.kind != EventKind::Deploy.as_str() {
                    continue;
                }
                // `release N is live (deploy in …)`: a deploy or reload cut over.
                let previous = serving;
                serving = e.release;
                if let (Some(new), Some(previous)) = (e.release, previous) {
                    if new != previous {
                        self.watch(new, previous, &mut ctx.shutdown).await;
                        // A rollback by the watch recorded its own `is live` event, read next.
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(requests: u64, ratio: f64, p99: f64) -> Option<Traffic> {
        Some(Traffic {
            requests,
            per_second: 10.0,
            error_ratio: ratio,
            p50_ms: None,
            p99_ms: Some(p99),
        })
    }

    fn seen(now: Option<Traffic>, baseline: Option<Traffic>, up: usize) -> Vec<Seen> {
        vec![Seen {
            service: "web".into(),
            now,
            baseline,
            instances: 2,
            up,
        }]
    }

    #[test]
    fn verdicts() {
        let cfg = WatchConfig::default(); // +5 points, 3× p99, 20 requests
        assert_eq!(
            judge(&cfg, &seen(t(100, 0.02, 10.0), t(1000, 0.0, 10.0), 2)),
            None
        );
        let b = judge(&cfg, &seen(t(100, 0.3, 10.0), t(1000, 0.01, 10.0), 2)).unwrap();
        assert!(
            b.why.contains("30.0 % of 100 requests") && !b.latency,
            "{b:?}"
        );
        // Too few requests: no verdict yet.
        assert_eq!(judge(&cfg, &seen(t(5, 1.0, 10.0), None, 2)), None);
        // The previous release failed as often: not this release's fault.
        assert_eq!(
            judge(&cfg, &seen(t(100, 0.3, 10.0), t(1000, 0.28, 10.0), 2)),
            None
        );
        let b = judge(&cfg, &seen(t(100, 0.0, 500.0), t(1000, 0.0, 100.0), 2)).unwrap();
        assert!(b.why.contains("p99 latency 500 ms") && b.latency, "{b:?}");
        assert_eq!(
            judge(&cfg, &seen(t(100, 0.0, 25.0), t(1000, 0.0, 5.0), 2)),
            None
        );
        let b = judge(&cfg, &seen(None, None, 0)).unwrap();
        assert!(
            b.why.contains("none of its 2 instances") && !b.latency,
            "{b:?}"
        );
        // A slow service before a failing one: the failures are the verdict, acted on at once.
        let mut two = seen(t(100, 0.0, 500.0), t(1000, 0.0, 100.0), 2);
        two.extend(seen(t(100, 0.3, 10.0), t(1000, 0.0, 10.0), 2));
        two[1].service = "api".into();
        let b = judge(&cfg, &two).unwrap();
        assert!(b.why.starts_with("api: 30.0 %") && !b.latency, "{b:?}");
    }
}
