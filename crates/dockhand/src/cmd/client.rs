//! The client commands: each sends one request to the agent and renders the answer.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};
use console::style;
use dockhand_api::{
    discover_socket, Client, DatabaseState, DeployReport, Event, EventLevel, ExecResult, Frame,
    InstanceHealth, LogEntry, LogLevel, LogStream, LogsRequest, OutputStream, Progress,
    ReleaseInfo, Request, StatusReport,
};

use crate::output::{self, paint, paint_state, print_json, short_duration, Tone};
use crate::Global;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this service (default: all).
    pub service: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// How many lines to show first.
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    pub lines: usize,
    /// Only lines since this time: a duration ago (`10m`, `2h`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines of this level or more severe (detected in common log formats).
    #[arg(long, value_enum)]
    pub level: Option<MinLevel>,
}

/// The levels `--level` accepts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinLevel {
    Error,
    Warn,
    Info,
}

pub(crate) fn client(g: &Global) -> anyhow::Result<Client> {
    let cwd = std::env::current_dir()?;
    let path =
        discover_socket(g.socket.as_deref(), &cwd).map_err(|e| output::from_client(e, g.json))?;
    Ok(Client::new(path))
}

/// Who is asking, for the deploy lock and the event log.
fn requested_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host} (cli pid {})", std::process::id())
}

/// Renders progress frames as they arrive: a spinner on a terminal, plain lines otherwise.
pub struct ProgressPrinter {
    bar: Option<indicatif::ProgressBar>,
    json: bool,
}

impl ProgressPrinter {
    pub fn new(json: bool) -> ProgressPrinter {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        ProgressPrinter { bar, json }
    }

    pub fn show(&self, p: &Progress) {
        if self.json {
            return;
        }
        let line = format!(
            "  {} {}{}",
            style(format!("{:>6}", p.step)).cyan(),
            p.service
                .as_ref()
                .map(|s| format!("{} ", style(format!("[{s}]")).bold()))
                .unwrap_or_default(),
            p.message
        );
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.set_message(p.message.clone());
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn deploy(g: &Global) -> anyhow::Result<ExitCode> {
    run_deploy(
        g,
        &Request::Deploy {
            requested_by: requested_by(),
        },
    )
}

pub fn rollback(g: &Global, release: Option<i64>) -> anyhow::Result<ExitCode> {
    run_deploy(
        g,
        &Request::Rollback {
            release,
            requested_by: requested_by(),
        },
    )
}

pub fn reload(g: &Global) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let printer = ProgressPrinter::new(g.json);
    let result: Option<DeployReport> = client
        .call_typed(
            &Request::Reload {
                requested_by: requested_by(),
            },
            |f| show_frame(&printer, f),
        )
        .map_err(|e| {
            printer.finish();
            output::from_client(e, g.json)
        })?;
    printer.finish();
    match result {
        Some(report) => Ok(render_report(g, &report)),
        None => {
            if g.json {
                print_json(&serde_json::json!({ "changed": false }));
            } else {
                println!("configuration unchanged: nothing to deploy");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_deploy(g: &Global, req: &Request) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let printer = ProgressPrinter::new(g.json);
    let report: DeployReport = client
        .call_typed(req, |f| show_frame(&printer, f))
        .map_err(|e| {
            printer.finish();
            output::from_client(e, g.json)
        })?;
    printer.finish();
    Ok(render_report(g, &report))
}

fn show_frame(printer: &ProgressPrinter, f: &Frame) {
    if let Frame::Progress(p) = f {
        printer.show(p);
    }
}

/// Prints a deploy report; exit 0 when it succeeded, 1 when the gate failed.
pub fn render_report(g: &Global, report: &DeployReport) -> ExitCode {
    if g.json {
        print_json(report);
    } else if report.succeeded {
        println!("{} {}", style("✓").green().bold(), report.message);
        for w in &report.warnings {
            println!("  {} {w}", style("warning:").yellow());
        }
    } else {
        eprintln!("{} {}", style("✗").red().bold(), report.message);
        for f in &report.failures {
            eprintln!(
                "\n  {} {} {}",
                style(&f.service).bold(),
                f.instance,
                style(&f.reason).red()
            );
            if !f.last_probes.is_empty() {
                eprintln!("  last health checks:");
                for p in &f.last_probes {
                    eprintln!("    {p}");
                }
            }
            if !f.last_logs.is_empty() {
                eprintln!("  last log lines:");
                for l in &f.last_logs {
                    eprintln!("    {}", style(l).dim());
                }
            }
        }
        eprintln!(
            "\n  the previous release keeps serving; fix the problem and run `dockhand deploy` again"
        );
    }
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    }
}

pub fn status(g: &Global) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let report: StatusReport = client
        .call_typed(&Request::Status, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {}  agent pid {} up {}  proxy {}",
        style("app").dim(),
        style(&report.app).bold(),
        report.agent.pid,
        short_duration(report.agent.uptime_secs),
        report.agent.proxy_listen
    );
    if let Some(https) = &report.agent.https_listen {
        println!("{} {https}", style("https").dim());
        for cert in &report.agent.certificates {
            println!(
                "{} {}  expires {}",
                style("certificate").dim(),
                cert.names.join(", "),
                cert.not_after
            );
        }
        if report.agent.certificates.is_empty() {
            println!(
                "{} none loaded: HTTPS handshakes fail (see the agent's log)",
                style("certificate").red()
            );
        }
    }
    match &report.current_release {
        Some(r) => println!(
            "{} {} (since {})",
            style("release").dim(),
            style(r.id).bold(),
            r.activated_at.as_deref().unwrap_or(&r.created_at)
        ),
        None => println!("{} none deployed yet", style("release").dim()),
    }
    if let Some(lock) = &report.deploying {
        println!(
            "{} {} by {} since {}",
            style("in progress").yellow(),
            lock.operation,
            lock.holder,
            lock.since
        );
    }
    for url in &report.urls {
        println!("{} {}", style("url").dim(), style(url).underlined());
    }
    let mut all_healthy = true;
    for svc in &report.services {
        let ready = svc.instances.iter().filter(|i| i.is_ready()).count();
        all_healthy &= ready == svc.instances.len();
        println!(
            "\n{} {}/{} ready{}",
            style(&svc.name).bold(),
            ready,
            svc.replicas,
            svc.route
                .as_ref()
                .map(|r| format!("  route {r}"))
                .unwrap_or_default()
        );
        for i in &svc.instances {
            println!(
                "  {:<22} {:<10} {:<10} pid {:<7} port {:<6} up {:<6} restarts {}",
                i.id,
                paint_state(&i.state),
                paint_state(&i.health),
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                short_duration(i.uptime_secs),
                i.restarts
            );
            if i.health == InstanceHealth::Unhealthy {
                if let Some(p) = &i.last_probe {
                    println!("    {}", style(p).red());
                }
            }
        }
    }
    for db in &report.databases {
        all_healthy &= db.state == DatabaseState::Running;
        println!(
            "\n{} {} {}  {}{}",
            style(&db.name).bold(),
            style(&db.engine).dim(),
            paint_state(&db.state),
            db.image,
            db.publish
                .as_ref()
                .map(|p| format!("  published {p}"))
                .unwrap_or_default()
        );
        if let Some(problem) = &db.problem {
            println!("    {}", style(problem).red());
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    })
}

/// `dockhand db upgrade NAME`.
pub fn db_upgrade(g: &Global, database: &str) -> anyhow::Result<ExitCode> {
    let client = client(g)?;
    let printer = ProgressPrinter::new(g.json);
    let report: dockhand_api::DbUpgradeReport = client
        .call_typed(
            &Request::DbUpgrade {
                database: database.to_string(),
                requested_by: requested_by(),
            },
            |f| show_frame(&printer, f),
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

pub fn releases(g: &Global) -> anyhow::Result<ExitCode> {
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

pub fn events(g: &Global, limit: usize) -> anyhow::Result<ExitCode> {
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

pub fn logs(g: &Global, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut client = client(g)?;
    if args.follow {
        client.read_timeout = None;
    }
    let req = Request::Logs(LogsRequest {
        service: args.service,
        tail: Some(args.lines),
        since,
        level: args.level.map(|l| match l {
            MinLevel::Error => LogLevel::Error,
            MinLevel::Warn => LogLevel::Warn,
            MinLevel::Info => LogLevel::Info,
        }),
        follow: args.follow,
    });
    let stdout = std::io::stdout();
    let result = client.call(&req, |f| {
        if let Frame::Log(entry) = f {
            let mut out = stdout.lock();
            let _ = if g.json {
                writeln!(out, "{}", serde_json::to_string(entry).unwrap_or_default())
            } else {
                writeln!(out, "{}", format_log(entry))
            };
            // Each line as it comes, also into a pipe (`logs -f | grep …`).
            let _ = out.flush();
        }
    });
    result.map_err(|e| output::from_client(e, g.json))?;
    Ok(ExitCode::SUCCESS)
}

fn format_log(e: &LogEntry) -> String {
    let text = match (e.level, e.stream) {
        (Some(LogLevel::Error), _) => style(&e.text).red().to_string(),
        (Some(LogLevel::Warn), _) => style(&e.text).yellow().to_string(),
        (Some(LogLevel::Debug), _) => style(&e.text).dim().to_string(),
        (_, LogStream::Sys) => style(&e.text).cyan().to_string(),
        (Some(LogLevel::Info) | None, LogStream::Out | LogStream::Err) => e.text.clone(),
    };
    let ts = e.ts.get(..19).unwrap_or(&e.ts).replace('T', " ");
    format!(
        "{} {} {}",
        style(ts).dim(),
        style(format!("{}|", e.instance)).blue(),
        text
    )
}

/// `10m` → RFC 3339 of ten minutes ago; an RFC 3339 time passes through.
fn parse_since(s: &str) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(s, &Rfc3339).is_ok() {
        return Ok(s.to_string());
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        anyhow::Error::new(output::Exit {
            code: output::USAGE,
            message: format!(
                "--since {s:?} is neither a duration (`10m`, `2h`) nor an RFC 3339 time (`2026-01-31T12:00:00Z`)"
            ),
            json: None,
        })
    })?;
    let at = time::OffsetDateTime::from(SystemTime::now() - ago);
    Ok(at.format(&Rfc3339)?)
}

pub fn exec(g: &Global, service: &str, command: Vec<String>) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn since_accepts_durations_and_times() {
        assert!(super::parse_since("10m").is_ok());
        assert_eq!(
            super::parse_since("2026-01-31T12:00:00Z").unwrap(),
            "2026-01-31T12:00:00Z"
        );
        assert!(super::parse_since("yesterday-ish").is_err());
    }
}
