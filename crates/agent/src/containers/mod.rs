//! The agent's side of containers: turning a service or database of the configuration into
//! the runtime's `ContainerSpec` (here), making a release's images present (`images.rs`), and
//! keeping the long-lived database containers running — started before the services, never
//! restarted by a deploy (`databases.rs`).

pub mod databases;
pub mod images;

use std::collections::BTreeMap;
use std::path::PathBuf;

use dockhand_config::{AppConfig, Mount, PullPolicy, ServiceConfig};
use dockhand_runtime::{ContainerKind, ContainerSpec, PublishedPort, RestartPolicy};

/// The image each container service of a release runs, by service name.
pub type Images = BTreeMap<String, String>;

/// The spec of one replica of a container service.
#[allow(clippy::too_many_arguments)]
pub fn service_spec(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    instance_id: &str,
    image: &str,
    env: Vec<(String, String)>,
    host_port: Option<u16>,
    log_path: PathBuf,
) -> ContainerSpec {
    let c = svc.container.as_ref();
    let mut spec = ContainerSpec::new(
        &config.app,
        &svc.name,
        instance_id,
        ContainerKind::Service,
        image,
    );
    spec.release = release;
    spec.command = c.and_then(|c| c.command.clone());
    spec.entrypoint = c.and_then(|c| c.entrypoint.clone());
    spec.env = env;
    spec.network = Some(config.network());
    spec.aliases = vec![svc.name.clone()];
    if let (Some(host_port), Some(container_port)) = (host_port, svc.port) {
        spec.ports = vec![PublishedPort {
            host_ip: "127.0.0.1".into(),
            host_port,
            container_port,
        }];
    }
    spec.mounts = c.map(|c| mounts(&c.volumes)).unwrap_or_default();
    spec.memory_limit = svc.memory_limit;
    spec.cpus = c.and_then(|c| c.cpus);
    spec.user = c.and_then(|c| c.user.clone());
    spec.init = c.is_some_and(|c| c.init);
    spec.shm_size = c.and_then(|c| c.shm_size);
    spec.ulimits = c.map(|c| ulimits(&c.ulimits)).unwrap_or_default();
    spec.restart = crate::deploy::runtime_restart(svc.restart);
    spec.stop_grace = svc.stop_timeout;
    spec.log_path = Some(log_path);
    spec
}

/// The spec of a one-off container (a deploy hook) of a service: its image, env, mounts and
/// network, running `/bin/sh -c <command>`.
#[allow(clippy::too_many_arguments)]
pub fn job_spec(
    config: &AppConfig,
    svc: &ServiceConfig,
    release: i64,
    job_id: &str,
    image: &str,
    env: Vec<(String, String)>,
    command: &str,
    log_path: PathBuf,
) -> ContainerSpec {
    let mut spec = service_spec(config, svc, release, job_id, image, env, None, log_path);
    spec.kind = ContainerKind::Job;
    spec.aliases.clear();
    spec.entrypoint = Some(Vec::new());
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), command.to_string()]);
    spec.restart = RestartPolicy::Never;
    spec
}

/// The runtime's pull policy for the configuration's.
pub fn pull_policy(p: PullPolicy) -> dockhand_runtime::PullPolicy {
    match p {
        PullPolicy::Missing => dockhand_runtime::PullPolicy::Missing,
        PullPolicy::Always => dockhand_runtime::PullPolicy::Always,
        PullPolicy::Never => dockhand_runtime::PullPolicy::Never,
    }
}

fn mounts(m: &[Mount]) -> Vec<dockhand_runtime::Mount> {
    m.iter()
        .map(|m| match m {
            Mount::Volume {
                name,
                target,
                read_only,
            } => dockhand_runtime::Mount::Volume {
                name: name.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::Bind {
                source,
                target,
                read_only,
            } => dockhand_runtime::Mount::Bind {
                source: source.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::Tmpfs { target } => dockhand_runtime::Mount::Tmpfs {
                target: target.clone(),
                size: None,
            },
        })
        .collect()
}

fn ulimits(u: &[dockhand_config::Ulimit]) -> Vec<dockhand_runtime::Ulimit> {
    u.iter()
        .map(|u| dockhand_runtime::Ulimit {
            name: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect()
}
