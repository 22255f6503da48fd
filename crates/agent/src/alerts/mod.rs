//! The alerter: a [`Subsystem`] that evaluates the alert rules (`rules.rs`, pure) after each
//! monitor sample and on each event that alerts (a failed deploy or backup, a rollback, a
//! certificate failure, an unclean restart), groups what fires within `[alerts] group_wait`
//! into one message, and delivers it to every channel (`deliver.rs`), retrying with a
//! back-off. What fires, the silences and the messages not yet delivered are kept in
//! `alerts.json` (replaced by an atomic rename), so an agent restart neither repeats a
//! notice nor loses one. Every notice is also an `alert` event.
//!
//! The book's times are wall-clock seconds (they are shown, and they survive a restart), but
//! what they time are durations: a rule's `for`, a silence, the repeat interval, delivery
//! retries. So the alerter watches the wall clock against the monotonic one ([`StepWatch`]):
//! when the wall clock is stepped (NTP correcting it, a VM restored from a snapshot), every
//! time in the book moves by the step, and a pending alert fires after its `for` of real time,
//! not at once.
//!
//! [`AlertHandle`] is what `dockhand alerts` reaches: the list, a test notice to every
//! channel, silences.

pub mod deliver;
pub mod rules;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use dockhand_api::{AlertInfo, AlertsReport, ChannelResult, SilenceInfo};
use dockhand_config::{AppConfig, Channel};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use self::deliver::Message;
use self::rules::{AlertState, Notice, NoticeKind, Observed, ServiceObserved};
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::monitor::MonitorHandle;
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// Delivery is retried for this long, then given up (with an error event).
const GIVE_UP_AFTER: u64 = 24 * 3600;
const FIRST_RETRY: u64 = 5;
const MAX_RETRY: u64 = 30 * 60;
/// A wall clock this many seconds away from where the monotonic clock puts it was stepped.
/// The book keeps whole seconds and the debug clock re-reads its offset once a second, so
/// small differences are rounding; a real step (NTP's is at least 128 ms, but a clock worth
/// correcting is usually minutes or hours off) is larger.
const STEP_TOLERANCE: i64 = 5;

/// What survives a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    alerts: BTreeMap<String, AlertState>,
    /// Rule → unix seconds until which its notices are not sent.
    silences: BTreeMap<String, u64>,
    /// Notices waiting for the group to close.
    pending: Vec<Notice>,
    pending_since: Option<u64>,
    outbox: Vec<Outgoing>,
    /// Event notices recently sent (rule and summary → when), for deduplication.
    recent_events: BTreeMap<String, u64>,
}

impl Book {
    /// Moves every time in the book by `step` seconds (the wall clock was stepped by that
    /// much), so each keeps its distance from now: what was pending for 10 s still is.
    fn shift(&mut self, step: i64) {
        let by = |t: &mut u64| *t = t.saturating_add_signed(step);
        for a in self.alerts.values_mut() {
            by(&mut a.pending_since);
            if let Some(t) = a.firing_since.as_mut() {
                by(t);
            }
            by(&mut a.last_sent);
        }
        self.silences.values_mut().for_each(by);
        for n in &mut self.pending {
            by(&mut n.since);
        }
        if let Some(t) = self.pending_since.as_mut() {
            by(t);
        }
        for o in &mut self.outbox {
            by(&mut o.next_at);
            by(&mut o.first_at);
        }
        self.recent_events.values_mut().for_each(by);
    }
}

/// Tells a stepped wall clock from time passing: the wall clock should have moved as far as
/// the monotonic one since the last look.
struct StepWatch {
    /// Seconds since the Unix epoch, with their fraction (whole seconds would make every
    /// step look a second longer or shorter than it was, half the time).
    wall: f64,
    mono: Instant,
}

impl StepWatch {
    fn new(wall: f64, mono: Instant) -> StepWatch {
        StepWatch { wall, mono }
    }

    /// The step in seconds (positive: forward) if the wall clock was stepped since the last
    /// look.
    fn check(&mut self, wall: f64, mono: Instant) -> Option<i64> {
        let elapsed = mono.saturating_duration_since(self.mono).as_secs_f64();
        let step = (wall - (self.wall + elapsed)).round() as i64;
        self.wall = wall;
        self.mono = mono;
        (step.abs() >= STEP_TOLERANCE).then_some(step)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outgoing {
    channel: Channel,
    message: Message,
    attempts: u32,
    next_at: u64,
    first_at: u64,
    last_error: Option<String>,
}

/// What `dockhand alerts` reaches. Cheap to clone.
#[derive(Clone)]
pub struct AlertHandle {
    book: Arc<Mutex<Book>>,
    events: Events,
    fleet: Fleet,
    layout: Arc<StateLayout>,
    fallback: Arc<AppConfig>,
}

impl AlertHandle {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration whose `[alerts]` applies: the serving release's, else the file's at
    /// the agent's start.
    fn config(&self) -> Arc<AppConfig> {
        self.fleet
            .serving_config()
            .unwrap_or_else(|| self.fallback.clone())
    }

    /// What fires, the silences, what waits for delivery.
    pub fn report(&self) -> AlertsReport {
        let now = unix_now();
        let config = self.config();
        let book = self.book();
        AlertsReport {
            firing: book
                .alerts
                .values()
                .filter(|a| a.firing_since.is_some())
                .map(|a| AlertInfo {
                    rule: a.rule.clone(),
                    subject: a.subject.clone(),
                    summary: a.summary.clone(),
                    since: rfc3339(a.firing_since.unwrap_or(a.pending_since)),
                    silenced: book.silences.get(&a.rule).is_some_and(|&u| u > now),
                })
                .collect(),
            silences: book
                .silences
                .iter()
                .filter(|(_, &until)| until > now)
                .map(|(rule, &until)| SilenceInfo {
                    rule: rule.clone(),
                    until: rfc3339(until),
                })
                .collect(),
            channels: config
                .alerts
                .channels
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            undelivered: book.outbox.len(),
            last_error: book.outbox.iter().find_map(|o| o.last_error.clone()),
            rules: rules::rules(&config.alerts)
                .into_iter()
                .filter(|r| r.enabled)
                .map(|r| r.name.to_string())
                .collect(),
            test: Vec::new(),
        }
    }

    /// Silences `rule` for `duration` (zero: lifts the silence).
    pub fn silence(&self, rule: &str, duration: Duration, by: &str) -> Result<AlertsReport> {
        if !dockhand_config::RULE_NAMES.contains(&rule) {
            return Err(AgentError::not_found(format!(
                "no alert rule `{rule}`; the rules are {}",
                dockhand_config::RULE_NAMES.join(", ")
            )));
        }
        let until = unix_now() + duration.as_secs();
        {
            let mut book = self.book();
            if duration.is_zero() {
                book.silences.remove(rule);
            } else {
                book.silences.insert(rule.to_string(), until);
            }
        }
        let what = if duration.is_zero() {
            format!("alert rule {rule} unsilenced by {by}")
        } else {
            format!(
                "alert rule {rule} silenced until {} by {by}",
                rfc3339(until)
            )
        };
        self.events.info(EventKind::Alert, None, None, &what);
        self.persist();
        Ok(self.report())
    }

    /// Sends a test notice to every channel now; says which failed.
    pub async fn test(&self) -> Result<AlertsReport> {
        let config = self.config();
        let secret = self.secret_fn(&config)?;
        let message = Message {
            app: config.app.clone(),
            notices: Vec::new(),
            at: unix_now(),
            test: true,
        };
        let mut results = Vec::new();
        for channel in &config.alerts.channels {
            let outcome = deliver::send(channel, &message, &*secret).await;
            results.push(ChannelResult {
                channel: channel.name().to_string(),
                error: outcome.err().map(|e| self.events.redactor().redact(&e)),
            });
        }
        let mut report = self.report();
        report.test = results;
        Ok(report)
    }

    /// Resolves `${secret.NAME}` templates of the channels.
    fn secret_fn(&self, config: &AppConfig) -> Result<Box<deliver::SecretFn>> {
        let secrets = crate::secrets::load(config, self.events.redactor())?;
        Ok(Box::new(move |v: &dockhand_config::EnvValue| {
            v.resolve(&secrets).map_err(|e| e.to_string())
        }))
    }

    fn persist(&self) {
        let bytes = match serde_json::to_vec(&*self.book()) {
            Ok(b) => b,
            Err(e) => return tracing::error!("cannot encode the alert state: {e}"),
        };
        let path = self.layout.alerts();
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}

/// The subsystem.
pub struct Alerter {
    handle: AlertHandle,
    monitor: MonitorHandle,
    /// The backup catalog, for the missed and unverified backup rules.
    backups: crate::backups::Backups,
    /// When the agent started: a backup due before it is the scheduler's catch-up's.
    started: chrono::DateTime<chrono::Utc>,
    /// The catalog as last read (unix seconds), for at most a minute.
    catalog: Mutex<Option<(u64, Vec<dockhand_api::BackupSummary>)>>,
    /// Per instance, (unix seconds, restarts) for the crash-loop window.
    restarts: Mutex<HashMap<String, VecDeque<(u64, u32)>>>,
    /// The wall clock as last seen, to notice it being stepped.
    steps: Mutex<StepWatch>,
    /// The swarm's nodes, when the agent watches a `[cluster]`: evaluated after each look.
    nodes: Option<crate::cluster_watch::NodesHandle>,
}

impl Alerter {
    pub fn new(
        events: Events,
        fleet: Fleet,
        monitor: MonitorHandle,
        backups: crate::backups::Backups,
        layout: Arc<StateLayout>,
        fallback: Arc<AppConfig>,
    ) -> (Alerter, AlertHandle) {
        let handle = AlertHandle {
            book: Arc::default(),
            events,
            fleet,
            layout,
            fallback,
        };
        let alerter = Alerter {
            handle: handle.clone(),
            monitor,
            backups,
            started: crate::clock::utc(),
            catalog: Mutex::default(),
            restarts: Mutex::default(),
            steps: Mutex::new(StepWatch::new(precise_now(), Instant::now())),
            nodes: None,
        };
        (alerter, handle)
    }

    /// Also evaluates the `node_down` rule on what the cluster watch sees, after each look.
    pub fn with_nodes(mut self, nodes: crate::cluster_watch::NodesHandle) -> Alerter {
        self.nodes = Some(nodes);
        self
    }

    fn load(&self) {
        let path = self.handle.layout.alerts();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Book>(&bytes) {
                Ok(book) => *self.handle.book() = book,
                Err(e) => tracing::warn!("ignoring unreadable {}: {e}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read {}: {e}", path.display()),
        }
    }

    /// What the rules look at now.
    fn observe(&self, rules: &[rules::Rule], config: &AppConfig, now: u64) -> Observed {
        let window = |name: &str| {
            rules
                .iter()
                .find(|r| r.name == name)
                .map_or(Duration::from_secs(300), |r| r.window)
        };
        let instances = self.monitor.instances();
        let crash_window = window("crash_loop").as_secs();
        let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        restarts.retain(|id, _| instances.iter().any(|i| &i.instance == id));
        let mut most: HashMap<&str, u32> = HashMap::new();
        for i in &instances {
            let h = restarts.entry(i.instance.clone()).or_default();
            h.push_back((now, i.restarts));
            while h.front().is_some_and(|(t, _)| t + crash_window < now) {
                h.pop_front();
            }
            let within = i.restarts - h.front().map_or(i.restarts, |(_, r)| (*r).min(i.restarts));
            let e = most.entry(i.service.as_str()).or_default();
            *e = (*e).max(within);
        }
        let services = config
            .services
            .values()
            .map(|svc| {
                let serving: Vec<_> = instances
                    .iter()
                    .filter(|i| i.serving && i.service == svc.name)
                    .collect();
                ServiceObserved {
                    name: svc.name.clone(),
                    web: svc.port.is_some(),
                    instances: serving.len(),
                    up: serving
                        .iter()
                        .filter(|i| i.running && i.healthy != Some(false))
                        .count(),
                    errors: self.monitor.traffic(&svc.name, None, window("error_ratio")),
                    latency: self.monitor.traffic(&svc.name, None, window("latency_p99")),
                    restarts: most.get(svc.name.as_str()).copied().unwrap_or(0),
                }
            })
            .collect();
        let (host, _) = self.monitor.host();
        Observed {
            services,
            disks: host
                .disks
                .iter()
                .map(|d| (d.mount.clone(), d.used_ratio(), d.inodes_used_ratio()))
                .collect(),
            memory_ratio: (host.mem_total > 0).then(|| host.mem_used_ratio()),
            certificates: self.monitor.certificates(),
            backups: config.backups.as_ref().map(|b| {
                let last_due = b
                    .schedule
                    .as_deref()
                    .and_then(|expr| crate::scheduler::Schedule::cron_local(expr).ok())
                    .and_then(|s| {
                        crate::scheduler::missed(&s, Some(self.started), crate::clock::utc())
                    })
                    .and_then(|t| u64::try_from(t.timestamp()).ok());
                // The catalog is read at most once a minute (each summary parses a manifest).
                let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
                if cached.as_ref().is_none_or(|(t, _)| t + 60 <= now) {
                    *cached = Some((now, self.backups.list().unwrap_or_default()));
                }
                let catalog = cached
                    .as_ref()
                    .map(|(_, c)| c.as_slice())
                    .unwrap_or_default();
                rules::BackupObserved::from_catalog(catalog, last_due, now)
            }),
            checks: self
                .monitor
                .checks()
                .into_iter()
                .filter_map(|c| {
                    let failing = !c.ok?;
                    let seen = c.last.map(|r| r.detail).unwrap_or_default();
                    Some((c.name, failing, format!("{} {seen}", c.target)))
                })
                .collect(),
            nodes: self.nodes.as_ref().map(|n| n.nodes()).unwrap_or_default(),
        }
    }

    /// The wall clock now, after moving the book's times by any step it took since the last
    /// look (with an event saying so). Every path that compares times in the book reads the
    /// clock here.
    fn now(&self) -> u64 {
        let precise = precise_now();
        let now = precise as u64;
        let step = self
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(precise, Instant::now());
        if let Some(step) = step {
            self.handle.book().shift(step);
            for (_, times) in self
                .restarts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter_mut()
            {
                for (t, _) in times.iter_mut() {
                    *t = t.saturating_add_signed(step);
                }
            }
            *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.handle.events.warn(
                EventKind::Alert,
                None,
                None,
                &format!(
                    "the wall clock was stepped {} by {} s: pending alerts, silences and retries keep their durations",
                    if step > 0 { "forward" } else { "back" },
                    step.unsigned_abs(),
                ),
            );
            self.handle.persist();
        }
        now
    }

    fn evaluate(&self) {
        let config = self.handle.config();
        let now = self.now();
        let rules = rules::rules(&config.alerts);
        let obs = self.observe(&rules, &config, now);
        let conds = rules::conditions(&rules, &obs);
        let notices = {
            let mut book = self.handle.book();
            rules::step(&mut book.alerts, &rules, &conds, now, config.alerts.repeat)
        };
        if !notices.is_empty() {
            self.queue(notices, now);
        }
    }

    fn on_event(&self, e: &dockhand_state::Event) {
        if e.kind == EventKind::Backup.as_str() {
            // A backup or drill finished: read the catalog again at the next evaluation.
            *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let Some(rule) = rules::event_rule(&e.kind, e.level, &e.message) else {
            return;
        };
        let config = self.handle.config();
        let enabled = rules::rules(&config.alerts)
            .iter()
            .any(|r| r.name == rule && r.enabled);
        if !enabled {
            return;
        }
        let now = self.now();
        let dedup = format!("{rule}:{}", e.message);
        {
            let mut book = self.handle.book();
            let repeat = config.alerts.repeat.as_secs();
            book.recent_events.retain(|_, t| *t + repeat > now);
            if book.recent_events.contains_key(&dedup) {
                return;
            }
            book.recent_events.insert(dedup, now);
        }
        self.queue(
            vec![Notice {
                rule: rule.to_string(),
                subject: e.service.clone().unwrap_or_else(|| e.kind.clone()),
                kind: NoticeKind::Event,
                summary: e.message.clone(),
                since: now,
            }],
            now,
        );
    }

    /// Records each notice as an event and adds the unsilenced ones to the open group.
    fn queue(&self, notices: Vec<Notice>, now: u64) {
        let mut book = self.handle.book();
        for n in notices {
            let silenced = book.silences.get(&n.rule).is_some_and(|&u| u > now);
            let word = match n.kind {
                NoticeKind::Firing => "firing",
                NoticeKind::Repeat => "still firing",
                NoticeKind::Resolved => "resolved",
                NoticeKind::Event => "alert",
            };
            let msg = format!(
                "{word}: {} ({}){}: {}",
                n.rule,
                n.subject,
                if silenced { " [silenced]" } else { "" },
                n.summary
            );
            let service = (n.subject != n.rule).then_some(n.subject.as_str());
            match n.kind {
                NoticeKind::Resolved => {
                    self.handle
                        .events
                        .info(EventKind::Alert, None, service, &msg)
                }
                _ => self
                    .handle
                    .events
                    .warn(EventKind::Alert, None, service, &msg),
            }
            if !silenced {
                book.pending_since.get_or_insert(now);
                book.pending.push(n);
            }
        }
        drop(book);
        self.handle.persist();
    }

    /// Closes the group once `group_wait` passed; queues its message for every channel.
    fn flush(&self, now: u64) {
        let config = self.handle.config();
        {
            let mut book = self.handle.book();
            let due = book
                .pending_since
                .is_some_and(|t| now >= t + config.alerts.group_wait.as_secs());
            if !due {
                return;
            }
            let notices = std::mem::take(&mut book.pending);
            book.pending_since = None;
            let message = Message {
                app: config.app.clone(),
                notices,
                at: now,
                test: false,
            };
            for channel in &config.alerts.channels {
                book.outbox.push(Outgoing {
                    channel: channel.clone(),
                    message: message.clone(),
                    attempts: 0,
                    next_at: now,
                    first_at: now,
                    last_error: None,
                });
            }
        }
        self.handle.persist();
    }

    /// Sends what is due.
    async fn deliver(&self, now: u64) {
        let due: Vec<(usize, Outgoing)> = self
            .handle
            .book()
            .outbox
            .iter()
            .enumerate()
            .filter(|(_, o)| o.next_at <= now)
            .map(|(i, o)| (i, o.clone()))
            .collect();
        if due.is_empty() {
            return;
        }
        let config = self.handle.config();
        let secret = match self.handle.secret_fn(&config) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("alert delivery waits for the secrets file: {e}");
                return;
            }
        };
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (i, o) in due {
            match deliver::send(&o.channel, &o.message, &*secret).await {
                Ok(()) => done.push(i),
                Err(e) => failed.push((i, self.handle.events.redactor().redact(&e))),
            }
        }
        let mut events = Vec::new();
        {
            let mut book = self.handle.book();
            for (i, err) in &failed {
                let o = &mut book.outbox[*i];
                o.attempts += 1;
                let delay = (FIRST_RETRY << o.attempts.min(20)).min(MAX_RETRY);
                o.next_at = now + delay;
                o.last_error = Some(err.clone());
                if o.attempts == 1 {
                    events.push((false, format!(
                        "sending an alert to {} failed: {err}; retrying (dockhand alerts shows what waits)",
                        o.channel.name()
                    )));
                }
                if now.saturating_sub(o.first_at) > GIVE_UP_AFTER {
                    events.push((
                        true,
                        format!(
                            "gave up sending an alert to {} after {} attempts: {err}",
                            o.channel.name(),
                            o.attempts
                        ),
                    ));
                    done.push(*i);
                }
            }
            done.sort_unstable();
            done.dedup();
            for i in done.into_iter().rev() {
                book.outbox.remove(i);
            }
        }
        for (error, msg) in events {
            if error {
                self.handle.events.error(EventKind::Alert, None, None, &msg);
            } else {
                self.handle.events.warn(EventKind::Alert, None, None, &msg);
            }
        }
        self.handle.persist();
    }
}

impl Subsystem for Alerter {
    fn name(&self) -> &'static str {
        "alerter"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            self.load();
            let mut events = self.handle.events.subscribe();
            let mut ticks = self.monitor.ticks();
            // Without a cluster watch: a sender kept here, so `changed` never resolves.
            let (_no_nodes, idle) = tokio::sync::watch::channel(0u64);
            let mut looks = self.nodes.as_ref().map_or(idle, |n| n.observations());
            let mut second = tokio::time::interval(Duration::from_secs(1));
            second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ctx.ready();
            loop {
                tokio::select! {
                    changed = ticks.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        self.evaluate();
                    }
                    changed = looks.changed() => {
                        if changed.is_ok() {
                            self.evaluate();
                        }
                    }
                    event = events.recv() => match event {
                        Ok(e) => self.on_event(&e),
                        Err(RecvError::Lagged(n)) => tracing::warn!("the alerter missed {n} events"),
                        Err(RecvError::Closed) => break,
                    },
                    _ = second.tick() => {
                        let now = self.now();
                        self.flush(now);
                        self.deliver(now).await;
                    }
                    () = ctx.shutdown.wait() => break,
                }
            }
            self.handle.persist();
            Ok(())
        })
    }
}

fn unix_now() -> u64 {
    crate::clock::unix_secs()
}

/// The wall clock in seconds since the Unix epoch, with their fraction.
fn precise_now() -> f64 {
    crate::clock::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339(secs: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_config::AlertsConfig;

    fn disk_condition() -> Vec<rules::Condition> {
        vec![rules::Condition {
            rule: "disk",
            subject: "/".into(),
            active: true,
            summary: "disk /: 95 % used".into(),
        }]
    }

    /// The rules with `disk` pending for 600 s before it fires.
    fn disk_for_ten_minutes() -> Vec<rules::Rule> {
        let mut config = AlertsConfig::default();
        config.rules.insert(
            "disk".into(),
            dockhand_config::RuleOverride {
                r#for: Some(Duration::from_secs(600)),
                ..Default::default()
            },
        );
        rules::rules(&config)
    }

    #[test]
    fn time_passing_is_no_step_and_a_jump_either_way_is_one() {
        let t0 = Instant::now();
        let mut watch = StepWatch::new(1_000_000.25, t0);
        // Ten seconds pass on both clocks (NTP's slewing moves the wall clock a little).
        assert_eq!(
            watch.check(1_000_010.26, t0 + Duration::from_secs(10)),
            None
        );
        assert_eq!(watch.check(1_000_021.0, t0 + Duration::from_secs(20)), None);
        // The wall clock stepped an hour forward, then an hour back, a second apart each.
        assert_eq!(
            watch.check(1_003_622.0, t0 + Duration::from_secs(21)),
            Some(3600)
        );
        assert_eq!(
            watch.check(1_000_023.0, t0 + Duration::from_secs(22)),
            Some(-3600)
        );
        assert_eq!(watch.check(1_000_024.0, t0 + Duration::from_secs(23)), None);
        // Less than the tolerance is not a step.
        assert_eq!(watch.check(1_000_028.0, t0 + Duration::from_secs(24)), None);
    }

    #[test]
    fn a_pending_alert_keeps_its_for_across_a_clock_stepped_forward() {
        let rules = disk_for_ten_minutes();
        let repeat = Duration::from_secs(4 * 3600);
        let t0 = 1_700_000_000;
        let mut book = Book::default();
        book.silences.insert("memory".into(), t0 + 1800);
        assert!(rules::step(&mut book.alerts, &rules, &disk_condition(), t0, repeat).is_empty());

        // An hour's step, 60 s of real time after the condition began: not yet 600 s.
        book.shift(3600);
        let after = t0 + 3600 + 60;
        assert!(
            rules::step(&mut book.alerts, &rules, &disk_condition(), after, repeat).is_empty(),
            "fired 60 s into a 600 s `for`: {:?}",
            book.alerts
        );
        assert_eq!(
            book.silences["memory"],
            t0 + 1800 + 3600,
            "the silence keeps its end"
        );
        // It fires once 600 s of real time have passed.
        let fired = rules::step(
            &mut book.alerts,
            &rules,
            &disk_condition(),
            t0 + 3600 + 600,
            repeat,
        );
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].kind, NoticeKind::Firing);

        // Stepped back an hour: the firing alert's times move back with it (none ahead of now).
        book.shift(-3600);
        let a = book.alerts.values().next().unwrap();
        assert_eq!(a.pending_since, t0);
        assert_eq!(a.firing_since, Some(t0 + 600));
    }

    #[test]
    fn without_the_shift_a_step_would_fire_the_pending_alert_at_once() {
        // The control for the test above: the rule's state machine alone counts wall seconds.
        let rules = disk_for_ten_minutes();
        let repeat = Duration::from_secs(4 * 3600);
        let t0 = 1_700_000_000;
        let mut alerts = BTreeMap::new();
        rules::step(&mut alerts, &rules, &disk_condition(), t0, repeat);
        let fired = rules::step(&mut alerts, &rules, &disk_condition(), t0 + 3660, repeat);
        assert_eq!(fired.len(), 1, "{fired:?}");
    }
}
