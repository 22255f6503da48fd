//! The monitor: a [`Subsystem`] that samples, every `[monitor] interval`, what the proxy
//! counted per backend (so per service, route and release), each instance's CPU, memory,
//! restarts and health, and the host (CPU, memory, swap, load, disks, network); keeps the
//! figures in its store (`series.rs`: raw for an hour, roll-ups for 48 hours and 30 days,
//! written to `metrics.json` in the state directory within a fixed budget) and serves them
//! in Prometheus' text format on `[monitor] metrics_listen` (`prometheus.rs`).
//!
//! Others read it through [`MonitorHandle`]: the window queries (`traffic`) behind the
//! alert rules, the watch after a deploy and `status`, and a tick after each sample.

pub mod checks;
mod host;
mod prometheus;
pub mod series;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_config::MonitorConfig;
use dockhand_proxy::{Backend, BackendSnapshot, ProxyHandle, ProxyMetrics};
use tokio::sync::watch;

use crate::certs::CertHandle;
use crate::error::Result;
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::subsystem::{BoxFuture, Context, Subsystem};

pub use host::HostSample;
pub use series::Traffic;

/// The proxy backend id of the metrics route's listener.
const ROUTE_BACKEND_ID: u64 = crate::routes::backend_ids::METRICS;

/// How often the store is written to disk.
const PERSIST_EVERY: Duration = Duration::from_secs(300);

/// How often the store is written: [`PERSIST_EVERY`]; in debug builds
/// `DOCKHAND_METRICS_PERSIST_MS` shortens it for tests (release builds never read it).
fn persist_every() -> Duration {
    if cfg!(debug_assertions) {
        if let Some(ms) = std::env::var("DOCKHAND_METRICS_PERSIST_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return Duration::from_millis(ms);
        }
    }
    PERSIST_EVERY
}

/// One instance as last sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSample {
    pub service: String,
    pub instance: String,
    pub release: i64,
    pub serving: bool,
    pub running: bool,
    /// `None` without a health check or before the first verdict.
    pub healthy: Option<bool>,
    pub restarts: u32,
    pub cpu_seconds: Option<f64>,
    /// CPU used since the previous sample, in cores (1.0: one core busy).
    pub cpu_ratio: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// Cumulative proxy counts by (service, release).
type ByRelease = BTreeMap<(String, i64), BackendSnapshot>;

/// What the monitor knows, shared with its handle.
#[derive(Default)]
struct State {
    /// Per backend: what it is and its counters when last read.
    backends: HashMap<u64, Tracked>,
    /// Cumulative counts by (service, route), for `/metrics`.
    routes: BTreeMap<(String, String), BackendSnapshot>,
    /// Cumulative counts by (service, release), for the window queries.
    releases: ByRelease,
    /// (milliseconds on the monotonic clock, `releases` then), one per sample, for an hour:
    /// window queries measure durations, which a stepped wall clock must not change.
    history: VecDeque<(u64, ByRelease)>,
    proxy: ProxyMetrics,
    instances: Vec<InstanceSample>,
    host: HostSample,
    /// The previous host reading's CPU jiffies, for the busy ratio.
    host_cpu_ratio: Option<f64>,
    certificates: Vec<(String, i64)>,
    store: series::SeriesStore,
    serving: Option<i64>,
    samples: u64,
    /// `[monitor.checks]`, by name.
    checks: BTreeMap<String, checks::CheckState>,
    /// Seconds on the monotonic clock of the last sample (fractional; 0: none yet).
    sampled_at: f64,
}

struct Tracked {
    backend: Arc<Backend>,
    service: String,
    route: String,
    release: i64,
    last: BackendSnapshot,
}

/// What other parts of the agent read of the monitor. Cheap to clone.
#[derive(Clone)]
pub struct MonitorHandle {
    state: Arc<Mutex<State>>,
    ticks: watch::Sender<u64>,
    metrics_addr: Arc<Mutex<Option<SocketAddr>>>,
    interval: Duration,
    /// The token-protected listener behind `[monitor] metrics_route`, as a proxy backend.
    route_backend: Arc<Mutex<Option<Arc<Backend>>>>,
}

impl MonitorHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend of `[monitor] metrics_route`'s route, once its listener is bound.
    pub fn route_backend(&self) -> Option<Arc<Backend>> {
        self.route_backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How often the monitor samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes after every sample.
    pub fn ticks(&self) -> watch::Receiver<u64> {
        self.ticks.subscribe()
    }

    /// The address `/metrics` is served on (when it is).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        *self.metrics_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the proxy counted for `service` (one release of it, or all) over the last
    /// `window`, from the samples; `None` before two samples span any time.
    pub fn traffic(
        &self,
        service: &str,
        release: Option<i64>,
        window: Duration,
    ) -> Option<Traffic> {
        let st = self.state();
        let (now, latest) = st.history.back()?;
        let since = now.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let (then, earlier) = st
            .history
            .iter()
            .find(|(t, _)| *t >= since)
            .filter(|(t, _)| t < now)?;
        let sum = |m: &ByRelease| {
            let mut out = BackendSnapshot::default();
            for ((s, r), snap) in m {
                if s == service && release.is_none_or(|want| want == *r) {
                    out.add(snap);
                }
            }
            out
        };
        let delta = sum(latest).since(&sum(earlier));
        Some(series::traffic(&delta, (now - then) as f64 / 1000.0))
    }

    /// The instances as last sampled.
    pub fn instances(&self) -> Vec<InstanceSample> {
        self.state().instances.clone()
    }

    /// The host as last sampled, and its CPU busy ratio over the last interval.
    pub fn host(&self) -> (HostSample, Option<f64>) {
        let st = self.state();
        (st.host.clone(), st.host_cpu_ratio)
    }

    /// The checks of `[monitor.checks]` and their state.
    pub fn checks(&self) -> Vec<checks::CheckState> {
        self.state().checks.values().cloned().collect()
    }

    /// Served certificates and their days left.
    pub fn certificates(&self) -> Vec<(String, i64)> {
        self.state().certificates.clone()
    }

    /// The points of each named series over the last `window` (the dashboard's charts);
    /// no names: every series' name, without points.
    pub fn series(&self, names: &[String], window: Duration) -> Vec<(String, Vec<(u64, f64)>)> {
        let st = self.state();
        if names.is_empty() {
            return st
                .store
                .series
                .keys()
                .map(|n| (n.clone(), Vec::new()))
                .collect();
        }
        let now = crate::clock::unix_secs();
        let since = now.saturating_sub(window.as_secs());
        names
            .iter()
            .map(|n| {
                let points = st
                    .store
                    .series
                    .get(n)
                    .map(|s| s.points(now, since))
                    .unwrap_or_default();
                (n.clone(), points)
            })
            .collect()
    }

    /// Every metric in Prometheus' text exposition format.
    pub fn render_prometheus(&self) -> String {
        let st = self.state();
        prometheus::render(&prometheus::Exposition {
            routes: &st.routes,
            proxy: &st.proxy,
            instances: &st.instances,
            host: &st.host,
            certificates: &st.certificates,
            samples: st.samples,
            dropped_series: st.store.dropped,
        })
    }
}

/// The `[monitor]` settings the agent starts with: the committed release's (like `[proxy]`,
/// they take effect at the next start). In debug builds `DOCKHAND_METRICS_LISTEN` replaces
/// `metrics_listen`, so parallel tests each serve `/metrics` on a port of their own; release
/// builds never read it.
pub fn settings(config: &dockhand_config::AppConfig) -> MonitorConfig {
    let mut out = config.monitor.clone();
    if cfg!(debug_assertions) {
        if let Some(addr) = std::env::var("DOCKHAND_METRICS_LISTEN")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            out.metrics_listen = Some(addr);
        }
    }
    out
}

/// The subsystem.
pub struct Monitor {
    handle: MonitorHandle,
    config: MonitorConfig,
    /// The bearer token of `[monitor] metrics_route` (resolved from the secrets file).
    route_token: Option<Arc<String>>,
    fleet: Fleet,
    proxy: ProxyHandle,
    certs: CertHandle,
    events: Events,
    layout: Arc<StateLayout>,
}

impl Monitor {
    pub fn new(
        config: MonitorConfig,
        fleet: Fleet,
        proxy: ProxyHandle,
        certs: CertHandle,
        events: Events,
        layout: Arc<StateLayout>,
        route_token: Option<String>,
    ) -> (Monitor, MonitorHandle) {
        let handle = MonitorHandle {
            state: Arc::default(),
            ticks: watch::channel(0).0,
            metrics_addr: Arc::default(),
            interval: config.interval,
            route_backend: Arc::default(),
        };
        let monitor = Monitor {
            handle: handle.clone(),
            config,
            route_token: route_token.map(Arc::new),
            fleet,
            proxy,
            certs,
            events,
            layout,
        };
        (monitor, handle)
    }

    /// Takes one sample of everything.
    fn sample(&self) {
        let now = unix_now();
        let live = self.fleet.all();
        let serving = self.fleet.serving_release();
        let routes: HashMap<String, String> = self
            .fleet
            .serving_config()
            .map(|c| {
                c.services
                    .values()
                    .filter_map(|s| {
                        let r = s.routes.first()?;
                        Some((
                            s.name.clone(),
                            format!("{}{}", r.host.as_deref().unwrap_or(""), r.path),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut instances = Vec::with_capacity(live.len());
        for i in &live {
            let st = i.instance.status();
            let proc = st.pid.and_then(host::read_process);
            instances.push(InstanceSample {
                service: i.service.clone(),
                instance: i.id.clone(),
                release: i.release,
                serving: Some(i.release) == serving,
                running: st.state == dockhand_runtime::InstanceState::Running,
                healthy: i.plan.as_ref().and(i.health.verdict()),
                restarts: st.restarts,
                cpu_seconds: proc.map(|p| p.0),
                cpu_ratio: None,
                rss_bytes: proc.map(|p| p.1),
            });
        }
        let host = host::read_host(self.layout.root());
        let certificates: Vec<(String, i64)> = self
            .certs
            .report()
            .certificates
            .into_iter()
            .filter_map(|c| Some((c.host, c.days_left?)))
            .collect();
        let proxy = self.proxy.metrics();

        let mut st = self.handle.state();
        // Each instance's CPU since its previous sample.
        let elapsed = mono_secs_f64() - st.sampled_at;
        if st.sampled_at > 0.0 && elapsed > 0.0 {
            for i in &mut instances {
                let before = st
                    .instances
                    .iter()
                    .find(|p| p.instance == i.instance)
                    .and_then(|p| p.cpu_seconds);
                if let (Some(b), Some(a)) = (before, i.cpu_seconds) {
                    i.cpu_ratio = Some(((a - b) / elapsed).max(0.0));
                }
            }
        }
        st.sampled_at = mono_secs_f64();
        // The proxy's counters: a delta per backend, added to its route and release.
        let mut seen = std::collections::HashSet::new();
        for i in &live {
            let Some(b) = &i.backend else { continue };
            seen.insert(b.id());
            b.stats().set_enabled(self.config.proxy_metrics);
            st.backends.entry(b.id()).or_insert_with(|| Tracked {
                backend: b.clone(),
                service: i.service.clone(),
                route: routes.get(&i.service).cloned().unwrap_or_default(),
                release: i.release,
                last: BackendSnapshot::default(),
            });
        }
        let mut deltas = Vec::new();
        for (id, t) in st.backends.iter_mut() {
            let snap = t.backend.stats().snapshot();
            let delta = snap.since(&t.last);
            t.last = snap;
            deltas.push((*id, t.service.clone(), t.route.clone(), t.release, delta));
        }
        // A backend gone from the fleet has had its last request (it was drained): its final
        // counts are in, forget it.
        st.backends.retain(|id, _| seen.contains(id));
        for (_, service, route, release, delta) in deltas {
            st.routes
                .entry((service.clone(), route))
                .or_default()
                .add(&delta);
            st.releases
                .entry((service, release))
                .or_default()
                .add(&delta);
        }
        let releases = st.releases.clone();
        let now_ms = mono_ms();
        st.history.push_back((now_ms, releases));
        while st
            .history
            .front()
            .is_some_and(|(t, _)| t + series::RAW_SPAN * 1000 < now_ms)
        {
            st.history.pop_front();
        }
        let cpu_ratio = match (st.host.cpu_total, host.cpu_total) {
            (before, after) if after > before && before > 0 => Some(
                (host.cpu_busy.saturating_sub(st.host.cpu_busy)) as f64 / (after - before) as f64,
            ),
            _ => None,
        };
        // The store: per service traffic over the last interval, per service CPU and memory,
        // the host.
        let mut points: Vec<(String, f64)> = Vec::new();
        if let Some((t0, before)) = st.history.iter().rev().nth(1) {
            let secs = now_ms.saturating_sub(*t0).max(1) as f64 / 1000.0;
            let mut by_service: BTreeMap<&str, (BackendSnapshot, BackendSnapshot)> =
                BTreeMap::new();
            for ((s, _), snap) in &st.releases {
                by_service.entry(s).or_default().1.add(snap);
            }
            for ((s, _), snap) in before {
                if let Some(e) = by_service.get_mut(s.as_str()) {
                    e.0.add(snap);
                }
            }
            for (s, (a, b)) in by_service {
                let t = series::traffic(&b.since(&a), secs);
                points.push((format!("service:{s}:requests_per_second"), t.per_second));
                points.push((format!("service:{s}:error_ratio"), t.error_ratio));
                if let Some(p) = t.p50_ms {
                    points.push((format!("service:{s}:p50_ms"), p));
                }
                if let Some(p) = t.p99_ms {
                    points.push((format!("service:{s}:p99_ms"), p));
                }
            }
        }
        let mut per_service: BTreeMap<&str, (u64, Option<f64>)> = BTreeMap::new();
        for i in &instances {
            let e = per_service.entry(&i.service).or_default();
            e.0 += i.rss_bytes.unwrap_or(0);
            if let Some(r) = i.cpu_ratio {
                e.1 = Some(e.1.unwrap_or(0.0) + r);
            }
        }
        for (s, (rss, cpu)) in per_service {
            points.push((format!("service:{s}:memory_bytes"), rss as f64));
            // Cores busy with the service's instances (1.0: one core), from its second sample.
            if let Some(cpu) = cpu {
                points.push((format!("service:{s}:cpu_ratio"), cpu));
            }
        }
        if let Some(r) = cpu_ratio {
            points.push(("host:cpu_ratio".into(), r));
        }
        points.push(("host:memory_used_ratio".into(), host.mem_used_ratio()));
        points.push(("host:load1".into(), host.load1));
        for d in &host.disks {
            points.push((format!("host:disk:{}:used_ratio", d.mount), d.used_ratio()));
        }
        for (name, v) in points {
            st.store.push(&name, now, v);
        }
        st.host_cpu_ratio = cpu_ratio.or(st.host_cpu_ratio);
        st.host = host;
        st.instances = instances;
        st.certificates = certificates;
        st.proxy = proxy;
        st.serving = serving;
        st.samples += 1;
        let n = st.samples;
        drop(st);
        self.handle.ticks.send_replace(n);
    }

    /// Runs one check on its interval until `shutdown`; each result is added to its state,
    /// and a change of state is an event.
    async fn check_loop(
        self: Arc<Self>,
        cfg: dockhand_config::CheckConfig,
        mut shutdown: crate::subsystem::Shutdown,
    ) {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            let result = tokio::select! {
                r = checks::probe(&cfg) => r,
                () = shutdown.wait() => return,
            };
            let detail = result.detail.clone();
            let (flipped, failing, target) = {
                let mut st = self.handle.state();
                let state = st
                    .checks
                    .entry(cfg.name.clone())
                    .or_insert_with(|| checks::CheckState::new(&cfg));
                let flipped = checks::advance(state, result, cfg.threshold, unix_now());
                (flipped, state.failing(), state.target.clone())
            };
            if !flipped {
                continue;
            }
            let message = if failing {
                format!("check {} failing: {target} {detail}", cfg.name)
            } else {
                format!("check {} passes: {target} {detail}", cfg.name)
            };
            if failing {
                self.events.warn(EventKind::Monitor, None, None, &message);
            } else {
                self.events.info(EventKind::Monitor, None, None, &message);
            }
        }
    }

    /// Loads the store written by a previous run (a missing or unreadable file: start empty).
    fn load(&self) {
        let path = self.layout.metrics();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<series::SeriesStore>(&bytes) {
                Ok(store) => self.handle.state().store = store,
                Err(e) => tracing::warn!("ignoring unreadable {}: {e}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read {}: {e}", path.display()),
        }
    }

    /// Writes the store (roll-ups only; raw samples are not kept across restarts) by an
    /// atomic rename: a full disk leaves the previous file whole.
    fn persist(&self) -> std::io::Result<()> {
        let bytes = {
            let mut st = self.handle.state();
            st.store.forget_stale(unix_now());
            serde_json::to_vec(&st.store).map_err(std::io::Error::other)?
        };
        let path = self.layout.metrics();
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

impl Subsystem for Monitor {
    fn name(&self) -> &'static str {
        "monitor"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            self.load();
            let server = match self.config.metrics_listen {
                Some(addr) => {
                    match prometheus::serve(addr, self.handle.clone(), ctx.shutdown.clone(), None)
                        .await
                    {
                        Ok((bound, task)) => {
                            *self
                                .handle
                                .metrics_addr
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = Some(bound);
                            Some(task)
                        }
                        Err(e) => {
                            let why = format!(
                            "cannot serve /metrics on {addr}: {e}; set `[monitor] metrics_listen` to a free address (or false)"
                        );
                            self.events.warn(EventKind::Monitor, None, None, &why);
                            ctx.degraded(why);
                            None
                        }
                    }
                }
                None => None,
            };
            // The listener behind the proxy's metrics route: loopback, a port of its own.
            let route_server = match &self.route_token {
                Some(token) => match prometheus::serve(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    self.handle.clone(),
                    ctx.shutdown.clone(),
                    Some(token.clone()),
                )
                .await
                {
                    Ok((bound, task)) => {
                        *self
                            .handle
                            .route_backend
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) =
                            Some(Backend::new(ROUTE_BACKEND_ID, bound));
                        Some(task)
                    }
                    Err(e) => {
                        self.events.warn(
                            EventKind::Monitor,
                            None,
                            None,
                            &format!("cannot serve the metrics route: {e}"),
                        );
                        None
                    }
                },
                None => None,
            };
            if server.is_some() || self.config.metrics_listen.is_none() {
                ctx.ready();
            }
            {
                let mut st = self.handle.state();
                for cfg in self.config.checks.values() {
                    st.checks
                        .insert(cfg.name.clone(), checks::CheckState::new(cfg));
                }
            }
            let mut check_tasks = tokio::task::JoinSet::new();
            for cfg in self.config.checks.values() {
                check_tasks.spawn(self.clone().check_loop(cfg.clone(), ctx.shutdown.clone()));
            }
            let mut tick = tokio::time::interval(self.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_persist = tokio::time::Instant::now();
            let mut persist_failed = false;
            let persist_every = persist_every();
            let serving_metrics = server.is_some() || self.config.metrics_listen.is_none();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        self.sample();
                        if last_persist.elapsed() >= persist_every {
                            last_persist = tokio::time::Instant::now();
                            match (self.persist(), persist_failed) {
                                (Ok(()), true) => {
                                    persist_failed = false;
                                    self.events.info(EventKind::Monitor, None, None, &format!(
                                        "the metric store {} is written again",
                                        self.layout.metrics().display()
                                    ));
                                    if serving_metrics {
                                        ctx.ready();
                                    }
                                }
                                (Ok(()), false) => {}
                                (Err(e), false) => {
                                    persist_failed = true;
                                    let why = format!(
                                        "cannot write the metric store {}: {e}; the figures stay in memory (free some disk space)",
                                        self.layout.metrics().display()
                                    );
                                    self.events.warn(EventKind::Monitor, None, None, &why);
                                    ctx.degraded(why);
                                }
                                (Err(_), true) => {}
                            }
                        }
                    }
                    () = ctx.shutdown.wait() => break,
                }
            }
            check_tasks.abort_all();
            if let Err(e) = self.persist() {
                tracing::warn!("cannot write the metric store: {e}");
            }
            for task in server.into_iter().chain(route_server) {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
            Ok(())
        })
    }
}

/// Milliseconds on the monotonic clock since the first call (so never 0 after a sample).
fn mono_ms() -> u64 {
    u64::try_from(mono_origin().elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// Seconds on the monotonic clock since the first call (so never 0 after a sample).
fn mono_secs_f64() -> f64 {
    mono_origin().elapsed().as_secs_f64() + 1.0
}

fn mono_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// The wall clock's unix seconds: the series' and checks' timestamps.
fn unix_now() -> u64 {
    crate::clock::unix_secs()
}
