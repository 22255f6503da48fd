//! `[cluster]`: nodes are destinations with roles, ingress and labels; each mistake is
//! reported at its line and column with what to do.

mod support;

use std::collections::BTreeMap;

use dockhand_config::Severity::{self, Error, Warning};
use dockhand_config::{ClusterConfig, ClusterEngine, ClusterNode, NodeRole};
use support::Project;

const HEAD: &str = "app = \"shop\"\n[services.web]\ncommand = \"x\"\n\
[destinations.m1]\nhost = \"ssh://root@m1\"\n\
[destinations.m2]\nhost = \"ssh://root@m2\"\n\
[destinations.m3]\nhost = \"ssh://root@m3\"\n\
[destinations.w1]\nhost = \"ssh://root@w1\"\n\
[destinations.w2]\nhost = \"ssh://root@w2\"\n";

/// Lines of HEAD (the `[cluster]` table starts on the next one).
const HEAD_LINES: usize = 13;

fn node(name: &str, role: NodeRole, ingress: bool, labels: &[(&str, &str)]) -> ClusterNode {
    ClusterNode {
        destination: name.into(),
        role,
        ingress,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn a_cluster_of_destinations_with_roles_ingress_and_labels() {
    let project = Project::new();
    let toml = format!(
        "{HEAD}[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nworkers = [\"w1\", \"w2\"]\n\
         ingress = [\"m1\", \"w2\"]\nencrypted = true\n[cluster.labels.w1]\ndb = \"main\"\n"
    );
    let loaded = project.load(&toml).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let cluster = loaded.config.cluster.expect("a cluster");
    assert_eq!(
        cluster,
        ClusterConfig {
            engine: ClusterEngine::Swarm,
            nodes: vec![
                node("m1", NodeRole::Manager, true, &[]),
                node("w1", NodeRole::Worker, false, &[("db", "main")]),
                node("w2", NodeRole::Worker, true, &[]),
            ],
            encrypted: true,
            placement: BTreeMap::new(),
        }
    );
    assert_eq!(cluster.first_manager().destination, "m1");
    assert_eq!(cluster.workers().count(), 2);
}

#[test]
fn placement_constraints_by_service_or_database() {
    let project = Project::new();
    let toml = format!(
        "{HEAD}[databases.db]\nengine = \"postgres\"\npassword = \"${{secret.pw}}\"\n\
         [cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nworkers = [\"w1\"]\n\
         placement = {{ db = [\"node.labels.db == main\"], web = [\" node.role != manager \"] }}\n"
    );
    project.secrets("pw=x\n", 0o600);
    let cluster = project
        .load(&toml)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
        .cluster
        .unwrap();
    assert_eq!(cluster.constraints("db"), ["node.labels.db == main"]);
    assert_eq!(cluster.constraints("web"), ["node.role != manager"]);
    assert!(cluster.constraints("worker").is_empty());
}

#[test]
fn ingress_defaults_to_the_managers_and_no_cluster_is_one_server() {
    let project = Project::new();
    let toml = format!(
        "{HEAD}[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\", \"m2\", \"m3\"]\nworkers = [\"w1\"]\n"
    );
    let cluster = project.load(&toml).unwrap().config.cluster.unwrap();
    let ingress: Vec<&str> = cluster.ingress().map(|n| n.destination.as_str()).collect();
    assert_eq!(ingress, ["m1", "m2", "m3"]);
    assert_eq!(project.load(HEAD).unwrap().config.cluster, None);
}

struct Case {
    name: &'static str,
    /// The `[cluster]` table (after HEAD).
    table: &'static str,
    severity: Severity,
    /// Line within `table` (1 = `[cluster]`).
    line: usize,
    column: usize,
    key: &'static str,
    text: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "no engine",
        table: "[cluster]\nmanagers = [\"m1\"]\n",
        severity: Error,
        line: 1,
        column: 2,
        key: "cluster",
        text: "add engine = \"swarm\"",
    },
    Case {
        name: "misspelled engine",
        table: "[cluster]\nengine = \"swarn\"\nmanagers = [\"m1\"]\n",
        severity: Error,
        line: 2,
        column: 10,
        key: "cluster.engine",
        text: "did you mean `swarm`?",
    },
    Case {
        name: "unknown engine",
        table: "[cluster]\nengine = \"kubernetes\"\nmanagers = [\"m1\"]\n",
        severity: Error,
        line: 2,
        column: 10,
        key: "cluster.engine",
        text: "unknown cluster engine `kubernetes`",
    },
    Case {
        name: "misspelled key",
        table: "[cluster]\nengine = \"swarm\"\nmanager = [\"m1\"]\n",
        severity: Error,
        line: 3,
        column: 1,
        key: "cluster.manager",
        text: "did you mean `managers`?",
    },
    Case {
        name: "no managers",
        table: "[cluster]\nengine = \"swarm\"\nworkers = [\"w1\"]\n",
        severity: Error,
        line: 1,
        column: 2,
        key: "cluster.managers",
        text: "[cluster] has no `managers`",
    },
    Case {
        name: "empty managers",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = []\n",
        severity: Error,
        line: 3,
        column: 12,
        key: "cluster.managers",
        text: "a swarm needs at least one manager",
    },
    Case {
        name: "node that is no destination, near miss",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nworkers = [\"w1\", \"w3\"]\n",
        severity: Error,
        line: 4,
        column: 18,
        key: "cluster.workers",
        text: "`w3` is not a destination",
    },
    Case {
        name: "node that is no destination, no near miss",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"production\"]\n",
        severity: Error,
        line: 3,
        column: 13,
        key: "cluster.managers",
        text: "add [destinations.production]",
    },
    Case {
        name: "node both manager and worker",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nworkers = [\"w1\", \"m1\"]\n",
        severity: Error,
        line: 4,
        column: 18,
        key: "cluster.workers",
        text: "`m1` is already in `managers`",
    },
    Case {
        name: "node listed twice",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\", \"m1\"]\n",
        severity: Error,
        line: 3,
        column: 19,
        key: "cluster.managers",
        text: "`m1` is listed twice",
    },
    Case {
        name: "ingress outside the cluster",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\ningress = [\"w2\"]\n",
        severity: Error,
        line: 4,
        column: 12,
        key: "cluster.ingress",
        text: "ingress node `w2` is not a node of the cluster",
    },
    Case {
        name: "labels of a node outside the cluster",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nworkers = [\"w1\"]\nlabels = { w2 = { db = \"main\" } }\n",
        severity: Error,
        line: 5,
        column: 12,
        key: "cluster.labels.w2",
        text: "did you mean `w1`?",
    },
    Case {
        name: "reserved label",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n[cluster.labels.m1]\n\"dockhand.node\" = \"x\"\n",
        severity: Error,
        line: 5,
        column: 1,
        key: "cluster.labels.m1.dockhand.node",
        text: "are reserved",
    },
    Case {
        name: "label value not a string",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n[cluster.labels.m1]\nssd = true\n",
        severity: Error,
        line: 5,
        column: 7,
        key: "cluster.labels.m1.ssd",
        text: "expected a string",
    },
    Case {
        name: "two managers",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\", \"m2\"]\n",
        severity: Warning,
        line: 3,
        column: 12,
        key: "cluster.managers",
        text: "2 managers tolerate no more lost managers than 1",
    },
    Case {
        name: "encrypted not a boolean",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\nencrypted = \"yes\"\n",
        severity: Error,
        line: 4,
        column: 13,
        key: "cluster.encrypted",
        text: "expected true or false",
    },
    Case {
        name: "placement of an unknown service, near miss",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n[cluster.placement]\nwbe = [\"node.role == worker\"]\n",
        severity: Error,
        line: 5,
        column: 1,
        key: "cluster.placement.wbe",
        text: "did you mean `web`?",
    },
    Case {
        name: "placement constraint without an operator",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n[cluster.placement]\nweb = [\"node.labels.db\"]\n",
        severity: Error,
        line: 5,
        column: 8,
        key: "cluster.placement.web",
        text: "compares with `==` or `!=`",
    },
    Case {
        name: "placement constraint on an unknown attribute",
        table: "[cluster]\nengine = \"swarm\"\nmanagers = [\"m1\"]\n[cluster.placement]\nweb = [\"node.label.db == x\"]\n",
        severity: Error,
        line: 5,
        column: 8,
        key: "cluster.placement.web",
        text: "`node.label.db` is not a node attribute",
    },
];

#[test]
fn malformed_cluster_tables_are_reported_at_their_spot() {
    let mut failures = Vec::new();
    for case in CASES {
        let project = Project::new();
        let toml = format!("{HEAD}{}", case.table);
        let diagnostics = match project.load(&toml) {
            Ok(loaded) => {
                if case.severity == Error {
                    failures.push(format!("{}: loaded without error", case.name));
                }
                loaded.warnings
            }
            Err(error) => error.diagnostics,
        };
        let found = diagnostics.iter().find(|d| {
            d.message.contains(case.text)
                || d.help.as_deref().is_some_and(|h| h.contains(case.text))
        });
        let Some(d) = found else {
            failures.push(format!(
                "{}: no diagnostic contains {:?}; got:\n{}",
                case.name,
                case.text,
                support::render(&diagnostics)
            ));
            continue;
        };
        let got = (d.severity, d.line, d.column, d.key.as_deref());
        let want = (
            case.severity,
            HEAD_LINES + case.line,
            case.column,
            Some(case.key),
        );
        if got != want {
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}:\n{d}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
