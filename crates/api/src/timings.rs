//! How long each step of a deploy (and of an update: the check, the fetch) took, so the time
//! from a push to the new release serving splits into fetch, build, gate and swap.

use serde::{Deserialize, Serialize};

/// What a timed step did. The plan's steps, plus what an update does before the deploy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum StepKind {
    /// An update's look at the remote (`git ls-remote`).
    #[serde(rename = "check")]
    Check,
    /// The backup an update takes before it deploys.
    #[serde(rename = "backup")]
    Backup,
    /// `git fetch` and the checkout of the revision (an update, `deploy --revision`).
    #[serde(rename = "fetch")]
    Fetch,
    /// A container service's image (built, pulled or found: `service` says whose), or, with
    /// no service, the release's code for its process services (copied with `pin_code`,
    /// else its revision read).
    #[serde(rename = "build")]
    Build,
    /// What an unclean stop left, marked (agent start).
    #[serde(rename = "recover")]
    Recover,
    /// A previous run's processes and containers removed (agent start).
    #[serde(rename = "reap")]
    Reap,
    #[serde(rename = "database")]
    Database,
    /// A static service's files copied and indexed.
    #[serde(rename = "static")]
    Static,
    #[serde(rename = "pre_deploy")]
    PreDeploy,
    #[serde(rename = "start")]
    Start,
    /// Waiting until the new instances pass their health checks.
    #[serde(rename = "gate")]
    Gate,
    #[serde(rename = "canary")]
    Canary,
    /// The release recorded as current.
    #[serde(rename = "commit")]
    Commit,
    /// The routing table switched to the new release (the drain starts next).
    #[serde(rename = "swap")]
    Swap,
    /// Waiting until no request holds the old release.
    #[serde(rename = "drain")]
    Drain,
    #[serde(rename = "stop")]
    Stop,
    #[serde(rename = "post_deploy")]
    PostDeploy,
    #[serde(rename = "prune")]
    Prune,
    /// A failed deploy's new instances stopped and removed.
    #[serde(rename = "abort")]
    Abort,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Check => "check",
            StepKind::Backup => "backup",
            StepKind::Fetch => "fetch",
            StepKind::Build => "build",
            StepKind::Recover => "recover",
            StepKind::Reap => "reap",
            StepKind::Database => "database",
            StepKind::Static => "static",
            StepKind::PreDeploy => "pre_deploy",
            StepKind::Start => "start",
            StepKind::Gate => "gate",
            StepKind::Canary => "canary",
            StepKind::Commit => "commit",
            StepKind::Swap => "swap",
            StepKind::Drain => "drain",
            StepKind::Stop => "stop",
            StepKind::PostDeploy => "post_deploy",
            StepKind::Prune => "prune",
            StepKind::Abort => "abort",
        }
    }
}

/// One step and how long it took. Steps never overlap: their sum is at most the whole
/// operation's `duration_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepTiming {
    pub step: StepKind,
    /// The service the step was for, when it was for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub duration_ms: u64,
}

/// The milliseconds `steps` of `kind` took together.
pub fn step_total_ms(steps: &[StepTiming], kind: StepKind) -> u64 {
    steps
        .iter()
        .filter(|s| s.step == kind)
        .map(|s| s.duration_ms)
        .sum()
}

/// One line for people: each kind of step once (in the order it first ran) with the time its
/// steps took together, e.g. `fetch 85 ms, build 4 ms, gate 1.2 s, swap 0 ms`.
pub fn steps_summary(steps: &[StepTiming]) -> String {
    let mut kinds: Vec<StepKind> = Vec::new();
    for s in steps {
        if !kinds.contains(&s.step) {
            kinds.push(s.step);
        }
    }
    kinds
        .iter()
        .map(|k| format!("{} {}", k.as_str(), human_ms(step_total_ms(steps, *k))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `850 ms`, `1.2 s`: milliseconds below a second (most steps of a process app take tens of
/// them), seconds with one decimal above.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_kinds_on_the_wire() {
        use StepKind::*;
        for kind in [
            Check, Backup, Fetch, Build, Recover, Reap, Database, Static, PreDeploy, Start, Gate,
            Canary, Commit, Swap, Drain, Stop, PostDeploy, Prune, Abort,
        ] {
            let json = format!("\"{}\"", kind.as_str());
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
            assert_eq!(serde_json::from_str::<StepKind>(&json).unwrap(), kind);
        }
    }

    fn t(step: StepKind, service: Option<&str>, ms: u64) -> StepTiming {
        StepTiming {
            step,
            service: service.map(str::to_string),
            duration_ms: ms,
        }
    }

    #[test]
    fn the_summary_adds_up_each_kind_in_the_order_it_first_ran() {
        let steps = [
            t(StepKind::Fetch, None, 85),
            t(StepKind::Build, Some("api"), 700),
            t(StepKind::Build, Some("web"), 600),
            t(StepKind::Gate, None, 40),
            t(StepKind::Start, Some("web"), 3),
            t(StepKind::Gate, None, 12),
            t(StepKind::Swap, None, 0),
        ];
        assert_eq!(
            steps_summary(&steps),
            "fetch 85 ms, build 1.3 s, gate 52 ms, start 3 ms, swap 0 ms"
        );
        assert_eq!(step_total_ms(&steps, StepKind::Build), 1300);
        assert_eq!(step_total_ms(&steps, StepKind::Drain), 0);
        assert_eq!(steps_summary(&[]), "");
    }

    #[test]
    fn a_step_without_a_service_leaves_the_field_out() {
        let json = serde_json::to_string(&t(StepKind::Gate, None, 7)).unwrap();
        assert_eq!(json, r#"{"step":"gate","duration_ms":7}"#);
    }
}
