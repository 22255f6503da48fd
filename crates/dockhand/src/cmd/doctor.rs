//! `dockhand doctor [--host|-d]`: checks a server the way an operator would (disk and inodes,
//! memory and swap, clock, firewall, open ports, SSH, Docker, the agent, certificates, DNS of
//! the route hosts) and says what to fix. Remotely it runs `dockhand doctor --json` on the
//! server (as root through sudo when allowed, for sshd's and the firewall's settings) and
//! shows its report here. Exit 1 when a check fails.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use console::style;
use dockhand_api::{Request, StatusReport};
use dockhand_remote::doctor::{self, AgentView, Report, Verdict};
use dockhand_remote::server;
use dockhand_remote::ssh::shell_line;

use crate::output::{self, print_json};
use crate::{Global, RemoteArgs};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Addresses the route hosts should resolve to (given by the CLI to a server's doctor).
    #[arg(long = "expect-address", value_name = "IP", hide = true)]
    pub expect: Vec<String>,
}

pub fn run(g: &Global, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let on = Global {
        remote: args.remote.clone(),
        ..g.clone()
    };
    let report = match super::remote::destination(&on)? {
        Some(dest) => {
            let session = super::remote::connect(g, &dest, &super::remote::ssh_options())?;
            // The route hosts should point at the address we reach the server by.
            let expect: Vec<String> = session
                .resolved_hostname()
                .map(|h| resolve(&h).unwrap_or_default())
                .unwrap_or_default();
            let mut words = vec![server::BINARY.to_string(), "doctor".into(), "--json".into()];
            for a in &expect {
                words.push("--expect-address".into());
                words.push(a.clone());
            }
            let line = shell_line(&words);
            let remote = format!(
                "if sudo -n true 2>/dev/null; then exec sudo -n {line}; else exec {line}; fi"
            );
            let out = session
                .run(
                    "running doctor on the server",
                    &remote,
                    None,
                    Duration::from_secs(120),
                )
                .map_err(|e| output::from_remote(e, g.json))?;
            serde_json::from_slice::<Report>(&out.stdout).map_err(|e| {
                anyhow::Error::new(output::Exit {
                    code: output::FAILED,
                    message: format!(
                        "the server's doctor answered something this client does not understand ({e}): {}\n  run `dockhand setup {dest}` to install this version there",
                        out.stderr.trim()
                    ),
                    json: None,
                })
            })?
        }
        None => local_report(g, &args.expect),
    };
    render(g, &report);
    Ok(match report.worst() {
        Verdict::Fail => ExitCode::from(output::FAILED),
        _ => ExitCode::SUCCESS,
    })
}

fn local_report(g: &Global, expect: &[String]) -> Report {
    let facts = doctor::gather::gather();
    let mut agent = AgentView {
        expected_addresses: expect.to_vec(),
        ..AgentView::default()
    };
    let local = Global {
        remote: RemoteArgs::default(),
        ..g.clone()
    };
    match super::client::local_client(&local) {
        Ok(mut client) => {
            client.read_timeout = Some(Duration::from_secs(15));
            match client.call_typed::<StatusReport>(&Request::Status, |_| {}) {
                Ok(status) => {
                    agent.answered = Some(Ok(format!(
                        "the agent answers: app {}, {}",
                        status.app,
                        status
                            .current_release
                            .as_ref()
                            .map(|r| format!("release {}", r.id))
                            .unwrap_or_else(|| "no release yet".into())
                    )));
                    let now = time::OffsetDateTime::now_utc();
                    for cert in &status.agent.certificates {
                        if let Ok(end) = time::OffsetDateTime::parse(
                            &cert.not_after,
                            &time::format_description::well_known::Rfc3339,
                        ) {
                            agent
                                .certificates
                                .push((cert.names.clone(), (end - now).whole_days()));
                        }
                    }
                    for host in route_hosts(&status) {
                        let resolved = resolve(&host);
                        agent.route_hosts.push((host, resolved));
                    }
                }
                Err(e) => agent.answered = Some(Err(e.to_string())),
            }
        }
        Err(e) => agent.answered = Some(Err(format!("{e:#}"))),
    }
    Report {
        host: facts.hostname.clone(),
        checks: doctor::evaluate(&facts, &agent),
    }
}

/// The host names of the app's routes (not addresses, not localhost).
fn route_hosts(status: &StatusReport) -> Vec<String> {
    let mut hosts: Vec<String> = status
        .urls
        .iter()
        .filter_map(|u| {
            let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
            let hostport = rest.split('/').next()?;
            let host = match hostport.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                _ => hostport,
            };
            Some(host.trim_matches(['[', ']']).to_string())
        })
        .filter(|h| h.parse::<std::net::IpAddr>().is_err() && h != "localhost" && !h.is_empty())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The addresses `host` resolves to, within 5 seconds.
fn resolve(host: &str) -> Result<Vec<String>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![ip.to_string()]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::spawn(move || {
        let r = (name.as_str(), 80)
            .to_socket_addrs()
            .map(|a| {
                let mut v: Vec<String> = a.map(|s| s.ip().to_string()).collect();
                v.sort();
                v.dedup();
                v
            })
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| Err("no answer from the resolver within 5s".into()))
}

fn render(g: &Global, report: &Report) {
    if g.json {
        print_json(report);
        return;
    }
    println!("{} {}", style("doctor").dim(), style(&report.host).bold());
    for c in &report.checks {
        let mark = match c.verdict {
            Verdict::Ok => style("✓").green(),
            Verdict::Warn => style("!").yellow().bold(),
            Verdict::Fail => style("✗").red().bold(),
            Verdict::Skip => style("-").dim(),
        };
        println!("  {mark} {:<13} {}", c.name, c.summary);
        if let Some(fix) = &c.fix {
            if c.verdict != Verdict::Ok {
                println!("    {} {fix}", style("fix:").dim());
            }
        }
    }
    let count = |v: Verdict| report.checks.iter().filter(|c| c.verdict == v).count();
    println!(
        "{} ok, {} warning(s), {} failed, {} skipped",
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail),
        count(Verdict::Skip)
    );
}
