//! `dockhand-testapp`: the upstream the integration tests put behind the Dockhand proxy.
//!
//! A small HTTP/1.1 + HTTP/2 server whose behaviour is set from the environment (see
//! [`config`]) so one binary can play a healthy release, a failing one, a slow starter, a
//! crasher or a process that ignores SIGTERM. It prints one line per event to stdout (flushed),
//! because the tests read instance log files to prove which instance served which request.

mod config;
mod routes;
mod sse;
mod ws;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::routes::AppState;

/// How long in-flight requests get to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("dockhand-testapp: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(config.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dockhand-testapp: failed to start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dockhand-testapp: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout and flushes it; a closed stdout is not worth dying for.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

async fn run(config: Config) -> Result<(), String> {
    // Signal handlers go in first: once tokio owns SIGTERM its default action (death) is gone,
    // which is also how IGNORE_SIGTERM works.
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|err| format!("failed to install the SIGTERM handler: {err}"))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|err| format!("failed to install the SIGINT handler: {err}"))?;
    let ignore_sigterm = config.ignore_sigterm;
    let stop = async move {
        loop {
            tokio::select! {
                _ = sigterm.recv() => {
                    if !ignore_sigterm {
                        break "SIGTERM";
                    }
                    say(format_args!("ignoring SIGTERM"));
                }
                _ = sigint.recv() => break "SIGINT",
            }
        }
    };
    tokio::pin!(stop);

    if let Some(after) = config.exit_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            say(format_args!(
                "exiting with code 3 after {} ms (EXIT_AFTER_MS)",
                after.as_millis()
            ));
            std::process::exit(3);
        });
    }

    if !config.startup_delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(config.startup_delay) => {}
            signal = &mut stop => {
                say(format_args!("received {signal} before listening, exiting"));
                return Ok(());
            }
        }
    }

    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|err| format!("failed to listen on {}:{}: {err}", config.host, config.port))?;
    say(format_args!(
        "listening on {}:{} version={}",
        config.host, config.port, config.version
    ));
    if let Some((db, table)) = &config.require_table {
        // What a test reads to know whether the migration ran before this instance started.
        let found = routes::table_exists(db, table);
        say(format_args!(
            "table {table} {} at start",
            if found.is_ok() { "present" } else { "missing" }
        ));
    }

    let state = Arc::new(AppState {
        version: config.version,
        health_status: config.health_status,
        require_table: config.require_table,
        fail_percent: u64::from(config.fail_percent),
        served: std::sync::atomic::AtomicU64::new(0),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();

    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // Usually EMFILE; back off instead of spinning.
                        eprintln!("dockhand-testapp: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let service = service_fn(move |req| routes::handle(req, Arc::clone(&state)));
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // Errors here are clients going away mid-request; nothing to do.
                    let _ = conn.await;
                });
            }
            signal = &mut stop => break signal,
        }
    };

    drop(listener);
    say(format_args!(
        "received {signal}, draining {} connection(s)",
        graceful.count()
    ));
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => say(format_args!("drained, exiting")),
        Err(_) => say(format_args!(
            "drain timed out after {} s, exiting",
            DRAIN_TIMEOUT.as_secs()
        )),
    }
    Ok(())
}
