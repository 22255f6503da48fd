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
    Ok(StatusReport {
        host: host_info(agent),
        alerts: agent.alerts.report().firing,
        certificate_days: agent
            .monitor
            .certificates()
            .into_iter()
            .map(|(host, days_left)| dockhand_api::CertificateDays { host, days_left })
            .collect(),
        backups: match config.as_ref().and_then(|c| c.backups.as_ref()) {
            Some(_) => backup_sources(&agent.backups.list().unwrap_or_default()),
            None => Vec::new(),
        },
        checks: {
            let now = crate::clock::unix_secs();
            agent
                .monitor
                .checks()
                .into_iter()
                .map(|c| dockhand_api::CheckStatus {
                    state: match c.ok {
                        None => dockhand_api::CheckState::Unknown,
                        Some(true) => dockhand_api::CheckState::Passing,
                        Some(false) => dockhand_api::CheckState::Failing,
                    },
                    since_secs: c.ok.map(|_| now.saturating_sub(c.since)),
                    detail: c.last.map(|r| r.detail).unwrap_or_default(),
                    name: c.name,
                    target: c.target,
                })
                .collect()
        },
        canary: d.canary.get().map(|c| dockhand_api::CanaryProgress {
            release: c.release,
            serving: c.serving,
            share: c.share,
            step: c.step,
            steps: c.steps,
            services: c.services,
        }),
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

/// The host as last sampled (`None` before the first sample).
fn host_info(agent: &Agent) -> Option<dockhand_api::HostInfo> {
    let (host, cpu) = agent.monitor.host();
    (host.mem_total > 0).then(|| dockhand_api::HostInfo {
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
    })
}

/// `dockhand top`: per service of the serving release, its requests over the last few
/// samples and its instances' CPU and memory at the last one.
pub fn top(agent: &Agent) -> dockhand_api::TopReport {
    let window = agent
        .monitor
        .interval()
        .max(std::time::Duration::from_secs(2))
        * 2;
    let instances = agent.monitor.instances();
    let services = agent
        .deployer
        .fleet
        .serving_config()
        .map(|c| {
            c.services
                .values()
                .map(|svc| {
                    let mine: Vec<_> = instances
                        .iter()
                        .filter(|i| i.serving && i.service == svc.name)
                        .collect();
                    let t = agent
                        .monitor
                        .traffic(&svc.name, None, window)
                        .unwrap_or_default();
                    let cpu: Vec<f64> = mine.iter().filter_map(|i| i.cpu_ratio).collect();
                    dockhand_api::TopService {
                        name: svc.name.clone(),
                        instances: mine.len(),
                        up: mine
                            .iter()
                            .filter(|i| i.running && i.healthy != Some(false))
                            .count(),
                        requests_per_second: t.per_second,
                        error_ratio: t.error_ratio,
                        p50_ms: t.p50_ms,
                        p99_ms: t.p99_ms,
                        cpu_cores: (!cpu.is_empty()).then(|| cpu.iter().sum()),
                        memory_bytes: mine.iter().filter_map(|i| i.rss_bytes).sum(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    dockhand_api::TopReport {
        at: dockhand_state::now(),
        window_secs: window.as_secs(),
        services,
        host: host_info(agent),
    }
}

/// Per source, from the catalog (newest first): the newest complete backup holding it, the
/// newest passed drill of one, and whether the newest drill of one failed.
pub fn backup_sources(
    catalog: &[dockhand_api::BackupSummary],
) -> Vec<dockhand_api::BackupSourceStatus> {
    use dockhand_api::{BackupState, VerifyState};
    let mut out: std::collections::BTreeMap<String, dockhand_api::BackupSourceStatus> =
        Default::default();
    // Each source's newest drill, by its time.
    let mut newest_drill: std::collections::BTreeMap<String, String> = Default::default();
    for b in catalog.iter().filter(|b| b.state == BackupState::Complete) {
        for source in &b.sources {
            let s = out
                .entry(source.clone())
                .or_insert_with(|| dockhand_api::BackupSourceStatus {
                    source: source.clone(),
                    last_backup: None,
                    last_verified: None,
                    drill_failed: false,
                });
            if s.last_backup.as_ref().is_none_or(|t| *t < b.started_at) {
                s.last_backup = Some(b.started_at.clone());
            }
            let Some(at) = &b.verified_at else { continue };
            if b.verify == VerifyState::Passed && s.last_verified.as_ref().is_none_or(|t| t < at) {
                s.last_verified = Some(at.clone());
            }
            let newest = newest_drill.entry(source.clone()).or_default();
            if *newest < *at {
                newest.clone_from(at);
                s.drill_failed = b.verify == VerifyState::Failed;
            }
        }
    }
    out.into_values().collect()
}

/// A route as `status` shows it: `host/path`, `*` for any host.
fn status_route(r: &dockhand_config::Route) -> String {
    format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_api::{BackupState, BackupSummary, VerifyState};

    fn b(
        id: &str,
        at: &str,
        state: BackupState,
        sources: &[&str],
        verify: VerifyState,
        verified: Option<&str>,
    ) -> BackupSummary {
        BackupSummary {
            id: id.into(),
            state,
            trigger: "schedule".into(),
            started_at: at.into(),
            finished_at: None,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            stored_bytes: 0,
            verify,
            verified_at: verified.map(str::to_string),
            message: String::new(),
        }
    }

    #[test]
    fn each_source_shows_its_last_backup_and_last_verified_restore() {
        let catalog = vec![
            b(
                "c",
                "2026-12-03T00:00:00.000Z",
                BackupState::Failed,
                &["db", "uploads"],
                VerifyState::Never,
                None,
            ),
            b(
                "b",
                "2026-12-02T00:00:00.000Z",
                BackupState::Complete,
                &["db"],
                VerifyState::Failed,
                Some("2026-12-02T06:00:00.000Z"),
            ),
            b(
                "a",
                "2026-12-01T00:00:00.000Z",
                BackupState::Complete,
                &["db", "uploads"],
                VerifyState::Passed,
                Some("2026-12-01T06:00:00.000Z"),
            ),
        ];
        let s = backup_sources(&catalog);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].source, "db");
        assert_eq!(
            s[0].last_backup.as_deref(),
            Some("2026-12-02T00:00:00.000Z")
        );
        assert_eq!(
            s[0].last_verified.as_deref(),
            Some("2026-12-01T06:00:00.000Z")
        );
        assert!(s[0].drill_failed, "the newest drill of a db backup failed");
        assert_eq!(s[1].source, "uploads");
        assert_eq!(
            s[1].last_backup.as_deref(),
            Some("2026-12-01T00:00:00.000Z")
        );
        assert!(!s[1].drill_failed);
    }
}
