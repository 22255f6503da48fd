//! The node side of forming a swarm: what `dockhand remote swarm-…` runs on a node over SSH,
//! against the node's own Docker Engine (`$DOCKER_HOST`, else the local socket): its swarm
//! state, `init` on the first manager, the join token read there, `join` on the others, and
//! the nodes' roles and labels set on the first manager. Each is one Engine API call; a join
//! token only ever travels in a request body or through the SSH channel's pipes, never a file
//! or a process argument, and [`JoinToken`] never prints.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models;
use bollard::Docker;
use dockhand_config::NodeRole;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::swarm::{engine, within, SwarmTimeouts};

/// The port the managers listen on (Swarm's API and Raft).
pub const SWARM_PORT: u16 = 2377;

/// What a node's Engine says of its swarm membership (`dockhand remote swarm-state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSwarm {
    /// The Engine's `LocalNodeState`: `inactive`, `pending`, `active`, `error` or `locked`.
    pub state: String,
    /// The node's Swarm id (empty when inactive).
    pub node_id: String,
    /// Whether it manages the swarm.
    pub manager: bool,
    /// The swarm's id, when a manager (a worker is not told).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The swarm's nodes, when a manager.
    #[serde(default)]
    pub nodes: Vec<SwarmNode>,
    /// The managers a worker knows (their addresses), to name a foreign swarm.
    #[serde(default)]
    pub remote_managers: Vec<String>,
    /// What the Engine says went wrong (state `error`).
    #[serde(default)]
    pub error: String,
}

/// One node of the swarm as a manager lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmNode {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    pub labels: BTreeMap<String, String>,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    pub addr: String,
}

/// What a node wants its Swarm node spec to say (set on a manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeWanted {
    /// The Swarm node id.
    pub id: String,
    pub role: NodeRole,
    /// Labels added or changed (the node's other labels are kept).
    pub labels: BTreeMap<String, String>,
}

/// A join token: it never prints (`Debug` and `Display` say `[join token]`), and it is not
/// `Serialize`: it leaves a process only through [`JoinRequest`]'s body.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(String);

impl JoinToken {
    /// The token read from a manager's output (trimmed).
    pub fn new(text: &str) -> JoinToken {
        JoinToken(text.trim().to_string())
    }

    /// The token itself, for the request body and for redacting error texts.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[join token]")
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[join token]")
    }
}

/// What `dockhand remote swarm-join` reads from its stdin.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `HOST:2377` of the manager to join through.
    pub manager: String,
    /// The address this node advertises to the others.
    pub addr: String,
    pub token: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("manager", &self.manager)
            .field("addr", &self.addr)
            .field("token", &"[join token]")
            .finish()
    }
}

/// `HOST:PORT`, bracketing an IPv6 address.
pub fn host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A node's own Docker Engine, for forming the swarm.
pub struct NodeEngine {
    docker: Docker,
    host: String,
    timeouts: SwarmTimeouts,
}

impl NodeEngine {
    /// Connects to the Engine at `host` (`unix:///path` or `/path`), swarm or not.
    pub async fn connect(host: &str, timeouts: SwarmTimeouts) -> Result<NodeEngine, ClusterError> {
        Ok(NodeEngine {
            docker: engine(host, timeouts).await?,
            host: host.to_string(),
            timeouts,
        })
    }

    /// The node's swarm membership (and, on a manager, the swarm's id and nodes).
    pub async fn state(&self) -> Result<NodeSwarm, ClusterError> {
        let info = self
            .call("read the engine's info", self.docker.info())
            .await?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "inactive".into());
        let manager = state == "active" && swarm.control_available == Some(true);
        let mut out = NodeSwarm {
            state,
            node_id: swarm.node_id.unwrap_or_default(),
            manager,
            cluster_id: None,
            nodes: Vec::new(),
            remote_managers: swarm
                .remote_managers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.addr)
                .collect(),
            error: swarm.error.unwrap_or_default(),
        };
        if manager {
            let inspected = self
                .call("inspect the swarm", self.docker.inspect_swarm())
                .await?;
            out.cluster_id = inspected.id;
            let nodes = self
                .call("list nodes", self.docker.list_nodes(None))
                .await?;
            out.nodes = nodes.iter().map(swarm_node).collect();
        }
        Ok(out)
    }

    /// Creates a swarm with this node its first manager, advertising `addr`; returns its
    /// node id.
    pub async fn init(&self, addr: &str) -> Result<String, ClusterError> {
        let request = models::SwarmInitRequest {
            listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
            advertise_addr: Some(addr.to_string()),
            ..Default::default()
        };
        self.call_within(
            "create the swarm",
            self.timeouts.api * 2,
            self.docker.init_swarm(request),
        )
        .await
    }

    /// The token that joins a node as `role` (this node must be a manager).
    pub async fn join_token(&self, role: NodeRole) -> Result<JoinToken, ClusterError> {
        let swarm = self
            .call("inspect the swarm", self.docker.inspect_swarm())
            .await?;
        let tokens = swarm.join_tokens.unwrap_or_default();
        let token = match role {
            NodeRole::Manager => tokens.manager,
            NodeRole::Worker => tokens.worker,
        };
        token
            .filter(|t| !t.is_empty())
            .map(|t| JoinToken::new(&t))
            .ok_or_else(|| ClusterError::Api {
                host: self.host.clone(),
                call: "read the join token",
                reason: "the swarm returned no join token".into(),
            })
    }

    /// Joins the swarm of `request` (the token only in the request body); returns this node's
    /// id. An error's text never holds the token.
    pub async fn join(&self, request: &JoinRequest) -> Result<String, ClusterError> {
        let body = models::SwarmJoinRequest {
            listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
            advertise_addr: Some(request.addr.clone()),
            remote_addrs: Some(vec![request.manager.clone()]),
            join_token: Some(request.token.clone()),
            ..Default::default()
        };
        // Joining waits for the manager to accept the node (a manager also syncs Raft).
        let limit = self.timeouts.api * 3;
        match tokio::time::timeout(limit, self.docker.join_swarm(body)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ClusterError::Api {
                    host: self.host.clone(),
                    call: "join the swarm",
                    reason: e.to_string().replace(&request.token, "[join token]"),
                })
            }
            Err(_) => {
                return Err(ClusterError::Timeout {
                    host: self.host.clone(),
                    call: "join the swarm",
                    limit,
                })
            }
        }
        let info = self
            .call("read the engine's info", self.docker.info())
            .await?;
        Ok(info.swarm.and_then(|s| s.node_id).unwrap_or_default())
    }

    /// Sets each node's role and adds its labels (this node must be a manager); returns the
    /// ids of the nodes whose spec changed.
    pub async fn set_nodes(&self, wanted: &[NodeWanted]) -> Result<Vec<String>, ClusterError> {
        let mut changed = Vec::new();
        for w in wanted {
            let node = self
                .call("inspect node", self.docker.inspect_node(&w.id))
                .await?;
            let mut spec = node.spec.clone().unwrap_or_default();
            let before = spec.clone();
            let mut labels = spec.labels.take().unwrap_or_default();
            for (k, v) in &w.labels {
                labels.insert(k.clone(), v.clone());
            }
            spec.labels = Some(labels);
            spec.role = Some(match w.role {
                NodeRole::Manager => models::NodeSpecRoleEnum::MANAGER,
                NodeRole::Worker => models::NodeSpecRoleEnum::WORKER,
            });
            if spec == before {
                continue;
            }
            let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let options = bollard::query_parameters::UpdateNodeOptions {
                version: i64::try_from(version).unwrap_or(i64::MAX),
            };
            self.call("update node", self.docker.update_node(&w.id, spec, options))
                .await?;
            changed.push(w.id.clone());
        }
        Ok(changed)
    }

    async fn call<T>(
        &self,
        call: &'static str,
        fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, ClusterError> {
        self.call_within(call, self.timeouts.api, fut).await
    }

    async fn call_within<T>(
        &self,
        call: &'static str,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, ClusterError> {
        within(&self.host, call, limit, fut).await
    }
}

fn swarm_node(n: &models::Node) -> SwarmNode {
    let spec = n.spec.clone().unwrap_or_default();
    SwarmNode {
        id: n.id.clone().unwrap_or_default(),
        hostname: n
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        role: match spec.role {
            Some(models::NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
            _ => NodeRole::Worker,
        },
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        state: n
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        addr: n
            .status
            .as_ref()
            .and_then(|s| s.addr.clone())
            .unwrap_or_default(),
    }
}
