//! What a swarm is made of and what runs where, as plain data: converted from the Engine
//! API's models by pure functions (tested without a swarm), rendered by the CLI.

use std::collections::BTreeMap;

use bollard::models;
use serde::Serialize;

/// A node's role in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

/// Whether the managers hear from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ready,
    Down,
    Disconnected,
    Unknown,
}

/// Whether the scheduler may place tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

/// One node of the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub hostname: String,
    pub role: Role,
    pub state: NodeState,
    pub availability: Availability,
    /// The manager that leads the Raft group.
    pub leader: bool,
    /// The address the node talks to the swarm from.
    pub addr: String,
    pub labels: BTreeMap<String, String>,
}

/// A task's life, as Swarm reports it (the states before `running` folded into `starting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// new … preparing, starting: on its way.
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    /// Its node is gone; the task is being replaced elsewhere.
    Orphaned,
    Other,
}

/// One task (a replica of a service on a node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub id: String,
    /// The service's name (not its id).
    pub service: String,
    /// The replica number (none for global services).
    pub slot: Option<i64>,
    /// The node's hostname; none while unassigned.
    pub node: Option<String>,
    pub state: TaskState,
    /// What Swarm wants the task to be (`running` for current tasks).
    pub desired: TaskState,
    /// The last status message or error.
    pub message: String,
}

/// The nodes of a swarm and its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    pub tasks: Vec<TaskStatus>,
}

impl ClusterStatus {
    /// Builds the status from the Engine API's lists: nodes sorted managers first then by
    /// hostname, tasks given their service's name and their node's hostname.
    pub fn from_api(
        nodes: &[models::Node],
        services: &[models::Service],
        tasks: &[models::Task],
    ) -> ClusterStatus {
        let mut out_nodes: Vec<NodeStatus> = nodes.iter().map(node_status).collect();
        out_nodes.sort_by(|a, b| (a.role, &a.hostname).cmp(&(b.role, &b.hostname)));
        let hostname = |id: &str| {
            out_nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.hostname.clone())
        };
        let service_name = |id: &str| {
            services
                .iter()
                .find(|s| s.id.as_deref() == Some(id))
                .and_then(|s| s.spec.as_ref()?.name.clone())
                .unwrap_or_else(|| id.to_string())
        };
        let mut out_tasks: Vec<TaskStatus> = tasks
            .iter()
            .map(|t| {
                let status = t.status.as_ref();
                TaskStatus {
                    id: t.id.clone().unwrap_or_default(),
                    service: service_name(t.service_id.as_deref().unwrap_or_default()),
                    slot: t.slot,
                    node: t.node_id.as_deref().and_then(hostname),
                    state: task_state(status.and_then(|s| s.state)),
                    desired: task_state(t.desired_state),
                    message: status
                        .and_then(|s| s.err.clone().or_else(|| s.message.clone()))
                        .unwrap_or_default(),
                }
            })
            .collect();
        out_tasks.sort_by(|a, b| (&a.service, a.slot, &a.id).cmp(&(&b.service, b.slot, &b.id)));
        ClusterStatus {
            nodes: out_nodes,
            tasks: out_tasks,
        }
    }

    /// What runs where: each node's hostname with the services of its current tasks
    /// (desired `running`), every node listed even when it runs nothing.
    pub fn placement(&self) -> BTreeMap<String, Vec<(String, TaskState)>> {
        let mut out: BTreeMap<String, Vec<(String, TaskState)>> = self
            .nodes
            .iter()
            .map(|n| (n.hostname.clone(), Vec::new()))
            .collect();
        for task in self
            .tasks
            .iter()
            .filter(|t| t.desired == TaskState::Running)
        {
            if let Some(node) = &task.node {
                out.entry(node.clone())
                    .or_default()
                    .push((task.service.clone(), task.state));
            }
        }
        out
    }
}

fn node_status(node: &models::Node) -> NodeStatus {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    let manager = node.manager_status.as_ref();
    NodeStatus {
        id: node.id.clone().unwrap_or_default(),
        hostname: node
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        role: match spec.and_then(|s| s.role) {
            Some(models::NodeSpecRoleEnum::MANAGER) => Role::Manager,
            _ => Role::Worker,
        },
        state: match status.and_then(|s| s.state) {
            Some(models::NodeState::READY) => NodeState::Ready,
            Some(models::NodeState::DOWN) => NodeState::Down,
            Some(models::NodeState::DISCONNECTED) => NodeState::Disconnected,
            _ => NodeState::Unknown,
        },
        availability: match spec.and_then(|s| s.availability) {
            Some(models::NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(models::NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => Availability::Active,
        },
        leader: manager.and_then(|m| m.leader).unwrap_or(false),
        // A manager's status holds its advertised address with the port; a worker's the
        // address the managers see.
        addr: manager
            .and_then(|m| m.addr.clone())
            .or_else(|| status.and_then(|s| s.addr.clone()))
            .unwrap_or_default(),
        labels: spec
            .and_then(|s| s.labels.clone())
            .map(|l| l.into_iter().collect())
            .unwrap_or_default(),
    }
}

fn task_state(state: Option<models::TaskState>) -> TaskState {
    use models::TaskState as S;
    match state {
        Some(
            S::NEW
            | S::ALLOCATED
            | S::PENDING
            | S::ASSIGNED
            | S::ACCEPTED
            | S::READY
            | S::PREPARING
            | S::STARTING,
        ) => TaskState::Starting,
        Some(S::RUNNING) => TaskState::Running,
        Some(S::COMPLETE) => TaskState::Complete,
        Some(S::SHUTDOWN | S::REMOVE) => TaskState::Shutdown,
        Some(S::FAILED) => TaskState::Failed,
        Some(S::REJECTED) => TaskState::Rejected,
        Some(S::ORPHANED) => TaskState::Orphaned,
        _ => TaskState::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, manager: bool, state: models::NodeState) -> models::Node {
        models::Node {
            id: Some(id.into()),
            description: Some(models::NodeDescription {
                hostname: Some(host.into()),
                ..Default::default()
            }),
            spec: Some(models::NodeSpec {
                role: Some(if manager {
                    models::NodeSpecRoleEnum::MANAGER
                } else {
                    models::NodeSpecRoleEnum::WORKER
                }),
                availability: Some(models::NodeSpecAvailabilityEnum::ACTIVE),
                labels: Some([("db".to_string(), "main".to_string())].into()),
                ..Default::default()
            }),
            status: Some(models::NodeStatus {
                state: Some(state),
                addr: Some(format!("10.0.0.{}", id.len())),
                ..Default::default()
            }),
            manager_status: manager.then(|| models::ManagerStatus {
                leader: Some(true),
                addr: Some("10.0.0.1:2377".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(
        id: &str,
        node: &str,
        state: models::TaskState,
        desired: models::TaskState,
    ) -> models::Task {
        models::Task {
            id: Some(id.into()),
            service_id: Some("svc1".into()),
            slot: Some(1),
            node_id: Some(node.into()),
            status: Some(models::TaskStatus {
                state: Some(state),
                message: Some("started".into()),
                ..Default::default()
            }),
            desired_state: Some(desired),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_managers_first_and_tasks_by_hostname_and_service_name() {
        use models::NodeState::{DOWN, READY};
        use models::TaskState::{RUNNING, SHUTDOWN, STARTING};
        let nodes = [node("b", "w1", false, DOWN), node("a", "m1", true, READY)];
        let services = [models::Service {
            id: Some("svc1".into()),
            spec: Some(models::ServiceSpec {
                name: Some("shop-web".into()),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let tasks = [
            task("t1", "a", RUNNING, RUNNING),
            task("t2", "b", STARTING, RUNNING),
            task("t0", "b", SHUTDOWN, SHUTDOWN),
        ];
        let status = ClusterStatus::from_api(&nodes, &services, &tasks);
        let hosts: Vec<(&str, Role, NodeState, bool, &str)> = status
            .nodes
            .iter()
            .map(|n| {
                (
                    n.hostname.as_str(),
                    n.role,
                    n.state,
                    n.leader,
                    n.addr.as_str(),
                )
            })
            .collect();
        assert_eq!(
            hosts,
            [
                ("m1", Role::Manager, NodeState::Ready, true, "10.0.0.1:2377"),
                ("w1", Role::Worker, NodeState::Down, false, "10.0.0.1"),
            ]
        );
        assert_eq!(status.nodes[0].labels["db"], "main");
        assert_eq!(status.tasks[0].service, "shop-web");
        assert_eq!(status.tasks[0].node.as_deref(), Some("w1"));
        let placement = status.placement();
        assert_eq!(
            placement["m1"],
            [("shop-web".to_string(), TaskState::Running)]
        );
        // The shut-down task is history, not placement.
        assert_eq!(
            placement["w1"],
            [("shop-web".to_string(), TaskState::Starting)]
        );
    }
}
