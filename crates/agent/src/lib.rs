//! The Dockhand agent: the daemon that owns a host's app.
//!
//! It supervises the app's instances through the runtime, fronts them with the proxy, probes
//! their health, performs deploys and rollbacks, records everything in the state database and
//! answers clients on its Unix socket. `dockhand agent` runs it as a service; `dockhand up`
//! runs it in the foreground for one project directory.

mod containers;
mod deploy;
mod exec;
mod health;
mod instances;
mod lock;
mod logs;
pub mod preflight;
mod routes;
mod server;
mod status;
mod tls;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use dockhand_api::{ApiError, DeployReport, ErrorCode, Progress};
use dockhand_config::{AppConfig, LoadOptions};
use dockhand_proxy::{CertStore, HttpsConfig, Proxy, ProxyConfig, ProxyHandle, RouteTable};
use dockhand_runtime::{LogRotation, ProcessRuntime};
use dockhand_state::{EventLevel, Store};
use tokio::sync::watch;

pub use health::{probe, ProbeKind, ProbePlan};
pub use instances::LiveInstance;

/// How the agent treats the configuration file when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Deploy the configuration only if no release was ever deployed (`dockhand agent`).
    DeployIfNoRelease,
    /// Deploy the configuration if it differs from the current release (`dockhand up`).
    Reload,
}

/// Everything the agent needs to start.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub socket_path: PathBuf,
    /// `Some(group)` on a server: the socket is `root:group 0660`; `None`: owner only (0600).
    pub socket_group: Option<String>,
    pub start_mode: StartMode,
}

impl AgentOptions {
    /// Options for a project directory: state in `<dir>/.dockhand`.
    pub fn for_project(config_path: &Path, state_dir: &Path, start_mode: StartMode) -> Self {
        AgentOptions {
            config_path: config_path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            socket_path: state_dir.join(dockhand_api::SOCKET_NAME),
            socket_group: None,
            start_mode,
        }
    }
}

/// The signals the agent obeys, installed before it starts so that a Ctrl-C during the
/// startup deploy is not the default (instant) death but a clean stop once started.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Call inside the runtime, before [`Agent::start`].
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Where progress of a long operation goes (a socket client, or the terminal for `up`).
pub type Sink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// The running agent. Shared behind an `Arc` by the socket server, the prober tasks and the
/// signal loop.
pub struct Agent {
    opts: AgentOptions,
    agent_id: String,
    started: Instant,
    started_at: String,
    store: Store,
    runtime: ProcessRuntime,
    proxy: ProxyHandle,
    /// What `status` says about the certificates the proxy serves.
    certificates: Mutex<Vec<dockhand_api::CertificateInfo>>,
    /// The release that serves and its instances.
    live: Mutex<Option<instances::ActiveRelease>>,
    /// Every instance the agent has started and not yet stopped, by id.
    registry: Mutex<HashMap<String, LiveInstance>>,
    lock: lock::DeployLock,
    /// Resolved secret values, to redact from everything the agent reports.
    secret_values: Mutex<Vec<String>>,
    /// The Docker Engine, connected when something needs containers.
    docker: tokio::sync::Mutex<Option<dockhand_runtime::ContainerRuntime>>,
    /// Copies of the database containers' output into their log files, by database.
    db_logs: Mutex<HashMap<String, (String, dockhand_runtime::DatabaseLogs)>>,
    shutdown: watch::Sender<bool>,
}

impl Agent {
    /// Starts the agent: recovers the state, reaps orphans of a previous run, starts the proxy
    /// and the last committed release, opens the socket, and (per `start_mode`) deploys the
    /// configuration. Progress of that deploy goes to `sink`; its report is returned with the
    /// agent (`None`: nothing was deployed).
    pub async fn start(
        opts: AgentOptions,
        sink: Sink<'_>,
    ) -> anyhow::Result<(Arc<Agent>, Option<DeployReport>)> {
        create_private_dir(&opts.state_dir)?;
        create_private_dir(&opts.state_dir.join("logs"))?;
        let state_dir = opts
            .state_dir
            .canonicalize()
            .with_context(|| format!("failed to resolve {}", opts.state_dir.display()))?;
        let agent_id = agent_id(&state_dir);
        server::refuse_if_running(&opts.socket_path)?;

        let db_path = state_dir.join("state.db");
        let store = Store::open(&db_path).with_context(|| "failed to open the state database")?;
        restrict_file(&db_path)?;
        let recovery = store.recover()?;
        let reaped = dockhand_runtime::reap_orphans(&agent_id);
        if recovery != Default::default() || !reaped.is_empty() {
            let msg = format!(
                "recovered from an unclean stop: {} deployment(s) aborted, {} release(s) marked failed, {} leftover process(es) killed",
                recovery.aborted_deployments, recovery.failed_releases, reaped.len()
            );
            tracing::warn!("{msg}");
            store.record_event(EventLevel::Warn, "recovery", None, None, &msg)?;
        }

        // The configuration to serve first: the current release's, else the file's.
        let current = store.current_release()?;
        let current_config: Option<AppConfig> = match &current {
            Some(r) => Some(serde_json::from_str(&r.config).with_context(|| {
                format!("release {} in the state database is unreadable", r.id)
            })?),
            None => None,
        };
        let (proxy, certificates) = match &current_config {
            Some(c) => start_proxy(c)?,
            None => start_proxy(
                &load_config(&opts.config_path).map_err(|e| anyhow::anyhow!("{}", e.message))?,
            )?,
        };

        let (shutdown, _) = watch::channel(false);
        let agent = Arc::new(Agent {
            runtime: ProcessRuntime::new(&agent_id, LogRotation::default()),
            opts,
            agent_id,
            started: Instant::now(),
            started_at: dockhand_state::now(),
            store,
            proxy,
            certificates: Mutex::new(certificates.info),
            live: Mutex::new(None),
            registry: Mutex::new(HashMap::new()),
            lock: lock::DeployLock::default(),
            secret_values: Mutex::new(Vec::new()),
            docker: tokio::sync::Mutex::new(None),
            db_logs: Mutex::new(HashMap::new()),
            shutdown,
        });
        for problem in certificates.problems {
            tracing::error!("{problem}");
            agent.event(EventLevel::Error, "proxy", None, None, &problem);
            sink(Progress {
                step: "error".into(),
                message: format!("{problem}; fix it and restart the agent"),
                service: None,
            });
        }
        agent.reap_containers(current_config.as_ref()).await;

        if let (Some(release), Some(config)) = (current, current_config) {
            // Not fatal: the agent stays up so that a fixed configuration can be deployed.
            if let Err(e) = agent.restore(release.id, config).await {
                sink(Progress {
                    step: "error".into(),
                    message: format!("{e:#}; fix the problem and run `dockhand deploy`"),
                    service: None,
                });
            }
        }
        server::spawn(agent.clone()).await?;
        agent.event(EventLevel::Info, "agent", None, None, "agent started");

        let should_deploy = match agent.opts.start_mode {
            StartMode::DeployIfNoRelease => agent.current_release_id().is_none(),
            StartMode::Reload => true,
        };
        let mut report = None;
        if should_deploy {
            match agent.reload("startup", sink).await {
                Ok(r) => report = r,
                Err(e) if agent.current_release_id().is_some() => {
                    sink(Progress {
                        step: "error".into(),
                        message: format!("{}; still serving the current release", e.message),
                        service: None,
                    });
                }
                Err(e) => {
                    agent.shutdown().await;
                    return Err(anyhow::anyhow!("{}", e.message));
                }
            }
        }
        Ok((agent, report))
    }

    /// Whether a release serves (its instances run), as opposed to an agent waiting for a
    /// first successful deploy.
    pub fn is_serving(&self) -> bool {
        self.current_release_id().is_some()
    }

    /// Deploys the configuration file as a new release, even if unchanged.
    pub async fn deploy(
        self: &Arc<Self>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<DeployReport, ApiError> {
        let _guard = self.lock.acquire("deploy", requested_by)?;
        let (config, warnings) = load_config_with_warnings(&self.opts.config_path)?;
        let mut report = deploy::deploy_new(self, config, requested_by, "deploy", sink).await?;
        report.warnings.extend(warnings);
        Ok(report)
    }

    /// Re-reads the configuration file through the startup path and deploys it when it
    /// differs from the current release. `Ok(None)`: nothing changed.
    pub async fn reload(
        self: &Arc<Self>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<Option<DeployReport>, ApiError> {
        let _guard = self.lock.acquire("reload", requested_by)?;
        let config = load_config(&self.opts.config_path)?;
        if let Some(current) = self.store.current_release().map_err(state_error)? {
            if current.config == config_json(&config) {
                sink(Progress {
                    step: "unchanged".into(),
                    message: format!(
                        "configuration unchanged: release {} keeps serving",
                        current.id
                    ),
                    service: None,
                });
                return Ok(None);
            }
        }
        deploy::deploy_new(self, config, requested_by, "reload", sink)
            .await
            .map(Some)
    }

    /// Returns to a retained release (default: the previous one) through the same gate.
    pub async fn rollback(
        self: &Arc<Self>,
        release: Option<i64>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<DeployReport, ApiError> {
        let _guard = self.lock.acquire("rollback", requested_by)?;
        deploy::rollback(self, release, requested_by, sink).await
    }

    /// Stops accepting clients, drains the proxy and stops every instance.
    pub async fn shutdown(self: &Arc<Self>) {
        if self.shutdown.send_replace(true) {
            return;
        }
        let grace = self
            .live_config()
            .map(|c| c.proxy.drain_timeout)
            .unwrap_or(std::time::Duration::from_secs(10));
        let _ = std::fs::remove_file(&self.opts.socket_path);
        self.proxy.shutdown(grace).await;
        let all: Vec<LiveInstance> = self.registry_lock().drain().map(|(_, v)| v).collect();
        instances::stop_all(&all).await;
        for inst in &all {
            let _ = self.store.remove_instance(&inst.id);
        }
        self.event(EventLevel::Info, "agent", None, None, "agent stopped");
    }

    /// Waits for SIGTERM/SIGINT (then shuts down) while SIGHUP reloads.
    pub async fn run_until_signal(
        self: &Arc<Self>,
        signals: Signals,
        sink: Sink<'_>,
    ) -> anyhow::Result<()> {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = signals;
        let mut stopped = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = async { let _ = stopped.wait_for(|s| *s).await; } => return Ok(()),
                _ = hup.recv() => {
                    if let Err(e) = self.reload("SIGHUP", sink).await {
                        sink(Progress { step: "error".into(), message: e.message, service: None });
                    }
                }
            }
        }
        sink(Progress {
            step: "shutdown".into(),
            message: "stopping: draining requests and stopping services".into(),
            service: None,
        });
        self.shutdown().await;
        Ok(())
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The certificates the proxy serves, as `status` shows them.
    pub fn certificates(&self) -> Vec<dockhand_api::CertificateInfo> {
        self.certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The proxy's bound HTTPS address, when it serves HTTPS.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.proxy.https_addr()
    }

    /// Where the current release is reachable.
    pub fn urls(&self) -> Vec<String> {
        self.live_config()
            .map(|c| routes::urls(&c, self.proxy_addr(), self.https_addr()))
            .unwrap_or_default()
    }

    pub fn socket_path(&self) -> &Path {
        &self.opts.socket_path
    }

    fn current_release_id(&self) -> Option<i64> {
        self.live_lock().as_ref().map(|r| r.id)
    }

    fn live_config(&self) -> Option<AppConfig> {
        self.live_lock().as_ref().map(|r| r.config.clone())
    }

    fn live_lock(&self) -> std::sync::MutexGuard<'_, Option<instances::ActiveRelease>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn registry_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveInstance>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the instances of the committed release after an agent start and routes to them
    /// as soon as they pass their health checks.
    async fn restore(self: &Arc<Self>, release: i64, config: AppConfig) -> anyhow::Result<()> {
        let deployment = 0;
        let quiet = |_: Progress| {};
        // The databases and images first; a failure there is reported like one of the start.
        let started =
            match crate::containers::prepare_release(self, &config, release, false, &quiet).await {
                Ok((images, _)) => {
                    instances::start_release(self, &config, release, deployment, &images).await
                }
                Err(e) => Err((Vec::new(), e)),
            };
        let started = match started {
            Ok(v) => v,
            Err((partial, e)) => {
                instances::stop_all(&partial).await;
                self.event(
                    EventLevel::Error,
                    "restore",
                    Some(release),
                    None,
                    &format!("could not start release {release}: {}", e.message),
                );
                return Err(anyhow::anyhow!(
                    "could not start release {release}: {}",
                    e.message
                ));
            }
        };
        let table = routes::build_table(&config, &instances::backends_by_service(&started))
            .map_err(|e| anyhow::anyhow!("routing table of release {release}: {e}"))?;
        self.proxy.set_routes(table);
        *self.live_lock() = Some(instances::ActiveRelease {
            id: release,
            config,
            instances: started,
        });
        self.event(
            EventLevel::Info,
            "restore",
            Some(release),
            None,
            &format!("release {release} restarted after agent start"),
        );
        Ok(())
    }

    /// Removes the service containers a previous run of this agent left (databases stay),
    /// when the Docker Engine is reachable or the app needs it.
    async fn reap_containers(self: &Arc<Self>, config: Option<&AppConfig>) {
        let needed = config.is_some_and(AppConfig::uses_containers);
        let host = dockhand_runtime::docker_host();
        let socket = host.strip_prefix("unix://").unwrap_or(&host);
        if !needed && !Path::new(socket).exists() {
            return;
        }
        let rt = match self.containers().await {
            Ok(rt) => rt,
            Err(e) => {
                if needed {
                    tracing::warn!("{}", e.message);
                }
                return;
            }
        };
        match rt.remove_orphans().await {
            Ok(removed) if !removed.is_empty() => {
                let msg = format!(
                    "removed {} container(s) left by the previous run: {}",
                    removed.len(),
                    removed.join(", ")
                );
                self.event(EventLevel::Warn, "recovery", None, None, &msg);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not look for leftover containers: {e}"),
        }
    }

    /// Copies a database container's output into its log file (once per container).
    fn follow_database(&self, rt: &dockhand_runtime::ContainerRuntime, name: &str, id: &str) {
        let mut logs = self.db_logs.lock().unwrap_or_else(|p| p.into_inner());
        if logs.get(name).is_some_and(|(known, _)| known == id) {
            return;
        }
        let path = containers::database_log(self, name);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match rt.follow_database_logs(id, &path) {
            Ok(follow) => {
                logs.insert(name.to_string(), (id.to_string(), follow));
            }
            Err(e) => tracing::warn!("cannot copy the output of database `{name}`: {e}"),
        }
    }

    /// Records an event (redacted) and logs it.
    fn event(
        &self,
        level: EventLevel,
        kind: &str,
        release: Option<i64>,
        service: Option<&str>,
        message: &str,
    ) {
        let message = self.redact(message);
        match level {
            EventLevel::Error => tracing::error!(kind, release, service, "{message}"),
            EventLevel::Warn => tracing::warn!(kind, release, service, "{message}"),
            EventLevel::Info => tracing::info!(kind, release, service, "{message}"),
        }
        if let Err(e) = self
            .store
            .record_event(level, kind, release, service, &message)
        {
            tracing::error!("failed to record an event: {e}");
        }
    }

    /// Replaces every known secret value in `text` with `******`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secret_values.lock().unwrap_or_else(|p| p.into_inner());
        redact_with(text, &secrets)
    }
}

fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "******");
        }
    }
    out
}

/// Loads and validates the configuration file, mapping failure to an API error whose message
/// is the rendered diagnostics.
fn load_config(path: &Path) -> Result<AppConfig, ApiError> {
    load_config_with_warnings(path).map(|(config, _)| config)
}

/// Like [`load_config`], also returning the configuration's warnings as one line each.
fn load_config_with_warnings(path: &Path) -> Result<(AppConfig, Vec<String>), ApiError> {
    match dockhand_config::load(path, &LoadOptions::from_process_env()) {
        Ok(loaded) => {
            let warnings = loaded
                .warnings
                .iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}: {}",
                        d.file.display(),
                        d.line,
                        d.column,
                        d.message
                    )
                })
                .collect();
            Ok((loaded.config, warnings))
        }
        Err(e) => {
            Err(ApiError::new(ErrorCode::InvalidConfig, e.to_string()).with_details(&e.diagnostics))
        }
    }
}

fn config_json(config: &AppConfig) -> String {
    serde_json::to_string(config).unwrap_or_default()
}

/// A state database failure: the machine's fault (disk full…) is said as such, anything else
/// is a bug.
fn state_error(e: dockhand_state::StateError) -> ApiError {
    if e.is_environmental() {
        ApiError::new(
            ErrorCode::Failed,
            format!("{e}; free space on the disk holding the state directory (or fix its permissions) and try again"),
        )
    } else {
        internal(e)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("internal error: {e} (this is a bug in dockhand; please report it)"),
    )
}

/// Starts the proxy of `config` (with its certificates loaded from their files) and
/// returns it with what was loaded; `[proxy]` is read only here, at agent start.
fn start_proxy(config: &AppConfig) -> anyhow::Result<(ProxyHandle, tls::LoadedCertificates)> {
    let p = &config.proxy;
    let defaults = ProxyConfig::default();
    let mut certificates = tls::load(p, std::time::SystemTime::now());
    let https = p.https_listen.map(|listen| HttpsConfig {
        listen,
        certificates: Arc::new(CertStore::new(std::mem::take(&mut certificates.serve))),
    });
    let proxy_config = ProxyConfig {
        listen: p.listen,
        https,
        workers: p.workers.unwrap_or(defaults.workers),
        max_request_body: p.max_request_body,
        client_header_timeout: p.client_header_timeout,
        upstream_connect_timeout: p.upstream_connect_timeout,
        upstream_response_timeout: p.upstream_response_timeout,
        ..defaults
    };
    let proxy = Proxy::start(proxy_config, RouteTable::empty()).with_context(|| {
        let addresses = match p.https_listen {
            Some(https) => format!("{} (HTTP) or {https} (HTTPS)", p.listen),
            None => p.listen.to_string(),
        };
        format!(
            "failed to listen on {addresses} for the proxy; is another server using it? set `[proxy] listen` / `https_listen` in {}",
            config.config_path.display()
        )
    })?;
    Ok((proxy, certificates))
}

/// A stable id for the agent of one state directory, carried in the environment of every
/// process it starts so a later agent can find them.
fn agent_id(state_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to restrict {} to its owner", dir.display()))
}

fn restrict_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("failed to restrict {} to its owner", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redaction_replaces_every_secret() {
        let s = vec!["hunter2".to_string(), "ab".to_string()];
        assert_eq!(
            super::redact_with("pw=hunter2 hunter2 ab", &s),
            "pw=****** ****** ab"
        );
    }

    #[test]
    fn agent_id_is_stable_and_distinct() {
        let a = super::agent_id(std::path::Path::new("/a"));
        assert_eq!(a, super::agent_id(std::path::Path::new("/a")));
        assert_ne!(a, super::agent_id(std::path::Path::new("/b")));
        assert_eq!(a.len(), 12);
    }
}
