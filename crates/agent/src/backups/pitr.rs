//! Point-in-time recovery, the agent's side (`dockhand_backup::pitr` does the work): the WAL
//! shipper (a round every few seconds from the subsystem's loop: archiving turned on once per
//! database container, then every spooled WAL file shipped), WAL retention after a prune, and
//! `backup restore DB --at TIME`.
//!
//! A restore to a moment is journaled (`backup-restore.json` in the state directory) before
//! each step that changes the database, so an agent killed anywhere in it finds the journal at
//! start — before the committed release starts again — and either puts the previous data back
//! (anything before the restored database had recovered and answered) or finishes the restore
//! (after): the database is never left half restored, and its previous data is removed only
//! once the restored one has been checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dockhand_api::{BackupState, Progress, RestoreReport};
use dockhand_backup::manifest::{Manifest, SourceKind};
use dockhand_backup::pitr::{self, live, BaseRef, WalRecord};
use dockhand_backup::restore as rst;
use dockhand_backup::sources::postgres::Conn;
use dockhand_backup::sources::Docker;
use dockhand_runtime::ContainerRuntime;
use dockhand_state::BackupStatus;
use serde::{Deserialize, Serialize};

use super::setup::Setup;
use super::Backups;
use crate::deploy::Deployer;
use crate::error::{AgentError, Result};
use crate::events::EventKind;
use crate::Sink;

/// The journal's file in the state directory.
const JOURNAL: &str = "backup-restore.json";

/// How far a restore to a moment got; written before the step it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// The restored data is being staged beside the live data (which still serves).
    Staging,
    /// The database is (being) stopped and the staged data swapped in.
    Swapping,
    /// The database runs on the restored data, recovering.
    Recovering,
    /// The restored database recovered and answered: only the clean-up is left.
    Recovered,
}

/// What an interrupted restore needs to be rolled back or finished, without the
/// configuration (no release serves yet when the agent starts) and without a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Journal {
    pub id: String,
    pub db: String,
    pub container: String,
    pub image: String,
    pub volume: String,
    pub data_dir: String,
    pub user: String,
    pub database: String,
    pub phase: Phase,
}

impl Journal {
    fn conn(&self) -> Conn {
        Conn {
            container: self.container.clone(),
            host: String::new(),
            user: self.user.clone(),
            database: self.database.clone(),
            password: String::new(),
        }
    }
}

/// A crash point of a restore, for the crash tests: with `DOCKHAND_CRASH_AFTER=<point>@restore`
/// a debug build kills itself with SIGKILL right after `point`. Release builds never read it.
pub(super) fn crash_point(point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(want) = std::env::var(crate::deploy::failpoint::ENV) else {
        return;
    };
    if want.strip_suffix("@restore") == Some(point) {
        tracing::warn!(
            "{}: killing the agent after restore step `{point}`",
            crate::deploy::failpoint::ENV
        );
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The crash points of restores, in order (ARCHITECTURE.md lists them too).
pub const CRASH_POINTS: &[&str] = &[
    "restore-fetched",
    "restore-safety",
    "restore-maintenance",
    "restore-restored",
    "restore-restarted",
    "pitr-staged",
    "pitr-maintenance",
    "pitr-stopped",
    "pitr-swapped",
    "pitr-recovered",
    "pitr-finished",
    "pitr-restarted",
];

impl Backups {
    fn journal_path(&self) -> PathBuf {
        self.layout.root().join(JOURNAL)
    }

    fn write_journal(&self, j: &Journal) -> Result<()> {
        let path = self.journal_path();
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(j).unwrap_or_default();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write()
            .map_err(|e| AgentError::environment(format!("cannot write {}: {e}", path.display())))
    }

    fn clear_journal(&self) {
        let _ = std::fs::remove_file(self.journal_path());
    }

    /// At start, before the release starts again: an interrupted restore to a moment is
    /// rolled back, or finished when the restored database had already recovered.
    pub(super) async fn recover_restore(&self) {
        let path = self.journal_path();
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let Ok(j) = serde_json::from_slice::<Journal>(&bytes) else {
            tracing::error!(
                "{} is unreadable; move it away after checking the database",
                path.display()
            );
            return;
        };
        let rt = match self.runtimes.containers().await {
            Ok(rt) => rt,
            Err(e) => {
                self.events.error(EventKind::Backup, None, None, &format!("the interrupted restore of database `{}` cannot be resolved without the Docker Engine ({e}); restart the agent once it answers", j.db));
                return;
            }
        };
        let app = self.app_of(&j);
        let d = journal_docker(&rt, &app);
        let result = if j.phase == Phase::Recovered {
            self.roll_forward(&rt, &d, &j).await.map(|_| "finished")
        } else {
            roll_back(&rt, &d, &j)
                .await
                .map(|_| "rolled back: the previous data is back")
        };
        match result {
            Ok(what) => {
                self.clear_journal();
                self.events.warn(
                    EventKind::Backup,
                    None,
                    None,
                    &format!(
                        "the point-in-time restore of database `{}` was interrupted (the agent stopped during it); it is {what}",
                        j.db
                    ),
                );
            }
            Err(e) => self.events.error(
                EventKind::Backup,
                None,
                None,
                &format!(
                    "the interrupted point-in-time restore of database `{}` could not be resolved: {e}; the journal {} is kept for the next start",
                    j.db,
                    path.display()
                ),
            ),
        }
    }

    /// The app's name, from the database container's (`<app>-<db>`).
    fn app_of(&self, j: &Journal) -> String {
        j.container
            .strip_suffix(&format!("-{}", j.db))
            .unwrap_or(&j.container)
            .to_string()
    }

    async fn roll_forward(&self, rt: &ContainerRuntime, d: &Docker<'_>, j: &Journal) -> Result<()> {
        rt.start_container(&j.container).await?;
        let conn = j.conn();
        live::wait_promoted(d, &conn, Duration::from_secs(600))
            .await
            .map_err(backup_err)?;
        live::finish(d, &conn, &j.data_dir, &j.id)
            .await
            .map_err(backup_err)
    }

    /// One round of the WAL shipper: every database with `pitr` gets archiving turned on
    /// (once per container) and its spool shipped. A restore in progress holds the round off.
    pub(super) async fn ship_wal(&self) {
        let Some(config) = self.fleet.serving_config() else {
            return;
        };
        if config.backups.as_ref().is_none_or(|b| b.pitr.is_empty()) {
            return;
        }
        let Ok(_wal) = self.wal.try_lock() else {
            return;
        };
        let Ok(setup) = self.setup() else {
            return;
        };
        let rt = match self.runtimes.containers().await {
            Ok(rt) => rt,
            Err(e) => {
                for db in &setup.backups().pitr {
                    self.wal_problem(db, Some(e.to_string()));
                }
                return;
            }
        };
        for db in &setup.backups().pitr {
            let r = self.ship_db(&setup, &rt, db).await;
            self.wal_problem(db, r.err().map(|e| e.to_string()));
        }
    }

    /// Reports a shipping problem once (and its end), not every round.
    fn wal_problem(&self, db: &str, problem: Option<String>) {
        let mut seen = self.wal_errors.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => {
                if seen.get(db) != Some(&p) {
                    self.events.error(
                        EventKind::Backup,
                        None,
                        None,
                        &self.events.redactor().redact(&format!(
                            "WAL archiving of database `{db}` failed: {p}; the database keeps the WAL until it is shipped"
                        )),
                    );
                    seen.insert(db.to_string(), p);
                }
            }
            None => {
                if seen.remove(db).is_some() {
                    self.events.info(
                        EventKind::Backup,
                        None,
                        None,
                        &format!("WAL archiving of database `{db}` works again"),
                    );
                }
            }
        }
    }

    async fn pitr_conn(&self, setup: &Setup, rt: &ContainerRuntime, db: &str) -> Result<Conn> {
        let container = rt
            .find_database(&setup.config.app, db)
            .await?
            .map(|c| c.name)
            .ok_or_else(|| {
                AgentError::runtime(format!("database `{db}` has no container: deploy first"))
            })?;
        setup.conn(db, container)
    }

    /// Archiving on (once per container and `archive_timeout`); the data directory.
    async fn archiving(
        &self,
        setup: &Setup,
        d: &Docker<'_>,
        conn: &Conn,
        db: &str,
    ) -> Result<String> {
        let timeout = setup.backups().archive_timeout;
        let key = format!("{}/{}", conn.container, timeout.as_secs());
        if let Some(dir) = self
            .archiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(dir.clone());
        }
        let a = live::ensure_archiving(d, conn, timeout)
            .await
            .map_err(backup_err)?;
        if a.restart_needed {
            self.events.warn(
                EventKind::Backup,
                None,
                None,
                &format!("database `{db}` restarts once to turn WAL archiving on (point-in-time recovery)"),
            );
            d.rt.stop_container(&conn.container, Duration::from_secs(60))
                .await?;
            d.rt.start_container(&conn.container).await?;
            live::wait_promoted(d, conn, Duration::from_secs(300))
                .await
                .map_err(backup_err)?;
        }
        if a.changed {
            self.events.info(
                EventKind::Backup,
                None,
                None,
                &format!(
                    "WAL archiving of database `{db}` is on (archive_timeout {}s): it can be restored to any moment since its first base backup",
                    timeout.as_secs()
                ),
            );
        }
        self.archiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, a.data_dir.clone());
        Ok(a.data_dir)
    }

    /// Ships what waits in `db`'s spool; how many files.
    async fn ship_db(&self, setup: &Setup, rt: &ContainerRuntime, db: &str) -> Result<usize> {
        let conn = self.pitr_conn(setup, rt, db).await?;
        let d = setup.docker(rt);
        let data_dir = self.archiving(setup, &d, &conn, db).await?;
        let names = live::spooled(&d, &conn, &data_dir)
            .await
            .map_err(backup_err)?;
        for name in &names {
            let shipped = live::ship(
                &d,
                &conn,
                &data_dir,
                db,
                name,
                &setup.encryption,
                &setup.targets,
            )
            .await
            .map_err(backup_err)?;
            for (target, e) in shipped.failed {
                self.events.warn(
                    EventKind::Backup,
                    None,
                    None,
                    &format!("WAL file {name} of database `{db}`: target `{target}` failed: {e}"),
                );
            }
        }
        Ok(names.len())
    }

    /// Every WAL record of `db` on the targets, by name, with the targets holding it.
    async fn wal_records(
        &self,
        setup: &Setup,
        db: &str,
    ) -> Result<BTreeMap<String, (WalRecord, Vec<usize>)>> {
        let mut out: BTreeMap<String, (WalRecord, Vec<usize>)> = BTreeMap::new();
        let mut errors = Vec::new();
        for (i, t) in setup.targets.iter().enumerate() {
            match live::records(t, &setup.config.app, db).await {
                Ok(records) => {
                    for r in records {
                        out.entry(r.name.clone())
                            .or_insert_with(|| (r, Vec::new()))
                            .1
                            .push(i);
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if out.is_empty() && !errors.is_empty() {
            return Err(AgentError::environment(errors.join("; ")));
        }
        Ok(out)
    }

    /// The complete backups holding a base backup of `db`, with it.
    fn bases(&self, db: &str) -> Result<Vec<(BaseRef, Manifest)>> {
        let mut out = Vec::new();
        for r in self.store.backups(100_000)? {
            if r.status != BackupStatus::Complete {
                continue;
            }
            let Ok(m) = serde_json::from_str::<Manifest>(&r.manifest) else {
                continue;
            };
            let Some(item) = m
                .items
                .iter()
                .find(|i| i.source == db && i.kind == SourceKind::PostgresBase)
            else {
                continue;
            };
            let (Some(finished), Some(start)) =
                (pitr::parse_time(&item.finished_at), item.wal_start.clone())
            else {
                continue;
            };
            out.push((
                BaseRef {
                    backup_id: m.id.clone(),
                    finished_at: finished,
                    wal_start: start,
                },
                m.clone(),
            ));
        }
        Ok(out)
    }

    /// After a prune: the WAL older than the oldest kept base backup of each `pitr` database
    /// is deleted from every target.
    pub(super) async fn prune_wal(&self, setup: &Setup, dry_run: bool) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for db in &setup.backups().pitr {
            let kept: Vec<BaseRef> = self.bases(db)?.into_iter().map(|(b, _)| b).collect();
            let records = self.wal_records(setup, db).await?;
            let all: Vec<WalRecord> = records.values().map(|(r, _)| r.clone()).collect();
            for name in pitr::prunable(&all, &kept) {
                if !dry_run {
                    for t in &setup.targets {
                        t.delete(&pitr::wal_object(&setup.config.app, db, &name))
                            .await
                            .map_err(backup_err)?;
                        t.delete(&pitr::wal_record_object(&setup.config.app, db, &name))
                            .await
                            .map_err(backup_err)?;
                    }
                }
                deleted.push(format!("{db}/{name}"));
            }
        }
        Ok(deleted)
    }

    /// `backup restore DB --at TIME`.
    pub async fn restore_at(
        &self,
        deployer: &Deployer,
        database: Option<&str>,
        at: &str,
        identity: Option<&str>,
        requested_by: &str,
        sink: Sink<'_>,
    ) -> Result<RestoreReport> {
        let _busy = self.busy.lock().await;
        let _wal = self.wal.lock().await;
        let say = |m: String| {
            sink(Progress {
                step: "restore".into(),
                message: m,
                service: None,
            })
        };
        let setup = self.setup()?;
        let b = setup.backups();
        let db = match database {
            Some(d) if b.pitr.iter().any(|p| p == d) => d.to_string(),
            Some(d) => {
                return Err(AgentError::usage(format!(
                    "database `{d}` has no point-in-time recovery: add it to `pitr` in [backups] (the databases with it: {})",
                    if b.pitr.is_empty() { "none".to_string() } else { b.pitr.join(", ") }
                )))
            }
            None if b.pitr.len() == 1 => b.pitr[0].clone(),
            None => {
                return Err(AgentError::usage(format!(
                    "name the database to restore: {}",
                    if b.pitr.is_empty() {
                        "none has point-in-time recovery (`pitr` in [backups])".to_string()
                    } else {
                        b.pitr.join(", ")
                    }
                )))
            }
        };
        let target_time = pitr::parse_time(at).ok_or_else(|| {
            AgentError::usage(format!(
                "--at {at:?} is not a time: write RFC 3339, e.g. 2026-12-06T10:15:00Z"
            ))
        })?;
        if target_time > crate::clock::utc() {
            return Err(AgentError::usage(format!(
                "--at {at} is in the future; the newest moment to restore to is now"
            )));
        }
        let decryption = setup.decryption(identity)?;
        let rt = self.runtimes.containers().await?;
        let d = setup.docker(&rt);
        let conn = self.pitr_conn(&setup, &rt, &db).await?;
        let data_dir = self.archiving(&setup, &d, &conn, &db).await?;

        // 1. The archive up to now: the current segment finished and shipped.
        say(format!("archiving the newest WAL of `{db}`"));
        live::switch_and_wait(&d, &conn).await.map_err(backup_err)?;
        self.ship_db(&setup, &rt, &db).await?;

        // 2. What the moment needs, fetched and checked before anything is touched.
        let bases = self.bases(&db)?;
        let records = self.wal_records(&setup, &db).await?;
        let all: Vec<WalRecord> = records.values().map(|(r, _)| r.clone()).collect();
        let refs: Vec<BaseRef> = bases.iter().map(|(b, _)| b.clone()).collect();
        let plan = pitr::plan(&refs, &all, Some(target_time)).map_err(|e| {
            AgentError::usage(format!(
                "cannot restore database `{db}` to {at}: {e}; nothing was touched"
            ))
        })?;
        let (_, manifest) = bases
            .iter()
            .find(|(b, _)| b.backup_id == plan.base)
            .ok_or_else(|| AgentError::internal("the planned base backup vanished"))?;
        let base_item = manifest
            .items
            .iter()
            .find(|i| i.source == db && i.kind == SourceKind::PostgresBase)
            .ok_or_else(|| AgentError::internal("the planned base backup has no item"))?;
        let scratch = self.layout.root().join("backup-scratch");
        say(format!(
            "fetching and checking base backup {} and {} WAL file(s)",
            plan.base,
            plan.files.len()
        ));
        let base = rst::fetch_any(&setup.targets, manifest, base_item, &scratch)
            .await
            .map_err(|e| self.refuse(&plan.base, e))?;
        base.open(&decryption)
            .map_err(|e| self.refuse(&plan.base, e))?;
        let mut wal = Vec::new();
        for name in &plan.files {
            let (record, holders) = &records[name];
            let mut last = None;
            let mut got = None;
            for &i in holders {
                let t = &setup.targets[i];
                match rst::fetch_object(
                    t,
                    &pitr::wal_object(&setup.config.app, &db, name),
                    &record.sha256,
                    &format!("WAL file {name}"),
                    &format!("wal-{db}-{name}"),
                    &scratch,
                )
                .await
                {
                    Ok(f) => {
                        got = Some(f);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let f = match (got, last) {
                (Some(f), _) => f,
                (None, Some(e)) => return Err(self.refuse(&plan.base, e)),
                (None, None) => {
                    return Err(AgentError::runtime(format!(
                        "no target holds WAL file {name}; nothing was touched"
                    )))
                }
            };
            f.open(&decryption)
                .map_err(|e| self.refuse(&plan.base, e))?;
            wal.push((name.clone(), f));
        }

        // 3. A safety backup of what is about to be replaced.
        say("taking a safety backup of the data being replaced".into());
        let s = self.run_locked("safety", Some(&db), sink).await?;
        if s.state != BackupState::Complete {
            return Err(AgentError::runtime(format!(
                "the safety backup before the restore failed ({}); nothing was restored: fix it and try again",
                s.message
            )));
        }
        let safety = s.id;

        // 4. Staged beside the live data, which still serves.
        let db_config = &setup.config.databases[&db];
        let id = dockhand_backup::manifest::new_id(crate::clock::utc());
        let mut journal = Journal {
            id: id.clone(),
            db: db.clone(),
            container: conn.container.clone(),
            image: db_config.image.clone(),
            volume: db_config.volume.clone(),
            data_dir: data_dir.clone(),
            user: conn.user.clone(),
            database: conn.database.clone(),
            phase: Phase::Staging,
        };
        self.write_journal(&journal)?;
        say(format!(
            "staging base backup {} and the WAL beside the live data",
            plan.base
        ));
        let dir = live::staging(&data_dir, &id);
        let staged = async {
            live::unpack_base(
                &d,
                &conn.container,
                &dir,
                dockhand_backup::sources::reader_feed(base.open(&decryption)?),
            )
            .await?;
            for (name, f) in &wal {
                live::put_wal(
                    &d,
                    &conn.container,
                    &dir,
                    name,
                    dockhand_backup::sources::reader_feed(f.open(&decryption)?),
                )
                .await?;
            }
            let settings =
                pitr::recovery_settings(live::RESTORE_WAL, Some(target_time), plan.timeline);
            live::arm_recovery(&d, &conn.container, &dir, &settings).await
        }
        .await;
        if let Err(e) = staged {
            let _ = live::discard_staging(&d, &conn.container, &data_dir, &id).await;
            self.clear_journal();
            return Err(self.refuse(&plan.base, e));
        }
        crash_point("pitr-staged");

        // 5. Maintenance, the database stopped, the staged data swapped in.
        say("maintenance: the routes answer 503 and the services stop".into());
        self.events.warn(
            EventKind::Backup,
            None,
            None,
            &format!(
                "point-in-time restore of database `{db}` to {at} started by {requested_by}: the app is in maintenance"
            ),
        );
        deployer.stop_for_maintenance().await;
        crash_point("pitr-maintenance");
        journal.phase = Phase::Swapping;
        self.write_journal(&journal)?;
        let replayed = async {
            say(format!("stopping database `{db}` and swapping the restored data in (the previous data is kept aside)"));
            rt.stop_container(&conn.container, Duration::from_secs(60))
                .await?;
            crash_point("pitr-stopped");
            live::swap(&d, &journal.image, &journal.volume, &id)
                .await
                .map_err(backup_err)?;
            crash_point("pitr-swapped");
            journal.phase = Phase::Recovering;
            self.write_journal(&journal)?;
            say(format!("replaying the WAL to {at}"));
            rt.start_container(&conn.container).await?;
            live::wait_promoted(&d, &conn, b.timeout.min(Duration::from_secs(3600)))
                .await
                .map_err(backup_err)?;
            let facts = dockhand_backup::sources::postgres::facts(&d, &conn)
                .await
                .map_err(backup_err)?;
            journal.phase = Phase::Recovered;
            self.write_journal(&journal)?;
            Ok::<_, AgentError>(facts)
        }
        .await;
        let facts = match replayed {
            Ok(f) => f,
            Err(e) => {
                say(format!(
                    "the restore failed ({e}); putting the previous data back"
                ));
                let back = roll_back(&rt, &d, &journal).await;
                if back.is_ok() {
                    self.clear_journal();
                }
                let _ = deployer.restart(sink).await;
                let message = match back {
                    Ok(()) => format!("point-in-time restore of database `{db}` to {at} failed: {e}; the previous data is back"),
                    Err(b) => format!("point-in-time restore of database `{db}` to {at} failed: {e}; putting the previous data back failed too ({b}): the safety backup {safety} holds it"),
                };
                self.events.error(EventKind::Backup, None, None, &message);
                return Err(AgentError::runtime(self.events.redactor().redact(&message)));
            }
        };
        crash_point("pitr-recovered");

        // 6. The restored database answered: the previous data goes, the app comes back.
        live::finish(&d, &conn, &data_dir, &id)
            .await
            .map_err(backup_err)?;
        self.clear_journal();
        crash_point("pitr-finished");
        say("starting the services again".into());
        let restarted = deployer.restart(sink).await;
        crash_point("pitr-restarted");
        restarted.map_err(|e| e.context("the restore is done but the app did not start again"))?;
        let rows: u64 = facts.counts.values().sum();
        let message = format!(
            "restored database `{db}` to {at} (base backup {} and {} WAL file(s) replayed): {} table(s), {rows} row(s)",
            plan.base,
            plan.files.len(),
            facts.counts.len()
        );
        self.events.info(EventKind::Restore, None, None, &message);
        Ok(RestoreReport {
            id: plan.base.clone(),
            restored: vec![db],
            safety_backup: Some(safety),
            message,
        })
    }
}

/// The previous data back: the database stopped, the swap undone, the database started.
async fn roll_back(rt: &ContainerRuntime, d: &Docker<'_>, j: &Journal) -> Result<()> {
    if j.phase == Phase::Staging {
        // Running already, unless the host restarted.
        let _ = rt.start_container(&j.container).await;
        wait_running(d, j).await;
        return live::discard_staging(d, &j.container, &j.data_dir, &j.id)
            .await
            .map_err(backup_err);
    }
    let _ = rt
        .stop_container(&j.container, Duration::from_secs(60))
        .await;
    live::rollback(d, &j.image, &j.volume, &j.id)
        .await
        .map_err(backup_err)?;
    rt.start_container(&j.container).await?;
    live::wait_promoted(d, &j.conn(), Duration::from_secs(300))
        .await
        .map_err(backup_err)
}

/// Waits (briefly) until the container answers an exec.
async fn wait_running(d: &Docker<'_>, j: &Journal) {
    let _ = live::wait_promoted(d, &j.conn(), Duration::from_secs(60)).await;
}

/// What a journal's steps act through (no helper image or network is needed).
fn journal_docker<'a>(rt: &'a ContainerRuntime, app: &'a str) -> Docker<'a> {
    Docker {
        rt,
        app,
        network: "",
        helper_image: "",
        timeout: Duration::from_secs(3600),
    }
}

fn backup_err(e: dockhand_backup::BackupError) -> AgentError {
    AgentError::runtime(e.to_string())
}
