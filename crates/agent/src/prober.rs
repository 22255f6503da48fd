//! The health prober subsystem: one probing task per instance that has a health check, owned
//! here (not by the instance), started and stopped through the [`Prober`] handle, all of them
//! stopped when the agent stops. Each task is the only writer of its instance's health and of
//! its backend's healthy flag (`health.rs` has the probing itself); a change of verdict is an
//! event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use dockhand_proxy::Backend;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::events::{EventKind, Events};
use crate::health::{self, Health, ProbePlan};
use crate::subsystem::{BoxFuture, Context, Subsystem};

/// One instance to probe.
pub struct ProbeTarget {
    pub instance: String,
    pub service: String,
    pub release: i64,
    pub addr: SocketAddr,
    pub plan: ProbePlan,
    pub health: Health,
    pub backend: Option<Arc<Backend>>,
}

/// The prober: a handle to start and stop probing instances, and the subsystem that stops
/// every probe when the agent stops. Cheap to clone.
#[derive(Clone)]
pub struct Prober {
    events: Events,
    tasks: Arc<Mutex<Tasks>>,
}

#[derive(Default)]
struct Tasks {
    by_instance: HashMap<String, JoinHandle<()>>,
    stopped: bool,
}

impl Prober {
    pub fn new(events: Events) -> Prober {
        Prober {
            events,
            tasks: Arc::default(),
        }
    }

    /// Starts probing an instance (replacing an earlier probe of the same id).
    pub fn watch(&self, t: ProbeTarget) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.stopped {
            return;
        }
        let events = self.events.clone();
        let (instance, service, release) = (t.instance.clone(), t.service, t.release);
        let task = tokio::spawn(health::run_prober(
            t.addr,
            t.plan,
            t.health,
            t.backend,
            move |healthy, last| {
                let (level, word) = if healthy {
                    (dockhand_state::EventLevel::Info, "healthy")
                } else {
                    (dockhand_state::EventLevel::Warn, "unhealthy")
                };
                events.record(
                    level,
                    EventKind::Health,
                    Some(release),
                    Some(&service),
                    &format!("{instance} is {word}: {}", last.detail),
                );
            },
        ));
        if let Some(old) = tasks.by_instance.insert(t.instance, task) {
            old.abort();
        }
    }

    /// Stops probing an instance (before it is stopped, so its exit is not reported as a
    /// health failure).
    pub fn unwatch(&self, instance: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.by_instance.remove(instance) {
            task.abort();
        }
    }

    fn stop_all(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.stopped = true;
        for (_, task) in tasks.by_instance.drain() {
            task.abort();
        }
    }
}

impl Subsystem for Prober {
    fn name(&self) -> &'static str {
        "health prober"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            ctx.ready();
            ctx.shutdown.wait().await;
            self.stop_all();
            Ok(())
        })
    }
}
