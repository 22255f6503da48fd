//! `dockhand dashboard`: asks the agent for a one-time login link to its web dashboard,
//! prints it, and opens it in a browser where there is one. With `[dashboard] route` the
//! link is the public HTTPS one through the app's proxy; otherwise, for a remote host, it
//! prints the `ssh -L` command that brings the server's dashboard to this machine.

use std::process::ExitCode;

use console::style;
use dockhand_api::{DashboardLogin, DashboardRequest, DashboardRole, Request};

use super::client::{call_with_progress, requested_by};
use crate::output::print_json;
use crate::Global;

#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// What the session may do: `viewer` reads every page; `operator` also deploys, rolls
    /// back, runs and restores backups, runs tasks and silences alerts.
    #[arg(long, value_enum, default_value = "operator")]
    pub role: Role,
    /// Only print the link; do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Role {
    Viewer,
    Operator,
}

pub fn run(g: &Global, args: &DashboardArgs) -> anyhow::Result<ExitCode> {
    let role = match args.role {
        Role::Viewer => DashboardRole::Viewer,
        Role::Operator => DashboardRole::Operator,
    };
    let login: DashboardLogin = call_with_progress(
        g,
        &Request::Dashboard(DashboardRequest::Login {
            role,
            requested_by: requested_by(),
        }),
    )?;
    let remote = super::remote::destination(g)?;
    if g.json {
        print_json(&login);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} one-time login link ({}, valid {} minutes, opens one session):",
        style("dashboard:").bold(),
        role.as_str(),
        login.expires_in_secs / 60
    );
    if let Some(public) = &login.route_url {
        // Published through the proxy over HTTPS: the same token works at either address.
        println!("  {public}");
        println!(
            "(or on the server itself, at {}: {})",
            login.listen, login.url
        );
        if !args.no_open && open_in_browser(public) {
            println!("opened in your browser");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("  {}", login.url);
    if let Some(dest) = remote {
        println!(
            "it listens on the server's {}; bring it here first, in another terminal:\n  ssh -N -L {}:{} {}",
            login.listen,
            port(&login.listen),
            login.listen,
            dest.ssh_target()
        );
    } else if !args.no_open && open_in_browser(&login.url) {
        println!("opened in your browser");
    }
    Ok(ExitCode::SUCCESS)
}

fn port(listen: &str) -> &str {
    listen.rsplit(':').next().unwrap_or(listen)
}

/// Opens `url` with `xdg-open` when a graphical session is there. The link holds a token, so
/// it is never a process argument: the browser is given a private file that redirects to it.
fn open_in_browser(url: &str) -> bool {
    let graphical =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !graphical {
        return false;
    }
    let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") else {
        return false;
    };
    let path = std::path::Path::new(&dir).join("dockhand-dashboard.html");
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={url}\"><title>Dockhand</title>"
    );
    // A link of an earlier run is used or expired: replace it.
    let _ = std::fs::remove_file(&path);
    if crate::private_file::create(&path, page.as_bytes()).is_err() {
        return false;
    }
    std::process::Command::new("xdg-open")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
