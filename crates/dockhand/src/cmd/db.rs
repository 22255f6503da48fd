//! `dockhand db upgrade NAME`: recreate a database container from its current table.

use std::process::ExitCode;

use console::style;
use dockhand_api::{DbUpgradeReport, Request};

use super::client::{call_with_progress, requested_by};
use crate::output::print_json;
use crate::Global;

pub fn upgrade(g: &Global, database: &str) -> anyhow::Result<ExitCode> {
    let report: DbUpgradeReport = call_with_progress(
        g,
        &Request::DbUpgrade {
            database: database.to_string(),
            requested_by: requested_by(),
        },
    )?;
    if g.json {
        print_json(&report);
    } else {
        for w in &report.warnings {
            eprintln!("{} {w}", style("warning:").yellow());
        }
        println!("{} {}", style("✓").green(), report.message);
    }
    Ok(ExitCode::SUCCESS)
}
