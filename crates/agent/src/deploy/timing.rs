//! How long each step of a deploy took (and, for an update, the check and the fetch before
//! it): measured by the executor around each plan step, reported with the outcome, turned into
//! the wire's `StepTiming`s in `wire.rs`.

use std::time::{Duration, Instant};

use super::plan::{HookPhase, Step};

/// What a timed step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// An update's `git ls-remote`.
    Check,
    /// The backup an update takes first.
    Backup,
    /// `git fetch` and the checkout of the revision.
    Fetch,
    /// A container service's image, or (no service) the release's code for process services.
    Build,
    Recover,
    Reap,
    Database,
    Static,
    PreDeploy,
    Start,
    Gate,
    Canary,
    Commit,
    Swap,
    Drain,
    Stop,
    PostDeploy,
    Prune,
    /// A failed deploy's clean-up.
    Abort,
}

impl Timed {
    /// The kind of a plan step.
    pub fn of(step: &Step) -> Timed {
        match step {
            Step::Recover { .. } => Timed::Recover,
            Step::Reap { .. } => Timed::Reap,
            Step::Database { .. } => Timed::Database,
            Step::Image { .. } => Timed::Build,
            Step::Static { .. } => Timed::Static,
            Step::Hook {
                phase: HookPhase::PreDeploy,
                ..
            } => Timed::PreDeploy,
            Step::Hook {
                phase: HookPhase::PostDeploy,
                ..
            } => Timed::PostDeploy,
            Step::Start { .. } => Timed::Start,
            Step::Gate { .. } => Timed::Gate,
            Step::Canary { .. } => Timed::Canary,
            Step::Commit => Timed::Commit,
            Step::Swap => Timed::Swap,
            Step::Drain { .. } => Timed::Drain,
            Step::Stop { .. } => Timed::Stop,
            Step::Prune => Timed::Prune,
        }
    }
}

/// One step and how long it took.
#[derive(Debug, Clone)]
pub struct Timing {
    pub step: Timed,
    pub service: Option<String>,
    pub duration: Duration,
}

impl Timing {
    /// `step` (of `service`), begun at `since`, ends now.
    pub fn since(step: Timed, service: Option<&str>, since: Instant) -> Timing {
        Timing {
            step,
            service: service.map(str::to_string),
            duration: since.elapsed(),
        }
    }

    /// A plan step's timing.
    pub fn of_step(step: &Step, since: Instant) -> Timing {
        let service = match step {
            Step::Database { name, .. } => Some(name.as_str()),
            Step::Image { service, .. }
            | Step::Static { service, .. }
            | Step::Hook { service, .. }
            | Step::Start { service, .. } => Some(service.as_str()),
            _ => None,
        };
        Timing::since(Timed::of(step), service, since)
    }
}
