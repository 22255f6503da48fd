//! Redis: a consistent RDB snapshot through the replication protocol (`redis-cli --rdb -`,
//! inside the container), the key count of each logical database as the record. A restore
//! writes the RDB over the server's file and restarts it without saving (`SHUTDOWN NOSAVE`;
//! Docker starts it again); a drill loads it into a scratch server of the same image, after
//! `redis-check-rdb`.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec};
use tokio::sync::mpsc;

use super::{exec_dump, exec_restore, exec_text, Docker, Dump, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

const SHORT: Duration = Duration::from_secs(30);

/// The version, memory use and keys per database.
pub async fn facts(d: &Docker<'_>, container: &str) -> Result<Facts> {
    let server = exec_text(
        d.rt,
        container,
        &["redis-cli", "INFO", "server"],
        &[],
        None,
        SHORT,
    )
    .await?;
    let keyspace = exec_text(
        d.rt,
        container,
        &["redis-cli", "INFO", "keyspace"],
        &[],
        None,
        SHORT,
    )
    .await?;
    let memory = exec_text(
        d.rt,
        container,
        &["redis-cli", "INFO", "memory"],
        &[],
        None,
        SHORT,
    )
    .await?;
    Ok(Facts {
        version: info_field(&server, "redis_version").unwrap_or_default(),
        image: String::new(),
        source_bytes: info_field(&memory, "used_memory").and_then(|v| v.parse().ok()),
        counts: keyspace_counts(&keyspace),
    })
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{name}:"))
            .map(|v| v.trim().to_string())
    })
}

/// `db0:keys=3,expires=0,avg_ttl=0` → `{"db0": 3}`.
fn keyspace_counts(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (db, rest) = l.trim().split_once(':')?;
            if !db.starts_with("db") {
                return None;
            }
            let keys = rest.split(',').find_map(|kv| kv.strip_prefix("keys="))?;
            Some((db.to_string(), keys.parse().ok()?))
        })
        .collect()
}

/// Starts the RDB transfer.
pub async fn dump(d: &Docker<'_>, container: &str) -> Result<Dump> {
    exec_dump(
        d.rt,
        SourceKind::Redis,
        container,
        vec!["redis-cli".into(), "--rdb".into(), "-".into()],
        Vec::new(),
        None,
        d.timeout,
    )
    .await
}

/// Where the server keeps its RDB file, and whether it persists by AOF (which a restored RDB
/// would not override).
async fn rdb_path(d: &Docker<'_>, container: &str) -> Result<String> {
    let get = |key: &'static str| async move {
        let out = exec_text(
            d.rt,
            container,
            &["redis-cli", "--raw", "CONFIG", "GET", key],
            &[],
            None,
            SHORT,
        )
        .await?;
        Ok::<_, BackupError>(out.lines().nth(1).unwrap_or("").trim().to_string())
    };
    if get("appendonly").await? == "yes" {
        return Err(BackupError::restore(
            "this Redis persists with an append-only file (appendonly yes), which it loads instead of an RDB: restore by hand (stop it, replace the AOF directory) or turn AOF off first",
        ));
    }
    let dir = get("dir").await?;
    let file = get("dbfilename").await?;
    if dir.is_empty() || file.is_empty() || file.contains('/') {
        return Err(BackupError::restore(
            "cannot tell where this Redis keeps its RDB file",
        ));
    }
    Ok(format!("{}/{}", dir.trim_end_matches('/'), file))
}

/// Writes `rdb` into `container` at `path` (via a temporary name).
async fn write_rdb(
    d: &Docker<'_>,
    container: &str,
    path: &str,
    rdb: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let tmp = format!("{path}.dockhand-restore");
    exec_restore(
        d.rt,
        container,
        vec![
            "sh".into(),
            "-c".into(),
            format!("cat > '{tmp}' && redis-check-rdb '{tmp}' >/dev/null && chmod 644 '{tmp}'"),
        ],
        Vec::new(),
        None,
        rdb,
        d.timeout,
    )
    .await
    .map_err(|e| e.context("writing the RDB file (redis-check-rdb checks it)"))?;
    exec_text(d.rt, container, &["mv", &tmp, path], &[], None, SHORT).await?;
    Ok(())
}

/// Waits until the server answers and has loaded its data.
async fn wait_loaded(d: &Docker<'_>, container: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(info) = exec_text(
            d.rt,
            container,
            &["redis-cli", "INFO", "persistence"],
            &[],
            None,
            Duration::from_secs(5),
        )
        .await
        {
            if info_field(&info, "loading").as_deref() == Some("0") {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BackupError::restore("Redis did not come back within 120s"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Replaces the live server's data with the RDB: written over its file, then the server is
/// shut down without saving and Docker (`unless-stopped`) starts it again on that file.
pub async fn restore(
    d: &Docker<'_>,
    container: &str,
    rdb: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let path = rdb_path(d, container).await?;
    write_rdb(d, container, &path, rdb).await?;
    // The connection drops as the server exits: an error here is expected.
    let _ = exec_text(
        d.rt,
        container,
        &["redis-cli", "SHUTDOWN", "NOSAVE"],
        &[],
        None,
        SHORT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.rt.start_container(container).await?;
    wait_loaded(d, container).await
}

/// Loads the RDB into a scratch server of `image`; returns its keys per database.
pub async fn drill(
    d: &Docker<'_>,
    image: &str,
    id: &str,
    rdb: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<BTreeMap<String, u64>> {
    let mut spec = ContainerSpec::new(
        d.app,
        "backup-drill",
        &format!("drill-{id}"),
        ContainerKind::Job,
        image,
    );
    spec.entrypoint = Some(vec!["sleep".into()]);
    spec.command = Some(vec!["86400".into()]);
    let container = d.rt.start_helper(spec).await?;
    let result = async {
        let dir = "/tmp/dockhand-drill";
        exec_text(d.rt, &container, &["mkdir", "-p", dir], &[], None, SHORT).await?;
        write_rdb(d, &container, &format!("{dir}/dump.rdb"), rdb).await?;
        exec_text(
            d.rt,
            &container,
            &[
                "redis-server",
                "--daemonize",
                "yes",
                "--dir",
                dir,
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            &[],
            None,
            SHORT,
        )
        .await?;
        wait_loaded(d, &container).await?;
        let keyspace = exec_text(
            d.rt,
            &container,
            &["redis-cli", "INFO", "keyspace"],
            &[],
            None,
            SHORT,
        )
        .await?;
        Ok(keyspace_counts(&keyspace))
    }
    .await;
    let _ = d.rt.remove_helper(&container).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_read() {
        let ks =
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb2:keys=10,expires=0,avg_ttl=0\r\n";
        assert_eq!(
            keyspace_counts(ks),
            BTreeMap::from([("db0".to_string(), 3), ("db2".to_string(), 10)])
        );
        assert_eq!(
            info_field("# Server\r\nredis_version:7.0.15\r\n", "redis_version").as_deref(),
            Some("7.0.15")
        );
    }
}
