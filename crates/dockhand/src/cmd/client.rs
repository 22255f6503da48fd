//! What every client command shares: finding the agent's socket, saying who asks, and
//! showing a long operation's progress frames.

use std::io::IsTerminal;
use std::time::Duration;

use console::style;
use dockhand_api::{discover_socket, Client, Frame, Progress, Request};

use crate::output;
use crate::Global;

/// A client for the agent: on the server of `--host` / `-d` / `$DOCKHAND_HOST` through SSH,
/// else the one found from `--socket`, `$DOCKHAND_SOCKET` or the directories.
pub(crate) fn client(g: &Global) -> anyhow::Result<Client> {
    if let Some(dest) = super::remote::destination(g)? {
        let session = super::remote::connect(g, &dest, &super::remote::ssh_options())?;
        return Ok(super::remote::bridge_client(&session));
    }
    local_client(g)
}

/// A client for the agent on this machine.
pub(crate) fn local_client(g: &Global) -> anyhow::Result<Client> {
    let cwd = std::env::current_dir()?;
    let path =
        discover_socket(g.socket.as_deref(), &cwd).map_err(|e| output::from_client(e, g.json))?;
    Ok(Client::new(path))
}

/// Sends `req` to the agent, showing its progress frames as they come, and reads the answer.
pub(crate) fn call_with_progress<T: serde::de::DeserializeOwned>(
    g: &Global,
    req: &Request,
) -> anyhow::Result<T> {
    call_with_progress_on(g, client(g)?, req)
}

/// Like [`call_with_progress`], through `client`.
pub(crate) fn call_with_progress_on<T: serde::de::DeserializeOwned>(
    g: &Global,
    client: Client,
    req: &Request,
) -> anyhow::Result<T> {
    let printer = ProgressPrinter::new(g.json);
    let answer = client.call_typed(req, |f| printer.show_frame(f));
    printer.finish();
    answer.map_err(|e| output::from_client(e, g.json))
}

/// Who is asking, for the deploy lock and the event log.
pub(crate) fn requested_by() -> String {
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

    /// Shows `f` if it is a progress frame (the `on_frame` of a long request).
    pub fn show_frame(&self, f: &Frame) {
        if let Frame::Progress(p) = f {
            self.show(p);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
