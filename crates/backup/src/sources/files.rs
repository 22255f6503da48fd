//! Host directories and the app itself, as tar streams made in process (the `tar` crate):
//! a directory's tree, or the app's files (`dockhand.toml`, `.env`, the secrets file) under
//! fixed names so `restore --app` knows where each goes. Checked by reading the whole archive
//! back and counting its files; restored by emptying the directory and unpacking.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{ChannelWriter, Dump, Ending, Facts};
use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

/// A file of the app's own, stored under `name` in its archive.
#[derive(Debug, Clone)]
pub struct AppFile {
    pub name: String,
    pub path: PathBuf,
}

/// Counts the regular files of a directory tree (the record a drill compares).
fn count_files(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}

/// Starts a tar of directory `dir`.
pub fn dump_dir(dir: &Path) -> Result<(Facts, Dump)> {
    if !dir.is_dir() {
        return Err(BackupError::source(format!(
            "directory {} does not exist: fix `[backups] directories`",
            dir.display()
        )));
    }
    let (files, bytes) = count_files(dir)
        .map_err(|e| crate::error::io(format_args!("failed to read {}", dir.display()), e))?;
    let facts = Facts {
        counts: BTreeMap::from([("files".to_string(), files)]),
        source_bytes: Some(bytes),
        ..Facts::default()
    };
    let dir = dir.to_path_buf();
    Ok((
        facts,
        tar_dump(SourceKind::Directory, move |b| {
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)
        }),
    ))
}

/// Starts a tar of the app's files (missing optional ones are left out).
pub fn dump_app(files: Vec<AppFile>) -> Result<(Facts, Dump)> {
    let present: Vec<AppFile> = files.into_iter().filter(|f| f.path.is_file()).collect();
    let facts = Facts {
        counts: BTreeMap::from([("files".to_string(), present.len() as u64)]),
        source_bytes: Some(
            present
                .iter()
                .filter_map(|f| std::fs::metadata(&f.path).ok())
                .map(|m| m.len())
                .sum(),
        ),
        ..Facts::default()
    };
    Ok((
        facts,
        tar_dump(SourceKind::App, move |b| {
            for f in &present {
                let mut file = std::fs::File::open(&f.path)?;
                b.append_file(&f.name, &mut file)?;
            }
            Ok(())
        }),
    ))
}

fn tar_dump(
    kind: SourceKind,
    fill: impl FnOnce(&mut tar::Builder<ChannelWriter>) -> std::io::Result<()> + Send + 'static,
) -> Dump {
    let (tx, rx) = crate::pipeline::feed();
    let task = tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(ChannelWriter::new(tx));
        fill(&mut b)?;
        let mut w = b.into_inner()?;
        std::io::Write::flush(&mut w)
    });
    let ending: Ending = Box::pin(async move {
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("making the tar stream failed: {e}")),
            Err(e) => Err(e.to_string()),
        }
    });
    Dump {
        kind,
        bytes: rx,
        ending,
    }
}

/// Reads a whole tar stream; the number of regular files in it (a drill's check).
pub fn check_tar(reader: impl Read) -> Result<BTreeMap<String, u64>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| BackupError::restore(format!("the archive does not read: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| BackupError::restore(format!("the archive does not read: {e}")))?;
        if entry.header().entry_type().is_file() {
            files += 1;
        }
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| BackupError::restore(format!("the archive does not read: {e}")))?;
    }
    Ok(BTreeMap::from([("files".to_string(), files)]))
}

/// Empties `dir` and unpacks the tar stream into it.
pub fn restore_dir(reader: impl Read, dir: &Path) -> Result<()> {
    let env = |e: std::io::Error| {
        crate::error::io(format_args!("failed to restore {}", dir.display()), e)
    };
    std::fs::create_dir_all(dir).map_err(env)?;
    for entry in std::fs::read_dir(dir).map_err(env)? {
        let p = entry.map_err(env)?.path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p).map_err(env)?;
        } else {
            std::fs::remove_file(&p).map_err(env)?;
        }
    }
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.unpack(dir).map_err(env)
}

/// Unpacks the app's archive: each file to the path given for its name (the others are
/// skipped); returns the names written.
pub fn restore_app(reader: impl Read, places: &BTreeMap<String, PathBuf>) -> Result<Vec<String>> {
    let mut archive = tar::Archive::new(reader);
    let mut written = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| BackupError::restore(format!("the app archive does not read: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| BackupError::restore(format!("the app archive does not read: {e}")))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(to) = places.get(&name) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                crate::error::io(format_args!("failed to create {}", parent.display()), e)
            })?;
        }
        let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
        entry
            .unpack(to)
            .map_err(|e| crate::error::io(format_args!("failed to write {}", to.display()), e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode));
        written.push(name);
    }
    Ok(written)
}
