//! What the container driver is asked to run: [`ContainerSpec`] (a service replica, a
//! database or a one-off job) and [`ImageSource`] (an image to pull or a context to build).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::spec::RestartPolicy;

/// What a container is to Dockhand; its `dockhand.kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// A replica of a service: supervised by the agent, removed when it stops.
    Service,
    /// A long-lived database container: Docker restarts it (`unless-stopped`), deploys never
    /// touch it.
    Database,
    /// A one-off container (deploy hook): removed once it exited.
    Job,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Service => "service",
            ContainerKind::Database => "database",
            ContainerKind::Job => "job",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ContainerKind> {
        match s {
            "service" => Some(ContainerKind::Service),
            "database" => Some(ContainerKind::Database),
            "job" => Some(ContainerKind::Job),
            _ => None,
        }
    }
}

/// A port published on the host: `host_ip:host_port` → `container_port/tcp`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PublishedPort {
    /// Usually `127.0.0.1`.
    pub host_ip: String,
    /// Chosen by the agent (a free port), so it is the same after a daemon restart.
    pub host_port: u16,
    pub container_port: u16,
}

/// A mount of a container.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mount {
    /// A named volume; the Docker volume is `<app>_<name>` (see [`volume_name`]), created
    /// with Dockhand's labels if missing.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// A host path (absolute), which must exist.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A tmpfs; `size` in bytes (None: Docker's default, half the memory).
    Tmpfs { target: String, size: Option<u64> },
}

/// A resource limit (`ulimit`) inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ulimit {
    /// `nofile`, `nproc`, …
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything needed to run one container. `env` values may hold secrets: the `Debug`
/// output shows only the names.
#[derive(Clone, PartialEq)]
pub struct ContainerSpec {
    /// Unique among the instances of this agent, e.g. `d3r12-api-0`.
    pub instance_id: String,
    pub app: String,
    /// The service (or database) name; also the container's alias on the app network.
    pub service: String,
    pub release: i64,
    pub kind: ContainerKind,
    /// The image reference (after [`crate::ContainerRuntime::ensure_image`]).
    pub image: String,
    /// Replaces the image's CMD.
    pub command: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// The caller includes `PORT`.
    pub env: Vec<(String, String)>,
    /// The network to join (`dockhand-<app>`, see [`network_name`]); None: Docker's default.
    pub network: Option<String>,
    /// Names the container answers to on `network`, besides its own name.
    pub aliases: Vec<String>,
    pub ports: Vec<PublishedPort>,
    pub mounts: Vec<Mount>,
    /// Bytes.
    pub memory_limit: Option<u64>,
    pub cpus: Option<f64>,
    /// `uid`, `uid:gid` or a user name of the image.
    pub user: Option<String>,
    /// Run an init process as PID 1 (`docker run --init`).
    pub init: bool,
    /// Bytes of `/dev/shm`.
    pub shm_size: Option<u64>,
    pub ulimits: Vec<Ulimit>,
    /// Applied by the agent's supervisor for services; ignored for databases (Docker's
    /// `unless-stopped`) and jobs (never restarted).
    pub restart: RestartPolicy,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace: Duration,
    /// Where the container's output goes, in the runtime's log format. None: nowhere (it stays
    /// in Docker's own log).
    pub log_path: Option<PathBuf>,
    /// Extra labels; the `dockhand.*` labels are added by the driver.
    pub labels: Vec<(String, String)>,
}

impl ContainerSpec {
    /// A spec with defaults: no command override, no env, no ports, mounts or limits,
    /// restart `never`, a 10s stop grace, no log file.
    pub fn new(
        app: &str,
        service: &str,
        instance_id: &str,
        kind: ContainerKind,
        image: &str,
    ) -> ContainerSpec {
        ContainerSpec {
            instance_id: instance_id.to_string(),
            app: app.to_string(),
            service: service.to_string(),
            release: 0,
            kind,
            image: image.to_string(),
            command: None,
            entrypoint: None,
            env: Vec::new(),
            network: None,
            aliases: Vec::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            memory_limit: None,
            cpus: None,
            user: None,
            init: false,
            shm_size: None,
            ulimits: Vec::new(),
            restart: RestartPolicy::Never,
            stop_grace: Duration::from_secs(10),
            log_path: None,
            labels: Vec::new(),
        }
    }

    /// The container's name: `<app>-<service>` for a database (one per app and name),
    /// `<app>-<instance-id>` otherwise.
    pub fn container_name(&self) -> String {
        let name = match self.kind {
            ContainerKind::Database => format!("{}-{}", self.app, self.service),
            _ => format!("{}-{}", self.app, self.instance_id),
        };
        sanitize_name(&name)
    }
}

impl fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ContainerSpec")
            .field("instance_id", &self.instance_id)
            .field("app", &self.app)
            .field("service", &self.service)
            .field("release", &self.release)
            .field("kind", &self.kind)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("entrypoint", &self.entrypoint)
            .field("env", &format_args!("{env_names:?} (values hidden)"))
            .field("network", &self.network)
            .field("aliases", &self.aliases)
            .field("ports", &self.ports)
            .field("mounts", &self.mounts)
            .field("memory_limit", &self.memory_limit)
            .field("cpus", &self.cpus)
            .field("user", &self.user)
            .field("init", &self.init)
            .field("shm_size", &self.shm_size)
            .field("ulimits", &self.ulimits)
            .field("restart", &self.restart)
            .field("stop_grace", &self.stop_grace)
            .field("log_path", &self.log_path)
            .field("labels", &self.labels)
            .finish()
    }
}

/// When an image reference is pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the image is not present locally.
    #[default]
    Missing,
    /// Every time; a failed pull of an image present locally is a warning.
    Always,
    /// Never; an absent image is an error.
    Never,
}

/// An image built from a local context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSpec {
    /// The app, for the `dockhand.app` label of the built image (see
    /// [`crate::ContainerRuntime::prune_images`]).
    pub app: String,
    /// The context directory (absolute); its `.dockerignore` is respected.
    pub context: PathBuf,
    /// Relative to the context, or absolute; None: `Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    pub args: Vec<(String, String)>,
    /// The tag given to the image, e.g. `dockhand/shop-web:r12`.
    pub tag: String,
}

/// Where the image of a container comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Reference { image: String, pull: PullPolicy },
    Build(BuildSpec),
}

/// The result of [`crate::ContainerRuntime::ensure_image`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsuredImage {
    /// The reference to run (the tag, for a build).
    pub reference: String,
    /// The image id (`sha256:…`).
    pub id: String,
    pub pulled: bool,
    pub built: bool,
    /// Something the user should hear about, e.g. a failed pull of an image present locally.
    pub warnings: Vec<String>,
}

/// The Docker network of an app: `dockhand-<app>`.
pub fn network_name(app: &str) -> String {
    sanitize_name(&format!("dockhand-{app}"))
}

/// The Docker volume of an app's named volume: `<app>_<name>`.
pub fn volume_name(app: &str, name: &str) -> String {
    sanitize_name(&format!("{app}_{name}"))
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else becomes `-`.
fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_env_names_but_not_values() {
        let mut spec = ContainerSpec::new("shop", "api", "d1r1-api-0", ContainerKind::Service, "x");
        spec.env = vec![("SECRET_KEY".into(), "hunter2-very-secret".into())];
        let text = format!("{spec:?}");
        assert!(text.contains("SECRET_KEY"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn names() {
        let spec = ContainerSpec::new("shop", "db", "x", ContainerKind::Database, "postgres:16");
        assert_eq!(spec.container_name(), "shop-db");
        let spec = ContainerSpec::new("shop", "api", "d1r2-api-0", ContainerKind::Service, "x");
        assert_eq!(spec.container_name(), "shop-d1r2-api-0");
        assert_eq!(network_name("shop"), "dockhand-shop");
        assert_eq!(volume_name("shop", "media"), "shop_media");
        assert_eq!(volume_name("my app", "a/b"), "my-app_a-b");
    }
}
