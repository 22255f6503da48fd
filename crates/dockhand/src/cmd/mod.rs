//! One module per group of subcommands; `run` dispatches.

pub mod agent;
pub mod check;
pub mod client;
pub mod loadtest;
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
        Command::Deploy => client::deploy(&g),
        Command::Rollback { release } => client::rollback(&g, release),
        Command::Reload => client::reload(&g),
        Command::Status => client::status(&g),
        Command::Releases => client::releases(&g),
        Command::Events { limit } => client::events(&g, limit),
        Command::Logs(args) => client::logs(&g, args),
        Command::Exec { service, command } => client::exec(&g, &service, command),
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
