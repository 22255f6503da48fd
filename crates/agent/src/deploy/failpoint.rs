//! A crash at an exact point between two steps of a deploy, for the crash tests: with
//! `DOCKHAND_CRASH_AFTER=<step>@<release>` in its environment, a debug build of the agent
//! kills itself with SIGKILL right after the first step labelled `<step>` of the plan for
//! release `<release>` (labels: `Step::label`). Release builds never read the variable.

use crate::deploy::plan::{Plan, Step};

/// The environment variable (debug builds only).
pub const ENV: &str = "DOCKHAND_CRASH_AFTER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    step: String,
    release: i64,
}

impl Failpoint {
    /// The failpoint of this process's environment, in a debug build.
    pub fn from_env() -> Option<Failpoint> {
        if !cfg!(debug_assertions) {
            return None;
        }
        Failpoint::parse(&std::env::var(ENV).ok()?)
    }

    fn parse(value: &str) -> Option<Failpoint> {
        let (step, release) = value.split_once('@')?;
        Some(Failpoint {
            step: step.to_string(),
            release: release.parse().ok()?,
        })
    }

    /// Kills the process if `step` of `plan` is the failpoint.
    pub fn after(&self, plan: &Plan, step: &Step) {
        if plan.release == self.release && step.label() == self.step {
            tracing::warn!(
                "{ENV}: killing the agent after step `{}` of release {}",
                self.step,
                self.release
            );
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A named crash point outside the deploy executor (certificate renewal, update): with
/// `DOCKHAND_CRASH_AFTER=<point>@<scope>` a debug build kills itself with SIGKILL when it
/// reaches `point` of `scope` (`certs`, `update`). Release builds never read the variable.
pub(crate) fn crash_point(scope: &str, point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(want) = std::env::var(ENV) else {
        return;
    };
    if want.split_once('@') == Some((point, scope)) {
        tracing::warn!("{ENV}: killing the agent at {scope} crash point `{point}`");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_step_at_release() {
        assert_eq!(
            super::Failpoint::parse("commit@2"),
            Some(super::Failpoint {
                step: "commit".into(),
                release: 2
            })
        );
        assert_eq!(super::Failpoint::parse("commit"), None);
        assert_eq!(super::Failpoint::parse("commit@x"), None);
    }
}
