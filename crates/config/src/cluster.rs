//! `[cluster]`: the app runs on several servers as one Docker Swarm. The servers are the
//! `[destinations.NAME]` of the file, given roles (managers, workers), which of them run the
//! ingress proxy, and Swarm node labels (what placement constraints match).
//!
//! ```toml
//! [cluster]
//! engine = "swarm"
//! managers = ["m1"]
//! workers = ["w1", "w2"]
//! ingress = ["m1"]
//! labels = { w1 = { db = "main" } }
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::parse::{key_span, suggest, value_span, Field, Parser};

const CLUSTER_KEYS: &[&str] = &[
    "engine",
    "managers",
    "workers",
    "ingress",
    "labels",
    "encrypted",
    "placement",
];

/// The engines a cluster may run on.
const ENGINES: &[&str] = &["swarm"];

/// The `[cluster]` table, resolved: every node names a destination of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub engine: ClusterEngine,
    /// Managers first (the first one creates the swarm), then workers, in file order.
    pub nodes: Vec<ClusterNode>,
    /// Overlay networks encrypted (IPsec between nodes), for nodes that talk over a public
    /// network.
    pub encrypted: bool,
    /// Swarm placement constraints by service or database name (`node.labels.db == main`):
    /// a database is pinned to the node that holds its volume this way.
    #[serde(default)]
    pub placement: BTreeMap<String, Vec<String>>,
}

/// The distributed engine under a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterEngine {
    Swarm,
}

/// What a node does in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

/// One server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// The `[destinations.NAME]` it is reached through (also its Swarm node label
    /// `dockhand.node`).
    pub destination: String,
    pub role: NodeRole,
    /// Runs the ingress proxy (publishes 80/443).
    pub ingress: bool,
    /// Swarm node labels.
    pub labels: BTreeMap<String, String>,
}

impl ClusterConfig {
    /// The manager that creates the swarm (and whose agent deploys).
    pub fn first_manager(&self) -> &ClusterNode {
        &self.nodes[0]
    }

    pub fn managers(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.role == NodeRole::Manager)
    }

    pub fn workers(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.role == NodeRole::Worker)
    }

    pub fn ingress(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.ingress)
    }

    pub fn node(&self, destination: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.destination == destination)
    }

    /// The placement constraints of service or database `name` (none: anywhere).
    pub fn constraints(&self, name: &str) -> &[String] {
        self.placement.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Why `text` is not a Swarm placement constraint (`node.labels.db == main`), if it is not.
/// The one rule for `[cluster] placement` and for `dockhand import compose --cluster`, which
/// checks a stack file's `deploy.placement.constraints` with it.
pub fn constraint_problem(text: &str) -> Option<String> {
    let Some((left, right)) = text.split_once("==").or_else(|| text.split_once("!=")) else {
        return Some("a constraint compares with `==` or `!=`".into());
    };
    let (left, right) = (left.trim(), right.trim());
    let known = [
        "node.id",
        "node.hostname",
        "node.role",
        "node.platform.os",
        "node.platform.arch",
    ];
    let label = ["node.labels.", "engine.labels."]
        .iter()
        .any(|p| left.strip_prefix(p).is_some_and(|l| !l.is_empty()));
    if !label && !known.contains(&left) {
        return Some(format!(
            "`{left}` is not a node attribute (node.labels.NAME, node.hostname, node.role, node.id, node.platform.os, node.platform.arch)"
        ));
    }
    if right.is_empty() {
        return Some("the value after the operator is missing".into());
    }
    None
}

/// Whether the text of a `dockhand.toml` has a `[cluster]` table (read without validating the
/// rest: the client commands choose between the swarm and the agent with it).
pub fn declares_cluster(text: &str) -> bool {
    toml_edit::ImDocument::parse(text)
        .is_ok_and(|doc| doc.get("cluster").is_some_and(|c| c.is_table_like()))
}

/// Why `name` is not a valid Swarm label name (`db`, `com.example.disk`), if it is not (also
/// what `dockhand import compose --cluster` checks before it hints at a node label).
pub fn label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it must start with a letter or digit")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        Some("it may only contain letters, digits, `.`, `-` and `_`")
    } else if name.starts_with("dockhand.") || name.starts_with("com.docker.") {
        Some("the prefixes `dockhand.` and `com.docker.` are reserved")
    } else {
        None
    }
}

impl Parser<'_> {
    /// The `[cluster]` table; `destinations` are the names of `[destinations]`.
    pub(crate) fn cluster(
        &mut self,
        table: &dyn TableLike,
        table_span: Range<usize>,
        destinations: &[String],
    ) -> Option<ClusterConfig> {
        let fields = self.fields(table, "cluster", CLUSTER_KEYS, "in [cluster]");
        let mut ok = true;
        let engine = match fields.get("engine") {
            None => {
                self.error(
                    table_span.clone(),
                    Some("cluster"),
                    "[cluster] has no `engine`".into(),
                    Some("add engine = \"swarm\"".into()),
                );
                None
            }
            Some(f) => match self.string(f)?.as_str() {
                "swarm" => Some(ClusterEngine::Swarm),
                other => {
                    let help = match suggest(other, ENGINES) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "Docker Swarm is the only engine: engine = \"swarm\"".into(),
                    };
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("unknown cluster engine `{other}`"),
                        Some(help),
                    );
                    None
                }
            },
        };

        let mut nodes: Vec<ClusterNode> = Vec::new();
        for (key, role) in [
            ("managers", NodeRole::Manager),
            ("workers", NodeRole::Worker),
        ] {
            let Some(f) = fields.get(key) else {
                if role == NodeRole::Manager {
                    self.error(
                        table_span.clone(),
                        Some("cluster.managers"),
                        "[cluster] has no `managers`".into(),
                        Some(
                            "name the destinations that manage the swarm: managers = [\"production\"]"
                                .into(),
                        ),
                    );
                    ok = false;
                }
                continue;
            };
            let Some(names) = self.node_names(f, destinations) else {
                ok = false;
                continue;
            };
            if role == NodeRole::Manager && names.is_empty() {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "`managers` is empty: a swarm needs at least one manager".into(),
                    Some(
                        "name one, three or five destinations: managers = [\"production\"]".into(),
                    ),
                );
                ok = false;
            }
            for (name, span) in names {
                if let Some(at) = nodes.iter().position(|n| n.destination == name) {
                    let before = match nodes[at].role {
                        NodeRole::Manager => "managers",
                        NodeRole::Worker => "workers",
                    };
                    self.error(
                        span,
                        Some(&f.path),
                        format!("`{name}` is already in `{before}`"),
                        Some("a node is either a manager or a worker, listed once (managers run tasks too)".into()),
                    );
                    ok = false;
                    continue;
                }
                nodes.push(ClusterNode {
                    destination: name,
                    role,
                    ingress: false,
                    labels: BTreeMap::new(),
                });
            }
        }

        let managers = nodes.iter().filter(|n| n.role == NodeRole::Manager).count();
        if managers > 0 && managers.is_multiple_of(2) {
            let f = fields.get("managers").expect("managers were given");
            self.warning(
                value_span(f),
                Some(&f.path),
                format!("{managers} managers tolerate no more lost managers than {}", managers - 1),
                Some(format!(
                    "a swarm keeps working while a majority of its managers is up: use an odd number ({} or {})",
                    managers - 1,
                    managers + 1
                )),
            );
        } else if managers > 7 {
            let f = fields.get("managers").expect("managers were given");
            self.warning(
                value_span(f),
                Some(&f.path),
                format!("{managers} managers: every change waits for a majority of them"),
                Some("Docker recommends at most 7 managers; 3 or 5 suit most clusters, and the others can be workers".into()),
            );
        }

        match fields.get("ingress") {
            Some(f) => {
                if let Some(names) = self.node_names(f, destinations) {
                    for (name, span) in names {
                        match nodes.iter_mut().find(|n| n.destination == name) {
                            Some(node) => node.ingress = true,
                            None => {
                                self.error(
                                    span,
                                    Some(&f.path),
                                    format!("ingress node `{name}` is not a node of the cluster"),
                                    Some("list it in `managers` or `workers` too".into()),
                                );
                                ok = false;
                            }
                        }
                    }
                } else {
                    ok = false;
                }
            }
            // The proxy runs on the managers unless told otherwise.
            None => {
                for node in nodes.iter_mut().filter(|n| n.role == NodeRole::Manager) {
                    node.ingress = true;
                }
            }
        }

        if let Some(f) = fields.get("labels") {
            ok &= self.cluster_labels(f, &mut nodes);
        }

        let mut placement = BTreeMap::new();
        if let Some(f) = fields.get("placement") {
            match self.cluster_placement(f) {
                Some(p) => placement = p,
                None => ok = false,
            }
        }

        let encrypted = match fields.get("encrypted") {
            Some(f) => self.boolean(f).unwrap_or(false),
            None => false,
        };
        match engine {
            Some(engine) if ok && !nodes.is_empty() => Some(ClusterConfig {
                engine,
                nodes,
                encrypted,
                placement,
            }),
            _ => None,
        }
    }

    /// An array of destination names, each checked against `[destinations]`; with the span
    /// of each.
    fn node_names(
        &mut self,
        f: &Field<'_>,
        destinations: &[String],
    ) -> Option<Vec<(String, Range<usize>)>> {
        let Some(array) = f.item.as_array() else {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("expected an array of destination names for `{}`", f.name),
                Some(format!("write {} = [\"production\"]", f.name)),
            );
            return None;
        };
        let mut out: Vec<(String, Range<usize>)> = Vec::new();
        let mut ok = true;
        for value in array.iter() {
            let span = value.span().unwrap_or_else(|| value_span(f));
            let Some(name) = value.as_str() else {
                self.error(
                    span,
                    Some(&f.path),
                    format!("every element of `{}` must be a destination name", f.name),
                    None,
                );
                ok = false;
                continue;
            };
            if !destinations.iter().any(|d| d == name) {
                let known: Vec<&str> = destinations.iter().map(String::as_str).collect();
                let help = match suggest(name, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "add [destinations.{name}] with host = \"ssh://USER@HOST\" (cluster nodes are destinations)"
                    ),
                };
                self.error(
                    span,
                    Some(&f.path),
                    format!("`{name}` is not a destination"),
                    Some(help),
                );
                ok = false;
                continue;
            }
            if out.iter().any(|(n, _)| n == name) {
                self.error(
                    span,
                    Some(&f.path),
                    format!("`{name}` is listed twice in `{}`", f.name),
                    None,
                );
                ok = false;
                continue;
            }
            out.push((name.to_string(), span));
        }
        ok.then_some(out)
    }

    /// `labels = { NODE = { NAME = "VALUE" } }` (or `[cluster.labels.NODE]`).
    fn cluster_labels(&mut self, f: &Field<'_>, nodes: &mut [ClusterNode]) -> bool {
        let Some(table) = self.table(f) else {
            return false;
        };
        let mut ok = true;
        for (node_name, item) in table.iter() {
            let Some((key, _)) = table.get_key_value(node_name) else {
                continue;
            };
            let span = key.span().unwrap_or(0..0);
            let path = format!("cluster.labels.{node_name}");
            let Some(node) = nodes.iter_mut().find(|n| n.destination == node_name) else {
                let known: Vec<&str> = nodes.iter().map(|n| n.destination.as_str()).collect();
                let help = match suggest(node_name, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "labels are given to nodes listed in `managers` or `workers`".into(),
                };
                self.error(
                    span,
                    Some(&path),
                    format!("`{node_name}` is not a node of the cluster"),
                    Some(help),
                );
                ok = false;
                continue;
            };
            let Some(labels) = item.as_table_like() else {
                self.error(
                    span,
                    Some(&path),
                    format!("the labels of `{node_name}` must be a table"),
                    Some(format!(
                        "write labels = {{ {node_name} = {{ db = \"main\" }} }}"
                    )),
                );
                ok = false;
                continue;
            };
            for (label, value) in labels.iter() {
                let Some((lkey, _)) = labels.get_key_value(label) else {
                    continue;
                };
                let lspan = lkey.span().unwrap_or(0..0);
                let lpath = format!("{path}.{label}");
                if let Some(problem) = label_problem(label) {
                    self.error(
                        lspan,
                        Some(&lpath),
                        format!("invalid node label `{label}`: {problem}"),
                        None,
                    );
                    ok = false;
                    continue;
                }
                let field = Field {
                    name: label,
                    key: lkey,
                    item: value,
                    path: lpath,
                };
                match self.string(&field) {
                    Some(text) => {
                        self.sites.insert(field.path.clone(), key_span(&field));
                        node.labels.insert(label.to_string(), text);
                    }
                    None => ok = false,
                }
            }
        }
        ok
    }

    /// `placement = { NAME = ["node.labels.db == main"] }`: constraints by service or
    /// database (the names are checked once those are known).
    fn cluster_placement(&mut self, f: &Field<'_>) -> Option<BTreeMap<String, Vec<String>>> {
        let table = self.table(f)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, item) in table.iter() {
            let Some((key, _)) = table.get_key_value(name) else {
                continue;
            };
            let field = Field {
                name,
                key,
                item,
                path: format!("cluster.placement.{name}"),
            };
            self.sites.insert(field.path.clone(), key_span(&field));
            let Some(array) = item.as_array() else {
                self.error(
                    value_span(&field),
                    Some(&field.path),
                    format!("expected an array of constraints for `{name}`"),
                    Some(format!("write {name} = [\"node.labels.db == main\"]")),
                );
                ok = false;
                continue;
            };
            let mut constraints = Vec::new();
            for value in array.iter() {
                let span = value.span().unwrap_or_else(|| value_span(&field));
                let Some(text) = value.as_str() else {
                    self.error(
                        span,
                        Some(&field.path),
                        "every constraint must be a string".into(),
                        None,
                    );
                    ok = false;
                    continue;
                };
                if let Some(problem) = constraint_problem(text) {
                    self.error(
                        span,
                        Some(&field.path),
                        format!("invalid placement constraint `{text}`: {problem}"),
                        Some("write e.g. \"node.labels.db == main\" (labels come from [cluster.labels.NODE])".into()),
                    );
                    ok = false;
                    continue;
                }
                constraints.push(text.trim().to_string());
            }
            out.insert(name.to_string(), constraints);
        }
        ok.then_some(out)
    }

    /// Every name of `[cluster] placement` is a service or a database of `config`.
    pub(crate) fn check_cluster_placement(&mut self, config: &crate::AppConfig) {
        let Some(cluster) = &config.cluster else {
            return;
        };
        let known: Vec<&str> = config
            .services
            .keys()
            .chain(config.databases.keys())
            .map(String::as_str)
            .collect();
        for name in cluster.placement.keys() {
            if known.contains(&name.as_str()) {
                continue;
            }
            let path = format!("cluster.placement.{name}");
            let span = self.sites.get(&path).cloned().unwrap_or(0..0);
            let help = match suggest(name, &known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "placement is given to the services and databases of the file".into(),
            };
            self.error(
                span,
                Some(&path),
                format!("`{name}` is neither a service nor a database"),
                Some(help),
            );
        }
    }
}
