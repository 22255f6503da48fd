//! The agent's wire protocol and the client side of it.
//!
//! One request per connection on the agent's Unix socket: the client writes one JSON line (a
//! [`Request`]); the agent answers with JSON lines, each a [`Frame`]: any number of progress,
//! log or output frames, then exactly one `result` or `error` frame (a `logs --follow`
//! stream ends only when the client hangs up). Plain JSON lines keep the protocol readable
//! with `socat` and need no HTTP stack in the client.

mod alerts;
mod backups;
mod certs;
mod client;
mod dashboard;
mod tasks;
mod timings;
mod types;
mod update;

pub use alerts::*;
pub use backups::*;
pub use certs::*;
pub use client::{discover_socket, Client, ClientError, SOCKET_ENV};
pub use dashboard::*;
pub use tasks::*;
pub use timings::*;
pub use types::*;
pub use update::*;

/// The state directory name under a project directory (`dockhand up`), holding the socket,
/// the database and the logs.
pub const STATE_DIR_NAME: &str = ".dockhand";
/// The socket file name inside a state directory.
pub const SOCKET_NAME: &str = "agent.sock";
/// Where the system agent's socket lives on a server.
pub const SYSTEM_SOCKET: &str = "/run/dockhand/agent.sock";
