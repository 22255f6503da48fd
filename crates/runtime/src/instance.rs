//! The driver-independent handle of a supervised instance: [`Instance`] is what the agent
//! holds, whichever driver (process or container) runs the instance. A driver's supervisor
//! task owns the other end ([`Control`]): it publishes status, learns that a stop was
//! requested, and says when it is done.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::spec::{InstanceState, InstanceStatus};

/// A supervised instance. Cheap to clone; dropping it does not stop what it runs.
#[derive(Clone)]
pub struct Instance {
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    status: watch::Sender<InstanceStatus>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    /// How long [`Instance::stop`] waits for the supervisor before giving up.
    stop_limit: Duration,
}

/// The supervisor's end of an [`Instance`].
pub(crate) struct Control {
    shared: Arc<Shared>,
    stop_rx: watch::Receiver<bool>,
    done: watch::Sender<bool>,
}

/// A new instance in state `Running` with no pid yet, and its supervisor's end.
pub(crate) fn new_instance(id: &str, stop_limit: Duration) -> (Instance, Control) {
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
        id: id.to_string(),
        status: status_tx,
        stop: stop_tx,
        done: done_rx,
        stop_limit,
    });
    let control = Control {
        shared: shared.clone(),
        stop_rx,
        done: done_tx,
    };
    (Instance { shared }, control)
}

impl Instance {
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The pid of the running process: for a process instance also its process group id, for
    /// a container the host pid of its main process (`State.Pid`).
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

    /// Stops the instance for good: no more restarts; a process gets SIGTERM to its group and
    /// SIGKILL after its grace, a container `docker stop` with its grace and is then removed.
    /// Returns once it is gone and its output is in the log. Idempotent; never waits longer
    /// than the grace plus a bounded margin.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let mut done = self.shared.done.clone();
        if tokio::time::timeout(self.shared.stop_limit, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!(instance = %self.shared.id, "instance did not stop in time");
        }
    }
}

impl Control {
    pub(crate) fn id(&self) -> &str {
        &self.shared.id
    }

    /// Changes the published status.
    pub(crate) fn update(&self, f: impl FnOnce(&mut InstanceStatus)) {
        self.shared.status.send_modify(f);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        *self.stop_rx.borrow()
    }

    /// A receiver for [`wait_stop`].
    pub(crate) fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Publishes that the instance exited and its policy says no restart, then waits until a
    /// stop is requested (the instance stays `Exited` until then).
    pub(crate) async fn exited_for_good(&self, exit: &crate::spec::ExitInfo) {
        self.update(|s| {
            s.state = InstanceState::Exited;
            s.pid = None;
            s.last_exit = Some(exit.clone());
        });
        wait_stop(&mut self.stop_rx()).await;
    }

    /// Marks the instance done: [`Instance::stop`] returns.
    pub(crate) fn done(&self) {
        self.done.send_replace(true);
    }
}

/// Resolves once a stop was requested.
pub(crate) async fn wait_stop(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
