//! The `status` answer, assembled from the fleet, the state database and the Docker Engine.

use dockhand_api::{AgentInfo, InstanceStatus, ServiceStatus, StatusReport};

use crate::error::Result;
use crate::{routes, wire, Agent};

pub async fn report(agent: &Agent) -> Result<StatusReport> {
    let d = &agent.deployer;
    let current = d.store.current_release()?;
    let serving = d.fleet.serving_config();
    let services = d.fleet.with_serving(|live| {
        let Some(active) = live else {
            return Vec::new();
        };
        active
            .config
            .services
            .values()
            .map(|svc| ServiceStatus {
                name: svc.name.clone(),
                replicas: svc.replicas,
                route: svc.routes.first().map(status_route),
                routes: svc.routes.iter().map(status_route).collect(),
                instances: active
                    .instances
                    .iter()
                    .filter(|i| i.service == svc.name)
                    .map(|i| {
                        let st = i.instance.status();
                        let health = i.health.snapshot();
                        InstanceStatus {
                            id: i.id.clone(),
                            release: i.release,
                            pid: st.pid,
                            port: i.port,
                            state: wire::instance_state(st.state),
                            health: wire::instance_health(i.plan.is_some(), health.healthy),
                            restarts: st.restarts,
                            uptime_secs: st
                                .started_at
                                .and_then(|t| t.elapsed().ok())
                                .map(|d| d.as_secs())
                                .unwrap_or(0),
                            last_probe: health.recent.back().map(|r| r.detail.clone()),
                        }
                    })
                    .collect(),
                traffic: None,
            })
            .collect()
    });
    // Nothing serves: the configuration file says what the app is.
    let config = match serving {
        Some(c) => Some(c),
        None => crate::agent::load_config(agent.config_path())
            .ok()
            .map(|(c, _)| std::sync::Arc::new(c)),
    };
    let databases = match &config {
        Some(c) => crate::containers::databases::status(&d.runtimes, c).await,
        None => Vec::new(),
    };
    let mut services = services;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
    for svc in &mut services {
        svc.traffic =
            agent
                .monitor
                .traffic(&svc.name, None, WINDOW)
                .map(|t| dockhand_api::TrafficInfo {
                    window_secs: WINDOW.as_secs(),
                    requests: t.requests,
                    per_second: t.per_second,
                    error_ratio: t.error_ratio,
                    p99_ms: t.p99_ms,
                });
    }
    let (host, cpu) = agent.monitor.host();
    let host = (host.mem_total > 0).then(|| dockhand_api::HostInfo {
        cpu_ratio: cpu,
        memory_used_ratio: host.mem_used_ratio(),
        load1: host.load1,
        disks: host
            .disks
            .iter()
            .map(|d| dockhand_api::DiskInfo {
                mount: d.mount.clone(),
                used_ratio: d.used_ratio(),
                inodes_used_ratio: d.inodes_used_ratio(),
            })
            .collect(),
    });
    Ok(StatusReport {
        host,
        alerts: agent.alerts.report().firing,
        app: config.as_ref().map(|c| c.app.clone()).unwrap_or_default(),
        agent: AgentInfo {
            id: agent.agent_id.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: agent.started_at.clone(),
            uptime_secs: agent.started.elapsed().as_secs(),
            state_dir: agent.state_dir().display().to_string(),
            config_path: agent.config_path().display().to_string(),
            proxy_listen: agent.proxy_addr().to_string(),
            https_listen: agent.https_addr().map(|a| a.to_string()),
            metrics_listen: agent.monitor.metrics_addr().map(|a| a.to_string()),
            certificates: agent.certs.infos(),
            subsystems: agent
                .subsystem_states()
                .await
                .into_iter()
                .map(|(name, state)| wire::subsystem(name, state))
                .collect(),
        },
        current_release: current.as_ref().map(wire::release_info),
        deploying: agent.lock.holder(),
        services,
        urls: d
            .fleet
            .serving_config()
            .map(|c| routes::urls(&c, agent.proxy_addr(), agent.https_addr()))
            .unwrap_or_default(),
        databases,
    })
}

/// A route as `status` shows it: `host/path`, `*` for any host.
fn status_route(r: &dockhand_config::Route) -> String {
    format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path)
}
