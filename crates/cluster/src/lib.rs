//! `dockhand_cluster`: running an app on several servers as one Docker Swarm (`[cluster]
//! engine = "swarm"`).
//!
//! Shaped like the single-host code: what to do is data computed by pure functions
//! ([`status`] reads what runs where; planning turns the config into Swarm service specs),
//! and the I/O sits at the edge in [`Swarm`], the one handle on a manager's Engine API
//! (bollard over a Unix socket, every call under a timeout). The images reach the other nodes
//! over SSH through the remote crate's layer-diff transfer ([`images`]), and `dockhand setup`
//! forms the swarm over SSH ([`setup`], with the node side in [`node`]); a manager's Engine
//! is reached from anywhere through a socket forwarded over SSH ([`ManagerLink`]); the crate
//! knows nothing about the agent's state.

mod deploy;
mod error;
pub mod images;
mod ingress;
mod jobs;
mod manager;
pub mod node;
mod plan;
pub mod setup;
mod status;
mod swarm;

pub use deploy::{
    deploy, plan_app, rollback, word, AppPlan, ClusterReport, DeployError, DeployOptions, Outcome,
    ServiceOutcome,
};
pub use error::ClusterError;
pub use images::{NodeAccess, NodeImages, TransferError};
pub use ingress::{
    auth_file, auth_secrets, auth_target, check_https, image_tag, ingress_config, ingress_files,
    ingress_name, plan_ingress, rootfs_stream, volume_name, write_rootfs, IngressFile, IngressPlan,
    MountedSecret, INGRESS_LABEL, PEER_KEY_SECRET, STATE_TARGET,
};
pub use jobs::{
    job_name, job_spec, job_state, mark_once, new_run_id, once_done, once_name, run_once_tasks,
    run_task, JobError, JobOutcome, JobReport, JobState, OnceRecord, OutputLine,
};
pub use manager::{pick_manager, ManagerLink, PickError};
pub use plan::{
    network_name, plan_database, plan_service, HealthCommand, PlanError, PlanKind, SecretMount,
    ServicePlan, UpdatePolicy, VolumeMount,
};
pub use status::{Availability, ClusterStatus, NodeState, NodeStatus, Role, TaskState, TaskStatus};
pub use swarm::{ReleaseRecord, Swarm, SwarmTimeouts, UpdateOutcome};
