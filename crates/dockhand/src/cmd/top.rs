//! `dockhand top`: the monitor's latest figures per service, redrawn every interval until
//! Ctrl-C; with `--json`, one sample.

use std::process::ExitCode;
use std::time::Duration;

use console::{style, Term};
use dockhand_api::{Request, TopReport};

use super::client::client;
use crate::output::{self, print_json};
use crate::Global;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// How often to refresh.
    #[arg(long, short = 'n', value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

pub fn run(g: &Global, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let sample = || -> anyhow::Result<TopReport> {
        client
            .call_typed(&Request::Top, |_| {})
            .map_err(|e| output::from_client(e, g.json))
    };
    if g.json {
        print_json(&sample()?);
        return Ok(ExitCode::SUCCESS);
    }
    let term = Term::stdout();
    loop {
        let report = sample()?;
        let text = render(&report);
        if term.is_term() {
            let _ = term.clear_screen();
        }
        print!("{text}");
        if !term.is_term() {
            // Piped: one sample, as text.
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(args.interval);
    }
}

/// One screen.
pub fn render(r: &TopReport) -> String {
    let mut out = String::new();
    if let Some(h) = &r.host {
        out.push_str(&format!(
            "{} cpu {}  memory {:.0} %  load {:.2}    {}\n\n",
            style("host").bold(),
            h.cpu_ratio
                .map(|c| format!("{:.0} %", c * 100.0))
                .unwrap_or_else(|| "-".into()),
            h.memory_used_ratio * 100.0,
            h.load1,
            style(&r.at).dim()
        ));
    }
    out.push_str(&format!(
        "{:<16} {:>5} {:>9} {:>7} {:>8} {:>8} {:>6} {:>9}\n",
        "SERVICE", "UP", "REQ/S", "5XX", "P50", "P99", "CPU", "MEMORY"
    ));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |p| format!("≤{p}ms"));
    for s in &r.services {
        out.push_str(&format!(
            "{:<16} {:>5} {:>9.1} {:>6.1}% {:>8} {:>8} {:>6} {:>9}\n",
            s.name,
            format!("{}/{}", s.up, s.instances),
            s.requests_per_second,
            s.error_ratio * 100.0,
            ms(s.p50_ms),
            ms(s.p99_ms),
            s.cpu_cores
                .map_or_else(|| "-".into(), |c| format!("{:.0}%", c * 100.0)),
            mib(s.memory_bytes),
        ));
    }
    out.push_str(&format!(
        "\n{}\n",
        style(format!(
            "requests over the last {} s; Ctrl-C to quit",
            r.window_secs
        ))
        .dim()
    ));
    out
}

fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
