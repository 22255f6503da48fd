//! One module per subcommand (deploy, rollback and reload share `deploy`), `client` for what
//! the client commands share; `run` dispatches each subcommand to one function.

pub mod agent;
pub mod alerts;
pub mod backup;
pub mod certs;
pub mod check;
pub mod client;
pub mod cluster;
pub mod cluster_run;
pub mod cluster_setup;
pub mod dashboard;
pub mod db;
pub mod deploy;
pub mod doctor;
pub mod events;
pub mod exec;
pub mod import;
pub mod ingress;
pub mod init;
pub mod loadtest;
pub mod logs;
pub mod maintenance;
pub mod move_app;
pub mod provision;
pub mod releases;
pub mod remote;
pub mod run;
pub mod secrets;
pub mod setup;
pub mod status;
pub mod tasks;
pub mod top;
pub mod up;
pub mod update;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut g = cli.global;
    match cli.command {
        Command::Up(args) => up::run(&g, args),
        Command::Agent(args) => agent::run(&g, args),
        Command::Check(args) => check::run(&g, args),
        Command::Deploy(args) => {
            let g = g.on(args.remote.clone());
            match cluster::project(&g) {
                Some(path) => cluster::deploy(&g, &path),
                None => deploy::deploy(&g, &args),
            }
        }
        Command::Rollback { release, remote } => {
            let g = g.on(remote);
            match cluster::project(&g) {
                Some(path) => cluster::rollback(&g, &path, release),
                None => deploy::rollback(&g, release),
            }
        }
        Command::Reload(remote) => deploy::reload(&g.on(remote)),
        Command::Status(remote) => {
            let g = g.on(remote);
            match cluster::project(&g) {
                Some(path) => cluster::status(&g, &path),
                None => status::run(&g),
            }
        }
        Command::Top(args) => top::run(&g.on(args.remote.clone()), &args),
        Command::Releases(remote) => releases::run(&g.on(remote)),
        Command::Events(args) => {
            g.remote = args.remote.clone();
            events::run(&g, args)
        }
        Command::Logs(args) => {
            g.remote = args.remote.clone();
            logs::run(&g, args)
        }
        Command::Exec {
            service,
            command,
            remote,
        } => exec::run(&g.on(remote), &service, command),
        Command::Run(args) => {
            g.remote = args.remote.clone();
            match cluster::project(&g) {
                Some(path) => cluster_run::run(&g, &path, args),
                None => run::run(&g, args),
            }
        }
        Command::Secrets(args) => secrets::run(&g, args),
        Command::Update { command, remote } => update::run(&g.on(remote), command),
        Command::Tasks(args) => {
            g.remote = args.remote.clone();
            tasks::run(&g, args)
        }
        Command::Db(crate::DbCommand::Upgrade { name, remote }) => {
            db::upgrade(&g.on(remote), &name)
        }
        Command::Certs { command, remote } => certs::run(&g.on(remote), command),
        Command::Maintenance {
            switch,
            service,
            remote,
        } => maintenance::run(&g.on(remote), switch, service),
        Command::Dashboard(args) => {
            g.remote = args.remote.clone();
            dashboard::run(&g, &args)
        }
        Command::Alerts { command, remote } => alerts::run(&g.on(remote), command),
        Command::Backup { command, remote } => backup::run(&g.on(remote), command),
        Command::Setup(args) => setup::run(&g, *args),
        Command::Move(args) => move_app::run(&g, *args),
        Command::Doctor(args) => doctor::run(&g, args),
        Command::Provision(args) => provision::run(&g, args),
        Command::Remote(args) => remote::serve(&g, args),
        Command::Ingress(args) => ingress::run(&g, args),
        Command::Import(args) => import::run(&g, args),
        Command::Init(args) => init::run(&g, args),
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

impl crate::Global {
    /// These global options, working on the server `remote` names.
    fn on(&self, remote: crate::RemoteArgs) -> crate::Global {
        crate::Global {
            remote,
            ..self.clone()
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
