//! Starting and stopping one instance of a release: its port, environment and log file, its
//! record in the state database, its health probe and its restart events.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dockhand_config::{AppConfig, CommandLine, Secrets, ServiceConfig};
use dockhand_proxy::Backend;
use dockhand_runtime::{Instance, InstanceSpec, InstanceState};
use dockhand_state::InstanceRecord;

use super::plan::Plan;
use super::Deployer;
use crate::containers;
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::LiveInstance;
use crate::health::{CommandProbe, Health, ProbePlan};
use crate::prober::{ProbeTarget, Prober};
use crate::runtimes::Runtimes;

static NEXT_BACKEND: AtomicU64 = AtomicU64::new(1);

/// Starts replica `index` of `svc` as instance `id` of `plan`'s release, container services
/// on `image`, and tracks it in the fleet.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    d: &Deployer,
    config: &AppConfig,
    svc: &ServiceConfig,
    plan: &Plan,
    index: u32,
    id: &str,
    secrets: &Secrets,
    image: Option<&str>,
) -> Result<LiveInstance> {
    let release = plan.release;
    let port =
        match svc.port {
            Some(_) => Some(free_port().map_err(|e| {
                AgentError::environment(format!("no free port for {}: {e}", svc.name))
            })?),
            None => None,
        };
    let mut env = service_env(config, svc, release, secrets)?;
    match (&svc.container, port, svc.port) {
        // A container listens on its configured port; the host port maps to it.
        (Some(_), Some(_), Some(inside)) => env.push(("PORT".into(), inside.to_string())),
        (None, Some(p), _) => env.push(("PORT".into(), p.to_string())),
        _ => {}
    }
    let log_path = d.layout.instance_log(&svc.name, id);
    crate::layout::ensure_parent(&log_path)?;
    let mut container = None;
    let instance = match (&svc.container, image) {
        (Some(_), Some(image)) => {
            env.push((dockhand_runtime::SERVICE_ENV.into(), svc.name.clone()));
            env.push((
                dockhand_runtime::INSTANCE_ENV.into(),
                format!("{}/{id}", d.runtimes.agent_id()),
            ));
            let spec = containers::service_spec(
                config,
                svc,
                release,
                id,
                image,
                env,
                port,
                log_path.clone(),
            );
            container = Some(spec.container_name());
            let rt = d.runtimes.containers().await?;
            rt.start(spec).await.map_err(|e| {
                AgentError::from(e).map_message(|m| {
                    d.events
                        .redactor()
                        .redact(&format!("failed to start {} ({image}): {m}", svc.name))
                })
            })?
        }
        (Some(_), None) => {
            return Err(AgentError::internal(format!(
                "no image was prepared for service `{}`",
                svc.name
            )))
        }
        (None, _) => {
            let spec = InstanceSpec {
                instance_id: id.to_string(),
                service: svc.name.clone(),
                command: svc.command.clone(),
                workdir: crate::snapshot::workdir(&d.layout, config, release, svc),
                env,
                log_path: log_path.clone(),
                restart: runtime_restart(svc.restart),
                memory_limit: svc.memory_limit,
                stop_grace: svc.stop_timeout,
            };
            d.runtimes.process().start(spec).map_err(|e| {
                AgentError::from(e).map_message(|m| {
                    format!("failed to start {} (`{}`): {m}", svc.name, svc.command)
                })
            })?
        }
    };
    if let Err(e) = d.store.put_instance(&InstanceRecord {
        id: id.to_string(),
        release,
        deployment: plan.deployment,
        service: svc.name.clone(),
        index,
        port,
        pid: instance.pid(),
        started_at: dockhand_state::now(),
    }) {
        // The record helps a restarted agent report; the process marker is what reaps.
        tracing::warn!(instance = id, "failed to record the instance: {e}");
    }

    let health = Health::new();
    let backend = port.map(|p| {
        let backend = Backend::new(
            NEXT_BACKEND.fetch_add(1, Ordering::Relaxed),
            SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
        );
        backend.set_healthy(false);
        backend
    });
    let command_plan = svc
        .health
        .as_ref()
        .and_then(|h| h.command.as_ref().map(|c| (h, c)))
        .map(|(h, c)| {
            let probe = command_probe(
                &d.runtimes,
                config,
                svc,
                container.as_deref(),
                release,
                c,
                secrets,
            );
            ProbePlan::for_command(h, probe)
        });
    let probe_plan = match (command_plan, port) {
        (Some(plan), _) => Some(plan),
        (None, Some(_)) => Some(ProbePlan::for_service(svc.health.as_ref())),
        (None, None) => None,
    };
    if let Some(probe_plan) = &probe_plan {
        d.prober.watch(ProbeTarget {
            instance: id.to_string(),
            service: svc.name.clone(),
            release,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0))),
            plan: probe_plan.clone(),
            health: health.clone(),
            backend: backend.clone(),
        });
    }
    watch_restarts(d.events.clone(), &instance, release, &svc.name);
    let live = LiveInstance {
        id: id.to_string(),
        service: svc.name.clone(),
        release,
        port,
        instance,
        backend,
        health,
        plan: probe_plan,
        log_path,
        container,
    };
    d.fleet.add(live.clone());
    Ok(live)
}

/// The environment a service's processes (and its hooks and `exec`) get.
pub fn service_env(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    secrets: &Secrets,
) -> Result<Vec<(String, String)>> {
    let resolved = svc
        .resolved_env(secrets)
        .map_err(|e| AgentError::runtime(e.to_string()))?;
    let mut env: Vec<(String, String)> = resolved.into_iter().collect();
    env.push(("DOCKHAND_APP".into(), config.app.clone()));
    env.push(("DOCKHAND_RELEASE".into(), release.to_string()));
    Ok(env)
}

/// Stops instances concurrently (each with its own grace period), their probes first.
pub async fn stop_all(prober: &Prober, instances: &[LiveInstance]) {
    let mut set = tokio::task::JoinSet::new();
    for inst in instances {
        prober.unwatch(&inst.id);
        let i = inst.instance.clone();
        set.spawn(async move { i.stop().await });
    }
    while set.join_next().await.is_some() {}
}

/// Stops instances and forgets them (fleet and state database).
pub async fn retire(d: &Deployer, instances: &[LiveInstance]) {
    stop_all(&d.prober, instances).await;
    d.fleet.forget(instances.iter().map(|i| i.id.as_str()));
    for inst in instances {
        if let Err(e) = d.store.remove_instance(&inst.id) {
            tracing::warn!(instance = %inst.id, "failed to forget the instance record: {e}");
        }
    }
}

/// How an instance's health command runs: inside its container, or as a one-off process in
/// the service's environment.
fn command_probe(
    runtimes: &Runtimes,
    config: &AppConfig,
    svc: &ServiceConfig,
    container: Option<&str>,
    release: i64,
    command: &CommandLine,
    secrets: &Secrets,
) -> CommandProbe {
    let display = command.display();
    let runtimes = runtimes.clone();
    if let Some(container) = container {
        let container = container.to_string();
        let argv = command.argv();
        return CommandProbe {
            display,
            run: Arc::new(move |timeout| {
                let (runtimes, container, argv) =
                    (runtimes.clone(), container.clone(), argv.clone());
                Box::pin(async move {
                    let rt = runtimes.containers().await.map_err(|e| e.to_string())?;
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
        CommandLine::Shell(s) => s.clone(),
        CommandLine::Exec(v) => crate::exec::shell_join(v),
    };
    let env = service_env(config, svc, release, secrets).unwrap_or_default();
    let workdir = svc.workdir.clone();
    CommandProbe {
        display,
        run: Arc::new(move |timeout| {
            let (runtimes, shell, env, workdir) = (
                runtimes.clone(),
                shell.clone(),
                env.clone(),
                workdir.clone(),
            );
            Box::pin(async move {
                let out = runtimes
                    .process()
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
fn watch_restarts(events: Events, instance: &Instance, release: i64, service: &str) {
    let mut rx = instance.watch();
    let (id, service) = (instance.id().to_string(), service.to_string());
    tokio::spawn(async move {
        let mut last = rx.borrow().clone();
        while rx.changed().await.is_ok() {
            let now = rx.borrow().clone();
            let exit = now
                .last_exit
                .as_ref()
                .map(|e| e.describe())
                .unwrap_or_default();
            if now.state == InstanceState::CrashLoop && last.state != InstanceState::CrashLoop {
                events.error(
                    EventKind::CrashLoop,
                    Some(release),
                    Some(&service),
                    &format!("{id} keeps exiting right after it starts ({exit}); `dockhand logs {service}` shows why"),
                );
            } else if now.restarts > last.restarts {
                events.warn(
                    EventKind::Restart,
                    Some(release),
                    Some(&service),
                    &format!("{id} {exit}; restarted ({} restart(s))", now.restarts),
                );
            }
            last = now;
        }
    });
}

pub fn runtime_restart(p: dockhand_config::RestartPolicy) -> dockhand_runtime::RestartPolicy {
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
