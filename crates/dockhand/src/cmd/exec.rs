//! `dockhand exec SERVICE -- COMMAND`: run a command in a service's environment, its output
//! streamed to ours, its exit code ours.

use std::io::Write;
use std::process::ExitCode;

use dockhand_api::{ExecResult, Frame, OutputStream, Request};

use super::client::client;
use crate::output::{self, print_json};
use crate::Global;

pub fn run(g: &Global, service: &str, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut client = client(g)?;
    client.read_timeout = None;
    let result: ExecResult = client
        .call_typed(
            &Request::Exec {
                service: service.to_string(),
                argv: command,
            },
            |f| {
                if let Frame::Output { stream, data } = f {
                    match stream {
                        OutputStream::Err => eprint!("{data}"),
                        OutputStream::Out => {
                            print!("{data}");
                            let _ = std::io::stdout().flush();
                        }
                    }
                }
            },
        )
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&result);
    }
    if result.timed_out {
        eprintln!("error: the command timed out and was killed");
        return Ok(ExitCode::from(output::FAILED));
    }
    Ok(ExitCode::from(
        result
            .exit_code
            .map(|c| c.clamp(0, 255) as u8)
            .unwrap_or(output::FAILED),
    ))
}
