//! The Dockhand agent: the daemon that owns a host's app.
//!
//! It supervises the app's instances through the runtime, fronts them with the proxy, probes
//! their health, performs deploys and rollbacks, records everything in the state database and
//! answers clients on its Unix socket. `dockhand agent` runs it as a service; `dockhand up`
//! runs it in the foreground for one project directory.
//!
//! The shape: [`Agent`] (`agent.rs`) starts and stops the subsystems (`subsystem.rs`: the
//! proxy, the health prober, the scheduler, the socket server) and is the façade the socket
//! server dispatches to. Deploys are planned as data (`deploy/plan.rs`) and executed
//! (`deploy/execute.rs`) through the narrow handles of `deploy::Deployer`.

mod access;
pub mod activation;
mod agent;
mod alerts;
pub mod backups;
mod certs;
pub mod clock;
mod cluster_watch;
mod containers;
mod dashboard;
mod deploy;
mod error;
mod events;
mod exec;
mod fleet;
mod footprint;
mod health;
mod housekeeping;
pub mod ingress;
mod layout;
mod lock;
mod logs;
mod maintenance;
mod monitor;
pub mod preflight;
mod prober;
mod proxy;
mod routes;
mod runtimes;
mod scheduler;
mod secret_tools;
mod secrets;
mod server;
mod snapshot;
mod statics;
mod status;
mod subsystem;
mod tasks;
mod tls;
mod update;
mod watch;
mod wire;

pub use agent::{Agent, AgentOptions, Signals, StartMode};
pub use error::{AgentError, ErrorKind};
pub use exec::{shell_join, EXEC_TIMEOUT};
pub use health::{probe, ProbeKind, ProbePlan};
pub use layout::StateLayout;
pub use secrets::{load as load_secrets, Redactor};

/// The pure parsers and timing rules the fuzz targets (`fuzz/`) exercise: not an API, and
/// nothing in the workspace uses it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::scheduler::{missed, Schedule};
    pub use crate::update::webhook::{pushed_ref, verify, Forge, Verified};
}

/// Where progress of a long operation goes (a socket client, or the terminal for `up`).
pub type Sink<'a> = &'a (dyn Fn(dockhand_api::Progress) + Send + Sync);
