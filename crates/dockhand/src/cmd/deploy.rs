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
    /// Deploy as a canary: this share of the requests (e.g. 10%; sticky per client) goes to
    /// the new release first, then the larger steps of `[deploy.canary]`; compared with the
    /// serving release after every monitor sample, it is promoted, or aborted and drained,
    /// by itself. Without it, `[deploy] strategy` decides.
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    pub canary: Option<u32>,
    /// How long each canary step lasts (default: `[deploy.canary] step`, 1 minute).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "canary")]
    pub canary_step: Option<std::time::Duration>,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

fn parse_share(text: &str) -> Result<u32, String> {
    dockhand_config::parse_share(text)
        .ok_or_else(|| format!("`{text}` is not a share between 0 and 100 %; write e.g. 10%"))
}

pub fn deploy(g: &Global, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let mut req = Request::Deploy {
        requested_by: requested_by(),
        images: Default::default(),
        revision: args.revision.clone(),
        canary: args.canary.map(|share| dockhand_api::CanaryRequest {
            share,
            step_ms: args.canary_step.map(|d| d.as_millis() as u64),
        }),
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
        return exit_code(report);
    }
    if let Some(c) = &report.canary {
        render_canary(c, report.succeeded);
    }
    if report.succeeded {
        println!("{} {}", style("✓").green().bold(), report.message);
        if !report.steps.is_empty() {
            println!(
                "  {}",
                style(dockhand_api::steps_summary(&report.steps)).dim()
            );
        }
        for w in &report.warnings {
            println!("  {} {w}", style("warning:").yellow());
        }
    } else {
        eprintln!("{} {}", style("✗").red().bold(), report.message);
        if !report.steps.is_empty() {
            eprintln!(
                "  {}",
                style(dockhand_api::steps_summary(&report.steps)).dim()
            );
        }
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
    exit_code(report)
}

fn exit_code(report: &DeployReport) -> ExitCode {
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    }
}

/// The canary's steps, each with both sides' figures.
fn render_canary(c: &dockhand_api::CanaryReport, succeeded: bool) {
    let figures = |t: &Option<dockhand_api::TrafficFigures>| match t {
        Some(t) => format!(
            "{} req, {:.1} % 5xx{}",
            t.requests,
            t.error_ratio * 100.0,
            t.p99_ms
                .map(|p| format!(", p99 {p} ms"))
                .unwrap_or_default()
        ),
        None => "no figures".into(),
    };
    let print = |line: String| {
        if succeeded {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    print(format!("canary against release {}:", c.serving));
    for step in &c.steps {
        let verdict = match &step.failed {
            Some(why) => style(format!("aborted: {why}")).red().to_string(),
            None => style("passed".to_string()).green().to_string(),
        };
        print(format!(
            "  {:>6} for {:.0} s  {verdict}",
            dockhand_config::share_text(step.share),
            step.duration_ms as f64 / 1000.0
        ));
        for s in &step.services {
            print(format!(
                "    {}: canary {} — serving {}",
                s.service,
                figures(&s.canary),
                figures(&s.serving)
            ));
        }
    }
    if c.promoted {
        print(format!(
            "  {} promoted to every request",
            style("✓").green()
        ));
    }
}

fn run_deploy(g: &Global, req: &Request) -> anyhow::Result<ExitCode> {
    let report: DeployReport = call_with_progress(g, req)?;
    Ok(render_report(g, &report))
}
