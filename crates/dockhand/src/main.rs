//! The `dockhand` command line: argument parsing and rendering only. Each subcommand parses
//! its flags and calls one function of a library crate; exit codes are decided in `output`.

mod cmd;
mod example;
mod output;
mod private_file;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run a web app in production on your own server.
///
/// Dockhand reads `dockhand.toml`, runs the app's services behind its own reverse proxy, checks
/// their health, and deploys new releases without dropping a request (rolling back when the
/// new release is unhealthy).
///
/// Start with `dockhand up` in a project directory (or anywhere, for the bundled example);
/// then, in a second terminal, `dockhand status`, `dockhand logs -f`, `dockhand deploy` and
/// `dockhand rollback` act on that running app.
#[derive(Parser, Debug)]
#[command(
    name = "dockhand",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The agent's socket (default: `.dockhand/agent.sock` here or in a parent directory,
    /// then /run/dockhand/agent.sock).
    #[arg(long, global = true, env = "DOCKHAND_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// When to use colours.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The server a client command works on (set from its `--host` / `-d`).
    #[arg(skip)]
    pub remote: RemoteArgs,
}

/// Which server a command works on: this machine (the default), or one reached over SSH
/// with the system OpenSSH client (your ~/.ssh/config, agent and known_hosts apply).
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Work on this server over SSH: ssh://USER@HOST[:PORT], USER@HOST or a host alias of
    /// ~/.ssh/config (default: $DOCKHAND_HOST, else this machine).
    #[arg(long, global = true, value_name = "ssh://USER@HOST")]
    pub host: Option<String>,
    /// Work on the server named in dockhand.toml's [destinations.NAME].
    #[arg(
        short = 'd',
        long,
        global = true,
        value_name = "NAME",
        conflicts_with = "host"
    )]
    pub destination: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the app in DIR (default: the bundled example) in the foreground, and print its URLs.
    ///
    /// Starts an agent with its state in DIR/.dockhand, deploys DIR/dockhand.toml, and keeps
    /// serving until Ctrl-C. Other commands run from DIR reach this agent.
    Up(cmd::up::UpArgs),
    /// Run the agent as a service (under systemd on a server).
    Agent(cmd::agent::AgentArgs),
    /// Validate dockhand.toml without starting anything.
    Check(cmd::check::CheckArgs),
    /// Deploy dockhand.toml as a new release, with zero downtime.
    ///
    /// The new release starts beside the current one, must pass its health checks, then takes
    /// all traffic while the old one drains. If it fails, the current release keeps serving.
    ///
    /// With --host or -d, the project (dockhand.toml, .env, the secrets file, code) is synced
    /// to the server first (only changed files, secrets mode 0600) and images the server
    /// lacks are sent layer by layer.
    ///
    /// With a [cluster] table in dockhand.toml, the app is deployed to its Docker Swarm:
    /// every service is updated start-first and must converge, or the whole app stays on
    /// the previous release. The manager: -d NAME (a [cluster] manager) or --host, else
    /// $DOCKER_HOST (unix:// or ssh://), else this machine's Engine when it manages that
    /// swarm, else the first [cluster] manager over SSH (its Engine socket forwarded through
    /// the session, as `docker -H ssh://` does).
    Deploy(cmd::deploy::DeployArgs),
    /// Return to an earlier release (default: the previous one), the same gated way (on a
    /// [cluster], every service goes back to the last live release before the serving one).
    Rollback {
        /// The release to return to (see `dockhand releases`).
        release: Option<i64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Re-read dockhand.toml and deploy it if it changed (the same as SIGHUP to the agent).
    Reload(RemoteArgs),
    /// Show services, instances, health and the current release (on a [cluster]: the nodes
    /// and what runs on each; exit 1 when a node is down or a task is not running).
    Status(RemoteArgs),
    /// Live per-service figures, refreshed in the terminal: requests/s, p50/p99, 5xx, CPU,
    /// memory (from the agent's metric store). With --json, one sample.
    Top(cmd::top::TopArgs),
    /// List releases, newest first.
    Releases(RemoteArgs),
    /// Show recent events (deploys, health changes, restarts).
    Events(cmd::events::EventsArgs),
    /// Show service logs.
    Logs(cmd::logs::LogsArgs),
    /// Run a command in a service's environment and working directory.
    Exec {
        /// The service whose environment to use.
        service: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run a task of dockhand.toml now, or a one-off command in a service's environment.
    ///
    /// `dockhand run NAME` runs `[tasks.NAME]` in its service's environment (a new process,
    /// or a new container of the release's image), streams its output and exits with its
    /// exit code; the run is recorded (`dockhand tasks NAME`). A `when = "once"` task that
    /// already ran needs --force. `dockhand run SERVICE -- COMMAND [ARGS…]` runs a one-off
    /// command the same way, like `heroku run`.
    Run(cmd::run::RunArgs),
    /// The project's secrets (`${secret.NAME}`): list, get, set, rm, edit.
    ///
    /// The file is dockhand.toml's `secrets_file` (default .dockhand/secrets.env), kept mode
    /// 0600. `set` reads the value from stdin or prompts without echo — never from the
    /// command line; only `get` prints a value.
    Secrets(cmd::secrets::SecretsArgs),
    /// GitOps: the watcher of `[update]` (status, pause, resume, now).
    ///
    /// With `[update]`, the agent polls a git branch and deploys each new commit through the
    /// health gate (after a backup when `[backups]` exist); a commit that fails is rolled
    /// back and not tried again until a newer one arrives.
    Update {
        #[command(subcommand)]
        command: Option<cmd::update::UpdateCommand>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List the tasks with their schedules and last runs, or one task's history.
    Tasks(cmd::tasks::TasksArgs),
    /// Bootstrap and harden a fresh server over SSH, then start the agent there.
    ///
    /// Shows the plan first (--dry-run stops there), then applies it step by step; a second
    /// run changes nothing. Debian 12/13 and Ubuntu 22.04/24.04.
    Setup(Box<cmd::setup::SetupArgs>),
    /// Move the app to a new server: set it up, back the app up here (or on --host / -d),
    /// restore it there, deploy and health-check it, and print the DNS change to make.
    ///
    /// The old server is only read from and keeps serving until you stop it, once the DNS
    /// points at the new one. --dry-run shows the steps and the new server's setup plan.
    Move(Box<cmd::move_app::MoveArgs>),
    /// Check a server the way an operator would, and say what to fix.
    Doctor(cmd::doctor::DoctorArgs),
    /// Write provisioning files: cloud-init user-data, or a Terraform module.
    #[command(subcommand)]
    Provision(cmd::provision::ProvisionCommand),
    /// The server side of remote commands (run by the CLI over SSH; not for people).
    #[command(hide = true, subcommand)]
    Remote(cmd::remote::RemoteCommand),
    /// A cluster's ingress proxy, as Swarm runs it on the ingress nodes (not for people).
    #[command(hide = true)]
    Ingress(cmd::ingress::IngressArgs),
    /// Manage the long-lived database containers.
    #[command(subcommand)]
    Db(DbCommand),
    /// Maintenance mode: a service's routes (every route without SERVICE) answer 503.
    ///
    /// The proxy answers with `Retry-After` and a page (`[proxy] maintenance_page`, else a
    /// built-in one) while the app keeps running; ACME challenges are still answered. The
    /// setting survives a restart of the agent. Without arguments: what is in maintenance.
    Maintenance {
        /// `on` or `off` (omit to show the current state).
        switch: Option<cmd::maintenance::Switch>,
        /// One service (as named in dockhand.toml); every service without it.
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The web dashboard: print (and open, where a browser exists) a one-time login link.
    ///
    /// The agent serves the dashboard on `[dashboard] listen` (127.0.0.1:9465 by default).
    /// The link opens one browser session (12 hours by default, `[dashboard] session`) with
    /// the chosen role; every action there is recorded in the event log with your name.
    /// With `[dashboard] route = { host = "ops.example.com" }` the link is
    /// `https://ops.example.com/login?token=…`, through the app's proxy (the local one is
    /// printed too; the token opens one session, wherever it is used first); otherwise, with
    /// --host / -d, it prints the `ssh -L` command that brings the server's dashboard here.
    Dashboard(cmd::dashboard::DashboardArgs),
    /// List every host's certificate: source, issuer, expiry, next renewal, last error.
    ///
    /// Certificates come from `[proxy] certificates` files, from an ACME CA (Let's Encrypt by
    /// default; renewed automatically) or from the local CA (localhost, *.localhost, IP
    /// addresses). Exits 1 when one is expired or its renewal is failing.
    Certs {
        #[command(subcommand)]
        command: Option<cmd::certs::CertsCommand>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Alerts: what fires, `alerts test` (a test notice to every channel), `alerts silence`.
    ///
    /// Rules and channels are set in `[alerts]` of dockhand.toml; without a channel, alerts
    /// are recorded as events (`dockhand events`).
    Alerts {
        #[command(subcommand)]
        command: Option<cmd::alerts::AlertsCommand>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Encrypted, verified backups: run, list, show, verify (restore drills), restore, prune.
    Backup {
        #[command(subcommand)]
        command: cmd::backup::BackupCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Convert another tool's project into a dockhand.toml (`dockhand import compose`).
    Import(cmd::import::ImportArgs),
    /// Write a commented dockhand.toml for the project in this directory.
    ///
    /// Detects what is here: a compose file (imported), a Dockerfile, package.json,
    /// requirements.txt / pyproject.toml, Cargo.toml or a built static site. The names in
    /// .env.example become the service's env: secret-looking ones get a strong random value in
    /// .dockhand/secrets.env (mode 0600), the rest take --set NAME=VALUE, the example's value
    /// (unless a placeholder) or a prompt. Adds .dockhand/ and .env to .gitignore. Never
    /// replaces an existing dockhand.toml.
    Init(cmd::init::InitArgs),
    /// Send HTTP load to a URL or a route of the running app and judge the result.
    ///
    /// Keep-alive HTTP/1.1 connections, closed loop (or open loop with --rate), HDR latency
    /// percentiles, errors by status and kind, and a verdict from the success rate and
    /// latency limits: exit 0 PASS, 6 WARN, 1 FAIL. Targets other than this machine need
    /// --yes (or a yes on the terminal).
    Loadtest(Box<cmd::loadtest::LoadtestArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Recreate a database container from its current `[databases.NAME]` table.
    ///
    /// Deploys never restart a database; when its table changes (a new image or version,
    /// limits, env), this applies it: the container is stopped, removed and created again on
    /// the same data volume.
    Upgrade {
        /// The database, as named in dockhand.toml.
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// One glibc malloc arena for the whole process, set before any thread starts. With the
/// default (one arena per thread, up to 8 per core), connection buffers allocated on the
/// proxy's worker threads and freed on others fragmented several arenas that glibc never gives
/// back: the agent's heap grew about 56 KiB with every deploy made under load, without end.
/// With one arena it levels off (ARCHITECTURE.md, "The system allocator"); glibc's per-thread
/// cache keeps small allocations off the arena's lock.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread exists.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    // No transparent huge pages for this process: where the system allows them,
    // a few touched bytes of a heap arena can make 2 MiB resident. The agent's
    // working set is small enough that huge pages buy no measurable speed (see
    // ARCHITECTURE.md, "Memory"). Best effort.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    one_malloc_arena();
    let cli = Cli::parse();
    output::init_color(cli.global.color);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => output::report_error(&err),
    }
}
