//! The backup subsystem: the agent's side of `dockhand_backup`. It registers the backup and
//! restore-drill jobs of the serving release's `[backups]` table on the shared scheduler (and
//! again after each deploy, from the event stream), keeps the catalog in the state database,
//! records events (a failed backup or drill is an error event: an alert), and serves
//! `dockhand backup run|list|show|verify|restore|prune`. At start it finds backups the agent
//! was killed during, marks them failed and removes what they wrote from the targets.
//!
//! A restore fetches and checks every object (checksum, decryption) before it touches
//! anything, takes a safety backup of what it replaces, puts the app in maintenance (every
//! route answers 503 and the instances stop, through the deployer), restores, then starts the
//! committed release again through its health gate.

pub mod disaster;
pub mod moving;
mod pitr;
mod setup;

pub use pitr::CRASH_POINTS;

pub(crate) use setup::target_spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dockhand_api::{
    BackupDetail, BackupState, BackupSummary, DrillLine, ExtractReport, ExtractedItem, Progress,
    PruneLine, PruneReport, RestoreReport, VerifyReport, VerifyState,
};
use dockhand_backup::manifest::{Manifest, SourceKind};
use dockhand_backup::restore as rst;
use dockhand_backup::retention::{self, Candidate, CandidateState};
use dockhand_state::{BackupRecord, BackupStatus, Store};

use crate::deploy::Deployer;
use crate::error::{AgentError, Result};
use crate::events::{EventKind, Events};
use crate::fleet::Fleet;
use crate::layout::StateLayout;
use crate::runtimes::Runtimes;
use crate::scheduler::{Job, Schedule, Scheduler};
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::Sink;

use setup::Setup;

/// The backup subsystem and its handle. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    store: Arc<Store>,
    events: Events,
    runtimes: Runtimes,
    layout: Arc<StateLayout>,
    fleet: Fleet,
    scheduler: Scheduler,
    /// One backup, drill or restore at a time.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Backups a previous run of the agent was killed during, whose objects are still to be
    /// removed from the targets.
    interrupted: Arc<std::sync::Mutex<Vec<String>>>,
    /// One WAL shipping round at a time; a restore to a moment holds it throughout.
    wal: Arc<tokio::sync::Mutex<()>>,
    /// The last shipping problem per database (reported once).
    wal_errors: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Database containers (and `archive_timeout`) with archiving on: their data directory.
    archiving: Arc<std::sync::Mutex<HashMap<String, String>>>,
}

impl Backups {
    pub fn new(d: &Deployer, scheduler: &Scheduler) -> Backups {
        Backups {
            store: d.store.clone(),
            events: d.events.clone(),
            runtimes: d.runtimes.clone(),
            layout: d.layout.clone(),
            fleet: d.fleet.clone(),
            scheduler: scheduler.clone(),
            busy: Arc::default(),
            interrupted: Arc::default(),
            wal: Arc::default(),
            wal_errors: Arc::default(),
            archiving: Arc::default(),
        }
    }

    fn setup(&self) -> Result<Setup> {
        let config = self.fleet.serving_config().ok_or_else(|| {
            AgentError::usage("no release serves yet: deploy the app first (`dockhand deploy`)")
        })?;
        Setup::new(config, &self.events, &self.layout)
    }

    /// Registers the jobs of the serving release's `[backups]` table.
    fn register_jobs(&self) {
        let Some(config) = self.fleet.serving_config() else {
            return;
        };
        let Some(b) = config.backups.as_ref() else {
            return;
        };
        if let Some(expr) = &b.schedule {
            if let Ok(schedule) = Schedule::cron_local(expr) {
                let me = self.clone();
                self.scheduler.add(Job {
                    name: "backup".into(),
                    schedule,
                    catch_up: true,
                    timeout: b.timeout * 4,
                    run: Arc::new(move || {
                        let me = me.clone();
                        Box::pin(async move {
                            let s = me
                                .run("schedule", None, &|_| {})
                                .await
                                .map_err(|e| e.to_string())?;
                            match s.state {
                                BackupState::Complete => {
                                    let pruned =
                                        me.prune(false).await.map(|p| p.deleted.len()).unwrap_or(0);
                                    Ok(format!(
                                        "backup {} complete; {pruned} old backup(s) pruned",
                                        s.id
                                    ))
                                }
                                _ => Err(format!("backup {} failed: {}", s.id, s.message)),
                            }
                        })
                    }),
                });
            }
        }
        if let Some(expr) = &b.verify {
            if let Ok(schedule) = Schedule::cron_local(expr) {
                let me = self.clone();
                self.scheduler.add(Job {
                    name: "backup-verify".into(),
                    schedule,
                    catch_up: true,
                    timeout: b.timeout * 4,
                    run: Arc::new(move || {
                        let me = me.clone();
                        Box::pin(async move {
                            let r = me.verify(None, None).await.map_err(|e| e.to_string())?;
                            if r.passed {
                                Ok(format!("backup {} verified", r.id))
                            } else {
                                Err(format!("the restore drill of backup {} failed", r.id))
                            }
                        })
                    }),
                });
            }
        }
    }

    /// Backups the agent was killed during: marked failed at once (the catalog never shows
    /// them as anything but failed); what they wrote is removed by [`Backups::clean_up`] once
    /// a release serves and the targets are known.
    fn recover(&self) {
        let ids = match self.store.abort_running_backups() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("cannot read the backup catalog: {e}");
                return;
            }
        };
        for id in &ids {
            self.events.error(
                EventKind::Backup,
                None,
                None,
                &format!("backup {id} was interrupted (the agent stopped during it): it is marked failed and what it wrote is removed"),
            );
        }
        self.interrupted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// Removes from the targets what interrupted backups wrote (a local target's staging
    /// files included), when the serving release says what the targets are.
    async fn clean_up(&self) {
        if self
            .interrupted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return;
        }
        // Before a release serves, the targets are not known yet: the next release event.
        let Ok(setup) = self.setup() else {
            return;
        };
        let _busy = self.busy.lock().await;
        let ids: Vec<String> =
            std::mem::take(&mut *self.interrupted.lock().unwrap_or_else(|e| e.into_inner()));
        for id in &ids {
            for t in &setup.targets {
                if let Err(e) = t.delete_dir(&format!("{}/{id}", setup.config.app)).await {
                    self.events.warn(
                        EventKind::Backup,
                        None,
                        None,
                        &format!(
                            "backup {id}: could not remove what it wrote on `{}`: {e}",
                            t.name
                        ),
                    );
                }
            }
        }
    }

    /// A release serves (again, or a new one): its jobs, and the clean-up it makes possible.
    async fn on_release(&self) {
        self.archiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.register_jobs();
        self.clean_up().await;
    }

    /// Takes a backup now.
    pub async fn run(
        &self,
        trigger: &str,
        only: Option<&str>,
        sink: Sink<'_>,
    ) -> Result<BackupSummary> {
        let _busy = self.busy.lock().await;
        self.run_locked(trigger, only, sink).await
    }

    async fn run_locked(
        &self,
        trigger: &str,
        only: Option<&str>,
        sink: Sink<'_>,
    ) -> Result<BackupSummary> {
        let setup = self.setup()?;
        let rt = setup.docker_runtime(&self.runtimes).await?;
        let sources = setup.sources(rt.as_ref(), only).await?;
        let id = dockhand_backup::manifest::new_id(crate::clock::utc());
        self.store.begin_backup(&id, trigger)?;
        let docker = rt.as_ref().map(|rt| setup.docker(rt));
        let job = dockhand_backup::run::Job {
            app: &setup.config.app,
            id: &id,
            trigger,
            sources: &sources,
            encryption: &setup.encryption,
            targets: &setup.targets,
            scratch: self.layout.root().join("backup-scratch"),
            docker,
        };
        let redactor = self.events.redactor().clone();
        let say = move |m: String| {
            sink(Progress {
                step: "backup".into(),
                message: redactor.redact(&m),
                service: None,
            })
        };
        let taken = dockhand_backup::run::take(&job, &say).await;
        for (target, e) in &taken.target_failures {
            self.events.error(
                EventKind::Backup,
                None,
                None,
                &format!("backup {id}: target `{target}` failed: {e}"),
            );
        }
        let manifest_json = serde_json::to_string(&taken.manifest).unwrap_or_default();
        if taken.failed.is_empty() {
            self.store
                .finish_backup(&id, BackupStatus::Complete, "", &manifest_json)?;
            self.events.info(
                EventKind::Backup,
                None,
                None,
                &format!(
                    "backup {id} ({trigger}) complete: {} source(s), {} stored",
                    sources.len(),
                    dockhand_backup::run::human_bytes(taken.manifest.stored_bytes())
                ),
            );
        } else {
            let why: Vec<String> = taken
                .failed
                .iter()
                .map(|(s, e)| format!("{s}: {e}"))
                .collect();
            let message = self.events.redactor().redact(&why.join("; "));
            // What did get stored of a failed backup is removed with it.
            for t in &setup.targets {
                let _ = t.delete_dir(&format!("{}/{id}", setup.config.app)).await;
            }
            self.store
                .finish_backup(&id, BackupStatus::Failed, &message, &manifest_json)?;
            self.events.error(
                EventKind::Backup,
                None,
                None,
                &format!("backup {id} ({trigger}) failed: {message}"),
            );
        }
        let record = self
            .store
            .backup(&id)?
            .ok_or_else(|| AgentError::internal("the backup vanished from the catalog"))?;
        Ok(summary(&record))
    }

    /// The catalog, newest first.
    pub fn list(&self) -> Result<Vec<BackupSummary>> {
        Ok(self.store.backups(1000)?.iter().map(summary).collect())
    }

    /// One backup with its manifest.
    pub fn show(&self, id: &str) -> Result<BackupDetail> {
        let r = self.find(id)?;
        Ok(BackupDetail {
            summary: summary(&r),
            manifest: serde_json::from_str(&r.manifest).unwrap_or(serde_json::Value::Null),
            verify_message: r.verify_message.clone(),
        })
    }

    fn find(&self, id: &str) -> Result<BackupRecord> {
        self.store.backup(id)?.ok_or_else(|| {
            AgentError::not_found(format!(
                "no backup `{id}`; `dockhand backup list` shows them"
            ))
        })
    }

    /// Finds a backup in the catalog, or (a new server) in the targets' manifests.
    async fn manifest_of(&self, setup: &Setup, id: &str) -> Result<Manifest> {
        if let Some(r) = self.store.backup(id)? {
            if r.status != BackupStatus::Complete {
                return Err(AgentError::usage(format!(
                    "backup {id} is {}: pick a complete one (`dockhand backup list`)",
                    r.status.as_str()
                )));
            }
            return serde_json::from_str(&r.manifest)
                .map_err(|e| AgentError::internal(format!("backup {id}'s manifest: {e}")));
        }
        for t in &setup.targets {
            if let Ok(bytes) = t
                .get_small(&format!(
                    "{}/{id}/{}",
                    setup.config.app,
                    dockhand_backup::manifest::MANIFEST
                ))
                .await
            {
                if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                    // Known from now on.
                    let _ = self.store.begin_backup(id, &m.trigger);
                    let _ = self.store.finish_backup(
                        id,
                        BackupStatus::Complete,
                        "imported from the target",
                        &String::from_utf8_lossy(&bytes),
                    );
                    return Ok(m);
                }
            }
        }
        Err(AgentError::not_found(format!(
            "no backup `{id}` in the catalog or on the targets; `dockhand backup list` shows them"
        )))
    }

    /// A restore drill of backup `id` (default: the newest complete one) on every target
    /// that holds each object.
    pub async fn verify(&self, id: Option<&str>, identity: Option<&str>) -> Result<VerifyReport> {
        let _busy = self.busy.lock().await;
        let setup = self.setup()?;
        let id = match id {
            Some(id) => id.to_string(),
            None => self
                .store
                .backups(1000)?
                .into_iter()
                .find(|b| b.status == BackupStatus::Complete)
                .map(|b| b.id)
                .ok_or_else(|| {
                    AgentError::not_found(
                        "no complete backup to verify yet; run `dockhand backup run`",
                    )
                })?,
        };
        let manifest = self.manifest_of(&setup, &id).await?;
        let decryption = setup.decryption(identity)?;
        let rt = setup.docker_runtime(&self.runtimes).await?;
        let docker = rt.as_ref().map(|rt| setup.docker(rt));
        let scratch = self.layout.root().join("backup-scratch");
        let mut results = Vec::new();
        for item in &manifest.items {
            for t in setup
                .targets
                .iter()
                .filter(|t| item.targets.contains(&t.name))
            {
                let r = rst::drill_item(t, &manifest, item, &decryption, docker.as_ref(), &scratch)
                    .await;
                let (passed, message) = match r.outcome {
                    Ok(m) => (true, m),
                    Err(m) => (false, self.events.redactor().redact(&m)),
                };
                results.push(DrillLine {
                    source: r.source,
                    object: r.object,
                    target: r.target,
                    passed,
                    message,
                });
            }
        }
        let passed = !results.is_empty() && results.iter().all(|r| r.passed);
        let message = results
            .iter()
            .map(|r| format!("{} on {}: {}", r.source, r.target, r.message))
            .collect::<Vec<_>>()
            .join("; ");
        self.store.record_verify(&id, passed, &message)?;
        if passed {
            self.events.info(
                EventKind::Backup,
                None,
                None,
                &format!("restore drill of backup {id} passed"),
            );
        } else {
            self.events.error(
                EventKind::Backup,
                None,
                None,
                &format!("restore drill of backup {id} FAILED: {message}"),
            );
        }
        Ok(VerifyReport {
            id,
            passed,
            results,
        })
    }

    /// Applies the keep policy: deletes what it does not keep (never the newest verified
    /// backup), or with `dry_run` only says what would go.
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport> {
        let setup = self.setup()?;
        let b = setup.backups();
        let keep = retention::Keep {
            last: b.keep.last,
            hourly: b.keep.hourly,
            daily: b.keep.daily,
            weekly: b.keep.weekly,
            monthly: b.keep.monthly,
            yearly: b.keep.yearly,
        };
        let records = self.store.backups(100_000)?;
        let candidates: Vec<Candidate> = records
            .iter()
            .filter_map(|r| {
                Some(Candidate {
                    id: r.id.clone(),
                    time: retention::local_time(&r.started_at, &chrono::Local)?,
                    state: match r.status {
                        BackupStatus::Running => CandidateState::Running,
                        BackupStatus::Complete => CandidateState::Complete,
                        BackupStatus::Failed => CandidateState::Failed,
                    },
                    verified: r.verify_ok == Some(true),
                })
            })
            .collect();
        let verdicts = retention::apply(&keep, &candidates);
        let mut deleted = Vec::new();
        for v in verdicts.iter().filter(|v| !v.keep) {
            if !dry_run {
                for t in &setup.targets {
                    t.delete_dir(&format!("{}/{}", setup.config.app, v.id))
                        .await
                        .map_err(|e| AgentError::environment(e.to_string()))?;
                }
                self.store.delete_backup(&v.id)?;
            }
            deleted.push(v.id.clone());
        }
        let wal = self.prune_wal(&setup, dry_run).await?;
        if !dry_run && !wal.is_empty() {
            self.events.info(
                EventKind::Backup,
                None,
                None,
                &format!(
                    "pruned {} WAL file(s) older than the oldest kept base backup",
                    wal.len()
                ),
            );
        }
        if !dry_run && !deleted.is_empty() {
            self.events.info(
                EventKind::Backup,
                None,
                None,
                &format!("pruned {} backup(s): {}", deleted.len(), deleted.join(", ")),
            );
        }
        Ok(PruneReport {
            dry_run,
            backups: verdicts
                .into_iter()
                .map(|v| PruneLine {
                    id: v.id,
                    keep: v.keep,
                    reasons: v.reasons,
                })
                .collect(),
            deleted,
        })
    }

    /// Restores backup `id` (all its sources, or `source`) into the running app.
    pub async fn restore(
        &self,
        deployer: &Deployer,
        id: &str,
        source: Option<&str>,
        identity: Option<&str>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<RestoreReport> {
        let _busy = self.busy.lock().await;
        let say = |m: String| {
            sink(Progress {
                step: "restore".into(),
                message: m,
                service: None,
            })
        };
        let setup = self.setup()?;
        let manifest = self.manifest_of(&setup, id).await?;
        let items: Vec<_> = manifest
            .items
            .iter()
            .filter(|i| source.is_none_or(|s| i.source == s))
            .filter(|i| source.is_some() || i.kind != SourceKind::App)
            // A base backup is restored to a moment (`--at`); the dump beside it restores.
            .filter(|i| i.kind != SourceKind::PostgresBase)
            .collect();
        if items.is_empty() {
            let known: Vec<&str> = manifest.items.iter().map(|i| i.source.as_str()).collect();
            return Err(AgentError::not_found(format!(
                "backup {id} holds no source `{}`; it holds {}",
                source.unwrap_or(""),
                known.join(", ")
            )));
        }
        let decryption = setup.decryption(identity)?;
        let rt = setup.docker_runtime(&self.runtimes).await?;
        let scratch = self.layout.root().join("backup-scratch");
        // 1. Everything is fetched and checked before anything is touched.
        let mut fetched = Vec::new();
        for item in &items {
            say(format!("fetching and checking {}", item.object));
            let f = rst::fetch_any(&setup.targets, &manifest, item, &scratch)
                .await
                .map_err(|e| self.refuse(id, e))?;
            // Opening decrypts the header: a wrong identity fails here, not half-way.
            f.open(&decryption).map_err(|e| self.refuse(id, e))?;
            fetched.push((item, f));
        }
        pitr::crash_point("restore-fetched");
        let mut dests = Vec::new();
        for (item, _) in &fetched {
            dests.push(setup.destination(rt.as_ref(), item).await?);
        }
        // 2. A safety backup of what is about to be replaced.
        let names: Vec<String> = {
            let mut n: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
            n.dedup();
            n
        };
        // A file or directory that does not exist (a new server) has nothing to lose.
        let exists: Vec<&String> = names
            .iter()
            .filter(|n| {
                fetched
                    .iter()
                    .zip(&dests)
                    .filter(|((item, _), _)| &&item.source == n)
                    .all(|(_, dest)| match dest {
                        rst::Destination::Sqlite { path }
                        | rst::Destination::Directory { path } => path.exists(),
                        _ => true,
                    })
            })
            .collect();
        say("taking a safety backup of the data being replaced".into());
        let mut safety = None;
        for n in exists {
            let s = self.run_locked("safety", Some(n), sink).await?;
            if s.state != BackupState::Complete {
                return Err(AgentError::runtime(format!(
                    "the safety backup before the restore failed ({}); nothing was restored: fix it and try again",
                    s.message
                )));
            }
            safety = Some(s.id);
        }
        pitr::crash_point("restore-safety");
        // 3. Maintenance: routes answer 503, the services stop.
        say("maintenance: the routes answer 503 and the services stop".into());
        self.events.warn(
            EventKind::Backup,
            None,
            None,
            &format!(
                "restore of backup {id} ({}) started by {requested_by}: the app is in maintenance",
                names.join(", ")
            ),
        );
        deployer.stop_for_maintenance().await;
        pitr::crash_point("restore-maintenance");
        let docker = rt.as_ref().map(|rt| setup.docker(rt));
        let mut result = Ok(());
        for ((item, f), dest) in fetched.iter().zip(&dests) {
            say(format!("restoring {} from {}", item.source, f.target));
            if let Err(e) =
                rst::restore_item(f, &decryption, item, dest, docker.as_ref(), &scratch, id).await
            {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            pitr::crash_point("restore-restored");
        }
        // 4. The release again, through its health gate.
        say("starting the services again".into());
        let restarted = deployer.restart(sink).await;
        pitr::crash_point("restore-restarted");
        if let Err(e) = result {
            let message = format!("restore of backup {id} failed: {e}; the safety backup {} holds what was there before", safety.as_deref().unwrap_or("-"));
            self.events.error(EventKind::Backup, None, None, &message);
            return Err(AgentError::runtime(self.events.redactor().redact(&message)));
        }
        restarted.map_err(|e| e.context("the restore is done but the app did not start again"))?;
        let message = format!("restored {} from backup {id}", names.join(", "));
        self.events.info(EventKind::Backup, None, None, &message);
        Ok(RestoreReport {
            id: id.to_string(),
            restored: names,
            safety_backup: safety,
            message,
        })
    }

    /// Writes backup `id`'s items (all, or `source`'s) into the directory `to` instead of the
    /// live app: every object fetched, checked and its decryption opened first (a damaged one
    /// or a wrong identity writes nothing), then each written under a hidden name and renamed
    /// into place; if one fails, what this call wrote is removed. Nothing live is touched: no
    /// safety backup, no maintenance.
    pub async fn extract(
        &self,
        id: &str,
        source: Option<&str>,
        to: &str,
        identity: Option<&str>,
        requested_by: &str,
    ) -> Result<ExtractReport> {
        let dir = std::path::PathBuf::from(to);
        if !dir.is_absolute() {
            return Err(AgentError::usage(format!(
                "--to {to}: name an absolute directory"
            )));
        }
        let _busy = self.busy.lock().await;
        let setup = self.setup()?;
        let manifest = self.manifest_of(&setup, id).await?;
        let items: Vec<_> = manifest
            .items
            .iter()
            .filter(|i| source.is_none_or(|s| i.source == s))
            .collect();
        if items.is_empty() {
            let known: Vec<&str> = manifest.items.iter().map(|i| i.source.as_str()).collect();
            return Err(AgentError::not_found(format!(
                "backup {id} holds no source `{}`; it holds {}",
                source.unwrap_or(""),
                known.join(", ")
            )));
        }
        let taken: Vec<_> = items
            .iter()
            .map(|i| rst::extract_path(i, &dir))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if let Some(p) = taken.first() {
            return Err(AgentError::usage(format!(
                "{} already exists: --to never overwrites; name an empty or new directory",
                p.display()
            )));
        }
        let decryption = setup.decryption(identity)?;
        let scratch = self.layout.root().join("backup-scratch");
        let refuse = |e: dockhand_backup::BackupError| {
            let message = format!("extracting backup {id} refused, nothing was written: {e}");
            self.events.error(EventKind::Backup, None, None, &message);
            AgentError::runtime(message)
        };
        let mut fetched = Vec::new();
        for item in &items {
            let f = rst::fetch_any(&setup.targets, &manifest, item, &scratch)
                .await
                .map_err(refuse)?;
            f.open(&decryption).map_err(refuse)?;
            fetched.push((*item, f));
        }
        create_private_dir(&dir)?;
        let mut written: Vec<ExtractedItem> = Vec::new();
        let mut failed = None;
        for (item, f) in fetched {
            let (item, dir, decryption) = (item.clone(), dir.clone(), decryption.clone());
            let done = tokio::task::spawn_blocking(move || {
                rst::extract_item(&f, &decryption, &item, &dir).map(|p| (item, p))
            })
            .await
            .map_err(|e| AgentError::internal(format!("the extract task failed: {e}")))?;
            match done {
                Ok((item, path)) => written.push(ExtractedItem {
                    source: item.source.clone(),
                    kind: item.kind.as_str().to_string(),
                    path: path.display().to_string(),
                }),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for w in &written {
                let p = std::path::Path::new(&w.path);
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
            }
            let message = format!(
                "extracting backup {id} into {to} failed: {e}; nothing of it was left there"
            );
            self.events.error(EventKind::Backup, None, None, &message);
            return Err(AgentError::runtime(message));
        }
        let mut names: Vec<String> = written.iter().map(|w| w.source.clone()).collect();
        names.dedup();
        let message = format!(
            "extracted {} of backup {id} into {to} (the live app untouched)",
            names.join(", ")
        );
        self.events.info(
            EventKind::Backup,
            None,
            None,
            &format!("{message}, by {requested_by}"),
        );
        Ok(ExtractReport {
            id: id.to_string(),
            extracted: written,
            message,
        })
    }

    fn refuse(&self, id: &str, e: dockhand_backup::BackupError) -> AgentError {
        let message = format!("restore of backup {id} refused, nothing was touched: {e}");
        self.events.error(EventKind::Backup, None, None, &message);
        AgentError::runtime(message)
    }
}

fn summary(r: &BackupRecord) -> BackupSummary {
    let manifest: Option<Manifest> = serde_json::from_str(&r.manifest).ok();
    let mut sources: Vec<String> = manifest
        .as_ref()
        .map(|m| m.items.iter().map(|i| i.source.clone()).collect())
        .unwrap_or_default();
    sources.dedup();
    BackupSummary {
        id: r.id.clone(),
        state: match r.status {
            BackupStatus::Running => BackupState::Running,
            BackupStatus::Complete => BackupState::Complete,
            BackupStatus::Failed => BackupState::Failed,
        },
        trigger: r.trigger.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        sources,
        stored_bytes: manifest.as_ref().map(|m| m.stored_bytes()).unwrap_or(0),
        verify: match r.verify_ok {
            None => VerifyState::Never,
            Some(true) => VerifyState::Passed,
            Some(false) => VerifyState::Failed,
        },
        verified_at: r.verified_at.clone(),
        message: if r.status == BackupStatus::Failed {
            r.message.clone()
        } else {
            String::new()
        },
    }
}

impl Subsystem for Backups {
    fn name(&self) -> &'static str {
        "backups"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let mut events = self.events.subscribe();
            self.recover();
            // Before the release starts again: a restore the agent was killed during.
            self.recover_restore().await;
            ctx.ready();
            self.on_release().await;
            let mut ship = tokio::time::interval(Duration::from_secs(2));
            ship.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ctx.shutdown.wait() => return Ok(()),
                    _ = ship.tick() => self.ship_wal().await,
                    got = events.recv() => match got {
                        Ok(e) if [EventKind::Deploy, EventKind::Rollback, EventKind::Restore].iter().any(|k| k.as_str() == e.kind) => self.on_release().await,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.on_release().await,
                        Err(_) => return Ok(()),
                    }
                }
            }
        })
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// Creates `dir` (and its parents) if missing; a directory made here is 0700 (it will hold
/// decrypted data).
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::usage(format!("cannot create {}: {e}", dir.display())))
}
