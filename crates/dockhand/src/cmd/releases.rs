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
            "{:>5}  {:<8}  {}  {}  {}",
            r.id,
            paint_state(&r.status),
            r.created_at,
            short_revision(r.revision.as_deref()),
            style(&r.note).dim()
        );
        if let Some(message) = &r.revision_message {
            println!(
                "       {} {}",
                style(message).dim(),
                style(r.revision_author.as_deref().unwrap_or("")).dim()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `git:0123456789ab` (12 hex digits) or `sha256:0123456789ab`, `-` for none.
fn short_revision(revision: Option<&str>) -> String {
    let Some(r) = revision else {
        return "-".into();
    };
    let (kind, rest) = r.split_once(':').unwrap_or(("", r));
    let (hash, dirty) = match rest.strip_suffix("+dirty") {
        Some(h) => (h, "+dirty"),
        None => (rest, ""),
    };
    let short: String = hash.chars().take(12).collect();
    format!("{kind}:{short}{dirty}")
}
