//! `dockhand secrets set|get|list|rm|edit`: the project's secrets file (`${secret.NAME}`),
//! edited in place with mode 0600. A value never comes from the command line (it would stay in
//! the shell's history and show in the process list): `set` reads it from stdin, or prompts
//! without echo on a terminal. Only `get` prints a value.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::output::{self, print_json};
use crate::Global;

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// The names of the secrets (never their values).
    List,
    /// Print one secret's value.
    Get { name: String },
    /// Set a secret: the value is read from stdin (`printf %s VALUE | dockhand secrets set
    /// NAME`) or, on a terminal, prompted for without echo.
    Set { name: String },
    /// Remove a secret.
    Rm { name: String },
    /// Edit the secrets file in $EDITOR (a 0600 copy, checked before it replaces the file).
    Edit,
}

#[derive(clap::Args, Debug)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
    /// The project's dockhand.toml (its `secrets_file` says where the secrets are).
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "dockhand.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
}

pub fn run(g: &Global, args: SecretsArgs) -> anyhow::Result<ExitCode> {
    let path = dockhand_config::secrets_path(&absolute(&args.config)?);
    match args.command {
        SecretsCommand::List => {
            let names: Vec<String> = match dockhand_config::Secrets::load(&path) {
                Ok(s) => s.names().map(str::to_string).collect(),
                Err(dockhand_config::SecretsError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(output::usage(e.to_string(), g.json)),
            };
            if g.json {
                print_json(&serde_json::json!({ "file": path, "names": names }));
            } else if names.is_empty() {
                println!("no secrets in {}", path.display());
            } else {
                for n in names {
                    println!("{n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Get { name } => {
            let secrets = dockhand_config::Secrets::load(&path)
                .map_err(|e| output::usage(e.to_string(), g.json))?;
            let Some(value) = secrets.get(&name) else {
                eprintln!("error: no secret `{name}` in {}", path.display());
                return Ok(ExitCode::from(output::NOT_FOUND));
            };
            if g.json {
                print_json(&serde_json::json!({ "name": name, "value": value }));
            } else {
                println!("{value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Set { name } => {
            check_name(&name, g.json)?;
            let value = read_value(&name)?;
            let text = dockhand_config::read_for_edit(&path)
                .map_err(|e| output::usage(e.to_string(), g.json))?;
            let next = dockhand_config::set_entry(&text, &name, &value);
            dockhand_config::write_secrets(&path, &next)
                .with_context(|| format!("failed to write {}", path.display()))?;
            if g.json {
                print_json(&serde_json::json!({ "name": name, "file": path }));
            } else {
                println!("set {name} in {} (mode 0600)", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Rm { name } => {
            let text = dockhand_config::read_for_edit(&path)
                .map_err(|e| output::usage(e.to_string(), g.json))?;
            let Some(next) = dockhand_config::remove_entry(&text, &name) else {
                eprintln!("error: no secret `{name}` in {}", path.display());
                return Ok(ExitCode::from(output::NOT_FOUND));
            };
            dockhand_config::write_secrets(&path, &next)
                .with_context(|| format!("failed to write {}", path.display()))?;
            if g.json {
                print_json(&serde_json::json!({ "name": name, "removed": true }));
            } else {
                println!("removed {name} from {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Edit => edit(g, &path),
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn check_name(name: &str, json: bool) -> anyhow::Result<()> {
    if name.contains('=') {
        return Err(output::usage(
            "a value never goes on the command line (your shell history and the process list keep it): run `dockhand secrets set NAME` and type it, or pipe it: `printf %s \"$VALUE\" | dockhand secrets set NAME`",
            json,
        ));
    }
    if !dockhand_config::valid_secret_name(name) {
        return Err(output::usage(
            format!("`{name}` is not a valid secret name: use letters, digits and `_`, not starting with a digit"),
            json,
        ));
    }
    Ok(())
}

/// The value from a hidden prompt on a terminal, else all of stdin (one trailing newline
/// dropped, as `echo` adds one).
fn read_value(name: &str) -> anyhow::Result<String> {
    let value = if std::io::stdin().is_terminal() {
        let term = console::Term::stderr();
        eprint!("value of {name}: ");
        term.read_secure_line()
            .context("failed to read the value from the terminal")?
    } else {
        let mut v = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut v)
            .context("failed to read the value from stdin")?;
        if v.ends_with('\n') {
            v.pop();
            if v.ends_with('\r') {
                v.pop();
            }
        }
        v
    };
    if value.is_empty() {
        anyhow::bail!("the value of {name} is empty; nothing was changed");
    }
    Ok(value)
}

fn edit(g: &Global, path: &Path) -> anyhow::Result<ExitCode> {
    let text =
        dockhand_config::read_for_edit(path).map_err(|e| output::usage(e.to_string(), g.json))?;
    let scratch = path.with_extension(format!("edit-{}.env", std::process::id()));
    dockhand_config::write_secrets(&scratch, &text)
        .with_context(|| format!("failed to write {}", scratch.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&scratch)
        .status();
    let result = (|| -> anyhow::Result<ExitCode> {
        let status = status.with_context(|| format!("failed to run the editor `{editor}`"))?;
        if !status.success() {
            anyhow::bail!("the editor exited with {status}; the secrets file was not changed");
        }
        // The edited copy must load as the agent will load it.
        if let Err(e) = dockhand_config::Secrets::load(&scratch) {
            anyhow::bail!("{e}; the secrets file was not changed");
        }
        let edited = std::fs::read_to_string(&scratch)?;
        dockhand_config::write_secrets(path, &edited)
            .with_context(|| format!("failed to write {}", path.display()))?;
        if g.json {
            print_json(&serde_json::json!({ "file": path, "changed": edited != text }));
        } else if edited == text {
            println!("no change");
        } else {
            println!("saved {} (mode 0600)", path.display());
        }
        Ok(ExitCode::SUCCESS)
    })();
    let _ = std::fs::remove_file(&scratch);
    result
}
