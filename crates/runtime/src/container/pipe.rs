//! Byte streams in and out of containers, for backups and restores: [`ContainerRuntime::exec_pipe`]
//! runs a command in a running container with its stdout as a stream of raw chunks (a dump
//! flows out without being split into lines or held in memory: the Engine's attach stream is
//! read only as fast as the consumer takes it) and, optionally, a stdin to stream into (a
//! restore); stderr is kept (its last 64 KiB) for the verdict. [`ContainerRuntime::start_helper`]
//! starts a throwaway container (a job, removed by `remove_orphans` if the agent dies) that
//! runs until [`ContainerRuntime::remove_helper`]: a scratch database for a restore drill, or a
//! busybox with a volume mounted to tar it.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};

use super::spec::{ContainerKind, ContainerSpec};
use super::ContainerRuntime;
use crate::error::RuntimeError;

/// How much of stderr is kept.
const STDERR_KEEP: usize = 64 * 1024;

/// A piped command's input.
pub type ExecInput = Pin<Box<dyn AsyncWrite + Send>>;

/// A command running in a container: its stdout as chunks, its stdin if asked for.
pub struct ExecPipe {
    /// Write the command's input here, then `shutdown()` it (end of input).
    pub stdin: Option<ExecInput>,
    /// The command's stdout, chunk by chunk, until it ends. Dropping it kills the command.
    pub stdout: mpsc::Receiver<bytes::Bytes>,
    done: oneshot::Receiver<ExecEnd>,
}

/// How a piped command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnd {
    /// None when killed (timeout, consumer gone) or unknown.
    pub code: Option<i32>,
    pub timed_out: bool,
    /// The end of its stderr (lossy UTF-8).
    pub stderr: String,
}

impl ExecPipe {
    /// Waits for the command to end (drain `stdout` first, or drop it).
    pub async fn finish(self) -> ExecEnd {
        let ExecPipe {
            done,
            stdout,
            stdin,
        } = self;
        drop(stdin);
        drop(stdout);
        done.await.unwrap_or(ExecEnd {
            code: None,
            timed_out: false,
            stderr: String::new(),
        })
    }

    /// Splits off the end-of-command future, keeping the streams.
    pub fn into_parts(self) -> (Option<ExecInput>, mpsc::Receiver<bytes::Bytes>, ExecDone) {
        (self.stdin, self.stdout, ExecDone(self.done))
    }
}

/// The end of a piped command, awaited apart from its streams.
pub struct ExecDone(oneshot::Receiver<ExecEnd>);

impl ExecDone {
    pub async fn wait(self) -> ExecEnd {
        self.0.await.unwrap_or(ExecEnd {
            code: None,
            timed_out: false,
            stderr: String::new(),
        })
    }
}

impl ContainerRuntime {
    /// Runs `cmd` (exec'd as is) in running container `container` as `user` (None: the
    /// image's), with `env` (which never reaches a process listing of the host), streaming
    /// its stdout; with `stdin`, its input is a stream too. Killed at `timeout`.
    pub async fn exec_pipe(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        user: Option<&str>,
        stdin: bool,
        timeout: Duration,
    ) -> Result<ExecPipe, RuntimeError> {
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
                        user: user.map(str::to_string),
                        attach_stdin: Some(stdin),
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
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(RuntimeError::InvalidSpec(format!(
                "{}: the Docker Engine did not attach the output",
                what()
            )));
        };
        let (tx, rx) = mpsc::channel(8);
        let (done_tx, done_rx) = oneshot::channel();
        let rt = self.clone();
        let exec_id = created.id;
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut stderr: Vec<u8> = Vec::new();
            let mut timed_out = false;
            let mut gone = false;
            loop {
                tokio::select! {
                    item = output.next() => match item {
                        Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                            tokio::select! {
                                sent = tx.send(message) => if sent.is_err() { gone = true; break },
                                _ = &mut deadline => { timed_out = true; break }
                            }
                        }
                        Some(Ok(LogOutput::StdErr { message })) => {
                            stderr.extend_from_slice(&message);
                            if stderr.len() > 2 * STDERR_KEEP {
                                stderr.drain(..stderr.len() - STDERR_KEEP);
                            }
                        }
                        Some(Ok(LogOutput::StdIn { .. })) => {}
                        Some(Err(_)) | None => break,
                    },
                    _ = &mut deadline => { timed_out = true; break }
                }
            }
            drop(tx);
            if timed_out || gone {
                rt.kill_exec(&exec_id).await;
            }
            let code = if timed_out || gone {
                None
            } else {
                rt.exec_exit_code(&exec_id).await
            };
            if stderr.len() > STDERR_KEEP {
                stderr.drain(..stderr.len() - STDERR_KEEP);
            }
            let _ = done_tx.send(ExecEnd {
                code,
                timed_out,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        });
        Ok(ExecPipe {
            stdin: stdin.then_some(input),
            stdout: rx,
            done: done_rx,
        })
    }

    /// Creates and starts a throwaway container of `spec` (labelled a job) that runs until
    /// [`ContainerRuntime::remove_helper`]; returns its name.
    pub async fn start_helper(&self, mut spec: ContainerSpec) -> Result<String, RuntimeError> {
        spec.kind = ContainerKind::Job;
        let name = spec.container_name();
        self.create_container(&spec, None, &[]).await?;
        if let Err(e) = self.start_and_inspect(&name).await {
            let _ = self.remove_container_quietly(&name).await;
            return Err(e);
        }
        Ok(name)
    }

    /// Removes a helper container and its anonymous volumes.
    pub async fn remove_helper(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_container_quietly(name).await
    }

    /// Stops a running container (the database one, for a restore that replaces its files)
    /// within `grace`, then SIGKILL.
    pub async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        super::timed(
            grace + self.inner.timeouts.api,
            || format!("failed to stop container {name}"),
            self.docker().stop_container(
                name,
                Some(bollard::query_parameters::StopContainerOptions {
                    t: Some(grace.as_secs().min(i32::MAX as u64) as i32),
                    signal: None,
                }),
            ),
        )
        .await
    }

    /// Starts a stopped container (a database after a restore).
    pub async fn start_container(&self, name: &str) -> Result<(), RuntimeError> {
        match self
            .api(
                || format!("failed to start container {name}"),
                self.docker().start_container(
                    name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                ),
            )
            .await
        {
            Err(e) if super::is_conflict(&e) => Ok(()),
            other => other,
        }
    }
}

impl ContainerRuntime {
    /// Writes a tar archive of `path` inside `image` to `out` (a container is created from
    /// the image, never started, and removed): how a static service's files leave its image.
    /// The archive's entries are under `path`'s last component.
    pub async fn copy_from_image(
        &self,
        mut spec: ContainerSpec,
        path: &str,
        out: &std::path::Path,
        limit: Duration,
    ) -> Result<(), RuntimeError> {
        use tokio::io::AsyncWriteExt;
        spec.kind = ContainerKind::Job;
        let name = spec.container_name();
        self.create_container(&spec, None, &[]).await?;
        let copy = async {
            let mut file =
                tokio::fs::File::create(out)
                    .await
                    .map_err(|source| RuntimeError::Log {
                        path: out.to_path_buf(),
                        source,
                    })?;
            let mut stream = self.docker().download_from_container(
                &name,
                Some(bollard::query_parameters::DownloadFromContainerOptions {
                    path: path.to_string(),
                }),
            );
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| RuntimeError::Docker {
                    what: format!("failed to copy {path} out of image {}", spec.image),
                    source,
                })?;
                file.write_all(&chunk)
                    .await
                    .map_err(|source| RuntimeError::Log {
                        path: out.to_path_buf(),
                        source,
                    })?;
            }
            file.flush().await.map_err(|source| RuntimeError::Log {
                path: out.to_path_buf(),
                source,
            })
        };
        let result = match tokio::time::timeout(limit, copy).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::DockerTimeout {
                what: format!("copying {path} out of image {}", spec.image),
                after: limit,
            }),
        };
        let _ = self.remove_container_quietly(&name).await;
        result
    }
}
