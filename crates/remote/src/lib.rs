//! Dockhand on real servers, over SSH: the transport (the system OpenSSH client with
//! connection multiplexing, `ssh.rs`), destinations (`destination.rs`), what a server is
//! (`facts.rs`) and what Dockhand puts there (`server.rs`), the `setup` plan and its
//! executor (`setup/`), a server's Engine socket forwarded through SSH (`forward.rs`).
//!
//! Architecture Invariant: nothing here passes a secret or a file's content in a process
//! argument; contents go through the remote command's stdin.

pub mod destination;
pub mod doctor;
pub mod error;
pub mod facts;
pub mod forward;
pub mod images;
pub mod project;
pub mod provision;
pub mod server;
pub mod setup;
pub mod ssh;

pub use destination::{Destination, DestinationError, DESTINATION_HELP};
pub use error::{ErrorClass, RemoteError, SshFailure};
pub use forward::EngineForward;
pub use ssh::{Session, SshOptions};
