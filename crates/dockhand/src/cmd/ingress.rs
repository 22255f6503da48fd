//! `dockhand ingress`: the proxy Swarm runs on a cluster's ingress nodes (see
//! `dockhand_agent::ingress`); started by the service `dockhand deploy` creates, not by people.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct IngressArgs {
    /// The app's configuration (the Swarm config mounted into the task).
    #[arg(
        short = 'f',
        long = "config",
        default_value = "/etc/dockhand/dockhand.toml"
    )]
    pub config: PathBuf,
    /// Where the proxy listens inside the task.
    #[arg(long, default_value = "0.0.0.0:80")]
    pub listen: SocketAddr,
    /// How often the tasks are looked up and probed, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Where the TLS listener listens inside the task (when the app sets `https_listen`).
    #[arg(long)]
    pub https_listen: Option<SocketAddr>,
    /// The node-local directory (a named volume) holding the ACME account and certificates.
    #[arg(long, default_value = "/var/lib/dockhand-ingress")]
    pub state: PathBuf,
    /// The file holding the key the ingress tasks seal their peer messages with (a Swarm
    /// secret); ACME certificates are obtained only with it.
    #[arg(long)]
    pub peer_key: Option<PathBuf>,
}

pub fn run(g: &Global, args: IngressArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing(g.json, "info");
    dockhand_agent::ingress::run(dockhand_agent::ingress::IngressOptions {
        config: args.config,
        listen: args.listen,
        interval: std::time::Duration::from_millis(args.interval_ms.max(100)),
        https_listen: args.https_listen,
        state: args.state,
        peer_key: args.peer_key,
    })?;
    Ok(ExitCode::SUCCESS)
}
