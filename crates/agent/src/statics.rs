//! The files of static services: staged into a directory of their own for each release
//! (`static/<service>/r<release>` under the state directory), indexed for the proxy, and
//! removed with the release.
//!
//! Staging copies into `r<release>.staging` and renames it into place, so a release's
//! directory is complete or absent; the proxy's [`StaticSite`] of the serving release keeps
//! reading its own directory until the routing table swaps, and a rollback serves the
//! retained directory of the release it returns to. A symlink is copied as the file it points
//! to when that file is inside the source directory; one that leads outside is left out (and
//! reported), so nothing outside the site can reach the served copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dockhand_config::StaticConfig;
use dockhand_proxy::{CacheRules, StaticOptions, StaticSite};

use crate::error::{AgentError, Result};
use crate::layout::StateLayout;

/// The longest copying or indexing a release's files may take.
const STAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Files copied at most (a guard against copying a whole disk by mistake).
const MAX_FILES: usize = 200_000;

/// What staging found worth a warning.
#[derive(Debug, Default)]
pub struct Staged {
    /// Symlinks left out: they lead outside the directory (or are broken or loop).
    pub skipped: Vec<String>,
    pub files: usize,
}

/// Copies `source` into the release's directory (replacing a leftover staging copy).
pub async fn stage_dir(
    layout: &StateLayout,
    service: &str,
    release: i64,
    source: &Path,
) -> Result<Staged> {
    let dest = layout.static_release(service, release);
    let source = source.to_path_buf();
    blocking(move || {
        let staging = staging_path(&dest);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| io_error("remove", &staging, e))?;
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| io_error("remove", &dest, e))?;
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        let root = source.canonicalize().map_err(|e| {
            AgentError::config(format!(
                "the static directory {} cannot be read ({e}); build the site first or fix `static`",
                source.display()
            ))
        })?;
        let mut staged = Staged::default();
        copy_tree(&root, &root, &staging, "", &mut staged)?;
        std::fs::rename(&staging, &dest).map_err(|e| io_error("rename", &staging, e))?;
        Ok(staged)
    })
    .await
}

/// Unpacks `archive` (a tar of the directory `path` of an image, as the Docker Engine
/// sends it: entries under `path`'s last component) into the release's directory.
pub async fn stage_archive(
    layout: &StateLayout,
    service: &str,
    release: i64,
    path: &str,
    archive: &Path,
) -> Result<Staged> {
    let dest = layout.static_release(service, release);
    let archive = archive.to_path_buf();
    let base = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let path = path.to_string();
    blocking(move || {
        let unpacked = dest.with_extension("unpacked");
        let staging = staging_path(&dest);
        for d in [&unpacked, &staging, &dest] {
            if d.exists() {
                std::fs::remove_dir_all(d).map_err(|e| io_error("remove", d, e))?;
            }
        }
        std::fs::create_dir_all(&unpacked).map_err(|e| io_error("create", &unpacked, e))?;
        let file = std::fs::File::open(&archive).map_err(|e| io_error("open", &archive, e))?;
        // `unpack` refuses entries that would land outside the directory.
        tar::Archive::new(file)
            .unpack(&unpacked)
            .map_err(|e| io_error("unpack", &archive, e))?;
        let _ = std::fs::remove_file(&archive);
        let root = unpacked.join(&base);
        if !root.is_dir() {
            let _ = std::fs::remove_dir_all(&unpacked);
            return Err(AgentError::config(format!(
                "`static.path` {path} is not a directory in the image of service `{}`",
                dest.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )));
        }
        let root = root
            .canonicalize()
            .map_err(|e| io_error("read", &root, e))?;
        let mut staged = Staged::default();
        let copied = copy_tree(&root, &root, &staging, "", &mut staged);
        let _ = std::fs::remove_dir_all(&unpacked);
        copied?;
        std::fs::rename(&staging, &dest).map_err(|e| io_error("rename", &staging, e))?;
        Ok(staged)
    })
    .await
}

/// Indexes the release's staged directory for the proxy.
pub async fn load(
    layout: &StateLayout,
    service: &str,
    release: i64,
    config: &StaticConfig,
) -> Result<Arc<StaticSite>> {
    let dir = layout.static_release(service, release);
    let options = options(config);
    let service = service.to_string();
    blocking(move || {
        if !dir.is_dir() {
            return Err(AgentError::runtime(format!(
                "the static files of service `{service}` for release {release} are gone ({} is missing); deploy again",
                dir.display()
            )));
        }
        StaticSite::load(&dir, &options)
            .map(Arc::new)
            .map_err(|e| AgentError::runtime(format!("service `{service}`: {e}")))
    })
    .await
}

/// Removes the staged files of `releases` (pruned or failed), for every static service.
pub fn remove(layout: &StateLayout, releases: &[i64]) {
    let root = layout.static_root();
    let Ok(services) = std::fs::read_dir(&root) else {
        return;
    };
    for service in services.flatten() {
        for release in releases {
            let dir = service.path().join(format!("r{release}"));
            for d in [staging_path(&dir), dir] {
                if d.exists() {
                    if let Err(e) = std::fs::remove_dir_all(&d) {
                        tracing::warn!("could not remove {}: {e}", d.display());
                    }
                }
            }
        }
    }
}

/// The proxy's options for a static service.
pub fn options(config: &StaticConfig) -> StaticOptions {
    StaticOptions {
        index: config.index.clone(),
        fallback: config.fallback.clone(),
        not_found: config.not_found.clone(),
        cache: CacheRules {
            html: config.cache.html.clone(),
            fingerprinted: config.cache.fingerprinted.clone(),
            other: config.cache.other.clone(),
        },
    }
}

fn staging_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".staging");
    dest.with_file_name(name)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::time::timeout(STAGE_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(AgentError::internal(e)),
        Err(_) => Err(AgentError::environment(format!(
            "copying static files took longer than {} s; is the disk slow or the directory huge?",
            STAGE_TIMEOUT.as_secs()
        ))),
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> AgentError {
    AgentError::environment(format!(
        "could not {what} {}: {e}; is the disk full or the state directory not writable?",
        path.display()
    ))
}

/// Copies the regular files under `dir` (a directory inside `root`) to `to`, keeping their
/// modification times (so `ETag`s of unchanged files stay the same across releases).
fn copy_tree(root: &Path, dir: &Path, to: &Path, rel: &str, staged: &mut Staged) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| io_error("create", to, e))?;
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, e))?;
        let name = entry.file_name();
        let from = entry.path();
        let target = to.join(&name);
        let shown = format!("{rel}{}", name.to_string_lossy());
        let meta = std::fs::symlink_metadata(&from).map_err(|e| io_error("read", &from, e))?;
        let (real, meta) = if meta.file_type().is_symlink() {
            match from.canonicalize() {
                Ok(real) if real.starts_with(root) => match std::fs::metadata(&real) {
                    Ok(m) if m.is_file() => (real, m),
                    _ => {
                        staged.skipped.push(shown);
                        continue;
                    }
                },
                _ => {
                    staged.skipped.push(shown);
                    continue;
                }
            }
        } else {
            (from, meta)
        };
        if meta.is_dir() {
            copy_tree(root, &real, &target, &format!("{shown}/"), staged)?;
        } else if meta.is_file() {
            staged.files += 1;
            if staged.files > MAX_FILES {
                return Err(AgentError::config(format!(
                    "the static directory {} has more than {MAX_FILES} files; is `static` the build output?",
                    root.display()
                )));
            }
            std::fs::copy(&real, &target).map_err(|e| io_error("copy", &real, e))?;
            if let Ok(modified) = meta.modified() {
                let file = std::fs::File::options()
                    .write(true)
                    .open(&target)
                    .map_err(|e| io_error("open", &target, e))?;
                file.set_modified(modified)
                    .map_err(|e| io_error("set the time of", &target, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staging_copies_files_keeps_times_and_leaves_out_escaping_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("dist");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("index.html"), "v1").unwrap();
        std::fs::write(src.join("a/b.js"), "js").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), src.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(src.join("a/b.js"), src.join("c.js")).unwrap();
        let layout = StateLayout::at(&dir.path().join("state"));
        let staged = stage_dir(&layout, "web", 3, &src).await.unwrap();
        assert_eq!(staged.skipped, vec!["leak.txt".to_string()]);
        let dest = layout.static_release("web", 3);
        assert_eq!(std::fs::read_to_string(dest.join("c.js")).unwrap(), "js");
        assert!(!dest.join("leak.txt").exists());
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(
            mtime(&dest.join("index.html")),
            mtime(&src.join("index.html"))
        );
        // The next release is staged beside it; removing one leaves the other.
        std::fs::write(src.join("index.html"), "v2").unwrap();
        stage_dir(&layout, "web", 4, &src).await.unwrap();
        remove(&layout, &[3]);
        assert!(!dest.exists());
        let next = layout.static_release("web", 4);
        assert_eq!(
            std::fs::read_to_string(next.join("index.html")).unwrap(),
            "v2"
        );
    }
}
