//! The certificate manager's files under the state directory (paths from `StateLayout`):
//! each set's `bundle.pem` (chain and key in one file, so replacing it is one atomic
//! rename, mode 0600) and `state.json` (the renewal state that outlives a restart: failures,
//! the next attempt, the last error, the CA's renewal window, the last expiry notice).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use dockhand_config::{load_certificate, CertificateFiles, LoadedCertificate};
use serde::{Deserialize, Serialize};

use crate::certs::plan::Source;
use crate::error::{AgentError, Result};

/// What is remembered about one certificate set between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SetRecord {
    /// The names the stored certificate was issued for.
    #[serde(default)]
    pub names: Vec<String>,
    /// The CA (directory URL) that issued it.
    #[serde(default)]
    pub directory: Option<String>,
    /// Failed attempts in a row.
    #[serde(default)]
    pub failures: u32,
    /// No attempt before this time (Unix seconds): the back-off, or the CA's Retry-After.
    #[serde(default)]
    pub next_attempt: Option<i64>,
    #[serde(default)]
    pub last_attempt: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the CA's renewal information says to renew (a point in its window).
    #[serde(default)]
    pub ari_renew_at: Option<i64>,
    /// When to ask the CA for renewal information again.
    #[serde(default)]
    pub ari_next_check: Option<i64>,
    /// The last expiry notice given (days before the end; 0 once expired) for `not_after`.
    #[serde(default)]
    pub notified: Option<i64>,
    #[serde(default)]
    pub notified_for: Option<i64>,
    /// The challenge type that last failed per name (the next attempt tries another).
    #[serde(default)]
    pub failed_challenge: std::collections::BTreeMap<String, String>,
}

/// The files of one set.
#[derive(Debug, Clone)]
pub struct SetFiles {
    pub dir: PathBuf,
}

impl SetFiles {
    pub fn new(dir: PathBuf) -> SetFiles {
        SetFiles { dir }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The stored certificate, when there is one that loads (a broken one is reported).
    pub fn load_certificate(&self, now: SystemTime) -> Result<Option<LoadedCertificate>> {
        let bundle = self.bundle();
        if !bundle.exists() {
            return Ok(None);
        }
        let files = CertificateFiles {
            cert: bundle.clone(),
            key: bundle,
        };
        match load_certificate(&files, now) {
            Ok(c) => Ok(Some(c)),
            // An expired certificate is replaced like a missing one.
            Err(dockhand_config::CertificateError::Expired { .. }) => Ok(None),
            Err(e) => Err(AgentError::environment(format!(
                "stored certificate {}: {}; {}",
                files.cert.display(),
                e.problem(),
                e.help()
            ))),
        }
    }

    pub fn read_record(&self) -> SetRecord {
        std::fs::read(self.record_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn write_record(&self, record: &SetRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| AgentError::internal(format!("certificate state: {e}")))?;
        write_private(&self.record_path(), &json)
    }

    /// Replaces the stored chain and key at once.
    pub fn write_bundle(&self, chain_pem: &str, key_pem: &str) -> Result<()> {
        let mut text = chain_pem.trim_end().to_string();
        text.push('\n');
        text.push_str(key_pem);
        write_private(&self.bundle(), text.as_bytes())
    }
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then a rename), mode
/// 0600, creating the directory (0700).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| AgentError::internal(format!("{} has no directory", path.display())))?;
    let fail = |what: &str, e: std::io::Error| {
        AgentError::environment(format!(
            "failed to {what} {}: {e}; check the disk and the state directory's permissions",
            path.display()
        ))
        .with_source(e)
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("write", e))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail("restrict", e))?;
    file.write_all(bytes).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("write", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))
}

/// Refuses a file holding a key that group or others may read.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| AgentError::environment(format!("failed to read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AgentError::environment(format!(
            "{} holds a private key but is readable by others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The set directory for `source` and `id`.
pub fn set_files(layout: &crate::layout::StateLayout, source: Source, id: &str) -> SetFiles {
    SetFiles::new(layout.cert_set(source, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        check_private(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&path).unwrap_err();
        assert!(e.message().contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_record_survives_a_round_trip_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let files = SetFiles::new(dir.path().join("set"));
        assert_eq!(files.read_record(), SetRecord::default());
        let record = SetRecord {
            names: vec!["a.example".into()],
            failures: 2,
            next_attempt: Some(5),
            last_error: Some("boom".into()),
            ..SetRecord::default()
        };
        files.write_record(&record).unwrap();
        assert_eq!(files.read_record(), record);
        assert!(files
            .load_certificate(crate::clock::now())
            .unwrap()
            .is_none());
    }
}
