//! The agent's long-running parts as subsystems with one lifecycle: started in order, each
//! told when to stop, each reporting its state, stopped in reverse order.
//!
//! A subsystem owns its state and talks to the others through narrow handles or the event
//! stream (`events.rs`), never through the whole agent. Its `run` is called again with a
//! back-off if it fails or panics before the agent asked it to stop: one failing part does not
//! take the daemon down, and `status` shows it as failed until it runs again.
//!
//! Today: the proxy, the health prober, the scheduler and the socket server. A new one (the
//! certificate manager, the backup scheduler, the monitor) implements [`Subsystem`] and is
//! started in `Agent::start` with the others.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};

/// A boxed future, the return type of [`Subsystem::run`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A long-running part of the agent.
pub trait Subsystem: Send + Sync + 'static {
    /// A short name, for `status`, events and logs.
    fn name(&self) -> &'static str;

    /// Runs until `ctx.shutdown` fires, then stops what it owns and returns. Calls
    /// `ctx.ready()` once it serves (the next subsystem starts then). An error before the
    /// shutdown is reported and `run` is called again after a back-off.
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<Result<()>>;

    /// How long stopping may take before the agent moves on without it (asked when it is
    /// being stopped).
    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// What a subsystem is doing, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubsystemState {
    Starting,
    Ready,
    /// Running, but something is wrong (said in the message).
    Degraded(String),
    Stopped,
    /// `run` failed; it is tried again after a back-off.
    Failed(String),
}

/// The stop signal every subsystem gets. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the agent asks its subsystems to stop.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// What a running subsystem is handed.
pub struct Context {
    pub shutdown: Shutdown,
    state: watch::Sender<SubsystemState>,
}

impl Context {
    /// The subsystem serves: the agent starts the next one.
    pub fn ready(&self) {
        self.state.send_replace(SubsystemState::Ready);
    }

    /// Running, but not well (a lost connection it keeps retrying, say).
    pub fn degraded(&self, why: impl Into<String>) {
        self.state
            .send_replace(SubsystemState::Degraded(why.into()));
    }
}

/// The running subsystems, in start order.
pub struct Subsystems {
    events: Events,
    running: Vec<Running>,
}

struct Running {
    subsystem: Arc<dyn Subsystem>,
    stop: watch::Sender<bool>,
    state: watch::Receiver<SubsystemState>,
    task: JoinHandle<()>,
}

/// How long a subsystem may take to say it is ready before the agent gives up starting.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Subsystems {
    pub fn new(events: Events) -> Subsystems {
        Subsystems {
            events,
            running: Vec::new(),
        }
    }

    /// Starts `subsystem` and waits until it is ready. Fails if it fails (or does not get
    /// ready) before then: a part the agent cannot start with is an error of the start.
    pub async fn start(&mut self, subsystem: Arc<dyn Subsystem>) -> Result<()> {
        let name = subsystem.name();
        let (stop, stop_rx) = watch::channel(false);
        let (state_tx, mut state) = watch::channel(SubsystemState::Starting);
        let task = tokio::spawn(supervise(
            subsystem.clone(),
            stop_rx,
            state_tx,
            self.events.clone(),
        ));
        let ready = tokio::time::timeout(
            READY_TIMEOUT,
            state.wait_for(|s| !matches!(s, SubsystemState::Starting)),
        )
        .await;
        let outcome = match ready.map(|r| r.map(|s| s.clone())) {
            Ok(Ok(SubsystemState::Failed(why))) => Err(AgentError::runtime(format!(
                "the {name} could not start: {why}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(AgentError::internal(format!(
                "the {name} ended while starting"
            ))),
            Err(_) => Err(AgentError::runtime(format!(
                "the {name} did not get ready within {}s",
                READY_TIMEOUT.as_secs()
            ))),
        };
        self.running.push(Running {
            subsystem,
            stop,
            state,
            task,
        });
        outcome
    }

    /// Each subsystem's name and state, in start order.
    pub fn states(&self) -> Vec<(&'static str, SubsystemState)> {
        self.running
            .iter()
            .map(|r| (r.subsystem.name(), r.state.borrow().clone()))
            .collect()
    }

    /// Stops the subsystems in reverse start order, each within its stop timeout.
    pub async fn stop_all(&mut self) {
        while let Some(mut r) = self.running.pop() {
            r.stop.send_replace(true);
            let limit = r.subsystem.stop_timeout();
            if tokio::time::timeout(limit, &mut r.task).await.is_err() {
                tracing::warn!(
                    subsystem = r.subsystem.name(),
                    "did not stop within {}s; moving on",
                    limit.as_secs()
                );
                r.task.abort();
            }
        }
    }
}

/// Runs a subsystem until it is told to stop, again after a back-off when it fails.
async fn supervise(
    subsystem: Arc<dyn Subsystem>,
    stop: watch::Receiver<bool>,
    state: watch::Sender<SubsystemState>,
    events: Events,
) {
    let name = subsystem.name();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ctx = Context {
            shutdown: Shutdown(stop.clone()),
            state: state.clone(),
        };
        let ran = AssertUnwindSafe(subsystem.clone().run(ctx))
            .catch_unwind()
            .await;
        if *stop.borrow() {
            state.send_replace(SubsystemState::Stopped);
            return;
        }
        let why = match ran {
            Ok(Ok(())) => "it stopped by itself".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!(
                "it panicked ({}); this is a bug in dockhand, please report it",
                panic_message(&panic)
            ),
        };
        events.error(
            EventKind::Agent,
            None,
            None,
            &format!(
                "the {name} failed: {why}; restarting it in {}",
                crate::health::humanize(backoff)
            ),
        );
        state.send_replace(SubsystemState::Failed(why));
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => {
                state.send_replace(SubsystemState::Stopped);
                return;
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        state.send_replace(SubsystemState::Starting);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use dockhand_state::Store;

    use super::*;
    use crate::secrets::Redactor;

    /// Records its starts and stops; fails or panics on the runs it is told to.
    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        runs: AtomicUsize,
        fail_runs: usize,
        panic: bool,
    }

    impl Subsystem for Probe {
        fn name(&self) -> &'static str {
            self.name
        }

        fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
            Box::pin(async move {
                let run = self.runs.fetch_add(1, Ordering::SeqCst);
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("start {}", self.name));
                if run < self.fail_runs {
                    if self.panic {
                        panic!("boom");
                    }
                    return Err(AgentError::runtime("lost the thing"));
                }
                ctx.ready();
                ctx.shutdown.wait().await;
                self.log.lock().unwrap().push(format!("stop {}", self.name));
                Ok(())
            })
        }
    }

    fn probe(
        name: &'static str,
        log: &Arc<Mutex<Vec<String>>>,
        fail_runs: usize,
        panic: bool,
    ) -> Arc<Probe> {
        Arc::new(Probe {
            name,
            log: log.clone(),
            runs: AtomicUsize::new(0),
            fail_runs,
            panic,
        })
    }

    fn events() -> (Arc<Store>, Events) {
        let store = Arc::new(Store::open_in_memory().unwrap());
        (store.clone(), Events::new(store, Redactor::default()))
    }

    #[tokio::test]
    async fn subsystems_start_in_order_and_stop_in_reverse() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_, events) = events();
        let mut all = Subsystems::new(events);
        for name in ["proxy", "prober", "server"] {
            all.start(probe(name, &log, 0, false)).await.unwrap();
        }
        assert!(all
            .states()
            .iter()
            .all(|(_, s)| *s == SubsystemState::Ready));
        all.stop_all().await;
        assert_eq!(
            *log.lock().unwrap(),
            [
                "start proxy",
                "start prober",
                "start server",
                "stop server",
                "stop prober",
                "stop proxy"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_panicking_subsystem_is_reported_and_run_again() {
        for panic in [false, true] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let (store, events) = events();
            let mut all = Subsystems::new(events);
            let flaky = probe("scheduler", &log, 2, panic);
            // Failing before it is ready fails the start…
            assert!(all.start(flaky.clone()).await.is_err());
            // …but it is retried with a back-off, and serves once a run succeeds.
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(all.states(), [("scheduler", SubsystemState::Ready)]);
            assert_eq!(flaky.runs.load(Ordering::SeqCst), 3);
            let failures = store.events(10).unwrap();
            assert_eq!(failures.len(), 2, "{failures:?}");
            let expected = if panic {
                "panicked (boom)"
            } else {
                "lost the thing"
            };
            assert!(failures[0].message.contains(expected), "{failures:?}");
            all.stop_all().await;
            assert_eq!(all.states(), []);
        }
    }
}
