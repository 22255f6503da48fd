//! `dockhand tasks [NAME]`: the tasks of the serving release with their last runs, or one
//! task's history.

use std::process::ExitCode;

use console::style;
use dockhand_api::{Request, TaskRequest, TaskRun, TaskWhen, TasksReport};

use super::client::client;
use crate::output::{self, paint_state, print_json};
use crate::{Global, RemoteArgs};

#[derive(clap::Args, Debug)]
pub struct TasksArgs {
    /// Show this task's runs (newest first) instead of the list.
    pub task: Option<String>,
    /// How many runs to show with a task name.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(g: &Global, args: TasksArgs) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    if let Some(task) = args.task {
        let runs: Vec<TaskRun> = client
            .call_typed(
                &Request::Tasks(TaskRequest::History {
                    task,
                    limit: args.limit,
                }),
                |_| {},
            )
            .map_err(|e| output::from_client(e, g.json))?;
        if g.json {
            print_json(&runs);
            return Ok(ExitCode::SUCCESS);
        }
        if runs.is_empty() {
            println!("no runs yet");
        }
        for r in &runs {
            println!("{}", run_line(r));
            if !r.message.is_empty() {
                println!("        {}", style(&r.message).dim());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report: TasksReport = client
        .call_typed(&Request::Tasks(TaskRequest::List), |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    if report.release.is_none() {
        println!("nothing is deployed yet: run `dockhand deploy`");
        return Ok(ExitCode::SUCCESS);
    }
    if report.tasks.is_empty() {
        println!("no tasks: add a [tasks.NAME] table to dockhand.toml");
    }
    for t in &report.tasks {
        let when = match t.when {
            TaskWhen::Once => match &t.once_done_at {
                Some(at) => format!("once (done {at})"),
                None => "once (not yet)".to_string(),
            },
            TaskWhen::Schedule => format!(
                "`{}` next {}",
                t.schedule.as_deref().unwrap_or("?"),
                t.next_run.as_deref().unwrap_or("never")
            ),
            TaskWhen::Manual => "on demand".to_string(),
        };
        println!(
            "{}  {}  {}",
            style(&t.name).bold(),
            style(format!("[{}]", t.service)).dim(),
            when
        );
        println!("    $ {}", t.command);
        if t.running > 0 {
            println!("    running now ({})", t.running);
        }
        match &t.last_run {
            Some(r) => println!("    last: {}", run_line(r)),
            None => println!("    last: never ran"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_line(r: &TaskRun) -> String {
    let took = r
        .duration_ms
        .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let code = r.exit_code.map(|c| format!("exit {c}")).unwrap_or_default();
    format!(
        "run {:<5} {:<11} {:<8} {}  {code} {took}",
        r.id,
        paint_state(&r.state),
        r.trigger.as_str(),
        r.started_at
    )
}
