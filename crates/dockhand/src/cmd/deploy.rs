//! `dockhand deploy`, `rollback` and `reload`: one gated deploy each, shown as it progresses
//! and summed up by the same report (also what `dockhand up` shows of a failed first deploy).

use std::process::ExitCode;

use console::style;
use dockhand_api::{DeployReport, Request};

use super::client::{call_with_progress, requested_by};
use crate::output::{self, print_json};
use crate::Global;

pub fn deploy(g: &Global) -> anyhow::Result<ExitCode> {
    run_deploy(
        g,
        &Request::Deploy {
            requested_by: requested_by(),
        },
    )
}

pub fn rollback(g: &Global, release: Option<i64>) -> anyhow::Result<ExitCode> {
    run_deploy(
        g,
        &Request::Rollback {
            release,
            requested_by: requested_by(),
        },
    )
}

pub fn reload(g: &Global) -> anyhow::Result<ExitCode> {
    let result: Option<DeployReport> = call_with_progress(
        g,
        &Request::Reload {
            requested_by: requested_by(),
        },
    )?;
    match result {
        Some(report) => Ok(render_report(g, &report)),
        None => {
            if g.json {
                print_json(&serde_json::json!({ "changed": false }));
            } else {
                println!("configuration unchanged: nothing to deploy");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a deploy report; exit 0 when it succeeded, 1 when the gate failed.
pub fn render_report(g: &Global, report: &DeployReport) -> ExitCode {
    if g.json {
        print_json(report);
    } else if report.succeeded {
        println!("{} {}", style("✓").green().bold(), report.message);
        for w in &report.warnings {
            println!("  {} {w}", style("warning:").yellow());
        }
    } else {
        eprintln!("{} {}", style("✗").red().bold(), report.message);
        for f in &report.failures {
            eprintln!(
                "\n  {} {} {}",
                style(&f.service).bold(),
                f.instance,
                style(&f.reason).red()
            );
            if !f.last_probes.is_empty() {
                eprintln!("  last health checks:");
                for p in &f.last_probes {
                    eprintln!("    {p}");
                }
            }
            if !f.last_logs.is_empty() {
                eprintln!("  last log lines:");
                for l in &f.last_logs {
                    eprintln!("    {}", style(l).dim());
                }
            }
        }
        eprintln!(
            "\n  the previous release keeps serving; fix the problem and run `dockhand deploy` again"
        );
    }
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    }
}

fn run_deploy(g: &Global, req: &Request) -> anyhow::Result<ExitCode> {
    let report: DeployReport = call_with_progress(g, req)?;
    Ok(render_report(g, &report))
}
