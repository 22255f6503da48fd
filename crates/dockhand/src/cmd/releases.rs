//! `dockhand releases`: the releases, newest first, with their status.

use std::process::ExitCode;

use console::style;
use dockhand_api::{ReleaseInfo, Request};

use super::client::client;
use crate::output::{self, paint_state, print_json};
use crate::Global;

pub fn run(g: &Global) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let releases: Vec<ReleaseInfo> = client
        .call_typed(&Request::Releases, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&releases);
        return Ok(ExitCode::SUCCESS);
    }
    if releases.is_empty() {
        println!("no releases yet: run `dockhand deploy`");
    }
    for r in &releases {
        println!(
            "{:>5}  {:<8}  {}  {}",
            r.id,
            paint_state(&r.status),
            r.created_at,
            style(&r.note).dim()
        );
    }
    Ok(ExitCode::SUCCESS)
}
