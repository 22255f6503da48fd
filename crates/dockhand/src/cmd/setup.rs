//! `dockhand setup DESTINATION`: observe the server, show the plan, apply it step by step
//! (see `dockhand_remote::setup`), sync the project and start the agent, and check that it
//! answers through the SSH connection.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use console::style;
use dockhand_remote::facts::{self, HostFacts, Privilege};
use dockhand_remote::server::HostSettings;
use dockhand_remote::setup::{self, Observer, SetupPlan, Step, StepOutcome, StepState, Wanted};
use dockhand_remote::ssh::shell_line;
use dockhand_remote::{Destination, RemoteError, Session};

use super::remote;
use crate::output::{self, print_json};
use crate::{Global, RemoteArgs};

#[derive(Args, Debug, Clone)]
pub struct SetupArgs {
    /// The server: ssh://USER@HOST[:PORT], USER@HOST or a host alias of ~/.ssh/config (or
    /// -d NAME / --host).
    pub server: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Print the plan and stop; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// The user that deploys: key login, passwordless sudo, member of the `dockhand` group
    /// (default: the SSH user, or `deploy` when that is root — created with root's keys).
    #[arg(long, value_name = "NAME")]
    pub deploy_user: Option<String>,
    /// Let SSH in only from this address or network (repeat for several; default: anywhere).
    #[arg(long = "ssh-from", value_name = "ADDRESS")]
    pub ssh_from: Vec<String>,
    /// Leave sshd's password and root login settings as they are.
    #[arg(long)]
    pub no_harden_ssh: bool,
    /// Install Docker even if the app has no container service (default: only when it has).
    #[arg(long)]
    pub docker: bool,
    /// The dockhand binary to install (default: this one; another one for another CPU).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The project to sync and start (default: dockhand.toml here, if there is one).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set up the server only: no project, the agent starts with the first deploy.
    #[arg(long)]
    pub no_project: bool,
    /// Accept the host key of a server seen for the first time (never a changed one).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// With a `[cluster]` in dockhand.toml: only form the swarm (firewall table for the
    /// swarm's ports, init, joins, roles and labels) on nodes whose host is set up otherwise,
    /// without packages, users, units or the agent.
    #[arg(long)]
    pub cluster_only: bool,
    /// `move` says what comes next itself.
    #[arg(skip)]
    pub quiet_next: bool,
    /// A node of a cluster: its firewall opens the swarm's ports to these peers.
    #[arg(skip)]
    pub swarm: Option<dockhand_remote::server::SwarmFirewall>,
}

pub fn run(g: &Global, args: SetupArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = super::cluster_setup::project(g, &args)? {
        return super::cluster_setup::run(g, args, &path);
    }
    let done = apply(g, &args)?;
    if g.json {
        print_json(&done.json);
    }
    Ok(done.code)
}

/// What [`apply`] did: its `--json` answer, the exit code, and who deploys from now on.
pub(crate) struct Applied {
    pub json: serde_json::Value,
    pub code: ExitCode,
    /// The user that logs in from now on (root's login may be closed).
    pub deploy_user: String,
    /// The steps that changed something (none for a dry run or a server already set up).
    pub changed: usize,
}

/// `setup`: the plan (printed on a terminal), then applied unless `args.dry_run`. Prints no
/// JSON (`run` and `move` do, each its own).
pub(crate) fn apply(g: &Global, args: &SetupArgs) -> anyhow::Result<Applied> {
    let dest = destination(g, args)?;
    let config = load_project(g, args)?;
    let docker = args.docker
        || config.as_ref().is_some_and(|c| {
            !c.databases.is_empty() || c.services.values().any(|s| s.container.is_some())
        });
    let binary = match &args.binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let binary_sha = dockhand_remote::project::sha256_file(&binary).map_err(|e| {
        output::usage(
            format!("cannot read the binary {}: {e}", binary.display()),
            g.json,
        )
    })?;
    let binary_size = std::fs::metadata(&binary)?.len();

    let mut opts = remote::ssh_options();
    opts.accept_new_host_key = args.accept_new_host_key;
    // A private master, closed at the end: the SSH hardening changes who may log in, and no
    // later command may ride a login sshd no longer allows.
    opts.persist = None;
    let session = remote::connect(g, &dest, &opts)?;
    let fail = |e: RemoteError| output::from_remote(e, g.json);

    // Who we are, and how we become root.
    let probe = session
        .run_ok(
            "checking the user",
            facts::PRIVILEGE_PROBE,
            None,
            Duration::from_secs(30),
            "",
        )
        .map_err(fail)?;
    let text = probe.stdout_text();
    let mut lines = text.lines();
    let ssh_user = lines.next().unwrap_or("").trim().to_string();
    let privilege = Privilege::parse(lines.next().unwrap_or(""));
    let deploy_user = args.deploy_user.clone().unwrap_or_else(|| {
        if ssh_user == "root" {
            "deploy".into()
        } else {
            ssh_user.clone()
        }
    });
    let facts = gather(&session, privilege, &deploy_user).map_err(fail)?;
    if args.binary.is_none() && !facts.arch.is_empty() && facts.arch != std::env::consts::ARCH {
        return Err(output::usage(
            format!(
                "the server's CPU is {}, this dockhand is built for {}\n  pass a dockhand built for {} with --binary PATH",
                facts.arch,
                std::env::consts::ARCH,
                facts.arch
            ),
            g.json,
        ));
    }
    let ssh_port = dest
        .port
        .or_else(|| facts.sshd.get("port").and_then(|p| p.parse().ok()))
        .unwrap_or(22);
    let wanted = Wanted {
        settings: HostSettings {
            ssh_port,
            ssh_from: args.ssh_from.clone(),
            deploy_user,
            docker,
            ufw: facts.ufw_active(),
            // A cluster's agent only watches: its proxy keeps to loopback, and the ingress
            // publishes `[proxy] listen` on the node.
            proxy_listen: config
                .as_ref()
                .filter(|c| c.cluster.is_none())
                .map(|c| {
                    [Some(c.proxy.listen), c.proxy.https_listen]
                        .into_iter()
                        .flatten()
                        .collect()
                })
                .unwrap_or_default(),
            swarm: args.swarm.clone(),
        },
        ssh_user,
        privilege,
        binary_sha256: binary_sha.clone(),
        binary_size,
        harden_ssh: !args.no_harden_ssh,
        project: match &config {
            None => None,
            // Compared only where this dockhand already runs (it lists the server's copy).
            Some(c)
                if facts.binary_sha256.as_deref() == Some(binary_sha.as_str())
                    && facts.project_dir =>
            {
                Some(remote::project_differs(&session, c).map_err(fail)?)
            }
            Some(_) => Some(true),
        },
    };
    let plan = setup::plan(&facts, &wanted).map_err(|r| {
        output::from_remote(
            RemoteError::refused(
                format!(
                    "refusing to set up {dest}: {}; nothing was changed",
                    r.message
                ),
                r.hint,
            ),
            g.json,
        )
    })?;

    let mut plan = plan;
    if let Some(c) = config.as_ref().filter(|c| c.cluster.is_none()) {
        if c.proxy.listen.ip().is_loopback() {
            plan.notes.push(format!(
                "the proxy listens on {} (dockhand.toml's [proxy] listen), which the internet cannot reach: set listen = \"0.0.0.0:80\" to serve the app from this server",
                c.proxy.listen
            ));
        }
    }
    if !g.json {
        print_plan(&dest, &facts, &plan);
    }
    let deploy_user = wanted.settings.deploy_user.clone();
    if args.dry_run {
        return Ok(Applied {
            json: serde_json::json!({ "destination": dest.to_string(), "dry_run": true, "plan": plan }),
            code: ExitCode::SUCCESS,
            deploy_user,
            changed: 0,
        });
    }
    if plan.changes() == 0 {
        if !g.json {
            println!(
                "{} nothing to change: {dest} is set up",
                style("✓").green().bold()
            );
        }
        return Ok(Applied {
            json: serde_json::json!({ "destination": dest.to_string(), "changed": 0, "plan": plan }),
            code: ExitCode::SUCCESS,
            deploy_user,
            changed: 0,
        });
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(output::usage(
                "setup changes the server: pass --yes to apply the plan without a terminal to confirm it (or --dry-run to only print it)",
                g.json,
            ));
        }
        let ok = dialoguer_confirm(&format!(
            "apply these {} changes to {dest}?",
            plan.changes()
        ))?;
        if !ok {
            println!("nothing was changed");
            return Ok(Applied {
                json: serde_json::json!({ "destination": dest.to_string(), "changed": 0, "declined": true }),
                code: ExitCode::from(output::FAILED),
                deploy_user,
                changed: 0,
            });
        }
    }
    let root = privilege.root_prefix().unwrap_or("sudo -n ");
    let cx = setup::execute::Context {
        session: &session,
        root,
        binary: &binary,
        ssh: &opts,
    };
    let mut observer = Printer {
        g,
        session: session.clone(),
        config: config.clone(),
        json: g.json,
    };
    match setup::execute(&plan, &cx, &mut observer) {
        Ok(outcomes) => {
            let json = serde_json::json!({
                "destination": dest.to_string(),
                "changed": plan.changes(),
                "plan": plan,
                "outcomes": outcomes.iter().map(|(id, o)| serde_json::json!({ "step": id, "result": o })).collect::<Vec<_>>(),
            });
            if !g.json {
                println!(
                    "{} {dest} is set up ({} step(s) changed)",
                    style("✓").green().bold(),
                    plan.changes()
                );
                if config.is_none() && !args.quiet_next {
                    println!("  next: `dockhand deploy --host {dest}` in your project directory");
                }
            }
            Ok(Applied {
                json,
                code: ExitCode::SUCCESS,
                deploy_user,
                changed: plan.changes(),
            })
        }
        Err(e) => Err(output::from_remote(
            match e {
                RemoteError::Refused { message, hint } => RemoteError::Refused {
                    message,
                    hint: format!("{hint}\n  the steps before this one are done; running setup again completes the rest"),
                },
                other => other,
            },
            g.json,
        )),
    }
}

fn destination(g: &Global, args: &SetupArgs) -> anyhow::Result<Destination> {
    if let Some(text) = &args.server {
        if args.remote.host.is_some() || args.remote.destination.is_some() {
            return Err(output::usage(
                "give the server once: as an argument, or with --host / -d",
                g.json,
            ));
        }
        return Destination::parse(text).map_err(|e| {
            output::usage(
                format!("{e}\n  {}", dockhand_remote::DESTINATION_HELP),
                g.json,
            )
        });
    }
    let g2 = Global {
        remote: args.remote.clone(),
        ..g.clone()
    };
    remote::destination(&g2)?.ok_or_else(|| {
        output::usage(
            "which server? `dockhand setup ssh://USER@HOST` (or -d NAME for a [destinations.NAME] of dockhand.toml)",
            g.json,
        )
    })
}

pub(crate) fn load_project(
    g: &Global,
    args: &SetupArgs,
) -> anyhow::Result<Option<dockhand_config::AppConfig>> {
    if args.no_project {
        return Ok(None);
    }
    let path = match &args.config {
        Some(p) => p.clone(),
        None => match remote::find_config(&std::env::current_dir()?) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    dockhand_config::load(&path, &dockhand_config::LoadOptions::from_process_env())
        .map(|l| Some(l.config))
        .map_err(|e| {
            anyhow::Error::new(output::Exit {
                code: output::USAGE,
                message: e.to_string(),
                json: g.json.then(|| serde_json::json!({ "error": { "code": "invalid_config", "message": e.to_string() } })),
            })
        })
}

/// Runs the facts script as root when we can (sshd -T needs it), else as the user.
fn gather(
    session: &Session,
    privilege: Privilege,
    deploy_user: &str,
) -> Result<HostFacts, RemoteError> {
    let script = facts::script(deploy_user);
    let shell = match privilege.root_prefix() {
        Some(prefix) => format!("{prefix}sh -s"),
        None => "sh -s".into(),
    };
    let out = session.run_ok(
        "looking at the server",
        &shell,
        Some(script.as_bytes()),
        Duration::from_secs(120),
        "the server's shell could not run the checks",
    )?;
    Ok(HostFacts::parse(&out.stdout_text()))
}

fn print_plan(dest: &Destination, f: &HostFacts, plan: &SetupPlan) {
    println!(
        "{} {dest}: {}, {}, {} MiB memory, {} MiB free on {}",
        style("server").dim(),
        if f.os_name.is_empty() {
            &f.os_id
        } else {
            &f.os_name
        },
        f.arch,
        f.mem_kib / 1024,
        f.disk_free_kib / 1024,
        f.disk_tightest
    );
    println!("{}", style("plan:").bold());
    for step in &plan.steps {
        match step.state {
            StepState::Done => println!(
                "  {} {:<10} {}",
                style("✓").green(),
                step.id,
                style(step.details.join("; ")).dim()
            ),
            StepState::Change => {
                println!(
                    "  {} {:<10} {}",
                    style("+").yellow().bold(),
                    step.id,
                    step.title
                );
                for d in &step.details {
                    println!("      {d}");
                }
            }
        }
    }
    for note in &plan.notes {
        println!("  {} {note}", style("note:").dim());
    }
    if plan.changes() == 0 {
        println!("nothing to change");
    } else {
        println!("{} change(s)", plan.changes());
    }
}

fn dialoguer_confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Progress on the terminal, and the steps that need the project and the agent.
struct Printer<'g> {
    g: &'g Global,
    session: Arc<Session>,
    config: Option<dockhand_config::AppConfig>,
    json: bool,
}

impl Observer for Printer<'_> {
    fn started(&mut self, step: &Step) {
        if !self.json && step.state == StepState::Change {
            eprintln!("  {} {} …", style("→").cyan(), step.title);
        }
    }

    fn finished(&mut self, step: &Step, outcome: &StepOutcome) {
        if self.json {
            return;
        }
        if let StepOutcome::Changed { message } = outcome {
            eprintln!(
                "  {} {}{}",
                style("✓").green(),
                step.title,
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }

    fn upload_project(&mut self, session: &Session) -> Result<String, RemoteError> {
        let Some(config) = &self.config else {
            return Ok("no project".into());
        };
        remote::sync_project(session, config).map(|s| s.describe())
    }

    fn agent_answers(&mut self, _session: &Session) -> Result<String, RemoteError> {
        let _ = self.g;
        match remote::wait_for_agent(&self.session, Duration::from_secs(90)) {
            Ok(report) => Ok(format!(
                "the agent answers through SSH: app {}, {}",
                report.app,
                match &report.current_release {
                    Some(r) => format!("release {}", r.id),
                    None => "no release yet (run `dockhand deploy --host …`)".into(),
                }
            )),
            Err(e) => Err(RemoteError::refused(
                format!("the agent did not answer after it was started: {e}"),
                format!(
                    "look at `journalctl -u dockhand` on the server ({})",
                    shell_line(&[
                        "ssh",
                        &self.session.target(),
                        "journalctl",
                        "-u",
                        "dockhand",
                        "-n",
                        "50"
                    ])
                ),
            )),
        }
    }
}
