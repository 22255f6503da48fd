//! Working on a server over SSH. Client side: which server (`--host`, `-d NAME` from
//! `[destinations.NAME]`, `$DOCKHAND_HOST`), the connection (one OpenSSH master per command),
//! the agent's socket reached through it (`dockhand remote bridge` on the server joins the
//! SSH channel to the socket: the same JSON lines as locally, so progress and `logs -f`
//! stream), and the project sync a remote deploy starts with. Server side: the hidden
//! `dockhand remote …` commands those run.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use dockhand_api::{Client, StatusReport};
use dockhand_remote::project::{self, Ignore, Synced};
use dockhand_remote::server;
use dockhand_remote::ssh::shell_line;
use dockhand_remote::{Destination, RemoteError, Session, SshOptions};

use crate::output;
use crate::Global;

/// The environment variable naming the default server.
pub const HOST_ENV: &str = "DOCKHAND_HOST";

/// The server side of remote commands.
#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Join stdin and stdout to the agent's socket.
    Bridge {
        #[arg(long, default_value = server::SOCKET)]
        socket: PathBuf,
    },
    /// Print the project directory's files (path, size, mode, SHA-256) as JSON.
    Manifest {
        #[arg(long, default_value = server::PROJECT_DIR)]
        dir: PathBuf,
    },
    /// Apply a project sync read from stdin.
    Receive {
        #[arg(long, default_value = server::PROJECT_DIR)]
        dir: PathBuf,
    },
    /// Print the layer chains of this Docker Engine and the ids of IMAGES, as JSON.
    Images { images: Vec<String> },
    /// `docker load` a zstd-compressed archive read from stdin.
    Load,
    /// Join stdin and stdout to this machine's Docker Engine socket (`$DOCKER_HOST`, else
    /// /var/run/docker.sock): a cluster's deploy, rollback and status reach a manager's
    /// Engine through it, over SSH.
    DialStdio,
    /// Print this Docker Engine's swarm state as JSON (`dockhand setup` of a cluster).
    SwarmState,
    /// Create a swarm on this Engine advertising ADDR; print the node id.
    SwarmInit { addr: String },
    /// Print the token that joins a node as ROLE (`worker` or `manager`) to this manager's
    /// swarm; `dockhand setup` reads it through the SSH channel, never a file.
    SwarmToken {
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
    },
    /// Join a swarm: the manager, this node's address and the token as JSON on stdin (never
    /// an argument); print the node id.
    SwarmJoin,
    /// Set the roles and labels of the swarm's nodes read as JSON from stdin (on a manager).
    SwarmNodes,
    /// Write backup ID of the app of --config to stdout, as stored (`dockhand move`).
    BackupSend {
        #[arg(long, default_value = server::CONFIG)]
        config: PathBuf,
        id: String,
    },
    /// Read a backup `backup-send` wrote from stdin, restore the app's files from it into
    /// --dir and place it in the restored configuration's local targets (`dockhand move`).
    MoveReceive {
        #[arg(long, default_value = server::PROJECT_DIR)]
        dir: PathBuf,
        #[arg(long)]
        staging: PathBuf,
        #[arg(long)]
        identity: PathBuf,
    },
}

/// Runs a server-side command.
pub fn serve(_g: &Global, cmd: RemoteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RemoteCommand::Bridge { socket } => bridge(&socket),
        RemoteCommand::Manifest { dir } => {
            let entries = if dir.exists() {
                project::scan(&dir, &Ignore::nothing())
                    .with_context(|| format!("failed to list {}", dir.display()))?
            } else {
                Vec::new()
            };
            println!("{}", serde_json::to_string(&entries)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Images { images } => {
            let rt = super::runtime()?;
            let inv = rt.block_on(async {
                let docker = local_docker().await?;
                dockhand_remote::images::inventory(&docker, &images)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            println!("{}", serde_json::to_string(&inv)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Load => {
            let rt = super::runtime()?;
            let said = rt.block_on(async {
                let docker = local_docker().await?;
                dockhand_remote::images::load(&docker, std::io::stdin())
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            println!("{}", serde_json::to_string(&said)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::DialStdio => {
            let host = engine_host();
            let Some(path) = host
                .strip_prefix("unix://")
                .or(host.strip_prefix('/').map(|_| host.as_str()))
            else {
                eprintln!("DOCKER_HOST={host} on this node is not a unix:// socket: dockhand reaches the Engine through its socket");
                return Ok(ExitCode::from(output::USAGE));
            };
            if let Err(e) = dockhand_remote::forward::dial_stdio(Path::new(path)) {
                eprintln!(
                    "no Docker Engine answers at {path} on this node ({e}): is it running? `systemctl status docker` tells"
                );
                return Ok(ExitCode::from(output::UNREACHABLE));
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::SwarmState => {
            let state = node_engine(|e| async move { e.state().await })?;
            println!("{}", serde_json::to_string(&state)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::SwarmInit { addr } => {
            let id = node_engine(|e| async move { e.init(&addr).await })?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::SwarmToken { role } => {
            let role = if role == "manager" {
                dockhand_config::NodeRole::Manager
            } else {
                dockhand_config::NodeRole::Worker
            };
            let token = node_engine(|e| async move { e.join_token(role).await })?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", token.expose())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::SwarmJoin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the join request from stdin")?;
            let request: dockhand_cluster::node::JoinRequest = serde_json::from_str(&text)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "stdin is not a join request (JSON with manager, addr and token)"
                    )
                })?;
            let id = node_engine(|e| async move { e.join(&request).await })?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::SwarmNodes => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the node specs from stdin")?;
            let wanted: Vec<dockhand_cluster::node::NodeWanted> =
                serde_json::from_str(&text).context("stdin is not a list of node specs")?;
            let changed = node_engine(|e| async move { e.set_nodes(&wanted).await })?;
            println!("{}", serde_json::to_string(&changed)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::BackupSend { config, id } => {
            let rt = super::runtime()?;
            rt.block_on(dockhand_agent::backups::moving::send(
                &config,
                &id,
                std::io::stdout().lock(),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::MoveReceive {
            dir,
            staging,
            identity,
        } => {
            let rt = super::runtime()?;
            let received = rt
                .block_on(dockhand_agent::backups::moving::receive(
                    std::io::stdin().lock(),
                    &dir,
                    &staging,
                    &identity,
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string(&received)?);
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Receive { dir } => {
            let report = project::receive(&dir, std::io::stdin().lock())
                .with_context(|| format!("failed to write the project into {}", dir.display()))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `f` on this machine's Docker Engine (`$DOCKER_HOST`, else the local socket), swarm or
/// not.
fn node_engine<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: FnOnce(dockhand_cluster::node::NodeEngine) -> Fut,
    Fut: std::future::Future<Output = Result<T, dockhand_cluster::ClusterError>>,
{
    let host = engine_host();
    super::runtime()?.block_on(async {
        let engine = dockhand_cluster::node::NodeEngine::connect(
            &host,
            dockhand_cluster::SwarmTimeouts::default(),
        )
        .await?;
        f(engine).await.map_err(anyhow::Error::from)
    })
}

/// This machine's Docker Engine socket: `$DOCKER_HOST`, else the local socket.
fn engine_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// This machine's Docker Engine.
async fn local_docker() -> anyhow::Result<dockhand_runtime::ContainerRuntime> {
    Ok(dockhand_runtime::ContainerRuntime::connect("cli", Default::default()).await?)
}

/// The images of `config` that may travel: those of container services without a build, and
/// of databases (a build is made on the server from the synced context).
fn travelling_images(config: &dockhand_config::AppConfig) -> Vec<String> {
    let mut images: Vec<String> = config
        .services
        .values()
        .filter_map(|s| s.container.as_ref())
        .filter(|c| c.build.is_none())
        .map(|c| c.image.clone())
        .chain(config.databases.values().map(|d| d.image.clone()))
        .collect();
    images.sort();
    images.dedup();
    images
}

/// What went to the server's Docker Engine before a deploy.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Images {
    pub pushed: Vec<dockhand_remote::images::Pushed>,
    /// Services built here (`build.on = "local"`): the id of each build, which the agent
    /// tags as the release's build.
    pub prebuilt: std::collections::BTreeMap<String, String>,
}

/// Builds here the services whose `build.on` is `local`, and sends every image of `config`
/// that this machine's Docker Engine has and the server lacks, layer by layer.
pub(crate) fn push_images(
    session: &Session,
    config: &dockhand_config::AppConfig,
    json: bool,
    mut report: impl FnMut(&str),
) -> anyhow::Result<Images> {
    let images = travelling_images(config);
    let builds: Vec<(
        &String,
        &dockhand_config::ContainerConfig,
        &dockhand_config::BuildConfig,
    )> = config
        .services
        .iter()
        .filter_map(|(name, s)| {
            let c = s.container.as_ref()?;
            let b = c.build.as_ref()?;
            (b.on == dockhand_config::BuildOn::Local).then_some((name, c, b))
        })
        .collect();
    let mut out = Images::default();
    if images.is_empty() && builds.is_empty() {
        return Ok(out);
    }
    let rt = super::runtime()?;
    let local = match rt.block_on(local_docker()) {
        Ok(d) => d,
        Err(e) if builds.is_empty() => {
            report(&format!(
                "images: not sent ({e:#}); the server pulls them from their registry"
            ));
            return Ok(out);
        }
        Err(e) => {
            let names: Vec<&str> = builds.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(output::from_remote(
                RemoteError::refused(
                    format!("building {} here needs this machine's Docker Engine: {e:#}", names.join(", ")),
                    "start it (`systemctl start docker`), or build on the server with build = { ..., on = \"server\" }",
                ),
                json,
            ));
        }
    };
    let inventory = as_agent_user(&["images"]);
    let load = as_agent_user(&["load"]);
    let push = |image: &str,
                report: &mut dyn FnMut(&str)|
     -> anyhow::Result<Option<dockhand_remote::images::Pushed>> {
        match dockhand_remote::images::push_image(session, &rt, &local, image, &inventory, &load) {
            Ok(Some(p)) => {
                report(&p.describe());
                Ok(Some(p))
            }
            Ok(None) => {
                report(&format!(
                    "{image}: not in this machine's Docker Engine; the server pulls it"
                ));
                Ok(None)
            }
            Err(e) => Err(output::from_remote(e, json)),
        }
    };
    for image in &images {
        if let Some(p) = push(image, &mut report)? {
            out.pushed.push(p);
        }
    }
    for (name, c, b) in builds {
        let repo = match c.image.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => c.image.as_str(),
        };
        let tag = format!("{repo}:dockhand-local");
        report(&format!("building {tag} here from {}", b.context.display()));
        let spec = dockhand_runtime::BuildSpec {
            app: config.app.clone(),
            context: b.context.clone(),
            dockerfile: Some(b.dockerfile.clone()),
            target: b.target.clone(),
            args: b.args.clone().into_iter().collect(),
            tag: tag.clone(),
        };
        let runtime = &rt;
        let built = runtime
            .block_on(local.ensure_image(&dockhand_runtime::ImageSource::Build(spec), |_line: &str| {}))
            .map_err(|e| {
                output::from_remote(
                    RemoteError::refused(
                        format!("the build of service `{name}` failed here: {e}"),
                        "fix the build (`docker build` shows the same), or build on the server with build = { ..., on = \"server\" }",
                    ),
                    json,
                )
            })?;
        let id = runtime
            .block_on(local.image_layers(&built.reference))
            .ok()
            .flatten()
            .map(|l| l.id)
            .unwrap_or_else(|| built.reference.clone());
        if let Some(p) = push(&tag, &mut report)? {
            out.pushed.push(p);
        }
        out.prebuilt.insert(name.clone(), id);
    }
    Ok(out)
}

/// Copies stdin to the socket and the socket to stdout until the agent ends its answer.
fn bridge(socket: &Path) -> anyhow::Result<ExitCode> {
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "no dockhand agent answers at {} on this server ({e}): is it running? `systemctl status {}` tells; the agent starts with the first `dockhand deploy --host …`",
                socket.display(),
                server::UNIT
            );
            return Ok(ExitCode::from(output::UNREACHABLE));
        }
    };
    let mut to_agent = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let _ = std::io::copy(&mut stdin, &mut to_agent);
        // The client hung up: tell the agent (it ends a follow).
        let _ = to_agent.shutdown(std::net::Shutdown::Both);
    });
    let mut from_agent = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from_agent.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stdout
            .write_all(&buf[..n])
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The server the client commands should work on, if not this machine.
pub(crate) fn destination(g: &Global) -> anyhow::Result<Option<Destination>> {
    let parse = |text: &str, from: &str| {
        Destination::parse(text).map_err(|e| {
            output::usage(
                format!("{e} ({from})\n  {}", dockhand_remote::DESTINATION_HELP),
                g.json,
            )
        })
    };
    if let Some(name) = &g.remote.destination {
        let cwd = std::env::current_dir()?;
        let Some(config) = find_config(&cwd) else {
            return Err(output::usage(
                format!("-d {name}: no dockhand.toml here or in a parent directory to find [destinations.{name}] in\n  run dockhand in the project directory, or use --host ssh://USER@HOST"),
                g.json,
            ));
        };
        let found = dockhand_config::load_destinations(
            &config,
            &dockhand_config::LoadOptions::from_process_env(),
        )
        .map_err(|e| {
            anyhow::Error::new(output::Exit {
                code: output::USAGE,
                message: e.to_string(),
                json: None,
            })
        })?;
        return match found.get(name) {
            Some(d) => Ok(Some(d.host.clone())),
            None => {
                let names: Vec<&str> = found.keys().map(String::as_str).collect();
                let help = match names.as_slice() {
                    [] => format!(
                        "add a [destinations.{name}] table with host = \"ssh://USER@HOST\" to {}",
                        config.display()
                    ),
                    _ => format!("the destinations are {}", names.join(", ")),
                };
                Err(output::usage(
                    format!("no destination `{name}` in {}\n  {help}", config.display()),
                    g.json,
                ))
            }
        };
    }
    if let Some(host) = &g.remote.host {
        return parse(host, "--host").map(Some);
    }
    match std::env::var(HOST_ENV) {
        Ok(host) if !host.trim().is_empty() => parse(&host, HOST_ENV).map(Some),
        _ => Ok(None),
    }
}

/// `dockhand.toml` in `dir` or the nearest parent.
pub(crate) fn find_config(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join("dockhand.toml"))
        .find(|p| p.is_file())
}

/// SSH options for a client command: prompts (a passphrase, a new host key) only on a terminal.
pub(crate) fn ssh_options() -> SshOptions {
    SshOptions {
        batch: !std::io::stdin().is_terminal(),
        // The next command to the same server within a minute rides this connection.
        persist: Some(Duration::from_secs(60)),
        ..SshOptions::default()
    }
}

/// Opens the master connection to `dest`.
pub(crate) fn connect(
    g: &Global,
    dest: &Destination,
    opts: &SshOptions,
) -> anyhow::Result<Arc<Session>> {
    Session::open(dest, opts)
        .map(Arc::new)
        .map_err(|e| output::from_remote(e, g.json))
}

/// A client whose requests reach the agent on the server through `session`.
pub(crate) fn bridge_client(session: &Arc<Session>) -> Client {
    let script = format!(
        "if [ -x {bin} ]; then exec {bin} remote bridge --socket {sock}; else echo 'dockhand is not installed on this server: run `dockhand setup {dest}` first' >&2; exit 127; fi",
        bin = server::BINARY,
        sock = server::SOCKET,
        dest = session.destination(),
    );
    let remote = format!("sh -c {}", shell_line(&[script.as_str()]));
    let (program, args) = session.command_line(&remote);
    Client::over_command(&format!("ssh {}", session.target()), program, args)
        .keep_alive(session.clone())
}

/// Sends `images` that this machine's Docker Engine has and the server lacks (a `move`
/// without the project here: no builds).
pub(crate) fn push_image_list(
    session: &Session,
    images: &[String],
    json: bool,
    mut report: impl FnMut(&str),
) -> anyhow::Result<Vec<dockhand_remote::images::Pushed>> {
    let mut out = Vec::new();
    if images.is_empty() {
        return Ok(out);
    }
    let rt = super::runtime()?;
    let local = match rt.block_on(local_docker()) {
        Ok(d) => d,
        Err(e) => {
            report(&format!(
                "images: not sent ({e:#}); the server pulls them from their registry"
            ));
            return Ok(out);
        }
    };
    let inventory = as_agent_user(&["images"]);
    let load = as_agent_user(&["load"]);
    for image in images {
        match dockhand_remote::images::push_image(session, &rt, &local, image, &inventory, &load) {
            Ok(Some(p)) => {
                report(&p.describe());
                out.push(p);
            }
            Ok(None) => report(&format!(
                "{image}: not in this machine's Docker Engine; the server pulls it"
            )),
            Err(e) => return Err(output::from_remote(e, json)),
        }
    }
    Ok(out)
}

/// Runs `dockhand remote WORDS…` on the server as the agent's user (it owns the project).
pub(crate) fn as_agent_user(words: &[&str]) -> String {
    let mut all = vec!["sudo", "-n", "-u", server::USER, server::BINARY, "remote"];
    all.extend_from_slice(words);
    shell_line(&all)
}

/// Whether the server's copy of the project differs from `config`'s directory.
pub(crate) fn project_differs(
    session: &Session,
    config: &dockhand_config::AppConfig,
) -> Result<bool, RemoteError> {
    let keep = secrets_to_keep(config)?;
    project::compare(
        session,
        &config.project_dir,
        &keep,
        &as_agent_user(&["manifest", "--dir", server::PROJECT_DIR]),
    )
    .map(|plan| !plan.is_empty())
}

/// Syncs the project of `config` (its directory) to the server's project directory.
pub(crate) fn sync_project(
    session: &Session,
    config: &dockhand_config::AppConfig,
) -> Result<Synced, RemoteError> {
    let keep = secrets_to_keep(config)?;
    project::push(
        session,
        &config.project_dir,
        &keep,
        &as_agent_user(&["manifest", "--dir", server::PROJECT_DIR]),
        &as_agent_user(&["receive", "--dir", server::PROJECT_DIR]),
    )
}

/// The secrets file, relative to the project (it travels; the rest of `.dockhand/` stays).
fn secrets_to_keep(config: &dockhand_config::AppConfig) -> Result<Vec<String>, RemoteError> {
    let root = &config.project_dir;
    if config.config_path.file_name().and_then(|n| n.to_str()) != Some("dockhand.toml")
        || config.config_path.parent() != Some(root.as_path())
    {
        return Err(RemoteError::usage(
            format!(
                "{} is not the project's dockhand.toml",
                config.config_path.display()
            ),
            "a remote deploy sends the directory holding dockhand.toml; run it from there",
        ));
    }
    let keep = match config.secrets_file.strip_prefix(root) {
        Ok(rel) => vec![rel.to_string_lossy().into_owned()],
        Err(_) if !config.secrets_file.exists() => vec![],
        Err(_) => {
            return Err(RemoteError::usage(
                format!(
                    "the secrets file {} is outside the project directory {}",
                    config.secrets_file.display(),
                    root.display()
                ),
                "move it into the project (the default is .dockhand/secrets.env) so that it travels with it",
            ))
        }
    };
    Ok(keep)
}

/// Waits until the agent on the server answers `status` (at most `limit`).
pub(crate) fn wait_for_agent(
    session: &Arc<Session>,
    limit: Duration,
) -> Result<StatusReport, String> {
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let mut client = bridge_client(session);
        client.read_timeout = Some(Duration::from_secs(30));
        match client.call_typed::<StatusReport>(&dockhand_api::Request::Status, |_| {}) {
            Ok(report) => return Ok(report),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(last)
}

/// Starts the agent's unit on the server if it is not running (a first deploy), as root.
pub(crate) fn ensure_agent_running(session: &Arc<Session>) -> Result<bool, RemoteError> {
    let active = session.run(
        "asking systemd about the agent",
        &format!("systemctl is-active {}", server::UNIT),
        None,
        Duration::from_secs(30),
    )?;
    if active.stdout_text().trim() == "active" {
        return Ok(false);
    }
    session.run_ok(
        "starting the agent",
        &format!("sudo -n systemctl start {}", server::UNIT),
        None,
        Duration::from_secs(120),
        "check `journalctl -u dockhand` on the server",
    )?;
    Ok(true)
}

/// What travelled to the server before a remote deploy (shown with `--json` as `remote`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Transferred {
    pub destination: String,
    pub project: Synced,
    pub images: Vec<dockhand_remote::images::Pushed>,
    /// Services built here, and the id of each build.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prebuilt: std::collections::BTreeMap<String, String>,
}

/// Before a remote deploy or reload: the project synced to the server, its images sent, the
/// agent running there; returns a client for it and what travelled.
pub(crate) fn prepare_deploy(
    g: &Global,
    dest: &Destination,
) -> anyhow::Result<(Client, Transferred)> {
    let cwd = std::env::current_dir()?;
    let Some(config_path) = find_config(&cwd) else {
        return Err(output::usage(
            "no dockhand.toml here or in a parent directory: a remote deploy sends the project that holds it\n  run dockhand in the project directory",
            g.json,
        ));
    };
    let loaded = dockhand_config::load(&config_path, &dockhand_config::LoadOptions::from_process_env())
        .map_err(|e| {
            anyhow::Error::new(output::Exit {
                code: output::USAGE,
                message: e.to_string(),
                json: g.json.then(|| serde_json::json!({ "error": { "code": "invalid_config", "message": e.to_string() } })),
            })
        })?;
    let session = connect(g, dest, &ssh_options())?;
    let printer = super::client::ProgressPrinter::new(g.json);
    let say = |step: &str, message: String| {
        printer.show(&dockhand_api::Progress {
            step: step.into(),
            message,
            service: None,
        })
    };
    say(
        "sync",
        format!(
            "syncing {} to {}:{}",
            loaded.config.project_dir.display(),
            dest,
            server::PROJECT_DIR
        ),
    );
    let synced =
        sync_project(&session, &loaded.config).map_err(|e| output::from_remote(e, g.json))?;
    say("sync", synced.describe());
    let images = push_images(&session, &loaded.config, g.json, |m| {
        say("image", m.to_string())
    })?;
    let started = ensure_agent_running(&session).map_err(|e| output::from_remote(e, g.json))?;
    if started {
        say("agent", format!("started {} on the server", server::UNIT));
        wait_for_agent(&session, Duration::from_secs(90)).map_err(|e| {
            anyhow::Error::new(output::Exit {
                code: output::UNREACHABLE,
                message: format!("the agent on {dest} did not answer after it was started: {e}\n  see `journalctl -u dockhand` on the server"),
                json: None,
            })
        })?;
    }
    printer.finish();
    Ok((
        bridge_client(&session),
        Transferred {
            destination: dest.to_string(),
            project: synced,
            images: images.pushed,
            prebuilt: images.prebuilt,
        },
    ))
}
