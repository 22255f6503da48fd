//! [`Agent`]: starts the subsystems in order, restarts the committed release, and is what
//! the socket server dispatches operations to (deploy, reload, rollback, db upgrade, status,
//! logs, exec). It holds narrow handles, not state of its own: the fleet, the store, the
//! events and the runtimes are reached through `deploy::Deployer`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dockhand_api::{DeployReport, Progress};
use dockhand_config::{AppConfig, LoadOptions};
use dockhand_state::Store;
use tokio::sync::watch;

use crate::certs::{CertHandle, CertManager};
use crate::deploy::{self, DeployKind, DeployOutcome, Deployer, Failpoint};
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::footprint;
use crate::layout::{self, StateLayout};
use crate::lock::DeployLock;
use crate::prober::Prober;
use crate::proxy::ProxyService;
use crate::runtimes::Runtimes;
use crate::scheduler::Scheduler;
use crate::secrets::Redactor;
use crate::server::{self, Server};
use crate::subsystem::{SubsystemState, Subsystems};
use crate::{housekeeping, routes, wire, Sink};

/// How the agent treats the configuration file when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Deploy the configuration only if no release was ever deployed (`dockhand agent`).
    DeployIfNoRelease,
    /// Deploy the configuration if it differs from the current release (`dockhand up`).
    Reload,
    /// Never deploy at start, only restart the committed release (`dockhand agent
    /// --no-initial-deploy`, as `setup` installs it: a remote deploy asks for the first one).
    Never,
}

/// At start, the longest the proxy holds connections (in the listen backlog) while the
/// committed release's instances come back; after it, requests get the proxy's own answers.
const OPEN_AT_THE_LATEST: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the agent needs to start.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub socket_path: PathBuf,
    /// `Some(group)` on a server: the socket is `root:group 0660`; `None`: owner only (0600).
    pub socket_group: Option<String>,
    pub start_mode: StartMode,
    /// Listening sockets handed over by the service manager (socket activation).
    pub handed: crate::activation::Handed,
}

impl AgentOptions {
    /// Options for a project directory: state in `<dir>/.dockhand`.
    pub fn for_project(config_path: &Path, state_dir: &Path, start_mode: StartMode) -> Self {
        AgentOptions {
            config_path: config_path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            socket_path: StateLayout::at(state_dir).default_socket(),
            socket_group: None,
            start_mode,
            handed: Default::default(),
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

/// The running agent, shared behind an `Arc` by the socket server and the signal loop.
pub struct Agent {
    opts: AgentOptions,
    pub(crate) agent_id: String,
    pub(crate) started: Instant,
    pub(crate) started_at: String,
    pub(crate) deployer: Deployer,
    /// The certificates the proxy serves (files, ACME, local CA), for `status` and `certs`.
    pub(crate) certs: CertHandle,
    pub(crate) lock: DeployLock,
    pub(crate) backups: crate::backups::Backups,
    pub(crate) tasks: crate::tasks::Tasks,
    pub(crate) updater: crate::update::Updater,
    pub(crate) monitor: crate::monitor::MonitorHandle,
    pub(crate) alerts: crate::alerts::AlertHandle,
    /// Makes the dashboard's login links; `None` when `[dashboard]` is off.
    pub(crate) dashboard: Option<dockhand_dashboard::DashboardHandle>,
    subsystems: tokio::sync::Mutex<Subsystems>,
    shutdown: watch::Sender<bool>,
    /// The project's app runs on a `[cluster]`: this agent watches the swarm, deploys nothing.
    cluster: bool,
}

impl Agent {
    /// Starts the agent: opens the state, starts the proxy, the health prober and the
    /// scheduler, cleans up after a previous run and restarts the committed release, opens
    /// the socket, and (per `start_mode`) deploys the configuration. Progress of that deploy
    /// goes to `sink`; its report is returned with the agent (`None`: nothing was deployed).
    pub async fn start(
        opts: AgentOptions,
        sink: Sink<'_>,
    ) -> Result<(Arc<Agent>, Option<DeployReport>)> {
        let layout = Arc::new(StateLayout::create(&opts.state_dir)?);
        let agent_id = agent_id(layout.root());
        server::refuse_if_running(&opts.socket_path)?;
        let store = Arc::new(
            Store::open(&layout.database())
                .map_err(|e| AgentError::from(e).context("failed to open the state database"))?,
        );
        layout::restrict_file(&layout.database())?;

        // The proxy serves the committed release's [proxy] table, else the file's.
        let proxy_config: AppConfig = match store.current_release()? {
            Some(r) => serde_json::from_str(&r.config).map_err(|e| {
                AgentError::internal(format!(
                    "release {} in the state database is unreadable: {e}",
                    r.id
                ))
            })?,
            None => load_config(&opts.config_path)?.0,
        };
        // A `[cluster]` app runs on the swarm: this agent only watches its nodes and alerts.
        let cluster = proxy_config.cluster.is_some();
        let proxy_config = if cluster {
            watch_only(proxy_config)
        } else {
            proxy_config
        };
        let events = Events::new(store.clone(), Redactor::default());
        let fleet = Fleet::default();
        let (proxy, certificates) = ProxyService::bind(
            &proxy_config,
            fleet.clone(),
            &layout.access_log(),
            &opts.handed,
        )?;
        let (cert_manager, certs) = CertManager::new(
            layout.clone(),
            events.clone(),
            proxy.handle().clone(),
            fleet.clone(),
            Arc::new(proxy_config.clone()),
            &certificates,
        );
        let prober = Prober::new(events.clone());
        let (hook_listener, hook_backend) = crate::update::webhook::bind()?;
        let scheduler = Scheduler::new(store.clone(), events.clone());
        let (monitor, monitor_handle) = crate::monitor::Monitor::new(
            crate::monitor::settings(&proxy_config),
            fleet.clone(),
            proxy.handle().clone(),
            certs.clone(),
            events.clone(),
            layout.clone(),
            metrics_route_token(&proxy_config, &events),
        );
        let dashboard_route = crate::dashboard::bind_route(&proxy_config)?;
        let deployer = Deployer {
            monitor: Some(monitor_handle.clone()),
            canary: Default::default(),
            layout,
            store,
            events: events.clone(),
            runtimes: Runtimes::new(&agent_id),
            proxy: proxy.handle().clone(),
            fleet,
            prober: prober.clone(),
            failpoint: Failpoint::from_env(),
            webhook: Some(hook_backend),
            dashboard: dashboard_route.as_ref().map(|(_, b)| b.clone()),
        };
        let state = crate::maintenance::load(&deployer.layout);
        if let Err(e) = crate::maintenance::apply(
            &deployer.layout,
            &deployer.proxy,
            &state,
            proxy_config.proxy.maintenance_page.as_deref(),
        ) {
            tracing::warn!("maintenance mode: {}", e.message());
        }
        housekeeping::register(&scheduler, &deployer);
        crate::certs::watch_expiry(&scheduler, &events, &certs);
        let backups = crate::backups::Backups::new(&deployer, &scheduler);
        let tasks = if cluster {
            // The scheduled tasks run as Swarm jobs on this manager's Engine.
            crate::tasks::Tasks::on_swarm(
                &deployer,
                &scheduler,
                Arc::new(proxy_config.clone()),
                crate::tasks::OnSwarm {
                    app: proxy_config.app.clone(),
                    engine: crate::cluster_watch::ClusterWatch::engine_from_env(),
                },
            )
        } else {
            crate::tasks::Tasks::new(&deployer, &scheduler)
        };
        // One deploy lock for the CLI's requests, the update watcher and the release watch.
        let lock = DeployLock::default();
        let updater = crate::update::Updater::new(&deployer, &lock, &backups, &opts.config_path)
            .with_webhook(hook_listener)
            .watch_only(cluster.then(|| opts.config_path.clone()));
        let mut subsystems = Subsystems::new(events.clone());
        subsystems.start(Arc::new(proxy)).await?;
        subsystems.start(Arc::new(cert_manager)).await?;
        subsystems.start(Arc::new(prober)).await?;
        subsystems.start(Arc::new(scheduler)).await?;
        subsystems.start(Arc::new(backups.clone())).await?;
        subsystems.start(Arc::new(tasks.clone())).await?;
        subsystems.start(Arc::new(updater.clone())).await?;
        let (mut alerter, alerts) = crate::alerts::Alerter::new(
            events.clone(),
            deployer.fleet.clone(),
            monitor_handle.clone(),
            backups.clone(),
            deployer.layout.clone(),
            Arc::new(proxy_config.clone()),
        );
        if cluster {
            let engine = crate::cluster_watch::ClusterWatch::engine_from_env();
            let (watch, nodes) =
                crate::cluster_watch::ClusterWatch::new(&engine, &proxy_config.app, events.clone());
            subsystems.start(Arc::new(watch)).await?;
            alerter = alerter.with_nodes(nodes);
        }
        subsystems.start(Arc::new(monitor)).await?;
        subsystems.start(Arc::new(alerter)).await?;
        subsystems
            .start(Arc::new(crate::watch::ReleaseWatch::new(
                deployer.clone(),
                lock.clone(),
                monitor_handle.clone(),
            )))
            .await?;
        let (dashboard_on, dashboard_settings) =
            crate::dashboard::settings(&proxy_config, deployer.proxy.https_addr());
        let dashboard =
            dashboard_on.then(|| dockhand_dashboard::DashboardHandle::new(dashboard_settings));
        let (shutdown, _) = watch::channel(false);
        let agent = Arc::new(Agent {
            opts,
            agent_id,
            started: Instant::now(),
            started_at: dockhand_state::now(),
            deployer,
            certs,
            lock,
            backups,
            tasks,
            updater,
            monitor: monitor_handle,
            alerts,
            dashboard,
            subsystems: tokio::sync::Mutex::new(subsystems),
            shutdown,
            cluster,
        });
        for problem in certificates.problems {
            events.error(EventKind::Proxy, None, None, &problem);
            sink(Progress {
                step: "error".into(),
                message: format!("{problem}; fix it and restart the agent"),
                service: None,
            });
        }
        let route_listener = dashboard_route.map(|(l, _)| l);
        match agent.finish_start(sink, route_listener).await {
            Ok(report) => Ok((agent, report)),
            Err(e) => {
                agent.shutdown().await;
                Err(e)
            }
        }
    }

    /// The part of the start after the subsystems run: what a failure of stops them again.
    async fn finish_start(
        self: &Arc<Self>,
        sink: Sink<'_>,
        dashboard_route: Option<std::net::TcpListener>,
    ) -> Result<Option<DeployReport>> {
        // The proxy accepts once the committed release is back; a restart that takes long
        // (health gates) opens it at the latest after OPEN_AT_THE_LATEST, to answer 503
        // rather than keep clients waiting.
        let proxy = self.deployer.proxy.clone();
        let open_by = tokio::time::Instant::now() + OPEN_AT_THE_LATEST;
        let open_anyway = tokio::spawn(async move {
            tokio::time::sleep_until(open_by).await;
            proxy.open();
        });
        let restarted = self.deployer.restart(sink).await;
        // Its instances run; each routed service waits for its first passed health check.
        while !self.deployer.fleet.backends_ready() && tokio::time::Instant::now() < open_by {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        open_anyway.abort();
        self.deployer.proxy.open();
        // Not fatal: the agent stays up so that a fixed configuration can be deployed.
        if let Err(e) = restarted {
            sink(Progress {
                step: "error".into(),
                message: format!("{e}; fix the problem and run `dockhand deploy`"),
                service: None,
            });
        }
        let server = Server::bind(
            self,
            &self.opts.socket_path,
            self.opts.socket_group.as_deref(),
        )?;
        self.subsystems.lock().await.start(Arc::new(server)).await?;
        if let Some(handle) = &self.dashboard {
            let dashboard =
                crate::dashboard::DashboardService::new(self, handle.clone(), dashboard_route);
            self.subsystems
                .lock()
                .await
                .start(Arc::new(dashboard))
                .await?;
        }
        self.deployer
            .events
            .info(EventKind::Agent, None, None, "agent started");

        let should_deploy = match self.opts.start_mode {
            _ if self.cluster => false,
            StartMode::DeployIfNoRelease => !self.is_serving(),
            StartMode::Reload => true,
            StartMode::Never => false,
        };
        if !should_deploy {
            return Ok(None);
        }
        match self.reload("startup", sink).await {
            Ok(report) => Ok(report.map(wire::deploy_report)),
            Err(e) if self.is_serving() => {
                sink(Progress {
                    step: "error".into(),
                    message: format!("{e}; still serving the current release"),
                    service: None,
                });
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a release serves (its instances run), as opposed to an agent waiting for a
    /// first successful deploy.
    pub fn is_serving(&self) -> bool {
        self.deployer.fleet.serving_release().is_some()
    }

    /// Deploys the configuration file as a new release, even if unchanged.
    pub(crate) async fn deploy(
        &self,
        requested_by: &str,
        prebuilt: &BTreeMap<String, String>,
        revision: Option<&str>,
        canary: Option<&dockhand_api::CanaryRequest>,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        self.refuse_on_cluster("deploy")?;
        let _guard = self.lock.acquire("deploy", requested_by)?;
        if let Some(rev) = revision {
            return self.deploy_revision(rev, requested_by, canary, sink).await;
        }
        let (mut config, warnings) = load_config(&self.opts.config_path)?;
        as_canary(&mut config, canary);
        let mut outcome = self
            .deployer
            .deploy_prebuilt(config, DeployKind::Deploy, requested_by, prebuilt, sink)
            .await?;
        outcome.warnings.extend(warnings);
        Ok(outcome)
    }

    /// `dockhand deploy --revision REF`: checks REF out in the project (fetched from the
    /// `[update]` remote when it is not known here), deploys it, and moves the checkout back
    /// when the release fails. The deploy lock is held.
    async fn deploy_revision(
        &self,
        rev: &str,
        requested_by: &str,
        canary: Option<&dockhand_api::CanaryRequest>,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        use crate::update::git;
        let began = Instant::now();
        let project = self
            .opts
            .config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let commit = match git::resolve(&project, rev).await {
            Ok(c) => c,
            Err(e) => {
                let Ok((config, _)) = load_config(&self.opts.config_path) else {
                    return Err(e);
                };
                let Some(update) = config.update else {
                    return Err(e);
                };
                let remote = update.repo.unwrap_or_else(|| "origin".into());
                sink(Progress {
                    step: "fetch".into(),
                    message: format!("fetching {rev} from {remote}"),
                    service: None,
                });
                git::fetch(&project, &remote, rev).await?;
                git::resolve(&project, "FETCH_HEAD").await?
            }
        };
        let previous = git::head(&project).await?;
        sink(Progress {
            step: "checkout".into(),
            message: format!("checking out {}", &commit[..commit.len().min(12)]),
            service: None,
        });
        git::move_to(&project, &commit).await?;
        let fetched = deploy::timing::Timing::since(deploy::timing::Timed::Fetch, None, began);
        let outcome = match load_config(&self.opts.config_path) {
            Ok((mut config, warnings)) => {
                as_canary(&mut config, canary);
                self.deployer
                    .deploy_new(config, DeployKind::Deploy, requested_by, sink)
                    .await
                    .map(|mut o| {
                        o.warnings.extend(warnings);
                        o.steps.insert(0, fetched);
                        o.duration = began.elapsed();
                        o
                    })
            }
            Err(e) => Err(e),
        };
        if !matches!(&outcome, Ok(o) if o.succeeded) {
            let _ = git::move_to(&project, &previous).await;
        }
        outcome
    }

    /// Re-reads the configuration file through the startup path and deploys it when it
    /// differs from the current release. `Ok(None)`: nothing changed.
    pub(crate) async fn reload(
        &self,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<Option<DeployOutcome>> {
        self.refuse_on_cluster("reload")?;
        let _guard = self.lock.acquire("reload", requested_by)?;
        let (config, _) = load_config(&self.opts.config_path)?;
        if let Some(current) = self.deployer.store.current_release()? {
            if current.config == deploy::config_json(&config) {
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
        self.deployer
            .deploy_new(config, DeployKind::Reload, requested_by, sink)
            .await
            .map(Some)
    }

    /// Returns to a retained release (default: the previous one) through the same gate.
    pub(crate) async fn rollback(
        &self,
        release: Option<i64>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<DeployOutcome> {
        self.refuse_on_cluster("rollback")?;
        let _guard = self.lock.acquire("rollback", requested_by)?;
        self.deployer.rollback(release, requested_by, sink).await
    }

    /// A `[cluster]` app is deployed to its swarm by the CLI, never by this agent: every path
    /// that would run it on this host (the socket's and the dashboard's deploy, reload and
    /// rollback, `db upgrade`) is refused.
    fn refuse_on_cluster(&self, what: &str) -> Result<()> {
        if self.cluster {
            return Err(watch_only_refusal(what, &self.opts.config_path));
        }
        Ok(())
    }

    /// `dockhand db upgrade NAME`: recreates the database container from the configuration
    /// file's table, on the same data volume.
    /// Turns maintenance mode on or off (`enable: None`: only reports it).
    pub(crate) fn maintenance(
        &self,
        enable: Option<bool>,
        service: Option<&str>,
        requested_by: &str,
    ) -> Result<dockhand_api::MaintenanceReport> {
        let d = &self.deployer;
        let state = crate::maintenance::load(&d.layout);
        let Some(on) = enable else {
            return Ok(state.report());
        };
        let config = d.fleet.serving_config();
        if let (Some(s), Some(c)) = (service, config.as_ref()) {
            if !c.services.contains_key(s) {
                return Err(crate::error::AgentError::not_found(format!(
                    "no service `{s}` in the serving release; `dockhand status` lists them"
                )));
            }
        }
        let state = state.switch(on, service);
        let page = config
            .as_ref()
            .and_then(|c| c.proxy.maintenance_page.clone());
        crate::maintenance::apply(&d.layout, &d.proxy, &state, page.as_deref())?;
        let what = service.map_or("every service".to_string(), |s| format!("service `{s}`"));
        d.events.info(
            crate::events::EventKind::Maintenance,
            None,
            service,
            &format!(
                "maintenance mode {} for {what} (requested by {requested_by})",
                if on { "on" } else { "off" }
            ),
        );
        Ok(state.report())
    }

    pub(crate) async fn db_upgrade(
        &self,
        database: &str,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<dockhand_api::DbUpgradeReport> {
        self.refuse_on_cluster("db upgrade")?;
        let _guard = self.lock.acquire("db upgrade", requested_by)?;
        let (config, _) = load_config(&self.opts.config_path)?;
        let Some(db) = config.databases.get(database) else {
            let known: Vec<&str> = config.databases.keys().map(String::as_str).collect();
            return Err(AgentError::not_found(if known.is_empty() {
                format!("no database `{database}`: dockhand.toml defines none")
            } else {
                format!("no database `{database}`; databases: {}", known.join(", "))
            }));
        };
        let d = &self.deployer;
        let secrets = crate::secrets::load(&config, d.events.redactor())?;
        let rt = d.runtimes.containers().await?;
        let ops = crate::containers::databases::Ops {
            rt: &rt,
            runtimes: &d.runtimes,
            layout: &d.layout,
            events: &d.events,
            sink,
        };
        let warnings = ops
            .ensure(
                &config,
                db,
                &secrets,
                deploy::plan::DatabaseAction::Recreate,
            )
            .await?;
        let message = format!(
            "database `{database}` runs {} from its current settings",
            db.image
        );
        d.events.info(
            EventKind::Database,
            None,
            Some(database),
            &format!("{message} (requested by {requested_by})"),
        );
        Ok(dockhand_api::DbUpgradeReport {
            database: database.to_string(),
            image: db.image.clone(),
            message,
            warnings,
        })
    }

    /// `dockhand backup …`; a restore holds the deploy lock.
    pub(crate) async fn backup(
        &self,
        req: dockhand_api::BackupRequest,
        sink: Sink<'_>,
    ) -> Result<serde_json::Value> {
        use dockhand_api::BackupRequest as B;
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| AgentError::internal(format!("cannot encode the answer: {e}")))
        };
        match req {
            B::Run {
                source,
                requested_by,
            } => {
                let s = self
                    .backups
                    .run(&format!("manual ({requested_by})"), source.as_deref(), sink)
                    .await?;
                if s.state != dockhand_api::BackupState::Complete {
                    return Err(AgentError::runtime(format!(
                        "backup {} failed: {}",
                        s.id, s.message
                    ))
                    .with_details(&s));
                }
                json(serde_json::to_value(s))
            }
            B::List => json(serde_json::to_value(self.backups.list()?)),
            B::Show { id } => json(serde_json::to_value(self.backups.show(&id)?)),
            B::Verify { id, identity } => {
                let r = self
                    .backups
                    .verify(id.as_deref(), identity.as_deref())
                    .await?;
                if !r.passed {
                    let lines: Vec<String> = r
                        .results
                        .iter()
                        .filter(|l| !l.passed)
                        .map(|l| format!("{} on {}: {}", l.source, l.target, l.message))
                        .collect();
                    return Err(AgentError::runtime(format!(
                        "the restore drill of backup {} failed: {}",
                        r.id,
                        lines.join("; ")
                    ))
                    .with_details(&r));
                }
                json(serde_json::to_value(r))
            }
            B::Prune { dry_run } => json(serde_json::to_value(self.backups.prune(dry_run).await?)),
            B::Extract {
                id,
                source,
                to,
                identity,
                requested_by,
            } => json(serde_json::to_value(
                self.backups
                    .extract(
                        &id,
                        source.as_deref(),
                        &to,
                        identity.as_deref(),
                        &requested_by,
                    )
                    .await?,
            )),
            B::RestoreAt {
                database,
                at,
                identity,
                requested_by,
            } => {
                let _guard = self.lock.acquire("backup restore", &requested_by)?;
                json(serde_json::to_value(
                    self.backups
                        .restore_at(
                            &self.deployer,
                            database.as_deref(),
                            &at,
                            identity.as_deref(),
                            &requested_by,
                            sink,
                        )
                        .await?,
                ))
            }
            B::Restore {
                id,
                source,
                identity,
                requested_by,
            } => {
                let _guard = self.lock.acquire("backup restore", &requested_by)?;
                json(serde_json::to_value(
                    self.backups
                        .restore(
                            &self.deployer,
                            &id,
                            source.as_deref(),
                            identity.as_deref(),
                            &requested_by,
                            sink,
                        )
                        .await?,
                ))
            }
        }
    }

    /// Stops the subsystems (the socket first, the proxy draining last), then every instance.
    pub async fn shutdown(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        self.subsystems.lock().await.stop_all().await;
        let d = &self.deployer;
        let all = d.fleet.take_all();
        deploy::stop_all(&d.prober, &all).await;
        for inst in &all {
            let _ = d.store.remove_instance(&inst.id);
        }
        d.events.info(EventKind::Agent, None, None, "agent stopped");
    }

    /// Waits for SIGTERM/SIGINT (then shuts down) while SIGHUP reloads.
    pub async fn run_until_signal(&self, signals: Signals, sink: Sink<'_>) -> Result<()> {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = signals;
        let mut stopped = self.shutdown.subscribe();
        let settled = tokio::time::sleep(footprint::SETTLE);
        tokio::pin!(settled);
        let mut settling = true;
        loop {
            tokio::select! {
                () = &mut settled, if settling => {
                    settling = false;
                    match footprint::release_code_pages() {
                        Ok(bytes) => tracing::debug!(bytes, "start-up code given back"),
                        Err(e) => tracing::debug!(error = %e, "start-up code kept (no MADV_PAGEOUT)"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = async { let _ = stopped.wait_for(|s| *s).await; } => return Ok(()),
                _ = hup.recv() => {
                    if let Err(e) = self.reload("SIGHUP", sink).await {
                        sink(Progress { step: "error".into(), message: e.to_string(), service: None });
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
        self.deployer.proxy.local_addr()
    }

    /// The proxy's bound HTTPS address, when it serves HTTPS.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.deployer.proxy.https_addr()
    }

    /// Where the current release is reachable.
    pub fn urls(&self) -> Vec<String> {
        self.deployer
            .fleet
            .serving_config()
            .map(|c| routes::urls(&c, self.proxy_addr(), self.https_addr()))
            .unwrap_or_default()
    }

    /// Whether the serving release's configuration has a `[backups]` table.
    pub fn has_backups(&self) -> bool {
        self.deployer
            .fleet
            .serving_config()
            .is_some_and(|c| c.backups.is_some())
    }

    pub fn socket_path(&self) -> &Path {
        &self.opts.socket_path
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.opts.config_path
    }

    pub(crate) fn state_dir(&self) -> &Path {
        &self.opts.state_dir
    }

    /// Each subsystem's name and state, in start order.
    pub(crate) async fn subsystem_states(&self) -> Vec<(&'static str, SubsystemState)> {
        self.subsystems.lock().await.states()
    }
}

/// What an agent of a `[cluster]` app starts with: the app's name and `[alerts]` (and
/// `[monitor]` with its checks, `[dashboard]`) and its scheduled tasks (run as Swarm jobs) as
/// configured, nothing of its own to run or serve — the services, databases, backups, other
/// tasks and updates are the swarm's — and its proxy
/// on a loopback port the kernel picks, so that it never takes the port the ingress
/// publishes on this node.
fn watch_only(mut config: AppConfig) -> AppConfig {
    config.services.clear();
    config.databases.clear();
    // Scheduled tasks stay: this agent starts them, as Swarm jobs. A once task is run by
    // the deploy that first converged; a manual one by `dockhand run` in the project.
    config
        .tasks
        .retain(|_, t| matches!(t.when, dockhand_config::TaskWhen::Schedule(_)));
    config.backups = None;
    config.update = None;
    config.redirects.clear();
    config.proxy.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.proxy.https_listen = None;
    config.proxy.certificates.clear();
    config
}

/// Why a watch-only agent (a `[cluster]` app's, configured at `config_path`) does not `what`:
/// a usage error (exit code 2) saying where the app is deployed from.
pub(crate) fn watch_only_refusal(what: &str, config_path: &Path) -> AgentError {
    AgentError::usage(format!(
        "this app runs on the swarm: deploy with `dockhand deploy` from the project \
         (`dockhand rollback` there returns it to a release); this agent only watches the \
         swarm's nodes and alerts ([cluster] in {}), and does not {what} on this host",
        config_path.display()
    ))
}

/// Loads and validates the configuration file; returns it with its warnings, one line each.
pub(crate) fn load_config(path: &Path) -> Result<(AppConfig, Vec<String>)> {
    let loaded = dockhand_config::load(path, &LoadOptions::from_process_env())?;
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

/// A stable id for the agent of one state directory, carried in the environment of every
/// process it starts so a later agent can find them.
fn agent_id(state_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

/// `deploy --canary SHARE [--canary-step D]`: the release deploys as a canary starting at
/// SHARE, whatever `[deploy]` says (and records it: the release's configuration says how it
/// was deployed).
fn as_canary(config: &mut AppConfig, canary: Option<&dockhand_api::CanaryRequest>) {
    let Some(c) = canary else { return };
    config.deploy.strategy = dockhand_config::Strategy::Canary;
    config.deploy.canary.steps = config.deploy.canary.starting_at(c.share);
    if let Some(ms) = c.step_ms {
        config.deploy.canary.step = std::time::Duration::from_millis(ms);
    }
}

/// The bearer token of `[monitor] metrics_route`, from the secrets file (a missing secret is
/// an event, and the route answers 503).
fn metrics_route_token(config: &AppConfig, events: &Events) -> Option<String> {
    let route = config.monitor.metrics_route.as_ref()?;
    let token = crate::secrets::load(config, events.redactor())
        .map_err(|e| e.message().to_string())
        .and_then(|s| route.token.resolve(&s).map_err(|e| e.to_string()));
    match token {
        Ok(t) => Some(t),
        Err(e) => {
            events.warn(
                EventKind::Monitor,
                None,
                None,
                &format!("the metrics route is not served: {e}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_watch_only_refusal_says_where_the_app_is_deployed_from() {
        let e = super::watch_only_refusal(
            "deploy",
            std::path::Path::new("/srv/dockhand/dockhand.toml"),
        );
        assert_eq!(e.kind(), crate::error::ErrorKind::Usage);
        assert!(
            e.message().starts_with(
                "this app runs on the swarm: deploy with `dockhand deploy` from the project"
            ),
            "{}",
            e.message()
        );
        assert!(e
            .message()
            .contains("[cluster] in /srv/dockhand/dockhand.toml"));
        assert!(e.message().ends_with("does not deploy on this host"));
    }

    #[test]
    fn agent_id_is_stable_and_distinct() {
        let a = super::agent_id(std::path::Path::new("/a"));
        assert_eq!(a, super::agent_id(std::path::Path::new("/a")));
        assert_ne!(a, super::agent_id(std::path::Path::new("/b")));
        assert_eq!(a.len(), 12);
    }
}
