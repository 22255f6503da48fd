//! `dockhand agent`: the daemon, as run by systemd on a server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use dockhand_agent::{Agent, AgentOptions, Signals, StartMode, StateLayout};
use dockhand_api::Progress;

use crate::Global;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The app's configuration file.
    #[arg(short = 'f', long = "config", default_value = "dockhand.toml")]
    pub config: PathBuf,
    /// Where the agent keeps its database and logs (default: .dockhand beside the config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Give the socket to this group (mode 0660) so its members can run dockhand commands;
    /// without it only the agent's user can.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Do not deploy the configuration at start when nothing was deployed yet; only restart
    /// the committed release (the unit `dockhand setup` installs: remote deploys ask for it).
    #[arg(long)]
    pub no_initial_deploy: bool,
}

pub fn run(g: &Global, args: AgentArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing(g.json, "info");
    let config = std::path::absolute(&args.config)?;
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => StateLayout::of_project(config.parent().unwrap_or(std::path::Path::new(".")))
            .root()
            .to_path_buf(),
    };
    let mode = if args.no_initial_deploy {
        StartMode::Never
    } else {
        StartMode::DeployIfNoRelease
    };
    let mut opts = AgentOptions::for_project(&config, &state_dir, mode);
    // Before any thread starts: it removes the protocol's variables from the environment.
    opts.handed = dockhand_agent::activation::Handed::from_env();
    if let Some(socket) = &g.socket {
        opts.socket_path = socket.clone();
    }
    opts.socket_group = args.group;
    let sink = |p: Progress| tracing::info!(step = %p.step, service = ?p.service, "{}", p.message);
    let rt = super::runtime()?;
    rt.block_on(async {
        let signals = Signals::install()?;
        let (agent, report) = Agent::start(opts, &sink).await?;
        if let Some(r) = report.filter(|r| !r.succeeded) {
            // Stay up: a fixed configuration can be deployed with `dockhand deploy`.
            tracing::error!("{}", r.message);
        }
        match agent.https_addr() {
            Some(https) => tracing::info!(socket = %agent.socket_path().display(), proxy = %agent.proxy_addr(), https = %https, "agent ready"),
            None => tracing::info!(socket = %agent.socket_path().display(), proxy = %agent.proxy_addr(), "agent ready"),
        }
        agent.run_until_signal(signals, &sink).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(ExitCode::SUCCESS)
}
