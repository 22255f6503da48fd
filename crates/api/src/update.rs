//! The wire types of `dockhand update …`.

use serde::{Deserialize, Serialize};

/// What `dockhand update …` asks the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UpdateRequest {
    Status,
    /// Stop following the branch until `resume` (kept across agent restarts).
    Pause {
        requested_by: String,
    },
    Resume {
        requested_by: String,
    },
    /// Check the remote now (and deploy a new commit), waiting for the outcome.
    Now {
        requested_by: String,
    },
}

/// What one check of the remote found or did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum CheckResult {
    /// The branch's head is what serves.
    #[serde(rename = "unchanged")]
    Unchanged,
    /// The head failed before and no newer commit arrived.
    #[serde(rename = "known_bad")]
    KnownBad,
    /// A new commit was deployed.
    #[serde(rename = "deployed")]
    Deployed,
    /// A new commit failed (its deploy, its configuration or the backup before it) and the
    /// serving release stayed.
    #[serde(rename = "failed")]
    Failed,
    /// Updates are paused.
    #[serde(rename = "paused")]
    Paused,
    /// The remote could not be read.
    #[serde(rename = "error")]
    Error,
    /// A new commit waits for the maintenance window (`[update] window`).
    #[serde(rename = "outside_window")]
    OutsideWindow,
    /// A new commit waits for the deploy in progress to finish (tried again at the next check).
    #[serde(rename = "deferred")]
    Deferred,
}

impl CheckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Unchanged => "unchanged",
            CheckResult::KnownBad => "known_bad",
            CheckResult::Deployed => "deployed",
            CheckResult::Failed => "failed",
            CheckResult::Paused => "paused",
            CheckResult::Error => "error",
            CheckResult::OutsideWindow => "outside_window",
            CheckResult::Deferred => "deferred",
        }
    }
}

/// One check: when, what the remote's head was, and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpdateCheck {
    pub at: String,
    pub result: CheckResult,
    pub remote_head: Option<String>,
    pub release: Option<i64>,
    pub message: String,
    /// How long the check took, from asking the remote to the end of the deploy (0 for a
    /// check that did not ask the remote: paused, an error, or the image tags only).
    #[serde(default)]
    pub duration_ms: u64,
    /// What the check did, in order, with how long each step took: `check` (`git
    /// ls-remote`), and when it deployed `backup`, `fetch` (fetch and checkout), then the
    /// deploy's steps (`build`, `gate`, `swap`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<crate::StepTiming>,
}

/// A commit that failed and is not tried again until a newer one arrives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedRevision {
    pub commit: String,
    pub at: String,
    pub message: String,
}

/// The answer to `dockhand update status` (and to pause, resume and now).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpdateStatus {
    /// Whether the serving release has an `[update]` table.
    pub configured: bool,
    pub repo: Option<String>,
    pub branch: Option<String>,
    /// Seconds between polls.
    pub poll_secs: Option<u64>,
    pub schedule: Option<String>,
    /// `[update] window`, as written (automatic updates deploy only inside it).
    #[serde(default)]
    pub window: Option<String>,
    /// The path the push webhook is served at.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Whether the tags of `image` services are watched.
    #[serde(default)]
    pub images: bool,
    pub paused: bool,
    /// The commit the serving release was made from.
    pub current_revision: Option<String>,
    pub last_check: Option<UpdateCheck>,
    pub next_check: Option<String>,
    pub failed: Vec<FailedRevision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_a_fixed_word() {
        for r in [
            CheckResult::Unchanged,
            CheckResult::KnownBad,
            CheckResult::Deployed,
            CheckResult::Failed,
            CheckResult::Paused,
            CheckResult::Error,
            CheckResult::OutsideWindow,
            CheckResult::Deferred,
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<CheckResult>(&json).unwrap(), r);
        }
    }
}
