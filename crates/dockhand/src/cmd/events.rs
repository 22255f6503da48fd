//! `dockhand events`: the agent's recent events (deploys, health changes, restarts), oldest
//! first; with `--follow`, then each new one as the agent records it.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use dockhand_api::{Event, EventLevel, Frame, Request};

use super::client::client;
use crate::output::{self, paint, paint_state, print_json, Tone};
use crate::Global;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// How many events.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: usize,
    /// Keep printing new events as they happen (one JSON object per line with --json).
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

pub fn run(g: &Global, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut client = client(g)?;
    let req = Request::Events {
        limit: args.limit,
        follow: args.follow,
    };
    if args.follow {
        client.read_timeout = None;
        let stdout = std::io::stdout();
        client
            .call(&req, |f| {
                let mut out = stdout.lock();
                match f {
                    Frame::Event(e) if g.json => {
                        let _ = writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default());
                    }
                    Frame::Event(e) => {
                        let _ = writeln!(out, "{}", format_event(e));
                    }
                    Frame::Progress(p) => eprintln!("{}", p.message),
                    _ => {}
                }
                let _ = out.flush();
            })
            .map_err(|e| output::from_client(e, g.json))?;
        return Ok(ExitCode::SUCCESS);
    }
    let events: Vec<Event> = client
        .call_typed(&req, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        // Through a `serde_json::Value`, whose objects keep their keys sorted: the order
        // `events --json` has always printed them in (and the agent sends them in).
        print_json(&serde_json::to_value(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &events {
        println!("{}", format_event(e));
    }
    Ok(ExitCode::SUCCESS)
}

fn format_event(e: &Event) -> String {
    format!(
        "{}  {:<5}  {:<9} {}",
        e.ts,
        match e.level {
            // Info is the usual case: no word, so the others stand out.
            EventLevel::Info => paint("", Tone::Quiet),
            EventLevel::Warn | EventLevel::Error => paint_state(&e.level),
        },
        e.kind,
        e.message
    )
}
