//! MariaDB and MySQL: `mariadb-dump` (`mysqldump`) `--single-transaction` inside the
//! database's container (one consistent InnoDB snapshot, no lock on the app), as the app's own
//! account, whose password travels in the exec's environment (`MYSQL_PWD`, which both clients
//! read), never in an argument. The record is every table's exact `COUNT(*)`, taken just before
//! the dump. A restore recreates the database and pipes the SQL into `mariadb` (`mysql`); a
//! drill does the same in a scratch container of the same image and compares the counts.
//!
//! The two engines differ here only by a [`Flavor`]: the client programs' names, the official
//! image's variable prefix, and MySQL's extra dump options.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec};
use tokio::sync::mpsc;

use super::postgres::Conn;
use super::{exec_dump, exec_restore, exec_text, Docker, Dump, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

const SHORT: Duration = Duration::from_secs(60);

/// Inside the container, the server is on its loopback.
const HOST: &str = "127.0.0.1";

/// Which of the two engines: what differs between their official images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Mariadb,
    Mysql,
}

impl Flavor {
    pub fn kind(self) -> SourceKind {
        match self {
            Flavor::Mariadb => SourceKind::Mariadb,
            Flavor::Mysql => SourceKind::Mysql,
        }
    }

    /// The SQL client.
    fn client(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        }
    }

    fn dumper(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb-dump",
            Flavor::Mysql => "mysqldump",
        }
    }

    /// The official image's variables: `MARIADB_USER`, `MYSQL_USER`, ….
    fn var(self, name: &str) -> String {
        match self {
            Flavor::Mariadb => format!("MARIADB_{name}"),
            Flavor::Mysql => format!("MYSQL_{name}"),
        }
    }

    /// What MySQL's `mysqldump` needs beyond MariaDB's options, as `--loose-` options (a
    /// client that does not know one warns and goes on, as MySQL's manual documents).
    /// `set-gtid-purged=OFF`: no `SET @@GLOBAL.GTID_PURGED` in the dump (a restore into a
    /// server with GTIDs of its own fails on it) and no `FLUSH TABLES WITH READ LOCK`, which
    /// the app's account may not run. `column-statistics=0`: no histogram queries, which
    /// fail against servers without `COLUMN_STATISTICS`.
    fn dump_options(self) -> &'static [&'static str] {
        match self {
            Flavor::Mariadb => &[],
            Flavor::Mysql => &["--loose-set-gtid-purged=OFF", "--loose-column-statistics=0"],
        }
    }
}

fn env(conn: &Conn) -> Vec<(String, String)> {
    vec![("MYSQL_PWD".into(), conn.password.clone())]
}

/// The SQL client as the app's account, batch mode, no column names.
fn client(flavor: Flavor, conn: &Conn, database: Option<&str>, sql: &str) -> Vec<String> {
    let mut cmd = vec![
        flavor.client().to_string(),
        "--connect-timeout=10".into(),
        "-h".into(),
        HOST.into(),
        "-u".into(),
        conn.user.clone(),
        "-N".into(),
        "-B".into(),
        "-e".into(),
        sql.into(),
    ];
    if let Some(db) = database {
        cmd.push(db.into());
    }
    cmd
}

async fn query(d: &Docker<'_>, flavor: Flavor, conn: &Conn, sql: &str) -> Result<String> {
    let cmd = client(flavor, conn, Some(&conn.database), sql);
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    exec_text(d.rt, &conn.container, &refs, &env(conn), None, SHORT).await
}

/// The version, the database's size and every table's exact row count.
pub async fn facts(d: &Docker<'_>, flavor: Flavor, conn: &Conn) -> Result<Facts> {
    let head = query(
        d,
        flavor,
        conn,
        "SELECT VERSION(); SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE(); SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .await?;
    let mut lines = head.lines();
    let version = lines.next().unwrap_or("").trim().to_string();
    let size = lines.next().and_then(|l| l.trim().parse().ok());
    let tables: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
    let counts = if tables.is_empty() {
        BTreeMap::new()
    } else {
        let sql = tables
            .iter()
            .map(|t| format!("SELECT {}, COUNT(*) FROM {}", quote_str(t), quote_ident(t)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        parse_counts(&query(d, flavor, conn, &sql).await?)
    };
    Ok(Facts {
        version,
        image: String::new(),
        source_bytes: size,
        counts,
    })
}

/// Starts the dump.
pub async fn dump(d: &Docker<'_>, flavor: Flavor, conn: &Conn) -> Result<Dump> {
    exec_dump(
        d.rt,
        flavor.kind(),
        &conn.container,
        dump_command(flavor, conn),
        env(conn),
        None,
        d.timeout,
    )
    .await
}

/// The dump's command line: no password in it (`MYSQL_PWD` carries it).
fn dump_command(flavor: Flavor, conn: &Conn) -> Vec<String> {
    let mut cmd: Vec<String> = [
        flavor.dumper(),
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--no-tablespaces",
    ]
    .iter()
    .chain(flavor.dump_options())
    .map(|s| s.to_string())
    .collect();
    cmd.extend([
        "-h".into(),
        HOST.into(),
        "-u".into(),
        conn.user.clone(),
        conn.database.clone(),
    ]);
    cmd
}

/// Replaces the live database with the dump: dropped, created again, the SQL piped in.
pub async fn restore(
    d: &Docker<'_>,
    flavor: Flavor,
    conn: &Conn,
    sql: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let db = quote_ident(&conn.database);
    let cmd = client(
        flavor,
        conn,
        None,
        &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"),
    );
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    exec_text(d.rt, &conn.container, &refs, &env(conn), None, SHORT)
        .await
        .map_err(|e| {
            BackupError::restore(e.message)
                .context(format_args!("recreating database `{}`", conn.database))
        })?;
    restore_into(d, flavor, conn, sql).await
}

async fn restore_into(
    d: &Docker<'_>,
    flavor: Flavor,
    conn: &Conn,
    sql: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let end = exec_restore(
        d.rt,
        &conn.container,
        vec![
            flavor.client().into(),
            "--connect-timeout=10".into(),
            "-h".into(),
            HOST.into(),
            "-u".into(),
            conn.user.clone(),
            conn.database.clone(),
        ],
        env(conn),
        None,
        sql,
        d.timeout,
    )
    .await?;
    if let Some(line) = crate::checks::engine_error(flavor.kind(), &end.stderr) {
        return Err(BackupError::restore(format!(
            "`{}` reported an error: {line}",
            flavor.client()
        )));
    }
    Ok(())
}

/// A scratch server of the backed-up image with the same account and database.
pub struct Scratch {
    pub conn: Conn,
    flavor: Flavor,
    inner: super::scratch::Scratch,
}

impl Scratch {
    pub async fn start(
        d: &Docker<'_>,
        flavor: Flavor,
        image: &str,
        like: &Conn,
        id: &str,
    ) -> Result<Scratch> {
        let password = hex::encode(super::postgres::random_bytes());
        let mut spec = ContainerSpec::new(
            d.app,
            "backup-drill",
            &format!("drill-{id}"),
            ContainerKind::Job,
            image,
        );
        spec.env = vec![
            (flavor.var("USER"), like.user.clone()),
            (flavor.var("DATABASE"), like.database.clone()),
            (flavor.var("PASSWORD"), password.clone()),
            (flavor.var("RANDOM_ROOT_PASSWORD"), "yes".into()),
        ];
        let conn = |container: &str| Conn {
            container: container.to_string(),
            host: HOST.into(),
            user: like.user.clone(),
            database: like.database.clone(),
            password: password.clone(),
        };
        // The first start initialises without TCP; the server is ready when TCP answers.
        let inner =
            super::scratch::Scratch::start(d, spec, Duration::from_millis(300), |c: String| {
                let conn = conn(&c);
                async move { query(d, flavor, &conn, "SELECT 1").await.is_ok() }
            })
            .await?;
        Ok(Scratch {
            conn: conn(&inner.container),
            flavor,
            inner,
        })
    }

    pub async fn restore(
        &self,
        d: &Docker<'_>,
        sql: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<()> {
        restore_into(d, self.flavor, &self.conn, sql).await
    }

    /// The restored copy's facts (its row counts).
    pub async fn facts(&self, d: &Docker<'_>) -> Result<Facts> {
        facts(d, self.flavor, &self.conn).await
    }

    pub async fn remove(&self, d: &Docker<'_>) {
        self.inner.remove(d).await;
    }
}

/// `table\tcount` lines.
fn parse_counts(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (t, n) = l.rsplit_once('\t')?;
            Some((t.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_quoting() {
        assert_eq!(
            parse_counts("items\t700\norder lines\t0\n"),
            BTreeMap::from([("items".to_string(), 700), ("order lines".to_string(), 0)])
        );
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_str("it's"), "'it''s'");
    }

    #[test]
    fn mysql_dumps_with_its_own_client_and_options_and_no_password_in_them() {
        let conn = Conn {
            container: "c".into(),
            host: HOST.into(),
            user: "shop".into(),
            database: "shop".into(),
            password: "pw-1234".into(),
        };
        let mysql = dump_command(Flavor::Mysql, &conn);
        assert_eq!(mysql[0], "mysqldump");
        for option in [
            "--single-transaction",
            "--loose-set-gtid-purged=OFF",
            "--loose-column-statistics=0",
            "--no-tablespaces",
        ] {
            assert!(mysql.iter().any(|a| a == option), "{option}: {mysql:?}");
        }
        let maria = dump_command(Flavor::Mariadb, &conn);
        assert_eq!(maria[0], "mariadb-dump");
        assert!(!maria.iter().any(|a| a.contains("gtid")), "{maria:?}");
        assert!(mysql.iter().chain(&maria).all(|a| !a.contains("pw-1234")));
        assert_eq!(Flavor::Mysql.var("USER"), "MYSQL_USER");
        assert_eq!(Flavor::Mariadb.var("USER"), "MARIADB_USER");
    }
}
