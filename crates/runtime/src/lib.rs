//! The process runtime: starts the native commands of a service as supervised instances.
//!
//! Each instance runs as `/bin/sh -c <command>` in its own process group with its env, working
//! directory and `$PORT`; its stdout and stderr are captured line by line into a log file with
//! size-based rotation; it is restarted with exponential back-off (and a crash-loop state) and
//! stopped with SIGTERM, then SIGKILL after a grace period. Every process carries
//! `DOCKHAND_INSTANCE=<agent-id>/<instance-id>` in its environment so [`reap_orphans`] can find
//! what a crashed agent left behind. The runtime knows nothing about routing, releases or the
//! database: it starts, watches and stops what it is told to.

mod cgroup;
mod error;
mod follow;
mod logread;
mod logs;
mod oneshot;
mod process;
mod reap;
mod spec;
mod supervisor;

pub use error::RuntimeError;
pub use follow::follow_log;
pub use logread::{detect_level, read_log, Level, LogLine, LogQuery, Stream};
pub use oneshot::{OneShot, OneShotOutput};
pub use reap::reap_orphans;
pub use spec::{ExitInfo, InstanceSpec, InstanceState, InstanceStatus, LogRotation, RestartPolicy};
pub use supervisor::{Instance, ProcessRuntime};

/// The environment variable that marks every process the runtime starts:
/// `DOCKHAND_INSTANCE=<agent-id>/<instance-id>`.
pub const INSTANCE_ENV: &str = "DOCKHAND_INSTANCE";
/// The environment variable that names the service of an instance.
pub const SERVICE_ENV: &str = "DOCKHAND_SERVICE";
