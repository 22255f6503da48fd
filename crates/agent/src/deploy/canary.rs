//! The canary step of a deploy: after the gate, a share of the requests of each compared
//! service goes to the new release (the proxy picks the side by the client's address, so a
//! client stays on its side, and a client on the canary stays there as the share grows),
//! step by step. After each monitor sample the canary's figures since the step began are
//! compared with the serving release's over the same time (`watch::compare`, the thresholds
//! of `[deploy.canary]`): worse, and the deploy aborts — the executor sends every request back
//! to the serving release and drains the canary before stopping it; every step passed, and the
//! plan goes on to its commit and swap (the promotion).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockhand_config::{share_text, CanaryConfig};
use dockhand_proxy::{Canary, RouteTable};

use crate::events::EventKind;
use crate::fleet::{backends_by_service, LiveInstance};
use crate::monitor::{MonitorHandle, Traffic};
use crate::watch::{compare, Seen, Thresholds, Wording};

use super::Deployer;

const ON_THE_CANARY: Wording = Wording {
    when: "on the canary",
    other: "serving release",
};

/// One step of a canary, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// Ten-thousandths of the requests sent to the canary.
    pub share: u32,
    pub duration: Duration,
    /// Per compared service: the canary's and the serving release's traffic over the step.
    pub services: Vec<(String, Option<Traffic>, Option<Traffic>)>,
    /// Why the canary was aborted at this step (`None`: the step passed).
    pub failed: Option<String>,
}

/// What a canary did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CanaryReport {
    pub serving: i64,
    pub stages: Vec<StageReport>,
    pub promoted: bool,
}

/// A canary in progress, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryProgress {
    pub release: i64,
    pub serving: i64,
    pub share: u32,
    pub step: usize,
    pub steps: usize,
    pub services: Vec<String>,
}

/// Where the running canary is, shared with `status`. Cheap to clone.
#[derive(Clone, Default)]
pub struct CanaryStatus(Arc<Mutex<Option<CanaryProgress>>>);

impl CanaryStatus {
    pub fn get(&self) -> Option<CanaryProgress> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, p: Option<CanaryProgress>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = p;
    }
}

/// The routing table that splits `services` between `before`'s backends and the canary's.
pub(super) fn split_table(
    before: &RouteTable,
    new: &[LiveInstance],
    services: &[String],
    share: u32,
) -> RouteTable {
    let by_service = backends_by_service(new);
    let canaries: HashMap<String, Canary> = services
        .iter()
        .filter_map(|s| {
            Some((
                s.clone(),
                Canary {
                    backends: by_service.get(s)?.clone(),
                    share,
                },
            ))
        })
        .collect();
    before.without_canaries().with_canaries(&canaries)
}

/// Runs the steps. `Err` holds why the canary was aborted; the report is filled either way.
/// The caller has set nothing on the proxy; this sets each step's table, and on an abort the
/// caller puts `before` back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    d: &Deployer,
    monitor: &MonitorHandle,
    release: i64,
    serving: i64,
    services: &[String],
    cfg: &CanaryConfig,
    new: &[LiveInstance],
    before: &RouteTable,
    report: &mut CanaryReport,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<(), String> {
    report.serving = serving;
    let thresholds = Thresholds::from(cfg);
    let steps = cfg.steps.len();
    let result = async {
        for (k, &share) in cfg.steps.iter().enumerate() {
            d.proxy
                .set_routes(split_table(before, new, services, share));
            d.canary.set(Some(CanaryProgress {
                release,
                serving,
                share,
                step: k + 1,
                steps,
                services: services.to_vec(),
            }));
            let message = format!(
                "canary step {}/{steps}: release {release} takes {} of the requests of {} (sticky per client) for {}, beside release {serving}",
                k + 1,
                share_text(share),
                services.join(", "),
                crate::health::humanize(cfg.step),
            );
            d.events.info(EventKind::Deploy, Some(release), None, &message);
            say(message);
            let stage =
                watch_step(monitor, release, serving, services, cfg, &thresholds, share).await;
            let failed = stage.failed.clone();
            say(describe(&stage));
            report.stages.push(stage);
            if let Some(why) = failed {
                return Err(format!(
                    "the canary of release {release} was aborted at {}: {why}",
                    share_text(share)
                ));
            }
        }
        Ok(())
    }
    .await;
    d.canary.set(None);
    report.promoted = result.is_ok();
    if result.is_ok() {
        d.events.info(
            EventKind::Deploy,
            Some(release),
            None,
            &format!(
                "the canary of release {release} passed {steps} step(s): promoting it to every request"
            ),
        );
    }
    result
}

/// One step: judged after every monitor sample until its time is up.
#[allow(clippy::too_many_arguments)]
async fn watch_step(
    monitor: &MonitorHandle,
    release: i64,
    serving: i64,
    services: &[String],
    cfg: &CanaryConfig,
    thresholds: &Thresholds,
    share: u32,
) -> StageReport {
    let started = Instant::now();
    let mut ticks = monitor.ticks();
    ticks.mark_unchanged();
    let deadline = tokio::time::Instant::now() + cfg.step;
    let mut stage = StageReport {
        share,
        duration: Duration::ZERO,
        services: Vec::new(),
        failed: None,
    };
    loop {
        let over = tokio::select! {
            changed = ticks.changed() => changed.is_err(),
            () = tokio::time::sleep_until(deadline) => true,
        };
        // The window since the step began (one more second: the sample at its start).
        let window = started.elapsed() + Duration::from_secs(1);
        let instances = monitor.instances();
        let seen: Vec<Seen> = services
            .iter()
            .map(|s| {
                let mine: Vec<_> = instances
                    .iter()
                    .filter(|i| i.release == release && &i.service == s)
                    .collect();
                Seen {
                    service: s.clone(),
                    now: monitor.traffic(s, Some(release), window),
                    baseline: monitor.traffic(s, Some(serving), window),
                    instances: mine.len(),
                    up: mine
                        .iter()
                        .filter(|i| i.running && i.healthy != Some(false))
                        .count(),
                }
            })
            .collect();
        stage.duration = started.elapsed();
        stage.services = seen
            .iter()
            .map(|s| (s.service.clone(), s.now, s.baseline))
            .collect();
        if let Some(why) = compare(thresholds, &seen, ON_THE_CANARY) {
            stage.failed = Some(why);
            return stage;
        }
        if over || started.elapsed() >= cfg.step {
            return stage;
        }
    }
}

/// A step's figures in one line.
pub fn describe(stage: &StageReport) -> String {
    let figures: Vec<String> = stage
        .services
        .iter()
        .map(|(s, canary, stable)| {
            let t = |t: &Option<Traffic>| match t {
                Some(t) => format!(
                    "{} requests, {:.1} % 5xx{}",
                    t.requests,
                    t.error_ratio * 100.0,
                    t.p99_ms
                        .map(|p| format!(", p99 {p} ms"))
                        .unwrap_or_default()
                ),
                None => "no figures yet".into(),
            };
            format!("{s}: canary {} — serving {}", t(canary), t(stable))
        })
        .collect();
    let verdict = match &stage.failed {
        Some(why) => format!("aborted: {why}"),
        None => "passed".into(),
    };
    format!(
        "canary at {} {verdict} ({})",
        share_text(stage.share),
        figures.join("; ")
    )
}
