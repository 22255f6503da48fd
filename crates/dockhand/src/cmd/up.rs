//! `dockhand up [DIR]`: the newcomer's command. Runs the agent in the foreground with its
//! state under the project directory, deploys the app, prints where to look, and stops
//! everything cleanly on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use console::style;
use dockhand_agent::StateLayout;
use dockhand_agent::{Agent, AgentOptions, Signals, StartMode};
use dockhand_api::Progress;

use super::client::ProgressPrinter;
use crate::Global;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The project directory holding dockhand.toml (default: the current directory if it has
    /// one, else the bundled example, written to .dockhand/example).
    pub dir: Option<PathBuf>,
}

pub fn run(g: &Global, args: UpArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let (project, state_dir, bundled) = match args.dir {
        Some(d) => {
            let d = std::path::absolute(&d)?;
            if !d.join("dockhand.toml").is_file() {
                return Err(anyhow::Error::new(crate::output::Exit {
                    code: crate::output::USAGE,
                    message: format!(
                        "{} has no dockhand.toml; write one (see examples/hello) or run `dockhand up` without a directory for the bundled example",
                        d.display()
                    ),
                    json: None,
                }));
            }
            let state = StateLayout::of_project(&d);
            (d, state, false)
        }
        None if cwd.join("dockhand.toml").is_file() => {
            (cwd.clone(), StateLayout::of_project(&cwd), false)
        }
        None => {
            let state = StateLayout::of_project(&cwd);
            let example = state.example();
            crate::example::extract(&example)?;
            (example, state, true)
        }
    };
    let config = project.join("dockhand.toml");
    // A broken file is the newcomer's most likely mistake: show it like `check` does.
    match dockhand_config::load(&config, &dockhand_config::LoadOptions::from_process_env()) {
        Ok(loaded) => {
            if !g.json {
                for w in &loaded.warnings {
                    eprintln!("{w}\n");
                }
            }
        }
        Err(e) => {
            return Err(anyhow::Error::new(crate::output::Exit {
                code: crate::output::USAGE,
                message: format!("{e}"),
                json: g.json.then(|| serde_json::json!({ "error": { "code": "invalid_config", "diagnostics": e.diagnostics } })),
            }));
        }
    }
    // Progress lines already tell the story; the agent's own log shows only problems.
    super::init_tracing(false, "warn");

    let printer = ProgressPrinter::new(g.json);
    let sink = |p: Progress| printer.show(&p);
    let opts = AgentOptions::for_project(&config, state_dir.root(), StartMode::Reload);
    let rt = super::runtime()?;
    let result: anyhow::Result<ExitCode> = rt.block_on(async {
        let signals = Signals::install()?;
        let (agent, report) = Agent::start(opts, &sink)
            .await
            .with_context(|| format!("failed to start {}", config.display()))?;
        printer.finish();
        if let Some(report) = report.filter(|r| !r.succeeded) {
            let code = super::deploy::render_report(g, &report);
            if !agent.is_serving() {
                // Nothing to serve: say why and stop, rather than print URLs that do not work.
                agent.shutdown().await;
                return Ok(code);
            }
        }
        announce(g, &agent, &project, state_dir.root(), &cwd, bundled);
        agent.run_until_signal(signals, &sink).await?;
        Ok(ExitCode::SUCCESS)
    });
    printer.finish();
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let code = result?;
    if !g.json {
        eprintln!("stopped");
    }
    Ok(code)
}

fn announce(g: &Global, agent: &Agent, project: &Path, state: &Path, cwd: &Path, bundled: bool) {
    let urls = agent.urls();
    if g.json {
        // One line, so a script can read it as soon as the app is up.
        println!(
            "{}",
            serde_json::json!({
                "ready": true,
                "urls": urls,
                "proxy": agent.proxy_addr().to_string(),
                "project_dir": project,
                "state_dir": state,
                "socket": agent.socket_path(),
            })
        );
        return;
    }
    let exe = std::env::args().next().unwrap_or_else(|| "dockhand".into());
    let exe = if exe.contains('/') {
        exe
    } else {
        "dockhand".into()
    };
    println!();
    println!("{} the app is up", style("✓").green().bold());
    for url in &urls {
        println!("    {}", style(url).underlined().bold());
    }
    println!();
    println!("  config   {}", project.join("dockhand.toml").display());
    println!("  state    {} (database, logs)", state.display());
    println!();
    println!("  in another terminal, from {}:", cwd.display());
    println!("    {exe} status              services, health, current release");
    println!("    {exe} logs -f             follow the logs");
    if bundled {
        println!(
            "    edit GREETING in {}, then",
            project.join("dockhand.toml").display()
        );
    }
    println!("    {exe} deploy              new release, zero downtime");
    println!("    {exe} rollback            back to the previous release");
    if agent.has_backups() {
        println!(
            "    {exe} backup run          an encrypted backup now (then: backup list, verify)"
        );
    }
    if urls.iter().any(|u| u.starts_with("https://")) {
        println!(
            "    {exe} certs trust         make this machine trust the local HTTPS certificate"
        );
    }
    println!();
    println!("  Ctrl-C stops everything");
}
