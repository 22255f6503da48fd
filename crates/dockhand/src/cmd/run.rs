//! `dockhand run TASK [--force]` and `dockhand run SERVICE -- CMD`: a task (or a one-off
//! command in a service's environment) run now, its output streamed to ours, its exit code
//! ours.

use std::io::Write;
use std::process::ExitCode;

use dockhand_api::{Frame, OutputStream, Request, RunResult, TaskRequest};

use super::client::{client, requested_by};
use crate::output::{self, print_json};
use crate::{Global, RemoteArgs};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A task of dockhand.toml's [tasks], or, with a command after `--`, a service.
    pub name: String,
    /// Run a `when = "once"` task again although it already ran.
    #[arg(long)]
    pub force: bool,
    /// A command to run in the service's environment instead of a task (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let req = if args.command.is_empty() {
        TaskRequest::Run {
            task: args.name.clone(),
            force: args.force,
            requested_by: requested_by(),
        }
    } else {
        if args.force {
            return Err(output::usage(
                "--force is for tasks; a command after `--` always runs",
                g.json,
            ));
        }
        TaskRequest::Command {
            service: args.name.clone(),
            argv: args.command,
            requested_by: requested_by(),
        }
    };
    let mut client = client(g)?;
    client.read_timeout = None;
    let result: RunResult = client
        .call_typed(&Request::Tasks(req), |f| {
            if let Frame::Output { stream, data } = f {
                match stream {
                    OutputStream::Err => eprint!("{data}"),
                    OutputStream::Out => {
                        print!("{data}");
                        let _ = std::io::stdout().flush();
                    }
                }
            }
        })
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&result);
    }
    if let Some(run) = &result.run {
        if run.state == dockhand_api::TaskRunState::Skipped {
            eprintln!("error: {}", run.message);
            return Ok(ExitCode::from(output::FAILED));
        }
    }
    if result.timed_out {
        eprintln!("error: the command timed out and was killed");
        return Ok(ExitCode::from(output::FAILED));
    }
    Ok(ExitCode::from(
        result
            .exit_code
            .map(|c| c.clamp(0, 255) as u8)
            .unwrap_or(output::FAILED),
    ))
}
