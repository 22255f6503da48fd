//! MongoDB: `mongodump --archive` of the app's database inside its container, as the root
//! account the official image creates (`MONGO_INITDB_ROOT_USERNAME`/`PASSWORD`, in `admin`).
//! The record is every collection's exact `countDocuments({})`, taken with `mongosh` just
//! before the dump. A restore drops the database and streams the archive into
//! `mongorestore --archive --drop`; a drill does the same in a scratch container of the same
//! image and compares the counts.
//!
//! The password never is a process argument. `mongodump` and `mongorestore` read it from a
//! `--config` file (their documented way, since Database Tools 100.3.0): a small shell wrapper
//! writes the file, mode 0600, from the exec's environment with the shell's own `printf`,
//! runs the tool and removes it. `mongosh` has no such file; its script reads the password
//! from `process.env` and authenticates with `db.auth`.
//!
//! Without a replica set a dump is not one snapshot across collections (only `--oplog` makes
//! it one, and it needs a replica set): writes during the dump can make a drill's counts
//! differ from the record, which the drill then reports.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::postgres::Conn;
use super::{exec_dump, exec_restore, exec_text, Docker, Dump, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

const SHORT: Duration = Duration::from_secs(60);

/// Inside the container, the server is on its loopback.
const HOST: &str = "127.0.0.1";
const PORT: &str = "27017";

/// The official image creates its root account in `admin`.
const AUTH_DB: &str = "admin";

/// The variables the exec's environment carries (never its arguments).
const ENV_USER: &str = "DOCKHAND_MONGO_USER";
const ENV_PASSWORD: &str = "DOCKHAND_MONGO_PASSWORD";
const ENV_DB: &str = "DOCKHAND_MONGO_DB";
const ENV_CONFIG: &str = "DOCKHAND_MONGO_CONFIG";

/// Runs `"$0" "$@" --config=FILE` with FILE holding `$DOCKHAND_MONGO_CONFIG` (owner only,
/// removed afterwards); the tool's stdin and stdout are the exec's.
const WITH_CONFIG: &str = r#"umask 077
f=$(mktemp) || exit 1
trap 'rm -f "$f"' EXIT
trap 'exit 1' HUP INT TERM
printf '%s\n' "$DOCKHAND_MONGO_CONFIG" >"$f" || exit 1
unset DOCKHAND_MONGO_CONFIG
"$0" "$@" --config="$f"
s=$?
rm -f "$f"
exit $s"#;

/// Signs in as the root account (a server started without one takes no password); `target` is
/// the app's database.
const AUTH_JS: &str = "const admin = db.getSiblingDB('admin'); \
if (process.env.DOCKHAND_MONGO_PASSWORD) { \
admin.auth(process.env.DOCKHAND_MONGO_USER, process.env.DOCKHAND_MONGO_PASSWORD); } \
const target = db.getSiblingDB(process.env.DOCKHAND_MONGO_DB);";

/// The version, the database's size and each collection's exact document count, as JSON.
const FACTS_JS: &str = "const stats = target.stats(); const counts = {}; \
target.getCollectionInfos({ type: 'collection' }).forEach((c) => { \
if (!c.name.startsWith('system.')) { counts[c.name] = target.getCollection(c.name).countDocuments({}); } }); \
print(JSON.stringify({ version: target.version(), \
size: Number(String(stats.dataSize || 0)) + Number(String(stats.indexSize || 0)), counts: counts }));";

const DROP_JS: &str = "target.dropDatabase(); print(JSON.stringify({ ok: 1 }));";

const PING_JS: &str = "print(JSON.stringify(admin.runCommand({ ping: 1 })));";

/// The variables `mongosh` reads the account from.
fn shell_env(conn: &Conn) -> Vec<(String, String)> {
    vec![
        (ENV_USER.into(), conn.user.clone()),
        (ENV_PASSWORD.into(), conn.password.clone()),
        (ENV_DB.into(), conn.database.clone()),
    ]
}

/// `mongosh` signed in as the root account, running `js` after [`AUTH_JS`], within `timeout`
/// (counting every document of a large database is no quick query).
async fn shell(d: &Docker<'_>, conn: &Conn, js: &str, timeout: Duration) -> Result<String> {
    let script = format!("{AUTH_JS} {js}");
    let uri = format!("mongodb://{HOST}:{PORT}/{AUTH_DB}");
    exec_text(
        d.rt,
        &conn.container,
        &["mongosh", "--quiet", "--norc", &uri, "--eval", &script],
        &shell_env(conn),
        None,
        timeout,
    )
    .await
}

/// What [`FACTS_JS`] prints.
#[derive(Deserialize)]
struct Printed {
    version: String,
    #[serde(default)]
    size: Option<f64>,
    #[serde(default)]
    counts: BTreeMap<String, u64>,
}

fn parse_facts(out: &str) -> Result<Facts> {
    let line = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            BackupError::source(format!(
                "`mongosh` printed no facts about the database: {}",
                out.trim()
            ))
        })?;
    let p: Printed = serde_json::from_str(line).map_err(|e| {
        BackupError::source(format!(
            "`mongosh` printed facts that do not parse ({e}): {line}"
        ))
    })?;
    Ok(Facts {
        version: p.version,
        image: String::new(),
        source_bytes: p.size.filter(|s| *s >= 0.0).map(|s| s as u64),
        counts: p.counts,
    })
}

/// The version, the database's size and every collection's exact document count.
pub async fn facts(d: &Docker<'_>, conn: &Conn) -> Result<Facts> {
    parse_facts(&shell(d, conn, FACTS_JS, d.timeout.max(SHORT)).await?)
}

/// The connection options shared by `mongodump` and `mongorestore`, and the environment
/// their `--config` file is written from.
fn tool(program: &str, conn: &Conn, rest: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let mut args = vec![format!("--host={HOST}"), format!("--port={PORT}")];
    let mut env = Vec::new();
    if !conn.user.is_empty() {
        args.push(format!("--username={}", conn.user));
        args.push(format!("--authenticationDatabase={AUTH_DB}"));
    }
    args.extend(rest.iter().cloned());
    if conn.password.is_empty() {
        let mut cmd = vec![program.to_string()];
        cmd.extend(args);
        return (cmd, env);
    }
    env.push((ENV_CONFIG.into(), config_file(&conn.password)));
    let mut cmd = vec![
        "sh".to_string(),
        "-c".into(),
        WITH_CONFIG.into(),
        program.into(),
    ];
    cmd.extend(args);
    (cmd, env)
}

/// The `--config` file: YAML, the password single-quoted (a quote doubled).
fn config_file(password: &str) -> String {
    format!("password: '{}'", password.replace('\'', "''"))
}

/// Starts the dump of the app's database.
pub async fn dump(d: &Docker<'_>, conn: &Conn) -> Result<Dump> {
    let (cmd, env) = tool(
        "mongodump",
        conn,
        &[format!("--db={}", conn.database), "--archive".into()],
    );
    exec_dump(
        d.rt,
        SourceKind::Mongodb,
        &conn.container,
        cmd,
        env,
        None,
        d.timeout,
    )
    .await
}

/// Replaces the live database with the archive: dropped, then restored.
pub async fn restore(
    d: &Docker<'_>,
    conn: &Conn,
    archive: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    shell(d, conn, DROP_JS, d.timeout.max(SHORT))
        .await
        .map_err(|e| {
            BackupError::restore(e.message)
                .context(format_args!("dropping database `{}`", conn.database))
        })?;
    restore_into(d, conn, archive).await
}

async fn restore_into(
    d: &Docker<'_>,
    conn: &Conn,
    archive: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let (cmd, env) = tool(
        "mongorestore",
        conn,
        &[
            "--archive".into(),
            "--drop".into(),
            "--stopOnError".into(),
            format!("--nsInclude={}.*", conn.database),
        ],
    );
    let end = exec_restore(d.rt, &conn.container, cmd, env, None, archive, d.timeout).await?;
    if let Some(line) = crate::checks::engine_error(SourceKind::Mongodb, &end.stderr)
        .or_else(|| failed_documents(&end.stderr))
    {
        return Err(BackupError::restore(format!(
            "`mongorestore` reported an error: {line}"
        )));
    }
    Ok(())
}

/// `mongorestore`'s summary line when documents failed to restore
/// (`3 document(s) failed to restore.`).
fn failed_documents(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| {
            l.split_once(" document(s) failed to restore")
                .and_then(|(head, _)| head.rsplit(|c: char| c.is_whitespace()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
        .map(|l| l.trim().to_string())
}

/// A scratch server of the backed-up image with the same root account name and database.
pub struct Scratch {
    pub conn: Conn,
    inner: super::scratch::Scratch,
}

impl Scratch {
    pub async fn start(d: &Docker<'_>, image: &str, like: &Conn, id: &str) -> Result<Scratch> {
        let password = hex::encode(super::postgres::random_bytes());
        let mut spec = ContainerSpec::new(
            d.app,
            "backup-drill",
            &format!("drill-{id}"),
            ContainerKind::Job,
            image,
        );
        spec.env = vec![
            ("MONGO_INITDB_ROOT_USERNAME".into(), like.user.clone()),
            ("MONGO_INITDB_ROOT_PASSWORD".into(), password.clone()),
            ("MONGO_INITDB_DATABASE".into(), like.database.clone()),
        ];
        let conn = |container: &str| Conn {
            container: container.to_string(),
            host: HOST.into(),
            user: like.user.clone(),
            database: like.database.clone(),
            password: password.clone(),
        };
        // The official image's first start runs a temporary server on the loopback (the
        // account already exists there) and stops it; the real one is PID 1.
        let inner =
            super::scratch::Scratch::start(d, spec, Duration::from_millis(500), |c: String| {
                let conn = conn(&c);
                async move {
                    let final_server = exec_text(
                        d.rt,
                        &conn.container,
                        &["sh", "-c", "[ \"$(cat /proc/1/comm)\" = mongod ]"],
                        &[],
                        None,
                        SHORT,
                    )
                    .await
                    .is_ok();
                    final_server && shell(d, &conn, PING_JS, SHORT).await.is_ok()
                }
            })
            .await?;
        Ok(Scratch {
            conn: conn(&inner.container),
            inner,
        })
    }

    pub async fn restore(
        &self,
        d: &Docker<'_>,
        archive: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<()> {
        restore_into(d, &self.conn, archive).await
    }

    pub async fn remove(&self, d: &Docker<'_>) {
        self.inner.remove(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(password: &str) -> Conn {
        Conn {
            container: "c".into(),
            host: HOST.into(),
            user: "shop".into(),
            database: "shop".into(),
            password: password.into(),
        }
    }

    #[test]
    fn the_password_reaches_the_tools_through_the_environment_never_an_argument() {
        let secret = "it's-a-secret-4242";
        let (cmd, env) = tool("mongodump", &conn(secret), &["--archive".into()]);
        assert!(cmd.iter().all(|a| !a.contains(secret)), "{cmd:?}");
        assert_eq!(&cmd[..2], &["sh", "-c"]);
        assert_eq!(cmd[3], "mongodump");
        assert!(cmd.contains(&"--username=shop".to_string()), "{cmd:?}");
        assert_eq!(
            env,
            vec![(
                ENV_CONFIG.to_string(),
                "password: 'it''s-a-secret-4242'".to_string()
            )]
        );
        assert_eq!(super::super::program_of(&cmd), "mongodump");
        // Without a password there is nothing to hide, and no wrapper.
        let (cmd, env) = tool("mongorestore", &conn(""), &[]);
        assert_eq!(cmd[0], "mongorestore");
        assert!(env.is_empty());
    }

    #[test]
    fn facts_and_failed_documents_parse() {
        let facts = parse_facts(
            "Some warning\n{\"version\":\"7.0.12\",\"size\":40960,\"counts\":{\"items\":800,\"empty\":0}}\n",
        )
        .unwrap();
        assert_eq!(facts.version, "7.0.12");
        assert_eq!(facts.source_bytes, Some(40960));
        assert_eq!(
            facts.counts,
            BTreeMap::from([("items".to_string(), 800), ("empty".to_string(), 0)])
        );
        assert!(parse_facts("MongoServerError: Authentication failed.").is_err());
        assert_eq!(
            failed_documents("2026-03-01T02:00:00.000+0000\t800 document(s) restored successfully. 0 document(s) failed to restore.\n"),
            None
        );
        assert!(failed_documents(
            "2026-03-01T02:00:00.000+0000\t797 document(s) restored successfully. 3 document(s) failed to restore.\n"
        )
        .is_some());
    }
}
