//! Point-in-time recovery against the containers: turning WAL archiving on (`ALTER SYSTEM`,
//! so the container itself stays as it was created), shipping the spool, base backups, and
//! the steps of a restore to a moment — staged beside the live data while it still serves,
//! swapped in while the database is stopped (the previous data moved aside, not deleted),
//! replayed, and either finished (the previous data removed) or rolled back (put back).
//!
//! Every command that touches the data directory runs as the `postgres` account of the
//! image, connecting over the local socket (the official image's `pg_hba.conf` trusts local
//! connections, which replication — `pg_basebackup` — needs; the app's password stays in the
//! environment either way).

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec, Mount};
use tokio::sync::mpsc;

use super::{parse_wal_name, wal_object, wal_record_object, WalFile, WalRecord};
use crate::crypto::Encryption;
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;
use crate::sources::postgres::Conn;
use crate::sources::{exec_dump, exec_restore, exec_text, Docker, Dump};
use crate::target::Target;

/// The spool directory, relative to the data directory (the archiver's working directory).
pub const SPOOL: &str = "dockhand_wal_spool";
/// Where a restore stages the WAL its recovery replays, relative to the data directory.
pub const RESTORE_WAL: &str = "dockhand_wal_restore";
/// The image's account that owns the data directory.
const OS_USER: &str = "postgres";
/// The server's socket directory in the official image (and ours).
const SOCKET: &str = "/var/run/postgresql";
/// Where a helper container mounts the data volume.
const MOUNT: &str = "/dockhand-data";
const SHORT: Duration = Duration::from_secs(120);

/// The `archive_command`: copy the finished file into the spool under a temporary name,
/// then rename it, so the agent never ships half a file.
pub fn archive_command() -> String {
    format!("mkdir -p {SPOOL} && cp %p {SPOOL}/.%f.tmp && mv {SPOOL}/.%f.tmp {SPOOL}/%f")
}

/// The environment of a local-socket session as the app's account.
fn local_env(conn: &Conn) -> Vec<(String, String)> {
    vec![
        ("PGHOST".into(), SOCKET.into()),
        ("PGUSER".into(), conn.user.clone()),
        ("PGDATABASE".into(), conn.database.clone()),
        ("PGPASSWORD".into(), conn.password.clone()),
        ("PGCONNECT_TIMEOUT".into(), "10".into()),
    ]
}

/// Runs each statement in its own transaction (`ALTER SYSTEM` refuses a transaction block).
async fn psql(d: &Docker<'_>, conn: &Conn, statements: &[&str]) -> Result<String> {
    let mut cmd = vec!["psql", "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1"];
    for s in statements {
        cmd.push("-c");
        cmd.push(*s);
    }
    exec_text(
        d.rt,
        &conn.container,
        &cmd,
        &local_env(conn),
        Some(OS_USER),
        SHORT,
    )
    .await
    .map_err(|e| e.context(format_args!("database `{}`", conn.database)))
}

/// Runs a shell script as the data directory's owner; `args` are `$1`….
async fn sh(
    d: &Docker<'_>,
    container: &str,
    user: Option<&str>,
    script: &str,
    args: &[&str],
) -> Result<String> {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(args);
    exec_text(d.rt, container, &cmd, &[], user, SHORT).await
}

/// What [`ensure_archiving`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archiving {
    /// The server's data directory (`data_directory`).
    pub data_dir: String,
    /// Settings were changed that take effect only when the server restarts
    /// (`archive_mode`, `wal_level`).
    pub restart_needed: bool,
    /// Settings were changed at all.
    pub changed: bool,
}

/// Turns WAL archiving into the spool on (or keeps it on), with `archive_timeout`.
pub async fn ensure_archiving(
    d: &Docker<'_>,
    conn: &Conn,
    archive_timeout: Duration,
) -> Result<Archiving> {
    let text = psql(
        d,
        conn,
        &["SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout', 'wal_level', 'data_directory')"],
    )
    .await?;
    let settings: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let get = |k: &str| settings.get(k).copied().unwrap_or("").trim().to_string();
    let data_dir = get("data_directory");
    if data_dir.is_empty() {
        return Err(BackupError::source(format!(
            "database `{}`: PostgreSQL did not say where its data directory is",
            conn.database
        )));
    }
    let command = archive_command();
    let timeout = archive_timeout.as_secs().max(1);
    let mut statements = Vec::new();
    let mut restart_needed = false;
    if get("archive_command") != command {
        statements.push(format!("ALTER SYSTEM SET archive_command = '{command}'"));
    }
    if get("archive_timeout") != timeout.to_string() {
        statements.push(format!("ALTER SYSTEM SET archive_timeout = {timeout}"));
    }
    if !matches!(get("archive_mode").as_str(), "on" | "always") {
        statements.push("ALTER SYSTEM SET archive_mode = 'on'".into());
        restart_needed = true;
    }
    if get("wal_level") == "minimal" {
        statements.push("ALTER SYSTEM SET wal_level = 'replica'".into());
        restart_needed = true;
    }
    let changed = !statements.is_empty();
    if changed {
        statements.push("SELECT pg_reload_conf()".into());
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        psql(d, conn, &refs).await?;
    }
    Ok(Archiving {
        data_dir,
        restart_needed,
        changed,
    })
}

/// Makes the server finish its current WAL segment (with a commit in it, so a restore to any
/// earlier moment has a record after that moment to stop at) and waits until the archiver
/// has put it into the spool.
pub async fn switch_and_wait(d: &Docker<'_>, conn: &Conn) -> Result<()> {
    let out = psql(
        d,
        conn,
        &[
            "SELECT txid_current()",
            "SELECT pg_walfile_name(pg_switch_wal())",
        ],
    )
    .await?;
    let Some(segment) = out.lines().last().map(|l| l.trim().to_string()) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = psql(
            d,
            conn,
            &["SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver"],
        )
        .await?;
        let (archived, failed) = last.trim().split_once('\t').unwrap_or((last.trim(), ""));
        // Names of one timeline sort by position.
        if archived.len() >= 24 && archived[..24] >= *segment.as_str() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BackupError::source(format!(
                "database `{}`: WAL segment {segment} was not archived within 60s{}",
                conn.database,
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" (the archiver failed on {failed}: see the database's log)")
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The WAL files waiting in the spool, oldest first.
pub async fn spooled(d: &Docker<'_>, conn: &Conn, data_dir: &str) -> Result<Vec<String>> {
    let out = sh(
        d,
        &conn.container,
        Some(OS_USER),
        "ls -1 \"$1\" 2>/dev/null || true",
        &[&format!("{data_dir}/{SPOOL}")],
    )
    .await?;
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|n| parse_wal_name(n).is_some())
        .map(str::to_string)
        .collect();
    // History files first (a timeline's history before its segments), then by name.
    names.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    Ok(names)
}

/// Where a shipment went.
pub struct Shipped {
    pub record: WalRecord,
    /// Targets that failed (the file is on at least one other).
    pub failed: Vec<(String, BackupError)>,
}

/// Ships one spooled WAL file to every target (object, then its record) and removes it from
/// the spool. The spool keeps a file no target took, so the next round tries again.
pub async fn ship(
    d: &Docker<'_>,
    conn: &Conn,
    data_dir: &str,
    db: &str,
    name: &str,
    encryption: &Encryption,
    targets: &[Target],
) -> Result<Shipped> {
    let path = format!("{data_dir}/{SPOOL}/{name}");
    // Judged like a base backup's dump (PostgreSQL's words for an error).
    let dump = exec_dump(
        d.rt,
        SourceKind::PostgresBase,
        &conn.container,
        vec!["cat".into(), path.clone()],
        Vec::new(),
        Some(OS_USER),
        d.timeout,
    )
    .await?;
    let rel = wal_object(d.app, db, name);
    let stored = crate::pipeline::store(dump.bytes, encryption, targets, &rel).await;
    let ending = dump.ending.await;
    let pending = match (stored, ending) {
        (Ok(p), Ok(())) => p,
        (Ok(p), Err(why)) => {
            p.abort().await;
            return Err(BackupError::source(format!("WAL file {name}: {why}")));
        }
        (Err(e), _) => return Err(e.context(format_args!("WAL file {name}"))),
    };
    let raw = pending.sealed.raw_bytes;
    let plausible = match parse_wal_name(name) {
        Some(WalFile::Segment { .. }) => raw >= 1 << 20 && raw.is_multiple_of(1 << 20),
        _ => raw > 0,
    };
    if !plausible {
        pending.abort().await;
        return Err(BackupError::source(format!(
            "WAL file {name} is {raw} bytes: not a whole WAL file; it stays in the spool"
        )));
    }
    let sealed = pending.sealed.clone();
    let (ok, mut failed) = pending.commit().await;
    let record = WalRecord {
        name: name.to_string(),
        sha256: sealed.sha256,
        raw_bytes: sealed.raw_bytes,
        stored_bytes: sealed.stored_bytes,
        archived_at: crate::run::now(),
    };
    let json = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
    let mut recorded = 0;
    for t in targets.iter().filter(|t| ok.contains(&t.name)) {
        match t
            .put_small(&wal_record_object(d.app, db, name), json.clone())
            .await
        {
            Ok(()) => recorded += 1,
            Err(e) => failed.push((t.name.clone(), e)),
        }
    }
    if recorded == 0 {
        let why: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        return Err(BackupError::target(format!(
            "no target took WAL file {name} ({}); it stays in the spool",
            why.join("; ")
        )));
    }
    sh(d, &conn.container, Some(OS_USER), "rm -f \"$1\"", &[&path]).await?;
    Ok(Shipped { record, failed })
}

/// The WAL records stored on a target for database `db`, by name.
pub async fn records(target: &Target, app: &str, db: &str) -> Result<Vec<WalRecord>> {
    let dir = super::wal_dir(app, db);
    let mut out = Vec::new();
    for name in target.list_names(&dir).await? {
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = target.get_small(&format!("{dir}/{name}")).await?;
        if let Ok(r) = serde_json::from_slice::<WalRecord>(&bytes) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Starts `pg_basebackup` (tar to stdout, the WAL it needs fetched into it, a fast
/// checkpoint); also the WAL segment that was current when it started.
pub async fn base_backup(d: &Docker<'_>, conn: &Conn) -> Result<(String, Dump)> {
    let start = psql(d, conn, &["SELECT pg_walfile_name(pg_current_wal_lsn())"]).await?;
    let start = start.trim().to_string();
    if !matches!(parse_wal_name(&start), Some(WalFile::Segment { .. })) {
        return Err(BackupError::source(format!(
            "database `{}`: no current WAL segment ({start:?})",
            conn.database
        )));
    }
    let dump = exec_dump(
        d.rt,
        SourceKind::PostgresBase,
        &conn.container,
        [
            "pg_basebackup",
            "-D",
            "-",
            "-F",
            "tar",
            "-X",
            "fetch",
            "-c",
            "fast",
            "--no-manifest",
            "--no-password",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        local_env(conn),
        Some(OS_USER),
        d.timeout,
    )
    .await?;
    Ok((start, dump))
}

/// The server version and the size of every database, for a base backup's record.
pub async fn base_facts(d: &Docker<'_>, conn: &Conn) -> Result<crate::sources::Facts> {
    let out = psql(
        d,
        conn,
        &["SELECT current_setting('server_version') || E'\\t' || (SELECT sum(pg_database_size(oid)) FROM pg_database)::text"],
    )
    .await?;
    let (version, size) = out.trim().split_once('\t').unwrap_or((out.trim(), ""));
    Ok(crate::sources::Facts {
        version: version.to_string(),
        source_bytes: size.parse().ok(),
        ..Default::default()
    })
}

/// A restore's staging directory inside the data directory.
pub fn staging(data_dir: &str, id: &str) -> String {
    format!("{data_dir}/.dockhand-restore-{id}")
}

/// Unpacks a base backup into `dir` (emptied first, the directory itself kept: in a scratch
/// container it is the image's data volume, a mount point that cannot be removed), as the data
/// directory's owner.
pub async fn unpack_base(
    d: &Docker<'_>,
    container: &str,
    dir: &str,
    tar: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    exec_restore(
        d.rt,
        container,
        vec![
            "sh".into(),
            "-c".into(),
            "mkdir -p \"$1\" && chmod 700 \"$1\" && cd \"$1\" && find . -mindepth 1 -maxdepth 1 -exec rm -rf {} + && tar -xf - && rm -rf dockhand_wal_spool dockhand_wal_restore postmaster.pid postmaster.opts && mkdir -p dockhand_wal_spool dockhand_wal_restore".into(),
            "sh".into(),
            dir.into(),
        ],
        Vec::new(),
        Some(OS_USER),
        tar,
        d.timeout,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.context("unpacking the base backup"))
}

/// Writes one WAL file into `dir`'s restore directory.
pub async fn put_wal(
    d: &Docker<'_>,
    container: &str,
    dir: &str,
    name: &str,
    bytes: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    exec_restore(
        d.rt,
        container,
        vec![
            "sh".into(),
            "-c".into(),
            format!("cat > \"$1/{RESTORE_WAL}/$2\""),
            "sh".into(),
            dir.into(),
            name.into(),
        ],
        Vec::new(),
        Some(OS_USER),
        bytes,
        d.timeout,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.context(format_args!("staging WAL file {name}")))
}

/// Makes `dir` start in recovery with `settings` ([`super::recovery_settings`]), and marks it
/// staged: only a staged directory is ever swapped in.
pub async fn arm_recovery(
    d: &Docker<'_>,
    container: &str,
    dir: &str,
    settings: &str,
) -> Result<()> {
    sh(
        d,
        container,
        Some(OS_USER),
        "cd \"$1\" && printf '%s' \"$2\" >> postgresql.auto.conf && touch recovery.signal && sync && touch .dockhand-staged",
        &[dir, settings],
    )
    .await
    .map(|_| ())
}

/// Removes a staging directory (a restore that stopped before the swap).
pub async fn discard_staging(
    d: &Docker<'_>,
    container: &str,
    data_dir: &str,
    id: &str,
) -> Result<()> {
    sh(
        d,
        container,
        Some(OS_USER),
        "rm -rf \"$1\"",
        &[&staging(data_dir, id)],
    )
    .await
    .map(|_| ())
}

/// The swap, run in a helper container with the (stopped) database's volume mounted: the live
/// files move into `.dockhand-previous-ID`, then the staged ones into their place. Each phase
/// is repeatable, so a swap cut short by a crash is finished — or undone by [`ROLLBACK`] —
/// by running it again.
const SWAP: &str = r#"set -eu
cd "$1"
S=".dockhand-restore-$2"; P=".dockhand-previous-$2"
if [ ! -e "$P/.dockhand-moved" ]; then
  [ -e "$S/.dockhand-staged" ] || { echo "the staged data of restore $2 is incomplete" >&2; exit 3; }
  mkdir -p "$P"
  find . -mindepth 1 -maxdepth 1 ! -name '.dockhand-*' -exec mv {} "$P/" \;
  sync; touch "$P/.dockhand-moved"; sync
fi
if [ -d "$S" ]; then
  find "$S" -mindepth 1 -maxdepth 1 ! -name '.dockhand-*' -exec mv {} . \;
  sync; rm -rf "$S"
fi
"#;

/// Undoes a swap (complete or cut short): what was swapped in goes, the previous files come
/// back. Without a `.dockhand-previous-ID` there is nothing to undo.
const ROLLBACK: &str = r#"set -eu
cd "$1"
S=".dockhand-restore-$2"; P=".dockhand-previous-$2"
if [ -d "$P" ]; then
  if [ -e "$P/.dockhand-moved" ]; then
    find . -mindepth 1 -maxdepth 1 ! -name '.dockhand-*' -exec rm -rf {} \;
  fi
  find "$P" -mindepth 1 -maxdepth 1 ! -name '.dockhand-moved' -exec mv {} . \;
  sync; rm -rf "$P"
fi
rm -rf "$S"
"#;

/// Runs `script` in a helper container of the database's image with its volume mounted.
async fn in_volume(
    d: &Docker<'_>,
    image: &str,
    volume: &str,
    id: &str,
    script: &str,
    what: &str,
) -> Result<()> {
    let mut spec = ContainerSpec::new(
        d.app,
        "backup-helper",
        &format!("pitr-{what}-{id}"),
        ContainerKind::Job,
        image,
    );
    spec.entrypoint = Some(vec!["sleep".into()]);
    spec.command = Some(vec!["86400".into()]);
    spec.mounts = vec![Mount::Volume {
        name: volume.to_string(),
        target: MOUNT.into(),
        read_only: false,
    }];
    let container = d.rt.start_helper(spec).await?;
    let r = sh(d, &container, None, script, &[MOUNT, id]).await;
    let _ = d.rt.remove_helper(&container).await;
    r.map(|_| ())
        .map_err(|e| e.context(format_args!("the {what} of restore {id}")))
}

/// Swaps the staged data in (the database container must be stopped).
pub async fn swap(d: &Docker<'_>, image: &str, volume: &str, id: &str) -> Result<()> {
    in_volume(d, image, volume, id, SWAP, "swap").await
}

/// Puts the previous data back (the database container must be stopped).
pub async fn rollback(d: &Docker<'_>, image: &str, volume: &str, id: &str) -> Result<()> {
    in_volume(d, image, volume, id, ROLLBACK, "rollback").await
}

/// Waits until the server answers and is out of recovery (promoted, or never in it).
pub async fn wait_promoted(d: &Docker<'_>, conn: &Conn, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match psql(d, conn, &["SELECT pg_is_in_recovery()"]).await {
            Ok(out) if out.trim() == "f" => return Ok(()),
            Ok(_) => "still recovering".to_string(),
            Err(e) => e.message,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(BackupError::restore(format!(
                "database `{}` did not finish its recovery within {}s ({last})",
                conn.database,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// After a recovery: its settings reset and its WAL removed; the previous data is removed
/// with `previous`.
pub async fn finish(d: &Docker<'_>, conn: &Conn, data_dir: &str, id: &str) -> Result<()> {
    let resets: Vec<String> = super::RECOVERY_SETTINGS
        .iter()
        .map(|s| format!("ALTER SYSTEM RESET {s}"))
        .chain(["SELECT pg_reload_conf()".to_string()])
        .collect();
    let refs: Vec<&str> = resets.iter().map(String::as_str).collect();
    psql(d, conn, &refs).await?;
    sh(
        d,
        &conn.container,
        Some(OS_USER),
        "cd \"$1\" && rm -rf \"$2\" \".dockhand-previous-$3\" \".dockhand-restore-$3\"",
        &[data_dir, RESTORE_WAL, id],
    )
    .await
    .map(|_| ())
}

/// A drill of the chain: a scratch container of the image gets the base backup and the WAL,
/// replays all of it, promotes, and is counted.
pub struct Drill<'a> {
    pub d: &'a Docker<'a>,
    pub container: String,
    pub conn: Conn,
    data_dir: String,
}

impl<'a> Drill<'a> {
    /// Starts the scratch container (idle: the server starts once the data is in).
    pub async fn start(d: &'a Docker<'a>, image: &str, like: &Conn, id: &str) -> Result<Drill<'a>> {
        let mut spec = ContainerSpec::new(
            d.app,
            "backup-drill",
            &format!("pitr-drill-{id}"),
            ContainerKind::Job,
            image,
        );
        spec.entrypoint = Some(vec!["sleep".into()]);
        spec.command = Some(vec!["86400".into()]);
        let container = d.rt.start_helper(spec).await?;
        let data_dir = dockhand_config::Engine::Postgres.data_dir().to_string();
        let prepared = sh(
            d,
            &container,
            None,
            "mkdir -p \"$1\" /var/run/postgresql && chown postgres \"$1\" /var/run/postgresql && chmod 700 \"$1\"",
            &[&data_dir],
        )
        .await;
        let drill = Drill {
            d,
            conn: Conn {
                container: container.clone(),
                host: SOCKET.into(),
                user: like.user.clone(),
                database: like.database.clone(),
                password: String::new(),
            },
            container,
            data_dir,
        };
        if let Err(e) = prepared {
            drill.remove().await;
            return Err(e);
        }
        Ok(drill)
    }

    pub fn data_dir(&self) -> &str {
        &self.data_dir
    }

    /// Starts the server on the staged data and waits for it to promote.
    pub async fn replay(&self, limit: Duration) -> Result<BTreeMap<String, u64>> {
        let started = sh(
            self.d,
            &self.container,
            Some(OS_USER),
            "pg_ctl -D \"$1\" -l /tmp/dockhand-drill.log -w -t 600 start >/dev/null 2>&1 || { tail -n 5 /tmp/dockhand-drill.log >&2; exit 1; }",
            &[&self.data_dir],
        )
        .await;
        if let Err(e) = started {
            return Err(BackupError::restore(format!(
                "the scratch server did not start on the base backup and WAL: {}",
                e.message
            )));
        }
        wait_promoted(self.d, &self.conn, limit).await?;
        Ok(crate::sources::postgres::facts(self.d, &self.conn)
            .await?
            .counts)
    }

    pub async fn remove(&self) {
        let _ = self.d.rt.remove_helper(&self.container).await;
    }
}
