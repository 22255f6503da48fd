//! Taking a backup: each source in turn is dumped and streamed through the pipeline to every
//! target, judged (exit code, engine errors on stderr, the format's first bytes, a plausible
//! size for what the source holds) and only then completed — or aborted, leaving nothing. The
//! manifest is written last, beside the objects.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::crypto::Encryption;
use crate::error::{BackupError, ErrorKind, Result};
use crate::manifest::{object_name, Item, Manifest, SourceKind, MANIFEST};
use crate::sources::{self, files::AppFile, postgres::Conn, Docker, Dump, Facts};
use crate::target::Target;

/// One thing to back up.
#[derive(Debug, Clone)]
pub enum Source {
    Postgres {
        name: String,
        conn: Conn,
        image: String,
        /// Point-in-time recovery is on: a base backup (`pg_basebackup`) is taken too.
        base: bool,
    },
    Redis {
        name: String,
        container: String,
        image: String,
    },
    /// MariaDB or MySQL (the flavor says which).
    Mariadb {
        name: String,
        conn: Conn,
        image: String,
        flavor: sources::mariadb::Flavor,
    },
    Mongodb {
        name: String,
        conn: Conn,
        image: String,
    },
    Sqlite {
        name: String,
        path: PathBuf,
    },
    Volume {
        name: String,
    },
    Directory {
        name: String,
        path: PathBuf,
    },
    App {
        files: Vec<AppFile>,
    },
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Postgres { name, .. }
            | Source::Redis { name, .. }
            | Source::Mariadb { name, .. }
            | Source::Mongodb { name, .. }
            | Source::Sqlite { name, .. }
            | Source::Volume { name }
            | Source::Directory { name, .. } => name,
            Source::App { .. } => "app",
        }
    }

    /// Whether dumping it needs the Docker Engine.
    pub fn needs_docker(&self) -> bool {
        matches!(
            self,
            Source::Postgres { .. }
                | Source::Redis { .. }
                | Source::Mariadb { .. }
                | Source::Mongodb { .. }
                | Source::Volume { .. }
        )
    }
}

/// A backup to take.
pub struct Job<'a> {
    pub app: &'a str,
    pub id: &'a str,
    pub trigger: &'a str,
    pub sources: &'a [Source],
    pub encryption: &'a Encryption,
    pub targets: &'a [Target],
    /// A private directory for staged SQLite copies.
    pub scratch: PathBuf,
    pub docker: Option<Docker<'a>>,
}

/// What taking a backup did.
pub struct Taken {
    pub manifest: Manifest,
    /// Sources that failed, and why.
    pub failed: Vec<(String, BackupError)>,
    /// Targets that failed for some object (the object may be on another target).
    pub target_failures: Vec<(String, BackupError)>,
}

/// Takes the backup; `progress` hears each step.
pub async fn take(job: &Job<'_>, progress: &(dyn Fn(String) + Send + Sync)) -> Taken {
    let started_at = now();
    let mut items = Vec::new();
    let mut failed = Vec::new();
    let mut target_failures = Vec::new();
    for source in job.sources {
        progress(format!("backing up {}", source.name()));
        match one(job, source, &mut target_failures).await {
            Ok(mut got) => {
                for item in &got {
                    progress(format!(
                        "{}: {} dumped, {} stored on {}",
                        item.source,
                        human_bytes(item.raw_bytes),
                        human_bytes(item.stored_bytes),
                        item.targets.join(", ")
                    ));
                }
                items.append(&mut got);
            }
            Err(e) => {
                progress(format!("{}: failed: {e}", source.name()));
                failed.push((source.name().to_string(), e));
            }
        }
    }
    let manifest = Manifest {
        format: Manifest::FORMAT,
        app: job.app.to_string(),
        id: job.id.to_string(),
        started_at,
        finished_at: now(),
        trigger: job.trigger.to_string(),
        encryption: match job.encryption {
            Encryption::Recipients(_) => "age-x25519".into(),
            Encryption::Passphrase(_) => "age-scrypt".into(),
        },
        items,
    };
    if failed.is_empty() {
        let json = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap_or_default());
        let rel = format!("{}/{}/{MANIFEST}", job.app, job.id);
        for t in job.targets {
            if let Err(e) = t.put_small(&rel, json.clone()).await {
                target_failures.push((t.name.clone(), e));
            }
        }
    }
    Taken {
        manifest,
        failed,
        target_failures,
    }
}

async fn one(
    job: &Job<'_>,
    source: &Source,
    target_failures: &mut Vec<(String, BackupError)>,
) -> Result<Vec<Item>> {
    let docker = || {
        job.docker.clone().ok_or_else(|| {
            BackupError::environment(format!(
                "backing up `{}` needs the Docker Engine",
                source.name()
            ))
        })
    };
    let mut out = Vec::new();
    match source {
        Source::Postgres {
            name,
            conn,
            image,
            base,
        } => {
            let d = docker()?;
            // Counted in the snapshot the dump is taken of, while it is dumped.
            let (snapshot, mut held) = sources::postgres::snapshot(&d, conn).await?;
            let stored = match sources::postgres::dump(&d, conn, Some(&snapshot)).await {
                Ok(dump) => {
                    let facts = async {
                        let mut facts = held.facts().await?;
                        facts.image = image.clone();
                        Ok(facts)
                    };
                    store_with(job, name, facts, dump, target_failures).await
                }
                Err(e) => Err(e),
            };
            held.release().await;
            let mut item = stored?;
            item.user = Some(conn.user.clone());
            item.database = Some(conn.database.clone());
            out.push(item);
            let globals = sources::postgres::dump_globals(&d, conn).await?;
            let facts = Facts {
                version: out[0].version.clone(),
                image: image.clone(),
                ..Facts::default()
            };
            out.push(store(job, name, facts, globals, target_failures).await?);
            if *base {
                let mut facts = crate::pitr::live::base_facts(&d, conn).await?;
                facts.image = image.clone();
                let (wal_start, dump) = crate::pitr::live::base_backup(&d, conn).await?;
                let mut item = store(job, name, facts, dump, target_failures).await?;
                item.user = Some(conn.user.clone());
                item.database = Some(conn.database.clone());
                item.wal_start = Some(wal_start);
                out.push(item);
            }
        }
        Source::Redis {
            name,
            container,
            image,
        } => {
            let d = docker()?;
            let mut facts = sources::redis::facts(&d, container).await?;
            facts.image = image.clone();
            let dump = sources::redis::dump(&d, container).await?;
            out.push(store(job, name, facts, dump, target_failures).await?);
        }
        Source::Mariadb {
            name,
            conn,
            image,
            flavor,
        } => {
            let d = docker()?;
            let mut facts = sources::mariadb::facts(&d, *flavor, conn).await?;
            facts.image = image.clone();
            let dump = sources::mariadb::dump(&d, *flavor, conn).await?;
            let mut item = store(job, name, facts, dump, target_failures).await?;
            item.user = Some(conn.user.clone());
            item.database = Some(conn.database.clone());
            out.push(item);
        }
        Source::Mongodb { name, conn, image } => {
            let d = docker()?;
            let mut facts = sources::mongodb::facts(&d, conn).await?;
            facts.image = image.clone();
            let dump = sources::mongodb::dump(&d, conn).await?;
            let mut item = store(job, name, facts, dump, target_failures).await?;
            item.user = Some(conn.user.clone());
            item.database = Some(conn.database.clone());
            out.push(item);
        }
        Source::Sqlite { name, path } => {
            sources::scratch_dir(&job.scratch)?;
            let copy = job.scratch.join(format!("{}-{name}.sqlite3", job.id));
            let (p, c) = (path.clone(), copy.clone());
            let facts = tokio::task::spawn_blocking(move || {
                let r = sources::sqlite::snapshot(&p, &c);
                if r.is_err() {
                    sources::sqlite::discard(&c);
                }
                r
            })
            .await
            .map_err(|e| BackupError::environment(e.to_string()))??;
            let dump = sources::sqlite::dump(copy);
            out.push(store(job, name, facts, dump, target_failures).await?);
        }
        Source::Volume { name } => {
            let d = docker()?;
            let (facts, dump) = sources::volume::dump(&d, name, job.id).await?;
            out.push(store(job, name, facts, dump, target_failures).await?);
        }
        Source::Directory { name, path } => {
            let (facts, dump) = sources::files::dump_dir(path)?;
            out.push(store(job, name, facts, dump, target_failures).await?);
        }
        Source::App { files } => {
            let (facts, dump) = sources::files::dump_app(files.clone())?;
            out.push(store(job, "app", facts, dump, target_failures).await?);
        }
    }
    Ok(out)
}

/// Streams one dump to the targets and judges it before completing the object.
async fn store(
    job: &Job<'_>,
    name: &str,
    facts: Facts,
    dump: Dump,
    target_failures: &mut Vec<(String, BackupError)>,
) -> Result<Item> {
    store_with(job, name, async { Ok(facts) }, dump, target_failures).await
}

/// [`store`] with the source's facts still being gathered (while the dump streams): they are
/// awaited before the dump is judged.
async fn store_with(
    job: &Job<'_>,
    name: &str,
    facts: impl std::future::Future<Output = Result<Facts>>,
    dump: Dump,
    target_failures: &mut Vec<(String, BackupError)>,
) -> Result<Item> {
    let started_at = now();
    let kind = dump.kind;
    let object = object_name(name, kind);
    let rel = format!("{}/{}/{object}", job.app, job.id);
    // Keep the first bytes to check the format's magic (a SQL dump's header comment comes
    // after a line of session settings).
    const HEAD: usize = 128;
    let (head_tx, head_rx) = oneshot::channel::<Vec<u8>>();
    let (tx, rx) = crate::pipeline::feed();
    let mut bytes = dump.bytes;
    let tap = tokio::spawn(async move {
        let mut head_tx = Some(head_tx);
        let mut head = Vec::new();
        while let Some(chunk) = bytes.recv().await {
            if let (Some(_), Ok(b)) = (&head_tx, &chunk) {
                head.extend_from_slice(&b[..b.len().min(HEAD - head.len().min(HEAD))]);
                if head.len() >= HEAD {
                    let _ = head_tx.take().map(|t| t.send(std::mem::take(&mut head)));
                }
            }
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        if let Some(t) = head_tx {
            let _ = t.send(head);
        }
    });
    let (stored, facts) = tokio::join!(
        crate::pipeline::store(rx, job.encryption, job.targets, &rel),
        facts
    );
    let ending = dump.ending.await;
    let _ = tap.await;
    let head = head_rx.await.unwrap_or_default();
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            if let Ok(p) = stored {
                p.abort().await;
            }
            return Err(e);
        }
    };
    let pending = match stored {
        Ok(p) => p,
        Err(e) => {
            // The dump's own failure says more than "the pipe broke".
            return Err(match ending {
                Err(why) if e.kind != ErrorKind::Target => BackupError::source(why),
                _ => e,
            });
        }
    };
    let verdict = match ending {
        Err(why) => Some(why),
        Ok(()) => crate::checks::implausible(kind, pending.sealed.raw_bytes, &facts.counts)
            .or_else(|| {
                (!crate::checks::magic_ok(kind, &head))
                    .then(|| format!("the dump does not start like a {} dump", kind.as_str()))
            }),
    };
    if let Some(why) = verdict {
        pending.abort().await;
        return Err(BackupError::source(why));
    }
    let sealed = pending.sealed.clone();
    let (ok, failed) = pending.commit().await;
    if ok.is_empty() {
        let why: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        return Err(BackupError::target(format!(
            "no target took the backup ({})",
            why.join("; ")
        )));
    }
    target_failures.extend(failed);
    Ok(Item {
        source: name.to_string(),
        kind,
        object,
        version: facts.version,
        image: facts.image,
        raw_bytes: sealed.raw_bytes,
        stored_bytes: sealed.stored_bytes,
        user: None,
        database: None,
        sha256: sealed.sha256,
        source_bytes: facts.source_bytes,
        counts: if kind == SourceKind::PostgresGlobals {
            Default::default()
        } else {
            facts.counts
        },
        targets: ok,
        started_at,
        finished_at: now(),
        wal_start: None,
    })
}

/// The current time, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
