//! Forming the swarm of `[cluster]` (the swarm step of `dockhand setup`), over SSH to each
//! node like the image transfer ([`crate::images`]).
//!
//! [`observe`] asks every node, in parallel, the address it was reached on (what it
//! advertises: `$SSH_CONNECTION`'s server side), its swarm state (`dockhand remote
//! swarm-state`, the Engine's own view) and whether the swarm's firewall table is loaded.
//! [`plan_swarm`] is pure: from those it says, node by node, what is so already and what
//! changes — the swarm's ports closed to all but the other nodes (the nftables table `inet
//! dockhand-swarm`), `init` on the first manager unless it manages a swarm already, `join`
//! for the others with the token of their role, the nodes' roles and labels (`dockhand.node`
//! and `[cluster] labels`) — or refuses before anything changes: a node already in another
//! swarm is never moved (it names the node and how to leave that swarm). [`apply`] performs
//! the plan in that order and waits until every node is ready.
//!
//! The join token is read from the first manager's Engine (`dockhand remote swarm-token`) and
//! written into the joining node's stdin (`dockhand remote swarm-join`, which puts it in the
//! Engine API's request body): it is never in a file, a process argument, the output or an
//! error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dockhand_config::{ClusterConfig, NodeRole};
use dockhand_remote::server::{SwarmFirewall, GUARD_COMMENT, SWARM_TCP_PORTS, SWARM_UDP_PORTS};
use dockhand_remote::ssh::shell_line;
use dockhand_remote::{RemoteError, Session};
use serde::Serialize;

use crate::images::{node_command, NodeAccess};
use crate::node::{host_port, JoinRequest, JoinToken, NodeSwarm, NodeWanted, SWARM_PORT};

/// What one node said before the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The `[cluster]` node (its destination's name).
    pub node: String,
    /// The address it was reached on over SSH: what it advertises to the others.
    pub addr: String,
    pub swarm: NodeSwarm,
    /// Whether `nft` is there (the firewall table needs it).
    pub nft: bool,
    /// The digest of the swarm firewall table loaded, if one is.
    pub guard: Option<String>,
}

/// What the swarm step does to one node, or why it needs nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmStep {
    pub node: String,
    /// `firewall`, `swarm` or `node`.
    pub id: &'static str,
    /// Whether it changes something.
    pub change: bool,
    /// What it does, or why it is done.
    pub detail: String,
    #[serde(skip)]
    action: Option<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Firewall(SwarmFirewall),
    Init {
        addr: String,
    },
    Join {
        role: NodeRole,
        addr: String,
    },
    Spec {
        role: NodeRole,
        labels: BTreeMap<String, String>,
    },
}

/// The swarm step's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmPlan {
    pub steps: Vec<SwarmStep>,
    /// The swarm the nodes are in, when it exists already.
    pub swarm_id: Option<String>,
    /// The first manager's address, which the others join through.
    pub manager_addr: String,
}

impl SwarmPlan {
    /// The steps that change something.
    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.change).count()
    }
}

/// Why the swarm cannot be formed as `[cluster]` says (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SwarmRefusal {
    pub message: String,
    pub hint: String,
}

/// The labels a node gets: `dockhand.node` (its destination's name, how deploys find it) and
/// its `[cluster] labels`.
pub fn wanted_labels(node: &dockhand_config::ClusterNode) -> BTreeMap<String, String> {
    let mut labels = node.labels.clone();
    labels.insert("dockhand.node".into(), node.destination.clone());
    labels
}

/// The plan (pure). `observed` holds every `[cluster]` node.
pub fn plan_swarm(
    cluster: &ClusterConfig,
    observed: &[Observed],
) -> Result<SwarmPlan, SwarmRefusal> {
    let seen = |name: &str| {
        observed
            .iter()
            .find(|o| o.node == name)
            .ok_or_else(|| SwarmRefusal {
                message: format!("node `{name}` was not observed"),
                hint: "this is a bug in dockhand; please report it".into(),
            })
    };
    let first = cluster.first_manager();
    let head = seen(&first.destination)?;
    let mut problems: Vec<String> = Vec::new();

    // The same Engine reached under two names.
    for (i, a) in observed.iter().enumerate() {
        for b in &observed[i + 1..] {
            if !a.swarm.node_id.is_empty() && a.swarm.node_id == b.swarm.node_id {
                problems.push(format!(
                    "nodes `{}` and `{}` are the same Docker Engine (Swarm node {}): give each [destinations] entry its own server",
                    a.node, b.node, a.swarm.node_id
                ));
            }
        }
    }

    // The swarm the first manager is in, if any.
    let existing = match head.swarm.state.as_str() {
        "inactive" => None,
        "active" if head.swarm.manager => Some(head),
        "active" => {
            problems.push(format!(
                "node `{}` is a worker of a swarm (managers at {}), but [cluster] makes it the first manager; leave that swarm on it (`docker swarm leave --force` on {}) or promote it there (`docker node promote`)",
                head.node,
                list(&head.swarm.remote_managers),
                head.node
            ));
            None
        }
        other => {
            problems.push(state_problem(&head.node, other, &head.swarm.error));
            None
        }
    };

    for o in observed {
        if !o.nft {
            problems.push(format!(
                "node `{}` has no `nft` (the swarm's ports are closed to all but the other nodes with an nftables table); install it there (apt-get install nftables)",
                o.node
            ));
        }
        if o.node == head.node {
            continue;
        }
        match o.swarm.state.as_str() {
            "inactive" => {}
            "active" => {
                let member =
                    existing.is_some_and(|h| h.swarm.nodes.iter().any(|n| n.id == o.swarm.node_id));
                if !member {
                    let what = match (&o.swarm.cluster_id, o.swarm.manager) {
                        (Some(id), true) => format!("a manager of swarm {id}"),
                        _ => format!(
                            "in a swarm whose managers are at {}",
                            list(&o.swarm.remote_managers)
                        ),
                    };
                    problems.push(format!(
                        "node `{}` is already in another swarm ({what}); setup never moves a node between swarms: leave that one on {} (`docker swarm leave --force`; its tasks of that swarm stop there), then run setup again",
                        o.node, o.node
                    ));
                }
            }
            other => problems.push(state_problem(&o.node, other, &o.swarm.error)),
        }
    }
    if !problems.is_empty() {
        return Err(SwarmRefusal {
            message: format!(
                "the swarm of [cluster] cannot be formed:\n  - {}",
                problems.join("\n  - ")
            ),
            hint: "nothing was changed; fix the nodes above, then run `dockhand setup` again"
                .into(),
        });
    }

    let encrypted = cluster.encrypted;
    let mut steps = Vec::new();
    // The firewall first: the ports are closed to strangers before the swarm listens.
    for node in &cluster.nodes {
        let o = seen(&node.destination)?;
        let peers: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.destination != node.destination)
            .filter_map(|n| observed.iter().find(|x| x.node == n.destination))
            .map(|x| x.addr.clone())
            .collect();
        let fw = SwarmFirewall {
            peers: peers.clone(),
            encrypted,
        };
        let ports = format!("{SWARM_TCP_PORTS}/tcp, {SWARM_UDP_PORTS}/udp");
        let esp = if encrypted { ", IPsec (ESP)" } else { "" };
        let from = if peers.is_empty() {
            "no other node".to_string()
        } else {
            peers.join(", ")
        };
        let same = o.guard.as_deref() == Some(fw.guard_digest().as_str());
        steps.push(SwarmStep {
            node: node.destination.clone(),
            id: "firewall",
            change: !same,
            detail: if same {
                format!("swarm ports ({ports}{esp}) open only to {from}")
            } else {
                format!("close the swarm ports ({ports}{esp}) to all but {from} (nftables table inet dockhand-swarm)")
            },
            action: (!same).then_some(Action::Firewall(fw)),
        });
    }
    match existing {
        Some(h) => steps.push(SwarmStep {
            node: h.node.clone(),
            id: "swarm",
            change: false,
            detail: format!(
                "manages swarm {} ({} node(s))",
                h.swarm.cluster_id.as_deref().unwrap_or("?"),
                h.swarm.nodes.len()
            ),
            action: None,
        }),
        None => steps.push(SwarmStep {
            node: head.node.clone(),
            id: "swarm",
            change: true,
            detail: format!("create the swarm, advertising {}", head.addr),
            action: Some(Action::Init {
                addr: head.addr.clone(),
            }),
        }),
    }
    for node in cluster.nodes.iter().filter(|n| n.destination != head.node) {
        let o = seen(&node.destination)?;
        let role = word(node.role);
        if o.swarm.state == "active" {
            steps.push(SwarmStep {
                node: node.destination.clone(),
                id: "swarm",
                change: false,
                detail: format!("in the swarm (node {})", o.swarm.node_id),
                action: None,
            });
        } else {
            steps.push(SwarmStep {
                node: node.destination.clone(),
                id: "swarm",
                change: true,
                detail: format!(
                    "join the swarm as a {role} through {}, advertising {}",
                    host_port(&head.addr, SWARM_PORT),
                    o.addr
                ),
                action: Some(Action::Join {
                    role: node.role,
                    addr: o.addr.clone(),
                }),
            });
        }
    }
    for node in &cluster.nodes {
        let o = seen(&node.destination)?;
        let labels = wanted_labels(node);
        let current = existing.and_then(|h| {
            h.swarm
                .nodes
                .iter()
                .find(|n| !o.swarm.node_id.is_empty() && n.id == o.swarm.node_id)
        });
        let shown = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let same = current.is_some_and(|c| {
            c.role == node.role && labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
        });
        steps.push(SwarmStep {
            node: node.destination.clone(),
            id: "node",
            change: !same,
            detail: if same {
                format!("{}, labels {shown}", word(node.role))
            } else {
                format!("make it a {} with the labels {shown}", word(node.role))
            },
            action: (!same).then_some(Action::Spec {
                role: node.role,
                labels,
            }),
        });
    }
    Ok(SwarmPlan {
        steps,
        swarm_id: existing.and_then(|h| h.swarm.cluster_id.clone()),
        manager_addr: head.addr.clone(),
    })
}

fn state_problem(node: &str, state: &str, error: &str) -> String {
    let why = if error.is_empty() {
        String::new()
    } else {
        format!(": {error}")
    };
    match state {
        "locked" => format!(
            "node `{node}`'s swarm is locked{why}; unlock it there (`docker swarm unlock`), or leave it (`docker swarm leave --force`)"
        ),
        other => format!(
            "node `{node}`'s swarm state is `{other}`{why}; leave it there (`docker swarm leave --force`), then run setup again"
        ),
    }
}

fn list(addrs: &[String]) -> String {
    if addrs.is_empty() {
        "an unknown address".into()
    } else {
        addrs.join(", ")
    }
}

fn word(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// The nodes' SSH sessions, opened once for the observation and the changes.
pub struct NodeSessions<'a> {
    access: &'a NodeAccess,
    sessions: BTreeMap<String, Session>,
}

impl<'a> NodeSessions<'a> {
    /// Opens a session to every `[cluster]` node of `access`, in parallel; the first node
    /// that cannot be reached is the error.
    pub fn open(access: &'a NodeAccess) -> Result<NodeSessions<'a>, crate::TransferError> {
        let opened: Vec<Result<(String, Session), crate::TransferError>> = std::thread::scope(
            |scope| {
                let handles: Vec<_> = access
                    .nodes
                    .iter()
                    .map(|n| {
                        let name = n.destination.clone();
                        scope.spawn(move || {
                            let fail = |error: RemoteError| crate::TransferError {
                                node: name.clone(),
                                error: Box::new(error),
                            };
                            let dest = access.destinations.get(&name).ok_or_else(|| {
                                fail(RemoteError::usage(
                                    format!("[cluster] names node `{name}`, which is no [destinations.{name}]"),
                                    format!("add [destinations.{name}] with host = \"ssh://USER@HOST\""),
                                ))
                            })?;
                            let session = Session::open(dest, &access.ssh).map_err(fail)?;
                            Ok((name.clone(), session))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("opening a session panicked"))
                    .collect()
            },
        );
        let mut sessions = BTreeMap::new();
        for r in opened {
            let (name, s) = r?;
            sessions.insert(name, s);
        }
        Ok(NodeSessions { access, sessions })
    }

    fn session(&self, node: &str) -> Result<&Session, crate::TransferError> {
        self.sessions.get(node).ok_or_else(|| {
            transfer(
                node,
                RemoteError::refused(
                    format!("no session to node `{node}`"),
                    "this is a bug in dockhand; please report it",
                ),
            )
        })
    }

    /// Runs `dockhand remote WORDS` on `node`, `stdin` its input; its stdout.
    fn remote(
        &self,
        node: &str,
        what: &str,
        words: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Vec<u8>, crate::TransferError> {
        let session = self.session(node)?;
        let out = session
            .run_ok(
                what,
                &node_command(node, words),
                stdin,
                timeout,
                "the node's dockhand could not reach its Docker Engine; check `docker info` there",
            )
            .map_err(|e| transfer(node, e))?;
        Ok(out.stdout)
    }

    /// Runs the shell script `script` as root on `node` (`sudo -n` unless the SSH user is root),
    /// after printing `addr=` and the server side of `$SSH_CONNECTION`.
    fn root_script(
        &self,
        node: &str,
        what: &str,
        script: &str,
    ) -> Result<String, crate::TransferError> {
        let session = self.session(node)?;
        let outer = "set -- $SSH_CONNECTION; echo \"addr=$3\"; \
                     if [ \"$(id -u)\" = 0 ]; then exec sh -s; else exec sudo -n sh -s; fi";
        let out = session
            .run_ok(
                what,
                &format!("sh -c {}", shell_line(&[outer])),
                Some(script.as_bytes()),
                Duration::from_secs(60),
                "the SSH user must be root or have passwordless sudo (as `dockhand setup` makes the deploy user)",
            )
            .map_err(|e| transfer(node, e))?;
        Ok(out.stdout_text())
    }
}

fn transfer(node: &str, error: RemoteError) -> crate::TransferError {
    crate::TransferError {
        node: node.to_string(),
        error: Box::new(error),
    }
}

/// The probe run as root: whether `nft` is there and the swarm table's digest.
const PROBE: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"
if command -v nft >/dev/null 2>&1; then
  echo nft=yes
  nft list table inet dockhand-swarm 2>/dev/null | grep -o 'dockhand-swarm:[0-9a-f]*' | head -n 1 | sed 's/^/guard=/'
else
  echo nft=no
fi
";

/// The address each node was reached on (what it advertises to the others): the server side
/// of `$SSH_CONNECTION`. Needed before a node's host setup, whose firewall opens the swarm's
/// ports to the others.
pub fn addresses(
    sessions: &NodeSessions<'_>,
) -> Result<BTreeMap<String, String>, crate::TransferError> {
    let mut out = BTreeMap::new();
    for node in &sessions.access.nodes {
        let name = &node.destination;
        let text = sessions
            .session(name)?
            .run_ok(
                "reading the node's address",
                "sh -c 'set -- $SSH_CONNECTION; echo \"$3\"'",
                None,
                Duration::from_secs(30),
                "",
            )
            .map_err(|e| transfer(name, e))?
            .stdout_text();
        let addr = text.trim().to_string();
        if addr.is_empty() {
            return Err(transfer(
                name,
                RemoteError::refused(
                    format!("node `{name}` did not say which address it was reached on ($SSH_CONNECTION is empty)"),
                    "reach the node with OpenSSH's sshd, which sets it",
                ),
            ));
        }
        out.insert(name.clone(), addr);
    }
    Ok(out)
}

/// Asks every node (in parallel) its address, swarm state and firewall table.
pub fn observe(sessions: &NodeSessions<'_>) -> Result<Vec<Observed>, crate::TransferError> {
    let nodes: Vec<String> = sessions
        .access
        .nodes
        .iter()
        .map(|n| n.destination.clone())
        .collect();
    let results: Vec<Result<Observed, crate::TransferError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                scope.spawn(move || {
                    let probe = sessions.root_script(node, "looking at the node", PROBE)?;
                    let mut addr = String::new();
                    let mut nft = false;
                    let mut guard = None;
                    for line in probe.lines() {
                        if let Some(a) = line.strip_prefix("addr=") {
                            addr = a.trim().to_string();
                        } else if line.trim() == "nft=yes" {
                            nft = true;
                        } else if let Some(g) = line.strip_prefix("guard=") {
                            guard = g.trim().strip_prefix(GUARD_COMMENT).map(str::to_string);
                        }
                    }
                    if addr.is_empty() {
                        return Err(transfer(
                            node,
                            RemoteError::refused(
                                format!("node `{node}` did not say which address it was reached on ($SSH_CONNECTION is empty)"),
                                "reach the node with OpenSSH's sshd, which sets it",
                            ),
                        ));
                    }
                    let swarm = swarm_state(sessions, node, "reading the node's swarm state")?;
                    Ok(Observed {
                        node: node.clone(),
                        addr,
                        swarm,
                        nft,
                        guard,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("observing a node panicked"))
            .collect()
    });
    results.into_iter().collect()
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmApplied {
    /// The steps that changed something.
    pub changed: usize,
    /// Each `[cluster]` node's Swarm node id.
    pub node_ids: BTreeMap<String, String>,
}

/// Performs `plan` (from [`plan_swarm`] on what `sessions` observed): the firewall tables,
/// `init`, the joins (tokens through pipes only), the roles and labels; then waits until every
/// node is ready. `progress` hears a line per change.
pub fn apply(
    sessions: &NodeSessions<'_>,
    cluster: &ClusterConfig,
    plan: &SwarmPlan,
    observed: &[Observed],
    progress: &mut dyn FnMut(&str),
) -> Result<SwarmApplied, crate::TransferError> {
    let head = cluster.first_manager().destination.clone();
    let mut ids: BTreeMap<String, String> = observed
        .iter()
        .map(|o| (o.node.clone(), o.swarm.node_id.clone()))
        .collect();
    let mut changed = 0;
    fn step_of<'p>(plan: &'p SwarmPlan, id: &'static str) -> impl Iterator<Item = &'p SwarmStep> {
        plan.steps.iter().filter(move |s| s.id == id && s.change)
    }

    for step in step_of(plan, "firewall") {
        if let Some(Action::Firewall(fw)) = &step.action {
            let script = format!(
                "PATH=\"$PATH:/usr/sbin:/sbin\"\nnft -f /dev/stdin <<'DOCKHAND_NFT'\n{}DOCKHAND_NFT\n",
                fw.guard_table()
            );
            sessions.root_script(&step.node, "loading the swarm's firewall table", &script)?;
            changed += 1;
            progress(&format!("node {}: {}", step.node, step.detail));
        }
    }
    for step in step_of(plan, "swarm") {
        if let Some(Action::Init { addr }) = &step.action {
            let out = sessions.remote(
                &step.node,
                "creating the swarm",
                &format!("swarm-init {}", shell_line(&[addr.as_str()])),
                None,
                Duration::from_secs(120),
            )?;
            ids.insert(
                step.node.clone(),
                String::from_utf8_lossy(&out).trim().to_string(),
            );
            changed += 1;
            progress(&format!("node {}: {}", step.node, step.detail));
        }
    }
    let manager = host_port(&plan.manager_addr, SWARM_PORT);
    let mut tokens: BTreeMap<&'static str, JoinToken> = BTreeMap::new();
    for step in step_of(plan, "swarm") {
        let Some(Action::Join { role, addr }) = &step.action else {
            continue;
        };
        let key = word(*role);
        if !tokens.contains_key(key) {
            let out = sessions.remote(
                &head,
                "reading the join token",
                &format!("swarm-token {key}"),
                None,
                Duration::from_secs(60),
            )?;
            tokens.insert(key, JoinToken::new(&String::from_utf8_lossy(&out)));
        }
        let request = JoinRequest {
            manager: manager.clone(),
            addr: addr.clone(),
            token: tokens[key].expose().to_string(),
        };
        let body = serde_json::to_vec(&request).expect("a join request serializes");
        let out = sessions
            .remote(
                &step.node,
                "joining the swarm",
                "swarm-join",
                Some(&body),
                Duration::from_secs(180),
            )
            .map_err(|mut e| {
                // The node's error text never holds the token, but make sure.
                let text = e.error.to_string();
                if text.contains(request.token.as_str()) {
                    e.error = Box::new(RemoteError::refused(
                        text.replace(request.token.as_str(), "[join token]"),
                        "check the node's Docker Engine log",
                    ));
                }
                e
            })?;
        ids.insert(
            step.node.clone(),
            String::from_utf8_lossy(&out).trim().to_string(),
        );
        changed += 1;
        progress(&format!("node {}: {}", step.node, step.detail));
    }
    drop(tokens);

    let mut wanted = Vec::new();
    let mut described = Vec::new();
    for step in step_of(plan, "node") {
        if let Some(Action::Spec { role, labels }) = &step.action {
            let id = ids.get(&step.node).cloned().unwrap_or_default();
            wanted.push(NodeWanted {
                id,
                role: *role,
                labels: labels.clone(),
            });
            described.push(format!("node {}: {}", step.node, step.detail));
        }
    }
    if !wanted.is_empty() {
        let body = serde_json::to_vec(&wanted).expect("node specs serialize");
        sessions.remote(
            &head,
            "setting the nodes' roles and labels",
            "swarm-nodes",
            Some(&body),
            Duration::from_secs(120),
        )?;
        for line in &described {
            progress(line);
        }
        changed += wanted.len();
    }

    wait_ready(sessions, &head, &ids, progress)?;
    Ok(SwarmApplied {
        changed,
        node_ids: ids,
    })
}

/// `node`'s swarm state, as its `dockhand remote swarm-state` reports it.
fn swarm_state(
    sessions: &NodeSessions<'_>,
    node: &str,
    what: &str,
) -> Result<NodeSwarm, crate::TransferError> {
    let out = sessions.remote(node, what, "swarm-state", None, Duration::from_secs(60))?;
    serde_json::from_slice(&out).map_err(|e| {
        transfer(
            node,
            RemoteError::refused(
                format!("node `{node}`'s dockhand answered `remote swarm-state` with something else than its JSON: {e}"),
                format!("install this version of dockhand there (`dockhand setup -d {node}`)"),
            ),
        )
    })
}

/// Polls the first manager until every node of `ids` is ready (at most two minutes).
fn wait_ready(
    sessions: &NodeSessions<'_>,
    head: &str,
    ids: &BTreeMap<String, String>,
    progress: &mut dyn FnMut(&str),
) -> Result<(), crate::TransferError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut said = false;
    loop {
        let state = swarm_state(sessions, head, "reading the swarm's nodes")?;
        let waiting: Vec<&str> = ids
            .iter()
            .filter(|(_, id)| {
                !state
                    .nodes
                    .iter()
                    .any(|n| &n.id == *id && n.state == "ready")
            })
            .map(|(node, _)| node.as_str())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(transfer(
                waiting[0],
                RemoteError::refused(
                    format!(
                        "node(s) {} joined the swarm but are not ready after two minutes",
                        waiting.join(", ")
                    ),
                    "check that the nodes reach each other on the swarm's ports (2377/tcp, 7946/tcp+udp, 4789/udp) and look at `docker node ls` on the first manager",
                ),
            ));
        }
        if !said {
            progress(&format!("waiting for {} to be ready", waiting.join(", ")));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::SwarmNode;
    use dockhand_config::{ClusterEngine, ClusterNode};

    fn cluster() -> ClusterConfig {
        let node = |name: &str, role, labels: &[(&str, &str)]| ClusterNode {
            destination: name.into(),
            role,
            ingress: false,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        ClusterConfig {
            engine: ClusterEngine::Swarm,
            nodes: vec![
                node("m1", NodeRole::Manager, &[]),
                node("w1", NodeRole::Worker, &[]),
                node("w2", NodeRole::Worker, &[("db", "main")]),
            ],
            encrypted: false,
            placement: BTreeMap::new(),
        }
    }

    fn inactive(node: &str, addr: &str) -> Observed {
        Observed {
            node: node.into(),
            addr: addr.into(),
            swarm: NodeSwarm {
                state: "inactive".into(),
                node_id: String::new(),
                manager: false,
                cluster_id: None,
                nodes: vec![],
                remote_managers: vec![],
                error: String::new(),
            },
            nft: true,
            guard: None,
        }
    }

    fn fresh() -> Vec<Observed> {
        vec![
            inactive("m1", "10.0.0.2"),
            inactive("w1", "10.0.0.3"),
            inactive("w2", "10.0.0.4"),
        ]
    }

    /// What the nodes say once `plan` was applied to `observed`.
    fn applied(c: &ClusterConfig, observed: &[Observed], plan: &SwarmPlan) -> Vec<Observed> {
        let mut out = observed.to_vec();
        let nodes: Vec<SwarmNode> = c
            .nodes
            .iter()
            .map(|n| SwarmNode {
                id: format!("id-{}", n.destination),
                hostname: n.destination.clone(),
                role: n.role,
                labels: wanted_labels(n),
                state: "ready".into(),
                addr: String::new(),
            })
            .collect();
        for o in &mut out {
            let node = c.node(&o.node).unwrap();
            o.swarm.state = "active".into();
            o.swarm.node_id = format!("id-{}", o.node);
            o.swarm.manager = node.role == NodeRole::Manager;
            if o.node == "m1" {
                o.swarm.cluster_id = Some("swarm-1".into());
                o.swarm.nodes = nodes.clone();
            }
            if let Some(Action::Firewall(fw)) = plan
                .steps
                .iter()
                .find(|s| s.node == o.node && s.id == "firewall")
                .and_then(|s| s.action.clone())
            {
                o.guard = Some(fw.guard_digest());
            }
        }
        out
    }

    #[test]
    fn a_fresh_cluster_is_created_on_the_first_manager_and_joined_by_the_others() {
        let c = cluster();
        let plan = plan_swarm(&c, &fresh()).unwrap();
        let changes: Vec<(&str, &str)> = plan
            .steps
            .iter()
            .filter(|s| s.change)
            .map(|s| (s.node.as_str(), s.id))
            .collect();
        assert_eq!(
            changes,
            [
                ("m1", "firewall"),
                ("w1", "firewall"),
                ("w2", "firewall"),
                ("m1", "swarm"),
                ("w1", "swarm"),
                ("w2", "swarm"),
                ("m1", "node"),
                ("w1", "node"),
                ("w2", "node"),
            ]
        );
        let fw = |node: &str| match &plan
            .steps
            .iter()
            .find(|s| s.node == node && s.id == "firewall")
            .unwrap()
            .action
        {
            Some(Action::Firewall(fw)) => fw.peers.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(fw("m1"), ["10.0.0.3", "10.0.0.4"]);
        assert_eq!(fw("w2"), ["10.0.0.2", "10.0.0.3"]);
        let join = plan
            .steps
            .iter()
            .find(|s| s.node == "w2" && s.id == "swarm")
            .unwrap();
        assert_eq!(
            join.action,
            Some(Action::Join {
                role: NodeRole::Worker,
                addr: "10.0.0.4".into()
            })
        );
        assert!(
            join.detail.contains("through 10.0.0.2:2377"),
            "{}",
            join.detail
        );
        let spec = plan
            .steps
            .iter()
            .find(|s| s.node == "w2" && s.id == "node")
            .unwrap();
        assert_eq!(
            spec.action,
            Some(Action::Spec {
                role: NodeRole::Worker,
                labels: [("db", "main"), ("dockhand.node", "w2")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        );
        // Applied, a second plan changes nothing.
        let after = applied(&c, &fresh(), &plan);
        let again = plan_swarm(&c, &after).unwrap();
        assert_eq!(again.changes(), 0, "{again:#?}");
        assert_eq!(again.swarm_id.as_deref(), Some("swarm-1"));
    }

    #[test]
    fn a_changed_label_or_peer_address_is_changed_again() {
        let mut c = cluster();
        let plan = plan_swarm(&c, &fresh()).unwrap();
        let mut after = applied(&c, &fresh(), &plan);
        c.nodes[1].labels.insert("zone".into(), "a".into());
        after[2].addr = "10.0.0.9".into();
        let again = plan_swarm(&c, &after).unwrap();
        let changes: Vec<(&str, &str)> = again
            .steps
            .iter()
            .filter(|s| s.change)
            .map(|s| (s.node.as_str(), s.id))
            .collect();
        assert_eq!(
            changes,
            [("m1", "firewall"), ("w1", "firewall"), ("w1", "node")]
        );
    }

    #[test]
    fn a_node_in_another_swarm_is_refused_by_name_before_any_change() {
        let c = cluster();
        let mut seen = fresh();
        seen[2].swarm.state = "active".into();
        seen[2].swarm.node_id = "other-node".into();
        seen[2].swarm.manager = true;
        seen[2].swarm.cluster_id = Some("swarm-x".into());
        let err = plan_swarm(&c, &seen).unwrap_err();
        assert!(
            err.message
                .contains("node `w2` is already in another swarm (a manager of swarm swarm-x)")
                && err.message.contains("docker swarm leave --force"),
            "{err:?}"
        );
        assert!(err.hint.contains("nothing was changed"), "{err:?}");

        // Also when the first manager manages a swarm the node is not in.
        let plan = plan_swarm(&c, &fresh()).unwrap();
        let mut after = applied(&c, &fresh(), &plan);
        after[1].swarm.node_id = "stranger".into();
        after[1].swarm.remote_managers = vec!["192.0.2.7:2377".into()];
        let err = plan_swarm(&c, &after).unwrap_err();
        assert!(
            err.message
                .contains("node `w1` is already in another swarm (in a swarm whose managers are at 192.0.2.7:2377)"),
            "{err:?}"
        );
    }

    #[test]
    fn a_first_manager_that_is_a_worker_or_locked_and_a_missing_nft_are_refused() {
        let c = cluster();
        let mut seen = fresh();
        seen[0].swarm.state = "active".into();
        seen[0].swarm.node_id = "m".into();
        seen[1].swarm.state = "locked".into();
        seen[2].nft = false;
        let err = plan_swarm(&c, &seen).unwrap_err();
        for part in [
            "node `m1` is a worker of a swarm",
            "node `w1`'s swarm is locked",
            "docker swarm unlock",
            "node `w2` has no `nft`",
        ] {
            assert!(err.message.contains(part), "{part}: {err:?}");
        }
    }

    #[test]
    fn an_encrypted_cluster_lets_ipsec_through_between_the_nodes() {
        let mut c = cluster();
        c.encrypted = true;
        let plan = plan_swarm(&c, &fresh()).unwrap();
        let step = plan
            .steps
            .iter()
            .find(|s| s.node == "m1" && s.id == "firewall")
            .unwrap();
        assert!(step.detail.contains("IPsec (ESP)"), "{}", step.detail);
        assert!(matches!(&step.action, Some(Action::Firewall(fw)) if fw.encrypted));
    }

    #[test]
    fn a_join_token_never_prints() {
        let token = JoinToken::new("SWMTKN-1-secret\n");
        assert_eq!(token.expose(), "SWMTKN-1-secret");
        assert_eq!(format!("{token} {token:?}"), "[join token] [join token]");
        let request = JoinRequest {
            manager: "10.0.0.2:2377".into(),
            addr: "10.0.0.3".into(),
            token: "SWMTKN-1-secret".into(),
        };
        assert!(!format!("{request:?}").contains("SWMTKN"));
    }
}
