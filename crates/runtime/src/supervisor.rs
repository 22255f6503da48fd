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
use tokio::task::JoinHandle;

use crate::cgroup::Cgroup;
use crate::error::RuntimeError;
use crate::instance::{new_instance, wait_stop, Control, Instance};
use crate::logread::Stream;
use crate::logs::{capture, write_shared, LogWriter, SharedLog};
use crate::process::{group_has_live_members, rlimit_data_possible, signal_group, Launch};
use crate::reap::kill_marker;
use crate::restart::RestartTracker;
use crate::spec::{ExitInfo, InstanceSpec, InstanceState, LogRotation};

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
        let stop_limit = spec.stop_grace + KILL_WAIT + FLUSH_WAIT + Duration::from_secs(20);
        let (instance, control) = new_instance(&spec.instance_id, stop_limit);
        let supervisor = Supervisor {
            spec,
            marker,
            log,
            cgroup,
            rlimit_data,
            control,
            captures: Vec::new(),
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
        supervisor.control.update(|s| {
            s.pid = Some(first.pid);
            s.started_at = Some(first.started_at);
        });
        tokio::spawn(supervisor.run(first));
        Ok(instance)
    }
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
    control: Control,
    /// Output capture tasks, also of processes already exited (a descendant may still hold
    /// the pipe).
    captures: Vec<JoinHandle<()>>,
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

    async fn run(mut self, first: Running) {
        let mut running = first;
        let mut restarts = RestartTracker::default();
        loop {
            self.capture_output(&mut running);
            self.control.update(|s| {
                s.state = InstanceState::Running;
                s.pid = Some(running.pid);
                s.started_at = Some(running.started_at);
            });
            let mut stop_rx = self.control.stop_rx();
            let status = tokio::select! {
                status = running.child.wait() => Some(status),
                _ = wait_stop(&mut stop_rx) => None,
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
                self.control.exited_for_good(&exit).await;
                self.finish(Some(exit)).await;
                return;
            }

            restarts.exited_after(ran);
            let mut last_exit = exit;
            let mut reason = last_exit.describe();
            // Wait, then start again; a failed start counts as a quick exit.
            running = loop {
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
                        self.finish(Some(last_exit)).await;
                        return;
                    }
                }
                if self.control.stop_requested() {
                    self.finish(Some(last_exit)).await;
                    return;
                }
                match self.spawn() {
                    Ok(next) => break next,
                    Err(err) => {
                        restarts.failed_start();
                        reason = format!("failed to start: {err}");
                        last_exit = ExitInfo {
                            code: None,
                            signal: None,
                            at: SystemTime::now(),
                        };
                    }
                }
            };
            self.control.update(|s| s.restarts += 1);
        }
    }

    /// SIGTERM to the group, the grace for the whole group to exit, then SIGKILL.
    async fn stop_running(&mut self, mut running: Running) -> Option<ExitInfo> {
        let pgid = running.pid;
        let grace = self.spec.stop_grace;
        self.control.update(|s| s.state = InstanceState::Stopping);
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
        self.control.update(|s| {
            s.state = InstanceState::Stopped;
            s.pid = None;
            if exit.is_some() {
                s.last_exit = exit;
            }
        });
        self.control.done();
    }
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
