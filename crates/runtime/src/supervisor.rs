//! [`ProcessRuntime`] starts instances; each [`Instance`] has one supervisor task that owns its
//! child process, captures its output, restarts it per policy with exponential back-off, and
//! stops it (SIGTERM to the group, SIGKILL after the grace, then a sweep for processes that
//! left the group).

use std::process::ExitStatus;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cgroup::Cgroup;
use crate::error::RuntimeError;
use crate::logread::Stream;
use crate::logs::{capture, write_shared, LogWriter, SharedLog};
use crate::process::{group_has_live_members, rlimit_data_possible, signal_group, Launch};
use crate::reap::kill_marker;
use crate::spec::{ExitInfo, InstanceSpec, InstanceState, InstanceStatus, LogRotation};

/// First restart delay; doubled on every consecutive restart.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest restart delay, also used in the crash-loop state.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long resets the back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// An exit this soon after the start counts towards a crash loop.
const QUICK_EXIT: Duration = Duration::from_secs(10);
/// Consecutive quick exits that make a crash loop.
const CRASH_LOOP_EXITS: u32 = 5;
/// How long to wait for a process to be reaped after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the capture of buffered output once the process is gone.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Starts and supervises processes for one agent. Cheap to clone.
#[derive(Clone)]
pub struct ProcessRuntime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) agent_id: String,
    pub(crate) rotation: LogRotation,
    pub(crate) jobs: AtomicU64,
}

impl ProcessRuntime {
    /// A runtime whose processes are marked `DOCKHAND_INSTANCE=<agent_id>/…`.
    pub fn new(agent_id: &str, rotation: LogRotation) -> Self {
        ProcessRuntime {
            inner: Arc::new(RuntimeInner {
                agent_id: agent_id.to_string(),
                rotation,
                jobs: AtomicU64::new(0),
            }),
        }
    }

    /// The agent id in the markers.
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// Starts an instance: spawns its first process now (so a missing workdir or an
    /// unspawnable shell is an error here) and a supervisor task that restarts it per policy.
    /// Call inside a Tokio runtime.
    pub fn start(&self, spec: InstanceSpec) -> Result<Instance, RuntimeError> {
        let log = LogWriter::open(&spec.log_path, self.inner.rotation)
            .map_err(|source| RuntimeError::Log {
                path: spec.log_path.clone(),
                source,
            })?
            .shared();
        let marker = format!("{}/{}", self.inner.agent_id, spec.instance_id);
        let (cgroup, rlimit_data) = memory_limit(&spec, &log);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let (status_tx, _) = watch::channel(InstanceStatus {
            state: InstanceState::Running,
            pid: None,
            restarts: 0,
            started_at: None,
            last_exit: None,
        });
        let shared = Arc::new(Shared {
            id: spec.instance_id.clone(),
            status: status_tx,
            stop: stop_tx,
            done: done_rx,
            stop_grace: spec.stop_grace,
        });
        let supervisor = Supervisor {
            spec,
            marker,
            log,
            cgroup,
            rlimit_data,
            shared: shared.clone(),
            stop_rx,
            captures: Vec::new(),
            done: done_tx,
        };
        let first = match supervisor.spawn() {
            Ok(first) => first,
            Err(err) => {
                if let Some(cgroup) = &supervisor.cgroup {
                    cgroup.discard();
                }
                return Err(err);
            }
        };
        supervisor.shared.status.send_modify(|s| {
            s.pid = Some(first.pid);
            s.started_at = Some(first.started_at);
        });
        tokio::spawn(supervisor.run(first));
        Ok(Instance { shared })
    }
}

/// A supervised instance. Cheap to clone; dropping it does not stop the process.
#[derive(Clone)]
pub struct Instance {
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    status: watch::Sender<InstanceStatus>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    stop_grace: Duration,
}

impl Instance {
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The pid (and process group id) of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.shared.status.borrow().pid
    }

    pub fn status(&self) -> InstanceStatus {
        self.shared.status.borrow().clone()
    }

    /// Every status change, starting from the current one.
    pub fn watch(&self) -> watch::Receiver<InstanceStatus> {
        self.shared.status.subscribe()
    }

    /// Stops the instance for good: no more restarts, SIGTERM to its process group, SIGKILL
    /// after `stop_grace`, then SIGKILL to any process still carrying its marker. Returns once
    /// the process has exited and its output is in the log. Idempotent; never waits longer
    /// than the grace plus a bounded margin.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let mut done = self.shared.done.clone();
        let limit = self.shared.stop_grace + KILL_WAIT + FLUSH_WAIT + Duration::from_secs(20);
        if tokio::time::timeout(limit, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!(instance = %self.shared.id, "instance did not stop in time");
        }
    }
}

/// The restart delay after `attempt` consecutive restarts: 200ms doubling up to 30s.
pub(crate) fn backoff_delay(attempt: u32) -> Duration {
    BACKOFF_START
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

/// The running process of an instance.
struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    started_at: SystemTime,
}

struct Supervisor {
    spec: InstanceSpec,
    marker: String,
    log: SharedLog,
    cgroup: Option<Cgroup>,
    rlimit_data: Option<u64>,
    shared: Arc<Shared>,
    stop_rx: watch::Receiver<bool>,
    /// Output capture tasks, also of processes already exited (a descendant may still hold
    /// the pipe).
    captures: Vec<JoinHandle<()>>,
    done: watch::Sender<bool>,
}

impl Supervisor {
    fn sys(&self, text: &str) {
        write_shared(&self.log, Stream::System, text);
    }

    fn spawn(&self) -> Result<Running, RuntimeError> {
        let launch = Launch {
            command: &self.spec.command,
            workdir: &self.spec.workdir,
            env: &self.spec.env,
            marker: &self.marker,
            service: Some(&self.spec.service),
            rlimit_data: self.rlimit_data,
            piped_stdin: false,
        };
        let child = launch
            .command()?
            .spawn()
            .map_err(|source| RuntimeError::Spawn { source })?;
        let pid = child.id().unwrap_or(0);
        if let Some(cgroup) = &self.cgroup {
            if let Err(err) = cgroup.add(pid) {
                self.sys(&format!(
                    "warning: memory limit not enforced: cannot move pid {pid} into cgroup: {err}"
                ));
            }
        }
        self.sys(&format!("started pid {pid}"));
        Ok(Running {
            pid,
            started: Instant::now(),
            started_at: SystemTime::now(),
            child,
        })
    }

    /// Starts the capture tasks of a freshly spawned child.
    fn capture_output(&mut self, running: &mut Running) {
        if let Some(out) = running.child.stdout.take() {
            let log = Some(self.log.clone());
            self.captures
                .push(tokio::spawn(capture(out, Stream::Out, log, |_, _| {})));
        }
        if let Some(err) = running.child.stderr.take() {
            let log = Some(self.log.clone());
            self.captures
                .push(tokio::spawn(capture(err, Stream::Err, log, |_, _| {})));
        }
        self.captures.retain(|h| !h.is_finished());
    }

    fn stop_requested(&self) -> bool {
        *self.stop_rx.borrow()
    }

    async fn run(mut self, first: Running) {
        let mut running = first;
        let mut attempt: u32 = 0;
        let mut quick_exits: u32 = 0;
        loop {
            self.capture_output(&mut running);
            self.shared.status.send_modify(|s| {
                s.state = InstanceState::Running;
                s.pid = Some(running.pid);
                s.started_at = Some(running.started_at);
            });
            let mut stop_rx = self.stop_rx.clone();
            let status = tokio::select! {
                status = running.child.wait() => Some(status),
                _ = stop_requested(&mut stop_rx) => None,
            };
            let Some(status) = status else {
                let exit = self.stop_running(running).await;
                self.finish(exit).await;
                return;
            };
            let exit = exit_info(status.ok());
            let ran = running.started.elapsed();
            // The instance is its process group: leftovers of an exited instance must not hold
            // its port or files while the next one starts.
            signal_group(running.pid, Signal::SIGKILL);

            if !self.spec.restart.restarts_after(&exit) {
                self.sys(&format!(
                    "{}, not restarting (restart = {})",
                    exit.describe(),
                    self.spec.restart.as_str()
                ));
                self.shared.status.send_modify(|s| {
                    s.state = InstanceState::Exited;
                    s.pid = None;
                    s.last_exit = Some(exit.clone());
                });
                stop_requested(&mut self.stop_rx).await;
                self.finish(Some(exit)).await;
                return;
            }

            if ran >= BACKOFF_RESET_AFTER {
                attempt = 0;
            }
            quick_exits = if ran < QUICK_EXIT { quick_exits + 1 } else { 0 };
            let mut last_exit = exit;
            let mut reason = last_exit.describe();
            // Wait, then start again; a failed start counts as a quick exit.
            running = loop {
                let crash_loop = quick_exits >= CRASH_LOOP_EXITS;
                let delay = if crash_loop {
                    BACKOFF_MAX
                } else {
                    backoff_delay(attempt)
                };
                attempt = attempt.saturating_add(1);
                let delay_text = humantime::format_duration(delay);
                if crash_loop {
                    self.sys(&format!(
                        "crash loop: {reason}, {quick_exits} consecutive exits within {}s of start, restarting in {delay_text}",
                        QUICK_EXIT.as_secs()
                    ));
                } else {
                    self.sys(&format!("{reason}, restarting in {delay_text}"));
                }
                self.shared.status.send_modify(|s| {
                    s.state = if crash_loop {
                        InstanceState::CrashLoop
                    } else {
                        InstanceState::Backoff
                    };
                    s.pid = None;
                    s.last_exit = Some(last_exit.clone());
                });
                let mut stop_rx = self.stop_rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop_requested(&mut stop_rx) => {
                        self.finish(Some(last_exit)).await;
                        return;
                    }
                }
                if self.stop_requested() {
                    self.finish(Some(last_exit)).await;
                    return;
                }
                match self.spawn() {
                    Ok(next) => break next,
                    Err(err) => {
                        quick_exits += 1;
                        reason = format!("failed to start: {err}");
                        last_exit = ExitInfo {
                            code: None,
                            signal: None,
                            at: SystemTime::now(),
                        };
                    }
                }
            };
            self.shared.status.send_modify(|s| s.restarts += 1);
        }
    }

    /// SIGTERM to the group, the grace for the whole group to exit, then SIGKILL.
    async fn stop_running(&mut self, mut running: Running) -> Option<ExitInfo> {
        let pgid = running.pid;
        let grace = self.spec.stop_grace;
        self.shared
            .status
            .send_modify(|s| s.state = InstanceState::Stopping);
        self.sys("stopping (SIGTERM)");
        signal_group(pgid, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        let mut exit = tokio::time::timeout_at(deadline, running.child.wait())
            .await
            .ok()
            .map(|status| exit_info(status.ok()));
        // Descendants in the group got the SIGTERM too; give them the rest of the grace.
        while exit.is_some()
            && group_has_live_members(pgid)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if exit.is_none() || group_has_live_members(pgid) {
            signal_group(pgid, Signal::SIGKILL);
            self.sys(&format!(
                "killed after {} grace",
                humantime::format_duration(grace)
            ));
        }
        if exit.is_none() {
            exit = match tokio::time::timeout(KILL_WAIT, running.child.wait()).await {
                Ok(status) => Some(exit_info(status.ok())),
                Err(_) => {
                    self.sys(&format!("pid {pgid} did not exit after SIGKILL"));
                    None
                }
            };
        }
        signal_group(pgid, Signal::SIGKILL);
        exit
    }

    /// After the last process: sweep escaped descendants, flush output, remove the cgroup.
    async fn finish(mut self, exit: Option<ExitInfo>) {
        let marker = self.marker.clone();
        let leftovers = tokio::task::spawn_blocking(move || kill_marker(&marker))
            .await
            .unwrap_or_default();
        if !leftovers.is_empty() {
            self.sys(&format!(
                "killed {} leftover process(es) outside the process group: {leftovers:?}",
                leftovers.len()
            ));
        }
        for mut handle in std::mem::take(&mut self.captures) {
            if tokio::time::timeout(FLUSH_WAIT, &mut handle).await.is_err() {
                handle.abort();
            }
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.remove().await;
        }
        self.sys("stopped");
        self.shared.status.send_modify(|s| {
            s.state = InstanceState::Stopped;
            s.pid = None;
            if exit.is_some() {
                s.last_exit = exit;
            }
        });
        self.done.send_replace(true);
    }
}

/// Resolves once a stop was requested.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Decides how the memory limit is enforced and says so in the log.
fn memory_limit(spec: &InstanceSpec, log: &SharedLog) -> (Option<Cgroup>, Option<u64>) {
    let Some(limit) = spec.memory_limit else {
        return (None, None);
    };
    let why_not_cgroup = if Cgroup::available() {
        match Cgroup::create(&spec.instance_id, limit) {
            Ok(cgroup) => return (Some(cgroup), None),
            Err(err) => format!("cannot create cgroup: {err}"),
        }
    } else {
        "cgroup v2 is not available".to_string()
    };
    if rlimit_data_possible(limit) {
        write_shared(
            log,
            Stream::System,
            &format!("memory limit: {why_not_cgroup}, limiting the data segment to {limit} bytes (RLIMIT_DATA)"),
        );
        (None, Some(limit))
    } else {
        write_shared(
            log,
            Stream::System,
            &format!("warning: memory limit of {limit} bytes not enforced: {why_not_cgroup} and RLIMIT_DATA cannot be raised that far"),
        );
        (None, None)
    }
}

pub(crate) fn exit_info(status: Option<ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        at: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let ms: Vec<u128> = (0..10).map(|a| backoff_delay(a).as_millis()).collect();
        assert_eq!(
            ms,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(backoff_delay(40), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }
}
