//! `dockhand events`: the agent's recent events (deploys, health changes, restarts), oldest
//! first.

use std::process::ExitCode;

use dockhand_api::{Event, EventLevel, Request};

use super::client::client;
use crate::output::{self, paint, paint_state, print_json, Tone};
use crate::Global;

pub fn run(g: &Global, limit: usize) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let events: Vec<Event> = client
        .call_typed(&Request::Events { limit }, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        // Through a `serde_json::Value`, whose objects keep their keys sorted: the order
        // `events --json` has always printed them in (and the agent sends them in).
        print_json(&serde_json::to_value(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &events {
        println!(
            "{}  {:<5}  {:<9} {}",
            e.ts,
            match e.level {
                // Info is the usual case: no word, so the others stand out.
                EventLevel::Info => paint("", Tone::Quiet),
                EventLevel::Warn | EventLevel::Error => paint_state(&e.level),
            },
            e.kind,
            e.message
        );
    }
    Ok(ExitCode::SUCCESS)
}
