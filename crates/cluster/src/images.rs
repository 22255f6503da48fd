//! Images without a registry: before a deploy or a rollback changes any service, every image
//! its services use — and the ingress image — is put on every node that may run it. The
//! images are taken from the manager's Engine (where the deploy runs: builds are refused on a
//! cluster, images are pulled or loaded there) and sent to each node's Engine over SSH with
//! the remote crate's layer diff ([`dockhand_remote::images::push_image`], as `deploy -d` and
//! `move` use it): the node lists the layer chains it holds (`dockhand remote images`), only
//! the layers it lacks travel, zstd-compressed, into `dockhand remote load` there. A node
//! that has an image already costs one round trip; the nodes are served in parallel.
//!
//! Which node needs which image is pure ([`wanted_images`]): a service's image goes to every
//! node its placement constraints may match (judged on the `[cluster]` roles and labels,
//! which `deploy` gives the nodes; a constraint on anything else counts as a match), the
//! ingress image to the ingress nodes, nothing to the manager the images come from.
//!
//! A node that cannot be reached fails the transfer, and so the deploy, before any service
//! changed.

use std::collections::BTreeMap;

use dockhand_config::{ClusterNode, NodeRole};
use dockhand_remote::images::Pushed;
use dockhand_remote::{Destination, RemoteError, Session, SshOptions};
use serde::Serialize;

/// An image and where it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNeed {
    pub image: String,
    /// The placement constraints of the service that runs it.
    pub constraints: Vec<String>,
    /// Only the ingress nodes run it (the ingress image).
    pub ingress_only: bool,
}

/// The nodes: who they are (`[cluster]`) and how they are reached.
#[derive(Debug, Clone)]
pub struct NodeAccess {
    /// The `[cluster]` nodes, with their roles and labels.
    pub nodes: Vec<ClusterNode>,
    /// The destination of each `[cluster]` node (`[destinations.NAME] host`), by name.
    pub destinations: BTreeMap<String, Destination>,
    /// How `ssh` runs (`$DOCKHAND_SSH_CONFIG`, batch mode, a shared master).
    pub ssh: SshOptions,
}

/// What one node got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeImages {
    /// The `[cluster]` node (its destination's name).
    pub node: String,
    /// Each image: sent (with its layers and bytes), or found there already.
    pub images: Vec<Pushed>,
    /// Images the manager does not hold: Swarm has the node pull them from their registry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pulled: Vec<String>,
    /// Bytes that went over SSH to the node, all images together.
    pub bytes_sent: u64,
}

/// A node the images could not reach.
#[derive(Debug, thiserror::Error)]
#[error("node `{node}`: {error}")]
pub struct TransferError {
    pub node: String,
    #[source]
    pub error: Box<RemoteError>,
}

/// The images each node needs (pure): by node name, in `[cluster]` order, without `source`
/// (the node the images come from) and without nodes that need none.
pub fn wanted_images(
    nodes: &[ClusterNode],
    needs: &[ImageNeed],
    source: Option<&str>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for node in nodes {
        if Some(node.destination.as_str()) == source {
            continue;
        }
        let mut images: Vec<String> = needs
            .iter()
            .filter(|n| !n.image.is_empty())
            .filter(|n| {
                if n.ingress_only {
                    node.ingress
                } else {
                    may_run(&n.constraints, node)
                }
            })
            .map(|n| n.image.clone())
            .collect();
        images.sort();
        images.dedup();
        if !images.is_empty() {
            out.insert(node.destination.clone(), images);
        }
    }
    out
}

/// Whether a task with `constraints` may be placed on `node`, judged on what `[cluster]`
/// says of it: its role, its labels and the ones `deploy` adds (`dockhand.node`,
/// `dockhand.ingress`). A constraint on anything else (hostname, id, platform, engine labels)
/// may hold: the image is sent rather than missed.
pub fn may_run(constraints: &[String], node: &ClusterNode) -> bool {
    constraints.iter().all(|c| {
        let (left, right, equal) = match c.split_once("==") {
            Some((l, r)) => (l, r, true),
            None => match c.split_once("!=") {
                Some((l, r)) => (l, r, false),
                None => return true,
            },
        };
        let (left, right) = (left.trim(), right.trim().trim_matches('"'));
        let actual = if let Some(label) = left.strip_prefix("node.labels.") {
            match label {
                "dockhand.node" => Some(node.destination.clone()),
                "dockhand.ingress" => Some(node.ingress.to_string()),
                _ => node.labels.get(label).cloned(),
            }
        } else if left == "node.role" {
            Some(
                match node.role {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                }
                .to_string(),
            )
        } else {
            return true;
        };
        (actual.as_deref() == Some(right)) == equal
    })
}

/// The node-side command `dockhand remote WORDS…` (`push_image` appends the image to the
/// inventory command), found on the node's `PATH` or in `/usr/local/bin`, with a clear error
/// where dockhand is missing. A user other than root runs it as the agent's user, through
/// `sudo -n` where `dockhand setup` made that user (as a single server's deploy does: that
/// user may use Docker); root, or a node without that user, runs it as itself.
pub(crate) fn node_command(node: &str, words: &str) -> String {
    let script = format!(
        "PATH=\"$PATH:/usr/local/bin\"; \
         bin=$(command -v dockhand) || {{ echo \"dockhand is not installed on node {node}; install it with: dockhand setup -d {node}\" >&2; exit 127; }}; \
         if [ \"$(id -u)\" != 0 ] && id {user} >/dev/null 2>&1; then exec sudo -n -u {user} \"$bin\" remote {words} \"$@\"; fi; \
         exec \"$bin\" remote {words} \"$@\"",
        user = dockhand_remote::server::USER,
    );
    format!(
        "sh -c {} sh",
        dockhand_remote::ssh::shell_line(&[script.as_str()])
    )
}

/// Sends each node the images `wanted` lists that it lacks, from the Engine at
/// `manager_host`, the nodes in parallel; `progress` hears a line per image and node. Blocks:
/// call it from a thread that may (`tokio::task::spawn_blocking`).
pub fn send_images(
    manager_host: &str,
    access: &NodeAccess,
    wanted: &BTreeMap<String, Vec<String>>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<NodeImages>, TransferError> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let results: Vec<Result<NodeImages, TransferError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|(node, images)| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let say = |line: String| {
                        let _ = tx.send(line);
                    };
                    send_to_node(manager_host, access, node, images, &say).map_err(|error| {
                        TransferError {
                            node: node.clone(),
                            error: Box::new(error),
                        }
                    })
                })
            })
            .collect();
        drop(tx);
        for line in rx {
            progress(&line);
        }
        handles
            .into_iter()
            .zip(wanted.keys())
            .map(|(h, node)| {
                h.join().unwrap_or_else(|_| {
                    Err(TransferError {
                        node: node.clone(),
                        error: Box::new(RemoteError::refused(
                            "the image transfer to the node panicked",
                            "this is a bug in dockhand; please report it with the command's output",
                        )),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

fn send_to_node(
    manager_host: &str,
    access: &NodeAccess,
    node: &str,
    images: &[String],
    say: &dyn Fn(String),
) -> Result<NodeImages, RemoteError> {
    let Some(dest) = access.destinations.get(node) else {
        return Err(RemoteError::usage(
            format!("[cluster] names node `{node}`, which is no [destinations.{node}]"),
            format!("add [destinations.{node}] with host = \"ssh://USER@HOST\""),
        ));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            RemoteError::local(
                "cannot start an I/O runtime",
                "this is a bug in dockhand; please report it",
                e,
            )
        })?;
    let local = rt
        .block_on(dockhand_runtime::ContainerRuntime::connect_to(
            manager_host,
            "cli",
            Default::default(),
            dockhand_runtime::DockerTimeouts::default(),
        ))
        .map_err(|e| {
            RemoteError::refused(
                format!("the manager's Docker Engine: {e}"),
                "the images are read from the manager's Engine (DOCKER_HOST); check that it runs",
            )
        })?;
    let session = Session::open(dest, &access.ssh).inspect_err(|_| {
        say(format!(
            "node {node}: cannot be reached over SSH ({})",
            dest.ssh_target()
        ));
    })?;
    let inventory = node_command(node, "images");
    let load = node_command(node, "load");
    let mut out = NodeImages {
        node: node.to_string(),
        images: Vec::new(),
        pulled: Vec::new(),
        bytes_sent: 0,
    };
    for image in images {
        match dockhand_remote::images::push_image(&session, &rt, &local, image, &inventory, &load)?
        {
            Some(pushed) => {
                say(format!("node {node}: {}", describe(&pushed)));
                out.bytes_sent += pushed.bytes_sent;
                out.images.push(pushed);
            }
            None => {
                say(format!(
                    "node {node}: {image} is not in the manager's Engine; Swarm has the node pull it"
                ));
                out.pulled.push(image.clone());
            }
        }
    }
    Ok(out)
}

/// One image's line: what travelled, or that nothing had to.
fn describe(p: &Pushed) -> String {
    if p.already_there {
        format!("{}: already there", p.image)
    } else {
        format!(
            "{}: sent {} of {} layers ({} skipped, the node has them), {} bytes over SSH",
            p.image,
            p.layers_sent,
            p.layers,
            p.layers - p.layers_sent,
            p.bytes_sent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: NodeRole, ingress: bool, labels: &[(&str, &str)]) -> ClusterNode {
        ClusterNode {
            destination: name.into(),
            role,
            ingress,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn cluster() -> Vec<ClusterNode> {
        vec![
            node("m1", NodeRole::Manager, true, &[]),
            node("w1", NodeRole::Worker, true, &[("zone", "a")]),
            node(
                "w2",
                NodeRole::Worker,
                false,
                &[("db", "main"), ("zone", "b")],
            ),
        ]
    }

    fn need(image: &str, constraints: &[&str], ingress_only: bool) -> ImageNeed {
        ImageNeed {
            image: image.into(),
            constraints: constraints.iter().map(|c| c.to_string()).collect(),
            ingress_only,
        }
    }

    #[test]
    fn constraints_are_judged_on_the_configured_roles_and_labels() {
        let c = cluster();
        let on = |constraints: &[&str]| -> Vec<&str> {
            let constraints: Vec<String> = constraints.iter().map(|s| s.to_string()).collect();
            c.iter()
                .filter(|n| may_run(&constraints, n))
                .map(|n| n.destination.as_str())
                .collect()
        };
        assert_eq!(on(&[]), ["m1", "w1", "w2"]);
        assert_eq!(on(&["node.labels.db == main"]), ["w2"]);
        assert_eq!(on(&["node.labels.db==main"]), ["w2"]);
        assert_eq!(on(&["node.labels.db != main"]), ["m1", "w1"]);
        assert_eq!(
            on(&["node.role == worker", "node.labels.zone == a"]),
            ["w1"]
        );
        assert_eq!(on(&["node.role == manager"]), ["m1"]);
        assert_eq!(on(&["node.labels.dockhand.node == w1"]), ["w1"]);
        assert_eq!(on(&["node.labels.dockhand.ingress == true"]), ["m1", "w1"]);
        // What [cluster] does not know may hold anywhere.
        assert_eq!(on(&["node.hostname == box-7"]), ["m1", "w1", "w2"]);
        assert_eq!(on(&["engine.labels.gpu == yes"]), ["m1", "w1", "w2"]);
    }

    #[test]
    fn each_node_gets_what_may_run_there_and_the_source_nothing() {
        let needs = [
            need("web:2", &[], false),
            need("postgres:16", &["node.labels.db == main"], false),
            need("dockhand-ingress:1-abc", &[], true),
            need("", &[], false),
        ];
        let wanted = wanted_images(&cluster(), &needs, Some("m1"));
        let want: BTreeMap<String, Vec<String>> = [
            ("w1", vec!["dockhand-ingress:1-abc", "web:2"]),
            ("w2", vec!["postgres:16", "web:2"]),
        ]
        .into_iter()
        .map(|(n, i)| (n.to_string(), i.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(wanted, want);
        // Without a known source every node is asked (the manager answers "already there").
        let all = wanted_images(&cluster(), &needs, None);
        assert_eq!(
            all["m1"],
            ["dockhand-ingress:1-abc".to_string(), "web:2".to_string()]
        );
        assert!(wanted_images(&cluster(), &[], None).is_empty());
    }

    #[test]
    fn the_node_command_runs_dockhand_remote_with_the_image_or_says_it_is_missing() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let run = |cmd: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("PATH", &path)
                .output()
                .unwrap()
        };
        // As push_image calls it: the image appended, quoted.
        let cmd = format!(
            "{} {}",
            node_command("w1", "images"),
            dockhand_remote::ssh::shell_line(&["web:2 it's"])
        );
        let missing = run(&cmd);
        assert_eq!(missing.status.code(), Some(127));
        let said = String::from_utf8_lossy(&missing.stderr);
        assert!(
            said.contains("dockhand is not installed on node w1")
                && said.contains("dockhand setup -d w1"),
            "{said}"
        );

        let fake = dir.path().join("dockhand");
        std::fs::write(
            &fake,
            "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = run(&cmd);
        assert!(out.status.success(), "{out:?}");
        let args = String::from_utf8_lossy(&out.stdout);
        // (The suite runs as root, which runs it as itself, not through sudo.)
        assert_eq!(args, "[remote]\n[images]\n[web:2 it's]\n");
    }
}
