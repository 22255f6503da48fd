//! What a backup holds, written beside its objects on every target (`manifest.json`) and kept
//! in the agent's catalog: each source's object, engine and server version, sizes, checksum
//! and the row (document, key) counts at dump time that a restore drill compares against.
//! It holds names, sizes and counts — never data or a secret — and is not encrypted, so a
//! fresh server can list a target's backups before it has anything else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest's file name in a backup's directory.
pub const MANIFEST: &str = "manifest.json";

/// One backup: a set of sources taken together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Fields are only ever added; `format` bumps otherwise.
    pub format: u32,
    pub app: String,
    pub id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// `schedule`, `manual`, `safety` (before a restore).
    pub trigger: String,
    /// How the objects are encrypted: `age-x25519` or `age-scrypt`; compressed with zstd.
    pub encryption: String,
    pub items: Vec<Item>,
}

/// One source's object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The source's name (`db`, `media`, `app`, …).
    pub source: String,
    pub kind: SourceKind,
    /// The object's name in the backup's directory (`db.pgdump.zst.age`).
    pub object: String,
    /// The engine's version at dump time (`15.14`), when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The image the database ran, to drill in the same engine and version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// The dump's size before compression and encryption.
    pub raw_bytes: u64,
    /// The stored object's size.
    pub stored_bytes: u64,
    /// For a database: the account and database it was dumped as (a drill's scratch
    /// database is created with the same, so ownership restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    /// The source's own size when the dump was taken (a database's size on disk), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
    /// Rows per table (documents per collection, keys per Redis database, files per
    /// directory) at dump time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// The targets that hold the object.
    pub targets: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// A base backup's first WAL segment (`000000010000000000000003`): replay starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_start: Option<String>,
}

/// What kind of source an item is, which says how to restore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `pg_dump --format=custom`; restore with `pg_restore`.
    Postgres,
    /// `pg_dumpall --globals-only` (roles, tablespaces): SQL for `psql`.
    PostgresGlobals,
    /// `pg_basebackup` in tar format (the WAL it needs inside): the start of a
    /// point-in-time recovery, restored with `restore --at`.
    PostgresBase,
    /// An RDB snapshot.
    Redis,
    /// `mariadb-dump --single-transaction`: SQL for `mariadb`.
    Mariadb,
    /// `mysqldump --single-transaction`: SQL for `mysql`.
    Mysql,
    /// `mongodump --archive` of the app's database: restored with `mongorestore --archive`.
    Mongodb,
    /// A SQLite database file made with the online backup API.
    Sqlite,
    /// A tar stream of a Docker volume.
    Volume,
    /// A tar stream of a host directory.
    Directory,
    /// A tar stream of the app itself: `dockhand.toml`, `.env`, the secrets file.
    App,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres",
            SourceKind::PostgresGlobals => "postgres_globals",
            SourceKind::PostgresBase => "postgres_base",
            SourceKind::Redis => "redis",
            SourceKind::Mariadb => "mariadb",
            SourceKind::Mysql => "mysql",
            SourceKind::Mongodb => "mongodb",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Volume => "volume",
            SourceKind::Directory => "directory",
            SourceKind::App => "app",
        }
    }

    /// The object's extension before `.zst.age`.
    pub fn extension(self) -> &'static str {
        match self {
            SourceKind::Postgres => "pgdump",
            SourceKind::PostgresGlobals => "globals.sql",
            SourceKind::PostgresBase => "base.tar",
            SourceKind::Redis => "rdb",
            SourceKind::Mariadb | SourceKind::Mysql => "sql",
            SourceKind::Mongodb => "archive",
            SourceKind::Sqlite => "sqlite3",
            SourceKind::Volume | SourceKind::Directory | SourceKind::App => "tar",
        }
    }
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The item of `source` (its main object: a database's dump, not its globals).
    pub fn item(&self, source: &str) -> Option<&Item> {
        self.items.iter().find(|i| {
            i.source == source
                && !matches!(
                    i.kind,
                    SourceKind::PostgresGlobals | SourceKind::PostgresBase
                )
        })
    }

    /// The sum of the stored objects' sizes.
    pub fn stored_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.stored_bytes).sum()
    }
}

/// The object name of a source's dump: `<source>.<ext>.zst.age`.
pub fn object_name(source: &str, kind: SourceKind) -> String {
    format!("{source}.{}.zst.age", kind.extension())
}

/// A new backup id: the UTC time to the second, then four random hex digits, so ids sort
/// by time and two agents never collide.
pub fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let mut bytes = [0u8; 2];
    let nanos = now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(16);
    bytes.copy_from_slice(&nanos.to_le_bytes()[..2]);
    format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_names_say_what_they_hold() {
        let a = chrono::DateTime::parse_from_rfc3339("2026-03-01T02:00:00Z")
            .unwrap()
            .to_utc();
        let b = chrono::DateTime::parse_from_rfc3339("2026-03-01T02:00:01Z")
            .unwrap()
            .to_utc();
        assert!(new_id(a) < new_id(b));
        assert!(new_id(a).starts_with("20260301T020000Z-"));
        assert_eq!(object_name("db", SourceKind::Postgres), "db.pgdump.zst.age");
        let json = serde_json::to_string(&SourceKind::PostgresGlobals).unwrap();
        assert_eq!(json, "\"postgres_globals\"");
    }
}
