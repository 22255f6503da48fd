//! The `dockhand` command line: argument parsing and rendering only. Each subcommand parses
//! its flags and calls one function of a library crate; exit codes are decided in `output`.

mod cmd;
mod example;
mod output;

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
    Deploy,
    /// Return to an earlier release (default: the previous one), the same gated way.
    Rollback {
        /// The release to return to (see `dockhand releases`).
        release: Option<i64>,
    },
    /// Re-read dockhand.toml and deploy it if it changed (the same as SIGHUP to the agent).
    Reload,
    /// Show services, instances, health and the current release.
    Status,
    /// List releases, newest first.
    Releases,
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
    },
    /// Manage the long-lived database containers.
    #[command(subcommand)]
    Db(DbCommand),
    /// Convert another tool's project into a dockhand.toml (`dockhand import compose`).
    Import(cmd::import::ImportArgs),
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
    },
}

fn main() -> ExitCode {
    // No transparent huge pages for this process: where the system allows them,
    // a few touched bytes of a heap arena can make 2 MiB resident. The agent's
    // working set is small enough that huge pages buy no measurable speed (see
    // ARCHITECTURE.md, "Memory"). Best effort.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    output::init_color(cli.global.color);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => output::report_error(&err),
    }
}
