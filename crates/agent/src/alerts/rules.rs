//! The alert rules, pure: the day-one defaults with `[alerts.rules.NAME]` overrides
//! (`rules`), what each rule sees in one observation (`conditions`), and the state machine
//! that turns conditions over time into notices (`step`): a condition must hold for the
//! rule's `for` before it fires, fires once (deduplicated by its key), is sent again after
//! the repeat interval, and sends one recovery notice when it clears. No clock and no I/O:
//! the tests drive it with synthetic series.

use std::collections::BTreeMap;
use std::time::Duration;

use dockhand_config::AlertsConfig;
use serde::{Deserialize, Serialize};

use crate::monitor::Traffic;

/// One rule with its effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: &'static str,
    pub enabled: bool,
    /// The rule's threshold (a ratio, milliseconds, restarts or days; see `defaults`).
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub r#for: Duration,
    /// The window a rate is computed over.
    pub window: Duration,
}

/// The defaults: (name, threshold, for, window).
const DEFAULTS: &[(&str, f64, u64, u64)] = &[
    // Every instance of a serving web service down (not running, or failing its check).
    ("service_down", 0.0, 30, 0),
    // 5xx over all responses above 5 % over 5 minutes (at least 20 requests).
    ("error_ratio", 0.05, 120, 300),
    // p99 above 2 s over 5 minutes.
    ("latency_p99", 2000.0, 300, 300),
    // An instance restarted this many times within 10 minutes.
    ("crash_loop", 3.0, 0, 600),
    // A mount's space or inodes above 90 %.
    ("disk", 0.9, 300, 0),
    // Host memory in use above 90 %.
    ("memory", 0.9, 300, 0),
    // A served certificate ends within 14 days (and any certificate failure event).
    ("certificate", 14.0, 0, 0),
    // From events: a backup or drill failed or was missed.
    ("backup", 0.0, 0, 0),
    // From events: a deploy failed or a release was rolled back.
    ("deploy", 0.0, 0, 0),
    // From events: the agent found what an unclean stop left behind.
    ("agent_restart", 0.0, 0, 0),
    // A `[monitor.checks]` check failing (after its own threshold of results in a row).
    ("check", 0.0, 0, 0),
    // A scheduled backup that fell due (while the agent ran) has no complete backup an hour
    // later.
    ("backup_missed", 0.0, 3600, 0),
    // The last restore drill failed, or no drill passed within this many days of the first
    // backup.
    ("backup_unverified", 8.0, 0, 0),
    // A node of the `[cluster]` not ready (down, disconnected) for this long: Swarm marks a
    // node down only after missed heartbeats, so this is short.
    ("node_down", 0.0, 10, 0),
];

/// The rules in effect.
pub fn rules(cfg: &AlertsConfig) -> Vec<Rule> {
    DEFAULTS
        .iter()
        .map(|&(name, threshold, r#for, window)| {
            let o = cfg.rules.get(name).cloned().unwrap_or_default();
            Rule {
                name,
                enabled: o.enabled.unwrap_or(true),
                threshold: o.threshold.unwrap_or(threshold),
                r#for: o.r#for.unwrap_or(Duration::from_secs(r#for)),
                window: o.window.unwrap_or(Duration::from_secs(window)),
            }
        })
        .collect()
}

/// What one service looked like at an evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceObserved {
    pub name: String,
    /// A web service (health-checked): can be "down".
    pub web: bool,
    /// Instances of the serving release, and how many of them are up.
    pub instances: usize,
    pub up: usize,
    /// Traffic over the error-ratio window and over the latency window.
    pub errors: Option<Traffic>,
    pub latency: Option<Traffic>,
    /// The most restarts of one instance within the crash-loop window.
    pub restarts: u32,
}

/// One evaluation's inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub services: Vec<ServiceObserved>,
    /// (mount, space used ratio, inodes used ratio).
    pub disks: Vec<(String, f64, f64)>,
    pub memory_ratio: Option<f64>,
    /// (host, days left).
    pub certificates: Vec<(String, i64)>,
    /// (check, failing, what it saw), for checks with a verdict.
    pub checks: Vec<(String, bool, String)>,
    /// The backups, when `[backups]` is configured.
    pub backups: Option<BackupObserved>,
    /// The swarm's nodes, when the agent watches a `[cluster]` (`cluster_watch.rs`).
    pub nodes: Vec<NodeObserved>,
}

/// One node of a cluster at an evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeObserved {
    pub name: String,
    /// Not ready: down, disconnected or unknown to the managers.
    pub down: bool,
    /// What was seen: its state, and what of the app ran there and where it runs now.
    pub summary: String,
}

/// What the backup rules look at (unix seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupObserved {
    /// The last time the backup schedule fell due since the agent started (none without a
    /// schedule).
    pub last_due: Option<u64>,
    /// The newest complete backup's start.
    pub last_complete: Option<u64>,
    /// The oldest complete backup's start (a drill is expected within the threshold of it).
    pub first_complete: Option<u64>,
    /// The newest restore drill: when, and whether it passed.
    pub last_drill: Option<(u64, bool)>,
    /// The newest drill that passed.
    pub last_passed: Option<u64>,
    pub now: u64,
}

impl BackupObserved {
    /// From the catalog (newest first, as `Backups::list` returns it).
    pub fn from_catalog(
        catalog: &[dockhand_api::BackupSummary],
        last_due: Option<u64>,
        now: u64,
    ) -> BackupObserved {
        use dockhand_api::{BackupState, VerifyState};
        let secs = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .and_then(|d| u64::try_from(d.timestamp()).ok())
        };
        let complete: Vec<u64> = catalog
            .iter()
            .filter(|b| b.state == BackupState::Complete)
            .filter_map(|b| secs(&b.started_at))
            .collect();
        let drills: Vec<(u64, bool)> = catalog
            .iter()
            .filter(|b| b.verify != VerifyState::Never)
            .filter_map(|b| {
                Some((
                    secs(b.verified_at.as_deref()?)?,
                    b.verify == VerifyState::Passed,
                ))
            })
            .collect();
        BackupObserved {
            last_due,
            last_complete: complete.iter().copied().max(),
            first_complete: complete.iter().copied().min(),
            last_drill: drills.iter().copied().max_by_key(|(t, _)| *t),
            last_passed: drills.iter().filter(|(_, ok)| *ok).map(|(t, _)| *t).max(),
            now,
        }
    }
}

/// A rule's verdict about one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: &'static str,
    pub subject: String,
    pub active: bool,
    /// What was seen, for the message.
    pub summary: String,
}

impl Condition {
    pub fn key(&self) -> String {
        key(self.rule, &self.subject)
    }
}

fn key(rule: &str, subject: &str) -> String {
    format!("{rule}:{subject}")
}

const MIN_REQUESTS: u64 = 20;

/// Every enabled rule's verdict on `obs`.
pub fn conditions(rules: &[Rule], obs: &Observed) -> Vec<Condition> {
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        let mut push = |subject: &str, active: bool, summary: String| {
            out.push(Condition {
                rule: rule.name,
                subject: subject.to_string(),
                active,
                summary,
            })
        };
        match rule.name {
            "service_down" => {
                for s in obs.services.iter().filter(|s| s.web && s.instances > 0) {
                    push(
                        &s.name,
                        s.up == 0,
                        format!("{}: {} of {} instances up", s.name, s.up, s.instances),
                    );
                }
            }
            "error_ratio" => {
                for s in &obs.services {
                    if let Some(t) = s.errors.filter(|t| t.requests >= MIN_REQUESTS) {
                        push(
                            &s.name,
                            t.error_ratio > rule.threshold,
                            format!(
                                "{}: {:.1} % of {} requests answered 5xx over {} (threshold {:.1} %)",
                                s.name,
                                t.error_ratio * 100.0,
                                t.requests,
                                human(rule.window),
                                rule.threshold * 100.0
                            ),
                        );
                    }
                }
            }
            "latency_p99" => {
                for s in &obs.services {
                    if let Some((t, p99)) = s
                        .latency
                        .filter(|t| t.requests >= MIN_REQUESTS)
                        .and_then(|t| Some((t, t.p99_ms?)))
                    {
                        push(
                            &s.name,
                            p99 > rule.threshold,
                            format!(
                                "{}: p99 latency {} ms over {} ({} requests; threshold {} ms)",
                                s.name,
                                p99,
                                human(rule.window),
                                t.requests,
                                rule.threshold
                            ),
                        );
                    }
                }
            }
            "crash_loop" => {
                for s in &obs.services {
                    push(
                        &s.name,
                        f64::from(s.restarts) >= rule.threshold,
                        format!(
                            "{}: an instance restarted {} times within {}",
                            s.name,
                            s.restarts,
                            human(rule.window)
                        ),
                    );
                }
            }
            "disk" => {
                for (mount, space, inodes) in &obs.disks {
                    push(
                        mount,
                        *space > rule.threshold || *inodes > rule.threshold,
                        format!(
                            "disk {mount}: {:.0} % of space and {:.0} % of inodes used (threshold {:.0} %)",
                            space * 100.0,
                            inodes * 100.0,
                            rule.threshold * 100.0
                        ),
                    );
                }
            }
            "memory" => {
                if let Some(m) = obs.memory_ratio {
                    push(
                        "host",
                        m > rule.threshold,
                        format!(
                            "memory: {:.0} % in use (threshold {:.0} %)",
                            m * 100.0,
                            rule.threshold * 100.0
                        ),
                    );
                }
            }
            "certificate" => {
                for (host, days) in &obs.certificates {
                    push(
                        host,
                        (*days as f64) < rule.threshold,
                        format!("certificate of {host}: {days} days left"),
                    );
                }
            }
            "backup_missed" => {
                if let (Some(b), Some(due)) =
                    (&obs.backups, obs.backups.as_ref().and_then(|b| b.last_due))
                {
                    let done = b.last_complete.is_some_and(|t| t >= due);
                    push(
                        "schedule",
                        !done,
                        format!(
                            "the scheduled backup due {} ago has not completed (last complete backup: {})",
                            ago(b.now.saturating_sub(due)),
                            b.last_complete
                                .map(|t| format!("{} ago", ago(b.now.saturating_sub(t))))
                                .unwrap_or_else(|| "none".into())
                        ),
                    );
                }
            }
            "backup_unverified" => {
                if let Some(b) = &obs.backups {
                    let days = (rule.threshold * 86_400.0) as u64;
                    let (active, summary) = match (b.last_drill, b.first_complete) {
                        (Some((t, false)), _) => (
                            true,
                            format!(
                                "the last restore drill, {} ago, failed",
                                ago(b.now.saturating_sub(t))
                            ),
                        ),
                        (_, Some(first)) if b.now.saturating_sub(first) > days
                            && b.last_passed.is_none_or(|p| b.now.saturating_sub(p) > days) =>
                        (
                            true,
                            match b.last_passed {
                                Some(p) => format!(
                                    "no restore drill passed for {} (threshold {} days)",
                                    ago(b.now.saturating_sub(p)),
                                    rule.threshold
                                ),
                                None => format!(
                                    "no backup was ever verified by a restore drill (the first is {} old; threshold {} days)",
                                    ago(b.now.saturating_sub(first)),
                                    rule.threshold
                                ),
                            },
                        ),
                        _ => (false, "backups are verified".to_string()),
                    };
                    push("drill", active, summary);
                }
            }
            "check" => {
                for (name, failing, seen) in &obs.checks {
                    push(name, *failing, format!("check {name}: {seen}"));
                }
            }
            "node_down" => {
                for n in &obs.nodes {
                    push(&n.name, n.down, n.summary.clone());
                }
            }
            _ => {} // event rules: see `event_rule`
        }
    }
    out
}

/// One alert's state across evaluations (persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub rule: String,
    pub subject: String,
    /// Unix seconds since the condition holds.
    pub pending_since: u64,
    /// Unix seconds it fired (`None`: still pending).
    pub firing_since: Option<u64>,
    pub last_sent: u64,
    pub summary: String,
}

/// What changed, to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub rule: String,
    pub subject: String,
    pub kind: NoticeKind,
    pub summary: String,
    /// Unix seconds: when it started firing (or the event's time).
    pub since: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Firing,
    /// Still firing after the repeat interval.
    Repeat,
    Resolved,
    /// A one-off from an event (a failed deploy or backup): no recovery follows.
    Event,
}

/// Advances `state` with the conditions seen at `now`; returns the notices to send. A key
/// absent from `conds` (a service that went away, a rule turned off) counts as cleared.
pub fn step(
    state: &mut BTreeMap<String, AlertState>,
    rules: &[Rule],
    conds: &[Condition],
    now: u64,
    repeat: Duration,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let mut active = std::collections::BTreeSet::new();
    for c in conds.iter().filter(|c| c.active) {
        let key = c.key();
        active.insert(key.clone());
        let wait = rules
            .iter()
            .find(|r| r.name == c.rule)
            .map_or(0, |r| r.r#for.as_secs());
        let st = state.entry(key).or_insert_with(|| AlertState {
            rule: c.rule.to_string(),
            subject: c.subject.clone(),
            pending_since: now,
            firing_since: None,
            last_sent: 0,
            summary: c.summary.clone(),
        });
        st.summary = c.summary.clone();
        let notice = |kind| Notice {
            rule: c.rule.to_string(),
            subject: c.subject.clone(),
            kind,
            summary: c.summary.clone(),
            since: now,
        };
        match st.firing_since {
            None if now.saturating_sub(st.pending_since) >= wait => {
                st.firing_since = Some(now);
                st.last_sent = now;
                out.push(notice(NoticeKind::Firing));
            }
            Some(since) if now.saturating_sub(st.last_sent) >= repeat.as_secs() => {
                st.last_sent = now;
                out.push(Notice {
                    since,
                    ..notice(NoticeKind::Repeat)
                });
            }
            _ => {}
        }
    }
    let cleared: Vec<String> = state
        .keys()
        .filter(|k| !active.contains(*k))
        .cloned()
        .collect();
    for key in cleared {
        let st = state.remove(&key).expect("listed");
        if let Some(since) = st.firing_since {
            let summary = conds.iter().find(|c| c.key() == key).map_or_else(
                || format!("{} no longer seen", st.subject),
                |c| c.summary.clone(),
            );
            out.push(Notice {
                rule: st.rule,
                subject: st.subject,
                kind: NoticeKind::Resolved,
                summary,
                since,
            });
        }
    }
    out
}

/// The rule an event belongs to, if it alerts: (rule, subject).
pub fn event_rule(
    kind: &str,
    level: dockhand_state::EventLevel,
    message: &str,
) -> Option<&'static str> {
    use dockhand_state::EventLevel::{Error, Warn};
    match (kind, level) {
        ("deploy" | "rollback", Error) => Some("deploy"),
        // `release N is live (rollback in …)`: a release was put back.
        ("rollback", _) if message.contains("is live") => Some("deploy"),
        ("backup", Error | Warn) => Some("backup"),
        ("schedule", Error | Warn) if message.contains("backup") => Some("backup"),
        ("certificate", Error) => Some("certificate"),
        ("recovery", _) => Some("agent_restart"),
        // The metric store (or another file of the agent's) could not be written.
        ("monitor", Warn | Error) if message.contains("cannot write") => Some("disk"),
        _ => None,
    }
}

/// `3 h`, `2 d`: how long ago, roughly.
fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn human(d: Duration) -> String {
    crate::health::humanize(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_config::RuleOverride;

    fn web(up: usize) -> Observed {
        Observed {
            services: vec![ServiceObserved {
                name: "web".into(),
                web: true,
                instances: 2,
                up,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn run(
        rules: &[Rule],
        series: &[(u64, Observed)],
        repeat: u64,
    ) -> Vec<(u64, NoticeKind, String)> {
        let mut state = BTreeMap::new();
        let mut out = Vec::new();
        for (t, obs) in series {
            for n in step(
                &mut state,
                rules,
                &conditions(rules, obs),
                *t,
                Duration::from_secs(repeat),
            ) {
                out.push((*t, n.kind, n.key_for_test()));
            }
        }
        out
    }

    impl Notice {
        fn key_for_test(&self) -> String {
            key(&self.rule, &self.subject)
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let mut cfg = AlertsConfig::default();
        cfg.rules.insert(
            "error_ratio".into(),
            RuleOverride {
                threshold: Some(0.2),
                enabled: Some(false),
                ..Default::default()
            },
        );
        let r = rules(&cfg);
        assert_eq!(r.len(), dockhand_config::RULE_NAMES.len());
        for (rule, name) in r.iter().zip(dockhand_config::RULE_NAMES) {
            assert_eq!(rule.name, *name, "the config's rule names are the rules");
        }
        let e = r.iter().find(|r| r.name == "error_ratio").unwrap();
        assert_eq!((e.threshold, e.enabled), (0.2, false));
        assert_eq!(e.window, Duration::from_secs(300));
        let down = r.iter().find(|r| r.name == "service_down").unwrap();
        assert_eq!(down.r#for, Duration::from_secs(30));
    }

    #[test]
    fn down_fires_once_after_its_duration_repeats_and_recovers_once() {
        let r = rules(&AlertsConfig::default()); // service_down: for 30 s
        let mut series = vec![(0, web(2))];
        for t in (10..=100).step_by(5) {
            series.push((t, web(0)));
        }
        series.push((105, web(1)));
        series.push((110, web(2)));
        let notices = run(&r, &series, 3600);
        assert_eq!(
            notices,
            vec![
                (40, NoticeKind::Firing, "service_down:web".into()),
                (105, NoticeKind::Resolved, "service_down:web".into()),
            ]
        );
        // A repeat interval shorter than the outage sends it again.
        let notices = run(&r, &series, 50);
        assert_eq!(
            notices.iter().map(|n| (n.0, n.1)).collect::<Vec<_>>(),
            vec![
                (40, NoticeKind::Firing),
                (90, NoticeKind::Repeat),
                (105, NoticeKind::Resolved)
            ]
        );
    }

    #[test]
    fn a_blip_shorter_than_the_duration_sends_nothing() {
        let r = rules(&AlertsConfig::default());
        let series = vec![
            (0, web(0)),
            (20, web(0)),
            (25, web(1)),
            (30, web(0)),
            (55, web(0)),
        ];
        assert!(run(&r, &series, 3600).is_empty());
    }

    #[test]
    fn error_ratio_needs_enough_requests_and_a_gone_service_resolves() {
        let r = rules(&AlertsConfig::default()); // 5 % for 2 min
        let with = |requests, ratio| Observed {
            services: vec![ServiceObserved {
                name: "api".into(),
                errors: Some(Traffic {
                    requests,
                    per_second: 1.0,
                    error_ratio: ratio,
                    p50_ms: None,
                    p99_ms: Some(5.0),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let series = vec![
            (0, with(5, 1.0)), // too few requests: no verdict
            (60, with(100, 0.5)),
            (180, with(100, 0.5)),
            (240, Observed::default()), // the service is gone
        ];
        assert_eq!(
            run(&r, &series, 3600),
            vec![
                (180, NoticeKind::Firing, "error_ratio:api".into()),
                (240, NoticeKind::Resolved, "error_ratio:api".into()),
            ]
        );
    }

    #[test]
    fn disk_memory_and_certificates() {
        let r = rules(&AlertsConfig::default());
        let obs = Observed {
            disks: vec![("/".into(), 0.95, 0.1), ("/srv".into(), 0.2, 0.97)],
            memory_ratio: Some(0.5),
            certificates: vec![("example.org".into(), 10), ("ok.example.org".into(), 60)],
            ..Default::default()
        };
        let active: Vec<String> = conditions(&r, &obs)
            .into_iter()
            .filter(|c| c.active)
            .map(|c| c.key())
            .collect();
        assert_eq!(
            active,
            vec!["disk:/", "disk:/srv", "certificate:example.org"]
        );
    }

    #[test]
    fn events_that_alert() {
        use dockhand_state::EventLevel::*;
        assert_eq!(
            event_rule("deploy", Error, "release 3 failed"),
            Some("deploy")
        );
        assert_eq!(event_rule("deploy", Info, "release 3 serves"), None);
        assert_eq!(
            event_rule("rollback", Info, "release 4 is live (rollback in 3 ms)"),
            Some("deploy")
        );
        assert_eq!(
            event_rule("rollback", Info, "rollback to release 4 started by me"),
            None
        );
        assert_eq!(event_rule("backup", Error, "backup failed"), Some("backup"));
        assert_eq!(
            event_rule("recovery", Warn, "recovered from an unclean stop"),
            Some("agent_restart")
        );
        assert_eq!(event_rule("health", Warn, "unhealthy"), None);
        assert_eq!(
            event_rule(
                "monitor",
                Warn,
                "cannot write the metric store /x: No space left"
            ),
            Some("disk")
        );
    }

    #[test]
    fn a_lost_node_fires_after_its_duration_a_blip_does_not_and_its_return_resolves() {
        let rules = rules(&AlertsConfig::default()); // node_down: for 10 s
        let nodes = |down: bool| Observed {
            nodes: vec![
                NodeObserved {
                    name: "m1".into(),
                    down: false,
                    summary: "node m1 is ready".into(),
                },
                NodeObserved {
                    name: "w1".into(),
                    down,
                    summary: format!("node w1 is {}", if down { "down" } else { "ready" }),
                },
            ],
            ..Default::default()
        };
        // Down for 4 s (a blip), back, then down from 20 s to 40 s.
        let series: Vec<(u64, Observed)> = (0..50)
            .step_by(2)
            .map(|t| (t, nodes((2..6).contains(&t) || (20..40).contains(&t))))
            .collect();
        assert_eq!(
            run(&rules, &series, 3600),
            vec![
                (30, NoticeKind::Firing, "node_down:w1".into()),
                (40, NoticeKind::Resolved, "node_down:w1".into())
            ]
        );
    }

    #[test]
    fn a_failing_check_fires_once_and_recovers_once() {
        let rules = rules(&AlertsConfig::default());
        let check = |failing: bool| Observed {
            checks: vec![(
                "home".into(),
                failing,
                "https://example.org/ answered 502".into(),
            )],
            ..Default::default()
        };
        let series: Vec<(u64, Observed)> =
            (0..10).map(|t| (t, check((3..7).contains(&t)))).collect();
        assert_eq!(
            run(&rules, &series, 3600),
            vec![
                (3, NoticeKind::Firing, "check:home".into()),
                (7, NoticeKind::Resolved, "check:home".into())
            ]
        );
    }

    #[test]
    fn a_missed_scheduled_backup_alerts_after_the_grace_and_recovers_with_a_backup() {
        let rules = rules(&AlertsConfig::default()); // backup_missed: for 1 h
        let at = |now: u64, last_complete: Option<u64>| Observed {
            backups: Some(BackupObserved {
                last_due: Some(10_000),
                last_complete,
                first_complete: Some(1_000),
                last_drill: Some((2_000, true)),
                last_passed: Some(2_000),
                now,
            }),
            ..Default::default()
        };
        let series = vec![
            (10_100, at(10_100, Some(5_000))),
            (13_000, at(13_000, Some(5_000))),
            (13_700, at(13_700, Some(5_000))),
            (14_000, at(14_000, Some(13_800))),
        ];
        assert_eq!(
            run(&rules, &series, 86_400),
            vec![
                (13_700, NoticeKind::Firing, "backup_missed:schedule".into()),
                (
                    14_000,
                    NoticeKind::Resolved,
                    "backup_missed:schedule".into()
                )
            ]
        );
        // Without a schedule nothing is ever due.
        let mut none = at(20_000, None);
        none.backups.as_mut().unwrap().last_due = None;
        assert!(conditions(&rules, &none)
            .iter()
            .all(|c| c.rule != "backup_missed"));
    }

    #[test]
    fn backups_never_verified_or_failing_their_drill_alert() {
        let rules = rules(&AlertsConfig::default()); // backup_unverified: 8 days
        let day = 86_400;
        let obs = |first: u64, drill: Option<(u64, bool)>, now: u64| Observed {
            backups: Some(BackupObserved {
                last_due: None,
                last_complete: Some(now - 10),
                first_complete: Some(first),
                last_drill: drill,
                last_passed: drill.filter(|d| d.1).map(|d| d.0),
                now,
            }),
            ..Default::default()
        };
        let active = |o: &Observed| {
            conditions(&rules, o)
                .into_iter()
                .find(|c| c.rule == "backup_unverified")
                .map(|c| (c.active, c.summary))
        };
        let now = 100 * day;
        // A week-old first backup, never drilled: not yet.
        assert!(!active(&obs(now - 7 * day, None, now)).unwrap().0);
        // Nine days: never verified.
        let (on, why) = active(&obs(now - 9 * day, None, now)).unwrap();
        assert!(on && why.contains("no backup was ever verified"), "{why}");
        // A failed drill alerts at once.
        let (on, why) = active(&obs(now - day, Some((now - 60, false)), now)).unwrap();
        assert!(on && why.contains("failed"), "{why}");
        // A recent passing drill: fine.
        assert!(
            !active(&obs(now - 30 * day, Some((now - day, true)), now))
                .unwrap()
                .0
        );
        // Without backups configured the rule says nothing.
        assert_eq!(active(&Observed::default()), None);
    }
}
