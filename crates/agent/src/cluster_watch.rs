//! The cluster watch: where the agent runs with a `[cluster]` project (on a manager's host,
//! reaching that manager's Engine), it asks the swarm every [`INTERVAL`] what its nodes are
//! and what runs where (`dockhand_cluster::Swarm::status`), and hands the alerter one
//! [`NodeObserved`] per node: the `node_down` rule fires for a node that is not ready (with
//! the app's tasks that ran there and where Swarm runs them now) and resolves when it is ready
//! again. Which tasks ran on a node is remembered from the last observation while it was
//! ready; what that turns into is [`observe`], pure and tested with plain data.
//!
//! A node going down or coming back is also an event (`cluster`); so is a manager that does
//! not answer (the subsystem is degraded until it does again).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_cluster::{ClusterStatus, NodeState, Swarm, SwarmTimeouts, TaskState};
use tokio::sync::watch;

use crate::alerts::rules::NodeObserved;
use crate::error::Result;
use crate::events::{EventKind, Events};
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// How often the swarm is asked.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// One replica of a service of the app: (service without the app's prefix, Swarm slot; none
/// for a global service's task).
type Replica = (String, Option<i64>);

/// What the alerter reads. Cheap to clone.
#[derive(Clone)]
pub struct NodesHandle {
    nodes: Arc<Mutex<Vec<NodeObserved>>>,
    seen: watch::Sender<u64>,
}

impl NodesHandle {
    /// The nodes as last observed (empty before the first answer).
    pub fn nodes(&self) -> Vec<NodeObserved> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes after each observation.
    pub fn observations(&self) -> watch::Receiver<u64> {
        self.seen.subscribe()
    }
}

/// The subsystem.
pub struct ClusterWatch {
    /// The manager's Engine (`unix:///…`).
    host: String,
    app: String,
    events: Events,
    handle: NodesHandle,
}

impl ClusterWatch {
    /// A watch of the swarm whose manager's Engine is at `host`, for `app`'s tasks.
    pub fn new(host: &str, app: &str, events: Events) -> (ClusterWatch, NodesHandle) {
        let handle = NodesHandle {
            nodes: Arc::default(),
            seen: watch::channel(0).0,
        };
        let watch = ClusterWatch {
            host: host.to_string(),
            app: app.to_string(),
            events,
            handle: handle.clone(),
        };
        (watch, handle)
    }

    /// The manager's Engine the CLI's cluster commands use too: `$DOCKER_HOST`, else the
    /// local socket.
    pub fn engine_from_env() -> String {
        std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
    }

    async fn status(
        &self,
        swarm: &mut Option<Swarm>,
    ) -> std::result::Result<ClusterStatus, String> {
        if swarm.is_none() {
            *swarm = Some(
                Swarm::connect(&self.host, SwarmTimeouts::default())
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let s = swarm.as_ref().expect("connected above");
        match s.status().await {
            Ok(status) => Ok(status),
            Err(e) => {
                *swarm = None;
                Err(e.to_string())
            }
        }
    }
}

impl Subsystem for ClusterWatch {
    fn name(&self) -> &'static str {
        "cluster_watch"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            ctx.ready();
            let mut swarm: Option<Swarm> = None;
            let mut last: BTreeMap<String, Vec<Replica>> = BTreeMap::new();
            let mut was_down: BTreeMap<String, bool> = BTreeMap::new();
            let mut unreachable: Option<String> = None;
            let mut n = 0u64;
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = ctx.shutdown.wait() => break,
                }
                match self.status(&mut swarm).await {
                    Ok(status) => {
                        if unreachable.take().is_some() {
                            ctx.ready();
                            self.events.info(
                                EventKind::Cluster,
                                None,
                                None,
                                &format!("the swarm's manager at {} answers again", self.host),
                            );
                        }
                        let nodes = observe(&self.app, &status, &mut last);
                        for node in &nodes {
                            let before = was_down.insert(node.name.clone(), node.down);
                            match (before, node.down) {
                                (Some(false) | None, true) => {
                                    self.events
                                        .warn(EventKind::Cluster, None, None, &node.summary)
                                }
                                (Some(true), false) => {
                                    self.events
                                        .info(EventKind::Cluster, None, None, &node.summary)
                                }
                                _ => {}
                            }
                        }
                        *self.handle.nodes.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
                        n += 1;
                        self.handle.seen.send_replace(n);
                    }
                    Err(e) => {
                        if unreachable.as_deref() != Some(e.as_str()) {
                            let what = format!(
                                "cannot ask the swarm's manager at {} about its nodes: {e}",
                                self.host
                            );
                            ctx.degraded(what.clone());
                            if unreachable.is_none() {
                                self.events.warn(EventKind::Cluster, None, None, &what);
                            }
                            unreachable = Some(e);
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// One observation of the swarm: every node, down or not, with what the rule says about it.
/// `last` keeps, per ready node, the app's replicas that ran there (updated here), so that a
/// node that went down still says what ran on it and where Swarm put it since.
pub fn observe(
    app: &str,
    status: &ClusterStatus,
    last: &mut BTreeMap<String, Vec<Replica>>,
) -> Vec<NodeObserved> {
    let prefix = format!("{app}-");
    // The `[cluster]` name of each node (its `dockhand.node` label), else its hostname.
    let names: BTreeMap<&str, &str> = status
        .nodes
        .iter()
        .map(|n| {
            let name = n
                .labels
                .get("dockhand.node")
                .map_or(n.hostname.as_str(), String::as_str);
            (n.hostname.as_str(), name)
        })
        .collect();
    let current: Vec<(Replica, &str, TaskState)> = status
        .tasks
        .iter()
        .filter(|t| t.desired == TaskState::Running)
        .filter_map(|t| {
            let service = t.service.strip_prefix(&prefix)?;
            let node = names.get(t.node.as_deref()?).copied()?;
            Some(((service.to_string(), t.slot), node, t.state))
        })
        .collect();
    let mut out = Vec::new();
    for node in &status.nodes {
        let name = names[node.hostname.as_str()];
        let role = match node.role {
            dockhand_cluster::Role::Manager => "manager",
            dockhand_cluster::Role::Worker => "worker",
        };
        if node.state == NodeState::Ready {
            let mut here: Vec<Replica> = current
                .iter()
                .filter(|(_, n, state)| *n == name && *state == TaskState::Running)
                .map(|(r, _, _)| r.clone())
                .collect();
            here.sort();
            last.insert(name.to_string(), here);
            out.push(NodeObserved {
                name: name.to_string(),
                down: false,
                summary: format!("node {name} ({role}) is ready"),
            });
            continue;
        }
        let state = match node.state {
            NodeState::Down => "down",
            NodeState::Disconnected => "disconnected",
            _ => "in an unknown state",
        };
        let ran = last.get(name).cloned().unwrap_or_default();
        let mut moved = Vec::new();
        let mut stayed = Vec::new();
        for (service, slot) in &ran {
            let Some(slot) = slot else {
                stayed.push(service.clone());
                continue;
            };
            let now = current
                .iter()
                .find(|((s, sl), n, _)| s == service && *sl == Some(*slot) && *n != name);
            moved.push(match now {
                Some((_, to, TaskState::Running)) => format!("{service}.{slot} → {to} (running)"),
                Some((_, to, _)) => format!("{service}.{slot} → {to} (starting)"),
                None => format!("{service}.{slot} → not placed yet"),
            });
        }
        let mut summary = format!("node {name} ({role}, {}) is {state}", node.addr);
        if ran.is_empty() {
            summary += "; none of the app's tasks ran there";
        }
        if !moved.is_empty() {
            summary += &format!("; moved: {}", moved.join(", "));
        }
        if !stayed.is_empty() {
            summary += &format!("; {} (global) stays with the node", stayed.join(", "));
        }
        out.push(NodeObserved {
            name: name.to_string(),
            down: true,
            summary,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_cluster::{Availability, NodeStatus, Role, TaskStatus};

    fn node(name: &str, role: Role, state: NodeState) -> NodeStatus {
        NodeStatus {
            id: format!("id-{name}"),
            hostname: name.into(),
            role,
            state,
            availability: Availability::Active,
            leader: role == Role::Manager,
            addr: format!("10.0.0.{}", name.len()),
            labels: [("dockhand.node".to_string(), name.to_string())].into(),
        }
    }

    fn task(service: &str, slot: Option<i64>, on: &str, state: TaskState) -> TaskStatus {
        TaskStatus {
            id: format!("{service}-{slot:?}-{on}"),
            service: service.into(),
            slot,
            node: Some(on.into()),
            state,
            desired: TaskState::Running,
            message: String::new(),
        }
    }

    #[test]
    fn a_node_that_goes_down_says_what_ran_there_and_where_it_runs_now() {
        let mut last = BTreeMap::new();
        let before = ClusterStatus {
            nodes: vec![
                node("m1", Role::Manager, NodeState::Ready),
                node("w1", Role::Worker, NodeState::Ready),
                node("w2", Role::Worker, NodeState::Ready),
            ],
            tasks: vec![
                task("shop-web", Some(1), "m1", TaskState::Running),
                task("shop-web", Some(2), "w1", TaskState::Running),
                task("shop-api", Some(1), "w1", TaskState::Running),
                task("shop-ingress", None, "w1", TaskState::Running),
                task("other-web", Some(1), "w1", TaskState::Running),
            ],
        };
        let seen = observe("shop", &before, &mut last);
        assert!(seen.iter().all(|n| !n.down), "{seen:?}");
        assert_eq!(seen[1].summary, "node w1 (worker) is ready");

        // w1 down: web.2 already runs on w2, api.1 is starting on m1; the global ingress
        // stays; another app's task is not this app's business.
        let mut after = before.clone();
        after.nodes[1].state = NodeState::Down;
        after.tasks = vec![
            task("shop-web", Some(1), "m1", TaskState::Running),
            task("shop-web", Some(2), "w2", TaskState::Running),
            task("shop-api", Some(1), "m1", TaskState::Starting),
            task("shop-ingress", None, "w1", TaskState::Running),
        ];
        let seen = observe("shop", &after, &mut last);
        let w1 = seen.iter().find(|n| n.name == "w1").unwrap();
        assert!(w1.down);
        assert_eq!(
            w1.summary,
            "node w1 (worker, 10.0.0.2) is down; moved: api.1 → m1 (starting), \
             web.2 → w2 (running); ingress (global) stays with the node"
        );
        assert!(!seen.iter().find(|n| n.name == "w2").unwrap().down);

        // Still down later: what ran there is still what it ran before it went down.
        after.tasks[2].state = TaskState::Running;
        let seen = observe("shop", &after, &mut last);
        assert!(seen[1].summary.contains("api.1 → m1 (running)"), "{seen:?}");

        // Back: ready again, running nothing yet.
        after.nodes[1].state = NodeState::Ready;
        let seen = observe("shop", &after, &mut last);
        assert!(!seen[1].down);
        assert_eq!(last["w1"], vec![("ingress".to_string(), None)]);
    }

    #[test]
    fn a_node_down_from_the_first_look_ran_nothing_known_and_a_lost_replica_is_unplaced() {
        let mut last = BTreeMap::new();
        let status = ClusterStatus {
            nodes: vec![
                node("m1", Role::Manager, NodeState::Ready),
                node("w1", Role::Worker, NodeState::Disconnected),
            ],
            tasks: vec![],
        };
        let seen = observe("shop", &status, &mut last);
        assert_eq!(
            seen[1].summary,
            "node w1 (worker, 10.0.0.2) is disconnected; none of the app's tasks ran there"
        );
        last.insert("w1".into(), vec![("web".into(), Some(3))]);
        let seen = observe("shop", &status, &mut last);
        assert_eq!(
            seen[1].summary,
            "node w1 (worker, 10.0.0.2) is disconnected; moved: web.3 → not placed yet"
        );
    }
}
