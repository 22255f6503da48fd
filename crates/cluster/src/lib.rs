//! `dockhand_cluster`: running an app on several servers as one Docker Swarm (`[cluster]
//! engine = "swarm"`).
//!
//! Shaped like the single-host code: what to do is data computed by pure functions
//! ([`status`] reads what runs where; planning turns the config into Swarm service specs),
//! and the I/O sits at the edge in [`Swarm`], the one handle on a manager's Engine API
//! (bollard over a Unix socket, every call under a timeout). The crate knows nothing about
//! SSH (the remote crate brings a manager's socket here) or about the agent's state.

mod error;
mod plan;
mod status;
mod swarm;

pub use error::ClusterError;
pub use plan::{
    network_name, plan_service, HealthCommand, PlanError, SecretMount, ServicePlan, UpdatePolicy,
};
pub use status::{Availability, ClusterStatus, NodeState, NodeStatus, Role, TaskState, TaskStatus};
pub use swarm::{Swarm, SwarmTimeouts, UpdateOutcome};
