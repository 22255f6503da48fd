//! The runtime: starts the instances of a service, as native processes ([`ProcessRuntime`])
//! or as Docker containers ([`ContainerRuntime`]), behind one handle type ([`Instance`]).
//!
//! Each instance runs as `/bin/sh -c <command>` in its own process group with its env, working
//! directory and `$PORT`; its stdout and stderr are captured line by line into a log file with
//! size-based rotation; it is restarted with exponential back-off (and a crash-loop state) and
//! stopped with SIGTERM, then SIGKILL after a grace period. Every process carries
//! `DOCKHAND_INSTANCE=<agent-id>/<instance-id>` in its environment so [`reap_orphans`] can find
//! what a crashed agent left behind. The runtime knows nothing about routing, releases or the
//! database: it starts, watches and stops what it is told to. The container driver is
//! described in [`container`](ContainerRuntime).

mod cgroup;
mod container;
mod error;
mod follow;
mod instance;
mod logread;
mod logs;
mod oneshot;
mod process;
mod reap;
mod restart;
mod spec;
mod supervisor;

pub use container::{
    database_spec_hash, docker_host, network_name, volume_name, BuildSpec, ContainerInfo,
    ContainerKind, ContainerRuntime, ContainerSpec, DatabaseLogs, DatabaseState, DockerTimeouts,
    EnsuredImage, ExecDone, ExecEnd, ExecEvent, ExecInput, ExecPipe, ExecStream, ImageLayers,
    ImageSource, Mount, PublishedPort, PullPolicy, Ulimit, LABEL_AGENT, LABEL_APP, LABEL_BUILT,
    LABEL_INSTANCE, LABEL_KIND, LABEL_RELEASE, LABEL_SERVICE, LABEL_SPEC_HASH,
};
pub use error::RuntimeError;
pub use follow::follow_log;
pub use instance::Instance;
pub use logread::{detect_level, read_log, Level, LogLine, LogQuery, Stream};
pub use oneshot::{OneShot, OneShotOutput};
pub use reap::reap_orphans;
pub use spec::{ExitInfo, InstanceSpec, InstanceState, InstanceStatus, LogRotation, RestartPolicy};
pub use supervisor::ProcessRuntime;

/// The environment variable that marks every process the runtime starts:
/// `DOCKHAND_INSTANCE=<agent-id>/<instance-id>`.
pub const INSTANCE_ENV: &str = "DOCKHAND_INSTANCE";
/// The environment variable that names the service of an instance.
pub const SERVICE_ENV: &str = "DOCKHAND_SERVICE";
