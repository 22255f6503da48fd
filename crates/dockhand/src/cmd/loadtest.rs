//! `dockhand loadtest`: flags to a `dockhand_loadtest::Plan`, the safety check on the target,
//! a progress bar, and the report on stdout or in a file. Exit code from the verdict: 0 PASS,
//! 6 WARN, 1 FAIL (2 for a usage error, 3 agent unreachable and 5 unknown service with
//! `--route`).

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use dockhand_api::{Request, StatusReport};
use dockhand_loadtest::summary::Percentile;
use dockhand_loadtest::target::{self, Origin};
use dockhand_loadtest::{scenario, Endpoint, LoadError, Plan, Progress, Report, Stop, Thresholds};

use crate::output::{self, Exit, NOT_FOUND, USAGE};
use crate::Global;

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// The URL to load (`http://…` or `https://…`); or use --route, or `url` in --scenario.
    pub url: Option<String>,
    /// Load the route of this service of the running app (through the agent's proxy).
    #[arg(long, value_name = "SERVICE", conflicts_with = "url")]
    pub route: Option<String>,
    /// Keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 16, value_name = "N")]
    pub connections: usize,
    /// How long to send load (`30s`, `2m`); the default is 10s.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send exactly this many requests instead of running for a duration.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Open loop: this many requests per second in total, latency measured from when each
    /// request was due (without it: closed loop, as fast as the answers come).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// A TOML file of weighted endpoints and an optional login step (see the README).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// An extra request header (`-H 'Name: value'`), repeatable; added to every endpoint.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request method (single URL only).
    #[arg(short = 'm', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// The request body (single URL only): a string, or `@FILE`.
    #[arg(long, value_name = "STRING|@FILE")]
    pub body: Option<String>,
    /// Send `Authorization: Bearer TOKEN` (better from $DOCKHAND_LOADTEST_BEARER, which keeps
    /// it out of process listings).
    #[arg(
        long,
        env = "DOCKHAND_LOADTEST_BEARER",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub bearer: Option<String>,
    /// PASS when at least this percentage of requests succeed (2xx or 3xx).
    #[arg(long, default_value_t = 95.0, value_name = "PERCENT")]
    pub success_pass: f64,
    /// WARN (exit 6) when at least this percentage succeed, FAIL (exit 1) below.
    #[arg(long, default_value_t = 90.0, value_name = "PERCENT")]
    pub success_warn: f64,
    /// FAIL when the median latency is above this (`20ms`).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub p50: Option<Duration>,
    /// FAIL when p90 latency is above this.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub p90: Option<Duration>,
    /// FAIL when p95 latency is above this.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub p95: Option<Duration>,
    /// FAIL when p99 latency is above this (`200ms`).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub p99: Option<Duration>,
    /// FAIL when p99.9 latency is above this.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub p999: Option<Duration>,
    /// The report's format on stdout (and in --out; default: by the file's extension, else md).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub report: Option<ReportFormat>,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Do not ask before loading a target that is not this machine.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Per-request timeout, from sending to the last byte of the answer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Per-connection timeout (TCP connect, then TLS handshake).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", value_name = "DURATION")]
    pub connect_timeout: Duration,
    /// Load threads, each with its own event loop (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Accept any TLS certificate (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Md,
    Json,
}

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(g: &Global, args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let fail = |code: u8, message: String| -> anyhow::Error {
        let json = g.json.then(
            || serde_json::json!({ "error": { "code": code_name(code), "message": message } }),
        );
        anyhow::Error::new(Exit {
            code,
            message,
            json,
        })
    };
    let usage = |m: String| fail(USAGE, m);

    let mut latency = Vec::new();
    for (p, d) in [
        (Percentile::P50, args.p50),
        (Percentile::P90, args.p90),
        (Percentile::P95, args.p95),
        (Percentile::P99, args.p99),
        (Percentile::P999, args.p999),
    ] {
        if let Some(d) = d {
            latency.push((p, d));
        }
    }
    let thresholds = Thresholds::new(args.success_pass, args.success_warn, latency)
        .map_err(|e| usage(e.to_string()))?;

    // What to send.
    let extra_headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&usage)?;
    let (scenario_url, mut endpoints, login) = match &args.scenario {
        Some(path) => {
            if args.method.is_some() || args.body.is_some() {
                return Err(usage(
                    "-m and --body apply to a single URL; with --scenario set method and body per endpoint in the file".into(),
                ));
            }
            let s = scenario::load(path).map_err(|e| usage(e.to_string()))?;
            (s.url, s.endpoints, s.login)
        }
        None => (None, Vec::new(), None),
    };
    if login.is_some() && args.bearer.is_some() {
        return Err(usage(
            "use either --bearer or a [login] step in the scenario, not both".into(),
        ));
    }

    // Where to send it, and whether that needs a yes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let (origin, addrs, path) = if let Some(service) = &args.route {
        route_target(g, service)?
    } else {
        let url = args.url.clone().or(scenario_url).ok_or_else(|| {
            usage("say what to load: a URL (`dockhand loadtest http://127.0.0.1:8080/`), --route SERVICE, or `url` in --scenario".into())
        })?;
        let (origin, path) = target::parse_url(&url).map_err(|e| usage(e.to_string()))?;
        // An address literal is judged before anything is resolved or sent.
        if target::loopback_by_name(&origin.host) == Some(false) {
            confirm(&origin, &[], args.yes).map_err(&usage)?;
        }
        let addrs = rt
            .block_on(target::resolve(&origin, RESOLVE_TIMEOUT))
            .map_err(|e| fail(output::FAILED, e.to_string()))?;
        if target::loopback_by_name(&origin.host).is_none() && !target::all_loopback(&addrs) {
            confirm(&origin, &addrs, args.yes).map_err(&usage)?;
        }
        (origin, addrs, path)
    };
    drop(rt);

    if endpoints.is_empty() {
        let method = scenario::method(args.method.as_deref(), http::Method::GET).map_err(&usage)?;
        let body = match args.body.as_deref() {
            None => bytes::Bytes::new(),
            Some(b) => match b.strip_prefix('@') {
                Some(file) => std::fs::read(file)
                    .map(bytes::Bytes::from)
                    .with_context(|| format!("failed to read the request body from {file}"))?,
                None => bytes::Bytes::from(b.to_string()),
            },
        };
        endpoints.push(Endpoint {
            name: format!("{method} {path}"),
            method,
            path,
            headers: Vec::new(),
            body,
            weight: 1,
        });
    }
    for e in &mut endpoints {
        e.headers.extend(extra_headers.iter().cloned());
    }

    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let plan = Plan {
        origin,
        addrs,
        endpoints,
        login,
        bearer: args.bearer.clone(),
        connections: args.connections,
        threads: args.threads,
        stop,
        rate: args.rate,
        timeout: args.timeout,
        connect_timeout: args.connect_timeout,
        insecure: args.insecure,
    };

    let progress = Arc::new(Progress::default());
    let bar = (!g.json && std::io::stderr().is_terminal()).then(|| progress_bar(&plan));
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(|| dockhand_loadtest::run(&plan, &progress));
        let started = Instant::now();
        while !worker.is_finished() {
            if let Some(bar) = &bar {
                let done = progress.done();
                match plan.stop {
                    Stop::Requests(_) => bar.set_position(done),
                    Stop::Duration(_) => bar.set_position(started.elapsed().as_millis() as u64),
                }
                bar.set_message(format!("{done} requests"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        worker.join()
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let measurements = match result {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            let code = match e {
                LoadError::Invalid(_) | LoadError::BadUrl { .. } | LoadError::Picker(_) => USAGE,
                _ => output::FAILED,
            };
            return Err(fail(code, e.to_string()));
        }
        Err(_) => anyhow::bail!("the load generator panicked; this is a bug, please report it"),
    };
    let report = Report::new(&plan, &measurements, &thresholds);

    if let Some(out) = &args.out {
        let format = args.report.unwrap_or_else(|| {
            if out.extension().is_some_and(|e| e == "json") {
                ReportFormat::Json
            } else {
                ReportFormat::Md
            }
        });
        std::fs::write(out, render(&report, format))
            .with_context(|| format!("failed to write the report to {}", out.display()))?;
    }
    let format = if g.json {
        ReportFormat::Json
    } else {
        args.report.unwrap_or(ReportFormat::Md)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(render(&report, format).as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write the report to stdout")?;
    Ok(ExitCode::from(report.exit_code))
}

fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => report.to_json() + "\n",
        ReportFormat::Md => report.to_markdown(),
    }
}

fn code_name(code: u8) -> &'static str {
    match code {
        USAGE => "usage",
        output::UNREACHABLE => "unreachable",
        NOT_FOUND => "not_found",
        _ => "failed",
    }
}

/// `Name: value` → a header.
fn parse_header(raw: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("-H {raw:?} is not a header: write it as 'Name: value'"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("-H {raw:?}: {:?} is not a header name", name.trim()))?;
    let value = http::HeaderValue::from_str(value.trim())
        .map_err(|_| format!("-H {raw:?}: the value is not a valid header value"))?;
    Ok((name, value))
}

/// Asks before loading a machine that is not this one; refuses without a terminal to ask on.
fn confirm(origin: &Origin, addrs: &[SocketAddr], yes: bool) -> Result<(), String> {
    if yes {
        return Ok(());
    }
    let what = if addrs.is_empty() {
        origin.display()
    } else {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        format!("{} ({})", origin.display(), list.join(", "))
    };
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(format!(
            "refusing to send load to {what}: it is not this machine (not a loopback address) and there is no terminal to confirm on; load only servers you run, and pass --yes to confirm"
        ));
    }
    eprint!("{what} is not this machine. Send load to it? Only load servers you run. [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("failed to read the answer: {e}"))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(format!("not sending load to {what}: not confirmed"))
    }
}

/// The origin, addresses and path of a running service's route: the agent's proxy address,
/// with the route's host as `Host`. The app's own route needs no confirmation.
fn route_target(
    g: &Global,
    service: &str,
) -> anyhow::Result<(Origin, Vec<SocketAddr>, http::uri::PathAndQuery)> {
    let client = super::client::client(g)?;
    let status: StatusReport = client
        .call_typed(&Request::Status, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    let not_found = |message: String| {
        anyhow::Error::new(Exit {
            code: NOT_FOUND,
            json: g.json.then(
                || serde_json::json!({ "error": { "code": "not_found", "message": message } }),
            ),
            message,
        })
    };
    let Some(svc) = status.services.iter().find(|s| s.name == service) else {
        let names: Vec<&str> = status
            .services
            .iter()
            .filter(|s| s.route.is_some())
            .map(|s| s.name.as_str())
            .collect();
        return Err(not_found(format!(
            "no service {service:?} in the running app; services with a route: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    // `host/path`, or `*/path` for any host (see the status report).
    let Some(route) = &svc.route else {
        return Err(not_found(format!(
            "service {service:?} has no route: give it `route = {{ path = \"/\" }}` in dockhand.toml, or load its port directly with a URL"
        )));
    };
    let (host, path) = match route.find('/') {
        Some(i) => (&route[..i], &route[i..]),
        None => (route.as_str(), "/"),
    };
    let listen: SocketAddr = status.agent.proxy_listen.parse().with_context(|| {
        format!(
            "the agent reported a proxy address {:?} that is not an address; this is a bug, please report it",
            status.agent.proxy_listen
        )
    })?;
    let addr = target::connect_addr_for_listen(listen);
    let origin = Origin {
        tls: false,
        host: if host == "*" || host.is_empty() {
            "localhost".to_string()
        } else {
            host.to_string()
        },
        port: listen.port(),
    };
    let path = path
        .parse()
        .with_context(|| format!("the route path {path:?} is not a valid path"))?;
    Ok((origin, vec![addr], path))
}

fn progress_bar(plan: &Plan) -> indicatif::ProgressBar {
    let (len, template) = match plan.stop {
        Stop::Requests(n) => (n, "{spinner} [{bar:40}] {pos}/{len} requests  {elapsed}"),
        Stop::Duration(d) => (
            d.as_millis() as u64,
            "{spinner} [{bar:40}] {elapsed}  {msg}",
        ),
    };
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
