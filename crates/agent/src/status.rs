//! The `status` and `releases` answers, assembled from live instances and the database.

use dockhand_api::{AgentInfo, ApiError, InstanceStatus, ReleaseInfo, ServiceStatus, StatusReport};
use dockhand_state::Release;

use crate::{routes, state_error, wire, Agent};

pub fn report(agent: &Agent) -> Result<StatusReport, ApiError> {
    let current = agent.store.current_release().map_err(state_error)?;
    let live = agent.live_lock();
    let mut services = Vec::new();
    let mut app = String::new();
    let mut urls = Vec::new();
    if let Some(active) = live.as_ref() {
        app = active.config.app.clone();
        urls = routes::urls(&active.config, agent.proxy_addr(), agent.https_addr());
        for svc in active.config.services.values() {
            let instances = active
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
                .collect();
            services.push(ServiceStatus {
                name: svc.name.clone(),
                replicas: svc.replicas,
                route: svc
                    .route
                    .as_ref()
                    .map(|r| format!("{}{}", r.host.clone().unwrap_or_else(|| "*".into()), r.path)),
                instances,
            });
        }
    }
    drop(live);
    if app.is_empty() {
        app = dockhand_config::load(
            &agent.opts.config_path,
            &dockhand_config::LoadOptions::from_process_env(),
        )
        .map(|l| l.config.app)
        .unwrap_or_default();
    }
    Ok(StatusReport {
        app,
        agent: AgentInfo {
            id: agent.agent_id.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: agent.started_at.clone(),
            uptime_secs: agent.started.elapsed().as_secs(),
            state_dir: agent.opts.state_dir.display().to_string(),
            config_path: agent.opts.config_path.display().to_string(),
            proxy_listen: agent.proxy_addr().to_string(),
            https_listen: agent.https_addr().map(|a| a.to_string()),
            certificates: agent.certificates(),
        },
        current_release: current.as_ref().map(release_info),
        deploying: agent.lock.holder(),
        services,
        urls,
        databases: Vec::new(),
    })
}

pub fn release_info(r: &Release) -> ReleaseInfo {
    ReleaseInfo {
        id: r.id,
        status: wire::release_status(r.status),
        created_at: r.created_at.clone(),
        activated_at: r.activated_at.clone(),
        note: r.note.clone(),
    }
}
