//! Getting a backup back: fetch an object from a target (a local one is read in place; a
//! remote one is downloaded, still encrypted, to a private scratch file), check its SHA-256
//! against the record **before** anything is touched, then decrypt and decompress it as a
//! stream into its destination: a scratch copy for a drill, the live source for a restore.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::crypto::Decryption;
use crate::error::{BackupError, ErrorKind, Result};
use crate::manifest::{Item, Manifest, SourceKind};
use crate::sources::{self, postgres::Conn, Docker};
use crate::target::Target;

/// An object fetched and checked, as a local file.
pub struct Fetched {
    pub path: PathBuf,
    /// The target it came from.
    pub target: String,
    temp: bool,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Fetched {
    /// The plaintext: decrypted, then decompressed, as it is read.
    pub fn open(&self, d: &Decryption) -> Result<impl Read + Send + 'static> {
        let reader = crate::crypto::open_file(&self.path, d)?;
        zstd::stream::read::Decoder::new(reader)
            .map_err(|e| BackupError::environment(format!("zstd: {e}")))
    }
}

/// Fetches `item` of backup `manifest` from `target` and checks its checksum.
pub async fn fetch(
    target: &Target,
    manifest: &Manifest,
    item: &Item,
    scratch: &Path,
) -> Result<Fetched> {
    let rel = format!("{}/{}/{}", manifest.app, manifest.id, item.object);
    let local = format!("{}-{}", manifest.id, item.object);
    fetch_object(target, &rel, &item.sha256, &item.object, &local, scratch).await
}

/// Fetches object `rel` (called `label` in messages) from `target` into `scratch` (as
/// `local`, unless the target is a local directory) and checks it against `sha256`.
pub async fn fetch_object(
    target: &Target,
    rel: &str,
    sha256: &str,
    label: &str,
    local: &str,
    scratch: &Path,
) -> Result<Fetched> {
    let (path, temp) = match target.local_file(rel) {
        Some(p) if p.is_file() => (p, false),
        Some(p) => {
            return Err(BackupError::new(
                ErrorKind::Checksum,
                format!("{} is missing from target `{}`", p.display(), target.name),
            ))
        }
        None => {
            sources::scratch_dir(scratch)?;
            let p = scratch.join(local);
            let fetched = Fetched {
                path: p.clone(),
                target: target.name.clone(),
                temp: true,
            };
            target.download(rel, &p).await?;
            std::mem::forget(fetched);
            (p, true)
        }
    };
    let fetched = Fetched {
        path,
        target: target.name.clone(),
        temp,
    };
    let p = fetched.path.clone();
    let sum = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| BackupError::environment(e.to_string()))??;
    if sum != sha256 {
        return Err(BackupError::new(
            ErrorKind::Checksum,
            format!(
                "{label} on target `{}` does not match its checksum (SHA-256 {}, recorded {}): the stored object is damaged; nothing was restored from it",
                target.name, short(&sum), short(sha256)
            ),
        ));
    }
    Ok(fetched)
}

/// Fetches from the first of `targets` (in the item's order) that holds a good copy.
pub async fn fetch_any(
    targets: &[Target],
    manifest: &Manifest,
    item: &Item,
    scratch: &Path,
) -> Result<Fetched> {
    let mut errors = Vec::new();
    for name in &item.targets {
        let Some(t) = targets.iter().find(|t| &t.name == name) else {
            continue;
        };
        match fetch(t, manifest, item, scratch).await {
            Ok(f) => return Ok(f),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Err(BackupError::usage(format!(
            "no configured target holds {} (it was stored on {})",
            item.object,
            item.targets.join(", ")
        ))),
        1 => Err(errors.remove(0)),
        _ => {
            let kind = errors[0].kind;
            let all: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            Err(BackupError::new(kind, all.join("; ")))
        }
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| crate::error::io(format_args!("failed to open {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| crate::error::io(format_args!("failed to read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn short(sum: &str) -> &str {
    &sum[..sum.len().min(12)]
}

/// Where a restore puts an item back.
#[derive(Debug, Clone)]
pub enum Destination {
    Postgres(Conn),
    Redis {
        container: String,
    },
    /// MariaDB or MySQL: the item's kind says which client restores it.
    Mariadb(Conn),
    Mongodb(Conn),
    Sqlite {
        path: PathBuf,
    },
    Volume {
        name: String,
    },
    Directory {
        path: PathBuf,
    },
    /// Each of the app archive's names to a path.
    App {
        places: BTreeMap<String, PathBuf>,
    },
}

/// Puts a fetched item back into its live destination.
pub async fn restore_item(
    fetched: &Fetched,
    decryption: &Decryption,
    item: &Item,
    dest: &Destination,
    docker: Option<&Docker<'_>>,
    scratch: &Path,
    id: &str,
) -> Result<()> {
    let need =
        || docker.ok_or_else(|| BackupError::environment("this restore needs the Docker Engine"));
    let plain = fetched.open(decryption)?;
    match (item.kind, dest) {
        (SourceKind::Postgres, Destination::Postgres(conn)) => {
            sources::postgres::restore(need()?, conn, sources::reader_feed(plain)).await
        }
        (SourceKind::PostgresGlobals, Destination::Postgres(conn)) => {
            sources::postgres::restore_globals(need()?, conn, sources::reader_feed(plain)).await
        }
        (SourceKind::Redis, Destination::Redis { container }) => {
            sources::redis::restore(need()?, container, sources::reader_feed(plain)).await
        }
        (SourceKind::Mariadb, Destination::Mariadb(conn)) => {
            let flavor = sources::mariadb::Flavor::Mariadb;
            sources::mariadb::restore(need()?, flavor, conn, sources::reader_feed(plain)).await
        }
        (SourceKind::Mysql, Destination::Mariadb(conn)) => {
            let flavor = sources::mariadb::Flavor::Mysql;
            sources::mariadb::restore(need()?, flavor, conn, sources::reader_feed(plain)).await
        }
        (SourceKind::Mongodb, Destination::Mongodb(conn)) => {
            sources::mongodb::restore(need()?, conn, sources::reader_feed(plain)).await
        }
        (SourceKind::Volume, Destination::Volume { name }) => {
            sources::volume::restore(need()?, name, id, sources::reader_feed(plain)).await
        }
        (SourceKind::Sqlite, Destination::Sqlite { path }) => {
            let dir = path.parent().unwrap_or(scratch).to_path_buf();
            let tmp = dir.join(format!(
                ".{}.dockhand-restore",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("db")
            ));
            let live = path.clone();
            tokio::task::spawn_blocking(move || {
                let r = write_private(plain, &tmp)
                    .and_then(|_| sources::sqlite::check(&tmp))
                    .and_then(|_| sources::sqlite::replace(&tmp, &live));
                if r.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                r
            })
            .await
            .map_err(|e| BackupError::environment(e.to_string()))?
        }
        (SourceKind::Directory, Destination::Directory { path }) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || sources::files::restore_dir(plain, &path))
                .await
                .map_err(|e| BackupError::environment(e.to_string()))?
        }
        (SourceKind::App, Destination::App { places }) => {
            let places = places.clone();
            tokio::task::spawn_blocking(move || {
                sources::files::restore_app(plain, &places).map(|_| ())
            })
            .await
            .map_err(|e| BackupError::environment(e.to_string()))?
        }
        (SourceKind::PostgresBase, _) => Err(BackupError::usage(format!(
            "{} is a base backup for point-in-time recovery: restore it with `--at TIME`",
            item.object
        ))),
        (kind, dest) => Err(BackupError::usage(format!(
            "a {} backup cannot be restored into {dest:?}",
            kind.as_str()
        ))),
    }
}

/// Where [`extract_item`] puts `item` in `dir`: the archive's tree for the tar kinds (a
/// directory named after the source), else the plaintext file (`db.pgdump`, `cache.rdb`).
pub fn extract_path(item: &Item, dir: &Path) -> PathBuf {
    match item.kind {
        SourceKind::Volume | SourceKind::Directory | SourceKind::App => dir.join(&item.source),
        _ => dir.join(item.object.strip_suffix(".zst.age").unwrap_or(&item.object)),
    }
}

/// Writes a fetched item's plaintext into `dir` instead of its live destination (`backup
/// restore ID --to DIR`): a database's dump as its engine's tools read it, a tar archive
/// unpacked. Refuses a path that exists; writes under a hidden name and renames it into place
/// once whole, so a failure leaves nothing that looks like a restored copy. Blocking.
pub fn extract_item(
    fetched: &Fetched,
    decryption: &Decryption,
    item: &Item,
    dir: &Path,
) -> Result<PathBuf> {
    let to = extract_path(item, dir);
    // A manifest names its sources; a name that would leave `dir` is not one of ours.
    if to.parent() != Some(dir) {
        return Err(BackupError::restore(format!(
            "backup item `{}` has a name that is not a plain file name; nothing was written",
            item.source
        )));
    }
    if to.symlink_metadata().is_ok() {
        return Err(BackupError::usage(format!(
            "{} already exists: --to never overwrites; name an empty or new directory",
            to.display()
        )));
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.dockhand-extract"));
    let plain = fetched.open(decryption)?;
    let tree = matches!(
        item.kind,
        SourceKind::Volume | SourceKind::Directory | SourceKind::App
    );
    let written = if tree {
        let _ = std::fs::remove_dir_all(&tmp);
        sources::files::restore_dir(plain, &tmp)
    } else {
        write_private(plain, &tmp)
    };
    let placed = written.and_then(|_| {
        std::fs::rename(&tmp, &to)
            .map_err(|e| crate::error::io(format_args!("failed to create {}", to.display()), e))
    });
    if let Err(e) = placed {
        if tree {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e);
    }
    Ok(to)
}

fn write_private(mut reader: impl Read, path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::error::io(format_args!("failed to create {}", path.display()), e))?;
    std::io::copy(&mut reader, &mut f)
        .map_err(|e| crate::error::io(format_args!("failed to write {}", path.display()), e))?;
    f.sync_all()
        .map_err(|e| crate::error::io(format_args!("failed to write {}", path.display()), e))
}

/// What a restore drill found for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillResult {
    pub source: String,
    pub object: String,
    pub target: String,
    /// `Ok(what was checked)` or why it failed.
    pub outcome: std::result::Result<String, String>,
}

/// Drills one item on one target: fetch, checksum, decrypt, restore into a throwaway copy,
/// the engine's checks, and row counts against the record.
pub async fn drill_item(
    target: &Target,
    manifest: &Manifest,
    item: &Item,
    decryption: &Decryption,
    docker: Option<&Docker<'_>>,
    scratch: &Path,
) -> DrillResult {
    let outcome = drill_inner(target, manifest, item, decryption, docker, scratch)
        .await
        .map_err(|e| e.message);
    DrillResult {
        source: item.source.clone(),
        object: item.object.clone(),
        target: target.name.clone(),
        outcome,
    }
}

async fn drill_inner(
    target: &Target,
    manifest: &Manifest,
    item: &Item,
    decryption: &Decryption,
    docker: Option<&Docker<'_>>,
    scratch: &Path,
) -> Result<String> {
    let fetched = fetch(target, manifest, item, scratch).await?;
    let plain = fetched.open(decryption)?;
    let need =
        || docker.ok_or_else(|| BackupError::environment("this drill needs the Docker Engine"));
    let drill_id = format!("{}-{}", manifest.id, item.source);
    let counts = match item.kind {
        SourceKind::Postgres => {
            let d = need()?;
            let like = Conn {
                container: String::new(),
                host: String::new(),
                user: item.user.clone().unwrap_or_else(|| "postgres".into()),
                database: item.database.clone().unwrap_or_else(|| "postgres".into()),
                password: String::new(),
            };
            let scratch_db =
                sources::postgres::Scratch::start(d, &item.image, &like, &drill_id).await?;
            let result = async {
                if let Some(globals) = manifest
                    .items
                    .iter()
                    .find(|i| i.source == item.source && i.kind == SourceKind::PostgresGlobals)
                {
                    let g = fetch(target, manifest, globals, scratch).await?;
                    let sql = g.open(decryption)?;
                    sources::postgres::restore_globals(
                        d,
                        &scratch_db.conn,
                        sources::reader_feed(sql),
                    )
                    .await?;
                }
                scratch_db.restore(d, sources::reader_feed(plain)).await?;
                Ok::<_, BackupError>(sources::postgres::facts(d, &scratch_db.conn).await?.counts)
            }
            .await;
            scratch_db.remove(d).await;
            result?
        }
        // Checked with its dump; restored with it.
        SourceKind::PostgresGlobals => {
            let mut sql = String::new();
            let mut plain = plain;
            plain.read_to_string(&mut sql).map_err(|e| {
                BackupError::new(
                    ErrorKind::Decrypt,
                    format!("reading the globals failed: {e}"),
                )
            })?;
            return Ok("decrypted".into());
        }
        SourceKind::PostgresBase => {
            drop(plain);
            let d = need()?;
            return drill_chain(
                d, target, manifest, item, &fetched, decryption, scratch, &drill_id,
            )
            .await;
        }
        SourceKind::Mariadb | SourceKind::Mysql => {
            let d = need()?;
            let flavor = if item.kind == SourceKind::Mysql {
                sources::mariadb::Flavor::Mysql
            } else {
                sources::mariadb::Flavor::Mariadb
            };
            let like = Conn {
                container: String::new(),
                host: String::new(),
                user: item.user.clone().unwrap_or_else(|| "root".into()),
                database: item.database.clone().unwrap_or_default(),
                password: String::new(),
            };
            let scratch_db =
                sources::mariadb::Scratch::start(d, flavor, &item.image, &like, &drill_id).await?;
            let result = async {
                scratch_db.restore(d, sources::reader_feed(plain)).await?;
                Ok::<_, BackupError>(scratch_db.facts(d).await?.counts)
            }
            .await;
            scratch_db.remove(d).await;
            result?
        }
        SourceKind::Mongodb => {
            let d = need()?;
            let like = Conn {
                container: String::new(),
                host: String::new(),
                user: item.user.clone().unwrap_or_else(|| "root".into()),
                database: item.database.clone().unwrap_or_default(),
                password: String::new(),
            };
            let scratch_db =
                sources::mongodb::Scratch::start(d, &item.image, &like, &drill_id).await?;
            let result = async {
                scratch_db.restore(d, sources::reader_feed(plain)).await?;
                Ok::<_, BackupError>(sources::mongodb::facts(d, &scratch_db.conn).await?.counts)
            }
            .await;
            scratch_db.remove(d).await;
            result?
        }
        SourceKind::Redis => {
            sources::redis::drill(need()?, &item.image, &drill_id, sources::reader_feed(plain))
                .await?
        }
        SourceKind::Sqlite => {
            sources::scratch_dir(scratch)?;
            let tmp = scratch.join(format!("drill-{drill_id}.sqlite3"));
            let t = tmp.clone();
            let r = tokio::task::spawn_blocking(move || {
                write_private(plain, &t).and_then(|_| sources::sqlite::check(&t))
            })
            .await
            .map_err(|e| BackupError::environment(e.to_string()))?;
            let _ = std::fs::remove_file(&tmp);
            r?
        }
        SourceKind::Volume | SourceKind::Directory | SourceKind::App => {
            tokio::task::spawn_blocking(move || sources::files::check_tar(plain))
                .await
                .map_err(|e| BackupError::environment(e.to_string()))??
        }
    };
    let diff = sources::compare_counts(&item.counts, &counts);
    if !diff.is_empty() {
        return Err(BackupError::restore(format!(
            "the restored copy differs from the record: {}",
            diff.join("; ")
        )));
    }
    let rows: u64 = counts.values().sum();
    Ok(match item.kind {
        SourceKind::Postgres | SourceKind::Mariadb | SourceKind::Mysql => format!(
            "restored into a scratch {} and compared {} table(s), {rows} row(s)",
            item.image,
            counts.len()
        ),
        SourceKind::Mongodb => format!(
            "restored into a scratch {} and compared {} collection(s), {rows} document(s)",
            item.image,
            counts.len()
        ),
        SourceKind::Redis => format!(
            "loaded into a scratch {} and compared {rows} key(s)",
            item.image
        ),
        SourceKind::Sqlite => format!(
            "integrity_check ok, {} table(s), {rows} row(s)",
            counts.len()
        ),
        _ => format!("archive read whole, {rows} file(s)"),
    })
}

/// The WAL files of `plan` fetched from `target` and checked against their records, in
/// order: a missing or damaged one fails before anything is touched.
pub async fn fetch_wal(
    target: &Target,
    app: &str,
    db: &str,
    plan: &crate::pitr::Plan,
    records: &[crate::pitr::WalRecord],
    scratch: &Path,
) -> Result<Vec<(String, Fetched)>> {
    let mut out = Vec::new();
    for name in &plan.files {
        let Some(r) = records.iter().find(|r| &r.name == name) else {
            return Err(BackupError::new(
                ErrorKind::Checksum,
                format!("WAL file {name} has no record on target `{}`", target.name),
            ));
        };
        let rel = crate::pitr::wal_object(app, db, name);
        let f = fetch_object(
            target,
            &rel,
            &r.sha256,
            &format!("WAL file {name}"),
            &format!("wal-{db}-{name}"),
            scratch,
        )
        .await?;
        out.push((name.clone(), f));
    }
    Ok(out)
}

/// Drills a base backup with its WAL: a scratch server replays all of it and promotes.
#[allow(clippy::too_many_arguments)]
async fn drill_chain(
    d: &Docker<'_>,
    target: &Target,
    manifest: &Manifest,
    item: &Item,
    fetched: &Fetched,
    decryption: &Decryption,
    scratch: &Path,
    drill_id: &str,
) -> Result<String> {
    use crate::pitr::{self, live};
    let records = live::records(target, &manifest.app, &item.source).await?;
    let base = pitr::BaseRef {
        backup_id: manifest.id.clone(),
        finished_at: pitr::parse_time(&item.finished_at).unwrap_or_default(),
        wal_start: item.wal_start.clone().unwrap_or_default(),
    };
    let plan = pitr::plan(&[base], &records, None).map_err(BackupError::restore)?;
    let wal = fetch_wal(
        target,
        &manifest.app,
        &item.source,
        &plan,
        &records,
        scratch,
    )
    .await?;
    let like = Conn {
        container: String::new(),
        host: String::new(),
        user: item.user.clone().unwrap_or_else(|| "postgres".into()),
        database: item.database.clone().unwrap_or_else(|| "postgres".into()),
        password: String::new(),
    };
    let drill = live::Drill::start(d, &item.image, &like, drill_id).await?;
    let result = async {
        let dir = drill.data_dir().to_string();
        live::unpack_base(
            d,
            &drill.container,
            &dir,
            sources::reader_feed(fetched.open(decryption)?),
        )
        .await?;
        for (name, f) in &wal {
            live::put_wal(
                d,
                &drill.container,
                &dir,
                name,
                sources::reader_feed(f.open(decryption)?),
            )
            .await?;
        }
        let settings = pitr::recovery_settings(live::RESTORE_WAL, None, plan.timeline);
        live::arm_recovery(d, &drill.container, &dir, &settings).await?;
        drill.replay(d.timeout).await
    }
    .await;
    drill.remove().await;
    let counts = result?;
    let rows: u64 = counts.values().sum();
    let segments = plan
        .files
        .iter()
        .filter(|f| !f.ends_with(".history"))
        .count();
    Ok(format!(
        "base backup and {segments} WAL segment(s){} replayed in a scratch {}: {} table(s), {rows} row(s)",
        plan.reaches
            .map(|t| format!(" (to {})", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .unwrap_or_default(),
        item.image,
        counts.len()
    ))
}
