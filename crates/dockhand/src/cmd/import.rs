//! `dockhand import compose`: convert a docker-compose project into a dockhand.toml. The
//! work is `dockhand_compose::import`; this module parses the flags and renders the report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use console::style;
use dockhand_compose::{ImportOptions, NoteKind, Output};

use crate::output::{self, print_json, Exit};
use crate::Global;

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportWhat,
}

#[derive(Subcommand, Debug)]
pub enum ImportWhat {
    /// Convert a docker-compose project into dockhand.toml.
    ///
    /// Reads the compose files the way `docker compose` does (compose.yaml or
    /// docker-compose.yml and its override file, `.env`, interpolation, profiles), writes
    /// dockhand.toml beside the first compose file, moves secret-looking values to
    /// .dockhand/secrets.env (mode 0600), and lists every key it did not carry over, and why.
    ///
    /// Postgres, MySQL, MariaDB, MongoDB and Redis/Valkey services become [databases.NAME];
    /// a service with a published HTTP port gets `port` and a `route` on <app>.localhost
    /// (change the host to your domain).
    ///
    /// With --cluster (a Swarm stack file, `docker stack deploy -c docker-stack.yml`), the
    /// file gets [destinations.NAME] and a [cluster] table: `deploy.placement.constraints`
    /// become [cluster] placement, the node labels they need commented
    /// [cluster.labels.NODE] hints, `deploy.restart_policy` the restart policy, and every
    /// `update_config`/`rollback_config` setting that differs from Dockhand's update policy
    /// (start-first, one task at a time, rollback on failure) a note.
    Compose(ComposeArgs),
}

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// A compose file (repeat to merge several, in order). Default: compose.yaml,
    /// compose.yml, docker-compose.yaml or docker-compose.yml here, with its override file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read interpolation variables from this file instead of the project's .env.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Import the services of this profile too (repeatable; COMPOSE_PROFILES also counts).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Write the file here instead of beside the compose file.
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "stdout")]
    pub output: Option<PathBuf>,
    /// Print dockhand.toml on stdout (the report goes to stderr) and write nothing, not even
    /// the secrets file.
    #[arg(long)]
    pub stdout: bool,
    /// Overwrite an existing dockhand.toml.
    #[arg(long)]
    pub force: bool,
    /// Then run `dockhand check` on the file written and print its report too (the exit
    /// code is check's). With --json: two JSON documents, the import's and check's.
    #[arg(long, conflicts_with = "stdout")]
    pub check: bool,
    /// The target is a Docker Swarm: write [destinations] and [cluster] (placement, node
    /// label hints) from the stack's `deploy:` sections. Without --manager, the manager is a
    /// placeholder destination to edit.
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: a manager of the swarm, as NAME=HOST (HOST as in
    /// [destinations.NAME]: ssh://USER@HOST[:PORT], USER@HOST or an ~/.ssh/config alias).
    /// Repeatable; the first one creates the swarm.
    #[arg(long = "manager", value_name = "NAME=HOST", requires = "cluster", value_parser = node_arg)]
    pub managers: Vec<(String, String)>,
    /// With --cluster: a worker of the swarm, as NAME=HOST. Repeatable.
    #[arg(long = "worker", value_name = "NAME=HOST", requires = "cluster", value_parser = node_arg)]
    pub workers: Vec<(String, String)>,
}

/// `NAME=HOST` of --manager and --worker.
fn node_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, host)) if !name.trim().is_empty() && !host.trim().is_empty() => {
            Ok((name.trim().to_string(), host.trim().to_string()))
        }
        _ => Err(format!(
            "`{text}` is not NAME=HOST; write e.g. m1=ssh://root@203.0.113.10"
        )),
    }
}

pub fn run(g: &Global, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let ImportWhat::Compose(args) = args.what;
    let dir = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
    let opts = ImportOptions {
        files: args.files,
        dir,
        env_file: args.env_file,
        profiles: args.profiles,
        output: match (args.stdout, args.output) {
            (true, _) => Output::Stdout,
            (false, Some(p)) => Output::File(p),
            (false, None) => Output::Beside,
        },
        force: args.force,
        env: std::env::vars().collect(),
        cluster: args.cluster.then_some(dockhand_compose::ClusterImport {
            managers: args.managers,
            workers: args.workers,
        }),
    };
    let done = dockhand_compose::import(&opts).map_err(|e| {
        let code = if e.is_input_error() {
            output::USAGE
        } else {
            output::FAILED
        };
        anyhow::Error::new(Exit {
            code,
            message: e.to_string(),
            json: g.json.then(|| {
                serde_json::json!({ "error": { "code": if code == output::USAGE { "invalid_config" } else { "failed" }, "message": e.to_string() } })
            }),
        })
    })?;
    let report = &done.report;
    if g.json {
        let mut value = serde_json::to_value(report)?;
        if args.stdout {
            value["toml"] = serde_json::Value::String(done.toml.clone());
        }
        print_json(&value);
        return then_check(g, args.check, report.output.as_deref());
    }
    if args.stdout {
        print!("{}", done.toml);
    }
    let mut text = String::new();
    match &report.output {
        Some(path) => text.push_str(&format!(
            "{} wrote {} (app `{}`: {} service{}, {} database{})\n",
            style("✓").green(),
            path.display(),
            report.app,
            report.services.len(),
            if report.services.len() == 1 { "" } else { "s" },
            report.databases.len(),
            if report.databases.len() == 1 { "" } else { "s" },
        )),
        None => text.push_str(&format!(
            "imported app `{}` from {} (nothing written)\n",
            report.app,
            report
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if !report.secrets.is_empty() {
        match &report.secrets_file {
            Some(path) => text.push_str(&format!(
                "secrets {} are in {} (mode 0600)\n",
                report.secrets.join(", "),
                path.display()
            )),
            None => text.push_str(&format!(
                "secrets the file refers to (put them in .dockhand/secrets.env): {}\n",
                report.secrets.join(", ")
            )),
        }
    }
    if !report.notes.is_empty() {
        let not_carried = report
            .notes
            .iter()
            .filter(|n| n.kind == NoteKind::NotCarried)
            .count();
        text.push_str(&format!(
            "\n{} note{} ({not_carried} not carried over):\n",
            report.notes.len(),
            if report.notes.len() == 1 { "" } else { "s" }
        ));
        text.push_str(&report.notes_text());
    }
    if !report.todo.is_empty() {
        text.push_str("\nstill to do:\n");
        for t in &report.todo {
            text.push_str(&format!("  - {t}\n"));
        }
    }
    if report.output.is_some() && !args.check {
        text.push_str("\nnext: review the file, then `dockhand check`\n");
    }
    if args.stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    then_check(g, args.check, report.output.as_deref())
}

/// `--check`: `dockhand check` on the file just written.
fn then_check(
    g: &Global,
    check: bool,
    written: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    match (check, written) {
        (true, Some(file)) => {
            if !g.json {
                println!("\n{} dockhand check {}", style("→").cyan(), file.display());
            }
            super::check::run(
                g,
                super::check::CheckArgs {
                    file: file.to_path_buf(),
                },
            )
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
