//! One-shot jobs: deploy hooks and `dockhand exec`. A job runs as `/bin/sh -c` in its own
//! process group with the runtime's marker, its combined output is collected (and optionally
//! appended to a log), and the whole group is killed when it runs past its timeout.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Child;

use crate::error::RuntimeError;
use crate::logread::Stream;
use crate::logs::{capture, write_shared, LogWriter};
use crate::process::{signal_group, Launch};
use crate::reap::kill_marker;
use crate::supervisor::{exit_info, ProcessRuntime};

/// How much combined output [`OneShotOutput::output`] keeps (the end of it).
const OUTPUT_LIMIT: usize = 64 * 1024;
/// How long output capture may continue after the job exited (a background descendant can
/// hold the pipes open).
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the job to be reaped after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A command to run to completion.
#[derive(Clone, Debug)]
pub struct OneShot {
    /// Run as `/bin/sh -c <command>`.
    pub command: String,
    pub workdir: PathBuf,
    /// Added to the agent's own environment.
    pub env: Vec<(String, String)>,
    /// The whole process group is killed after this long.
    pub timeout: Duration,
    /// If set, output lines are appended there too (in the instance log format).
    pub log_path: Option<PathBuf>,
}

/// How a one-shot job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneShotOutput {
    /// None when a signal ended it (including the kill at the timeout).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Combined stdout and stderr lines in arrival order, the last 64 KiB.
    pub output: String,
}

impl ProcessRuntime {
    /// Runs a job to completion or to its timeout, collecting its output.
    pub async fn run_once(&self, job: OneShot) -> Result<OneShotOutput, RuntimeError> {
        let log = match &job.log_path {
            Some(path) => Some(
                LogWriter::open(path, self.inner.rotation)
                    .map_err(|source| RuntimeError::Log {
                        path: path.clone(),
                        source,
                    })?
                    .shared(),
            ),
            None => None,
        };
        let marker = self.job_marker("job");
        let mut child = self.job_launch(&job, &marker, false)?;
        let pid = child.id().unwrap_or(0);
        if let Some(log) = &log {
            write_shared(log, Stream::System, &format!("started pid {pid}"));
        }
        let output = Arc::new(Mutex::new(Tail::default()));
        let mut captures = Vec::new();
        if let Some(out) = child.stdout.take() {
            let output = output.clone();
            captures.push(tokio::spawn(capture(
                out,
                Stream::Out,
                log.clone(),
                move |_, text| output.lock().unwrap_or_else(|e| e.into_inner()).push(text),
            )));
        }
        if let Some(err) = child.stderr.take() {
            let output = output.clone();
            captures.push(tokio::spawn(capture(
                err,
                Stream::Err,
                log.clone(),
                move |_, text| output.lock().unwrap_or_else(|e| e.into_inner()).push(text),
            )));
        }

        let (status, timed_out) = match tokio::time::timeout(job.timeout, child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                signal_group(pid, Signal::SIGKILL);
                let status = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                (status.ok().and_then(|s| s.ok()), true)
            }
        };
        if timed_out {
            let marker = marker.clone();
            let _ = tokio::task::spawn_blocking(move || kill_marker(&marker)).await;
        }
        for mut handle in captures {
            if tokio::time::timeout(FLUSH_WAIT, &mut handle).await.is_err() {
                handle.abort();
            }
        }
        let exit = exit_info(status);
        if let Some(log) = &log {
            let text = if timed_out {
                format!(
                    "timed out after {}, killed the process group",
                    humantime::format_duration(job.timeout)
                )
            } else {
                exit.describe()
            };
            write_shared(log, Stream::System, &text);
        }
        let output = output.lock().unwrap_or_else(|e| e.into_inner()).finish();
        Ok(OneShotOutput {
            exit_code: if timed_out { None } else { exit.code },
            timed_out,
            output,
        })
    }

    /// Starts a job for interactive use (`dockhand exec`): stdin, stdout and stderr piped, its
    /// own process group, the runtime's marker. The child is killed if dropped; the caller
    /// waits for it and enforces any timeout.
    pub fn spawn_attached(&self, job: OneShot) -> Result<Child, RuntimeError> {
        let marker = self.job_marker("exec");
        self.job_launch(&job, &marker, true)
    }

    fn job_marker(&self, kind: &str) -> String {
        let n = self.inner.jobs.fetch_add(1, Ordering::Relaxed);
        format!("{}/{kind}-{}-{n}", self.inner.agent_id, std::process::id())
    }

    fn job_launch(
        &self,
        job: &OneShot,
        marker: &str,
        attached: bool,
    ) -> Result<Child, RuntimeError> {
        let mut cmd = Launch {
            command: &job.command,
            workdir: &job.workdir,
            env: &job.env,
            marker,
            service: None,
            rlimit_data: None,
            piped_stdin: attached,
        }
        .command()?;
        cmd.kill_on_drop(attached);
        cmd.spawn().map_err(|source| RuntimeError::Spawn { source })
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of the lines pushed.
#[derive(Default)]
pub(crate) struct Tail {
    text: String,
}

impl Tail {
    pub(crate) fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if self.text.len() > 2 * OUTPUT_LIMIT {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.text.len() > OUTPUT_LIMIT {
            let mut cut = self.text.len() - OUTPUT_LIMIT;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
        }
    }

    pub(crate) fn finish(&mut self) -> String {
        self.trim();
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_64_kib_on_a_char_boundary() {
        let mut t = Tail::default();
        for i in 0..20_000 {
            t.push(&format!("é line {i}"));
        }
        let out = t.finish();
        assert!(out.len() <= OUTPUT_LIMIT);
        assert!(out.len() > OUTPUT_LIMIT - 4);
        assert!(out.ends_with("é line 19999\n"));
    }
}
