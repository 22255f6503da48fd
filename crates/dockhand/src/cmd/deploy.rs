//! `dockhand deploy`, `rollback` and `reload`: one gated deploy each, shown as it progresses
//! and summed up by the same report (also what `dockhand up` shows of a failed first deploy).

use std::process::ExitCode;

use console::style;
use dockhand_api::{DeployReport, Request};

use super::client::{call_with_progress, call_with_progress_on, requested_by};
use crate::output::{self, print_json};
use crate::Global;

/// `dockhand deploy [--revision REF]`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Check this git commit, tag or branch out in the project first (fetched from the
    /// `[update]` remote when it is not known here) and deploy it; the checkout goes back
    /// if the release fails.
    #[arg(long, value_name = "REF")]
    pub revision: Option<String>,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

pub fn deploy(g: &Global, revision: Option<String>) -> anyhow::Result<ExitCode> {
    let mut req = Request::Deploy {
        requested_by: requested_by(),
        images: Default::default(),
        revision,
    };
    if let Some(dest) = super::remote::destination(g)? {
        // The project, and the images built here, go to the server first.
        let (client, sent) = super::remote::prepare_deploy(g, &dest)?;
        if let Request::Deploy { images, .. } = &mut req {
            images.clone_from(&sent.prebuilt);
        }
        let report: DeployReport = call_with_progress_on(g, client, &req)?;
        return Ok(render_remote_report(g, &report, &sent));
    }
    run_deploy(g, &req)
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
    let req = Request::Reload {
        requested_by: requested_by(),
    };
    let result: Option<DeployReport> = match super::remote::destination(g)? {
        Some(dest) => {
            let (client, _) = super::remote::prepare_deploy(g, &dest)?;
            call_with_progress_on(g, client, &req)?
        }
        None => call_with_progress(g, &req)?,
    };
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

/// A remote deploy's report: with `--json`, the agent's report plus `remote` (what was sent).
fn render_remote_report(
    g: &Global,
    report: &DeployReport,
    sent: &super::remote::Transferred,
) -> ExitCode {
    if !g.json {
        return render_report(g, report);
    }
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "remote".into(),
            serde_json::to_value(sent).unwrap_or_default(),
        );
    }
    print_json(&value);
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
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
