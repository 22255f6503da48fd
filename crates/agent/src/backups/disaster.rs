//! `dockhand backup restore --app`: the disaster-recovery and server-move path, run on a new
//! server with nothing but a target's address and the identity. This part needs no agent: it
//! finds the newest backup on the target (or the one named), checks and decrypts the app's
//! archive and writes `dockhand.toml`, `.env` and the secrets file (0600) into the project
//! directory. The CLI then has an agent deploy them (the one answering there, or one it starts)
//! and asks it to restore the same backup's data, whose manifest the agent reads from the
//! target.

use std::path::{Path, PathBuf};

use dockhand_backup::crypto::Decryption;
use dockhand_backup::manifest::{Manifest, SourceKind, MANIFEST};
use dockhand_backup::restore::{self as rst, Destination};
use dockhand_backup::target::{Target, TargetSpec};

use crate::error::{AgentError, Result};

/// What `restore --app` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppRestored {
    pub app: String,
    pub id: String,
    pub files: Vec<String>,
    /// The manifest, for what to restore next.
    pub sources: Vec<String>,
}

/// Where `--from` points: a directory, or `s3://bucket/prefix` (with `endpoint`; credentials
/// from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, never from arguments).
pub fn target_from(from: &str, endpoint: Option<&str>) -> Result<TargetSpec> {
    if let Some(rest) = from.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(TargetSpec::S3 {
            name: "from".into(),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: endpoint.map(str::to_string),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
            secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            path_style: true,
            retries: 3,
            timeout: std::time::Duration::from_secs(60),
        });
    }
    Ok(TargetSpec::Local {
        name: "from".into(),
        dir: PathBuf::from(from),
    })
}

/// Restores the app's own files from the newest backup on `spec` (or `id`) into `project`.
pub async fn restore_app_files(
    spec: &TargetSpec,
    identity: &Path,
    project: &Path,
    id: Option<&str>,
) -> Result<AppRestored> {
    let decryption =
        Decryption::from_identity_file(identity).map_err(|e| AgentError::usage(e.message))?;
    let target = Target::open(spec).map_err(|e| AgentError::environment(e.message))?;
    let all = target
        .all_backups()
        .await
        .map_err(|e| AgentError::environment(e.message))?;
    let (app, id) = match id {
        Some(id) => all
            .iter()
            .rev()
            .find(|(_, i)| i == id)
            .cloned()
            .ok_or_else(|| {
                AgentError::not_found(format!("no backup `{id}` on {}", spec.describe()))
            })?,
        None => all
            .last()
            .cloned()
            .ok_or_else(|| AgentError::not_found(format!("no backup on {}", spec.describe())))?,
    };
    let bytes = target
        .get_small(&format!("{app}/{id}/{MANIFEST}"))
        .await
        .map_err(|e| AgentError::environment(e.message))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        AgentError::runtime(format!("the manifest of backup {id} does not read: {e}"))
    })?;
    let item = manifest
        .items
        .iter()
        .find(|i| i.kind == SourceKind::App)
        .ok_or_else(|| {
            AgentError::usage(format!(
                "backup {id} does not hold the app (it was excluded)"
            ))
        })?;
    let scratch = project.join(".dockhand").join("backup-scratch");
    let fetched = rst::fetch(&target, &manifest, item, &scratch)
        .await
        .map_err(|e| AgentError::runtime(format!("refused, nothing was written: {e}")))?;
    fetched
        .open(&decryption)
        .map_err(|e| AgentError::runtime(format!("refused, nothing was written: {e}")))?;
    let places = std::collections::BTreeMap::from([
        ("dockhand.toml".to_string(), project.join("dockhand.toml")),
        (".env".to_string(), project.join(".env")),
        (
            "secrets.env".to_string(),
            project.join(".dockhand").join("secrets.env"),
        ),
    ]);
    std::fs::create_dir_all(project.join(".dockhand")).map_err(|e| {
        AgentError::environment(format!("failed to create {}: {e}", project.display()))
    })?;
    rst::restore_item(
        &fetched,
        &decryption,
        item,
        &Destination::App {
            places: places.clone(),
        },
        None,
        &scratch,
        &id,
    )
    .await
    .map_err(|e| AgentError::runtime(e.message))?;
    let secrets = project.join(".dockhand").join("secrets.env");
    if secrets.exists() {
        crate::layout::restrict_file(&secrets)?;
    }
    let mut sources: Vec<String> = manifest
        .items
        .iter()
        .filter(|i| i.kind != SourceKind::App)
        .map(|i| i.source.clone())
        .collect();
    sources.dedup();
    Ok(AppRestored {
        app,
        id,
        files: places
            .into_iter()
            .filter(|(_, p)| p.exists())
            .map(|(n, _)| n)
            .collect(),
        sources,
    })
}
