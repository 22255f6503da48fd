//! `dockhand alerts`: what fires, the silences and the channels; `alerts test` sends a test
//! notice to every channel and says which failed; `alerts silence RULE FOR` mutes a rule.

use std::process::ExitCode;
use std::time::Duration;

use console::style;
use dockhand_api::{AlertsReport, AlertsRequest, Request};

use super::client::{client, requested_by};
use crate::output::{self, print_json};
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// What fires now, the silences, the channels and undelivered messages (the default).
    List,
    /// Send a test notice to every channel of `[alerts]`; exits 1 if one failed.
    Test,
    /// Do not send a rule's notices for a while (they are still recorded as events).
    ///
    /// RULE is one of service_down, error_ratio, latency_p99, crash_loop, disk, memory,
    /// certificate, backup, deploy, agent_restart. FOR is a duration (`30m`, `2h`, `1d`);
    /// `0s` lifts the silence.
    Silence { rule: String, r#for: String },
}

pub fn run(g: &Global, command: Option<AlertsCommand>) -> anyhow::Result<ExitCode> {
    let req = match command.unwrap_or(AlertsCommand::List) {
        AlertsCommand::List => AlertsRequest::List,
        AlertsCommand::Test => AlertsRequest::Test {
            requested_by: requested_by(),
        },
        AlertsCommand::Silence { rule, r#for } => {
            let d: Duration = humantime::parse_duration(&r#for).map_err(|e| {
                output::usage(
                    format!(
                        "invalid duration `{}`: {e}; write e.g. 30m, 2h or 1d",
                        r#for
                    ),
                    g.json,
                )
            })?;
            AlertsRequest::Silence {
                rule,
                seconds: d.as_secs(),
                requested_by: requested_by(),
            }
        }
    };
    let testing = matches!(req, AlertsRequest::Test { .. });
    let report: AlertsReport = client(g)?
        .call_typed(&Request::Alerts(req), |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&report);
    } else {
        print_report(&report, testing);
    }
    let failed = report.test.iter().any(|r| r.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &AlertsReport, testing: bool) {
    if testing {
        if r.test.is_empty() {
            println!(
                "no channel: add webhook, slack, discord, ntfy, telegram or email to [alerts]"
            );
        }
        for t in &r.test {
            match &t.error {
                None => println!("{} {}", style("sent").green(), t.channel),
                Some(e) => println!("{} {}: {e}", style("FAILED").red(), t.channel),
            }
        }
        return;
    }
    if r.firing.is_empty() {
        println!("{}", style("no alert firing").green());
    } else {
        for a in &r.firing {
            let silenced = if a.silenced { " (silenced)" } else { "" };
            println!(
                "{} {} ({}) since {}{silenced}: {}",
                style("FIRING").red().bold(),
                a.rule,
                a.subject,
                a.since,
                a.summary
            );
        }
    }
    for s in &r.silences {
        println!("silenced: {} until {}", s.rule, s.until);
    }
    if r.channels.is_empty() {
        println!("channels: none (alerts are recorded as events only; see [alerts] in docs/configuration.md)");
    } else {
        println!("channels: {}", r.channels.join(", "));
    }
    if r.undelivered > 0 {
        println!(
            "{} {} message(s) waiting to be sent again{}",
            style("undelivered:").yellow(),
            r.undelivered,
            r.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    println!("rules: {}", r.rules.join(", "));
}
