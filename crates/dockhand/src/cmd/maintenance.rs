//! `dockhand maintenance [on|off] [SERVICE]`: the proxy answers a service's routes (every
//! route without SERVICE) with 503, `Retry-After` and a maintenance page while the app keeps
//! running; without arguments, shows what is in maintenance.

use std::process::ExitCode;

use console::style;
use dockhand_api::{MaintenanceReport, Request};

use super::client::{call_with_progress, requested_by};
use crate::output::print_json;
use crate::Global;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

pub fn run(
    g: &Global,
    switch: Option<Switch>,
    service: Option<String>,
) -> anyhow::Result<ExitCode> {
    let report: MaintenanceReport = call_with_progress(
        g,
        &Request::Maintenance {
            enable: switch.map(|s| matches!(s, Switch::On)),
            service,
            requested_by: requested_by(),
        },
    )?;
    if g.json {
        print_json(&report);
    } else if report.all {
        println!(
            "{} every route answers 503 (Retry-After: {} s); `dockhand maintenance off` ends it",
            style("maintenance:").yellow(),
            report.retry_after_seconds
        );
    } else if !report.services.is_empty() {
        println!(
            "{} the routes of {} answer 503 (Retry-After: {} s)",
            style("maintenance:").yellow(),
            report.services.join(", "),
            report.retry_after_seconds
        );
    } else {
        println!("{} no service is in maintenance", style("✓").green());
    }
    Ok(ExitCode::SUCCESS)
}
