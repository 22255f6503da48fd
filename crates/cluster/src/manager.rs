//! Reaching a swarm manager from anywhere (a laptop, CI): the manager's Engine socket
//! forwarded through an SSH session of the remote crate ([`dockhand_remote::EngineForward`],
//! as `docker -H ssh://` does it), each connection a channel running `dockhand remote
//! dial-stdio` on the manager — as the agent's user when the SSH user is not root, like the
//! image transfer's node commands. Which manager is pure ([`pick_manager`]): the first
//! `[cluster]` manager, or the one `-d NAME` names.

use std::sync::Arc;

use dockhand_config::{ClusterConfig, ClusterNode, NodeRole};
use dockhand_remote::{Destination, EngineForward, RemoteError, Session};

use crate::error::ClusterError;
use crate::images::NodeAccess;
use crate::swarm::{Swarm, SwarmTimeouts};

/// Why a named node cannot be the manager a command talks to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("`{name}` is not a node of [cluster]; its managers are {managers}")]
    NotANode { name: String, managers: String },
    #[error("node `{name}` is a worker: a worker's Engine cannot deploy nor say the swarm's state; its managers are {managers}")]
    Worker { name: String, managers: String },
}

/// The manager to talk to: the one `requested` names (a `[cluster]` node that manages), else
/// the first manager.
pub fn pick_manager<'a>(
    cluster: &'a ClusterConfig,
    requested: Option<&str>,
) -> Result<&'a ClusterNode, PickError> {
    let managers = || {
        cluster
            .managers()
            .map(|n| n.destination.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = requested else {
        return Ok(cluster.first_manager());
    };
    match cluster.nodes.iter().find(|n| n.destination == name) {
        Some(n) if n.role == NodeRole::Manager => Ok(n),
        Some(_) => Err(PickError::Worker {
            name: name.to_string(),
            managers: managers(),
        }),
        None => Err(PickError::NotANode {
            name: name.to_string(),
            managers: managers(),
        }),
    }
}

/// A manager's Engine reached over SSH; the forward lasts as long as this value.
pub struct ManagerLink {
    /// The `[cluster]` node's name, or the destination given by hand.
    pub node: String,
    /// `USER@HOST` as ssh reaches it.
    pub target: String,
    forward: EngineForward,
    _session: Arc<Session>,
}

impl ManagerLink {
    /// Opens an SSH session to `dest` (the `[cluster]` node `node`) and forwards its Engine
    /// socket here. Fails with the remote crate's classified error when SSH cannot reach it.
    pub fn open(
        access: &NodeAccess,
        node: &str,
        dest: &Destination,
    ) -> Result<ManagerLink, RemoteError> {
        let session = Arc::new(Session::open(dest, &access.ssh)?);
        let forward = EngineForward::start(
            session.clone(),
            crate::images::node_command(node, "dial-stdio"),
        )?;
        Ok(ManagerLink {
            node: node.to_string(),
            target: session.target(),
            forward,
            _session: session,
        })
    }

    /// How messages name this manager.
    pub fn shown(&self) -> String {
        format!("manager `{}` ({}, over SSH)", self.node, self.target)
    }

    /// The swarm handle on this manager's Engine. An Engine that cannot be reached says what
    /// the manager's side said (dockhand missing there, its Engine down).
    pub async fn swarm(&self, timeouts: SwarmTimeouts) -> Result<Swarm, ClusterError> {
        let connected =
            Swarm::connect_named(&self.forward.docker_host(), &self.shown(), timeouts).await;
        connected.map_err(|e| match (e, self.forward.last_error()) {
            (ClusterError::Unreachable { host, reason }, Some(said)) => ClusterError::Unreachable {
                host,
                reason: format!("{reason}; the manager said: {said}"),
            },
            (e, _) => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterConfig {
        let node = |name: &str, role| ClusterNode {
            destination: name.into(),
            role,
            ingress: false,
            labels: Default::default(),
        };
        ClusterConfig {
            engine: dockhand_config::ClusterEngine::Swarm,
            nodes: vec![
                node("m1", NodeRole::Manager),
                node("m2", NodeRole::Manager),
                node("w1", NodeRole::Worker),
            ],
            encrypted: false,
            placement: Default::default(),
        }
    }

    #[test]
    fn the_first_manager_unless_a_manager_is_named() {
        let c = cluster();
        assert_eq!(pick_manager(&c, None).unwrap().destination, "m1");
        assert_eq!(pick_manager(&c, Some("m2")).unwrap().destination, "m2");
    }

    #[test]
    fn a_worker_or_a_stranger_is_refused_with_the_managers() {
        let c = cluster();
        let worker = pick_manager(&c, Some("w1")).unwrap_err();
        assert_eq!(
            worker.to_string(),
            "node `w1` is a worker: a worker's Engine cannot deploy nor say the swarm's state; its managers are m1, m2"
        );
        let stranger = pick_manager(&c, Some("staging")).unwrap_err();
        assert_eq!(
            stranger.to_string(),
            "`staging` is not a node of [cluster]; its managers are m1, m2"
        );
    }
}
