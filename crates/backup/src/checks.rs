//! Judging a dump, pure: a dump counts only if its program exited 0, wrote nothing to stderr
//! that the engine calls an error, and is plausibly large for what the source holds — the
//! checks that "the pipe exited 0" misses (a backup that uploaded an empty file every night
//! while the notifications said "success").

use std::collections::BTreeMap;

use crate::manifest::SourceKind;

/// The first stderr line the engine's tools use for an error, if any.
pub fn engine_error(kind: SourceKind, stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|line| {
            let l = line.to_ascii_lowercase();
            match kind {
                SourceKind::Postgres | SourceKind::PostgresGlobals | SourceKind::PostgresBase => {
                    l.contains("error:") || l.starts_with("fatal:") || l.contains("fatal:")
                }
                SourceKind::Redis => l.contains("error") || l.contains("could not"),
                // The database tools log `<time>\tFailed: <why>` and end non-zero; their
                // progress lines name collections, which may well be called `errors`.
                SourceKind::Mongodb => l.contains("\tfailed:") || l.starts_with("failed:"),
                _ => l.contains("error"),
            }
        })
        .map(|l| l.to_string())
}

/// Why a dump of `raw_bytes` is implausible for a source that held `counts` rows, if it is.
/// The smallest sizes are generous floors, not estimates: a dump failing them is broken.
pub fn implausible(
    kind: SourceKind,
    raw_bytes: u64,
    counts: &BTreeMap<String, u64>,
) -> Option<String> {
    let rows: u64 = counts.values().sum();
    // Every engine's dump format has a header: an empty dump is never a dump.
    if raw_bytes == 0 {
        return Some(if rows > 0 {
            format!("the dump is empty while the source holds {rows} row(s)")
        } else {
            "the dump is empty".to_string()
        });
    }
    let floor = match kind {
        // `PGDMP` header and the table of contents.
        SourceKind::Postgres => 64,
        // `REDIS` + version + EOF + checksum.
        SourceKind::Redis => 18,
        // The dump's header comments and session settings.
        SourceKind::Mariadb | SourceKind::Mysql => 100,
        // The magic number, the header document and the terminator.
        SourceKind::Mongodb => 16,
        // One SQLite page.
        SourceKind::Sqlite => 512,
        // One tar block pair.
        SourceKind::Volume | SourceKind::Directory | SourceKind::App => 1024,
        // A data directory is megabytes even when empty.
        SourceKind::PostgresBase => 1 << 20,
        SourceKind::PostgresGlobals => 1,
    };
    if raw_bytes < floor {
        return Some(format!(
            "the dump is {raw_bytes} bytes, smaller than any valid {} dump",
            kind.as_str()
        ));
    }
    // Each row or key takes at least one byte in any dump format.
    if raw_bytes < rows {
        return Some(format!(
            "the dump is {raw_bytes} bytes for {rows} row(s): it cannot hold them"
        ));
    }
    None
}

/// Whether a dump's first bytes are what its format starts with.
pub fn magic_ok(kind: SourceKind, head: &[u8]) -> bool {
    match kind {
        SourceKind::Postgres => head.starts_with(b"PGDMP"),
        SourceKind::Redis => head.starts_with(b"REDIS"),
        SourceKind::Sqlite => head.starts_with(b"SQLite format 3\0"),
        // MySQL's and MariaDB's clients each answer to the other's names.
        SourceKind::Mariadb | SourceKind::Mysql => {
            head.windows(15).any(|w| w == b"-- MariaDB dump")
                || head.windows(13).any(|w| w == b"-- MySQL dump")
        }
        // The archive format's magic number, 0x8199e26d little-endian.
        SourceKind::Mongodb => head.starts_with(&MONGO_ARCHIVE_MAGIC),
        _ => true,
    }
}

/// The first bytes of every `mongodump --archive`.
pub const MONGO_ARCHIVE_MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_dump_of_a_non_empty_database_fails() {
        let counts = BTreeMap::from([("public.items".to_string(), 1000)]);
        let why = implausible(SourceKind::Postgres, 0, &counts).unwrap();
        assert!(why.contains("empty") && why.contains("1000"), "{why}");
        let why = implausible(SourceKind::Postgres, 200, &counts).unwrap();
        assert!(why.contains("cannot hold"), "{why}");
        assert_eq!(implausible(SourceKind::Postgres, 50_000, &counts), None);
        // An empty database still dumps a header.
        assert!(implausible(SourceKind::Postgres, 5, &BTreeMap::new()).is_some());
        assert_eq!(
            implausible(SourceKind::Postgres, 900, &BTreeMap::new()),
            None
        );
    }

    #[test]
    fn engine_errors_on_stderr_fail_a_dump_that_exited_zero() {
        let stderr = "pg_dump: warning: something\npg_dump: error: query failed: ERROR:  permission denied for table t\n";
        assert!(engine_error(SourceKind::Postgres, stderr)
            .unwrap()
            .contains("permission denied"));
        assert_eq!(
            engine_error(SourceKind::Postgres, "pg_dump: warning: x\n"),
            None
        );
        assert!(magic_ok(SourceKind::Postgres, b"PGDMP\x01"));
        assert!(!magic_ok(SourceKind::Redis, b"-ERR"));
        assert!(magic_ok(
            SourceKind::Mariadb,
            b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19"
        ));
        assert!(!magic_ok(SourceKind::Mariadb, b"mariadb-dump: Got error"));
        assert!(engine_error(
            SourceKind::Mariadb,
            "mariadb-dump: Got error: 1045: \"Access denied for user 'shop'@'127.0.0.1'\" when trying to connect\n"
        )
        .is_some());
        assert!(magic_ok(
            SourceKind::Mysql,
            b"-- MySQL dump 10.13  Distrib 8.4.3, for Linux (x86_64)"
        ));
    }

    #[test]
    fn mongo_tools_fail_on_their_failed_lines_not_on_a_collection_named_errors() {
        let progress = "2026-03-01T02:00:00.000+0000\twriting shop.errors to archive on stdout\n2026-03-01T02:00:00.010+0000\tdone dumping shop.errors (3 documents)\n";
        assert_eq!(engine_error(SourceKind::Mongodb, progress), None);
        let failed = "2026-03-01T02:00:00.000+0000\tFailed: can't create session: failed to connect to mongodb://127.0.0.1:27017/: connection() error occurred during connection handshake: auth error: sasl conversation error: unable to authenticate using mechanism \"SCRAM-SHA-1\": (AuthenticationFailed) Authentication failed.\n";
        assert!(engine_error(SourceKind::Mongodb, failed)
            .unwrap()
            .contains("Authentication failed"));
        assert!(magic_ok(
            SourceKind::Mongodb,
            &[0x6d, 0xe2, 0x99, 0x81, 0x10]
        ));
        assert!(!magic_ok(SourceKind::Mongodb, b"Failed: x"));
        assert!(implausible(SourceKind::Mongodb, 4, &BTreeMap::new()).is_some());
    }
}
