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
        _ => None,
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
    }
}
