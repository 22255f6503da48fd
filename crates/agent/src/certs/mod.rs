//! The certificate manager: a subsystem that keeps every route host served with a valid
//! certificate. It owns what the HTTPS listener serves — the `[proxy] certificates` files
//! (loaded at start by `tls.rs`), then the certificates it gets itself: from an ACME CA for
//! public names (`acme.rs`, DNS-01 through `dns.rs`) and from the local CA for `localhost`,
//! `*.localhost` and IP addresses (`local.rs`) — and replaces them in the running proxy
//! (`ProxyHandle::set_certificates`) without dropping a connection.
//!
//! What is wanted, when to renew and how to back off are pure rules (`plan.rs`). Stored
//! certificates are loaded from disk at start without a new order (`store.rs`); a renewal is
//! due at two thirds of the lifetime (earlier when the CA's renewal information says so), a
//! failure is retried with exponential back-off and jitter — across restarts, since the
//! next attempt is stored — and never removes the certificate being served.
//!
//! Timing: the manager runs its own loop over per-certificate due times (a renewal time, a
//! retry time, both moving with each attempt), which the shared scheduler's fixed schedules do
//! not express; the scheduler runs the twice-daily expiry check (`watch_expiry`), which warns
//! at 14, 7 and 3 days before the end of any served certificate, file or managed.

pub(crate) mod acme;
mod dns;
mod local;
pub mod plan;
pub(crate) mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_api::{CertSource, CertState, CertStatus, CertificateInfo, CertsReport};
use dockhand_config::{AppConfig, ChallengeKind, LoadedCertificate};
use dockhand_proxy::{ProxyHandle, TlsCertificate};
use dockhand_state::EventLevel;
use tokio::sync::Notify;

pub use plan::Source;

use crate::deploy::failpoint::crash_point;
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::scheduler::{Job, Schedule, Scheduler};
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::tls::{rfc3339, LoadedCertificates};

/// One ACME order (every challenge, finalization and download) may take this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// The first retry after a failure waits this long, doubling up to six hours.
const RETRY_BASE: Duration = Duration::from_secs(60);
/// How often the served certificates' dates are checked.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// The CA's renewal information is asked for again after this long (unless it says).
const ARI_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The manager's state, shared with its handle.
struct Shared {
    sets: Mutex<BTreeMap<String, Managed>>,
    files: Vec<FileCert>,
    wake: Notify,
    /// Expiry notices already given for file certificates (by file, for one `not_after`).
    file_notices: Mutex<HashMap<String, (i64, i64)>>,
    local_ca: Mutex<Option<String>>,
    layout: Arc<StateLayout>,
}

/// A certificate from `[proxy] certificates`.
struct FileCert {
    info: CertificateInfo,
    not_after: i64,
    serve: TlsCertificate,
}

/// One managed certificate set.
struct Managed {
    wanted: plan::Wanted,
    files: store::SetFiles,
    current: Option<Current>,
    record: store::SetRecord,
    /// `certs renew` asked for it: attempt now, whatever the times say.
    forced: bool,
    /// No longer wanted (a route went away): kept serving until the agent restarts.
    stale: bool,
}

struct Current {
    loaded: LoadedCertificate,
    issuer: Option<String>,
}

/// The narrow handle the socket server and the scheduler use.
#[derive(Clone)]
pub struct CertHandle {
    shared: Arc<Shared>,
}

/// The subsystem.
pub struct CertManager {
    shared: Arc<Shared>,
    events: Events,
    proxy: ProxyHandle,
    fleet: Fleet,
    /// The configuration the agent started with: its `[proxy]` table is the one served
    /// until a restart, and its routes count until a release serves.
    startup: Arc<AppConfig>,
    retry_base: Duration,
}

impl CertManager {
    /// A manager for the proxy bound from `startup`, serving `files` first.
    pub fn new(
        layout: Arc<StateLayout>,
        events: Events,
        proxy: ProxyHandle,
        fleet: Fleet,
        startup: Arc<AppConfig>,
        files: &LoadedCertificates,
    ) -> (CertManager, CertHandle) {
        let files = files
            .info
            .iter()
            .zip(&files.serve)
            .zip(&files.expiries)
            .map(|((info, serve), (_, not_after))| FileCert {
                info: info.clone(),
                not_after: *not_after,
                serve: serve.clone(),
            })
            .collect();
        let shared = Arc::new(Shared {
            sets: Mutex::default(),
            files,
            wake: Notify::new(),
            file_notices: Mutex::default(),
            local_ca: Mutex::default(),
            layout,
        });
        let manager = CertManager {
            shared: shared.clone(),
            events,
            proxy,
            fleet,
            startup,
            retry_base: retry_base(),
        };
        (manager, CertHandle { shared })
    }

    /// The configuration whose hosts are wanted: the serving release's routes, with the
    /// `[proxy]` table the proxy was started with.
    fn config(&self) -> AppConfig {
        let mut config = match self.fleet.serving_config() {
            Some(c) => AppConfig::clone(&c),
            None => AppConfig::clone(&self.startup),
        };
        config.proxy = self.startup.proxy.clone();
        config
    }

    /// Brings the wanted sets up to date with the configuration, loading stored certificates
    /// of sets seen for the first time.
    fn refresh_wanted(&self) {
        let config = self.config();
        let file_names: Vec<Vec<String>> = self
            .shared
            .files
            .iter()
            .map(|f| f.info.names.clone())
            .collect();
        let wanted = plan::wanted(&config, &file_names);
        let now = crate::clock::now();
        let mut sets = lock(&self.shared.sets);
        for set in sets.values_mut() {
            set.stale = true;
        }
        for w in wanted {
            if let Some(existing) = sets.get_mut(&w.id) {
                existing.wanted = w;
                existing.stale = false;
                continue;
            }
            let files = store::set_files(&self.shared.layout, w.source, &w.id);
            let record = files.read_record();
            let current = match files.load_certificate(now) {
                Ok(Some(loaded)) => Some(Current {
                    issuer: issuer_of(&loaded),
                    loaded,
                }),
                Ok(None) => None,
                Err(e) => {
                    self.events.error(
                        EventKind::Certificate,
                        None,
                        None,
                        &format!("{}; a new certificate is requested", e.message()),
                    );
                    None
                }
            };
            sets.insert(
                w.id.clone(),
                Managed {
                    wanted: w,
                    files,
                    current,
                    record,
                    forced: false,
                    stale: false,
                },
            );
        }
    }

    /// Gives the proxy every certificate: the files first (the first is the default), then
    /// the managed ones.
    fn publish(&self) {
        let mut all: Vec<TlsCertificate> =
            self.shared.files.iter().map(|f| f.serve.clone()).collect();
        for set in lock(&self.shared.sets).values() {
            if let Some(c) = &set.current {
                let mut names = c.loaded.names.clone();
                for n in &set.wanted.names {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                all.push(TlsCertificate::new(names, c.loaded.key.clone()));
            }
        }
        self.proxy.set_certificates(all);
    }

    /// The sets due for an attempt at `now`, and the earliest time one will be.
    fn due(&self, now: i64) -> (Vec<String>, Option<i64>) {
        let sets = lock(&self.shared.sets);
        let mut due = Vec::new();
        let mut next: Option<i64> = None;
        for (id, set) in sets.iter() {
            if set.stale {
                continue;
            }
            let at = due_at(set);
            if set.forced || at <= now {
                due.push(id.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            if let (Some(ari_next), Some(_)) = (set.record.ari_next_check, &set.current) {
                if set.wanted.source == Source::Acme {
                    next = Some(next.map_or(ari_next, |n| n.min(ari_next)));
                }
            }
        }
        (due, next)
    }

    /// One attempt for set `id`: issue or renew, store, serve, record the outcome.
    async fn attempt(&self, id: &str) {
        let Some((wanted, files, had, mut record)) = ({
            let sets = lock(&self.shared.sets);
            sets.get(id).map(|s| {
                (
                    s.wanted.clone(),
                    s.files.clone(),
                    s.current.as_ref().map(|c| c.loaded.not_after),
                    s.record.clone(),
                )
            })
        }) else {
            return;
        };
        let names = wanted.names.join(", ");
        let now = unix_now();
        record.last_attempt = Some(now);
        let outcome = match wanted.source {
            Source::LocalCa => self.issue_local(&wanted, &files),
            Source::Acme => self.issue_acme(&wanted, &files, &record).await,
        };
        match outcome {
            Ok(loaded) => {
                let verb = if had.is_some() { "renewed" } else { "issued" };
                let issuer = issuer_of(&loaded);
                self.events.info(
                    EventKind::Certificate,
                    None,
                    None,
                    &format!(
                        "certificate for {names} {verb} by {} (valid until {})",
                        issuer.as_deref().unwrap_or("the CA"),
                        rfc3339(loaded.not_after)
                    ),
                );
                record.names = wanted.names.clone();
                record.failures = 0;
                record.next_attempt = None;
                record.last_error = None;
                record.failed_challenge.clear();
                record.ari_renew_at = None;
                record.ari_next_check = Some(now);
                record.notified = None;
                record.notified_for = None;
                if wanted.source == Source::Acme {
                    record.directory = Some(self.startup.proxy.acme.directory.clone());
                }
                if let Some(set) = lock(&self.shared.sets).get_mut(id) {
                    set.current = Some(Current { loaded, issuer });
                    set.forced = false;
                    set.record = record.clone();
                }
                // Served before anyone can read the set as valid: `certs` and the tests
                // that connect right after it must not meet the old certificate.
                self.publish();
                crash_point("certs", "served");
            }
            Err(failure) => {
                record.failures += 1;
                let jitter = fastrand::f64() * 2.0 - 1.0;
                let wait = plan::backoff(
                    record.failures,
                    self.retry_base,
                    jitter,
                    failure.retry_after,
                );
                let next = now + wait.as_secs().max(1) as i64;
                record.next_attempt = Some(next);
                record.last_error = Some(failure.message.clone());
                for (name, kind) in &failure.failed {
                    record
                        .failed_challenge
                        .insert(name.clone(), kind.as_str().to_string());
                }
                let serving = match had {
                    Some(not_after) => format!(
                        "the current certificate keeps serving (valid until {})",
                        rfc3339(not_after)
                    ),
                    None => "its hosts are served with the default certificate meanwhile".into(),
                };
                let what = if had.is_some() { "renew" } else { "get" };
                self.events.error(
                    EventKind::Certificate,
                    None,
                    None,
                    &format!(
                        "failed to {what} the certificate for {names}: {}; {serving}; next attempt at {} (attempt {} failed)",
                        failure.message,
                        rfc3339(next),
                        record.failures
                    ),
                );
                let mut sets = lock(&self.shared.sets);
                if let Some(set) = sets.get_mut(id) {
                    set.forced = false;
                    set.record = record.clone();
                }
            }
        }
        if let Err(e) = files.write_record(&record) {
            self.events
                .error(EventKind::Certificate, None, None, e.message());
        }
    }

    fn issue_local(
        &self,
        wanted: &plan::Wanted,
        files: &store::SetFiles,
    ) -> std::result::Result<LoadedCertificate, Failure> {
        let ca = local::LocalCa::load_or_create(&self.shared.layout).map_err(Failure::from)?;
        *lock(&self.shared.local_ca) = Some(ca.cert_pem.clone());
        let (chain, key) = ca.issue(&wanted.names).map_err(Failure::from)?;
        files.write_bundle(&chain, &key).map_err(Failure::from)?;
        crash_point("certs", "stored");
        self.load_written(files)
    }

    async fn issue_acme(
        &self,
        wanted: &plan::Wanted,
        files: &store::SetFiles,
        record: &store::SetRecord,
    ) -> std::result::Result<LoadedCertificate, Failure> {
        let config = self.config();
        let acme = &config.proxy.acme;
        let secrets =
            crate::secrets::load(&config, self.events.redactor()).map_err(Failure::from)?;
        let dns = match &acme.dns {
            Some(settings) => Some(
                dns::DnsSolver::new(settings, &secrets, &config.project_dir)
                    .map_err(Failure::message)?,
            ),
            None => None,
        };
        let preferences = |name: &str| -> Vec<ChallengeKind> {
            let mut list = wanted
                .challenges
                .get(name)
                .or_else(|| {
                    wanted
                        .challenges
                        .get(name.strip_prefix("*.").unwrap_or(name))
                })
                .cloned()
                .unwrap_or_else(|| acme.challenges.clone());
            // The type that failed last time goes last.
            if let Some(failed) = record.failed_challenge.get(name) {
                if let Some(pos) = list.iter().position(|k| k.as_str() == failed) {
                    if list.len() > 1 {
                        let k = list.remove(pos);
                        list.push(k);
                    }
                }
            }
            list
        };
        let order = acme::Order {
            acme,
            secrets: &secrets,
            layout: &self.shared.layout,
            challenges: self.proxy.challenges(),
            dns: dns.as_ref(),
            names: &wanted.names,
            preferences: &preferences,
            relay: None,
        };
        let issued = match tokio::time::timeout(ORDER_TIMEOUT, acme::issue(&order)).await {
            Ok(Ok(issued)) => issued,
            Ok(Err(e)) => {
                return Err(Failure {
                    message: self.events.redactor().redact(&e.message),
                    retry_after: e.retry_after,
                    failed: e.failed,
                })
            }
            Err(_) => {
                return Err(Failure::message(format!(
                    "the order did not finish within {}",
                    humantime::format_duration(ORDER_TIMEOUT)
                )))
            }
        };
        crash_point("certs", "finalized");
        files
            .write_bundle(&issued.chain_pem, &issued.key_pem)
            .map_err(Failure::from)?;
        crash_point("certs", "stored");
        self.load_written(files)
    }

    fn load_written(
        &self,
        files: &store::SetFiles,
    ) -> std::result::Result<LoadedCertificate, Failure> {
        match files.load_certificate(crate::clock::now()) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Failure::message(
                "the new certificate is already expired; check the machine's clock",
            )),
            Err(e) => Err(Failure::from(e)),
        }
    }

    /// Sleeps until `at` (Unix seconds, in slices of a minute so a changed clock is noticed),
    /// a wake-up, a deploy, or the shutdown. Returns false at shutdown.
    async fn wait(
        &self,
        at: Option<i64>,
        ctx: &mut Context,
        events: &mut tokio::sync::broadcast::Receiver<dockhand_state::Event>,
    ) -> bool {
        let wait = match at {
            // A due time is a wall-clock time: read the clock again at least every
            // `clock::recheck()`, so a stepped clock moves the attempt with it.
            Some(at) => {
                Duration::from_secs((at - unix_now()).max(0) as u64).min(crate::clock::recheck())
            }
            None => crate::clock::recheck(),
        };
        tokio::select! {
            _ = ctx.shutdown.wait() => false,
            _ = self.shared.wake.notified() => true,
            _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => true,
            event = events.recv() => {
                // A release changed: its routes may name new hosts (and a subscriber that
                // fell behind may have missed it).
                let changed = match event {
                    Ok(e) => matches!(e.kind.as_str(), "deploy" | "rollback" | "restore"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(wait).await;
                        false
                    }
                };
                if changed {
                    // A set whose certificate is already on disk serves it at once.
                    self.refresh_wanted();
                    self.publish();
                }
                true
            }
        }
    }

    /// Asks the CA when to renew each ACME certificate (ARI), when it is time to ask.
    async fn check_renewal_info(&self) {
        // ARI needs an account-less GET only; pebble and older CAs do not offer it, which
        // is fine: two thirds of the lifetime then.
        let now = unix_now();
        let ids: Vec<String> = lock(&self.shared.sets)
            .iter()
            .filter(|(_, s)| {
                s.wanted.source == Source::Acme
                    && s.current.is_some()
                    && s.record.ari_next_check.is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some((pem, mut record, files)) = ({
                let sets = lock(&self.shared.sets);
                sets.get(&id).and_then(|s| {
                    let bundle = std::fs::read_to_string(s.files.bundle()).ok()?;
                    Some((bundle, s.record.clone(), s.files.clone()))
                })
            }) else {
                continue;
            };
            let acme_settings = &self.startup.proxy.acme;
            let found = acme_renewal_window(&self.shared.layout, acme_settings, &pem).await;
            record.ari_next_check = Some(now + ARI_EVERY.as_secs() as i64);
            if let Some((start, end, retry)) = found {
                record.ari_renew_at = Some(plan::ari_pick(start, end, fastrand::f64()));
                if let Some(retry) = retry {
                    record.ari_next_check = Some(now + retry.as_secs().max(60) as i64);
                }
            }
            let _ = files.write_record(&record);
            if let Some(set) = lock(&self.shared.sets).get_mut(&id) {
                set.record = record;
            }
        }
    }
}

impl Subsystem for CertManager {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut events = self.events.subscribe();
            self.refresh_wanted();
            self.publish();
            ctx.ready();
            loop {
                let (due, next) = self.due(unix_now());
                for id in due {
                    // An order under way is dropped at shutdown (the proxy stops anyway);
                    // the stored retry time makes the next start try again.
                    tokio::select! {
                        _ = self.attempt(&id) => {}
                        _ = ctx.shutdown.wait() => return Ok(()),
                    }
                }
                self.check_renewal_info().await;
                let (due, next_after) = self.due(unix_now());
                let next = if due.is_empty() {
                    next_after.or(next)
                } else {
                    Some(unix_now())
                };
                if !self.wait(next, &mut ctx, &mut events).await {
                    return Ok(());
                }
            }
        })
    }
}

/// When a set is next due: its retry time after a failure; else now without a
/// certificate (or with one missing a wanted name); else its renewal time.
fn due_at(set: &Managed) -> i64 {
    // After a failure, the retry time alone (a renewal asked for keeps being retried).
    if set.record.failures > 0 {
        if let Some(retry) = set.record.next_attempt {
            return retry;
        }
    }
    let retry = set.record.next_attempt.unwrap_or(i64::MIN);
    let at = match &set.current {
        None => i64::MIN,
        Some(c)
            if set
                .wanted
                .names
                .iter()
                .any(|n| !c.loaded.names.contains(n) && !ip_covered(&c.loaded, n)) =>
        {
            i64::MIN
        }
        Some(c) => plan::renew_at(
            c.loaded.not_before,
            c.loaded.not_after,
            set.record.ari_renew_at,
        ),
    };
    at.max(retry)
}

/// An IP address is not among the DNS names load_certificate reads: a local certificate
/// issued for the set's names covers it.
fn ip_covered(c: &LoadedCertificate, name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok() && !c.names.is_empty()
}

impl CertHandle {
    /// Every certificate served or being got, as `status` shows them (the files first).
    pub fn infos(&self) -> Vec<CertificateInfo> {
        let mut out: Vec<CertificateInfo> =
            self.shared.files.iter().map(|f| f.info.clone()).collect();
        for (id, set) in lock(&self.shared.sets).iter() {
            if let Some(c) = &set.current {
                out.push(CertificateInfo {
                    cert: id.clone(),
                    source: wire_source(set.wanted.source),
                    names: set.wanted.names.clone(),
                    not_before: rfc3339(c.loaded.not_before),
                    not_after: rfc3339(c.loaded.not_after),
                });
            }
        }
        out
    }

    /// `dockhand certs`: one row per host.
    pub fn report(&self) -> CertsReport {
        let now = unix_now();
        let mut rows = Vec::new();
        for f in &self.shared.files {
            for host in &f.info.names {
                let left = f.not_after - now;
                rows.push(CertStatus {
                    host: host.clone(),
                    source: CertSource::File,
                    state: if left <= 0 {
                        CertState::Expired
                    } else {
                        CertState::Valid
                    },
                    names: f.info.names.clone(),
                    issuer: None,
                    not_after: Some(f.info.not_after.clone()),
                    days_left: Some(left.div_euclid(86_400)),
                    next_renewal: None,
                    last_error: None,
                    file: Some(f.info.cert.clone()),
                });
            }
        }
        for set in lock(&self.shared.sets).values() {
            if set.stale {
                continue;
            }
            let next = due_at(set).max(now);
            for host in &set.wanted.names {
                let (state, not_after, issuer) = match &set.current {
                    None => (CertState::Pending, None, None),
                    Some(c) => {
                        let state = if c.loaded.not_after <= now {
                            CertState::Expired
                        } else if set.record.failures > 0 {
                            CertState::Failing
                        } else {
                            CertState::Valid
                        };
                        (state, Some(c.loaded.not_after), c.issuer.clone())
                    }
                };
                rows.push(CertStatus {
                    host: host.clone(),
                    source: wire_source(set.wanted.source),
                    state,
                    names: set.wanted.names.clone(),
                    issuer,
                    not_after: not_after.map(rfc3339),
                    days_left: not_after.map(|t| (t - now).div_euclid(86_400)),
                    next_renewal: Some(rfc3339(next)),
                    last_error: set.record.last_error.clone(),
                    file: None,
                });
            }
        }
        rows.sort_by(|a, b| a.host.cmp(&b.host));
        let ca_path = self.shared.layout.local_ca();
        let pem = lock(&self.shared.local_ca)
            .clone()
            .or_else(|| std::fs::read_to_string(&ca_path).ok());
        CertsReport {
            certificates: rows,
            local_ca: pem.map(|pem| dockhand_api::LocalCa {
                path: ca_path.display().to_string(),
                pem,
            }),
        }
    }

    /// Forces a renewal of the set holding `host` (every managed set without one) and waits
    /// until it was attempted; returns the report afterwards.
    pub async fn renew(&self, host: Option<&str>) -> Result<CertsReport> {
        let ids: Vec<String> = {
            let mut sets = lock(&self.shared.sets);
            let ids: Vec<String> =
                sets.iter()
                    .filter(|(_, s)| !s.stale)
                    .filter(|(_, s)| {
                        host.is_none_or(|h| {
                            s.wanted.names.iter().any(|n| {
                                n == h || dockhand_config::covers(std::slice::from_ref(n), h)
                            })
                        })
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
            for id in &ids {
                if let Some(s) = sets.get_mut(id) {
                    s.forced = true;
                }
            }
            ids
        };
        if ids.is_empty() {
            let file = host.and_then(|h| {
                self.shared
                    .files
                    .iter()
                    .find(|f| dockhand_config::covers(&f.info.names, h))
            });
            return Err(match (host, file) {
                (Some(h), Some(f)) => AgentError::usage(format!(
                    "the certificate of {h} comes from the file {}: replace the file and restart the agent",
                    f.info.cert
                )),
                (Some(h), None) => AgentError::not_found(format!(
                    "no certificate is managed for {h}; `dockhand certs` lists the hosts"
                )),
                (None, _) => AgentError::not_found(
                    "no certificate is managed by the agent (HTTPS off, or every host has a certificate file)",
                ),
            });
        }
        self.shared.wake.notify_one();
        let deadline = tokio::time::Instant::now()
            + ORDER_TIMEOUT * ids.len() as u32
            + Duration::from_secs(30);
        loop {
            let pending = {
                let sets = lock(&self.shared.sets);
                ids.iter().any(|id| sets.get(id).is_some_and(|s| s.forced))
            };
            if !pending {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AgentError::runtime(
                    "the renewal did not finish in time; `dockhand events` shows what happened",
                ));
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(self.report())
    }

    /// The expiry notices due now (14, 7 and 3 days before the end, and at the end), each
    /// given once per certificate.
    fn expiry_notices(&self, now: i64) -> Vec<(EventLevel, String)> {
        let mut out = Vec::new();
        {
            let mut given = lock(&self.shared.file_notices);
            for f in &self.shared.files {
                let last = given
                    .get(&f.info.cert)
                    .filter(|(for_end, _)| *for_end == f.not_after)
                    .map(|(_, days)| *days);
                if let Some(days) = plan::notice_due(f.not_after, now, last) {
                    given.insert(f.info.cert.clone(), (f.not_after, days));
                    out.push(notice(
                        &format!("certificate {}", f.info.cert),
                        f.not_after,
                        now,
                        days,
                        "replace the file and restart the agent".into(),
                    ));
                }
            }
        }
        let mut sets = lock(&self.shared.sets);
        for set in sets.values_mut() {
            let Some(c) = &set.current else { continue };
            let end = c.loaded.not_after;
            let last = set
                .record
                .notified
                .filter(|_| set.record.notified_for == Some(end));
            if let Some(days) = plan::notice_due(end, now, last) {
                let why = match &set.record.last_error {
                    Some(e) => format!("automatic renewal keeps failing ({e}); `dockhand certs` shows the next attempt"),
                    None => "automatic renewal has not replaced it yet; `dockhand certs renew` tries now".into(),
                };
                out.push(notice(
                    &format!("certificate for {}", set.wanted.names.join(", ")),
                    end,
                    now,
                    days,
                    why,
                ));
                set.record.notified = Some(days);
                set.record.notified_for = Some(end);
                let _ = set.files.write_record(&set.record);
            }
        }
        out
    }
}

fn notice(
    what: &str,
    not_after: i64,
    now: i64,
    days: i64,
    what_to_do: String,
) -> (EventLevel, String) {
    if days == 0 {
        return (
            EventLevel::Error,
            format!(
                "{what} expired on {}: HTTPS clients refuse it; {what_to_do}",
                rfc3339(not_after)
            ),
        );
    }
    let left = (not_after - now) / 86_400;
    let when = if left == 0 {
        "in less than a day".to_string()
    } else {
        format!("in {left} day(s)")
    };
    let level = if days <= 3 {
        EventLevel::Error
    } else {
        EventLevel::Warn
    };
    (
        level,
        format!(
            "{what} expires {when} ({}); {what_to_do}",
            rfc3339(not_after)
        ),
    )
}

/// Checks the served certificates' dates twice a day (and at start when a check was
/// missed), recording an event at 14, 7 and 3 days before the end of each.
pub fn watch_expiry(scheduler: &Scheduler, events: &Events, handle: &CertHandle) {
    let (events, handle) = (events.clone(), handle.clone());
    scheduler.add(Job {
        name: "certificate-expiry".into(),
        schedule: Schedule::Every(CHECK_EVERY),
        catch_up: true,
        timeout: Duration::from_secs(10),
        run: Arc::new(move || {
            let (events, handle) = (events.clone(), handle.clone());
            Box::pin(async move {
                let notices = handle.expiry_notices(unix_now());
                for (level, message) in &notices {
                    events.record(*level, EventKind::Certificate, None, None, message);
                }
                Ok(format!("certificates checked, {} notice(s)", notices.len()))
            })
        }),
    });
}

/// Why an attempt failed.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
    failed: Vec<(String, ChallengeKind)>,
}

impl Failure {
    fn message(m: impl Into<String>) -> Failure {
        Failure {
            message: m.into(),
            retry_after: None,
            failed: Vec::new(),
        }
    }
}

impl From<AgentError> for Failure {
    fn from(e: AgentError) -> Failure {
        Failure::message(e.message())
    }
}

fn wire_source(s: Source) -> CertSource {
    match s {
        Source::Acme => CertSource::Acme,
        Source::LocalCa => CertSource::LocalCa,
    }
}

/// The issuer's organization or common name, from the certificate's chain.
fn issuer_of(c: &LoadedCertificate) -> Option<String> {
    let der = c.key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let issuer = cert.issuer();
    let name = issuer
        .iter_common_name()
        .chain(issuer.iter_organization())
        .find_map(|a| a.as_str().ok().map(String::from));
    name
}

/// The CA's renewal window for the certificate in `pem` (RFC 9773), when it offers one:
/// (start, end, when to ask again).
async fn acme_renewal_window(
    layout: &StateLayout,
    acme_settings: &dockhand_config::AcmeSettings,
    pem: &str,
) -> Option<(i64, i64, Option<Duration>)> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    let serial = cert.tbs_certificate.raw_serial().to_vec();
    let id = instant_acme::CertificateIdentifier::new(
        rustls_pki_types::Der::from_slice(&aki),
        rustls_pki_types::Der::from_slice(&serial),
    );
    let http = acme::Http::new(acme_settings.ca.as_deref()).ok()?;
    let bytes = std::fs::read(layout.acme_account(&acme_settings.directory)).ok()?;
    let credentials: instant_acme::AccountCredentials = serde_json::from_slice(&bytes).ok()?;
    let ask = async {
        let account = instant_acme::Account::builder_with_http(Box::new(http))
            .from_credentials(credentials)
            .await
            .ok()?;
        account.renewal_info(&id).await.ok()
    };
    // The CA may not offer renewal information (pebble, older CAs): two thirds then.
    let (info, retry) = tokio::time::timeout(Duration::from_secs(60), ask)
        .await
        .ok()??;
    let window = info.suggested_window;
    Some((
        window.start.unix_timestamp(),
        window.end.unix_timestamp(),
        Some(retry),
    ))
}

/// The first retry's delay after a failed order (doubling from there, with jitter).
pub(crate) fn retry_base() -> Duration {
    // Debug builds (the tests) may shorten the back-off; release builds never read it.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("DOCKHAND_ACME_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    RETRY_BASE
}

pub(crate) fn unix_now() -> i64 {
    crate::clock::unix_secs() as i64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
