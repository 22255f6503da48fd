//! `dockhand db upgrade NAME`: recreate a database container from its current table.

use std::process::ExitCode;

use console::style;
use dockhand_api::{DbUpgradeReport, Request};

use super::client::{client, requested_by, ProgressPrinter};
use crate::output::{self, print_json};
use crate::Global;

pub fn upgrade(g: &Global, database: &str) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let printer = ProgressPrinter::new(g.json);
    let report: DbUpgradeReport = client
        .call_typed(
            &Request::DbUpgrade {
                database: database.to_string(),
                requested_by: requested_by(),
            },
            |f| printer.show_frame(f),
        )
        .map_err(|e| {
            printer.finish();
            output::from_client(e, g.json)
        })?;
    printer.finish();
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
