//! The event stream: every notable thing the agent does or sees (a deploy, a health change, a
//! restart, a recovery) is recorded in the state database, logged, and published to whoever
//! subscribed — `dockhand events --follow` today, the monitor and alerter later.
//!
//! Recording redacts secret values first, so no event (stored, logged or published) carries
//! one. Subsystems react to each other through this stream rather than by calling into one
//! another.

use std::sync::Arc;

use dockhand_state::{Event, EventLevel, Store};
use tokio::sync::broadcast;

use crate::secrets::Redactor;

/// How many events a slow subscriber may fall behind before it misses some.
const BACKLOG: usize = 256;

/// What an event is about. Stored as its `as_str()` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The agent started or stopped.
    Agent,
    /// A deploy (or reload) started, finished or failed.
    Deploy,
    /// A rollback started, finished or failed.
    Rollback,
    /// The committed release was started again when the agent started.
    Restore,
    /// What an unclean stop left behind was cleaned up.
    Recovery,
    /// An instance became healthy or unhealthy.
    Health,
    /// An instance exited and was restarted.
    Restart,
    /// An instance keeps exiting right after it starts.
    CrashLoop,
    /// A database container was created, changed or upgraded.
    Database,
    /// The proxy could not serve something (a certificate that does not load).
    Proxy,
    /// A scheduled job ran late, failed, or was missed while the agent was down.
    Schedule,
    /// A certificate was issued or renewed, failed to be, or nears its end (14, 7, 3 days).
    Certificate,
    /// A backup, restore drill, restore or prune ran or failed.
    Backup,
    /// A task ran, failed, was skipped or interrupted.
    Task,
    /// The update watcher saw, deployed or refused a new commit, or could not read the remote.
    Update,
    /// Maintenance mode was turned on or off.
    Maintenance,
    /// The monitor could not serve or store its metrics.
    Monitor,
    /// An alert fired or recovered, or a notification could not be sent.
    Alert,
    /// A dashboard login link was made.
    Dashboard,
    /// A node of the cluster went down or came back, or the swarm's manager did not answer.
    Cluster,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Agent => "agent",
            EventKind::Deploy => "deploy",
            EventKind::Rollback => "rollback",
            EventKind::Restore => "restore",
            EventKind::Recovery => "recovery",
            EventKind::Health => "health",
            EventKind::Restart => "restart",
            EventKind::CrashLoop => "crash-loop",
            EventKind::Database => "database",
            EventKind::Proxy => "proxy",
            EventKind::Schedule => "schedule",
            EventKind::Certificate => "certificate",
            EventKind::Backup => "backup",
            EventKind::Task => "task",
            EventKind::Update => "update",
            EventKind::Maintenance => "maintenance",
            EventKind::Monitor => "monitor",
            EventKind::Alert => "alert",
            EventKind::Dashboard => "dashboard",
            EventKind::Cluster => "cluster",
        }
    }
}

/// The handle through which every part of the agent records events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    store: Arc<Store>,
    redactor: Redactor,
    tx: broadcast::Sender<Event>,
}

impl Events {
    pub fn new(store: Arc<Store>, redactor: Redactor) -> Events {
        Events {
            store,
            redactor,
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    /// Records an event (redacted), logs it and publishes it. A failure to store it is logged:
    /// the operation that reports it goes on.
    pub fn record(
        &self,
        level: EventLevel,
        kind: EventKind,
        release: Option<i64>,
        service: Option<&str>,
        message: &str,
    ) {
        let message = self.redactor.redact(message);
        let kind = kind.as_str();
        match level {
            EventLevel::Error => tracing::error!(kind, release, service, "{message}"),
            EventLevel::Warn => tracing::warn!(kind, release, service, "{message}"),
            EventLevel::Info => tracing::info!(kind, release, service, "{message}"),
        }
        match self
            .store
            .record_event(level, kind, release, service, &message)
        {
            // No subscriber is fine: nobody is listening.
            Ok(event) => drop(self.tx.send(event)),
            Err(e) => tracing::error!("failed to record an event: {e}"),
        }
    }

    pub fn info(&self, kind: EventKind, release: Option<i64>, service: Option<&str>, msg: &str) {
        self.record(EventLevel::Info, kind, release, service, msg);
    }

    pub fn warn(&self, kind: EventKind, release: Option<i64>, service: Option<&str>, msg: &str) {
        self.record(EventLevel::Warn, kind, release, service, msg);
    }

    pub fn error(&self, kind: EventKind, release: Option<i64>, service: Option<&str>, msg: &str) {
        self.record(EventLevel::Error, kind, release, service, msg);
    }

    /// Every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The redactor the events go through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_is_stored_and_published_once() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let events = Events::new(store.clone(), Redactor::default());
        let mut rx = events.subscribe();
        events.warn(
            EventKind::Restart,
            Some(2),
            Some("web"),
            "d1r2-web-0 exited",
        );
        let got = rx.recv().await.unwrap();
        assert_eq!(got.kind, "restart");
        assert_eq!(got.level, EventLevel::Warn);
        assert_eq!(store.events(10).unwrap(), vec![got]);
    }
}
