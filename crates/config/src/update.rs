//! `[update]`: GitOps. The agent watches a git remote's branch (by polling it, on an interval
//! or a cron schedule) and deploys each new commit through the normal health gate, after a
//! backup when `[backups]` exists; a commit that fails is rolled back and not tried again
//! until a newer one arrives.

use std::time::Duration;

use toml_edit::TableLike;

use crate::model::UpdateConfig;
use crate::parse::{key_span, value_span, Parser};

const UPDATE_KEYS: &[&str] = &["git", "poll", "schedule", "backup"];
const GIT_KEYS: &[&str] = &["repo", "branch"];

/// How often the remote is polled by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);

impl Parser<'_> {
    pub(crate) fn update(
        &mut self,
        table: &dyn TableLike,
        span: std::ops::Range<usize>,
        has_backups: bool,
    ) -> Option<UpdateConfig> {
        let fields = self.fields(table, "update", UPDATE_KEYS, "in [update]");
        let mut repo = None;
        let mut branch = "main".to_string();
        match fields.get("git") {
            Some(f) => {
                let t = self.table(f)?;
                let git = self.fields(t, "update.git", GIT_KEYS, "in [update] git");
                if let Some(f) = git.get("repo") {
                    let r = self.string(f)?;
                    if r.trim().is_empty() {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            "the git repository is empty".into(),
                            Some("write its URL or path, or leave `repo` out to use the project's `origin`".into()),
                        );
                        return None;
                    }
                    repo = Some(r);
                }
                if let Some(f) = git.get("branch") {
                    let b = self.string(f)?;
                    if b.is_empty()
                        || b.starts_with('-')
                        || b.contains([' ', '~', '^', ':', '?', '*', '[', '\\'])
                        || b.contains("..")
                    {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("`{b}` is not a valid branch name"),
                            Some("write the branch to follow, e.g. branch = \"main\"".into()),
                        );
                        return None;
                    }
                    branch = b;
                }
            }
            None => {
                self.error(
                    span,
                    Some("update.git"),
                    "[update] needs `git`: the repository and branch to follow".into(),
                    Some("add git = { branch = \"main\" } (the project's `origin`), or git = { repo = \"https://…\", branch = \"main\" }".into()),
                );
                return None;
            }
        }
        let poll = fields.get("poll").and_then(|f| {
            let d = self.duration(f, false)?;
            if d < Duration::from_secs(1) {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "`poll` must be at least 1s".into(),
                    Some("a poll costs one `git ls-remote`; \"1m\" is a good interval".into()),
                );
                return None;
            }
            Some(d)
        });
        let schedule = fields.get("schedule").and_then(|f| self.cron(f));
        if let (Some(_), Some(_), Some(f)) = (&poll, &schedule, fields.get("schedule")) {
            self.error(
                key_span(f),
                Some(&f.path),
                "set either `poll` or `schedule` in [update], not both".into(),
                Some("`poll` checks on an interval; `schedule` at cron times".into()),
            );
            return None;
        }
        let backup = match fields.get("backup") {
            Some(f) => {
                let b = self.boolean(f)?;
                if b && !has_backups {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        "`backup = true` needs a [backups] table".into(),
                        Some(
                            "add [backups] (see the configuration reference), or remove `backup`"
                                .into(),
                        ),
                    );
                    return None;
                }
                b
            }
            None => has_backups,
        };
        Some(UpdateConfig {
            repo,
            branch,
            poll: if schedule.is_some() {
                None
            } else {
                Some(poll.unwrap_or(DEFAULT_POLL))
            },
            schedule,
            backup,
        })
    }
}
