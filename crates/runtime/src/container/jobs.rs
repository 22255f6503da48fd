//! One-off containers and commands: [`ContainerRuntime::run_once`] (a throwaway container for
//! a deploy hook, removed afterwards), [`ContainerRuntime::exec`] (a command in a running
//! container, for health commands) and [`ContainerRuntime::exec_stream`] (the same, line by
//! line, for `dockhand exec`). Every one has a timeout; an exec'd command that outlives it is
//! killed through its host pid.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{KillContainerOptions, WaitContainerOptions};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::logstream::{LogCursor, LogSink};
use super::spec::{ContainerKind, ContainerSpec};
use super::ContainerRuntime;
use crate::error::RuntimeError;
use crate::logread::Stream;
use crate::logs::LogWriter;
use crate::oneshot::{OneShotOutput, Tail};

/// How long output may still arrive after a job ended.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

/// One event of a streaming exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// A line of output (without its newline) on `Stream::Out` or `Stream::Err`.
    Line(Stream, String),
    /// The end; `code` is None when it was killed (timeout) or is unknown.
    Exit { code: Option<i32>, timed_out: bool },
}

/// The events of a streaming exec, ending with one [`ExecEvent::Exit`]. Dropping it kills
/// the command.
pub struct ExecStream {
    rx: mpsc::Receiver<ExecEvent>,
}

impl ExecStream {
    /// The next event; None after the exit event.
    pub async fn next(&mut self) -> Option<ExecEvent> {
        self.rx.recv().await
    }
}

impl ContainerRuntime {
    /// Runs a throwaway container to completion or its timeout (then it is killed) and
    /// removes it. Its output goes to `spec.log_path` (if any) and, the last 64 KiB of it,
    /// into the result. The container is labelled `dockhand.kind=job`.
    pub async fn run_once(
        &self,
        mut spec: ContainerSpec,
        timeout: Duration,
    ) -> Result<OneShotOutput, RuntimeError> {
        spec.kind = ContainerKind::Job;
        let log = match &spec.log_path {
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
        let tail = Arc::new(Mutex::new(Tail::default()));
        let sink = LogSink {
            log,
            tail: Some(tail.clone()),
        };
        let name = spec.container_name();
        self.create_container(&spec, None, &[]).await?;
        let result = self.run_created(&name, timeout, &sink).await;
        let _ = self.remove_container_quietly(&name).await;
        let (exit_code, timed_out) = result?;
        let output = tail.lock().unwrap_or_else(|e| e.into_inner()).finish();
        Ok(OneShotOutput {
            exit_code,
            timed_out,
            output,
        })
    }

    async fn run_created(
        &self,
        name: &str,
        timeout: Duration,
        sink: &LogSink,
    ) -> Result<(Option<i32>, bool), RuntimeError> {
        let run = self.start_and_inspect(name).await?;
        sink.sys(&format!(
            "started container {name} pid {}",
            run.pid.unwrap_or(0)
        ));
        let follower = {
            let rt = self.clone();
            let name = name.to_string();
            let sink = sink.clone();
            tokio::spawn(async move {
                rt.follow_output(&name, &LogCursor::default(), &sink).await;
            })
        };
        let wait = async {
            let mut stream = self.docker().wait_container(
                name,
                Some(WaitContainerOptions {
                    condition: "not-running".into(),
                }),
            );
            stream.next().await
        };
        let timed_out = tokio::time::timeout(timeout, wait).await.is_err();
        if timed_out {
            let _ = self
                .api(
                    || format!("failed to kill container {name}"),
                    self.docker().kill_container(
                        name,
                        Some(KillContainerOptions {
                            signal: "SIGKILL".into(),
                        }),
                    ),
                )
                .await;
        }
        let mut follower = follower;
        if tokio::time::timeout(FLUSH_WAIT, &mut follower)
            .await
            .is_err()
        {
            follower.abort();
        }
        let exit = self.inspect_exit(name).await?;
        if timed_out {
            sink.sys(&format!(
                "timed out after {}, killed the container",
                humantime::format_duration(timeout)
            ));
            return Ok((None, true));
        }
        let exit = exit.unwrap_or_else(|| super::supervise::exit_from_code(-1));
        sink.sys(&exit.describe());
        Ok((exit.code, false))
    }

    /// Runs `cmd` (exec'd as is, no shell) in a running container, to completion or its
    /// timeout, collecting the last 64 KiB of its combined output.
    pub async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<OneShotOutput, RuntimeError> {
        let mut stream = self.exec_stream(container, cmd, env, timeout).await?;
        let mut tail = Tail::default();
        let mut end = (None, false);
        while let Some(event) = stream.next().await {
            match event {
                ExecEvent::Line(_, line) => tail.push(&line),
                ExecEvent::Exit { code, timed_out } => end = (code, timed_out),
            }
        }
        Ok(OneShotOutput {
            exit_code: end.0,
            timed_out: end.1,
            output: tail.finish(),
        })
    }

    /// Starts `cmd` in a running container and streams its output lines, then its exit code.
    /// The command is killed at the timeout or when the stream is dropped.
    pub async fn exec_stream(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<ExecStream, RuntimeError> {
        let program = cmd.first().cloned().unwrap_or_default();
        let what = || format!("failed to run `{program}` in container {container}");
        let created = self
            .api(
                what,
                self.docker().create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(cmd.clone()),
                        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        let started = self
            .api(what, self.docker().start_exec(&created.id, None))
            .await?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(RuntimeError::InvalidSpec(format!(
                "{}: the Docker Engine did not attach the output",
                what()
            )));
        };
        let (tx, rx) = mpsc::channel(256);
        let rt = self.clone();
        let exec_id = created.id;
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut out = Lines::default();
            let mut err = Lines::default();
            let mut timed_out = false;
            let mut receiver_gone = false;
            loop {
                tokio::select! {
                    item = output.next() => {
                        let (lines, stream, bytes) = match item {
                            Some(Ok(LogOutput::StdOut { message })) => (&mut out, Stream::Out, message),
                            Some(Ok(LogOutput::Console { message })) => (&mut out, Stream::Out, message),
                            Some(Ok(LogOutput::StdErr { message })) => (&mut err, Stream::Err, message),
                            Some(Ok(LogOutput::StdIn { .. })) => continue,
                            Some(Err(_)) | None => break,
                        };
                        for line in lines.push(&bytes) {
                            if tx.send(ExecEvent::Line(stream, line)).await.is_err() {
                                receiver_gone = true;
                            }
                        }
                        if receiver_gone {
                            break;
                        }
                    }
                    _ = &mut deadline => {
                        timed_out = true;
                        break;
                    }
                }
            }
            if timed_out || receiver_gone {
                rt.kill_exec(&exec_id).await;
            }
            for (stream, lines) in [(Stream::Out, &mut out), (Stream::Err, &mut err)] {
                if let Some(rest) = lines.finish() {
                    let _ = tx.send(ExecEvent::Line(stream, rest)).await;
                }
            }
            let code = if timed_out {
                None
            } else {
                rt.exec_exit_code(&exec_id).await
            };
            let _ = tx.send(ExecEvent::Exit { code, timed_out }).await;
        });
        Ok(ExecStream { rx })
    }

    /// The exit code of a finished exec (it may take a moment to be recorded).
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Option<i32> {
        for _ in 0..40 {
            let info = self
                .api(
                    || "failed to inspect exec".to_string(),
                    self.docker().inspect_exec(exec_id),
                )
                .await
                .ok()?;
            if info.running != Some(true) {
                return info.exit_code.map(|c| c as i32);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Kills an exec'd process through its host pid (the Engine API has no exec kill).
    pub(crate) async fn kill_exec(&self, exec_id: &str) {
        let info = self
            .api(
                || "failed to inspect exec".to_string(),
                self.docker().inspect_exec(exec_id),
            )
            .await;
        if let Ok(info) = info {
            if let Some(pid) = info.pid.filter(|p| *p > 1) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            lines.push(text.strip_suffix('\r').unwrap_or(&text).to_string());
        }
        while self.buf.len() > crate::logs::MAX_LINE {
            let rest = self.buf.split_off(crate::logs::MAX_LINE);
            lines.push(String::from_utf8_lossy(&self.buf).into_owned());
            self.buf = rest;
        }
        lines
    }

    fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_the_rest_is_kept() {
        let mut l = Lines::default();
        assert!(l.push(b"one\ntw").len() == 1);
        assert_eq!(l.push(b"o\r\nthr"), ["two"]);
        assert_eq!(l.finish().as_deref(), Some("thr"));
        assert_eq!(l.finish(), None);
    }
}
