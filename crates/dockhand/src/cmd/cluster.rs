//! `dockhand deploy`, `rollback` and `status` for an app with `[cluster] engine = "swarm"`:
//! they talk to a swarm manager's Docker Engine through `dockhand_cluster`, which does the
//! work; this module finds the project, loads its configuration, secrets and the nodes'
//! `[destinations]` (the images reach the other nodes over SSH), picks the manager
//! ([`connect`]) and renders the reports.
//!
//! Which manager's Engine, first match wins: `-d NAME` (a manager of `[cluster]`) or `--host
//! DEST`, over SSH; `$DOCKER_HOST` (a `unix://` socket, or `ssh://USER@HOST` reached over
//! SSH) — set by hand, it says where the user wants to be; this machine's Engine when it
//! manages this swarm (the command runs on a manager); else the first `[cluster]` manager over
//! SSH, its Engine socket forwarded through the session (`dockhand_cluster::ManagerLink`).
//! `$DOCKHAND_HOST` is not read: the configuration names the managers.

use std::path::PathBuf;
use std::process::ExitCode;

use console::style;
use dockhand_cluster::{
    ClusterReport, ClusterStatus, DeployError, DeployOptions, ManagerLink, NodeState, Outcome,
    Swarm, SwarmTimeouts, TaskState,
};
use dockhand_config::{AppConfig, LoadOptions};

use crate::output::{self, print_json};
use crate::Global;

/// The project's `dockhand.toml` when it declares a cluster (`-d` / `--host` then pick the
/// manager).
pub fn project(_g: &Global) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let path = super::remote::find_config(&cwd)?;
    let text = std::fs::read_to_string(&path).ok()?;
    dockhand_config::declares_cluster(&text).then_some(path)
}

/// `dockhand deploy` on a cluster.
pub fn deploy(g: &Global, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(g, path)?;
    let nodes = node_access(g, path, &config)?;
    let redactor = dockhand_agent::Redactor::default();
    let secrets = dockhand_agent::load_secrets(&config, &redactor)
        .map_err(|e| output::usage(redactor.redact(&e.to_string()), g.json))?;
    let json = g.json;
    // A configuration the cluster cannot run is refused before any swarm is reached.
    dockhand_cluster::plan_app(&config, 0).map_err(|e| deploy_error(e, &redactor, json))?;
    // So is a route the ingress could not build (a basic_auth users secret unset or invalid).
    dockhand_agent::ingress::check_routes(&config, &secrets)
        .map_err(|e| output::usage(redactor.redact(&e.to_string()), json))?;
    let mut report = super::runtime()?.block_on(async {
        let (swarm, _link) = connect(g, &config, &nodes).await?;
        dockhand_cluster::deploy(
            &swarm,
            &config,
            &secrets,
            DeployOptions {
                // The ingress runs this very binary.
                ingress_exe: std::env::current_exe().ok(),
                digest_cache: digest_cache(),
                nodes: Some(nodes),
                ..DeployOptions::default()
            },
            &mut progress(json),
        )
        .await
        .map_err(|e| deploy_error(e, &redactor, json))
    })?;
    // The once tasks' output is the app's: no secret value shows.
    for task in &mut report.tasks {
        task.redact(|t| redactor.redact(t));
    }
    Ok(render(g, &report, "deploy"))
}

/// `dockhand rollback [RELEASE]` on a cluster.
pub fn rollback(
    g: &Global,
    path: &std::path::Path,
    release: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let config = load(g, path)?;
    let nodes = node_access(g, path, &config)?;
    let to =
        match release {
            Some(r) => Some(u64::try_from(r).map_err(|_| {
                output::usage(format!("release {r} is not a release number"), g.json)
            })?),
            None => None,
        };
    let json = g.json;
    let redactor = dockhand_agent::Redactor::default();
    let report = super::runtime()?.block_on(async {
        let (swarm, _link) = connect(g, &config, &nodes).await?;
        dockhand_cluster::rollback(
            &swarm,
            &config.app,
            to,
            DeployOptions {
                nodes: Some(nodes),
                ..DeployOptions::default()
            },
            &mut progress(json),
        )
        .await
        .map_err(|e| deploy_error(e, &redactor, json))
    })?;
    Ok(render(g, &report, "rollback"))
}

/// `dockhand status` on a cluster: the nodes, then what runs where. Exit 1 when a node is
/// not ready or a service of the app has fewer running tasks than it wants.
pub fn status(g: &Global, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(g, path)?;
    let nodes = node_access(g, path, &config)?;
    let prefix = format!("{}-", config.app);
    let status: ClusterStatus = super::runtime()?.block_on(async {
        let (swarm, _link) = connect(g, &config, &nodes).await?;
        swarm.status().await.map_err(|e| swarm_error(e, g.json))
    })?;
    let app_tasks: Vec<_> = status
        .tasks
        .iter()
        .filter(|t| t.service.starts_with(&prefix) && t.desired == TaskState::Running)
        .collect();
    let down: Vec<&str> = status
        .nodes
        .iter()
        .filter(|n| n.state != NodeState::Ready)
        .map(|n| n.hostname.as_str())
        .collect();
    let nodes_ready = down.is_empty();
    let tasks_running = app_tasks.iter().all(|t| t.state == TaskState::Running);
    let ok = nodes_ready && tasks_running;
    if g.json {
        print_json(&serde_json::json!({
            "app": config.app,
            "ok": ok,
            "down": down,
            "nodes": status.nodes,
            "tasks": app_tasks,
            "placement": placement(&status, &prefix),
        }));
    } else {
        println!("{} {}", style("app").dim(), style(&config.app).bold());
        for n in &status.nodes {
            let state = match n.state {
                NodeState::Ready => style("ready").green().to_string(),
                other => style(format!("{other:?}").to_lowercase()).red().to_string(),
            };
            let node = n
                .labels
                .get("dockhand.node")
                .filter(|d| **d != n.hostname)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            println!(
                "{} {}{node}  {}{}  {state}  {}",
                style("node").dim(),
                style(&n.hostname).bold(),
                format!("{:?}", n.role).to_lowercase(),
                if n.leader { " (leader)" } else { "" },
                n.addr
            );
            for (service, state) in placement(&status, &prefix)
                .get(&n.hostname)
                .into_iter()
                .flatten()
            {
                println!("    {service}  {state}");
            }
        }
        for node in &down {
            println!(
                "{} node {node} is not ready: Swarm runs its tasks on the other nodes; bring its Docker Engine back and it rejoins",
                style("warning:").yellow().bold()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    })
}

/// Each node's hostname with the app's services it runs (and each task's state).
fn placement(
    status: &ClusterStatus,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    status
        .placement()
        .into_iter()
        .map(|(node, tasks)| {
            let tasks = tasks
                .into_iter()
                .filter(|(s, _)| s.starts_with(prefix))
                .map(|(s, state)| {
                    let word = serde_json::to_value(state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    (s[prefix.len()..].to_string(), word)
                })
                .collect();
            (node, tasks)
        })
        .collect()
}

pub(crate) fn load(g: &Global, path: &std::path::Path) -> anyhow::Result<AppConfig> {
    dockhand_config::load(path, &LoadOptions::from_process_env())
        .map(|loaded| {
            for w in &loaded.warnings {
                eprintln!("{w}\n");
            }
            loaded.config
        })
        .map_err(|e| {
            anyhow::Error::new(output::Exit {
                code: output::USAGE,
                json: g.json.then(|| serde_json::json!({ "error": { "code": "invalid_config", "diagnostics": e.diagnostics } })),
                message: e.to_string(),
            })
        })
}

/// The `[cluster]` nodes with their `[destinations]`, how the images reach them.
pub(crate) fn node_access(
    g: &Global,
    path: &std::path::Path,
    config: &AppConfig,
) -> anyhow::Result<dockhand_cluster::NodeAccess> {
    let destinations = dockhand_config::load_destinations(path, &LoadOptions::from_process_env())
        .map_err(|e| output::usage(e.to_string(), g.json))?
        .into_iter()
        .map(|(name, d)| (name, d.host))
        .collect();
    Ok(dockhand_cluster::NodeAccess {
        nodes: config
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_default(),
        destinations,
        ssh: super::remote::ssh_options(),
    })
}

/// Where the ingress binary's digest is kept between deploys: `$XDG_CACHE_HOME/dockhand/`,
/// else `~/.cache/dockhand/`.
fn digest_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("dockhand").join("ingress-digest"))
}

/// The manager's Engine (see the module's comment for which one), and the SSH link that
/// keeps it reachable when it is not this machine's.
pub(crate) async fn connect(
    g: &Global,
    config: &AppConfig,
    access: &dockhand_cluster::NodeAccess,
) -> anyhow::Result<(Swarm, Option<ManagerLink>)> {
    let json = g.json;
    let timeouts = SwarmTimeouts::default();
    let Some(cluster) = config.cluster.as_ref() else {
        return Err(output::usage("dockhand.toml has no [cluster] table", json));
    };
    if let Some(name) = &g.remote.destination {
        let node = dockhand_cluster::pick_manager(cluster, Some(name)).map_err(|e| {
            output::usage(
                format!(
                    "-d {name}: {e}\n  pick a manager with -d NAME, or leave -d out to use the first one"
                ),
                json,
            )
        })?;
        return over_ssh(g, access, &node.destination, None).await;
    }
    if let Some(host) = &g.remote.host {
        let dest = parse_destination(host, "--host", json)?;
        return over_ssh(g, access, host, Some(dest)).await;
    }
    if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        if host.starts_with("ssh://") {
            let dest = parse_destination(&host, "DOCKER_HOST", json)?;
            return over_ssh(g, access, &host, Some(dest)).await;
        }
        let swarm = Swarm::connect(&host, timeouts)
            .await
            .map_err(|e| swarm_error(e, json))?;
        return Ok((swarm, None));
    }
    // This machine, when its Engine manages this very swarm.
    let quick = SwarmTimeouts {
        connect: std::time::Duration::from_secs(3),
        ..timeouts
    };
    if let Ok(swarm) = Swarm::connect(LOCAL_ENGINE, quick).await {
        let names: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| n.destination.clone())
            .collect();
        if matches!(swarm.local_node(&names).await, Ok(Some(_))) {
            return Ok((swarm, None));
        }
    }
    let first = dockhand_cluster::pick_manager(cluster, None)
        .map_err(|e| output::usage(e.to_string(), json))?;
    over_ssh(g, access, &first.destination, None).await
}

/// This machine's Docker Engine socket.
const LOCAL_ENGINE: &str = "unix:///var/run/docker.sock";

/// The Engine of the manager `node` (a `[cluster]` node's name, reached through its
/// `[destinations]`, or `dest` given by hand) through a socket forwarded over SSH.
async fn over_ssh(
    g: &Global,
    access: &dockhand_cluster::NodeAccess,
    node: &str,
    dest: Option<dockhand_remote::Destination>,
) -> anyhow::Result<(Swarm, Option<ManagerLink>)> {
    let json = g.json;
    let dest = match dest {
        Some(d) => d,
        None => access.destinations.get(node).cloned().ok_or_else(|| {
            output::usage(
                format!("[cluster] names node `{node}`, which is no [destinations.{node}]\n  add [destinations.{node}] with host = \"ssh://USER@HOST\""),
                json,
            )
        })?,
    };
    let link = tokio::task::block_in_place(|| ManagerLink::open(access, node, &dest)).map_err(|e| {
        let (code, word) = output::remote_code(e.class());
        let message = format!(
            "cannot reach manager `{node}` of [cluster] over SSH ({}): {e}\n  check that the server is up and lets you in (`ssh {}`), or pick another manager with -d NAME",
            dest.ssh_target(),
            dest.ssh_target()
        );
        anyhow::Error::new(output::Exit {
            code,
            json: json.then(|| serde_json::json!({ "error": { "code": word, "node": node, "message": message } })),
            message,
        })
    })?;
    let swarm = link
        .swarm(SwarmTimeouts::default())
        .await
        .map_err(|e| match e {
            dockhand_cluster::ClusterError::NotManager { .. } => swarm_error_with(
                e,
                json,
                "\n  run `dockhand setup` first: it forms the swarm of [cluster] (or pick another manager with -d NAME)",
            ),
            e => swarm_error(e, json),
        })?;
    Ok((swarm, Some(link)))
}

fn parse_destination(
    text: &str,
    from: &str,
    json: bool,
) -> anyhow::Result<dockhand_remote::Destination> {
    dockhand_remote::Destination::parse(text).map_err(|e| {
        output::usage(
            format!("{e} ({from})\n  {}", dockhand_remote::DESTINATION_HELP),
            json,
        )
    })
}

/// What an Engine that cannot be used is told to do.
const ENGINE_HINT: &str = "\n  run this in the project on a machine that reaches a manager over SSH (its [destinations]), pick one with -d NAME, or set DOCKER_HOST to a manager's Engine socket";

pub(crate) fn swarm_error(e: dockhand_cluster::ClusterError, json: bool) -> anyhow::Error {
    swarm_error_with(e, json, ENGINE_HINT)
}

/// A swarm error with its exit code; `hint` follows an Engine that cannot be used.
fn swarm_error_with(e: dockhand_cluster::ClusterError, json: bool, hint: &str) -> anyhow::Error {
    let code = if matches!(e, dockhand_cluster::ClusterError::Locked { .. }) {
        output::CONFLICT
    } else if e.is_environmental() {
        output::UNREACHABLE
    } else {
        output::FAILED
    };
    let mut message = e.to_string();
    if matches!(
        e,
        dockhand_cluster::ClusterError::Unreachable { .. }
            | dockhand_cluster::ClusterError::NotManager { .. }
    ) {
        message += hint;
    }
    anyhow::Error::new(output::Exit {
        code,
        json: json.then(|| serde_json::json!({ "error": { "code": match code { output::UNREACHABLE => "unreachable", output::CONFLICT => "conflict", _ => "failed" }, "message": message } })),
        message,
    })
}

fn deploy_error(e: DeployError, redactor: &dockhand_agent::Redactor, json: bool) -> anyhow::Error {
    if let DeployError::Swarm(e) = e {
        return swarm_error(e, json);
    }
    let (code, word) = if let DeployError::Transfer(t) = &e {
        output::remote_code(t.error.class())
    } else if e.is_usage() {
        (output::USAGE, "usage")
    } else {
        (output::NOT_FOUND, "not_found")
    };
    let mut message = redactor.redact(&e.to_string());
    if let Some(help) = e.help() {
        message = format!("{message}\n  {help}");
    }
    anyhow::Error::new(output::Exit {
        code,
        json: json.then(|| serde_json::json!({ "error": { "code": word, "message": message } })),
        message,
    })
}

/// Progress lines on stderr (none with `--json`).
pub(crate) fn progress(json: bool) -> impl FnMut(&str) + Send {
    move |line: &str| {
        if !json {
            eprintln!("{} {line}", style("·").dim());
        }
    }
}

fn render(g: &Global, report: &ClusterReport, what: &str) -> ExitCode {
    if g.json {
        print_json(report);
    } else {
        for n in &report.images {
            let sent = n.images.iter().filter(|p| !p.already_there).count();
            let there = n.images.len() - sent;
            let pulled = if n.pulled.is_empty() {
                String::new()
            } else {
                format!(", {} pulled by the node", n.pulled.len())
            };
            println!(
                "{} {}: {sent} image(s) sent, {} bytes over SSH; {there} already there{pulled}",
                style("node").dim(),
                n.node,
                n.bytes_sent
            );
        }
        for s in &report.services {
            let word = dockhand_cluster::word(s.outcome);
            let word = if s.outcome == Outcome::Converged {
                style(word).green().to_string()
            } else {
                style(word).red().to_string()
            };
            println!(
                "{} {}: {word}{}",
                style("service").dim(),
                s.service,
                s.message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
        }
        for t in &report.tasks {
            let word = match t.outcome {
                dockhand_cluster::JobOutcome::Succeeded => style("succeeded").green().to_string(),
                other => style(format!("{other:?}").to_lowercase()).red().to_string(),
            };
            println!(
                "{} {} (once): {word}{}",
                style("task").dim(),
                t.task,
                if t.message.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({}; `dockhand run {} --force` runs it again)",
                        t.message, t.task
                    )
                }
            );
        }
        if report.ok {
            println!(
                "{} release {} of {} runs on the cluster",
                style(format!("{what} ok:")).green().bold(),
                report.release,
                report.app
            );
        } else {
            let previous = report
                .previous
                .map(|p| format!("release {p} keeps serving"))
                .unwrap_or_else(|| "nothing of it is left running".into());
            println!(
                "{} release {} of {} did not converge; {previous} (`dockhand status` shows the tasks)",
                style(format!("{what} failed:")).red().bold(),
                report.release,
                report.app
            );
        }
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    }
}
