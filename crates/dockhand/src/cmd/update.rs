//! `dockhand update status|pause|resume|now`: the GitOps watcher of `[update]`.

use std::process::ExitCode;

use console::style;
use dockhand_api::{CheckResult, Request, UpdateCheck, UpdateRequest, UpdateStatus};

use super::client::{call_with_progress, requested_by};
use crate::output::{self, print_json};
use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum UpdateCommand {
    /// What is followed, what serves, the last check and the commits that failed.
    Status,
    /// Stop deploying new commits (kept across agent restarts) until `resume`.
    Pause,
    /// Follow the branch again.
    Resume,
    /// Check the remote now and deploy a new commit, waiting for the outcome (also while
    /// paused and outside the maintenance window). Exits 1 when the new commit failed or the
    /// remote could not be read.
    Now,
}

pub fn run(g: &Global, command: Option<UpdateCommand>) -> anyhow::Result<ExitCode> {
    let req = match command.unwrap_or(UpdateCommand::Status) {
        UpdateCommand::Status => UpdateRequest::Status,
        UpdateCommand::Pause => UpdateRequest::Pause {
            requested_by: requested_by(),
        },
        UpdateCommand::Resume => UpdateRequest::Resume {
            requested_by: requested_by(),
        },
        UpdateCommand::Now => {
            let check: UpdateCheck = call_with_progress(
                g,
                &Request::Update(UpdateRequest::Now {
                    requested_by: requested_by(),
                }),
            )?;
            if g.json {
                print_json(&check);
            } else {
                println!("{}: {}", check.result.as_str(), check.message);
                if !check.steps.is_empty() {
                    println!(
                        "  {}",
                        style(dockhand_api::steps_summary(&check.steps)).dim()
                    );
                }
            }
            return Ok(match check.result {
                CheckResult::Failed | CheckResult::Error => ExitCode::from(output::FAILED),
                _ => ExitCode::SUCCESS,
            });
        }
    };
    let status: UpdateStatus = call_with_progress(g, &Request::Update(req))?;
    if g.json {
        print_json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    if !status.configured {
        println!("no [update] in the serving release: add one to dockhand.toml and deploy");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "following {} {}{}",
        status.repo.as_deref().unwrap_or("origin"),
        status.branch.as_deref().unwrap_or("main"),
        if status.paused {
            style(" (paused)").yellow().to_string()
        } else {
            String::new()
        }
    );
    match (&status.schedule, status.poll_secs) {
        (Some(s), _) => println!("checks at `{s}` (server time)"),
        (None, Some(p)) => println!("checks every {}", output::short_duration(p)),
        _ => {}
    }
    if let Some(w) = &status.window {
        println!("deploys only inside the window `{w}` (server time)");
    }
    if let Some(p) = &status.webhook {
        println!("push webhook at {p}");
    }
    if status.images {
        println!("watching the tags of image services");
    }
    println!(
        "serving: {}",
        status
            .current_revision
            .as_deref()
            .unwrap_or("no git revision")
    );
    if let Some(c) = &status.last_check {
        println!("last check {}: {} — {}", c.at, c.result.as_str(), c.message);
        if !c.steps.is_empty() {
            println!("  {}", style(dockhand_api::steps_summary(&c.steps)).dim());
        }
    }
    if let Some(n) = &status.next_check {
        println!("next check {n}");
    }
    for f in &status.failed {
        println!(
            "{} {} {}",
            style("failed").red(),
            &f.commit[..f.commit.len().min(12)],
            style(&f.message).dim()
        );
    }
    Ok(ExitCode::SUCCESS)
}
