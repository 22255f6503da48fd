//! `dockhand check`: validate the configuration without starting anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use console::style;
use dockhand_agent::StateLayout;
use dockhand_config::{LoadOptions, Severity};

use crate::output::{self, print_json};
use crate::Global;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(short = 'f', long = "file", default_value = "dockhand.toml")]
    pub file: PathBuf,
}

pub fn run(g: &Global, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let result = dockhand_config::load(&args.file, &LoadOptions::from_process_env());
    let (errors, warnings) = match &result {
        Ok(loaded) => {
            // The file is valid: now what the machine says (ports, images).
            let socket = StateLayout::of_project(&loaded.config.project_dir).default_socket();
            let agent_running = std::os::unix::net::UnixStream::connect(&socket).is_ok();
            let found =
                super::runtime()?.block_on(dockhand_agent::preflight::check(loaded, agent_running));
            let mut warnings = loaded.warnings.clone();
            let (errors, more): (Vec<_>, Vec<_>) = found
                .into_iter()
                .partition(|d| d.severity == Severity::Error);
            warnings.extend(more);
            (errors, warnings)
        }
        Err(e) => e
            .diagnostics
            .iter()
            .cloned()
            .partition(|d| d.severity == Severity::Error),
    };
    if g.json {
        print_json(&serde_json::json!({
            "file": args.file,
            "valid": errors.is_empty(),
            "errors": errors,
            "warnings": warnings,
        }));
    } else {
        for d in errors.iter().chain(&warnings) {
            eprintln!("{d}\n");
        }
        if errors.is_empty() {
            let services = result
                .as_ref()
                .map(|l| l.config.services.len())
                .unwrap_or(0);
            println!(
                "{} {} is valid ({} service{}, {} warning{})",
                style("✓").green(),
                args.file.display(),
                services,
                if services == 1 { "" } else { "s" },
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            );
        } else {
            eprintln!(
                "{} {} has {} error{}",
                style("✗").red(),
                args.file.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::USAGE)
    })
}
