//! `dockhand move --to ssh://USER@NEWHOST`: the app from the server it runs on (this machine,
//! or `--host` / `-d`) to a new one, in the order that never risks the old one: set the new
//! server up (`setup`'s code path), take a fresh backup on the old server, carry it over SSH
//! (the objects as stored, checked against the manifest there), restore the app's files from
//! it (`restore --app`), deploy and health-check the app there, restore the backup's data into
//! it, check every instance is ready, and print the DNS change. The old server is only read
//! from: it keeps serving until the user stops it, after the DNS points at the new one.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use console::style;
use dockhand_agent::backups::moving::Received;
use dockhand_api::{
    BackupRequest, BackupState, BackupSummary, Client, DeployReport, Request, RestoreReport,
    StatusReport,
};
use dockhand_remote::ssh::{shell_line, wait_limited};
use dockhand_remote::{server, Destination, RemoteError, Session};

use super::client::{call_with_progress_on, local_client, requested_by, ProgressPrinter};
use super::remote;
use super::setup::{self, SetupArgs};
use crate::output::{self, print_json};
use crate::{Global, RemoteArgs};

/// Where the backup and the identity wait on the new server during a move (removed after).
const MOVE_DIR: &str = "/var/lib/dockhand/move";

/// How long the backup may take to travel.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The new server: ssh://USER@HOST[:PORT], USER@HOST or a host alias of ~/.ssh/config.
    #[arg(long, value_name = "ssh://USER@HOST")]
    pub to: String,
    /// The server the app runs on now (default: this machine).
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The age identity that decrypts the app's backups (default: `[backups] identity` of
    /// dockhand.toml here). It is uploaded to the new server (0600, through stdin) for the
    /// restore and removed after.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Show the steps and the new server's setup plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move without asking (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// The user that deploys on the new server (see `dockhand setup --help`).
    #[arg(long, value_name = "NAME")]
    pub deploy_user: Option<String>,
    /// Let SSH into the new server only from this address or network (repeatable).
    #[arg(long = "ssh-from", value_name = "ADDRESS")]
    pub ssh_from: Vec<String>,
    /// Leave the new server's sshd password and root login settings as they are.
    #[arg(long)]
    pub no_harden_ssh: bool,
    /// The dockhand binary to install on the new server (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Accept the new server's host key if it is seen for the first time.
    #[arg(long)]
    pub accept_new_host_key: bool,
}

/// One step of a move, for the plan (`--dry-run`) and the report.
#[derive(Debug, Clone, serde::Serialize)]
struct StepLine {
    step: &'static str,
    message: String,
}

/// A DNS record to change.
#[derive(Debug, Clone, serde::Serialize)]
struct DnsChange {
    host: String,
    record: &'static str,
    value: String,
}

pub fn run(g: &Global, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let to = Destination::parse(&args.to).map_err(|e| {
        output::usage(
            format!("--to: {e}\n  {}", dockhand_remote::DESTINATION_HELP),
            g.json,
        )
    })?;
    let from_g = Global {
        remote: args.remote.clone(),
        ..g.clone()
    };
    let from = remote::destination(&from_g)?;
    if from
        .as_ref()
        .is_some_and(|f| f.to_string() == to.to_string())
    {
        return Err(output::usage(
            "--to names the server the app runs on: give the new server",
            g.json,
        ));
    }
    let from_name = from
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "this machine".into());

    // 1. What runs on the old server (only read from, ever).
    let old_session = match &from {
        Some(d) => Some(remote::connect(g, d, &remote::ssh_options())?),
        None => None,
    };
    let old_client = |session: &Option<Arc<Session>>| -> anyhow::Result<Client> {
        match session {
            Some(s) => Ok(remote::bridge_client(s)),
            None => local_client(g),
        }
    };
    let status: StatusReport = old_client(&old_session)?
        .call_typed(&Request::Status, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    let Some(serving) = &status.current_release else {
        return Err(failed(
            format!(
                "the app `{}` on {from_name} serves no release: there is nothing to move",
                status.app
            ),
            g.json,
        ));
    };
    // The project here, when it is this app's (its build contexts and images travel).
    let local_config = std::env::current_dir()
        .ok()
        .and_then(|d| remote::find_config(&d))
        .and_then(|p| {
            dockhand_config::load(&p, &dockhand_config::LoadOptions::from_process_env()).ok()
        })
        .map(|l| l.config)
        .filter(|c| c.app == status.app);
    if from.is_none() && local_config.is_none() {
        return Err(output::usage(
            format!(
                "run `dockhand move` in the project directory of `{}` (the dockhand.toml the agent here runs)",
                status.app
            ),
            g.json,
        ));
    }
    let identity = match args.identity.clone().or_else(|| {
        local_config
            .as_ref()
            .and_then(|c| c.backups.as_ref()?.identity.clone())
    }) {
        Some(p) => std::path::absolute(&p).unwrap_or(p),
        None => {
            return Err(output::usage(
                "which identity decrypts the backups? pass --identity FILE (the age identity of `dockhand backup keygen`)",
                g.json,
            ))
        }
    };
    let identity_bytes = std::fs::read(&identity).map_err(|e| {
        output::usage(
            format!("cannot read the identity {}: {e}", identity.display()),
            g.json,
        )
    })?;
    let decryption = dockhand_backup::crypto::Decryption::from_identity_file(&identity)
        .map_err(|e| output::usage(format!("{}: {e}", identity.display()), g.json))?;
    // What the project here says, checked before anything changes anywhere.
    if let Some(c) = &local_config {
        let Some(b) = &c.backups else {
            return Err(output::usage(
                format!(
                    "{} has no [backups] table: a move carries the app in a backup; add one (see docs/configuration.md), deploy, then move",
                    c.config_path.display()
                ),
                g.json,
            ));
        };
        if !b.recipients.is_empty()
            && !decryption
                .recipients()
                .iter()
                .any(|r| b.recipients.contains(r))
        {
            return Err(output::usage(
                format!(
                    "the identity {} decrypts none of the [backups] recipients: the new server could not restore the backup",
                    identity.display()
                ),
                g.json,
            ));
        }
    }

    let plan = vec![
        StepLine {
            step: "setup",
            message: format!(
                "set up {to} (the plan below; the app's project {})",
                if local_config.is_some() {
                    "from here"
                } else {
                    "comes from the backup"
                }
            ),
        },
        StepLine {
            step: "backup",
            message: format!(
                "take a fresh backup of `{}` on {from_name} (release {})",
                status.app, serving.id
            ),
        },
        StepLine {
            step: "transfer",
            message: format!("carry it to {to} over SSH, checked against its manifest"),
        },
        StepLine {
            step: "restore-app",
            message: "restore dockhand.toml, .env and the secrets from it there".into(),
        },
        StepLine {
            step: "deploy",
            message: format!("send the images {to} lacks, deploy there through the health gate"),
        },
        StepLine {
            step: "restore",
            message: "restore the backup's data into the new server's app".into(),
        },
        StepLine {
            step: "check",
            message: "check every instance is ready".into(),
        },
        StepLine {
            step: "dns",
            message: format!("print the DNS change; {from_name} keeps serving until you stop it"),
        },
    ];
    if !g.json {
        println!(
            "{} move `{}` from {from_name} to {to}:",
            style("plan:").bold(),
            status.app
        );
        for (i, s) in plan.iter().enumerate() {
            println!("  {}. {:<12} {}", i + 1, s.step, s.message);
        }
    }
    let mut setup_args = SetupArgs {
        server: Some(args.to.clone()),
        remote: RemoteArgs::default(),
        dry_run: args.dry_run,
        yes: true,
        deploy_user: args.deploy_user.clone(),
        ssh_from: args.ssh_from.clone(),
        no_harden_ssh: args.no_harden_ssh,
        // Without the project here, what the app needs is known only from the backup.
        docker: local_config.is_none(),
        binary: args.binary.clone(),
        config: local_config.as_ref().map(|c| c.config_path.clone()),
        no_project: local_config.is_none(),
        accept_new_host_key: args.accept_new_host_key,
        cluster_only: false,
        quiet_next: true,
        swarm: None,
    };
    if args.dry_run {
        let applied = setup::apply(g, &setup_args)?;
        if g.json {
            print_json(&serde_json::json!({
                "dry_run": true,
                "app": status.app,
                "from": from_name,
                "to": to.to_string(),
                "steps": plan,
                "setup": applied.json,
            }));
        } else {
            println!("dry run: nothing was changed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(output::usage(
                "move changes the new server: pass --yes to move without a terminal to confirm it (or --dry-run to only see the steps)",
                g.json,
            ));
        }
        if !confirm(&format!("move `{}` to {to}?", status.app))? {
            println!("nothing was changed");
            return Ok(ExitCode::from(output::FAILED));
        }
        setup_args.yes = true;
    }
    let untouched = format!("{from_name} was not changed and keeps serving");
    if let Some(other) = serving_app(&to, args.accept_new_host_key) {
        if other != status.app {
            return Err(failed(
                format!(
                    "{to} already serves the app `{other}`: a move would replace its configuration; move `{}` to a server of its own\n  {untouched}",
                    status.app
                ),
                g.json,
            ));
        }
    }

    // 2. The new server.
    say(g, "setup", format!("setting up {to}"));
    let applied = setup::apply(g, &setup_args).map_err(|e| with_note(e, &untouched))?;
    if applied.code != ExitCode::SUCCESS {
        return Ok(applied.code);
    }
    let new = Destination {
        user: Some(applied.deploy_user.clone()),
        ..to.clone()
    };
    let session =
        remote::connect(g, &new, &remote::ssh_options()).map_err(|e| with_note(e, &untouched))?;

    // 3. The backup, on the old server.
    say(g, "backup", format!("taking a backup on {from_name}"));
    let summary: BackupSummary = call_with_progress_on(
        g,
        old_client(&old_session)?,
        &Request::Backup(BackupRequest::Run {
            source: None,
            requested_by: requested_by(),
        }),
    )
    .map_err(|e| with_note(e, &untouched))?;
    if summary.state != BackupState::Complete {
        return Err(failed(
            format!(
                "the backup on {from_name} failed: {}; {untouched}",
                summary.message
            ),
            g.json,
        ));
    }
    let id = summary.id.clone();

    // 4-8 on the new server; its move directory goes whatever happens.
    let result = on_new_server(
        g,
        &session,
        &old_session,
        local_config.as_ref(),
        &identity_bytes,
        &id,
    );
    let _ = session.run(
        "removing the move's files",
        &format!("sudo -n -u {} rm -rf {MOVE_DIR}", server::USER),
        None,
        Duration::from_secs(60),
    );
    let (received, deploy, restore, status_new) = result.map_err(|e| with_note(e, &untouched))?;

    // 9. The DNS change.
    let address = address_of(&session);
    let dns: Vec<DnsChange> = received
        .hosts
        .iter()
        .map(|h| DnsChange {
            host: h.clone(),
            record: if address.contains(':') { "AAAA" } else { "A" },
            value: address.clone(),
        })
        .collect();
    let stop_old = match &from {
        Some(d) => format!(
            "ssh {} sudo systemctl stop {}",
            d.ssh_target(),
            server::UNIT
        ),
        None => {
            "stop the agent on this machine (Ctrl-C `dockhand up`, or `systemctl stop dockhand`)"
                .into()
        }
    };
    if g.json {
        print_json(&serde_json::json!({
            "app": received.app,
            "from": from_name,
            "to": new.to_string(),
            "backup": id,
            "setup_changed": applied.changed,
            "received": received,
            "deploy": deploy,
            "restore": restore,
            "release": status_new.current_release.as_ref().map(|r| r.id),
            "dns": dns,
            "old_server": { "serving": true, "stop_with": stop_old },
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} `{}` runs on {new} (release {}) with the data of backup {id}",
        style("✓").green().bold(),
        received.app,
        status_new
            .current_release
            .as_ref()
            .map(|r| r.id.to_string())
            .unwrap_or_default()
    );
    if dns.is_empty() {
        println!("  no route names a host: point your clients at {address}");
    } else {
        println!("  change the DNS (a short TTL first makes the switch quick):");
        for d in &dns {
            println!("    {:<30} {:<5} {}", d.host, d.record, d.value);
        }
    }
    println!(
        "  {from_name} keeps serving; writes it takes after backup {id} are not on {new}. Once the DNS points at {new} and its traffic moved: {stop_old}"
    );
    Ok(ExitCode::SUCCESS)
}

/// Steps 4-8: the identity and the backup over, the app's files restored, the images sent,
/// the deploy, the data restored and every instance ready.
fn on_new_server(
    g: &Global,
    session: &Arc<Session>,
    old_session: &Option<Arc<Session>>,
    local_config: Option<&dockhand_config::AppConfig>,
    identity: &[u8],
    id: &str,
) -> anyhow::Result<(Received, DeployReport, RestoreReport, StatusReport)> {
    let fail = |e: RemoteError| output::from_remote(e, g.json);
    let identity_path = format!("{MOVE_DIR}/identity");
    let staging = format!("{MOVE_DIR}/staging");
    let write_identity = format!(
        "sudo -n -u {user} sh -c {script}",
        user = server::USER,
        script =
            shell_line(&[
                format!("umask 077 && mkdir -p {MOVE_DIR} && cat > {identity_path}").as_str()
            ])
    );
    session
        .run_ok(
            "uploading the identity",
            &write_identity,
            Some(identity),
            Duration::from_secs(60),
            "check that setup completed on the new server",
        )
        .map_err(fail)?;

    // The backup travels from the old server's targets straight into the new server.
    say(g, "transfer", format!("sending backup {id}"));
    let mut sender = match old_session {
        Some(old) => old.remote_command(&remote::as_agent_user(&[
            "backup-send",
            "--config",
            server::CONFIG,
            id,
        ])),
        None => {
            let config = local_config.expect("checked: a local move has the project here");
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["remote", "backup-send", "--config"])
                .arg(&config.config_path)
                .arg(id);
            c
        }
    };
    sender
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sender
        .spawn()
        .context("failed to start the backup's sender")?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let receive = remote::as_agent_user(&[
        "move-receive",
        "--dir",
        server::PROJECT_DIR,
        "--staging",
        &staging,
        "--identity",
        &identity_path,
    ]);
    let received =
        session.run_streaming("receiving the backup", &receive, stdout, TRANSFER_TIMEOUT);
    let sent = wait_limited(child, Some(Duration::from_secs(60)))?;
    let sender_said = errors.join().unwrap_or_default();
    if !sent.is_some_and(|s| s.success()) {
        return Err(failed(
            format!(
                "the backup {id} could not be read from the old server's targets: {}",
                sender_said.trim()
            ),
            g.json,
        ));
    }
    let (out, bytes) = received.map_err(fail)?;
    let received: Received = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the new server answered: {}", out.stdout_text()))?;
    say(
        g,
        "restore-app",
        format!(
            "{} arrived ({}); restored {}",
            id,
            dockhand_backup::run::human_bytes(bytes),
            received.files.join(", ")
        ),
    );

    // The images, then the deploy through the health gate.
    let printer = ProgressPrinter::new(g.json);
    let report_line = |m: &str| {
        printer.show(&dockhand_api::Progress {
            step: "image".into(),
            message: m.to_string(),
            service: None,
        })
    };
    let prebuilt = match local_config {
        Some(c) => remote::push_images(session, c, g.json, report_line)?.prebuilt,
        None => {
            remote::push_image_list(session, &received.images, g.json, report_line)?;
            Default::default()
        }
    };
    printer.finish();
    if remote::ensure_agent_running(session).map_err(fail)? {
        say(
            g,
            "deploy",
            format!("started {} on the new server", server::UNIT),
        );
    }
    remote::wait_for_agent(session, Duration::from_secs(90)).map_err(|e| {
        failed(
            format!("the agent on the new server did not answer: {e}\n  see `journalctl -u dockhand` there"),
            g.json,
        )
    })?;
    let deploy: DeployReport = call_with_progress_on(
        g,
        remote::bridge_client(session),
        &Request::Deploy {
            requested_by: requested_by(),
            images: prebuilt,
            revision: None,
            canary: None,
        },
    )?;
    if !deploy.succeeded {
        if !g.json {
            super::deploy::render_report(g, &deploy);
        }
        return Err(failed(
            format!(
                "the app did not deploy on the new server: {}",
                deploy.message
            ),
            g.json,
        ));
    }

    // The data.
    let restore: RestoreReport = call_with_progress_on(
        g,
        remote::bridge_client(session),
        &Request::Backup(BackupRequest::Restore {
            id: id.to_string(),
            source: None,
            identity: Some(identity_path.clone()),
            requested_by: requested_by(),
        }),
    )?;
    say(g, "restore", restore.message.clone());

    // Every instance ready: the restore started the services it stopped and gated them, but
    // a health check may still be settling (on a loaded server, one probe can time out), so
    // the instances get a minute to report ready before the move is called failed.
    let deadline = std::time::Instant::now() + READY_PATIENCE;
    let status = loop {
        let status: StatusReport = remote::bridge_client(session)
            .call_typed(&Request::Status, |_| {})
            .map_err(|e| output::from_client(e, g.json))?;
        let not_ready: Vec<String> = status
            .services
            .iter()
            .flat_map(|s| s.instances.iter())
            .filter(|i| !i.is_ready())
            .map(|i| i.id.clone())
            .collect();
        if status.current_release.is_some() && not_ready.is_empty() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(
                format!(
                    "the app on the new server is not ready {}s after the restore ({}): see `dockhand status --host …` there",
                    READY_PATIENCE.as_secs(),
                    not_ready.join(", ")
                ),
                g.json,
            ));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    say(g, "check", "every instance is ready".into());
    Ok((received, deploy, restore, status))
}

/// How long the instances on the new server get to report ready after the restore.
const READY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The app the agent on `dest` serves, if one answers there with a release (a server already
/// in use); nothing when it cannot be asked (a fresh server, or one setup will report on).
fn serving_app(dest: &Destination, accept_new_host_key: bool) -> Option<String> {
    let mut opts = remote::ssh_options();
    opts.persist = None;
    opts.batch = true;
    opts.accept_new_host_key = accept_new_host_key;
    let session = Arc::new(Session::open(dest, &opts).ok()?);
    let mut client = remote::bridge_client(&session);
    client.read_timeout = Some(Duration::from_secs(30));
    let status: StatusReport = client.call_typed(&Request::Status, |_| {}).ok()?;
    status.current_release.map(|_| status.app)
}

/// The new server's address as ssh reaches it (its `HostName`, resolved if a name).
fn address_of(session: &Session) -> String {
    let host = session
        .resolved_hostname()
        .unwrap_or_else(|| session.destination().host.clone());
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    use std::net::ToSocketAddrs;
    (host.as_str(), 22)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip().to_string())
        .unwrap_or(host)
}

fn say(g: &Global, step: &str, message: String) {
    if !g.json {
        eprintln!("{} {step}: {message}", style("→").cyan());
    }
}

fn failed(message: String, json: bool) -> anyhow::Error {
    anyhow::Error::new(output::Exit {
        code: output::FAILED,
        json: json
            .then(|| serde_json::json!({ "error": { "code": "failed", "message": message } })),
        message,
    })
}

/// Adds `note` to an error's message, keeping its exit code.
fn with_note(e: anyhow::Error, note: &str) -> anyhow::Error {
    match e.downcast::<output::Exit>() {
        Ok(mut exit) => {
            exit.message = format!("{}\n  {note}", exit.message);
            if let Some(serde_json::Value::Object(o)) = &mut exit.json {
                if let Some(serde_json::Value::Object(err)) = o.get_mut("error") {
                    err.insert("old_server".into(), note.into());
                }
            }
            anyhow::Error::new(exit)
        }
        Err(e) => e.context(note.to_string()),
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
