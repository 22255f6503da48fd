//! The two server-side halves of `dockhand move`, both without an agent. `send` (on the old
//! server, or this machine) streams one backup from the app's targets as stored; `receive`
//! (on the new server) checks it into a staging directory, restores the app's own files from
//! it (`restore --app`'s first half) and places the backup in every local-directory target of
//! the restored configuration, where the new server's agent finds it for the data restore.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dockhand_backup::manifest::MANIFEST;
use dockhand_backup::target::{Target, TargetSpec};
use dockhand_backup::transfer;
use dockhand_config::{AppConfig, BackupTargetKind, LoadOptions};

use super::disaster::{restore_app_files, AppRestored};
use crate::error::{AgentError, Result};
use crate::secrets::Redactor;

/// What `receive` did, for the client's report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Received {
    pub app: String,
    pub id: String,
    /// The app's files written into the project (`dockhand.toml`, `.env`, `secrets.env`).
    pub files: Vec<String>,
    /// The data sources the backup holds.
    pub sources: Vec<String>,
    /// The local-directory targets the backup was placed in.
    pub placed: Vec<PathBuf>,
    /// The images of the restored configuration (services without a build, databases).
    pub images: Vec<String>,
    /// Services the restored configuration builds.
    pub builds: Vec<String>,
    /// The hosts its routes answer (what the DNS change is about).
    pub hosts: Vec<String>,
}

/// Streams backup `id` of the app configured by `config_path` from the first of its targets
/// that holds it to `out`.
pub async fn send(config_path: &Path, id: &str, out: impl Write) -> Result<()> {
    let config = load(config_path)?;
    let targets = open_targets(&config)?;
    let scratch = config.project_dir.join(".dockhand").join("backup-scratch");
    transfer::export(&targets, &config.app, id, &scratch, out)
        .await
        .map_err(|e| AgentError::runtime(e.message))?;
    Ok(())
}

/// Reads what `send` wrote into `staging`, restores the app's files into `project` with
/// `identity`, and copies the backup into the restored configuration's local targets.
pub async fn receive(
    input: impl Read,
    project: &Path,
    staging: &Path,
    identity: &Path,
) -> Result<Received> {
    let imported = transfer::import(input, staging)
        .map_err(|e| AgentError::runtime(format!("the backup did not arrive whole: {e}")))?;
    let id = imported.manifest.id.clone();
    let spec = TargetSpec::Local {
        name: "move".into(),
        dir: staging.to_path_buf(),
    };
    let restored: AppRestored = restore_app_files(&spec, identity, project, Some(&id)).await?;
    for name in ["dockhand.toml", ".env"] {
        let p = project.join(name);
        if p.exists() {
            crate::layout::restrict_file(&p)?;
        }
    }
    let config = load(&project.join("dockhand.toml"))?;
    let mut placed = Vec::new();
    for t in config.backups.iter().flat_map(|b| &b.targets) {
        let BackupTargetKind::Local { dir } = &t.kind else {
            continue;
        };
        let into = dir.join(&config.app).join(&id);
        if into.join(MANIFEST).exists() || dir == staging {
            continue;
        }
        copy_backup(&imported.path, &into)?;
        placed.push(dir.clone());
    }
    let mut images: Vec<String> = config
        .services
        .values()
        .filter_map(|s| s.container.as_ref())
        .filter(|c| c.build.is_none())
        .map(|c| c.image.clone())
        .chain(config.databases.values().map(|d| d.image.clone()))
        .collect();
    images.sort();
    images.dedup();
    let builds = config
        .services
        .iter()
        .filter(|(_, s)| s.container.as_ref().is_some_and(|c| c.build.is_some()))
        .map(|(n, _)| n.clone())
        .collect();
    let mut hosts: Vec<String> = config
        .services
        .values()
        .flat_map(|s| s.routes.iter().filter_map(|r| r.host.clone()))
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(Received {
        app: restored.app,
        id,
        files: restored.files,
        sources: restored.sources,
        placed,
        images,
        builds,
        hosts,
    })
}

fn load(path: &Path) -> Result<AppConfig> {
    dockhand_config::load(path, &LoadOptions::from_process_env())
        .map(|l| l.config)
        .map_err(|e| AgentError::usage(e.to_string()))
}

/// The app's backup targets, opened with the credentials of its secrets file.
fn open_targets(config: &AppConfig) -> Result<Vec<Target>> {
    let Some(b) = &config.backups else {
        return Err(AgentError::usage(format!(
            "{} has no [backups] table: there is no backup to move",
            config.config_path.display()
        )));
    };
    let redactor = Redactor::default();
    let secrets = crate::secrets::load(config, &redactor)?;
    b.targets
        .iter()
        .map(|t| {
            let spec = super::target_spec(t, &secrets)?;
            Target::open(&spec).map_err(|e| AgentError::environment(redactor.redact(&e.message)))
        })
        .collect()
}

/// Copies a backup's directory: the objects first, the manifest last (each through a
/// `.partial` name), so a copy cut short is not a backup.
fn copy_backup(from: &Path, to: &Path) -> Result<()> {
    let env = |what: &str, p: &Path, e: std::io::Error| {
        AgentError::environment(format!("failed to {what} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(to).map_err(|e| env("create", to, e))?;
    let mut names: Vec<String> = std::fs::read_dir(from)
        .map_err(|e| env("read", from, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != MANIFEST)
        .collect();
    names.sort();
    names.push(MANIFEST.to_string());
    for name in names {
        let partial = to.join(format!("{name}.partial"));
        std::fs::copy(from.join(&name), &partial).map_err(|e| env("write", &partial, e))?;
        crate::layout::restrict_file(&partial)?;
        std::fs::rename(&partial, to.join(&name)).map_err(|e| env("write", to, e))?;
    }
    Ok(())
}
