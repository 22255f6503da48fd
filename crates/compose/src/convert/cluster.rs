//! A Swarm stack's `deploy:` section, and with `--cluster` the `[destinations]` and
//! `[cluster]` tables it becomes. `deploy.placement.constraints` turn into `[cluster]
//! placement` (checked by the configuration's own rule, `dockhand_config::constraint_problem`),
//! the node labels they need into commented `[cluster.labels.NODE]` hints, the restart policy
//! into `restart`; `update_config` and `rollback_config` are compared with the fixed policy a
//! cluster deploy uses (start-first, one task at a time, rollback on failure, a monitor
//! window, no delay) and every difference is a note saying what Dockhand does instead.
//! Without `--cluster` the keys that only mean something on a swarm are reported with a hint
//! at the flag.

use toml_edit::{Key, Value as TomlValue};

use super::Notes;
use crate::value::Value;
use crate::{ClusterImport, NoteKind};

/// What a `deploy:` section belongs to: a cluster database runs one task, replaced stop-first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Service,
    Database,
}

/// The cluster part of one import: the nodes (from the command line, or a placeholder) and
/// what the services' `deploy:` sections asked for.
#[derive(Default)]
pub(super) struct Stack {
    /// `--cluster`: none, the import is for one host.
    pub(super) nodes: Option<ClusterImport>,
    /// Placement constraints by dockhand name, in file order.
    placement: Vec<(String, Vec<String>)>,
    /// Databases with no constraint (a cluster database must be pinned).
    unpinned: Vec<String>,
    /// `node.labels.NAME == VALUE` the constraints compare with, once each.
    labels: Vec<(String, String)>,
}

impl Stack {
    pub(super) fn new(nodes: Option<ClusterImport>) -> Self {
        Stack {
            nodes,
            ..Stack::default()
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.nodes.is_some()
    }

    /// A database was imported: with `--cluster` it needs a placement, noted when the stack
    /// gave none.
    pub(super) fn database(&mut self, notes: &mut Notes, name: &str, new: &str) {
        if !self.enabled() || self.placement.iter().any(|(n, _)| n == new) {
            return;
        }
        self.unpinned.push(new.to_owned());
        notes.add(
            Some(name),
            "deploy.placement",
            NoteKind::Warning,
            format!("a database on a cluster runs on the one node that holds its volume, and the stack does not pin it: uncomment the template line for `{new}` in [cluster.placement] and give that node the label (a deploy refuses an unpinned database)"),
        );
    }

    /// The `deploy` keys of compose service `name` (dockhand name `new`) other than
    /// `replicas`, `resources` and `labels`, which the caller handles. Returns the `restart`
    /// policy `deploy.restart_policy` gives (with `--cluster`, services only).
    pub(super) fn deploy_key(
        &mut self,
        notes: &mut Notes,
        name: &str,
        new: &str,
        key: &str,
        v: &Value,
        kind: Kind,
    ) -> Option<&'static str> {
        let enabled = self.enabled();
        let at = format!("deploy.{key}");
        match key {
            "placement" if enabled => self.placement(notes, name, new, v),
            "update_config" | "rollback_config" if enabled => {
                update_policy(notes, name, key, v, kind);
            }
            "placement" | "update_config" | "rollback_config" => notes.add(
                Some(name),
                &at,
                NoteKind::NotCarried,
                "a Swarm setting: this import is for one host; import with --cluster to run the app on a Docker Swarm, where it becomes [cluster] placement or Dockhand's update policy",
            ),
            "restart_policy" if enabled && kind == Kind::Service => {
                return restart_policy(notes, name, v);
            }
            "restart_policy" if enabled => notes.add(
                Some(name),
                &at,
                NoteKind::NotCarried,
                "a database task is always restarted when it exits (Swarm's `any`)",
            ),
            "mode" if enabled => match v.scalar().as_deref() {
                Some("replicated") => {}
                Some("global") => notes.add(
                    Some(name),
                    &at,
                    NoteKind::Warning,
                    "`global` (one task on every node) is not carried: Dockhand runs `replicas` tasks; set `replicas` to the number of nodes, or constrain it with placement",
                ),
                other => notes.add(
                    Some(name),
                    &at,
                    NoteKind::NotCarried,
                    format!(
                        "mode `{}` is not carried: Dockhand runs a service as replicated tasks (one-shot jobs are [tasks])",
                        other.unwrap_or_default()
                    ),
                ),
            },
            "endpoint_mode" if enabled => {
                if v.scalar().as_deref() != Some("dnsrr") {
                    notes.add(
                        Some(name),
                        &at,
                        NoteKind::Assumed,
                        "Dockhand gives every service `dnsrr` endpoints (the service name resolves to its tasks' addresses): a virtual IP needs IPVS, which not every kernel has, and Dockhand's proxy routes to the tasks itself",
                    );
                }
            }
            _ => notes.add(
                Some(name),
                &at,
                NoteKind::NotCarried,
                match kind {
                    Kind::Service if enabled => "only replicas, resources.limits, placement, restart_policy, update_config, rollback_config, mode and endpoint_mode are read on a cluster",
                    Kind::Service => "only deploy.replicas and deploy.resources.limits are supported (dockhand runs on one host)",
                    Kind::Database => "a database runs one container; only deploy.resources.limits are supported",
                },
            ),
        }
        None
    }

    /// `deploy.placement`: the constraints, each checked by `[cluster] placement`'s rule.
    fn placement(&mut self, notes: &mut Notes, name: &str, new: &str, v: &Value) {
        let mut constraints = Vec::new();
        for (k, value) in v.as_map().unwrap_or_default() {
            match k.as_str() {
                "constraints" => {
                    for c in value.as_seq().unwrap_or_default() {
                        let Some(text) = c.scalar() else { continue };
                        let text = text.trim().to_owned();
                        if let Some(problem) = dockhand_config::constraint_problem(&text) {
                            notes.add(
                                Some(name),
                                "deploy.placement.constraints",
                                NoteKind::Warning,
                                format!("`{text}` is not carried: {problem}"),
                            );
                            continue;
                        }
                        self.label_hint(notes, name, &text);
                        constraints.push(text);
                    }
                }
                "preferences" => notes.add(
                    Some(name),
                    "deploy.placement.preferences",
                    NoteKind::NotCarried,
                    "spread preferences are not carried: Swarm's scheduler spreads the tasks over the nodes that match the constraints",
                ),
                other => notes.add(
                    Some(name),
                    &format!("deploy.placement.{other}"),
                    NoteKind::NotCarried,
                    "only placement constraints are carried",
                ),
            }
        }
        if !constraints.is_empty() {
            self.placement.push((new.to_owned(), constraints));
        }
    }

    /// `node.labels.NAME == VALUE`: the node label a constraint needs, hinted at once.
    fn label_hint(&mut self, notes: &mut Notes, name: &str, constraint: &str) {
        let Some((left, value)) = constraint.split_once("==") else {
            return;
        };
        let Some(label) = left.trim().strip_prefix("node.labels.") else {
            return;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if let Some(problem) = dockhand_config::label_problem(label) {
            notes.add(
                Some(name),
                "deploy.placement.constraints",
                NoteKind::Warning,
                format!("the node label `{label}` cannot be given in [cluster.labels]: {problem}; give it to the node by hand (`docker node update --label-add`)"),
            );
            return;
        }
        if !self.labels.iter().any(|(l, v)| l == label && v == value) {
            self.labels.push((label.to_owned(), value.to_owned()));
        }
    }

    /// The `[destinations]` and `[cluster]` tables, as text appended to the document, and
    /// the lines of the report's to-do list they add; empty without `--cluster`.
    pub(super) fn tables(&self) -> (String, Vec<String>) {
        let Some(nodes) = &self.nodes else {
            return (String::new(), Vec::new());
        };
        let mut todo = Vec::new();
        let mut out = String::from(
            "\n# The app on a Docker Swarm (imported with --cluster): the servers are destinations\n# given roles in [cluster]; see docs/configuration.md, [cluster].\n",
        );
        let placeholder = nodes.managers.is_empty();
        let managers: Vec<(String, String)> = if placeholder {
            vec![("manager".into(), "ssh://root@manager.invalid".into())]
        } else {
            nodes.managers.clone()
        };
        for (name, host) in managers.iter().chain(&nodes.workers) {
            out.push_str(&format!("[destinations.{}]\n", Key::new(name.as_str())));
            out.push_str(&format!("host = {}", TomlValue::from(host.as_str())));
            if placeholder {
                out.push_str("  # placeholder: your first server's SSH address");
            }
            out.push('\n');
        }
        if placeholder {
            todo.push("set the SSH address of [destinations.manager] (a placeholder), and add the other servers as destinations in [cluster] workers (or pass --manager/--worker NAME=ssh://USER@HOST to the import)".into());
        }
        let list = |nodes: &[(String, String)]| {
            let names: Vec<String> = nodes
                .iter()
                .map(|(n, _)| TomlValue::from(n.as_str()).to_string())
                .collect();
            format!("[{}]", names.join(", "))
        };
        out.push_str("\n[cluster]\nengine = \"swarm\"\n");
        out.push_str(&format!("managers = {}\n", list(&managers)));
        out.push_str(&format!("workers = {}\n", list(&nodes.workers)));
        if !self.placement.is_empty() || !self.unpinned.is_empty() {
            out.push_str("\n[cluster.placement]\n");
            for (name, constraints) in &self.placement {
                let items: Vec<String> = constraints
                    .iter()
                    .map(|c| TomlValue::from(c.as_str()).to_string())
                    .collect();
                out.push_str(&format!(
                    "{} = [{}]\n",
                    Key::new(name.as_str()),
                    items.join(", ")
                ));
            }
            for name in &self.unpinned {
                out.push_str(&format!(
                    "# {} = [\"node.labels.{name} == yes\"]  # required: the node that holds the database's volume\n",
                    Key::new(name.as_str())
                ));
            }
        }
        if !self.unpinned.is_empty() {
            todo.push(format!(
                "pin the database{} {} to a node in [cluster.placement]",
                if self.unpinned.len() == 1 { "" } else { "s" },
                self.unpinned.join(", ")
            ));
        }
        if !self.labels.is_empty() {
            out.push_str("\n# The placement constraints compare these node labels: give them to the node that\n# must run those tasks (a database's node keeps its volume), NODE being one of the\n# destinations above.\n# [cluster.labels.NODE]\n");
            for (label, value) in &self.labels {
                out.push_str(&format!(
                    "# {} = {}\n",
                    Key::new(label.as_str()),
                    TomlValue::from(value.as_str())
                ));
            }
            todo.push(format!(
                "give the node labels {} to the nodes that must run those tasks (the commented [cluster.labels.NODE] at the end of dockhand.toml)",
                self.labels
                    .iter()
                    .map(|(l, v)| format!("{l}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        (out, todo)
    }
}

/// `deploy.update_config` or `deploy.rollback_config` on a cluster: what matches Dockhand's
/// fixed policy passes silently, every difference is a note saying what Dockhand does.
fn update_policy(notes: &mut Notes, name: &str, key: &str, v: &Value, kind: Kind) {
    let rollback = key == "rollback_config";
    let order = match kind {
        Kind::Service => "start-first",
        Kind::Database => "stop-first",
    };
    for (k, value) in v.as_map().unwrap_or_default() {
        let text = value.scalar().unwrap_or_default();
        let at = format!("deploy.{key}.{k}");
        let differs = |message: String| (NoteKind::Assumed, message);
        let note = match k.as_str() {
            "parallelism" => (text != "1").then(|| {
                differs(format!("parallelism {text}: Dockhand replaces one task at a time, each gated on health"))
            }),
            "order" => (text != order).then(|| {
                differs(match kind {
                    Kind::Service => format!("`{text}` is not carried: Dockhand starts each new task before it stops an old one (start-first), so the service keeps serving"),
                    Kind::Database => format!("`{text}` is not carried: a database task is stopped before its replacement starts (stop-first), so two never share its files"),
                })
            }),
            "failure_action" => {
                let ours = if rollback { "pause" } else { "rollback" };
                (text != ours).then(|| {
                    differs(if rollback {
                        format!("`{text}` is not carried: a rollback that fails pauses, and the deploy reports it")
                    } else {
                        format!("`{text}` is not carried: a task that fails its health check rolls the service back, and the whole app stays on the previous release")
                    })
                })
            }
            "monitor" => None,
            "delay" => (!is_zero_duration(&text)).then(|| {
                differs(format!("delay {text} is not carried: Dockhand moves to the next task as soon as the last one is healthy"))
            }),
            "max_failure_ratio" => (text.parse::<f64>().ok() != Some(0.0)).then(|| {
                differs(format!("max_failure_ratio {text} is not carried: Dockhand tolerates no failed task (0)"))
            }),
            _ => Some((NoteKind::NotCarried, "not part of Dockhand's update policy".to_owned())),
        };
        if let Some((kind, message)) = note {
            notes.add(Some(name), &at, kind, message);
        }
    }
}

/// `deploy.restart_policy` on a cluster: its condition, like `restart:` (Swarm ignores that
/// key in a stack); the rest is noted.
fn restart_policy(notes: &mut Notes, name: &str, v: &Value) -> Option<&'static str> {
    let mut policy = None;
    for (k, value) in v.as_map().unwrap_or_default() {
        let text = value.scalar().unwrap_or_default();
        match k.as_str() {
            "condition" => {
                policy = match text.as_str() {
                    "any" => Some("always"),
                    "on-failure" => Some("on-failure"),
                    "none" => Some("never"),
                    other => {
                        notes.add(
                            Some(name),
                            "deploy.restart_policy.condition",
                            NoteKind::Assumed,
                            format!("unknown condition `{other}`; `always` assumed"),
                        );
                        Some("always")
                    }
                }
            }
            "delay" | "max_attempts" | "window" => notes.add(
                Some(name),
                &format!("deploy.restart_policy.{k}"),
                NoteKind::NotCarried,
                "Dockhand's restart policy on a cluster restarts a task a second after it exits, with no limit",
            ),
            other => notes.add(
                Some(name),
                &format!("deploy.restart_policy.{other}"),
                NoteKind::NotCarried,
                "not part of a restart policy",
            ),
        }
    }
    // Swarm's default condition is `any`.
    Some(policy.unwrap_or("always"))
}

/// `0`, `0s`, `0ms`…: no delay.
fn is_zero_duration(text: &str) -> bool {
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    text.is_empty() || digits.parse::<f64>().is_ok_and(|n| n == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations() {
        assert!(is_zero_duration("0s"));
        assert!(is_zero_duration("0"));
        assert!(!is_zero_duration("10s"));
        assert!(!is_zero_duration("1m30s"));
    }
}
