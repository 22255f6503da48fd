//! PostgreSQL: `pg_dump --format=custom` (with its own compression, in the database's container:
//! an uncompressed dump crossed Docker's exec stream at about 100 MB/s, which made the backup
//! slower than `pg_dump -Fc | zstd`; ARCHITECTURE.md) and `pg_dumpall --globals-only`, run
//! inside the database container — so the
//! client always matches the server's major version — connecting over the app network with
//! the app's own credentials (a wrong password fails the backup, as it would fail the app).
//! Restores go through `pg_restore` into a recreated database; drills restore into a scratch
//! container of the same image and compare every table's row count with the dump's.
//!
//! The row counts recorded are those of the dump itself: a `psql` session opens a repeatable-read
//! transaction, exports its snapshot (`pg_export_snapshot()`) and counts every table in it, and
//! `pg_dump --snapshot` dumps that same snapshot while the session holds it open
//! ([`snapshot`], [`Held`]) — so rows written during a long dump of a busy database cannot make
//! a drill report a false mismatch.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec};
use tokio::sync::mpsc;

use super::{exec_dump, exec_restore, exec_text, Docker, Dump, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

/// How to reach one database.
#[derive(Clone)]
pub struct Conn {
    /// The container it runs in.
    pub container: String,
    /// The host name to connect to from inside it (the database's network alias; `127.0.0.1`
    /// in a scratch container).
    pub host: String,
    pub user: String,
    pub database: String,
    pub password: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({}@{}/{})", self.user, self.host, self.database)
    }
}

impl Conn {
    fn env(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.host.clone()),
            ("PGUSER".into(), self.user.clone()),
            ("PGDATABASE".into(), database.to_string()),
            ("PGPASSWORD".into(), self.password.clone()),
            ("PGCONNECT_TIMEOUT".into(), "10".into()),
        ]
    }
}

/// Every table's exact row count, and the version and size, in one query.
const FACTS_SQL: &str = "SELECT 'version', current_setting('server_version') \
UNION ALL SELECT 'size', pg_database_size(current_database())::text \
UNION ALL SELECT 'table ' || n.nspname || '.' || c.relname, \
(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

/// A transaction held open in a `psql` session, whose snapshot `pg_dump --snapshot` shares.
/// [`Held::facts`] counts in it; [`Held::release`] ends it (dropping it kills the session,
/// which ends it too).
pub struct Held {
    stdin: dockhand_runtime::ExecInput,
    out: tokio::sync::mpsc::Receiver<Bytes>,
    done: Option<dockhand_runtime::ExecDone>,
    database: String,
}

/// The line `psql` prints after each answer the session waits for.
const END: &str = "end\tend";

impl Held {
    /// Sends `sql` and reads the session's output up to the end marker.
    async fn ask(&mut self, sql: &str) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        // psql may already have exited (a wrong password): its ending says why.
        let _ = self
            .stdin
            .write_all(format!("{sql}\nSELECT 'end', 'end';\n").as_bytes())
            .await;
        let _ = self.stdin.flush().await;
        let mut text = String::new();
        let out = &mut self.out;
        let read = tokio::time::timeout(Duration::from_secs(3600), async {
            while let Some(chunk) = out.recv().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.lines().any(|l| l == END) {
                    return true;
                }
            }
            false
        })
        .await;
        if read == Ok(true) {
            return Ok(text);
        }
        let why = match self.done.take() {
            Some(done) => {
                let end = done.wait().await;
                super::judge_end("psql", &end)
                    .unwrap_or_else(|| "`psql` stopped answering".to_string())
            }
            None => "`psql` stopped answering".to_string(),
        };
        Err(BackupError::source(why).context(format_args!("database `{}`", self.database)))
    }

    /// The version, size and every table's row count, in the held snapshot.
    pub async fn facts(&mut self) -> Result<Facts> {
        let text = self.ask(&format!("{FACTS_SQL};")).await?;
        Ok(parse_facts(&text))
    }

    /// Commits the read-only transaction and waits for the session to end.
    pub async fn release(mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.stdin.write_all(b"COMMIT;\n").await;
        let _ = self.stdin.shutdown().await;
        drop(self.stdin);
        let drain = tokio::spawn(async move { while self.out.recv().await.is_some() {} });
        if let Some(done) = self.done {
            let _ = tokio::time::timeout(Duration::from_secs(30), done.wait()).await;
        }
        drain.abort();
    }
}

/// Opens a repeatable-read transaction in a `psql` session and exports its snapshot: the
/// snapshot's id for `pg_dump --snapshot`, and the session holding it.
pub async fn snapshot(d: &Docker<'_>, conn: &Conn) -> Result<(String, Held)> {
    let pipe =
        d.rt.exec_pipe(
            &conn.container,
            ["psql", "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            conn.env(&conn.database),
            None,
            true,
            d.timeout,
        )
        .await
        .map_err(|e| BackupError::from(e).context(format_args!("database `{}`", conn.database)))?;
    let (stdin, out, done) = pipe.into_parts();
    let stdin = stdin.ok_or_else(|| BackupError::source("psql has no input"))?;
    let mut held = Held {
        stdin,
        out,
        done: Some(done),
        database: conn.database.clone(),
    };
    let text = held
        .ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT 'snapshot', pg_export_snapshot();")
        .await?;
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("snapshot\t"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if id.is_empty() {
        held.release().await;
        return Err(BackupError::source(format!(
            "database `{}`: PostgreSQL exported no snapshot to dump",
            conn.database
        )));
    }
    Ok((id, held))
}

/// The server version, the database's size and every table's row count.
pub async fn facts(d: &Docker<'_>, conn: &Conn) -> Result<Facts> {
    let out = exec_text(
        d.rt,
        &conn.container,
        &[
            "psql",
            "-XAtq",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            FACTS_SQL,
        ],
        &conn.env(&conn.database),
        None,
        Duration::from_secs(600),
    )
    .await
    .map_err(|e| e.context(format_args!("database `{}`", conn.database)))?;
    Ok(parse_facts(&out))
}

fn parse_facts(out: &str) -> Facts {
    let mut facts = Facts::default();
    for line in out.lines() {
        let Some((key, value)) = line.split_once('\t') else {
            continue;
        };
        match key {
            "version" => facts.version = value.trim().to_string(),
            "size" => facts.source_bytes = value.trim().parse().ok(),
            _ => {
                if let Some(table) = key.strip_prefix("table ") {
                    facts
                        .counts
                        .insert(table.to_string(), value.trim().parse().unwrap_or(0));
                }
            }
        }
    }
    facts
}

/// Starts `pg_dump` (of `snapshot`, exported by [`snapshot`], when given).
pub async fn dump(d: &Docker<'_>, conn: &Conn, snapshot: Option<&str>) -> Result<Dump> {
    let mut cmd: Vec<String> = vec![
        "pg_dump".into(),
        "--format=custom".into(),
        "--no-password".into(),
    ];
    if let Some(s) = snapshot {
        cmd.push(format!("--snapshot={s}"));
    }
    exec_dump(
        d.rt,
        SourceKind::Postgres,
        &conn.container,
        cmd,
        conn.env(&conn.database),
        None,
        d.timeout,
    )
    .await
}

/// Starts `pg_dumpall --globals-only` (roles and tablespaces).
pub async fn dump_globals(d: &Docker<'_>, conn: &Conn) -> Result<Dump> {
    exec_dump(
        d.rt,
        SourceKind::PostgresGlobals,
        &conn.container,
        vec![
            "pg_dumpall".into(),
            "--globals-only".into(),
            "--no-password".into(),
        ],
        conn.env(&conn.database),
        None,
        d.timeout,
    )
    .await
}

/// Applies a globals dump (roles that exist already are reported by psql and skipped).
pub async fn restore_globals(
    d: &Docker<'_>,
    conn: &Conn,
    sql: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    exec_restore(
        d.rt,
        &conn.container,
        vec!["psql".into(), "-Xq".into(), "--no-password".into()],
        conn.env("postgres"),
        None,
        sql,
        d.timeout,
    )
    .await
    .map(|_| ())
}

/// Replaces the database with the dump: drops and recreates it (ending its connections),
/// then `pg_restore`s into it, stopping at the first error.
pub async fn restore(
    d: &Docker<'_>,
    conn: &Conn,
    dump: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let db = quote_ident(&conn.database);
    let user = quote_ident(&conn.user);
    exec_text(
        d.rt,
        &conn.container,
        &[
            "psql",
            "-Xq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            "-c",
            &format!("CREATE DATABASE {db} OWNER {user}"),
        ],
        &conn.env("postgres"),
        None,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| {
        BackupError::restore(e.message)
            .context(format_args!("recreating database `{}`", conn.database))
    })?;
    restore_into(d, conn, dump).await
}

async fn restore_into(
    d: &Docker<'_>,
    conn: &Conn,
    dump: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let end = exec_restore(
        d.rt,
        &conn.container,
        vec![
            "pg_restore".into(),
            "--exit-on-error".into(),
            "--no-password".into(),
            "--dbname".into(),
            conn.database.clone(),
        ],
        conn.env(&conn.database),
        None,
        dump,
        d.timeout,
    )
    .await
    .map_err(|e| e.context(format_args!("pg_restore into `{}`", conn.database)))?;
    if let Some(line) = crate::checks::engine_error(SourceKind::Postgres, &end.stderr) {
        return Err(BackupError::restore(format!(
            "pg_restore reported an error: {line}"
        )));
    }
    Ok(())
}

/// A scratch PostgreSQL of `image` for a drill, removed through [`Scratch::remove`].
pub struct Scratch {
    pub conn: Conn,
    inner: super::scratch::Scratch,
}

impl Scratch {
    /// Starts a scratch container of `image` with the same user and database as `like`,
    /// and waits until it accepts connections.
    pub async fn start(d: &Docker<'_>, image: &str, like: &Conn, id: &str) -> Result<Scratch> {
        let password = hex::encode(rand_bytes());
        let mut spec = ContainerSpec::new(
            d.app,
            "backup-drill",
            &format!("drill-{id}"),
            ContainerKind::Job,
            image,
        );
        spec.env = vec![
            ("POSTGRES_USER".into(), like.user.clone()),
            ("POSTGRES_DB".into(), like.database.clone()),
            ("POSTGRES_PASSWORD".into(), password.clone()),
        ];
        let conn = |container: &str| Conn {
            container: container.to_string(),
            host: "127.0.0.1".into(),
            user: like.user.clone(),
            database: like.database.clone(),
            password: password.clone(),
        };
        // The entrypoint's first start (initdb) listens without TCP; wait for the real one.
        let inner =
            super::scratch::Scratch::start(d, spec, Duration::from_millis(500), |c: String| {
                let conn = conn(&c);
                async move {
                    exec_text(
                        d.rt,
                        &conn.container,
                        &["psql", "-XAtq", "-c", "SELECT 1"],
                        &conn.env(&conn.database),
                        None,
                        Duration::from_secs(10),
                    )
                    .await
                    .is_ok()
                }
            })
            .await?;
        Ok(Scratch {
            conn: conn(&inner.container),
            inner,
        })
    }

    /// Restores a dump into the scratch database.
    pub async fn restore(
        &self,
        d: &Docker<'_>,
        dump: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<()> {
        restore_into(d, &self.conn, dump).await
    }

    pub async fn remove(&self, d: &Docker<'_>) {
        self.inner.remove(d).await;
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Random bytes for a scratch server's password.
pub(crate) fn random_bytes() -> [u8; 16] {
    rand_bytes()
}

fn rand_bytes() -> [u8; 16] {
    use sha2::Digest;
    let seed = format!(
        "{:?}{}{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        std::thread::current().id()
    );
    let d = sha2::Sha256::digest(seed.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Row counts only, for comparing a restored copy with the record.
pub fn counts_of(facts: &Facts) -> &BTreeMap<String, u64> {
    &facts.counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_psqls_tab_separated_output() {
        let f = parse_facts("version\t15.14 (Debian 15.14-0+deb12u1)\nsize\t7905827\ntable public.items\t1000\ntable shop.orders\t0\n");
        assert_eq!(f.version, "15.14 (Debian 15.14-0+deb12u1)");
        assert_eq!(f.source_bytes, Some(7_905_827));
        assert_eq!(f.counts.get("public.items"), Some(&1000));
        assert_eq!(f.counts.get("shop.orders"), Some(&0));
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
