//! `dockhand backup run|list|show|verify|restore|prune|keygen`: backups through the agent,
//! and two things without one — `keygen` (an age key pair) and `restore --app` (a new server's
//! first step, from a target's address and the identity).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use console::style;
use dockhand_api::{
    BackupDetail, BackupRequest, BackupState, BackupSummary, ExtractReport, PruneReport, Request,
    RestoreReport, VerifyReport, VerifyState,
};

use super::client::{call_with_progress, requested_by};
use crate::output::print_json;
use crate::Global;

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up every source now (or only SOURCE: a database, volume, sqlite or directory
    /// name, or `app`). Exit 1 if any source fails.
    Run { source: Option<String> },
    /// The backup catalog, newest first, with each backup's last restore drill.
    List,
    /// One backup: every object, its size, checksum, targets and row counts.
    Show { id: String },
    /// Run a restore drill: fetch, check the checksum, decrypt, restore into a throwaway
    /// database (or file, or directory), run the engine's checks and compare row counts with
    /// the dump's. Default: the newest complete backup. Exit 1 if the drill fails.
    Verify {
        id: Option<String>,
        /// The age identity file (default: `[backups] identity`).
        #[arg(long)]
        identity: Option<PathBuf>,
    },
    /// Restore a backup into the running app: checks every object first (refusing, with
    /// nothing touched, if a checksum or the decryption fails), takes a safety backup, puts
    /// the app in maintenance (503), stops it, restores, and starts it again.
    ///
    /// With --app (a new server, disaster recovery): restores dockhand.toml, .env and the
    /// secrets file from --from into the current directory, deploys them (through the agent
    /// answering here, else one it starts in the background), and restores the backup's data.
    ///
    /// With --at TIME (point-in-time recovery, a database in `[backups] pitr`): `restore DB
    /// --at 2026-12-06T10:15:00Z` replays the newest base backup finished before TIME and the
    /// archived WAL up to TIME; the database's previous data is kept until the restored one
    /// has recovered and answers, and put back if it does not.
    ///
    /// With --to DIR: writes the backup's data (all sources, or --source's) into DIR instead,
    /// checked and decrypted the same way, the live app untouched: a database's dump as its
    /// tools read it (`pg_restore db.pgdump`), a directory, volume or the app's files unpacked
    /// into DIR/SOURCE.
    Restore(RestoreArgs),
    /// Delete the backups the `keep` policy does not keep (never the newest verified one).
    Prune {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make an age key pair: writes the identity (mode 0600) and prints the recipient for
    /// `[backups] recipients`. Keep the identity off the server (or set `identity` for drills).
    Keygen {
        /// Where to write the identity.
        #[arg(long, default_value = "dockhand-backup.key")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup (default with --app: the newest on the target); with --at, the database
    /// (default: the only one in `[backups] pitr`).
    id: Option<String>,
    /// Point-in-time recovery to this moment (RFC 3339: 2026-12-06T10:15:00Z, or with an
    /// offset).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["app", "source"])]
    at: Option<String>,
    /// Restore only this source.
    #[arg(long)]
    source: Option<String>,
    /// Write the backup's data into this directory (on the agent's machine) instead of the
    /// live app: dumps as their engine's tools read them (`db.pgdump` for `pg_restore`),
    /// archives unpacked; nothing live is touched. Never overwrites.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["app", "at"])]
    to: Option<PathBuf>,
    /// The age identity file (default: `[backups] identity`).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Restore the app itself from --from into the current directory (a new server).
    #[arg(long, requires = "from")]
    app: bool,
    /// With --app: the target, a directory or s3://bucket/prefix (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    from: Option<String>,
    /// With an s3:// --from: the endpoint URL of an S3-compatible server.
    #[arg(long)]
    endpoint: Option<String>,
}

pub fn run(g: &Global, cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BackupCommand::Run { source } => {
            let s: BackupSummary = call(
                g,
                BackupRequest::Run {
                    source,
                    requested_by: requested_by(),
                },
            )?;
            if g.json {
                print_json(&s);
            } else {
                println!(
                    "{} backup {} complete: {} ({})",
                    style("✓").green(),
                    s.id,
                    s.sources.join(", "),
                    human(s.stored_bytes)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::List => {
            let list: Vec<BackupSummary> = call(g, BackupRequest::List)?;
            if g.json {
                print_json(&list);
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("no backups yet; `dockhand backup run` takes one");
            }
            for b in &list {
                let state = match b.state {
                    BackupState::Complete => style(b.state.as_str()).green(),
                    BackupState::Running => style(b.state.as_str()).yellow(),
                    BackupState::Failed => style(b.state.as_str()).red(),
                };
                let verify = match b.verify {
                    VerifyState::Passed => style("verified").green(),
                    VerifyState::Failed => style("DRILL FAILED").red(),
                    VerifyState::Never => style("not verified").dim(),
                };
                println!(
                    "{}  {:<8}  {:<12}  {:>10}  {}  {}{}",
                    b.id,
                    state,
                    verify,
                    human(b.stored_bytes),
                    b.trigger,
                    b.sources.join(","),
                    if b.message.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", b.message)
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Show { id } => {
            let d: BackupDetail = call(g, BackupRequest::Show { id })?;
            if g.json {
                print_json(&d);
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&d.manifest).unwrap_or_default()
                );
                if !d.verify_message.is_empty() {
                    println!("last drill: {}", d.verify_message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify { id, identity } => {
            let r: VerifyReport = call(
                g,
                BackupRequest::Verify {
                    id,
                    identity: identity.map(abs),
                },
            )?;
            if g.json {
                print_json(&r);
            } else {
                for l in &r.results {
                    println!(
                        "{} {} on {}: {}",
                        style("✓").green(),
                        l.source,
                        l.target,
                        l.message
                    );
                }
                println!("backup {} passed its restore drill", r.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Prune { dry_run } => {
            let r: PruneReport = call(g, BackupRequest::Prune { dry_run })?;
            if g.json {
                print_json(&r);
            } else {
                for b in &r.backups {
                    let what = if b.keep {
                        style("keep").green()
                    } else if dry_run {
                        style("would delete").yellow()
                    } else {
                        style("deleted").red()
                    };
                    println!("{}  {}  {}", b.id, what, b.reasons.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Keygen { out } => {
            let (identity, recipient) = dockhand_backup::crypto::generate();
            use dockhand_backup::crypto::ExposeSecret as _;
            crate::private_file::create(&out, identity.expose_secret().as_bytes()).with_context(
                || format!("failed to create {} (it must not exist yet)", out.display()),
            )?;
            if g.json {
                print_json(&serde_json::json!({ "identity_file": out, "recipient": recipient }));
            } else {
                println!(
                    "identity written to {} (keep it safe: without it no backup can be restored)",
                    out.display()
                );
                println!("add to [backups]: recipients = [\"{recipient}\"]");
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore(a) if a.app => restore_app(g, a),
        BackupCommand::Restore(a) if a.at.is_some() => {
            let r: RestoreReport = call(
                g,
                BackupRequest::RestoreAt {
                    database: a.id,
                    at: a.at.unwrap_or_default(),
                    identity: a.identity.map(abs),
                    requested_by: requested_by(),
                },
            )?;
            if g.json {
                print_json(&r);
            } else {
                println!("{} {}", style("✓").green(), r.message);
                if let Some(s) = &r.safety_backup {
                    println!("what was there before is in backup {s}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore(a) if a.to.is_some() => {
            let id =
                a.id.context("name the backup to write out (`dockhand backup list`)")?;
            let r: ExtractReport = call(
                g,
                BackupRequest::Extract {
                    id,
                    source: a.source,
                    to: a.to.map(abs).unwrap_or_default(),
                    identity: a.identity.map(abs),
                    requested_by: requested_by(),
                },
            )?;
            if g.json {
                print_json(&r);
            } else {
                println!("{} {}", style("✓").green(), r.message);
                for e in &r.extracted {
                    println!("  {} ({}): {}", e.source, e.kind, e.path);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore(a) => {
            let id =
                a.id.context("name the backup to restore (`dockhand backup list`)")?;
            let r: RestoreReport = call(
                g,
                BackupRequest::Restore {
                    id,
                    source: a.source,
                    identity: a.identity.map(abs),
                    requested_by: requested_by(),
                },
            )?;
            if g.json {
                print_json(&r);
            } else {
                println!("{} {}", style("✓").green(), r.message);
                if let Some(s) = &r.safety_backup {
                    println!("what was there before is in backup {s}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `restore --app` did, for `--json`.
#[derive(serde::Serialize)]
struct AppRestore {
    #[serde(flatten)]
    files: dockhand_agent::backups::disaster::AppRestored,
    /// The agent started here in the background (none: one was already answering).
    agent_pid: Option<u32>,
    agent_log: Option<PathBuf>,
    restore: RestoreReport,
}

/// `restore --app`, the disaster-recovery path in one command: the app's own files from the
/// target (checked and decrypted before anything is written), then an agent for them — the one
/// answering here deploys them; else one is started in the background, whose first start
/// deploys them —, then every other source of the same backup restored into the running app.
fn restore_app(g: &Global, a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let identity = a
        .identity
        .context("--app needs --identity FILE (the age identity)")?;
    let identity = std::path::absolute(&identity).unwrap_or(identity);
    let from = a.from.unwrap_or_default();
    let spec = dockhand_agent::backups::disaster::target_from(&from, a.endpoint.as_deref())?;
    let project = std::env::current_dir()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let files = rt.block_on(dockhand_agent::backups::disaster::restore_app_files(
        &spec,
        &identity,
        &project,
        a.id.as_deref(),
    ))?;
    drop(rt);
    if !g.json {
        println!(
            "{} restored {} of app `{}` from backup {}",
            style("✓").green(),
            files.files.join(", "),
            files.app,
            files.id
        );
    }
    let (agent_pid, agent_log) = if agent_answers(g) {
        let report: dockhand_api::DeployReport = call_with_progress(
            g,
            &Request::Deploy {
                requested_by: requested_by(),
                images: Default::default(),
                revision: None,
                canary: None,
            },
        )?;
        if !report.succeeded {
            super::deploy::render_report(g, &report);
            anyhow::bail!("the restored configuration did not deploy; the data was not restored: fix it, deploy, then run `dockhand backup restore {}`", files.id);
        }
        (None, None)
    } else {
        let (pid, log) = start_agent(g, &project)?;
        (Some(pid), Some(log))
    };
    let restore: RestoreReport = call(
        g,
        BackupRequest::Restore {
            id: files.id.clone(),
            source: None,
            identity: Some(identity.display().to_string()),
            requested_by: requested_by(),
        },
    )?;
    let done = AppRestore {
        files,
        agent_pid,
        agent_log,
        restore,
    };
    if g.json {
        print_json(&done);
    } else {
        println!("{} {}", style("✓").green(), done.restore.message);
        if let (Some(pid), Some(log)) = (done.agent_pid, &done.agent_log) {
            println!(
                "the agent runs in the background (pid {pid}, log {}); on a server, run it as a service (`dockhand agent` under systemd)",
                log.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether an agent answers on the socket this command would use.
fn agent_answers(g: &Global) -> bool {
    let Ok(client) = super::client::client(g) else {
        return false;
    };
    client
        .call_typed::<serde_json::Value>(&Request::Status, |_| {})
        .is_ok()
}

/// Starts `dockhand agent` for the restored `dockhand.toml` in the background (its own
/// process group, output to `.dockhand/agent.log`) and waits until its first deploy ended.
fn start_agent(g: &Global, project: &std::path::Path) -> anyhow::Result<(u32, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let log = project.join(".dockhand").join("agent.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("failed to open {}", log.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    if let Some(s) = &g.socket {
        cmd.arg("--socket").arg(s);
    }
    cmd.arg("agent")
        .arg("--config")
        .arg(project.join("dockhand.toml"))
        .current_dir(project)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    let mut child = cmd.spawn().context("failed to start `dockhand agent`")?;
    if !g.json {
        println!("starting the agent and deploying the restored configuration");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30 * 60);
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            anyhow::bail!(
                "the agent exited ({status}) before the app served; the data was not restored. Its last lines ({}):\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Ok(client) = super::client::client(g) {
            if let Ok(s) = client.call_typed::<dockhand_api::StatusReport>(&Request::Status, |_| {})
            {
                if s.deploying.is_none() && s.current_release.is_some() {
                    return Ok((child.id(), log));
                }
            }
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the agent (pid {}) did not serve the app within 30 minutes; see {}",
                child.id(),
                log.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn call<T: serde::de::DeserializeOwned>(g: &Global, req: BackupRequest) -> anyhow::Result<T> {
    call_with_progress(g, &Request::Backup(req))
}

/// The agent may run elsewhere: send absolute paths.
fn abs(p: PathBuf) -> String {
    std::path::absolute(&p).unwrap_or(p).display().to_string()
}

fn human(n: u64) -> String {
    dockhand_backup::run::human_bytes(n)
}
