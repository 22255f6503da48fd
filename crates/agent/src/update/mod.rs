//! The update watcher (`[update]`, GitOps): a subsystem that polls the configured branch of a
//! git remote (on an interval or a cron schedule) and deploys each new commit. A poll is one
//! `git ls-remote` compared with the serving release's revision: an unchanged remote costs
//! no fetch and no write. A new commit is backed up for (when `[backups]` exist), fetched,
//! checked out in the project (`git reset --keep`, which never loses a local change), and
//! deployed through the normal health gate; if its configuration does not load or its
//! release fails, the checkout goes back to what serves (the old release never stopped
//! serving), the commit is recorded as failed and is not tried again until a newer one
//! arrives. Each outcome is an event. `dockhand update pause|resume|now|status` drive it;
//! `dockhand deploy --revision REF` checks a revision out and deploys it by hand.

pub mod git;
mod images;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use dockhand_api::{CheckResult, FailedRevision, UpdateCheck, UpdateStatus};
use dockhand_config::{AppConfig, UpdateConfig};
use dockhand_state::{RevisionStatus, Store};

use crate::backups::Backups;
use crate::deploy::failpoint::crash_point;
use crate::deploy::timing::{Timed, Timing};
use crate::deploy::{DeployKind, DeployOutcome, Deployer};
use crate::error::{AgentError, Result};
use crate::events::EventKind;
use crate::lock::DeployLock;
use crate::scheduler::Schedule;
use crate::subsystem::{BoxFuture, Context, Subsystem};

const PAUSED: &str = "update.paused";

/// The watcher and its handle (cheap to clone).
#[derive(Clone)]
pub struct Updater {
    inner: Arc<Inner>,
}

struct Inner {
    deployer: Deployer,
    lock: DeployLock,
    backups: Backups,
    config_path: PathBuf,
    /// One check at a time.
    busy: tokio::sync::Mutex<()>,
    last: Mutex<Option<UpdateCheck>>,
    next: Mutex<Option<chrono::DateTime<Utc>>>,
    wake: tokio::sync::Notify,
    /// The webhook's loopback listener, until the subsystem runs.
    hook_listener: Mutex<Option<std::net::TcpListener>>,
    deliveries: Mutex<webhook::Deliveries>,
    /// A `[cluster]` app's agent (its configuration file): it deploys nothing, so neither
    /// `update now` nor a webhook delivery may.
    watch_only: Option<PathBuf>,
}

impl Updater {
    pub fn new(
        deployer: &Deployer,
        lock: &DeployLock,
        backups: &Backups,
        config_path: &Path,
    ) -> Updater {
        Updater {
            inner: Arc::new(Inner {
                deployer: deployer.clone(),
                lock: lock.clone(),
                backups: backups.clone(),
                config_path: config_path.to_path_buf(),
                busy: tokio::sync::Mutex::new(()),
                last: Mutex::default(),
                next: Mutex::default(),
                wake: tokio::sync::Notify::new(),
                hook_listener: Mutex::default(),
                deliveries: Mutex::default(),
                watch_only: None,
            }),
        }
    }

    /// The updater of a watch-only agent (`Some(config file)`): it refuses every check.
    /// Called before the updater is shared.
    pub fn watch_only(mut self, config_path: Option<PathBuf>) -> Updater {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.watch_only = config_path;
        }
        self
    }

    /// Why this updater deploys nothing (a watch-only agent's), if it does not.
    fn refusal(&self) -> Option<AgentError> {
        self.inner
            .watch_only
            .as_deref()
            .map(|path| crate::agent::watch_only_refusal("update", path))
    }

    /// Hands the updater the webhook's listener (`webhook::bind`), served while it runs.
    pub fn with_webhook(self, listener: std::net::TcpListener) -> Updater {
        *self
            .inner
            .hook_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(listener);
        self
    }

    fn store(&self) -> &Store {
        &self.inner.deployer.store
    }

    fn serving(&self) -> Option<Arc<AppConfig>> {
        self.inner.deployer.fleet.serving_config()
    }

    pub fn paused(&self) -> bool {
        self.store().setting(PAUSED).ok().flatten().as_deref() == Some("true")
    }

    pub fn set_paused(&self, paused: bool, requested_by: &str) -> Result<UpdateStatus> {
        self.store()
            .set_setting(PAUSED, if paused { "true" } else { "false" })?;
        self.inner.deployer.events.info(
            EventKind::Update,
            None,
            None,
            &format!(
                "updates {} by {requested_by}",
                if paused { "paused" } else { "resumed" }
            ),
        );
        self.inner.wake.notify_one();
        self.status()
    }

    /// `dockhand update status`.
    pub fn status(&self) -> Result<UpdateStatus> {
        let config = self.serving();
        let update = config.as_ref().and_then(|c| c.update.clone());
        let current = self
            .store()
            .current_release()?
            .map(|r| r.revision)
            .filter(|r| !r.is_empty());
        let failed = self
            .store()
            .failed_revisions(10)?
            .into_iter()
            .map(|r| FailedRevision {
                commit: r.commit,
                at: r.at,
                message: r.message,
            })
            .collect();
        Ok(UpdateStatus {
            configured: update.is_some(),
            repo: update
                .as_ref()
                .map(|u| u.repo.clone().unwrap_or_else(|| "origin".into())),
            branch: update.as_ref().map(|u| u.branch.clone()),
            poll_secs: update.as_ref().and_then(|u| u.poll).map(|d| d.as_secs()),
            schedule: update.as_ref().and_then(|u| u.schedule.clone()),
            window: update
                .as_ref()
                .and_then(|u| u.window.as_ref())
                .map(|w| w.spec().to_string()),
            webhook: update
                .as_ref()
                .and_then(|u| u.webhook.as_ref())
                .map(|w| w.path.clone()),
            images: update.as_ref().is_some_and(|u| u.images),
            paused: self.paused(),
            current_revision: current,
            last_check: self
                .inner
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            next_check: (update.is_some() && !self.paused())
                .then(|| *self.inner.next.lock().unwrap_or_else(|p| p.into_inner()))
                .flatten()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            failed,
        })
    }

    /// Checks the remote now and deploys a new commit (`dockhand update now`, and each poll).
    /// `explicit`: asked for (`update now`), which works while paused.
    pub async fn check(&self, requested_by: &str, explicit: bool) -> Result<UpdateCheck> {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let _busy = self.inner.busy.lock().await;
        let outcome = self.check_locked(requested_by, explicit).await;
        let check = match outcome {
            Ok(c) => c,
            // A deploy took the lock between the look and the acquire.
            Err(e) if e.kind() == crate::error::ErrorKind::Conflict => UpdateCheck {
                at: dockhand_state::now(),
                result: CheckResult::Deferred,
                remote_head: None,
                release: None,
                message: format!("{}; the update waits for the next check", e.message()),
                duration_ms: 0,
                steps: Vec::new(),
            },
            Err(e) => UpdateCheck {
                at: dockhand_state::now(),
                result: CheckResult::Error,
                remote_head: None,
                release: None,
                message: e.message().to_string(),
                duration_ms: 0,
                steps: Vec::new(),
            },
        };
        let mut last = self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
        // A remote that cannot be read is an event once, not at every poll.
        if check.result == CheckResult::Error
            && last.as_ref().map(|l| (&l.result, &l.message))
                != Some((&check.result, &check.message))
        {
            self.inner.deployer.events.warn(
                EventKind::Update,
                None,
                None,
                &format!("checking for updates failed: {}", check.message),
            );
        }
        // A commit that starts waiting is an event once, not at every poll.
        if matches!(
            check.result,
            CheckResult::OutsideWindow | CheckResult::Deferred
        ) && last.as_ref().map(|l| (&l.result, &l.remote_head))
            != Some((&check.result, &check.remote_head))
        {
            self.inner
                .deployer
                .events
                .info(EventKind::Update, None, None, &check.message);
        }
        *last = Some(check.clone());
        Ok(check)
    }

    async fn check_locked(&self, requested_by: &str, explicit: bool) -> Result<UpdateCheck> {
        let done = |result, head: Option<&str>, release, message: String| UpdateCheck {
            at: dockhand_state::now(),
            result,
            remote_head: head.map(str::to_string),
            release,
            message,
            duration_ms: 0,
            steps: Vec::new(),
        };
        let config = self.serving().ok_or_else(|| {
            AgentError::not_found("nothing is deployed yet; run `dockhand deploy` first")
        })?;
        let update = config
            .update
            .clone()
            .ok_or_else(|| AgentError::not_found("the serving release has no [update] table"))?;
        if self.paused() && !explicit {
            return Ok(done(
                CheckResult::Paused,
                None,
                None,
                "updates are paused".into(),
            ));
        }
        if !update.follow_git {
            return self
                .check_images(&config, &update, requested_by, explicit)
                .await;
        }
        let project = config.project_dir.clone();
        let remote = update.repo.clone().unwrap_or_else(|| "origin".into());
        let began = Instant::now();
        let head = git::remote_head(&project, &remote, &update.branch).await?;
        let looked = Timing::since(Timed::Check, None, began);
        let timed = |mut check: UpdateCheck, steps: &[Timing]| {
            check.duration_ms = began.elapsed().as_millis() as u64;
            check.steps = crate::wire::step_timings(steps);
            check
        };
        let current = self.store().current_release()?;
        let serving_commit = current
            .as_ref()
            .and_then(|r| git::revision_commit(&r.revision).map(str::to_string));
        if serving_commit.as_deref() == Some(head.as_str()) {
            if update.images {
                return self
                    .check_images(&config, &update, requested_by, explicit)
                    .await;
            }
            return Ok(timed(
                done(
                    CheckResult::Unchanged,
                    Some(&head),
                    current.map(|r| r.id),
                    format!("{} is what serves", short(&head)),
                ),
                &[looked],
            ));
        }
        if let Some(seen) = self.store().revision(&head)? {
            if seen.status == RevisionStatus::Failed {
                return Ok(timed(
                    done(
                        CheckResult::KnownBad,
                        Some(&head),
                        None,
                        format!(
                            "{} failed before ({}); waiting for a newer commit",
                            short(&head),
                            seen.message
                        ),
                    ),
                    std::slice::from_ref(&looked),
                ));
            }
        }
        if let Some((result, message)) =
            self.held_back(&update, &format!("new commit {}", short(&head)), explicit)
        {
            return Ok(timed(
                done(result, Some(&head), None, message),
                std::slice::from_ref(&looked),
            ));
        }
        let mut steps = vec![looked];
        let (release, message) = self
            .deploy_commit(&config, &update, &remote, &head, requested_by, &mut steps)
            .await?;
        Ok(timed(
            match release {
                Ok(id) => done(CheckResult::Deployed, Some(&head), Some(id), message),
                Err(id) => done(CheckResult::Failed, Some(&head), id, message),
            },
            &steps,
        ))
    }

    /// Backs up, fetches, checks out and deploys `commit`; `Ok(release)` when it serves,
    /// `Err(release)` when it failed (and the checkout went back). Each step's time is added
    /// to `steps`.
    async fn deploy_commit(
        &self,
        config: &AppConfig,
        update: &UpdateConfig,
        remote: &str,
        commit: &str,
        requested_by: &str,
        steps: &mut Vec<Timing>,
    ) -> Result<(std::result::Result<i64, Option<i64>>, String)> {
        let d = &self.inner.deployer;
        let who = format!("update to {} ({requested_by})", short(commit));
        let _guard = self.inner.lock.acquire("update", &who)?;
        let project = config.project_dir.clone();
        d.events.info(
            EventKind::Update,
            None,
            None,
            &format!(
                "new commit {} on {remote} {}; deploying it",
                short(commit),
                update.branch
            ),
        );
        let fail = |release: Option<i64>,
                    why: String|
         -> Result<(std::result::Result<i64, Option<i64>>, String)> {
            let message = format!(
                "update to {} failed: {why}; {} will not be tried again until a newer commit arrives",
                short(commit),
                short(commit)
            );
            self.store()
                .record_revision(commit, RevisionStatus::Failed, release, &why)?;
            d.events.error(EventKind::Update, release, None, &message);
            Ok((Err(release), message))
        };
        if update.backup && config.backups.is_some() {
            let noop = |_: dockhand_api::Progress| {};
            let since = Instant::now();
            let backup = self
                .inner
                .backups
                .run(&format!("before update to {}", short(commit)), None, &noop)
                .await;
            steps.push(Timing::since(Timed::Backup, None, since));
            match backup {
                Ok(b) if b.state == dockhand_api::BackupState::Complete => {
                    d.events.info(
                        EventKind::Update,
                        None,
                        None,
                        &format!(
                            "backup {} taken before the update to {}",
                            b.id,
                            short(commit)
                        ),
                    );
                }
                Ok(b) => return fail(None, format!("the backup before it failed: {}", b.message)),
                Err(e) => return fail(None, format!("the backup before it failed: {e}")),
            }
        }
        let since = Instant::now();
        git::fetch(&project, remote, &update.branch).await?;
        crash_point("update", "fetched");
        let previous = git::head(&project).await?;
        self.store()
            .record_revision(commit, RevisionStatus::Deploying, None, "")?;
        let moved = git::move_to(&project, commit).await;
        steps.push(Timing::since(Timed::Fetch, None, since));
        if let Err(e) = moved {
            return fail(
                None,
                format!("the project's checkout could not move to it: {e}"),
            );
        }
        crash_point("update", "checked-out");
        let outcome = self.deploy_checkout(&who).await;
        if let Ok(o) = &outcome {
            steps.extend(o.steps.iter().cloned());
        }
        match outcome {
            Ok(o) if o.succeeded => {
                crash_point("update", "deployed");
                self.store().record_revision(
                    commit,
                    RevisionStatus::Deployed,
                    Some(o.release),
                    "",
                )?;
                let (author, subject) = git::describe(&project, commit).await;
                let message = format!(
                    "updated to {} ({subject} by {author}): release {} is live ({})",
                    short(commit),
                    o.release,
                    push_to_serving(steps)
                );
                d.events
                    .info(EventKind::Update, Some(o.release), None, &message);
                Ok((Ok(o.release), message))
            }
            Ok(o) => {
                let _ = git::move_to(&project, &previous).await;
                fail(Some(o.release), o.message)
            }
            Err(e) => {
                let _ = git::move_to(&project, &previous).await;
                fail(None, e.message().to_string())
            }
        }
    }

    /// Why a new revision (`what`) cannot deploy now, if it cannot: outside the maintenance
    /// window (unless `explicit`), or while another deploy holds the lock.
    fn held_back(
        &self,
        update: &UpdateConfig,
        what: &str,
        explicit: bool,
    ) -> Option<(CheckResult, String)> {
        if !explicit {
            if let Some(window) = &update.window {
                let now = crate::clock::local();
                if !window.contains(&now) {
                    let opens = window
                        .next_open(&now)
                        .map(|t| format!("; it opens at {}", t.format("%a %H:%M")))
                        .unwrap_or_default();
                    return Some((
                        CheckResult::OutsideWindow,
                        format!(
                            "{what} waits for the maintenance window `{}`{opens} (`dockhand update now` deploys it at once)",
                            window.spec()
                        ),
                    ));
                }
            }
        }
        let holder = self.inner.lock.holder()?;
        Some((
            CheckResult::Deferred,
            format!(
                "{what} waits: a {} by {} is in progress (since {})",
                holder.operation, holder.holder, holder.since
            ),
        ))
    }

    /// Loads the configuration of the checkout and deploys it (the lock is held).
    async fn deploy_checkout(&self, who: &str) -> Result<DeployOutcome> {
        let (config, _) = crate::agent::load_config(&self.inner.config_path)?;
        let noop = |_: dockhand_api::Progress| {};
        self.inner
            .deployer
            .deploy_new(config, DeployKind::Deploy, who, &noop)
            .await
    }

    /// When the next poll is due, from the serving release's `[update]`.
    /// The poll interval, when polls are not on a cron schedule.
    fn poll_every(&self) -> Option<chrono::Duration> {
        let update = self.serving()?.update.clone()?;
        if update.schedule.is_some() {
            return None;
        }
        chrono::Duration::from_std(update.poll?).ok()
    }

    fn next_due(&self, after: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        let update = self.serving()?.update.clone()?;
        if let Some(expr) = &update.schedule {
            return Schedule::cron_local(expr).ok()?.next_after(after, None);
        }
        let every = chrono::Duration::from_std(update.poll?).ok()?;
        Some(after + every)
    }
}

/// The four parts of the time from a push to the new release serving, for the update's
/// event: `fetch 85 ms, build 3 ms, gate 310 ms, swap 0 ms`.
fn push_to_serving(steps: &[Timing]) -> String {
    use dockhand_api::StepKind;
    let steps = crate::wire::step_timings(steps);
    [
        StepKind::Fetch,
        StepKind::Build,
        StepKind::Gate,
        StepKind::Swap,
    ]
    .iter()
    .map(|kind| {
        let ms = dockhand_api::step_total_ms(&steps, *kind);
        format!("{} {}", kind.as_str(), dockhand_api::human_ms(ms))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// The first 12 hex digits of a commit.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl Subsystem for Updater {
    fn name(&self) -> &'static str {
        "updates"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut events = self.inner.deployer.events.subscribe();
            let listener = self
                .inner
                .hook_listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(listener) = listener {
                self.serve_webhook(listener, ctx.shutdown.clone());
            }
            ctx.ready();
            let mut due = self.next_due(crate::clock::utc());
            loop {
                // A wall clock stepped back leaves an interval poll's due time far ahead:
                // it waits at most one interval from now (a cron schedule keeps its time,
                // so a repeated hour does not check twice).
                if let (Some(t), Some(every)) = (due, self.poll_every()) {
                    let now = crate::clock::utc();
                    if t > now + every {
                        due = Some(now + every);
                    }
                }
                *self.inner.next.lock().unwrap_or_else(|p| p.into_inner()) = due;
                let wait = due
                    .map(|t| (t - crate::clock::utc()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(3600))
                    .min(crate::clock::recheck());
                tokio::select! {
                    _ = ctx.shutdown.wait() => return Ok(()),
                    _ = self.inner.wake.notified() => {
                        due = self.next_due(crate::clock::utc());
                        continue;
                    }
                    got = events.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = got {
                            return Ok(());
                        }
                        // The first release (or one that adds [update]) starts the polls.
                        if due.is_none() {
                            due = self.next_due(crate::clock::utc());
                        }
                        continue;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                if due.is_some_and(|t| crate::clock::utc() >= t) {
                    // Paused, the check records only that (no git command runs).
                    let _ = self.check("poll", false).await;
                    due = self.next_due(crate::clock::utc());
                }
            }
        })
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}
