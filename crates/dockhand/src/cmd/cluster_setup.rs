//! `dockhand setup` in a project whose `dockhand.toml` has a `[cluster]` (and no server given):
//! every node's host is set up as `dockhand setup` sets up one server — with the swarm's ports
//! open to the other nodes only — then the swarm is formed over SSH
//! (`dockhand_cluster::setup`: firewall table, `init` on the first manager, joins with tokens
//! through pipes only, roles and labels), then the watch-only agent is installed on the first
//! manager (its host set up again with the project). `--cluster-only` forms the swarm alone,
//! on nodes whose hosts are set up otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use console::style;
use dockhand_cluster::setup::{self as swarm_setup, NodeSessions, SwarmPlan};
use dockhand_cluster::TransferError;
use dockhand_remote::server::SwarmFirewall;
use dockhand_remote::RemoteError;

use super::setup::SetupArgs;
use crate::output::{self, print_json};
use crate::Global;

/// The project's `dockhand.toml` when setup works on its cluster: no server given (as an
/// argument, `--host`, `-d` or `$DOCKHAND_HOST`) and the file has a `[cluster]` table.
/// `--cluster-only` without one is a usage error.
pub fn project(g: &Global, args: &SetupArgs) -> anyhow::Result<Option<PathBuf>> {
    let server_given = args.server.is_some()
        || args.remote.host.is_some()
        || args.remote.destination.is_some()
        || (!args.cluster_only
            && std::env::var(super::remote::HOST_ENV).is_ok_and(|h| !h.is_empty()));
    if server_given || args.no_project {
        if args.cluster_only {
            return Err(output::usage(
                "--cluster-only forms the swarm of dockhand.toml's [cluster], whose nodes are its [destinations]: give no server (and not --no-project)",
                g.json,
            ));
        }
        return Ok(None);
    }
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => super::remote::find_config(&std::env::current_dir()?),
    };
    let cluster = path.as_ref().filter(|p| {
        std::fs::read_to_string(p).is_ok_and(|t| dockhand_config::declares_cluster(&t))
    });
    match (cluster, args.cluster_only) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, false) => Ok(None),
        (None, true) => Err(output::usage(
            match &path {
                Some(p) => format!("--cluster-only needs a [cluster] table in {}", p.display()),
                None => {
                    "--cluster-only needs a dockhand.toml with a [cluster] table here (or -f FILE)"
                        .into()
                }
            },
            g.json,
        )),
    }
}

/// Sets up every node (unless `--cluster-only`), then forms the swarm.
pub fn run(g: &Global, args: SetupArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let json = g.json;
    let config = super::cluster::load(g, path)?;
    let Some(cluster) = config.cluster.clone() else {
        return Err(output::usage(
            format!("{} has no [cluster] table", path.display()),
            json,
        ));
    };
    let mut access = super::cluster::node_access(g, path, &config)?;
    access.ssh.accept_new_host_key = args.accept_new_host_key;

    // Each node's host, its firewall opening the swarm's ports to the other nodes.
    let mut hosts = Vec::new();
    let mut host_changes = 0;
    let mut peers_of_first = Vec::new();
    if !args.cluster_only {
        let addrs = {
            let sessions = NodeSessions::open(&access).map_err(|e| transfer_error(e, json))?;
            swarm_setup::addresses(&sessions).map_err(|e| transfer_error(e, json))?
        };
        for node in &cluster.nodes {
            let name = &node.destination;
            let Some(dest) = access.destinations.get(name).cloned() else {
                return Err(output::usage(
                    format!("[cluster] names node `{name}`, which is no [destinations.{name}]"),
                    json,
                ));
            };
            let peers = cluster
                .nodes
                .iter()
                .filter(|n| n.destination != *name)
                .filter_map(|n| addrs.get(&n.destination).cloned())
                .collect::<Vec<String>>();
            if *name == cluster.first_manager().destination {
                peers_of_first = peers.clone();
            }
            let node_args = SetupArgs {
                server: Some(dest.to_string()),
                remote: crate::RemoteArgs::default(),
                docker: true,
                config: None,
                no_project: true,
                cluster_only: false,
                quiet_next: true,
                swarm: Some(SwarmFirewall {
                    peers,
                    encrypted: cluster.encrypted,
                }),
                ..args.clone()
            };
            if !json {
                println!("{} {}", style("node").bold(), style(name).bold());
            }
            let applied = super::setup::apply(g, &node_args)?;
            host_changes += applied.changed;
            // Root's login may be closed now: the deploy user logs in from here on.
            if dest.user.as_deref() != Some(applied.deploy_user.as_str()) {
                access.destinations.insert(
                    name.clone(),
                    dockhand_remote::Destination {
                        user: Some(applied.deploy_user.clone()),
                        ..dest
                    },
                );
            }
            hosts.push(serde_json::json!({ "node": name, "setup": applied.json }));
        }
    }

    // The swarm.
    let sessions = NodeSessions::open(&access).map_err(|e| transfer_error(e, json))?;
    let observed = match swarm_setup::observe(&sessions) {
        Ok(o) => o,
        // A dry run on fresh nodes: dockhand is not there yet to say their swarm state.
        Err(e) if args.dry_run && !args.cluster_only => {
            if json {
                print_json(&serde_json::json!({
                    "app": config.app,
                    "cluster": true,
                    "dry_run": true,
                    "hosts": hosts,
                    "swarm": null,
                    "agent": null,
                    "note": format!("{e}; the swarm, then the watch-only agent on {first}, are planned once the nodes are set up", first = cluster.first_manager().destination),
                }));
            } else {
                println!(
                    "{} the swarm step, then the watch-only agent on {}, are planned once the nodes are set up ({e})",
                    style("note:").dim(),
                    cluster.first_manager().destination
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(transfer_error(e, json)),
    };
    let plan = swarm_setup::plan_swarm(&cluster, &observed)
        .map_err(|r| output::from_remote(RemoteError::refused(r.message, r.hint), json))?;
    if !json {
        print_plan(&plan);
    }
    let answer = |changed: usize, extra: serde_json::Value| {
        let mut v = serde_json::json!({
            "app": config.app,
            "cluster": true,
            "cluster_only": args.cluster_only,
            "hosts": hosts,
            "swarm": { "plan": plan, "swarm_id": plan.swarm_id },
            "changed": changed,
        });
        if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in more {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    };
    if args.dry_run {
        let agent = agent_on_first_manager(g, &args, path, &cluster, &access, &peers_of_first)?;
        if json {
            print_json(&answer(
                0,
                serde_json::json!({ "dry_run": true, "agent": agent.map(|a| a.json) }),
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if plan.changes() == 0 {
        if !json {
            println!(
                "{} nothing to change: the swarm of {} node(s) is formed",
                style("✓").green().bold(),
                cluster.nodes.len()
            );
        }
        let agent = agent_on_first_manager(g, &args, path, &cluster, &access, &peers_of_first)?;
        if json {
            let agent_changes = agent.as_ref().map_or(0, |a| a.changed);
            print_json(&answer(
                host_changes + agent_changes,
                serde_json::json!({ "agent": agent.map(|a| a.json) }),
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(output::usage(
                "setup changes the nodes: pass --yes to apply the plan without a terminal to confirm it (or --dry-run to only print it)",
                json,
            ));
        }
        use std::io::Write as _;
        eprint!(
            "apply these {} changes to the swarm? [y/N] ",
            plan.changes()
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            println!("nothing was changed");
            return Ok(ExitCode::from(output::FAILED));
        }
    }
    let mut progress = |line: &str| {
        if !json {
            eprintln!("  {} {line}", style("✓").green());
        }
    };
    let applied = swarm_setup::apply(&sessions, &cluster, &plan, &observed, &mut progress)
        .map_err(|e| transfer_error(e, json))?;
    if !json {
        println!(
            "{} the swarm of {} node(s) is formed ({} step(s) changed)",
            style("✓").green().bold(),
            cluster.nodes.len(),
            applied.changed
        );
    }
    let agent = agent_on_first_manager(g, &args, path, &cluster, &access, &peers_of_first)?;
    if json {
        let agent_changes = agent.as_ref().map_or(0, |a| a.changed);
        print_json(&answer(
            host_changes + applied.changed + agent_changes,
            serde_json::json!({ "node_ids": applied.node_ids, "agent": agent.map(|a| a.json) }),
        ));
    } else {
        println!(
            "  next: `dockhand deploy` in this project (it reaches the first manager over SSH)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The watch-only agent on the first manager, once the swarm is formed: the first manager's
/// host set up again with the project (its `dockhand.toml` and secrets file synced 0600, the
/// agent's unit started; every other step is already done, so only those change), the way a
/// single server's setup installs its agent. The agent sees `[cluster]` and only watches the
/// swarm's nodes and alerts; its proxy keeps to a loopback port, so no socket unit holds the
/// ports the ingress publishes on that node. One agent, on the first manager: when that node
/// is lost, no alert comes from it (the other managers keep the swarm; put another manager
/// first and run setup to move the agent there). Not with `--cluster-only` (the hosts are
/// set up otherwise).
fn agent_on_first_manager(
    g: &Global,
    args: &SetupArgs,
    path: &Path,
    cluster: &dockhand_config::ClusterConfig,
    access: &dockhand_cluster::NodeAccess,
    peers: &[String],
) -> anyhow::Result<Option<super::setup::Applied>> {
    if args.cluster_only {
        return Ok(None);
    }
    let first = &cluster.first_manager().destination;
    let Some(dest) = access.destinations.get(first) else {
        return Err(output::usage(
            format!("[cluster] names node `{first}`, which is no [destinations.{first}]"),
            g.json,
        ));
    };
    if !g.json {
        println!(
            "{} {} {}",
            style("agent").bold(),
            style(first).bold(),
            style("(watches the swarm's nodes and alerts; deploys nothing)").dim()
        );
    }
    let agent_args = SetupArgs {
        server: Some(dest.to_string()),
        remote: crate::RemoteArgs::default(),
        docker: true,
        config: Some(path.to_path_buf()),
        no_project: false,
        cluster_only: false,
        quiet_next: true,
        swarm: Some(SwarmFirewall {
            peers: peers.to_vec(),
            encrypted: cluster.encrypted,
        }),
        ..args.clone()
    };
    super::setup::apply(g, &agent_args).map(Some)
}

fn print_plan(plan: &SwarmPlan) {
    println!("{}", style("swarm:").bold());
    for step in &plan.steps {
        if step.change {
            println!(
                "  {} {:<6} {:<9} {}",
                style("+").yellow().bold(),
                step.node,
                step.id,
                step.detail
            );
        } else {
            println!(
                "  {} {:<6} {:<9} {}",
                style("✓").green(),
                step.node,
                step.id,
                style(&step.detail).dim()
            );
        }
    }
    if plan.changes() == 0 {
        println!("nothing to change");
    } else {
        println!("{} change(s)", plan.changes());
    }
}

/// A node that could not be reached or refused: the exit code of its class, the node named.
fn transfer_error(e: TransferError, json: bool) -> anyhow::Error {
    let (code, word) = output::remote_code(e.error.class());
    let message = e.to_string();
    anyhow::Error::new(output::Exit {
        code,
        json: json.then(
            || serde_json::json!({ "error": { "code": word, "node": e.node, "message": message } }),
        ),
        message,
    })
}
