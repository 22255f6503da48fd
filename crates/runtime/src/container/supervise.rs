//! The supervisor of a service container: one task per [`Instance`] that copies the
//! container's output into the instance log, waits for it to exit, starts it again per the
//! instance's [`crate::RestartPolicy`] with the back-off and crash-loop rules of processes,
//! rides out a restart of the Docker daemon, and on stop runs `docker stop` with the grace and
//! removes the container.

use std::time::{Duration, Instant, SystemTime};

use bollard::query_parameters::{
    InspectContainerOptions, StartContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::logstream::{LogCursor, LogSink};
use super::spec::{ContainerKind, ContainerSpec};
use super::{is_connection_error, is_not_found, ContainerRuntime};
use crate::error::RuntimeError;
use crate::instance::{new_instance, wait_stop, Control, Instance};
use crate::logs::LogWriter;
use crate::restart::RestartTracker;
use crate::spec::{ExitInfo, InstanceState};

/// How long output may still arrive after the container stopped.
const FLUSH_WAIT: Duration = Duration::from_secs(3);
/// Longest pause between two attempts to reach a lost Docker daemon.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

impl ContainerRuntime {
    /// Creates and starts the container of a service replica and supervises it. Errors (image
    /// missing, port taken, bad mount) are returned here; later exits are restarted per
    /// `spec.restart`. Call inside a Tokio runtime.
    pub async fn start(&self, spec: ContainerSpec) -> Result<Instance, RuntimeError> {
        if spec.kind != ContainerKind::Service {
            return Err(RuntimeError::InvalidSpec(format!(
                "{} is a {} container: use ensure_database or run_once for it",
                spec.service,
                spec.kind.as_str()
            )));
        }
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
        let sink = LogSink { log, tail: None };
        let name = spec.container_name();
        let id = match self.create_container(&spec, None, &[]).await {
            Ok(id) => id,
            Err(err) => {
                // The engine went away mid-request: it may have created the container.
                if is_connection_error(&err) {
                    self.remove_now_or_when_back(&name).await;
                }
                return Err(err);
            }
        };
        let first = match self.start_and_inspect(&name).await {
            Ok(first) => first,
            Err(err) => {
                // The engine may be restarting (the start or the inspect failed on it): the
                // created container is removed now or once it answers again.
                self.remove_now_or_when_back(&name).await;
                return Err(err);
            }
        };
        sink.sys(&format!(
            "started container {name} ({}) pid {}",
            short_id(&id),
            first.pid.unwrap_or(0)
        ));
        let stop_limit = spec.stop_grace + 3 * self.inner.timeouts.api + FLUSH_WAIT;
        let (instance, control) = new_instance(&spec.instance_id, stop_limit);
        control.update(|s| {
            s.pid = first.pid;
            s.started_at = Some(first.started_at);
        });
        let supervisor = Supervisor {
            rt: self.clone(),
            spec,
            name,
            sink,
            cursor: LogCursor::default(),
            control,
            follower: None,
        };
        tokio::spawn(supervisor.run(first));
        Ok(instance)
    }

    /// `docker start`, then the pid from `docker inspect`.
    pub(crate) async fn start_and_inspect(&self, name: &str) -> Result<Run, RuntimeError> {
        self.api(
            || format!("failed to start container {name}"),
            self.docker()
                .start_container(name, None::<StartContainerOptions>),
        )
        .await?;
        let started = Instant::now();
        let started_at = SystemTime::now();
        let info = self
            .api(
                || format!("failed to inspect container {name}"),
                self.docker()
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await?;
        let pid = info
            .state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .map(|p| p as u32);
        Ok(Run {
            pid,
            started,
            started_at,
        })
    }
}

/// One run of the container.
pub(crate) struct Run {
    pub pid: Option<u32>,
    pub started: Instant,
    pub started_at: SystemTime,
}

/// How waiting for the container ended.
enum Waited {
    Exited(ExitInfo),
    /// The container no longer exists (removed from outside).
    Gone,
    /// The daemon stopped answering.
    Lost(String),
}

/// What a reconnect found.
enum Found {
    Running,
    NotRunning,
    Gone,
    StopRequested,
}

struct Supervisor {
    rt: ContainerRuntime,
    spec: ContainerSpec,
    name: String,
    sink: LogSink,
    cursor: LogCursor,
    control: Control,
    follower: Option<JoinHandle<()>>,
}

impl Supervisor {
    fn sys(&self, text: &str) {
        self.sink.sys(text);
    }

    fn follow(&mut self) {
        if let Some(old) = self.follower.take() {
            old.abort();
        }
        let rt = self.rt.clone();
        let name = self.name.clone();
        let cursor = self.cursor.clone();
        let sink = self.sink.clone();
        self.follower = Some(tokio::spawn(async move {
            rt.follow_output(&name, &cursor, &sink).await;
        }));
    }

    /// Lets the output of a stopped container reach the log.
    async fn flush(&mut self) {
        if let Some(mut handle) = self.follower.take() {
            if tokio::time::timeout(FLUSH_WAIT, &mut handle).await.is_err() {
                handle.abort();
            }
        }
    }

    async fn run(mut self, first: Run) {
        let mut run = first;
        let mut restarts = RestartTracker::default();
        loop {
            self.follow();
            self.control.update(|s| {
                s.state = InstanceState::Running;
                s.pid = run.pid;
                s.started_at = Some(run.started_at);
            });
            let mut stop_rx = self.control.stop_rx();
            let waited = tokio::select! {
                w = self.wait() => w,
                _ = wait_stop(&mut stop_rx) => {
                    self.stop_and_remove().await;
                    return;
                }
            };
            // Why the container is not running, and whether that was the daemon's doing (then
            // it starts again whatever the policy says: the app did not fail).
            let (exit, lost) = match waited {
                Waited::Exited(exit) => {
                    // An exit while the daemon's socket refuses connections is the doing
                    // of a daemon shutting down, not the app's.
                    let lost = (!self.rt.accepting().await).then(|| {
                        format!(
                            "the container {} while the daemon shut down",
                            exit.describe()
                        )
                    });
                    (exit, lost)
                }
                Waited::Gone => {
                    self.sys("the container was removed from outside");
                    (unknown_exit(), None)
                }
                Waited::Lost(reason) => (unknown_exit(), Some(reason)),
            };
            let exit = if let Some(reason) = lost {
                self.sys(&format!(
                    "lost the Docker Engine ({reason}); waiting for it to come back"
                ));
                match self.reconnect().await {
                    Found::StopRequested => {
                        self.stop_and_remove().await;
                        return;
                    }
                    Found::Running => {
                        self.sys("the Docker Engine is back and the container still runs");
                        continue;
                    }
                    Found::NotRunning | Found::Gone => None,
                }
            } else {
                Some(exit)
            };
            self.flush().await;
            let ran = run.started.elapsed();

            let (mut last_exit, mut reason) = match exit {
                Some(exit) => {
                    if !self.spec.restart.restarts_after(&exit) {
                        self.sys(&format!(
                            "{}, not restarting (restart = {})",
                            exit.describe(),
                            self.spec.restart.as_str()
                        ));
                        self.control.exited_for_good(&exit).await;
                        self.stop_and_remove().await;
                        return;
                    }
                    restarts.exited_after(ran);
                    let reason = exit.describe();
                    (exit, reason)
                }
                None => (
                    unknown_exit(),
                    "the Docker Engine restarted and the container is not running".to_string(),
                ),
            };
            run = loop {
                let next = restarts.next();
                self.sys(&next.describe(&reason));
                self.control.update(|s| {
                    s.state = next.state();
                    s.pid = None;
                    s.last_exit = Some(last_exit.clone());
                });
                let mut stop_rx = self.control.stop_rx();
                tokio::select! {
                    _ = tokio::time::sleep(next.delay) => {}
                    _ = wait_stop(&mut stop_rx) => {
                        self.stop_and_remove().await;
                        return;
                    }
                }
                if self.control.stop_requested() {
                    self.stop_and_remove().await;
                    return;
                }
                match self.start_again().await {
                    Ok(next) => break next,
                    Err(err) if is_connection_error(&err) => {
                        // Not the app's failure: wait for the daemon, then start at once.
                        self.sys(&format!(
                            "lost the Docker Engine ({err}); waiting for it to come back"
                        ));
                        match self.reconnect().await {
                            Found::StopRequested => {
                                self.stop_and_remove().await;
                                return;
                            }
                            Found::Running => {
                                break Run {
                                    pid: None,
                                    started: Instant::now(),
                                    started_at: SystemTime::now(),
                                };
                            }
                            Found::NotRunning | Found::Gone => match self.start_again().await {
                                Ok(next) => break next,
                                Err(err) => {
                                    restarts.failed_start();
                                    reason = format!("failed to start: {err}");
                                    last_exit = unknown_exit();
                                }
                            },
                        }
                    }
                    Err(err) => {
                        restarts.failed_start();
                        reason = format!("failed to start: {err}");
                        last_exit = unknown_exit();
                    }
                }
            };
            self.sys(&format!("started again, pid {}", run.pid.unwrap_or(0)));
            self.control.update(|s| s.restarts += 1);
        }
    }

    /// `docker start` of the existing container, or a new one when it is gone.
    async fn start_again(&self) -> Result<Run, RuntimeError> {
        match self.rt.start_and_inspect(&self.name).await {
            Err(err) if is_not_found(&err) => {
                self.rt.create_container(&self.spec, None, &[]).await?;
                self.rt.start_and_inspect(&self.name).await
            }
            other => other,
        }
    }

    /// Waits until the container is not running.
    async fn wait(&self) -> Waited {
        let options = WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut stream = self.rt.docker().wait_container(&self.name, Some(options));
        let answer = stream.next().await;
        drop(stream);
        match answer {
            Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => {
                match self.rt.inspect_exit(&self.name).await {
                    Ok(Some(exit)) => Waited::Exited(exit),
                    Ok(None) => Waited::Gone,
                    Err(err) if is_connection_error(&err) => Waited::Lost(err.to_string()),
                    Err(_) => Waited::Exited(unknown_exit()),
                }
            }
            Some(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })) => Waited::Gone,
            Some(Err(err)) => Waited::Lost(err.to_string()),
            None => Waited::Lost("the wait for the container ended without an answer".into()),
        }
    }

    /// Retries, with back-off, until the daemon answers about the container again.
    async fn reconnect(&mut self) -> Found {
        let mut delay = Duration::from_millis(500);
        loop {
            let mut stop_rx = self.control.stop_rx();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_stop(&mut stop_rx) => return Found::StopRequested,
            }
            delay = (delay * 2).min(RECONNECT_MAX);
            let info = self
                .rt
                .api(
                    || format!("failed to inspect container {}", self.name),
                    self.rt
                        .docker()
                        .inspect_container(&self.name, None::<InspectContainerOptions>),
                )
                .await;
            match info {
                Ok(info) => {
                    let running = info.state.and_then(|s| s.running).unwrap_or(false);
                    return if running {
                        Found::Running
                    } else {
                        Found::NotRunning
                    };
                }
                Err(err) if is_not_found(&err) => return Found::Gone,
                Err(err) => {
                    tracing::debug!(container = %self.name, error = %err, "docker engine still unreachable");
                }
            }
        }
    }

    /// `docker stop` with the grace, then remove the container.
    async fn stop_and_remove(mut self) {
        let grace = self.spec.stop_grace;
        self.control.update(|s| s.state = InstanceState::Stopping);
        self.sys(&format!(
            "stopping (docker stop, {} grace)",
            humantime::format_duration(grace)
        ));
        let stopped = super::timed(
            grace + self.rt.inner.timeouts.api,
            || format!("failed to stop container {}", self.name),
            self.rt.docker().stop_container(
                &self.name,
                Some(StopContainerOptions {
                    t: Some(grace.as_secs().min(i32::MAX as u64) as i32),
                    signal: None,
                }),
            ),
        )
        .await;
        if let Err(err) = &stopped {
            if !is_not_found(err) {
                self.sys(&format!("{err}; removing it by force"));
            }
        }
        self.flush().await;
        let exit = self.rt.inspect_exit(&self.name).await.ok().flatten();
        if let Err(err) = self.rt.remove_container_quietly(&self.name).await {
            // The engine is restarting or gone: remove it once it answers again (else the
            // next agent start does, `remove_orphans`), so no container of a stopped
            // instance outlives an engine restart while the agent runs.
            self.sys(&format!("{err}; removing it once the engine answers again"));
            let (rt, name) = (self.rt.clone(), self.name.clone());
            tokio::spawn(async move { rt.remove_when_back(&name).await });
        }
        self.sys("stopped");
        self.control.update(|s| {
            s.state = InstanceState::Stopped;
            s.pid = None;
            if exit.is_some() {
                s.last_exit = exit;
            }
        });
        self.control.done();
        tracing::debug!(instance = %self.control.id(), "container instance stopped");
    }
}

impl ContainerRuntime {
    /// Removes a container, or, when the engine does not answer, keeps retrying in the
    /// background ([`Self::remove_when_back`]).
    async fn remove_now_or_when_back(&self, name: &str) {
        if self.remove_container_quietly(name).await.is_err() {
            let (rt, name) = (self.clone(), name.to_string());
            tokio::spawn(async move { rt.remove_when_back(&name).await });
        }
    }

    /// Retries removing a container the engine did not remove (it was restarting or down),
    /// backing off from half a second to five, for up to ten minutes.
    async fn remove_when_back(&self, name: &str) {
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut wait = Duration::from_millis(500);
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(wait).await;
            match self.remove_container_quietly(name).await {
                Ok(()) => {
                    tracing::info!(container = %name, "removed the container once the engine answered again");
                    return;
                }
                Err(err) => {
                    tracing::debug!(container = %name, error = %err, "container not removed yet")
                }
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        tracing::warn!(container = %name, "the container could not be removed; the next agent start removes it");
    }

    /// How the container's last run ended; None when the container does not exist or still
    /// runs.
    pub(crate) async fn inspect_exit(&self, name: &str) -> Result<Option<ExitInfo>, RuntimeError> {
        let info = match self
            .api(
                || format!("failed to inspect container {name}"),
                self.docker()
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await
        {
            Ok(info) => info,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(state) = info.state else {
            return Ok(None);
        };
        if state.running == Some(true) {
            return Ok(None);
        }
        Ok(Some(exit_from_code(state.exit_code.unwrap_or(-1))))
    }

    /// Whether the daemon accepts new connections right now (a fresh connection: the
    /// client's pooled ones outlive a daemon that is shutting down).
    pub(crate) async fn accepting(&self) -> bool {
        matches!(
            tokio::time::timeout(
                self.inner.timeouts.connect,
                tokio::net::UnixStream::connect(&self.inner.socket)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

/// Docker reports a process killed by signal N as exit code 128+N.
pub(crate) fn exit_from_code(code: i64) -> ExitInfo {
    let (code, signal) = if (129..=128 + 64).contains(&code) {
        (None, Some((code - 128) as i32))
    } else {
        (Some(code as i32), None)
    };
    ExitInfo {
        code,
        signal,
        at: SystemTime::now(),
    }
}

fn unknown_exit() -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        at: SystemTime::now(),
    }
}

pub(crate) fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_exit_codes_above_128_are_signals() {
        let killed = exit_from_code(137);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        assert_eq!(killed.describe(), "killed by signal 9 (SIGKILL)");
        let failed = exit_from_code(3);
        assert_eq!((failed.code, failed.signal), (Some(3), None));
        assert!(exit_from_code(0).success());
        assert_eq!(exit_from_code(255).code, Some(255));
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
