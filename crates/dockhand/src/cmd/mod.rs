//! One module per subcommand (deploy, rollback and reload share `deploy`), `client` for what
//! the client commands share; `run` dispatches each subcommand to one function.

pub mod agent;
pub mod check;
pub mod client;
pub mod db;
pub mod deploy;
pub mod events;
pub mod exec;
pub mod import;
pub mod loadtest;
pub mod logs;
pub mod releases;
pub mod status;
pub mod up;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Up(args) => up::run(&g, args),
        Command::Agent(args) => agent::run(&g, args),
        Command::Check(args) => check::run(&g, args),
        Command::Deploy => deploy::deploy(&g),
        Command::Rollback { release } => deploy::rollback(&g, release),
        Command::Reload => deploy::reload(&g),
        Command::Status => status::run(&g),
        Command::Releases => releases::run(&g),
        Command::Events(args) => events::run(&g, args),
        Command::Logs(args) => logs::run(&g, args),
        Command::Exec { service, command } => exec::run(&g, &service, command),
        Command::Db(crate::DbCommand::Upgrade { name }) => db::upgrade(&g, &name),
        Command::Import(args) => import::run(&g, args),
        Command::Loadtest(args) => loadtest::run(&g, *args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "dockhand",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logging for the agent: plain lines on stderr, level from `DOCKHAND_LOG` (else
/// `default_level`).
pub fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCKHAND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(console::colors_enabled_stderr());
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// A multi-threaded runtime sized for the agent's control plane (the proxy has its own
/// threads).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dockhand-agent")
        .enable_all()
        .build()?)
}
