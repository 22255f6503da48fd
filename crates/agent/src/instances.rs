//! Starting and stopping the instances of a release: ports, environment, log files, records
//! in the state database and one health prober per web instance.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use dockhand_api::{ApiError, ErrorCode};
use dockhand_config::{AppConfig, Secrets, ServiceConfig};
use dockhand_proxy::Backend;
use dockhand_runtime::{Instance, InstanceSpec, InstanceState};
use dockhand_state::{EventLevel, InstanceRecord};
use tokio::task::JoinHandle;

use crate::containers::Images;
use crate::health::{self, CommandProbe, Health, ProbePlan};
use crate::Agent;

/// The release that serves and its instances.
pub struct ActiveRelease {
    pub id: i64,
    pub config: AppConfig,
    pub instances: Vec<LiveInstance>,
}

/// One running instance of a service, as the agent tracks it.
#[derive(Clone)]
pub struct LiveInstance {
    pub id: String,
    pub service: String,
    pub release: i64,
    pub port: Option<u16>,
    pub instance: Instance,
    pub backend: Option<Arc<Backend>>,
    pub health: Health,
    pub plan: Option<ProbePlan>,
    pub log_path: PathBuf,
    /// The Docker container's name, for a container instance.
    pub container: Option<String>,
    prober: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LiveInstance {
    fn stop_probing(&self) {
        if let Some(p) = &self.prober {
            p.0.abort();
        }
    }
}

static NEXT_BACKEND: AtomicU64 = AtomicU64::new(1);

/// Starts every replica of every service of `config`, in `depends_on` order, container
/// services on the images in `images`. On failure, returns what was started (for the caller
/// to stop) and the error.
pub async fn start_release(
    agent: &Arc<Agent>,
    config: &AppConfig,
    release: i64,
    deployment: i64,
    images: &Images,
) -> Result<Vec<LiveInstance>, (Vec<LiveInstance>, ApiError)> {
    let secrets = load_secrets(agent, config).map_err(|e| (Vec::new(), e))?;
    if config.services.values().any(|s| s.container.is_some()) {
        let rt = agent.containers().await.map_err(|e| (Vec::new(), e))?;
        rt.ensure_network(&config.app)
            .await
            .map_err(|e| (Vec::new(), ApiError::new(ErrorCode::Failed, e.to_string())))?;
    }
    let mut started = Vec::new();
    for svc in start_order(config) {
        for index in 0..svc.replicas {
            let image = images.get(&svc.name).map(String::as_str);
            match start_instance(
                agent, config, svc, release, deployment, index, &secrets, image,
            )
            .await
            {
                Ok(inst) => started.push(inst),
                Err(e) => return Err((started, e)),
            }
        }
    }
    Ok(started)
}

/// The services with every service before the ones that depend on it (the configuration
/// has no cycles); otherwise in name order.
pub fn start_order(config: &AppConfig) -> Vec<&ServiceConfig> {
    let mut order: Vec<&ServiceConfig> = Vec::new();
    fn visit<'c>(
        config: &'c AppConfig,
        name: &str,
        order: &mut Vec<&'c ServiceConfig>,
        depth: usize,
    ) {
        let Some(svc) = config.services.get(name) else {
            return;
        };
        if depth > config.services.len() || order.iter().any(|s| s.name == svc.name) {
            return;
        }
        for dep in &svc.depends_on {
            visit(config, dep, order, depth + 1);
        }
        if !order.iter().any(|s| s.name == svc.name) {
            order.push(svc);
        }
    }
    for name in config.services.keys() {
        visit(config, name, &mut order, 0);
    }
    order
}

fn load_secrets(agent: &Agent, config: &AppConfig) -> Result<Option<Secrets>, ApiError> {
    let needed = config
        .services
        .values()
        .any(|s| !s.secret_names().is_empty())
        || config
            .databases
            .values()
            .any(|d| d.container_env().values().any(|v| v.has_secrets()));
    if !needed {
        return Ok(None);
    }
    let secrets = Secrets::load(&config.secrets_file)
        .map_err(|e| ApiError::new(ErrorCode::Failed, e.to_string()))?;
    *agent
        .secret_values
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = secrets.values().map(str::to_string).collect();
    Ok(Some(secrets))
}

/// The environment a service's processes (and its hooks and `exec`) get.
pub fn service_env(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    secrets: Option<&Secrets>,
) -> Result<Vec<(String, String)>, ApiError> {
    let empty = Secrets::empty();
    let resolved = svc
        .resolved_env(secrets.unwrap_or(&empty))
        .map_err(|e| ApiError::new(ErrorCode::Failed, e.to_string()))?;
    let mut env: Vec<(String, String)> = resolved.into_iter().collect();
    env.push(("DOCKHAND_APP".into(), config.app.clone()));
    env.push(("DOCKHAND_RELEASE".into(), release.to_string()));
    Ok(env)
}

/// Loads the secrets of `config` (if it uses any) for a one-off command.
pub fn secrets_for(agent: &Agent, config: &AppConfig) -> Result<Option<Secrets>, ApiError> {
    load_secrets(agent, config)
}

#[allow(clippy::too_many_arguments)]
async fn start_instance(
    agent: &Arc<Agent>,
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    deployment: i64,
    index: u32,
    secrets: &Option<Secrets>,
    image: Option<&str>,
) -> Result<LiveInstance, ApiError> {
    let id = format!("d{deployment}r{release}-{}-{index}", svc.name);
    let port = match svc.port {
        Some(_) => Some(free_port().map_err(|e| {
            ApiError::new(
                ErrorCode::Failed,
                format!("no free port for {}: {e}", svc.name),
            )
        })?),
        None => None,
    };
    let mut env = service_env(config, svc, release, secrets.as_ref())?;
    match (&svc.container, port, svc.port) {
        // A container listens on its configured port; the host port maps to it.
        (Some(_), Some(_), Some(inside)) => env.push(("PORT".into(), inside.to_string())),
        (None, Some(p), _) => env.push(("PORT".into(), p.to_string())),
        _ => {}
    }
    let log_path = agent
        .opts
        .state_dir
        .join("logs")
        .join(&svc.name)
        .join(format!("{id}.log"));
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            ApiError::new(
                ErrorCode::Failed,
                format!("failed to create log directory {}: {e}", dir.display()),
            )
        })?;
    }
    let mut container = None;
    let instance = match (&svc.container, image) {
        (Some(_), Some(image)) => {
            env.push((dockhand_runtime::SERVICE_ENV.into(), svc.name.clone()));
            env.push((
                dockhand_runtime::INSTANCE_ENV.into(),
                format!("{}/{id}", agent.agent_id),
            ));
            let spec = crate::containers::service_spec(
                config,
                svc,
                release,
                &id,
                image,
                env,
                port,
                log_path.clone(),
            );
            container = Some(spec.container_name());
            let rt = agent.containers().await?;
            rt.start(spec).await.map_err(|e| {
                ApiError::new(
                    ErrorCode::Failed,
                    agent.redact(&format!("failed to start {} ({image}): {e}", svc.name)),
                )
            })?
        }
        (Some(_), None) => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!(
                    "no image was prepared for service `{}`; this is a bug, please report it",
                    svc.name
                ),
            ))
        }
        (None, _) => {
            let spec = InstanceSpec {
                instance_id: id.clone(),
                service: svc.name.clone(),
                command: svc.command.clone(),
                workdir: svc.workdir.clone(),
                env,
                log_path: log_path.clone(),
                restart: runtime_restart(svc.restart),
                memory_limit: svc.memory_limit,
                stop_grace: svc.stop_timeout,
            };
            agent.runtime.start(spec).map_err(|e| {
                ApiError::new(
                    ErrorCode::Failed,
                    format!("failed to start {} (`{}`): {e}", svc.name, svc.command),
                )
            })?
        }
    };
    let _ = agent.store.put_instance(&InstanceRecord {
        id: id.clone(),
        release,
        deployment,
        service: svc.name.clone(),
        index,
        port,
        pid: instance.pid(),
        started_at: dockhand_state::now(),
    });

    let health = Health::new();
    let command_plan = svc
        .health
        .as_ref()
        .and_then(|h| h.command.as_ref().map(|c| (h, c)))
        .map(|(h, c)| {
            ProbePlan::for_command(
                h,
                command_probe(
                    agent,
                    config,
                    svc,
                    container.as_deref(),
                    release,
                    c,
                    secrets.as_ref(),
                ),
            )
        });
    let backend = port.map(|p| {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        let backend = Backend::new(NEXT_BACKEND.fetch_add(1, Ordering::Relaxed), addr);
        backend.set_healthy(false);
        backend
    });
    let plan = match (command_plan, port) {
        (Some(plan), _) => Some(plan),
        (None, Some(_)) => Some(ProbePlan::for_service(svc.health.as_ref())),
        (None, None) => None,
    };
    let prober = plan.as_ref().map(|plan| {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0)));
        let weak: Weak<Agent> = Arc::downgrade(agent);
        let (svc_name, inst_id) = (svc.name.clone(), id.clone());
        let task = tokio::spawn(health::run_prober(
            addr,
            plan.clone(),
            health.clone(),
            backend.clone(),
            move |healthy, last| {
                if let Some(agent) = weak.upgrade() {
                    let (level, word) = if healthy {
                        (EventLevel::Info, "healthy")
                    } else {
                        (EventLevel::Warn, "unhealthy")
                    };
                    agent.event(
                        level,
                        "health",
                        Some(release),
                        Some(&svc_name),
                        &format!("{inst_id} is {word}: {}", last.detail),
                    );
                }
            },
        ));
        Arc::new(AbortOnDrop(task))
    });
    spawn_restart_watch(Arc::downgrade(agent), &instance, release, &svc.name);
    let live = LiveInstance {
        id: id.clone(),
        service: svc.name.clone(),
        release,
        port,
        instance,
        backend,
        health,
        plan,
        log_path,
        container,
        prober,
    };
    agent.registry_lock().insert(id.clone(), live.clone());
    Ok(live)
}

/// How an instance's health command runs: inside its container, or as a one-off process in
/// the service's environment.
fn command_probe(
    agent: &Arc<Agent>,
    config: &AppConfig,
    svc: &ServiceConfig,
    container: Option<&str>,
    release: i64,
    command: &dockhand_config::CommandLine,
    secrets: Option<&Secrets>,
) -> CommandProbe {
    let display = command.display();
    let weak = Arc::downgrade(agent);
    if let Some(container) = container {
        let container = container.to_string();
        let argv = command.argv();
        return CommandProbe {
            display,
            run: Arc::new(move |timeout| {
                let (weak, container, argv) = (weak.clone(), container.clone(), argv.clone());
                Box::pin(async move {
                    let agent = weak.upgrade().ok_or("the agent is stopping")?;
                    let rt = agent.containers().await.map_err(|e| e.message)?;
                    let out = rt
                        .exec(&container, argv, Vec::new(), timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((out.exit_code, out.output))
                })
            }),
        };
    }
    let shell = match command {
        dockhand_config::CommandLine::Shell(s) => s.clone(),
        dockhand_config::CommandLine::Exec(v) => crate::exec::shell_join(v),
    };
    let env = service_env(config, svc, release, secrets).unwrap_or_default();
    let workdir = svc.workdir.clone();
    CommandProbe {
        display,
        run: Arc::new(move |timeout| {
            let (weak, shell, env, workdir) =
                (weak.clone(), shell.clone(), env.clone(), workdir.clone());
            Box::pin(async move {
                let agent = weak.upgrade().ok_or("the agent is stopping")?;
                let out = agent
                    .runtime
                    .run_once(dockhand_runtime::OneShot {
                        command: shell,
                        workdir,
                        env,
                        timeout,
                        log_path: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((if out.timed_out { None } else { out.exit_code }, out.output))
            })
        }),
    }
}

/// Records an event whenever the supervisor restarts the instance or declares a crash loop.
/// Ends with the instance's supervisor.
fn spawn_restart_watch(agent: Weak<Agent>, instance: &Instance, release: i64, service: &str) {
    let mut rx = instance.watch();
    let (id, service) = (instance.id().to_string(), service.to_string());
    tokio::spawn(async move {
        let mut last = rx.borrow().clone();
        while rx.changed().await.is_ok() {
            let now = rx.borrow().clone();
            let Some(agent) = agent.upgrade() else { return };
            let exit = now
                .last_exit
                .as_ref()
                .map(|e| e.describe())
                .unwrap_or_default();
            if now.state == InstanceState::CrashLoop && last.state != InstanceState::CrashLoop {
                agent.event(
                    EventLevel::Error,
                    "crash-loop",
                    Some(release),
                    Some(&service),
                    &format!("{id} keeps exiting right after it starts ({exit}); `dockhand logs {service}` shows why"),
                );
            } else if now.restarts > last.restarts {
                agent.event(
                    EventLevel::Warn,
                    "restart",
                    Some(release),
                    Some(&service),
                    &format!("{id} {exit}; restarted ({} restart(s))", now.restarts),
                );
            }
            last = now;
        }
    });
}

/// Stops instances concurrently (each with its own grace period) and forgets them.
pub async fn stop_all(instances: &[LiveInstance]) {
    let mut set = tokio::task::JoinSet::new();
    for inst in instances {
        inst.stop_probing();
        let i = inst.instance.clone();
        set.spawn(async move { i.stop().await });
    }
    while set.join_next().await.is_some() {}
}

/// Stops instances and removes them from the registry and the state database.
pub async fn retire(agent: &Agent, instances: &[LiveInstance]) {
    stop_all(instances).await;
    let mut reg = agent.registry_lock();
    for inst in instances {
        reg.remove(&inst.id);
        let _ = agent.store.remove_instance(&inst.id);
    }
}

pub fn backends_by_service(instances: &[LiveInstance]) -> BTreeMap<String, Vec<Arc<Backend>>> {
    let mut map: BTreeMap<String, Vec<Arc<Backend>>> = BTreeMap::new();
    for inst in instances {
        if let Some(b) = &inst.backend {
            map.entry(inst.service.clone()).or_default().push(b.clone());
        }
    }
    map
}

pub(crate) fn runtime_restart(
    p: dockhand_config::RestartPolicy,
) -> dockhand_runtime::RestartPolicy {
    match p {
        dockhand_config::RestartPolicy::Always => dockhand_runtime::RestartPolicy::Always,
        dockhand_config::RestartPolicy::OnFailure => dockhand_runtime::RestartPolicy::OnFailure,
        dockhand_config::RestartPolicy::Never => dockhand_runtime::RestartPolicy::Never,
    }
}

/// A port free on loopback right now (the OS does not hand it out again immediately).
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}
